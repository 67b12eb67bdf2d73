"""HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), decoded into annotated segments.

A chunked body is how an HTTP/1.1 server streams a response whose length it does not know
yet: every piece of data goes out behind its own length, written in hex on a line of its
own, and a chunk of length zero says "that was all". This is what every token of a streamed
chat reply looks like on an HTTP/1.1 connection::

    1a;foo=bar\\r\\n               ChunkSize     chunk size 0x1a = 26 bytes; ext foo=bar
    abcdefghijklmnopqrstuvwxyz    ChunkData     26 bytes of chunk data
    \\r\\n                         ChunkDataEnd  CRLF ending the chunk data
    0\\r\\n                        LastChunk     last chunk (size 0)
    Expires: never\\r\\n           TrailerField  trailer field Expires: never
    \\r\\n                         BodyEnd       CRLF ending the chunked body

The grammar, RFC 9112 §7.1 (BWS, "bad whitespace", is ``*( SP / HTAB )`` from RFC 9110
§5.6.3; token and quoted-string from RFC 9110 §5.6.2 and §5.6.4)::

    chunked-body    = *chunk last-chunk trailer-section CRLF
    chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    chunk-size      = 1*HEXDIG
    last-chunk      = 1*("0") [ chunk-ext ] CRLF
    chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    chunk-ext-name  = token
    chunk-ext-val   = token / quoted-string
    trailer-section = *( field-line CRLF )

How to use it: make a :class:`ChunkedDecoder`, hand it bytes as they arrive with
:meth:`ChunkedDecoder.feed`, and it returns every segment that became complete. Chunk data
is handed out as soon as it arrives, so one chunk may come back as several
:class:`ChunkData` pieces; everything else (a size line, a trailer line) is kept until its
CRLF is in. When the body is over, :attr:`ChunkedDecoder.done` turns true and any bytes fed
after the end are left untouched in :attr:`ChunkedDecoder.unused_data` for whoever reads
the next message on the connection. :class:`ChunkedEncoder` and :func:`encode` go the other
way; :func:`decode` does a whole body at once.

This module holds the decoder; every name below is importable from here. The limits,
byte classes and size-line machine are in :mod:`lab.wire.chunked_grammar`, the segments
and :class:`ChunkedError` in :mod:`lab.wire.chunked_segments`, and the encoder in
:mod:`lab.wire.chunked_encode`.

Offsets: every segment and every error names absolute byte offsets, counted from the first
byte ever fed (plus the ``offset`` the decoder was created with, for a body that starts in
the middle of a stream). An error's offset is the *first byte that cannot belong to a valid
chunked body*, given everything before it: for ``3\\r\\nxxx__`` that is the first ``_``, for
a bare CR it is the byte after the CR (the one that should have been LF), for an over-long
line it is the first byte past the limit. That rule does not depend on how the input was
split into reads, so the same bad body gives the same offset however it arrives.

The decoder is strict: it accepts exactly the grammar above, with every line ending in CRLF.
RFC 9112 §2.2 says a recipient MAY take a lone LF as the end of the start-line and of field
lines; §7.1 writes CRLF for every line of a chunked body, and inside a body, disagreement
about line endings is what request smuggling is made of (see the CVEs below). So nothing
but CRLF ends a line here, not even in the trailer section (see difference 6).

Where this decoder differs from h11 0.16.0
------------------------------------------

Each point was measured by feeding the body to an h11 server ``Connection`` after a
``POST / HTTP/1.1`` head with ``Transfer-Encoding: chunked``; each has a test showing both
behaviours. Both decoders reject the smuggling classics: a bad CRLF after chunk data
(h11 < 0.16's CVE-2025-43859, ``3\\r\\nxxx__1a\\r\\n``), a lone LF or bare CR ending the size
line (Go's CVE-2025-22871), ``0x5``, ``+5``, ``-5``, an empty size, non-hex digits and 21 or
more hex digits.

1. **Whitespace after the size** (``5 \\r\\n``, ``5\\t\\r\\n``, ``0 \\r\\n``): h11 accepts it
   ("some servers in the wild use it"); BWS is only allowed before ``;``, so we reject it.
2. **Whitespace before ``;``** (``5 ;a\\r\\n``): h11 rejects it; the grammar allows it (BWS),
   so we accept it. With point 9, the only places where we accept what h11 refuses.
3. **Malformed extensions**: h11 reads ``;.*`` and throws extensions away, so it accepts
   ``5;\\r\\n``, ``5;a=b c``, ``5;a="unterminated``, trailing whitespace after an extension,
   and NUL, other control bytes and a bare CR inside an extension. We parse extensions by
   the grammar and reject all of these.
4. **17 to 20 hex digits**: h11 accepts up to 20 (enough for 2^64 in decimal); we stop at
   :data:`MAX_CHUNK_SIZE_DIGITS` = 16 (2^64 - 1 in hex), leading zeros included.
5. **Extension size**: h11 accepts any amount of extension bytes when the line arrives in
   one read (10 MB of extensions for a 5-byte chunk: fine) and refuses one over 16 KiB only
   if it arrives in several reads. We refuse more than :data:`MAX_CHUNK_EXTENSIONS_SIZE`
   bytes however it arrives. Likewise the trailer section: h11 takes 100 KiB of trailers in
   one read; we stop at :data:`MAX_TRAILER_SECTION_SIZE`.
6. **Lone LF in the trailer section**: h11 accepts ``X: y\\n``, a lone LF as the final line
   and ``0\\r\\n\\n``; we require CRLF. Whether §2.2's MAY for field lines reaches trailer
   lines inside a chunked body is not spelled out; the body's own grammar (§7.1) says CRLF,
   not accepting a MAY is always conformant, and the final line is exactly where two
   parsers that disagree would disagree about where the next message starts.
7. **Obsolete line folding in trailers** (``X: a\\r\\n b``): h11 unfolds it into ``a b``;
   we reject it. RFC 9112 §5.2 lets a server reject it (a user agent is told to unfold
   it instead); senders must not generate it, and the lab refuses it in both directions.
8. **Control bytes in trailer values**: h11 keeps every control byte but NUL, CR, LF, VT
   and FF (so 0x01, 0x1F and DEL pass); RFC 9110 §5.5 calls them invalid and lets a
   recipient keep or reject them; we reject them all (HTAB is whitespace, not a CTL here).
9. **Framing fields in trailers**: h11 validates trailers like headers, so it rejects
   ``Content-Length: x`` and ``Transfer-Encoding: gzip`` there. This codec only checks
   field syntax and reports such fields as ordinary :class:`TrailerField` segments; what a
   trailer may mean (RFC 9110 §6.5.1) is the message layer's business.
"""

from __future__ import annotations

from lab.wire.chunked_encode import ChunkedEncoder, encode
from lab.wire.chunked_grammar import (
    _COLON,
    _CR,
    _ERR,
    _HTAB,
    _L_BWS,
    _L_CR,
    _L_DIGITS,
    _L_END,
    _L_EQ,
    _L_ESCAPE,
    _L_NAME_BWS,
    _L_QUOTED,
    _L_SEMI,
    _L_START,
    _LF,
    _NAME_RUN,
    _SIZE_LINE_MACHINE,
    _SIZE_LINE_RE,
    _SIZE_LINE_TABLE,
    _VALUE_RUN,
    _WS,
    MAX_CHUNK_EXTENSIONS_SIZE,
    MAX_CHUNK_SIZE_DIGITS,
    MAX_SIZE_LINE,
    MAX_TRAILER_SECTION_SIZE,
    _describe,
)
from lab.wire.chunked_segments import (
    BodyEnd,
    ChunkData,
    ChunkDataEnd,
    ChunkedError,
    ChunkSize,
    Extensions,  # noqa: F401 - the type of ChunkSize.extensions, importable from here as before
    LastChunk,
    TrailerField,
    _parse_extensions,
)
from lab.wire.segment import Segment

__all__ = [
    "MAX_CHUNK_EXTENSIONS_SIZE",
    "MAX_CHUNK_SIZE_DIGITS",
    "MAX_SIZE_LINE",
    "MAX_TRAILER_SECTION_SIZE",
    "BodyEnd",
    "ChunkData",
    "ChunkDataEnd",
    "ChunkSize",
    "ChunkedDecoder",
    "ChunkedEncoder",
    "ChunkedError",
    "LastChunk",
    "TrailerField",
    "decode",
    "encode",
]

# --------------------------------------------------------------------------------------
# The decoder

# Where the decoder is in the body.
_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE, _FAILED = range(6)

_EOF_COMPLAINTS = {
    _SIZE: "the body ended inside a chunk-size line",
    _DATA: "the body ended in the middle of chunk data",
    _DATA_CRLF: "the body ended before the CRLF after chunk data",
    _TRAILER: "the body ended before the empty line that ends the trailer section",
}


class ChunkedDecoder:
    """Turns a chunked body, fed in pieces of any size, into :class:`Segment` objects.

    ``offset`` is the absolute offset of the first byte you will feed; the limits default
    to the module constants. Bytes held while a line is incomplete never exceed the larger
    of ``max_chunk_size_digits + max_chunk_extensions_size + 2`` and
    ``max_trailer_section_size``; chunk data is never held at all.
    """

    def __init__(
        self,
        offset: int = 0,
        *,
        max_chunk_size_digits: int = MAX_CHUNK_SIZE_DIGITS,
        max_chunk_extensions_size: int = MAX_CHUNK_EXTENSIONS_SIZE,
        max_trailer_section_size: int = MAX_TRAILER_SECTION_SIZE,
    ) -> None:
        if min(max_chunk_size_digits, max_chunk_extensions_size) < 1:
            raise ValueError("limits must be positive")
        if max_trailer_section_size < 2:
            raise ValueError("the trailer section needs room for its final CRLF")
        self._max_digits = max_chunk_size_digits
        self._max_ext = max_chunk_extensions_size
        self._max_line = max_chunk_size_digits + max_chunk_extensions_size + 2
        self._max_trailer = max_trailer_section_size
        self._first = offset  # absolute offset of the first byte fed
        self._fed = 0  # bytes fed so far
        self._buf = bytearray()  # an incomplete line (or a lone CR), nothing else
        self._base = offset  # absolute offset of self._buf[0]
        self._state = _SIZE
        self._remaining = 0  # chunk data bytes still to come
        # The size line's slow path: absolute offset scanned up to (-1: not scanning),
        # machine state, and where the extensions start.
        self._line_scan = -1
        self._line_state = _L_START
        self._ext_start = -1
        # The trailer section: where it started, how far the current line has been
        # checked, and where that line's colon is (-1: not seen yet).
        self._section_start = -1
        self._trailer_scan = -1
        self._colon = -1
        self._unused = b""
        self._error: ChunkedError | None = None

    # ----------------------------------------------------------------------------------
    # Public surface

    @property
    def done(self) -> bool:
        """True once the final CRLF (:class:`BodyEnd`) has been read."""
        return self._state == _DONE

    @property
    def offset(self) -> int:
        """Absolute offset just past the last byte taken: the start offset plus every byte
        fed, minus :attr:`unused_data`. After the body, that is where the next message
        starts."""
        return self._first + self._fed - len(self._unused)

    @property
    def unused_data(self) -> bytes:
        """Bytes fed after the end of the body (the next pipelined message, perhaps)."""
        return self._unused

    @property
    def buffered(self) -> int:
        """How many bytes are held waiting for the rest of their line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Segment]:
        """Take the next bytes of the body; return the segments they completed.

        Chunk data comes back as soon as it is here (a :class:`ChunkData` per piece);
        a line waits in the buffer until its CRLF arrives. ``feed(b"")`` does nothing: the
        end of the input is :meth:`eof`. Bytes fed once :attr:`done` is true are only
        appended to :attr:`unused_data`, so stop feeding at the end of the body.
        """
        if self._error is not None:
            raise self._refusal()
        if type(data) is not bytes:
            data = bytes(data)
        self._fed += len(data)
        if self._state == _DONE:
            self._unused += data
            return []
        if not data:
            return []
        buf = self._buf
        view: bytes | bytearray
        if buf:
            buf += data
            view = buf
        else:
            view = data
        out: list[Segment] = []
        try:
            pos = self._parse(view, out)
        except ChunkedError as exc:
            self._state = _FAILED
            self._buf = bytearray()
            exc.segments = out
            self._error = exc
            raise
        if self._state == _DONE:
            self._unused = bytes(view[pos:])
            self._buf = bytearray()
        elif view is buf:
            del buf[:pos]
        else:
            self._buf = bytearray(data[pos:])
        self._base += pos
        return out

    def eof(self) -> None:
        """The input has ended: raise :class:`ChunkedError` unless the body is complete."""
        if self._error is not None:
            raise self._refusal()
        if self._state != _DONE:
            complaint = _EOF_COMPLAINTS[self._state]
            if self._state == _DATA:
                complaint += f" ({self._remaining} more bytes were announced)"
            self._error = ChunkedError(complaint, self._first + self._fed)
            self._state = _FAILED
            raise self._error

    # ----------------------------------------------------------------------------------
    # The state machine

    def _parse(self, view: bytes | bytearray, out: list[Segment]) -> int:
        """Read complete units from ``view``; return the index of the first unread byte."""
        append = out.append
        base = self._base
        n = len(view)
        pos = 0
        state = self._state
        match_size_line = _SIZE_LINE_RE.match
        max_line, max_digits, max_ext = self._max_line, self._max_digits, self._max_ext
        while pos < n:
            if state == _SIZE:
                # chunk = chunk-size [ chunk-ext ] CRLF ... (RFC 9112 §7.1). Fast path: the
                # whole line is here and valid. Otherwise the machine checks it byte by
                # byte, resuming where the previous feed stopped.
                match = None
                if self._line_scan < 0:
                    match = match_size_line(view, pos, pos + max_line)
                    if match is not None:
                        size_text, ext = match.groups()
                        if len(size_text) > max_digits or len(ext) > max_ext:
                            match = None
                if match is None:
                    end = self._scan_size_line(view, pos, n)
                    if end < 0:
                        break  # the line is not complete yet
                    match = match_size_line(view, pos, end)
                    assert match is not None, "size line machine and regex disagree"
                    size_text, ext = match.groups()
                extensions = _parse_extensions(ext) if ext else ()
                end = match.end()
                size = int(size_text, 16)
                if size == 0:
                    # last-chunk = 1*("0") [ chunk-ext ] CRLF: trailers follow (§7.1.2)
                    append(LastChunk(base + pos, base + end, size_text, extensions))
                    pos = end
                    state = _TRAILER
                    self._section_start = base + end
                    self._trailer_scan = -1
                    self._colon = -1
                    continue
                append(ChunkSize(base + pos, base + end, size, size_text, extensions))
                pos = end
                data_end = end + size
                if data_end + 2 <= n and view[data_end] == _CR and view[data_end + 1] == _LF:
                    # The whole chunk and its CRLF are here: emit both and move on.
                    append(ChunkData(base + pos, base + data_end, bytes(view[pos:data_end])))
                    append(ChunkDataEnd(base + data_end, base + data_end + 2))
                    pos = data_end + 2
                    continue
                self._remaining = size
                state = _DATA
            elif state == _DATA:
                # chunk-data = 1*OCTET: opaque, handed out as soon as it arrives.
                take = min(self._remaining, n - pos)
                append(ChunkData(base + pos, base + pos + take, bytes(view[pos : pos + take])))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    state = _DATA_CRLF
            elif state == _DATA_CRLF:
                # ... chunk-data CRLF. Checking both bytes is the fix for CVE-2025-43859:
                # h11 < 0.16 skipped any two bytes here.
                if view[pos] != _CR:
                    raise ChunkedError(
                        f"expected CRLF after chunk data, found {_describe(view[pos])}:"
                        " chunk data must be followed by exactly CRLF (RFC 9112 §7.1)",
                        base + pos,
                    )
                if pos + 1 == n:
                    break
                if view[pos + 1] != _LF:
                    raise ChunkedError(
                        f"expected LF after the CR that ends chunk data, found"
                        f" {_describe(view[pos + 1])}",
                        base + pos + 1,
                    )
                append(ChunkDataEnd(base + pos, base + pos + 2))
                pos += 2
                state = _SIZE
            elif state == _TRAILER:
                pos, finished = self._parse_trailers(view, pos, n, out)
                if not finished:
                    break
                state = _DONE
                break
            else:  # pragma: no cover - _DONE and _FAILED never reach _parse
                raise AssertionError(state)
        self._state = state
        return pos

    def _scan_size_line(self, view: bytes | bytearray, pos: int, n: int) -> int:
        """Run the size-line machine over the bytes not checked yet.

        Returns the index just past the line's LF once the line is complete, or -1 if more
        bytes are needed; raises on the first byte that breaks the grammar or a limit.
        """
        base = self._base
        if self._line_scan < 0:
            self._line_scan = base + pos
            self._line_state = _L_START
            self._ext_start = -1
        i = self._line_scan - base
        state = self._line_state
        ext_start = self._ext_start - base if self._ext_start >= 0 else -1
        table = _SIZE_LINE_TABLE
        while i < n:
            b = view[i]
            following = table[state][b]
            if following == _ERR:
                raise ChunkedError(self._size_line_complaint(state, b, view, pos, i), base + i)
            if following == _L_DIGITS:
                if i - pos >= self._max_digits:
                    raise ChunkedError(
                        f"chunk size has more than {self._max_digits} hex digits"
                        " (MAX_CHUNK_SIZE_DIGITS)",
                        base + i,
                    )
            elif following < _L_CR:
                if ext_start < 0:
                    ext_start = i
                if i - ext_start >= self._max_ext:
                    raise ChunkedError(
                        f"chunk extensions longer than {self._max_ext} bytes"
                        " (MAX_CHUNK_EXTENSIONS_SIZE)",
                        base + i,
                    )
            state = following
            i += 1
            if state == _L_END:
                self._line_scan = -1
                return i
        self._line_scan = base + i
        self._line_state = state
        self._ext_start = base + ext_start if ext_start >= 0 else -1
        return -1

    @staticmethod
    def _size_line_complaint(state: int, b: int, view: bytes | bytearray, pos: int, i: int) -> str:
        """Say in words why byte ``b`` at index ``i`` cannot continue this size line."""
        if state == _L_CR:
            return f"bare CR in the chunk-size line: CR must be followed by LF, not {_describe(b)}"
        if state in (_L_QUOTED, _L_ESCAPE) and b in b"\r\n":
            return "unterminated quoted string: the line ends before its closing '\"'"
        if b == _LF:
            # Go accepted this until CVE-2025-22871: "5\n" ended its size line.
            return "lone LF in the chunk-size line: a chunk-size line must end with CRLF"
        if state == _L_START:
            if b in b"+-":
                return f"chunk size with a sign {_describe(b)}: it is bare hex digits"
            if b == _CR:
                return "empty chunk size: the line has no hex digits"
            if b in _WS:
                return "whitespace before the chunk size"
            return f"chunk size must start with a hex digit, found {_describe(b)}"
        if state == _L_DIGITS and b in b"xX" and view[pos:i] == b"0":
            return "'0x' prefix on the chunk size: it is bare hex digits, no 0x"
        if b == _CR:
            if state in (_L_BWS, _L_NAME_BWS):
                return (
                    "whitespace before CRLF: in a chunk-size line, whitespace (BWS) is only"
                    " allowed around ';' and '='"
                )
            if state == _L_SEMI:
                return "';' without an extension name"
            if state == _L_EQ:
                return "'=' without an extension value"
        if (b < 0x20 and b != _HTAB) or b == 0x7F:
            return f"control byte {_describe(b)} in a chunk extension"
        expected = _SIZE_LINE_MACHINE[state][1]
        return f"unexpected {_describe(b)} in the chunk-size line: expected {expected}"

    def _parse_trailers(
        self, view: bytes | bytearray, pos: int, n: int, out: list[Segment]
    ) -> tuple[int, bool]:
        """Read trailer field lines and the final CRLF (RFC 9112 §7.1.2).

        Returns (index of the first unread byte, whether the body is finished). The
        current line is checked as it arrives, in runs, so a line trickling in one byte at
        a time is never re-read from its start.
        """
        base = self._base
        limit = self._section_start + self._max_trailer - base  # first index past the limit
        stop = min(n, limit)
        i = self._trailer_scan - base if self._trailer_scan >= 0 else pos
        colon = self._colon - base if self._colon >= 0 else -1
        while True:
            if colon < 0:
                # field-name = token, then ":" with no whitespace before it (RFC 9112 §5.1)
                i = _NAME_RUN.match(view, i, stop).end()  # type: ignore[union-attr]
                if i == stop:
                    break
                b = view[i]
                if b == _COLON and i > pos:
                    colon = i
                    i += 1
                    continue
                if b == _CR and i == pos:
                    # An empty line: the CRLF that ends the chunked body (§7.1).
                    if i + 1 == stop:
                        break
                    if view[i + 1] != _LF:
                        raise self._bare_cr(view, i, base)
                    out.append(BodyEnd(base + i, base + i + 2))
                    return i + 2, True
                raise ChunkedError(self._name_complaint(b, i == pos), base + i)
            # field-value with OWS around it: visible bytes, obs-text, SP and HTAB
            i = _VALUE_RUN.match(view, i, stop).end()  # type: ignore[union-attr]
            if i == stop:
                break
            b = view[i]
            if b == _CR:
                if i + 1 == stop:
                    break
                if view[i + 1] != _LF:
                    raise self._bare_cr(view, i, base)
                out.append(
                    TrailerField(
                        base + pos,
                        base + i + 2,
                        bytes(view[pos:colon]),
                        bytes(view[colon + 1 : i]).strip(b" \t"),
                    )
                )
                pos = i = i + 2
                colon = -1
                continue
            if b == _LF:
                raise ChunkedError(
                    "lone LF ends a trailer field line: lines in a chunked body end with CRLF",
                    base + i,
                )
            raise ChunkedError(
                f"control byte {_describe(b)} in a trailer field value (RFC 9110 §5.5)",
                base + i,
            )
        if n > limit:
            raise ChunkedError(
                f"trailer section longer than {self._max_trailer} bytes (MAX_TRAILER_SECTION_SIZE)",
                base + limit,
            )
        self._trailer_scan = base + i
        self._colon = base + colon if colon >= 0 else -1
        return pos, False

    @staticmethod
    def _bare_cr(view: bytes | bytearray, i: int, base: int) -> ChunkedError:
        return ChunkedError(
            f"bare CR in the trailer section: CR must be followed by LF, not"
            f" {_describe(view[i + 1])}",
            base + i + 1,
        )

    @staticmethod
    def _name_complaint(b: int, at_line_start: bool) -> str:
        if b == _LF:
            return "lone LF in the trailer section: lines in a chunked body end with CRLF"
        if at_line_start:
            if b in _WS:
                return (
                    "trailer line starts with whitespace (obsolete line folding, refused"
                    " as RFC 9112 §5.2 allows)"
                )
            if b == _COLON:
                return "trailer field with an empty name"
            return f"{_describe(b)} cannot start a trailer field name (a name is a token)"
        if b in _WS:
            return "whitespace between a trailer field name and ':' (RFC 9112 §5.1)"
        if b == _CR:
            return "trailer field line without ':'"
        return f"{_describe(b)} in a trailer field name (a name is a token)"

    def _refusal(self) -> ChunkedError:
        assert self._error is not None
        return ChunkedError(
            f"the decoder already failed: {self._error.message}", self._error.offset
        )


def decode(body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A complete chunked body (through its final CRLF) to (data, trailer fields).

    Raises :class:`ChunkedError` if the body is invalid, incomplete, or followed by more
    bytes.
    """
    decoder = ChunkedDecoder()
    segments = decoder.feed(body)
    decoder.eof()
    if decoder.unused_data:
        raise ChunkedError(
            f"{len(decoder.unused_data)} bytes after the end of the chunked body",
            decoder.offset,
        )
    data = b"".join(s.data for s in segments if isinstance(s, ChunkData))
    trailers = [(s.name, s.value) for s in segments if isinstance(s, TrailerField)]
    return data, trailers
