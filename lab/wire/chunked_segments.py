"""The segments of an HTTP/1.1 chunked body (RFC 9112 §7.1), and its error.

:class:`~lab.wire.chunked.ChunkedDecoder` reports a body as these segments: the size line
(:class:`ChunkSize`), the data (:class:`ChunkData`) and its CRLF (:class:`ChunkDataEnd`),
the last-chunk (:class:`LastChunk`), the trailer fields of §7.1.2 (:class:`TrailerField`)
and the final CRLF (:class:`BodyEnd`); a body it cannot read raises :class:`ChunkedError`.
Chunk extensions (§7.1.1) are carried as :data:`Extensions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lab.wire.chunked_grammar import _EXT_ITEM_RE, _QUOTED_PAIR_RE, _show
from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

# --------------------------------------------------------------------------------------
# Errors and segments


class ChunkedError(ProtocolError):
    """Invalid chunked coding at byte ``offset``.

    ``segments`` (from :class:`ProtocolError`) holds what the failing
    :meth:`~lab.wire.chunked.ChunkedDecoder.feed` call had already completed before the
    bad byte.
    """


Extensions = tuple[tuple[bytes, bytes | None], ...]


def _show_extensions(extensions: Extensions) -> str:
    if not extensions:
        return ""
    shown = ", ".join(
        _show(name) if value is None else f"{_show(name)}={_show(value)}"
        for name, value in extensions
    )
    return f"; ext {shown}"


@dataclass(frozen=True, slots=True)
class ChunkSize(Segment):
    """A chunk-size line with its CRLF: ``1a;foo=bar\\r\\n``.

    ``extensions`` are (name, value) pairs in order, value None for a bare name; a quoted
    value is given unquoted (RFC 9110 §5.6.4: quotes and backslashes removed).
    """

    size: int
    size_text: bytes
    extensions: Extensions = ()

    kind: ClassVar[str] = "chunk-size"

    def note(self) -> str:
        unit = "byte" if self.size == 1 else "bytes"
        size = f"chunk size 0x{self.size_text.decode('ascii')} = {self.size} {unit}"
        return size + _show_extensions(self.extensions)


@dataclass(frozen=True, slots=True)
class ChunkData(Segment):
    """Chunk data, or the part of it that had arrived when
    :meth:`~lab.wire.chunked.ChunkedDecoder.feed` returned."""

    data: bytes

    kind: ClassVar[str] = "chunk-data"

    def note(self) -> str:
        n = len(self.data)
        return f"{n} {'byte' if n == 1 else 'bytes'} of chunk data"


@dataclass(frozen=True, slots=True)
class ChunkDataEnd(Segment):
    """The CRLF that must follow chunk data (RFC 9112 §7.1)."""

    kind: ClassVar[str] = "chunk-crlf"

    def note(self) -> str:
        return "CRLF ending the chunk data"


@dataclass(frozen=True, slots=True)
class LastChunk(Segment):
    """The last-chunk line, ``0\\r\\n``: no more data, trailers (if any) follow."""

    size_text: bytes
    extensions: Extensions = ()

    kind: ClassVar[str] = "last-chunk"

    def note(self) -> str:
        return "last chunk (size 0): the data is complete" + _show_extensions(self.extensions)


@dataclass(frozen=True, slots=True)
class TrailerField(Segment):
    """One trailer field line with its CRLF (RFC 9112 §7.1.2); value without its OWS."""

    name: bytes
    value: bytes

    kind: ClassVar[str] = "trailer-field"

    def note(self) -> str:
        return f"trailer field {_show(self.name)}: {_show(self.value)}"


@dataclass(frozen=True, slots=True)
class BodyEnd(Segment):
    """The empty line (CRLF) that ends the chunked body."""

    kind: ClassVar[str] = "body-end"

    def note(self) -> str:
        return "CRLF ending the chunked body"


def _parse_extensions(ext: bytes) -> Extensions:
    """Extensions from a chunk-ext that has already been checked against the grammar."""
    items = []
    for match in _EXT_ITEM_RE.finditer(ext):
        value = match.group(2)
        if value is not None and value[:1] == b'"':
            value = _QUOTED_PAIR_RE.sub(rb"\1", value[1:-1])
        items.append((match.group(1), value))
    return tuple(items)
