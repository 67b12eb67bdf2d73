"""Writing HTTP/1.1 chunked coding (RFC 9112 §7.1): :class:`ChunkedEncoder` and :func:`encode`.

Chunk extensions (§7.1.1) and trailer fields (§7.1.2) are checked against the grammar in
:mod:`lab.wire.chunked_grammar` before they are written, so what comes out is always
something :class:`~lab.wire.chunked.ChunkedDecoder` accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lab.wire.chunked_grammar import _EXT_VALUE_RE, _FIELD_VALUE_RE, _TOKEN_RE

# --------------------------------------------------------------------------------------
# The encoder


def _encode_extensions(extensions: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    parts = []
    for name, value in extensions:
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"chunk extension name {name!r} is not a token")
        if value is None:
            parts.append(b";" + name)
        elif _TOKEN_RE.fullmatch(value):
            parts.append(b";" + name + b"=" + value)
        elif _EXT_VALUE_RE.fullmatch(value):
            quoted = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            parts.append(b";" + name + b'="' + quoted + b'"')
        else:
            raise ValueError(f"chunk extension value {value!r} has control bytes")
    return b"".join(parts)


class ChunkedEncoder:
    """Writes a chunked body one chunk at a time.

    ``chunk(b"")`` returns ``b""``: a zero-length chunk would be the last-chunk and end the
    body early, so empty data is simply not sent (h11 does the same). Asking for
    extensions on an empty chunk raises ValueError, since there is nothing to carry them.
    Names and values are checked, so the encoder never writes what the decoder refuses.
    """

    __slots__ = ("_ended",)

    def __init__(self) -> None:
        self._ended = False

    def chunk(self, data: bytes, extensions: Sequence[tuple[bytes, bytes | None]] = ()) -> bytes:
        """One chunk: size line (with extensions), the data, CRLF."""
        if self._ended:
            raise RuntimeError("the chunked body has already ended")
        if not data:
            if extensions:
                raise ValueError("an empty chunk cannot carry extensions")
            return b""
        ext = _encode_extensions(extensions) if extensions else b""
        return b"%x%s\r\n%s\r\n" % (len(data), ext, data)

    def end(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
        """The last-chunk, the trailer fields, and the final CRLF."""
        if self._ended:
            raise RuntimeError("the chunked body has already ended")
        lines = [b"0\r\n"]
        for name, value in trailers:
            if not _TOKEN_RE.fullmatch(name):
                raise ValueError(f"trailer field name {name!r} is not a token")
            if not _FIELD_VALUE_RE.fullmatch(value):
                raise ValueError(
                    f"trailer field value {value!r} has control bytes or surrounding whitespace"
                )
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        self._ended = True
        return b"".join(lines)


def encode(chunks: Iterable[bytes], trailers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole chunked body: one chunk per non-empty item, then the end."""
    encoder = ChunkedEncoder()
    parts = [encoder.chunk(data) for data in chunks]
    parts.append(encoder.end(trailers))
    return b"".join(parts)
