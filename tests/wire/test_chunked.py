"""lab.wire.chunked: vectors for every rule, every split, round trips, and h11 side by side.

The heavy hypothesis and differential runs are in test_chunked_fuzz.py (marked ``fuzz``);
the generators and helpers they share live here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.wire.chunked import (
    MAX_CHUNK_EXTENSIONS_SIZE,
    MAX_CHUNK_SIZE_DIGITS,
    MAX_SIZE_LINE,
    MAX_TRAILER_SECTION_SIZE,
    BodyEnd,
    ChunkData,
    ChunkDataEnd,
    ChunkedDecoder,
    ChunkedEncoder,
    ChunkedError,
    ChunkSize,
    LastChunk,
    TrailerField,
    decode,
    encode,
)
from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

# ------------------------------------------------------------------------------- helpers


@dataclass
class Outcome:
    """What a decoder made of a body: "ok", "error" or "incomplete", and the details."""

    status: str
    segments: list[Segment] = field(default_factory=list)
    data: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    unused: bytes = b""
    error_offset: int | None = None
    message: str = ""


def pieces(body: bytes, cuts: Sequence[int] = ()) -> list[bytes]:
    """``body`` cut at the given indexes (any order, repeats and 0 allowed); no empty pieces
    (an empty read means EOF to h11)."""
    bounds = [0, *sorted(set(cuts)), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def bytewise(body: bytes) -> list[int]:
    return list(range(1, len(body)))


def merge(segments: Sequence[Segment]) -> list[Segment]:
    """Join ChunkData pieces that are adjacent in the stream (one chunk split by reads)."""
    out: list[Segment] = []
    for seg in segments:
        prev = out[-1] if out else None
        if isinstance(seg, ChunkData) and isinstance(prev, ChunkData) and prev.end == seg.start:
            out[-1] = ChunkData(prev.start, seg.end, prev.data + seg.data)
        else:
            out.append(seg)
    return out


def lab_outcome(body: bytes, cuts: Sequence[int] = (), *, offset: int = 0) -> Outcome:
    """Feed ``body`` in pieces; the segments (merged), or the error with the segments before
    it. Any exception other than ChunkedError propagates: that is a bug."""
    decoder = ChunkedDecoder(offset)
    segments: list[Segment] = []
    try:
        for piece in pieces(body, cuts):
            segments += decoder.feed(piece)
    except ChunkedError as exc:
        segments += exc.segments
        return Outcome("error", merge(segments), error_offset=exc.offset, message=exc.message)
    segments = merge(segments)
    data = b"".join(s.data for s in segments if isinstance(s, ChunkData))
    trailers = [(s.name, s.value) for s in segments if isinstance(s, TrailerField)]
    status = "ok" if decoder.done else "incomplete"
    return Outcome(status, segments, data, trailers, decoder.unused_data)


H11_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def h11_outcome(body: bytes, cuts: Sequence[int] = ()) -> Outcome:
    """The same body as a request body to an h11 server Connection."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(H11_HEAD)
    assert isinstance(conn.next_event(), h11.Request)
    data = bytearray()
    trailers: list[tuple[bytes, bytes]] = []
    try:
        for piece in pieces(body, cuts):
            conn.receive_data(piece)
            while conn.their_state is h11.SEND_BODY:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, h11.EndOfMessage):
                    trailers = list(event.headers.raw_items())
    except h11.RemoteProtocolError as exc:
        return Outcome("error", message=str(exc))
    if conn.their_state is h11.DONE:
        return Outcome("ok", data=bytes(data), trailers=trailers, unused=conn.trailing_data[0])
    return Outcome("incomplete", data=bytes(data))


def same_result(a: Outcome, b: Outcome) -> None:
    """Two runs of the lab's decoder over the same bytes agree."""
    assert (a.status, a.error_offset, a.message) == (b.status, b.error_offset, b.message)
    assert a.segments == b.segments
    assert a.unused == b.unused


# ------------------------------------------------------------------------------- vectors


def vector(*units: tuple[object, ...], unused: bytes = b"") -> tuple[bytes, list[Segment]]:
    """Build a body from (raw bytes, segment class, *fields) units; each expected segment
    spans exactly its unit's bytes. ``unused`` is appended after the body."""
    body = b""
    expected: list[Segment] = []
    for raw, cls, *fields in units:
        assert isinstance(raw, bytes)
        assert isinstance(cls, type)
        assert issubclass(cls, Segment)
        expected.append(cls(len(body), len(body) + len(raw), *fields))
        body += raw
    return body + unused, expected


END = ((b"0\r\n", LastChunk, b"0", ()), (b"\r\n", BodyEnd))

VALID = {
    # One chunk, spelled out with explicit offsets.
    "one chunk": (
        b"5\r\nhello\r\n0\r\n\r\n",
        [
            ChunkSize(0, 3, 5, b"5", ()),
            ChunkData(3, 8, b"hello"),
            ChunkDataEnd(8, 10),
            LastChunk(10, 13, b"0", ()),
            BodyEnd(13, 15),
        ],
    ),
    "empty body": (b"0\r\n\r\n", [LastChunk(0, 3, b"0", ()), BodyEnd(3, 5)]),
    "hex digits in both cases": vector(
        (b"A\r\n", ChunkSize, 10, b"A", ()),
        (b"0123456789", ChunkData, b"0123456789"),
        (b"\r\n", ChunkDataEnd),
        (b"b\r\n", ChunkSize, 11, b"b", ()),
        (b"abcdefghijk", ChunkData, b"abcdefghijk"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    # chunk-size = 1*HEXDIG and last-chunk = 1*("0"): leading zeros are grammatical.
    "leading zeros": vector(
        (b"0005\r\n", ChunkSize, 5, b"0005", ()),
        (b"hello", ChunkData, b"hello"),
        (b"\r\n", ChunkDataEnd),
        (b"000\r\n", LastChunk, b"000", ()),
        (b"\r\n", BodyEnd),
    ),
    "16 hex digits, the limit": vector(
        (b"0000000000000003\r\n", ChunkSize, 3, b"0000000000000003", ()),
        (b"abc", ChunkData, b"abc"),
        (b"\r\n", ChunkDataEnd),
        (b"0000000000000000\r\n", LastChunk, b"0000000000000000", ()),
        (b"\r\n", BodyEnd),
    ),
    # Chunk data is opaque: CRLF, bare CR and lone LF inside it are just data.
    "line endings inside chunk data": vector(
        (b"7\r\n", ChunkSize, 7, b"7", ()),
        (b"\r\n0\r\n\r\n", ChunkData, b"\r\n0\r\n\r\n"),
        (b"\r\n", ChunkDataEnd),
        (b"3\r\n", ChunkSize, 3, b"3", ()),
        (b"\r\n\r", ChunkData, b"\r\n\r"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    "every byte value as data": vector(
        (b"100\r\n", ChunkSize, 256, b"100", ()),
        (bytes(range(256)), ChunkData, bytes(range(256))),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    # RFC 9112 §7.1.1: unknown extensions are kept (and shown), not refused.
    "extensions": vector(
        (b"5;foo=bar;baz\r\n", ChunkSize, 5, b"5", ((b"foo", b"bar"), (b"baz", None))),
        (b"hello", ChunkData, b"hello"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    # chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    "BWS wherever the grammar has it": vector(
        (
            b"5 \t; a = b\t;c ;\td\r\n",
            ChunkSize,
            5,
            b"5",
            ((b"a", b"b"), (b"c", None), (b"d", None)),
        ),
        (b"hello", ChunkData, b"hello"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    "quoted-string values, unquoted": vector(
        (
            b'3;a="b \\"c\\" \\\\";e="";f="\t\xff\\x"\r\n',
            ChunkSize,
            3,
            b"3",
            ((b"a", b'b "c" \\'), (b"e", b""), (b"f", b"\t\xffx")),
        ),
        (b"abc", ChunkData, b"abc"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    "every tchar in a name and a token value": vector(
        (
            b"1;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz\r\n",
            ChunkSize,
            1,
            b"1",
            ((b"!#$%&'*+-.^_`|~09AZaz", b"!#$%&'*+-.^_`|~09AZaz"),),
        ),
        (b"x", ChunkData, b"x"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    "extensions exactly at the limit": vector(
        (
            b"1;" + b"n" * (MAX_CHUNK_EXTENSIONS_SIZE - 1) + b"\r\n",
            ChunkSize,
            1,
            b"1",
            ((b"n" * (MAX_CHUNK_EXTENSIONS_SIZE - 1), None),),
        ),
        (b"x", ChunkData, b"x"),
        (b"\r\n", ChunkDataEnd),
        *END,
    ),
    "last-chunk with extensions": vector(
        (b'0;done;why="all"\r\n', LastChunk, b"0", ((b"done", None), (b"why", b"all"))),
        (b"\r\n", BodyEnd),
    ),
    # RFC 9112 §7.1.2: trailer fields are field lines; OWS around the value is not part
    # of it (RFC 9110 §5.5).
    "trailers": vector(
        (b"3\r\n", ChunkSize, 3, b"3", ()),
        (b"abc", ChunkData, b"abc"),
        (b"\r\n", ChunkDataEnd),
        (b"0\r\n", LastChunk, b"0", ()),
        (b"X-Checksum: abc\r\n", TrailerField, b"X-Checksum", b"abc"),
        (b"Expires:\tnever  \t\r\n", TrailerField, b"Expires", b"never"),
        (b"Empty:\r\n", TrailerField, b"Empty", b""),
        (b"Spaces: a  b\tc\r\n", TrailerField, b"Spaces", b"a  b\tc"),
        (b"Utf8: caf\xc3\xa9\r\n", TrailerField, b"Utf8", b"caf\xc3\xa9"),
        (b"\r\n", BodyEnd),
    ),
    # A field named like a framing header is still just a trailer field to this codec.
    "framing field names in trailers": vector(
        (b"0\r\n", LastChunk, b"0", ()),
        (b"Content-Length: x\r\n", TrailerField, b"Content-Length", b"x"),
        (b"Transfer-Encoding: gzip\r\n", TrailerField, b"Transfer-Encoding", b"gzip"),
        (b"\r\n", BodyEnd),
    ),
    "trailer section exactly at the limit": vector(
        (b"0\r\n", LastChunk, b"0", ()),
        (
            b"X: " + b"v" * (MAX_TRAILER_SECTION_SIZE - 7) + b"\r\n",
            TrailerField,
            b"X",
            b"v" * (MAX_TRAILER_SECTION_SIZE - 7),
        ),
        (b"\r\n", BodyEnd),
    ),
}
# Bytes after the body belong to the next message: left in unused_data, not consumed.
PIPELINED_BODY, PIPELINED_SEGMENTS = vector(*END, unused=b"GET / HTTP/1.1\r\n\r\n")

INVALID = {
    # --- the size line: chunk-size = 1*HEXDIG (RFC 9112 §7.1)
    "empty chunk size": (b"\r\nhello\r\n0\r\n\r\n", 0, "empty chunk size"),
    "0x prefix": (b"0x5\r\nhello\r\n0\r\n\r\n", 1, "'0x' prefix"),
    "0X prefix": (b"0X5\r\nhello\r\n0\r\n\r\n", 1, "'0x' prefix"),
    "plus sign": (b"+5\r\nhello\r\n0\r\n\r\n", 0, "sign '+'"),
    "minus sign": (b"-5\r\nhello\r\n0\r\n\r\n", 0, "sign '-'"),
    "leading whitespace": (b" 5\r\nhello\r\n0\r\n\r\n", 0, "whitespace before the chunk size"),
    "non-hex digit": (b"5g\r\nhello\r\n0\r\n\r\n", 1, "unexpected 'g'"),
    "non-hex first": (b"g\r\n", 0, "must start with a hex digit"),
    "underscore, which int() would take": (b"1_0\r\n", 1, "unexpected '_'"),
    "17 hex digits": (b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", 16, "more than 16 hex digits"),
    "21 hex digits": (b"0" * 20 + b"5\r\nhello\r\n0\r\n\r\n", 16, "more than 16 hex digits"),
    "huge numeral": (b"F" * 100 + b"\r\n", 16, "more than 16 hex digits"),
    # BWS is only allowed before ';' -- trailing whitespace is not (h11 accepts it).
    "trailing SP after the size": (b"5 \r\nhello\r\n0\r\n\r\n", 2, "whitespace before CRLF"),
    "trailing HTAB after the size": (b"5\t\r\nhello\r\n0\r\n\r\n", 2, "whitespace before CRLF"),
    "trailing SP after last-chunk": (b"0 \r\n\r\n", 2, "whitespace before CRLF"),
    "whitespace then a non-';'": (b"5 a\r\n", 2, "unexpected 'a'"),
    # Line endings: CRLF only (RFC 9112 §7.1; §2.2's lone-LF allowance is for heads).
    "lone LF ends the size line (Go CVE-2025-22871)": (b"5\nhello\r\n0\r\n\r\n", 1, "lone LF"),
    "lone LF ends last-chunk": (b"0\n\r\n", 1, "lone LF"),
    "bare CR in the size line": (b"5\rhello\r\n0\r\n\r\n", 2, "bare CR"),
    "CR CR LF": (b"5\r\r\nhello\r\n0\r\n\r\n", 2, "bare CR"),
    # --- chunk extensions (RFC 9112 §7.1.1)
    "';' without a name": (b"5;\r\nhello\r\n0\r\n\r\n", 2, "without an extension name"),
    "';;'": (b"5;;a\r\n", 2, "unexpected ';'"),
    "'=' without a value": (b"5;a=\r\nhello\r\n0\r\n\r\n", 4, "without an extension value"),
    "'=' without a name": (b"5;=a\r\n", 2, "unexpected '='"),
    "space inside a token value": (b"5;a=b c\r\nhello\r\n0\r\n\r\n", 6, "unexpected 'c'"),
    "trailing SP after an extension": (
        b"5;a=b \r\nhello\r\n0\r\n\r\n",
        6,
        "whitespace before CRLF",
    ),
    "trailing SP after an extension name": (b"5;a \r\n", 4, "whitespace before CRLF"),
    "non-token byte in a name": (b"5;a(b)\r\n", 3, "unexpected '('"),
    "quote inside a token value": (b'5;a=b"c"\r\n', 5, "unexpected '\"'"),
    "text after a quoted string": (b'5;a="b"c\r\n', 7, "unexpected 'c'"),
    "unterminated quoted string": (b'5;a="b\r\nhello\r\n0\r\n\r\n', 6, "unterminated quoted"),
    "NUL in an extension": (b"5;a=\x00\r\nhello\r\n0\r\n\r\n", 4, "control byte NUL"),
    "NUL in a quoted string": (b'5;a="b\x00c"\r\n', 6, "control byte NUL"),
    "CTL in an extension": (b"5;a=\x01\r\n", 4, "control byte 0x01"),
    "DEL in an extension": (b"5;a=\x7f\r\n", 4, "control byte DEL"),
    "CTL escaped in a quoted string": (b'5;a="b\\\x01c"\r\n', 7, "control byte 0x01"),
    "bare CR in an extension": (b"5;a\rb\r\nhello\r\n0\r\n\r\n", 4, "bare CR"),
    "lone LF in an extension": (b"5;a\nb\r\n", 3, "lone LF"),
    "extensions over the limit": (
        b"5;a=" + b"x" * 2000 + b"\r\nhello\r\n0\r\n\r\n",
        1 + MAX_CHUNK_EXTENSIONS_SIZE,
        "chunk extensions longer than 1024 bytes",
    ),
    "BWS over the limit": (
        b"5" + b" " * 2000 + b";a\r\n",
        1 + MAX_CHUNK_EXTENSIONS_SIZE,
        "chunk extensions longer than 1024 bytes",
    ),
    # --- the CRLF after chunk data (RFC 9112 §7.1)
    "CVE-2025-43859 vector": (b"3\r\nxxx__1a\r\n", 6, "expected CRLF after chunk data, found '_'"),
    "LF only after data": (b"3\r\nxxx\n0\r\n\r\n", 6, "found LF"),
    "CR then not LF after data": (b"3\r\nxxx\rx0\r\n\r\n", 7, "expected LF after the CR"),
    "no CRLF after data": (b"3\r\nxxx3\r\nyyy\r\n0\r\n\r\n", 6, "found '3'"),
    "size one too small": (b"4\r\nhello\r\n0\r\n\r\n", 7, "found 'o'"),
    "size one too large": (b"6\r\nhello\r\n0\r\n\r\n", 9, "found LF"),
    # --- the trailer section (RFC 9112 §7.1.2, field lines per §5)
    "trailer without a colon": (b"0\r\nXA\r\n\r\n", 5, "without ':'"),
    "whitespace before the colon": (
        b"0\r\nX-A : b\r\n\r\n",
        6,
        "between a trailer field name and ':'",
    ),
    "empty field name": (b"0\r\n: b\r\n\r\n", 3, "empty name"),
    "non-token byte in a field name": (b"0\r\nX(A): b\r\n\r\n", 4, "'(' in a trailer field name"),
    "first trailer line starts with whitespace": (
        b"0\r\n X-A: b\r\n\r\n",
        3,
        "starts with whitespace",
    ),
    "obs-fold": (b"0\r\nX-A: b\r\n c\r\n\r\n", 11, "obsolete line folding"),
    "bare CR in a trailer value": (b"0\r\nX-A: b\rc\r\n\r\n", 10, "bare CR"),
    "CR CR LF ends a trailer": (b"0\r\nX-A: b\r\r\n\r\n", 10, "bare CR"),
    "NUL in a trailer value": (b"0\r\nX-A: b\x00c\r\n\r\n", 9, "control byte NUL"),
    "CTL in a trailer value": (b"0\r\nX-A: b\x01c\r\n\r\n", 9, "control byte 0x01"),
    "DEL in a trailer value": (b"0\r\nX-A: b\x7fc\r\n\r\n", 9, "control byte DEL"),
    "lone LF ends a trailer line": (b"0\r\nX-A: b\n\r\n", 9, "lone LF"),
    "lone LF in a field name": (b"0\r\nX-A\n", 6, "lone LF"),
    "lone LF as the final line": (b"0\r\nX-A: b\r\n\n", 11, "lone LF"),
    "lone LF ends the body": (b"0\r\n\n", 3, "lone LF"),
    "bare CR as the final line": (b"0\r\n\rx", 4, "bare CR"),
    "CR CR LF as the final line": (b"0\r\n\r\r\n", 4, "bare CR"),
    "trailer section over the limit": (
        b"0\r\nX: " + b"v" * MAX_TRAILER_SECTION_SIZE + b"\r\n\r\n",
        3 + MAX_TRAILER_SECTION_SIZE,
        "trailer section longer than 16384 bytes",
    ),
    "final CRLF just over the limit": (
        b"0\r\nX: " + b"v" * (MAX_TRAILER_SECTION_SIZE - 6) + b"\r\n\r\n",
        3 + MAX_TRAILER_SECTION_SIZE,
        "trailer section longer",
    ),
}

# Valid so far, but cut short: eof() names the end of the input.
INCOMPLETE = {
    "nothing at all": (b"", "inside a chunk-size line"),
    "half a size line": (b"5;a=", "inside a chunk-size line"),
    "size line without LF": (b"5\r", "inside a chunk-size line"),
    "part of the data": (b"5\r\nhel", "middle of chunk data (2 more bytes were announced)"),
    "data without its CRLF": (b"5\r\nhello", "before the CRLF after chunk data"),
    "data and a CR": (b"5\r\nhello\r", "before the CRLF after chunk data"),
    "last chunk, no final CRLF": (b"0\r\n", "before the empty line"),
    "trailer without the final CRLF": (b"0\r\nX: y\r\n", "before the empty line"),
    "half a trailer": (b"0\r\nX: y", "before the empty line"),
    "huge chunk announced": (b"FFFFFFFFFFFFFFFF\r\nab", "18446744073709551613 more bytes"),
}

ALL_BODIES = (
    [body for body, _ in VALID.values()]
    + [body for body, _, _ in INVALID.values()]
    + [body for body, _ in INCOMPLETE.values()]
    + [PIPELINED_BODY]
)


# --------------------------------------------------------------------- valid input, every split


@pytest.mark.parametrize(("body", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_vector_whole(body: bytes, expected: list[Segment]) -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(body) == expected
    assert decoder.done
    assert decoder.unused_data == b""
    assert decoder.offset == len(body)
    assert decoder.buffered == 0
    decoder.eof()  # complete: no complaint


@pytest.mark.parametrize(("body", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_vector_byte_by_byte(body: bytes, expected: list[Segment]) -> None:
    outcome = lab_outcome(body, bytewise(body))
    assert outcome.status == "ok"
    assert outcome.segments == expected


def test_chunk_data_comes_out_as_it_arrives() -> None:
    """Streaming: data is handed out per read, never held back for the rest of its chunk."""
    decoder = ChunkedDecoder()
    assert decoder.feed(b"a\r\n01") == [ChunkSize(0, 3, 10, b"a", ()), ChunkData(3, 5, b"01")]
    assert decoder.feed(b"234") == [ChunkData(5, 8, b"234")]
    assert decoder.buffered == 0
    assert decoder.feed(b"56789\r") == [ChunkData(8, 13, b"56789")]
    assert decoder.buffered == 1  # the CR waits for its LF
    assert decoder.feed(b"\n") == [ChunkDataEnd(13, 15)]


def test_pipelined_bytes_are_left_unused() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(PIPELINED_BODY) == PIPELINED_SEGMENTS
    assert decoder.unused_data == b"GET / HTTP/1.1\r\n\r\n"
    assert decoder.offset == 5  # where the next message starts
    # Feeding after the end: nothing is consumed, it is all kept for the next reader.
    assert decoder.feed(b"more") == []
    assert decoder.unused_data == b"GET / HTTP/1.1\r\n\r\nmore"
    assert decoder.offset == 5


def test_pipelined_bytes_byte_by_byte() -> None:
    outcome = lab_outcome(PIPELINED_BODY, bytewise(PIPELINED_BODY))
    assert outcome.segments == PIPELINED_SEGMENTS
    assert outcome.unused == b"GET / HTTP/1.1\r\n\r\n"


def test_offsets_start_where_the_body_starts() -> None:
    """A body that starts at byte 1000 of a connection: segments and errors say so."""
    body, expected = VALID["trailers"]
    decoder = ChunkedDecoder(offset=1000)
    segments = decoder.feed(body + b"next")
    assert [(s.start - 1000, s.end - 1000) for s in segments] == [
        (s.start, s.end) for s in expected
    ]
    assert decoder.offset == 1000 + len(body)
    with pytest.raises(ChunkedError) as info:
        ChunkedDecoder(offset=1000).feed(b"3\r\nxxx__1a\r\n")
    assert info.value.offset == 1006


def test_feed_accepts_bytearray_and_ignores_empty_feeds() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(bytearray(b"1\r\nx")) == [
        ChunkSize(0, 3, 1, b"1", ()),
        ChunkData(3, 4, b"x"),
    ]
    assert decoder.feed(b"") == []
    assert not decoder.done


# ------------------------------------------------------------------- invalid input, every split


@pytest.mark.parametrize(("body", "offset", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_vector_whole(body: bytes, offset: int, message: str) -> None:
    decoder = ChunkedDecoder()
    with pytest.raises(ChunkedError) as info:
        decoder.feed(body)
    assert info.value.offset == offset
    assert message in info.value.message
    assert isinstance(info.value, ProtocolError)
    # Everything before the bad byte was still delivered, and nothing past it.
    assert all(seg.end <= offset for seg in info.value.segments)
    assert merge(info.value.segments) == lab_outcome(body[:offset]).segments


@pytest.mark.parametrize(("body", "offset", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_vector_byte_by_byte(body: bytes, offset: int, message: str) -> None:
    whole = lab_outcome(body)
    split = lab_outcome(body, bytewise(body))
    assert split.status == "error"
    assert split.error_offset == offset
    same_result(whole, split)


def test_the_prefix_before_an_error_is_valid() -> None:
    """The error offset is the first byte that cannot belong to a chunked body: everything
    before it, fed alone, is accepted (complete or waiting for more)."""
    for body, offset, _ in INVALID.values():
        assert lab_outcome(body[:offset]).status != "error", body[:40]


def test_a_failed_decoder_refuses_more_input() -> None:
    decoder = ChunkedDecoder()
    with pytest.raises(ChunkedError):
        decoder.feed(b"3\r\nxxx__")
    with pytest.raises(ChunkedError, match="already failed") as info:
        decoder.feed(b"\r\n0\r\n\r\n")
    assert info.value.offset == 6
    with pytest.raises(ChunkedError, match="already failed"):
        decoder.eof()
    assert not decoder.done


@pytest.mark.parametrize(("body", "message"), INCOMPLETE.values(), ids=INCOMPLETE.keys())
def test_eof_on_an_incomplete_body(body: bytes, message: str) -> None:
    for cuts in ([], bytewise(body)):
        decoder = ChunkedDecoder(offset=7)
        for piece in pieces(body, cuts):
            decoder.feed(piece)
        assert not decoder.done
        with pytest.raises(ChunkedError) as info:
            decoder.eof()
        assert info.value.offset == 7 + len(body)
        assert message in info.value.message
        with pytest.raises(ChunkedError, match="already failed"):
            decoder.feed(b"0\r\n\r\n")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_BODIES), st.lists(st.integers(0, 20_000), max_size=8))
def test_any_split_of_any_vector(body: bytes, cuts: list[int]) -> None:
    """Whole input and input cut anywhere give the same segments, or the same error."""
    same_result(lab_outcome(body), lab_outcome(body, [c % (len(body) + 1) for c in cuts]))


# ------------------------------------------------------------------------------ limits


def feed_repeatedly(decoder: ChunkedDecoder, piece: bytes, max_buffered: int) -> int:
    """Feed ``piece`` until 1 MiB has gone in, checking the buffer after every feed;
    return how much went in (only if the decoder never refused, which is a failure)."""
    fed = 0
    while fed < 2**20:
        decoder.feed(piece)
        fed += len(piece)
        assert decoder.buffered <= max_buffered
    return fed


def test_a_megabyte_of_hex_digits_is_refused_at_the_limit() -> None:
    decoder = ChunkedDecoder()
    with pytest.raises(ChunkedError, match="more than 16 hex digits") as info:
        feed_repeatedly(decoder, b"1" * 4096, MAX_SIZE_LINE)
    assert info.value.offset == MAX_CHUNK_SIZE_DIGITS
    assert decoder.buffered == 0


def test_a_megabyte_of_extension_is_refused_at_the_limit() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"5;")
    with pytest.raises(ChunkedError, match="extensions longer") as info:
        feed_repeatedly(decoder, b"a" * 100, MAX_SIZE_LINE)  # an ever-growing name
    # Refused at the first byte past the limit, on arrival.
    assert info.value.offset == 1 + MAX_CHUNK_EXTENSIONS_SIZE
    assert decoder.offset - info.value.offset <= 100


def test_a_megabyte_of_trailers_is_refused_at_the_limit() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"0\r\n")
    with pytest.raises(ChunkedError, match="trailer section longer") as info:
        feed_repeatedly(decoder, b"X-Field: value\r\n" * 64, MAX_TRAILER_SECTION_SIZE)
    assert info.value.offset == 3 + MAX_TRAILER_SECTION_SIZE
    assert decoder.offset - info.value.offset <= 16 * 64  # refused by the feed that crossed


def test_a_long_line_trickling_in_stays_bounded() -> None:
    line = b"1;" + b"n" * (MAX_CHUNK_EXTENSIONS_SIZE - 1) + b"\r\n"
    decoder = ChunkedDecoder()
    for i in range(len(line) - 1):
        assert decoder.feed(line[i : i + 1]) == []
        assert decoder.buffered == i + 1
    [size] = decoder.feed(b"\n")
    assert isinstance(size, ChunkSize)
    assert decoder.buffered == 0


def test_chunk_data_is_never_buffered() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"FFFFFFFF\r\n")
    for _ in range(64):
        [data] = decoder.feed(b"d" * 16384)
        assert isinstance(data, ChunkData)
        assert decoder.buffered == 0


def test_limits_can_be_set_per_decoder() -> None:
    small = ChunkedDecoder(
        max_chunk_size_digits=2, max_chunk_extensions_size=4, max_trailer_section_size=8
    )
    assert small.feed(b"ff;abc\r\n")[0] == ChunkSize(0, 8, 255, b"ff", ((b"abc", None),))
    with pytest.raises(ChunkedError, match="more than 2 hex digits") as info:
        ChunkedDecoder(max_chunk_size_digits=2).feed(b"100\r\n")
    assert info.value.offset == 2
    with pytest.raises(ChunkedError, match="longer than 4 bytes") as info:
        ChunkedDecoder(max_chunk_extensions_size=4).feed(b"1;abcd\r\n")
    assert info.value.offset == 5
    with pytest.raises(ChunkedError, match="longer than 8 bytes") as info:
        ChunkedDecoder(max_trailer_section_size=8).feed(b"0\r\nA: bc\r\n\r\n")
    assert info.value.offset == 11
    # Looser than the default: 20 digits, as h11 allows, through both paths.
    body = b"0" * 19 + b"1\r\nx\r\n0\r\n\r\n"
    for cuts in ([], bytewise(body)):
        decoder = ChunkedDecoder(max_chunk_size_digits=20)
        for piece in pieces(body, cuts):
            decoder.feed(piece)
        assert decoder.done
    with pytest.raises(ValueError, match="positive"):
        ChunkedDecoder(max_chunk_size_digits=0)
    with pytest.raises(ValueError, match="final CRLF"):
        ChunkedDecoder(max_trailer_section_size=1)


# ------------------------------------------------------------------------------ notes


def test_notes() -> None:
    assert ChunkSize(0, 14, 26, b"1a", ((b"foo", b"bar"),)).note() == (
        "chunk size 0x1a = 26 bytes; ext foo=bar"
    )
    assert ChunkSize(0, 3, 1, b"1", ((b"a", None), (b"b", b"x y"))).note() == (
        "chunk size 0x1 = 1 byte; ext a, b=x y"
    )
    assert ChunkData(3, 29, b"a" * 26).note() == "26 bytes of chunk data"
    assert ChunkData(3, 4, b"\x00").note() == "1 byte of chunk data"
    assert ChunkDataEnd(0, 2).note() == "CRLF ending the chunk data"
    assert LastChunk(0, 3, b"0", ()).note() == "last chunk (size 0): the data is complete"
    assert TrailerField(0, 9, b"X", b"caf\xc3\xa9").note() == "trailer field X: caf\\xc3\\xa9"
    assert BodyEnd(0, 2).note() == "CRLF ending the chunked body"
    kinds = [ChunkSize, ChunkData, ChunkDataEnd, LastChunk, TrailerField, BodyEnd]
    assert [k.kind for k in kinds] == [
        "chunk-size",
        "chunk-data",
        "chunk-crlf",
        "last-chunk",
        "trailer-field",
        "body-end",
    ]


def test_segments_are_frozen() -> None:
    seg = ChunkData(0, 1, b"x")
    with pytest.raises(AttributeError):
        seg.data = b"y"  # type: ignore[misc]
    assert not hasattr(seg, "__dict__")


# ------------------------------------------------------------------------- encoder, decode()


def test_encoder_writes_exact_bytes() -> None:
    encoder = ChunkedEncoder()
    assert encoder.chunk(b"hello") == b"5\r\nhello\r\n"
    assert encoder.chunk(b"x" * 26, [(b"foo", b"bar"), (b"baz", None)]) == (
        b"1a;foo=bar;baz\r\n" + b"x" * 26 + b"\r\n"
    )
    assert encoder.chunk(b"x", [(b"q", b'a "b" \\'), (b"e", b"")]) == (
        b'1;q="a \\"b\\" \\\\";e=""\r\nx\r\n'
    )
    assert encoder.end([(b"X-Checksum", b"abc"), (b"Empty", b"")]) == (
        b"0\r\nX-Checksum: abc\r\nEmpty: \r\n\r\n"
    )


def test_encoder_empty_chunk_is_nothing() -> None:
    """A zero-length chunk would be the last-chunk: the encoder sends nothing instead."""
    encoder = ChunkedEncoder()
    assert encoder.chunk(b"") == b""
    with pytest.raises(ValueError, match="empty chunk"):
        encoder.chunk(b"", [(b"a", None)])
    assert encode([b"", b"ab", b""]) == b"2\r\nab\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.chunk(b"x", [(b"a b", None)]), "not a token"),
        (lambda e: e.chunk(b"x", [(b"", None)]), "not a token"),
        (lambda e: e.chunk(b"x", [(b"a", b"\r\n")]), "control bytes"),
        (lambda e: e.end([(b"X:", b"y")]), "not a token"),
        (lambda e: e.end([(b"X", b"y\r\nInjected: 1")]), "control bytes"),
        (lambda e: e.end([(b"X", b" padded")]), "surrounding whitespace"),
        (lambda e: e.end([(b"X", b"nul\x00")]), "control bytes"),
    ],
)
def test_encoder_refuses_what_would_not_survive(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(ChunkedEncoder())  # type: ignore[operator]


def test_encoder_after_the_end() -> None:
    encoder = ChunkedEncoder()
    encoder.end()
    with pytest.raises(RuntimeError):
        encoder.chunk(b"x")
    with pytest.raises(RuntimeError):
        encoder.end()


def test_decode_whole_body() -> None:
    assert decode(VALID["trailers"][0]) == (
        b"abc",
        [
            (b"X-Checksum", b"abc"),
            (b"Expires", b"never"),
            (b"Empty", b""),
            (b"Spaces", b"a  b\tc"),
            (b"Utf8", b"caf\xc3\xa9"),
        ],
    )
    assert decode(b"0\r\n\r\n") == (b"", [])


@pytest.mark.parametrize(
    ("body", "offset", "message"),
    [
        (b"3\r\nxxx__1a\r\n", 6, "expected CRLF"),
        (b"5\r\nhel", 6, "middle of chunk data"),
        (b"", 0, "inside a chunk-size line"),
        (b"0\r\n\r\nextra", 5, "5 bytes after the end"),
    ],
)
def test_decode_refuses_bad_incomplete_and_trailing_input(
    body: bytes, offset: int, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode(body)
    assert info.value.offset == offset


# ---------------------------------------------------------------------------- generators

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
tokens = st.text(TCHARS, min_size=1, max_size=8).map(str.encode)
bws = st.sampled_from([b"", b"", b"", b" ", b"\t", b" \t "])
VISIBLE = [*range(0x21, 0x7F), *range(0x80, 0x100)]
# What a quoted-string can carry (after unquoting): HTAB, SP, VCHAR, obs-text.
quotable = st.lists(st.sampled_from([0x09, 0x20, *VISIBLE]), max_size=8).map(bytes)
field_words = st.lists(st.sampled_from(VISIBLE), min_size=1, max_size=6).map(bytes)
FRAMING_NAMES = (b"content-length", b"transfer-encoding")


@st.composite
def quoted_strings(draw: st.DrawFn, value: bytes) -> bytes:
    """``value`` as a quoted-string; '"' and '\\' always escaped, other bytes sometimes."""
    out = bytearray(b'"')
    for b in value:
        if b in b'"\\' or draw(st.integers(0, 7)) == 0:
            out += b"\\"
        out.append(b)
    return bytes(out + b'"')


@st.composite
def extensions(
    draw: st.DrawFn, first: bool, bws_after_size: bool = True
) -> tuple[bytes, tuple[bytes, bytes | None], bool]:
    """One chunk-ext item: (raw, (name, value), whether BWS came right after the size)."""
    before = draw(bws) if bws_after_size or not first else b""
    raw = before + b";" + draw(bws)
    name = draw(tokens)
    raw += name
    value: bytes | None = None
    kind = draw(st.sampled_from(["bare", "token", "quoted"]))
    if kind != "bare":
        raw += draw(bws) + b"=" + draw(bws)
        if kind == "token":
            value = draw(tokens)
            raw += value
        else:
            value = draw(quotable)
            raw += draw(quoted_strings(value))
    return raw, (name, value), first and bool(before)


@st.composite
def size_lines(
    draw: st.DrawFn, size: int, bws_after_size: bool = True
) -> tuple[bytes, bytes, tuple[tuple[bytes, bytes | None], ...], bool]:
    """A size line for ``size``: (raw, size_text, extensions, BWS right after the size)."""
    digits = f"{size:x}" if size else "0"
    digits = digits.upper() if draw(st.booleans()) else digits
    size_text = ("0" * draw(st.integers(0, MAX_CHUNK_SIZE_DIGITS - len(digits))) + digits).encode()
    count = draw(st.integers(0, 3))
    items = [draw(extensions(i == 0, bws_after_size)) for i in range(count)]
    raw = size_text + b"".join(item[0] for item in items) + b"\r\n"
    bws_after_size = any(item[2] for item in items)
    return raw, size_text, tuple(item[1] for item in items), bws_after_size


@st.composite
def trailer_fields(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """(raw line, name, value as it should come out)."""
    name = draw(tokens.filter(lambda t: t.lower() not in FRAMING_NAMES))
    words = draw(st.lists(field_words, max_size=3))
    value = b""
    for word in words:
        value += (draw(st.sampled_from([b" ", b"\t", b"  "])) if value else b"") + word
    raw = name + b":" + draw(bws) + value + draw(bws) + b"\r\n"
    return raw, name, value


@dataclass(frozen=True)
class GeneratedBody:
    raw: bytes
    segments: list[Segment]
    data: bytes
    trailers: list[tuple[bytes, bytes]]
    h11_rejects: bool  # BWS right after a size: grammatical, but h11 refuses it
    # Where things are, for mutations: (start, end) of every size line and data CRLF.
    size_lines: list[tuple[int, int, bool]]  # (start, end, has extensions)
    data_crlfs: list[int]
    trailer_lines: list[tuple[int, int]]


@st.composite
def chunked_bodies(
    draw: st.DrawFn,
    *,
    max_chunks: int = 5,
    max_data: int = 40,
    allow_bws_after_size: bool = True,
    min_chunks: int = 0,
    min_trailers: int = 0,
) -> GeneratedBody:
    """A valid chunked body, built unit by unit, with the segments it must decode to."""
    raw = b""
    segments: list[Segment] = []
    size_line_spans: list[tuple[int, int, bool]] = []
    data_crlfs: list[int] = []
    trailer_lines: list[tuple[int, int]] = []
    h11_rejects = False
    chunk_data = st.binary(min_size=1, max_size=max_data)
    chunks = draw(st.lists(chunk_data, min_size=min_chunks, max_size=max(min_chunks, max_chunks)))
    for data in chunks:
        line, text, exts, after = draw(size_lines(len(data), allow_bws_after_size))
        h11_rejects |= after
        start = len(raw)
        segments.append(ChunkSize(start, start + len(line), len(data), text, exts))
        size_line_spans.append((start, start + len(line), bool(exts)))
        raw += line
        segments.append(ChunkData(len(raw), len(raw) + len(data), data))
        raw += data
        data_crlfs.append(len(raw))
        segments.append(ChunkDataEnd(len(raw), len(raw) + 2))
        raw += b"\r\n"
    line, text, exts, after = draw(size_lines(0, allow_bws_after_size))
    h11_rejects |= after
    segments.append(LastChunk(len(raw), len(raw) + len(line), text, exts))
    size_line_spans.append((len(raw), len(raw) + len(line), bool(exts)))
    raw += line
    trailers = []
    fields = draw(st.lists(trailer_fields(), min_size=min_trailers, max_size=max(min_trailers, 3)))
    for line, name, value in fields:
        segments.append(TrailerField(len(raw), len(raw) + len(line), name, value))
        trailer_lines.append((len(raw), len(raw) + len(line)))
        trailers.append((name, value))
        raw += line
    segments.append(BodyEnd(len(raw), len(raw) + 2))
    raw += b"\r\n"
    return GeneratedBody(
        raw,
        segments,
        b"".join(chunks),
        trailers,
        h11_rejects,
        size_line_spans,
        data_crlfs,
        trailer_lines,
    )


def check_generated(body: GeneratedBody, cuts: Sequence[int]) -> None:
    outcome = lab_outcome(body.raw, cuts)
    assert outcome.status == "ok", outcome.message
    assert outcome.segments == body.segments
    assert (outcome.data, outcome.trailers) == (body.data, body.trailers)


def check_against_h11(body: GeneratedBody, cuts: Sequence[int]) -> None:
    """Valid bodies: h11 gets the same data and trailers, unless the body has BWS right
    after a size (difference 2 in the module docstring), which h11 refuses."""
    ours = lab_outcome(body.raw, cuts)
    theirs = h11_outcome(body.raw, cuts)
    assert ours.status == "ok"
    if body.h11_rejects:
        assert theirs.status == "error"
        assert "illegal chunk header" in theirs.message
    else:
        assert theirs.status == "ok", theirs.message
        assert (theirs.data, theirs.trailers) == (ours.data, ours.trailers)


def check_round_trip(chunks: list[bytes], trailers: list[tuple[bytes, bytes]]) -> None:
    body = encode(chunks, trailers)
    assert decode(body) == (b"".join(chunks), trailers)


def check_invariant(body: bytes, cuts: Sequence[int]) -> None:
    """Arbitrary bytes: segments or ChunkedError, nothing else, and the same under any
    split. (lab_outcome lets any other exception through.)"""
    same_result(lab_outcome(body), lab_outcome(body, cuts))


# A lexicon that makes random bytes look like chunked coding often enough to go deep.
LEXICON = st.sampled_from(
    [
        b"0", b"1", b"5", b"a", b"F", b"00", b"\r\n", b"\r\n", b"\r\n", b"\r", b"\n", b";",
        b"=", b'"', b"\\", b" ", b"\t", b":", b"x", b"X-A", b"\x00", b"\x7f", b"\xff",
        b"0\r\n\r\n", b"3\r\nabc\r\n", b"0" * 16, b"g",
    ]
)  # fmt: skip
noise = st.one_of(st.binary(max_size=60), st.lists(LEXICON, max_size=30).map(b"".join))


def cuts_for(data: st.DataObject, body: bytes) -> list[int]:
    return data.draw(st.lists(st.integers(0, len(body)), max_size=10), label="cuts")


# --------------------------------------------------------------------- generated, quick runs


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_generated_valid_bodies_at_random_splits(data: st.DataObject) -> None:
    body = data.draw(chunked_bodies())
    check_generated(body, cuts_for(data, body.raw))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_generated_valid_bodies_against_h11(data: st.DataObject) -> None:
    body = data.draw(chunked_bodies())
    check_against_h11(body, cuts_for(data, body.raw))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=50), max_size=6),
    st.lists(trailer_fields().map(lambda t: (t[1], t[2])), max_size=3),
)
def test_round_trip(chunks: list[bytes], trailers: list[tuple[bytes, bytes]]) -> None:
    check_round_trip(chunks, trailers)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=30), st.lists(extensions(False), max_size=4))
def test_round_trip_with_extensions(
    data: bytes, items: list[tuple[bytes, tuple[bytes, bytes | None], bool]]
) -> None:
    exts = [item[1] for item in items]
    raw = ChunkedEncoder().chunk(data, exts)
    [size, chunk, _] = ChunkedDecoder().feed(raw)
    assert isinstance(size, ChunkSize)
    assert size.extensions == tuple(exts)
    assert chunk == ChunkData(size.end, size.end + len(data), data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_arbitrary_bytes_give_segments_or_chunked_error(data: st.DataObject) -> None:
    body = data.draw(noise)
    check_invariant(body, cuts_for(data, body))


# --------------------------------------------------------- h11 0.16.0: the documented differences

# (body, h11's status, our status, our error offset): one group per numbered point in the
# module docstring's "Where this decoder differs from h11 0.16.0".
DIFFERENCES = {
    "1 trailing SP after the size": (b"5 \r\nhello\r\n0\r\n\r\n", "ok", "error", 2),
    "1 trailing HTAB after the size": (b"5\t\r\nhello\r\n0\r\n\r\n", "ok", "error", 2),
    "1 trailing SP after last-chunk": (b"0 \r\n\r\n", "ok", "error", 2),
    "2 SP before ';'": (b"5 ;a\r\nhello\r\n0\r\n\r\n", "error", "ok", None),
    "2 HTAB before ';'": (b"5\t;a=b\r\nhello\r\n0\r\n\r\n", "error", "ok", None),
    "3 ';' without a name": (b"5;\r\nhello\r\n0\r\n\r\n", "ok", "error", 2),
    "3 space inside a value": (b"5;a=b c\r\nhello\r\n0\r\n\r\n", "ok", "error", 6),
    "3 unterminated quoted string": (b'5;a="b\r\nhello\r\n0\r\n\r\n', "ok", "error", 6),
    "3 trailing SP after an extension": (b"5;a=b \r\nhello\r\n0\r\n\r\n", "ok", "error", 6),
    "3 NUL in an extension": (b"5;a=\x00\r\nhello\r\n0\r\n\r\n", "ok", "error", 4),
    "3 CTL in an extension": (b"5;a=\x01\r\nhello\r\n0\r\n\r\n", "ok", "error", 4),
    "3 bare CR in an extension": (b"5;a\rb\r\nhello\r\n0\r\n\r\n", "ok", "error", 4),
    "4 17 hex digits": (b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", "ok", "error", 16),
    "4 20 hex digits": (b"0" * 19 + b"5\r\nhello\r\n0\r\n\r\n", "ok", "error", 16),
    "5 10 MB of extensions in one read": (
        b"5;a=" + b"x" * 10_000_000 + b"\r\nhello\r\n0\r\n\r\n", "ok", "error", 1025,
    ),
    "5 100 KiB of trailers in one read": (
        b"0\r\n" + b"X: " + b"v" * 100 * 1024 + b"\r\n\r\n", "ok", "error", 3 + 16384,
    ),
    "6 lone LF ends a trailer line": (b"0\r\nX-A: b\n\r\n", "ok", "error", 9),
    "6 lone LF as the final line": (b"0\r\nX-A: b\r\n\n", "ok", "error", 11),
    "6 lone LF ends the body": (b"0\r\n\n", "ok", "error", 3),
    "7 obs-fold in trailers": (b"0\r\nX-A: b\r\n c\r\n\r\n", "ok", "error", 11),
    "8 CTL in a trailer value": (b"0\r\nX-A: b\x01c\r\n\r\n", "ok", "error", 9),
    "8 DEL in a trailer value": (b"0\r\nX-A: b\x7fc\r\n\r\n", "ok", "error", 9),
    "9 Content-Length: x as a trailer": (b"0\r\nContent-Length: x\r\n\r\n", "error", "ok", None),
    "9 Transfer-Encoding: gzip as a trailer": (
        b"0\r\nTransfer-Encoding: gzip\r\n\r\n", "error", "ok", None,
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "h11_status", "lab_status", "offset"), DIFFERENCES.values(), ids=DIFFERENCES.keys()
)
def test_documented_difference_from_h11(
    body: bytes, h11_status: str, lab_status: str, offset: int | None
) -> None:
    theirs, ours = h11_outcome(body), lab_outcome(body)
    assert theirs.status == h11_status, theirs.message
    assert ours.status == lab_status, ours.message
    assert ours.error_offset == offset


def test_h11_extension_limit_depends_on_read_sizes() -> None:
    """Difference 5, the other half: h11 refuses the same extension when it comes in pieces
    (its 16 KiB incomplete-event limit), so its answer depends on the reads. Ours does not."""
    body = b"5;a=" + b"x" * 20_000 + b"\r\nhello\r\n0\r\n\r\n"
    assert h11_outcome(body).status == "ok"
    assert h11_outcome(body, range(0, len(body), 1024)).message == "Receive buffer too long"
    same_result(lab_outcome(body), lab_outcome(body, range(0, len(body), 1024)))


def test_obs_fold_h11_unfolds_we_refuse() -> None:
    assert h11_outcome(b"0\r\nX-A: b\r\n c\r\n\r\n").trailers == [(b"X-A", b"b c")]


# Request-smuggling vectors in chunked coding (RFC 9112 §7.1, §11.2): h11 0.16.0 and the lab
# both refuse every one.
SMUGGLING = {
    "CVE-2025-43859: bytes other than CRLF after data": b"3\r\nxxx__1a\r\n",
    "LF alone after data": b"3\r\nxxx\n0\r\n\r\n",
    "CR then not LF after data": b"3\r\nxxx\rx0\r\n\r\n",
    "CVE-2025-22871: lone LF ends the size line": b"5\nhello\r\n0\r\n\r\n",
    "bare CR ends the size line": b"5\rhello\r\n0\r\n\r\n",
    "0x prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "plus sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "minus sign": b"-5\r\nhello\r\n0\r\n\r\n",
    "empty size": b"\r\nhello\r\n0\r\n\r\n",
    "non-hex": b"5g\r\nhello\r\n0\r\n\r\n",
    "21 hex digits": b"0" * 20 + b"5\r\nhello\r\n0\r\n\r\n",
    "size too small": b"4\r\nhello\r\n0\r\n\r\n",
    "trailer without colon": b"0\r\nXA\r\n\r\n",
    "whitespace before a trailer colon": b"0\r\nX-A : b\r\n\r\n",
    "NUL in a trailer": b"0\r\nX-A: b\x00c\r\n\r\n",
}


@pytest.mark.parametrize("body", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggling_vectors_refused_by_both(body: bytes) -> None:
    for cuts in ([], bytewise(body)):
        assert h11_outcome(body, cuts).status == "error"
        assert lab_outcome(body, cuts).status == "error"
