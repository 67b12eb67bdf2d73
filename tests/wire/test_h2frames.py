"""lab.wire.h2frames: vectors for every frame type and flag, every split, round trips,
hyperframe and hpack side by side, and a real h2 exchange.

The heavy hypothesis and differential runs are in test_h2frames_fuzz.py (marked ``fuzz``);
the generators and helpers they share live here.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.frame_buffer
import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe import frame as hf
from hyperframe.exceptions import HyperframeError
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.fuzz.ref_h2 import hyperframe_view, lab_view
from lab.wire import h2frames as h2f
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import (
    MAX_FIELD_BLOCK_SIZE,
    MAX_FRAME_SIZE_LIMIT,
    MAX_HEADER_LIST_SIZE,
    MAX_STREAM_ID,
    PREFACE,
    ContinuationFrame,
    DataFrame,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameType,
    GoAwayFrame,
    H2FrameError,
    HeaderBlock,
    HeaderBlockDecoder,
    HeadersFrame,
    HPACKError,
    PingFrame,
    Preface,
    PriorityFrame,
    PushPromiseFrame,
    Representation,
    RstStreamFrame,
    Setting,
    SettingId,
    SettingsFrame,
    UnknownFrame,
    WindowUpdateFrame,
    encode_frame,
    parse,
)
from lab.wire.segment import Segment

MASK = 0x7FFFFFFF

# ------------------------------------------------------------------------------- helpers


@dataclass
class Outcome:
    """What the decoder made of some bytes: "ok", "error" or "incomplete", and details."""

    status: str
    segments: list[Segment] = field(default_factory=list)
    error_offset: int | None = None
    message: str = ""
    error_code: int | None = None

    @property
    def frames(self) -> list[Frame]:
        return [s for s in self.segments if isinstance(s, Frame)]


def pieces(data: bytes, cuts: Sequence[int] = ()) -> list[bytes]:
    """``data`` cut at the given indexes (any order, repeats and 0 allowed); no empty
    pieces."""
    bounds = [0, *sorted({c for c in cuts if 0 <= c <= len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def bytewise(data: bytes) -> list[int]:
    return list(range(1, len(data)))


def lab_outcome(data: bytes, cuts: Sequence[int] = (), **options: Any) -> Outcome:
    """Feed ``data`` in pieces; the segments, or the error with the segments before it.
    The preface is expected when the data starts with ``P`` unless told otherwise. Any
    exception other than H2FrameError propagates: that is a bug."""
    options.setdefault("expect_preface", data[:1] == b"P")
    decoder = FrameDecoder(**options)
    segments: list[Segment] = []
    try:
        for piece in pieces(data, cuts):
            segments += decoder.feed(piece)
    except H2FrameError as exc:
        segments += exc.segments
        return Outcome("error", segments, exc.offset, exc.message, exc.error_code)
    try:
        decoder.eof()
    except H2FrameError as exc:
        return Outcome("incomplete", segments, exc.offset, exc.message, exc.error_code)
    return Outcome("ok", segments)


def same_result(a: Outcome, b: Outcome) -> None:
    """Two runs of the decoder over the same bytes agree."""
    assert (a.status, a.error_offset, a.message, a.error_code) == (
        b.status,
        b.error_offset,
        b.message,
        b.error_code,
    )
    assert a.segments == b.segments


# ------------------------------------------------------------------------------- vectors

Unit = tuple[bytes, type, tuple[object, ...], dict[str, Any]]


def unit(raw: bytes, cls: type, *fields: object, **kw: Any) -> Unit:
    return raw, cls, fields, kw


def vector(*units: Unit) -> tuple[bytes, list[Segment]]:
    """Bytes made of the units' raw frames, and the segments they must decode to: each
    spans exactly its unit's bytes, with the common fields read from the frame header."""
    body = b""
    expected: list[Segment] = []
    for raw, cls, fields, kw in units:
        start = len(body)
        if cls is Preface:
            expected.append(Preface(start, start + len(raw)))
        else:
            length = int.from_bytes(raw[:3], "big")
            sid = int.from_bytes(raw[5:9], "big")
            expected.append(
                cls(
                    start, start + len(raw), length, raw[3], raw[4], sid & MASK, raw[9:], *fields,
                    reserved=sid > MASK, **kw,
                )
            )  # fmt: skip
        body += raw
    return body, expected


def with_reserved_bit(raw: bytes) -> bytes:
    """The frame with the reserved bit of its stream identifier set."""
    return raw[:5] + bytes([raw[5] | 0x80]) + raw[6:]


def with_flags(raw: bytes, flags: int) -> bytes:
    return raw[:4] + bytes([flags]) + raw[5:]


def payload_bit(raw: bytes) -> bytes:
    """The frame with the top bit of its payload's first octet set."""
    return raw[:9] + bytes([raw[9] | 0x80]) + raw[10:]


# RFC 7541 C.3.1: :method GET, :scheme http, :path /, :authority www.example.com
BLOCK = bytes.fromhex("828684410f7777772e6578616d706c652e636f6d")
U32 = struct.Struct(">I")

# fmt: off
VALID: dict[str, tuple[bytes, list[Segment]]] = {
    "preface and empty SETTINGS": vector(
        unit(PREFACE, Preface), unit(h2f.settings(), SettingsFrame, ())
    ),
    "SETTINGS with every defined setting and an unknown one": vector(
        unit(
            h2f.settings(
                [(1, 4096), (2, 0), (3, 100), (4, 65535), (5, 16384), (6, 8192), (8, 1), (0x99, 7)]
            ),
            SettingsFrame,
            (
                Setting(1, "HEADER_TABLE_SIZE", 4096),
                Setting(2, "ENABLE_PUSH", 0),
                Setting(3, "MAX_CONCURRENT_STREAMS", 100),
                Setting(4, "INITIAL_WINDOW_SIZE", 65535),
                Setting(5, "MAX_FRAME_SIZE", 16384),
                Setting(6, "MAX_HEADER_LIST_SIZE", 8192),
                Setting(8, "ENABLE_CONNECT_PROTOCOL", 1),
                Setting(0x99, "UNKNOWN(0x0099)", 7),
            ),
        )
    ),
    "SETTINGS at the edges of their ranges": vector(
        unit(
            h2f.settings([(4, MAX_STREAM_ID), (5, MAX_FRAME_SIZE_LIMIT), (3, 0xFFFFFFFF)]),
            SettingsFrame,
            (
                Setting(4, "INITIAL_WINDOW_SIZE", MAX_STREAM_ID),
                Setting(5, "MAX_FRAME_SIZE", MAX_FRAME_SIZE_LIMIT),
                Setting(3, "MAX_CONCURRENT_STREAMS", 0xFFFFFFFF),
            ),
        )
    ),
    "SETTINGS ACK": vector(unit(h2f.settings(ack=True), SettingsFrame, ())),
    "a repeated setting is kept twice": vector(
        unit(
            h2f.settings([(3, 100), (3, 200)]),
            SettingsFrame,
            (Setting(3, "MAX_CONCURRENT_STREAMS", 100), Setting(3, "MAX_CONCURRENT_STREAMS", 200)),
        )
    ),
    "DATA": vector(unit(h2f.data(1, b"hello"), DataFrame, None, b"hello")),
    "DATA END_STREAM, empty": vector(unit(h2f.data(3, end_stream=True), DataFrame, None, b"")),
    "DATA PADDED": vector(unit(h2f.data(1, b"abc", pad_length=4), DataFrame, 4, b"abc")),
    "DATA PADDED with Pad Length 0": vector(
        unit(h2f.data(1, b"abc", pad_length=0), DataFrame, 0, b"abc")
    ),
    "DATA all padding but the Pad Length octet": vector(
        unit(h2f.data(1, b"", pad_length=5, end_stream=True), DataFrame, 5, b"")
    ),
    "DATA with unused flags and the reserved bit": vector(
        unit(with_reserved_bit(with_flags(h2f.data(1, b"x"), 0xF6)), DataFrame, None, b"x")
    ),
    "DATA at the maximum frame size, on the largest stream": vector(
        unit(h2f.data(MAX_STREAM_ID, bytes(16384)), DataFrame, None, bytes(16384))
    ),
    "HEADERS": vector(unit(h2f.headers(1, BLOCK), HeadersFrame, None, None, None, None, BLOCK)),
    "HEADERS END_STREAM": vector(
        unit(h2f.headers(1, BLOCK, end_stream=True), HeadersFrame, None, None, None, None, BLOCK)
    ),
    "HEADERS PADDED": vector(
        unit(h2f.headers(1, BLOCK, pad_length=2), HeadersFrame, 2, None, None, None, BLOCK)
    ),
    "HEADERS PRIORITY, exclusive": vector(
        unit(
            h2f.headers(5, BLOCK, depends_on=3, weight=255, exclusive=True),
            HeadersFrame, None, True, 3, 255, BLOCK,
        )
    ),
    "HEADERS PADDED and PRIORITY": vector(
        unit(
            h2f.headers(5, BLOCK, depends_on=0, weight=0, pad_length=7),
            HeadersFrame, 7, False, 0, 0, BLOCK,
        )
    ),
    "HEADERS padded, empty fragment (hyperframe refuses it)": vector(
        unit(h2f.headers(1, b"", pad_length=4), HeadersFrame, 4, None, None, None, b"")
    ),
    "HEADERS PADDED and PRIORITY, padding exactly fits": vector(
        unit(
            h2f.headers(1, b"", pad_length=3, depends_on=0),
            HeadersFrame, 3, False, 0, 15, b"",
        )
    ),
    "HEADERS then CONTINUATIONs": vector(
        unit(
            h2f.headers(1, BLOCK[:3], end_headers=False),
            HeadersFrame, None, None, None, None, BLOCK[:3],
        ),
        unit(h2f.continuation(1, BLOCK[3:9], end_headers=False), ContinuationFrame, BLOCK[3:9]),
        unit(h2f.continuation(1, b"", end_headers=False), ContinuationFrame, b""),
        unit(h2f.continuation(1, BLOCK[9:]), ContinuationFrame, BLOCK[9:]),
    ),
    "PRIORITY": vector(unit(h2f.priority(3, 1, 200), PriorityFrame, False, 1, 200)),
    "PRIORITY exclusive, with unused flags": vector(
        unit(with_flags(h2f.priority(3, 0, exclusive=True), 0xFF), PriorityFrame, True, 0, 15)
    ),
    "RST_STREAM": vector(unit(h2f.rst_stream(1, ErrorCode.CANCEL), RstStreamFrame, 8)),
    "RST_STREAM with an unknown error code": vector(
        unit(h2f.rst_stream(1, 0xFFFFFFFF), RstStreamFrame, 0xFFFFFFFF)
    ),
    "PUSH_PROMISE": vector(unit(h2f.push_promise(1, 2, BLOCK), PushPromiseFrame, None, 2, BLOCK)),
    "PUSH_PROMISE PADDED": vector(
        unit(h2f.push_promise(1, 4, BLOCK, pad_length=9), PushPromiseFrame, 9, 4, BLOCK)
    ),
    "PUSH_PROMISE padding exactly fits": vector(
        unit(h2f.push_promise(1, 4, b"", pad_length=3), PushPromiseFrame, 3, 4, b"")
    ),
    "PUSH_PROMISE then CONTINUATION": vector(
        unit(
            h2f.push_promise(3, 2, BLOCK[:1], end_headers=False),
            PushPromiseFrame, None, 2, BLOCK[:1],
        ),
        unit(h2f.continuation(3, BLOCK[1:]), ContinuationFrame, BLOCK[1:]),
    ),
    "PUSH_PROMISE, reserved bit in the promised stream ID": vector(
        unit(payload_bit(h2f.push_promise(1, 2, BLOCK)), PushPromiseFrame, None, 2, BLOCK)
    ),
    "PING": vector(unit(h2f.ping(b"\x00\x01\x02\x03\x04\x05\x06\x07"), PingFrame, bytes(range(8)))),
    "PING ACK": vector(unit(h2f.ping(b"12345678", ack=True), PingFrame, b"12345678")),
    "GOAWAY with debug data": vector(
        unit(h2f.goaway(5, ErrorCode.ENHANCE_YOUR_CALM, b"calm"), GoAwayFrame, 5, 0xB, b"calm")
    ),
    "GOAWAY, reserved bit in the last stream ID": vector(
        unit(payload_bit(h2f.goaway(MAX_STREAM_ID)), GoAwayFrame, MAX_STREAM_ID, 0, b"")
    ),
    "WINDOW_UPDATE, connection and stream": vector(
        unit(h2f.window_update(0, 65535), WindowUpdateFrame, 65535),
        unit(h2f.window_update(1, MAX_STREAM_ID), WindowUpdateFrame, MAX_STREAM_ID),
    ),
    "WINDOW_UPDATE, reserved bit in the increment (hyperframe refuses it)": vector(
        unit(payload_bit(h2f.window_update(1, 10)), WindowUpdateFrame, 10)
    ),
    "unknown frame types, any stream, any flags": vector(
        unit(encode_frame(0x0B, 0xFF, 7, b"abc"), UnknownFrame),
        unit(encode_frame(0xFF, 0x01, 0, b""), UnknownFrame),
    ),
    "ALTSVC (0xa) is unknown to RFC 9113": vector(
        unit(encode_frame(0x0A, 0, 0, b"\x00\x03abcfield"), UnknownFrame)
    ),
    "a connection's worth": vector(
        unit(PREFACE, Preface),
        unit(
            h2f.settings({SettingId.MAX_CONCURRENT_STREAMS: 100}),
            SettingsFrame, (Setting(3, "MAX_CONCURRENT_STREAMS", 100),),
        ),
        unit(h2f.window_update(0, 1 << 20), WindowUpdateFrame, 1 << 20),
        unit(h2f.headers(1, BLOCK, end_stream=True), HeadersFrame, None, None, None, None, BLOCK),
        unit(h2f.settings(ack=True), SettingsFrame, ()),
        unit(h2f.rst_stream(1, 0), RstStreamFrame, 0),
        unit(h2f.goaway(1), GoAwayFrame, 1, 0, b""),
    ),
}

# Well-framed frames that are invalid where they stand: decoded with a problem note, or in
# strict mode refused. (bytes, index of the frame with the problem, words in the note,
# strict-mode offset, error code)
HEADERS_OPEN = h2f.headers(1, BLOCK[:4], end_headers=False)
H = len(HEADERS_OPEN)


def one_setting(ident: int, value: int) -> bytes:
    return encode_frame(FrameType.SETTINGS, 0, 0, struct.pack(">HI", ident, value))


PROBLEMS: dict[str, tuple[bytes, int, str, int, int]] = {
    "WINDOW_UPDATE 0 on a stream": (
        encode_frame(8, 0, 1, bytes(4)), 0, "increment 0 (a stream error", 9, 1,
    ),
    "WINDOW_UPDATE 0 on the connection": (
        encode_frame(8, 0, 0, bytes(4)), 0, "increment 0 (a connection error", 9, 1,
    ),
    "WINDOW_UPDATE 0 with the reserved bit": (
        encode_frame(8, 0, 0, U32.pack(0x80000000)), 0, "increment 0", 9, 1,
    ),
    "PUSH_PROMISE of an odd stream": (
        encode_frame(5, 4, 1, U32.pack(3) + BLOCK), 0, "promises stream 3", 9, 1,
    ),
    "PUSH_PROMISE of stream 0": (
        encode_frame(5, 4, 1, U32.pack(0) + BLOCK), 0, "promises stream 0", 9, 1,
    ),
    "PUSH_PROMISE PADDED, odd stream": (
        encode_frame(5, 0xC, 1, b"\x00" + U32.pack(5)), 0, "promises stream 5", 10, 1,
    ),
    "ENABLE_PUSH=2": (one_setting(2, 2), 0, "ENABLE_PUSH=2: only 0 or 1", 11, 1),
    "ENABLE_CONNECT_PROTOCOL=2": (one_setting(8, 2), 0, "ENABLE_CONNECT_PROTOCOL=2", 11, 1),
    "INITIAL_WINDOW_SIZE=2^31": (one_setting(4, 2**31), 0, "INITIAL_WINDOW_SIZE=2147483648", 11, 3),
    "MAX_FRAME_SIZE=16383": (one_setting(5, 16383), 0, "MAX_FRAME_SIZE=16383: outside", 11, 1),
    "MAX_FRAME_SIZE=2^24": (one_setting(5, 2**24), 0, "MAX_FRAME_SIZE=16777216", 11, 1),
    "two bad settings, both noted": (
        encode_frame(4, 0, 0, struct.pack(">HIHI", 2, 7, 8, 9)),
        0, "ENABLE_PUSH=7: only 0 or 1 (RFC 9113 §6.5.2); ENABLE_CONNECT_PROTOCOL=9", 11, 1,
    ),
    "PRIORITY on itself": (
        encode_frame(2, 0, 3, U32.pack(3) + b"\x0f"), 0, "stream 3 depends on itself", 9, 1,
    ),
    "HEADERS PRIORITY on itself": (
        encode_frame(1, 0x24, 3, U32.pack(3) + b"\x0f" + BLOCK),
        0, "stream 3 depends on itself", 9, 1,
    ),
    "CONTINUATION with no block open": (
        h2f.continuation(1, BLOCK), 0, "CONTINUATION with no field block open", 3, 1,
    ),
    "CONTINUATION after END_HEADERS": (
        h2f.headers(1, BLOCK) + h2f.continuation(1, b""),
        1, "no field block open", len(h2f.headers(1, BLOCK)) + 3, 1,
    ),
    "DATA inside a field block": (
        HEADERS_OPEN + h2f.data(1, b"x"), 1, "DATA inside the field block of stream 1", H + 3, 1,
    ),
    "CONTINUATION of another stream": (
        HEADERS_OPEN + h2f.continuation(3, BLOCK[4:]),
        1, "CONTINUATION of stream 3 inside the field block of stream 1", H + 5, 1,
    ),
    "an unknown frame inside a field block": (
        HEADERS_OPEN + encode_frame(0xB, 0, 0, b""),
        1, "UNKNOWN(0x0b) inside the field block", H + 3, 1,
    ),
    "a second HEADERS inside a field block": (
        HEADERS_OPEN + h2f.headers(3, BLOCK), 1, "HEADERS inside the field block", H + 3, 1,
    ),
}
DROPPED_BLOCK = HEADERS_OPEN + h2f.ping() + h2f.continuation(1, BLOCK[4:])

# Refused: (bytes, error offset, words in the message, error code)
FSE, PE = ErrorCode.FRAME_SIZE_ERROR, ErrorCode.PROTOCOL_ERROR
TOO_BIG_HEADER = b"\xff\xff\xff\x00\x00\x00\x00\x00\x01"  # DATA claiming 16 MiB - 1
INVALID: dict[str, tuple[bytes, int, str, int]] = {
    # --- the preface (§3.4): the first byte that differs
    "preface: HTTP/1.1 PUT": (
        b"PUT / HTTP/1.1\r\n\r\n", 1, "not the HTTP/2 client preface: byte 1", PE,
    ),
    "preface: HTTP/1.1 with PRI": (
        b"PRI * HTTP/1.1\r\n\r\n", 11, "byte 11 is b'1', expected b'2'", PE,
    ),
    "preface: the last byte": (PREFACE[:-1] + b"\r", 23, "byte 23", PE),
    "preface: SM mangled": (PREFACE[:18] + b"XM\r\n\r\n", 18, "byte 18", PE),
    # --- Length (§4.2): refused at the header, offset 0 of the frame
    "Length one over the maximum": (
        encode_frame(0, 0, 1, bytes(16385)), 0, "Length 16385 is over", FSE,
    ),
    "a header claiming 16 MiB": (TOO_BIG_HEADER, 0, "Length 16777215", FSE),
    "a second frame too long": (
        h2f.data(1, b"ok") + TOO_BIG_HEADER, 11, "over the maximum frame size", FSE,
    ),
    # --- stream association (§6.x): offset of the Stream Identifier
    "DATA on stream 0": (encode_frame(0, 0, 0, b"x"), 5, "DATA frame on stream 0", PE),
    "HEADERS on stream 0": (encode_frame(1, 4, 0, BLOCK), 5, "HEADERS frame on stream 0", PE),
    "PRIORITY on stream 0": (encode_frame(2, 0, 0, bytes(5)), 5, "PRIORITY frame on stream 0", PE),
    "RST_STREAM on stream 0": (
        encode_frame(3, 0, 0, bytes(4)), 5, "RST_STREAM frame on stream 0", PE,
    ),
    "PUSH_PROMISE on stream 0": (
        encode_frame(5, 4, 0, U32.pack(2)), 5, "PUSH_PROMISE frame on stream 0", PE,
    ),
    "CONTINUATION on stream 0": (
        encode_frame(9, 4, 0, b""), 5, "CONTINUATION frame on stream 0", PE,
    ),
    "SETTINGS on stream 1": (encode_frame(4, 0, 1, b""), 5, "SETTINGS frame on stream 1", PE),
    "PING on stream 1": (encode_frame(6, 0, 1, bytes(8)), 5, "PING frame on stream 1", PE),
    "GOAWAY on stream 1": (encode_frame(7, 0, 1, bytes(8)), 5, "GOAWAY frame on stream 1", PE),
    "DATA on stream 0 with the reserved bit": (
        with_reserved_bit(encode_frame(0, 0, 0, b"")), 5, "stream 0", PE,
    ),
    # --- sizes a type forbids: offset of the Length field
    "PRIORITY of 4": (encode_frame(2, 0, 1, bytes(4)), 0, "PRIORITY frame with Length 4", FSE),
    "PRIORITY of 6": (encode_frame(2, 0, 1, bytes(6)), 0, "exactly 5 octets", FSE),
    "RST_STREAM of 3": (encode_frame(3, 0, 1, bytes(3)), 0, "RST_STREAM frame with Length 3", FSE),
    "RST_STREAM of 5": (encode_frame(3, 0, 1, bytes(5)), 0, "exactly 4 octets", FSE),
    "PING of 7": (encode_frame(6, 0, 0, bytes(7)), 0, "PING frame with Length 7", FSE),
    "PING of 9": (encode_frame(6, 1, 0, bytes(9)), 0, "exactly 8 octets", FSE),
    "WINDOW_UPDATE of 3": (
        encode_frame(8, 0, 0, bytes(3)), 0, "WINDOW_UPDATE frame with Length 3", FSE,
    ),
    "WINDOW_UPDATE of 5": (encode_frame(8, 0, 1, bytes(5)), 0, "exactly 4 octets", FSE),
    "SETTINGS of 5": (encode_frame(4, 0, 0, bytes(5)), 0, "a multiple of 6", FSE),
    "SETTINGS of 7": (encode_frame(4, 0, 0, bytes(7)), 0, "a multiple of 6", FSE),
    "SETTINGS ACK with a setting": (
        encode_frame(4, 1, 0, bytes(6)), 0, "SETTINGS ACK with Length 6", FSE,
    ),
    "GOAWAY of 7": (encode_frame(7, 0, 0, bytes(7)), 0, "no room for the last stream ID", FSE),
    "DATA PADDED, empty": (encode_frame(0, 8, 1, b""), 0, "no room for the Pad Length octet", FSE),
    "HEADERS PRIORITY of 4": (
        encode_frame(1, 0x24, 1, bytes(4)), 0, "no room for the priority fields", FSE,
    ),
    "HEADERS PADDED+PRIORITY of 5": (
        encode_frame(1, 0x2C, 1, bytes(5)),
        0, "the Pad Length octet and the priority fields (6 octets)", FSE,
    ),
    "PUSH_PROMISE of 3": (
        encode_frame(5, 4, 1, bytes(3)), 0, "no room for the promised stream ID", FSE,
    ),
    "PUSH_PROMISE PADDED of 4": (encode_frame(5, 0xC, 1, bytes(4)), 0, "(5 octets)", FSE),
    "a wrong size on the wrong stream: the size is named": (
        encode_frame(6, 0, 1, bytes(7)), 0, "Length 7", FSE,
    ),
    # --- padding (§6.1, §6.2, §6.6): offset of the Pad Length octet
    "DATA Pad Length = payload": (
        encode_frame(0, 8, 1, b"\x05" + bytes(4)), 9, "DATA Pad Length 5, but only 4", PE,
    ),
    "DATA Pad Length 255 of 1": (encode_frame(0, 8, 1, b"\xff"), 9, "only 0 octets", PE),
    "HEADERS Pad Length = payload": (
        encode_frame(1, 0xC, 1, b"\x04abc"), 9, "HEADERS Pad Length 4", PE,
    ),
    "HEADERS padding over the priority fields": (
        encode_frame(1, 0x2C, 1, b"\x03" + bytes(5)), 9, "and the fields before the fragment", PE,
    ),
    "PUSH_PROMISE padding over the promised stream ID": (
        encode_frame(5, 0xC, 1, b"\x04" + U32.pack(2)),
        9, "PUSH_PROMISE Pad Length 4, but only 0", PE,
    ),
    # --- a bad frame after good ones: what came before is delivered
    "a bad frame after a good connection start": (
        PREFACE + h2f.settings() + h2f.data(1, b"a") + encode_frame(6, 0, 0, bytes(7)),
        24 + 9 + 10, "PING frame with Length 7", FSE,
    ),
}

# Valid so far, but cut short: eof() names the end of the input.
INCOMPLETE: dict[str, tuple[bytes, str]] = {
    "part of the preface": (PREFACE[:10], "inside the client connection preface"),
    "the preface, nothing else, is complete": (PREFACE, ""),
    "nothing at all is complete": (b"", ""),
    "part of a header": (h2f.data(1, b"abc")[:5], "inside a frame header"),
    "a header without its payload": (
        h2f.data(1, b"abc")[:9], "inside a frame (3 more bytes announced)",
    ),
    "most of a payload": (h2f.data(1, b"abc")[:11], "(1 more byte announced)"),
}
# fmt: on

ALL_INPUTS = (
    [body for body, _ in VALID.values()]
    + [body for body, *_ in PROBLEMS.values()]
    + [body for body, *_ in INVALID.values()]
    + [body for body, _ in INCOMPLETE.values()]
)


# --------------------------------------------------------------------- valid input, every split


@pytest.mark.parametrize(("body", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_vector_whole(body: bytes, expected: list[Segment]) -> None:
    decoder = FrameDecoder(expect_preface=body[:1] == b"P")
    assert decoder.feed(body) == expected
    assert decoder.buffered == 0
    assert decoder.offset == len(body)
    decoder.eof()  # complete: no complaint
    assert all(s.problem is None for s in expected if isinstance(s, Frame))


@pytest.mark.parametrize(("body", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_vector_byte_by_byte(body: bytes, expected: list[Segment]) -> None:
    outcome = lab_outcome(body, bytewise(body))
    assert outcome.status == "ok"
    assert outcome.segments == expected


@pytest.mark.parametrize(("body", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_vector_in_strict_mode(body: bytes, expected: list[Segment]) -> None:
    assert lab_outcome(body, strict=True).segments == expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_INPUTS), st.lists(st.integers(0, 20_000), max_size=8))
def test_any_split_of_any_vector(body: bytes, cuts: list[int]) -> None:
    """Whole input and input cut anywhere give the same segments, or the same error."""
    cuts = [c % (len(body) + 1) for c in cuts]
    same_result(lab_outcome(body), lab_outcome(body, cuts))
    same_result(lab_outcome(body, strict=True), lab_outcome(body, cuts, strict=True))


def test_offsets_start_where_told() -> None:
    body, expected = VALID["a connection's worth"]
    decoder = FrameDecoder(expect_preface=True, offset=1000)
    segments = decoder.feed(body)
    assert [(s.start - 1000, s.end - 1000) for s in segments] == [
        (s.start, s.end) for s in expected
    ]
    assert decoder.offset == 1000 + len(body)
    with pytest.raises(H2FrameError) as info:
        FrameDecoder(offset=1000).feed(encode_frame(6, 0, 1, bytes(8)))
    assert info.value.offset == 1005


def test_feed_accepts_bytearray_and_ignores_empty_feeds() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    [frame] = decoder.feed(bytearray(h2f.ping()))
    assert isinstance(frame, PingFrame)
    assert decoder.feed(b"") == []


def test_frames_come_out_whole_and_the_buffer_holds_one_frame() -> None:
    frame = h2f.data(1, bytes(16384))
    decoder = FrameDecoder()
    for i in range(0, len(frame) - 1000, 1000):
        assert decoder.feed(frame[i : i + 1000]) == []
        assert decoder.buffered == i + 1000
    [data] = decoder.feed(frame[len(frame) // 1000 * 1000 :])
    assert isinstance(data, DataFrame)
    assert data.data == bytes(16384)
    assert decoder.buffered == 0


# ------------------------------------------------------------------- invalid input, every split


@pytest.mark.parametrize(
    ("body", "offset", "message", "code"), INVALID.values(), ids=INVALID.keys()
)
def test_invalid_vector_whole(body: bytes, offset: int, message: str, code: int) -> None:
    decoder = FrameDecoder(expect_preface=body[:1] == b"P")
    with pytest.raises(H2FrameError) as info:
        decoder.feed(body)
    assert info.value.offset == offset
    assert message in info.value.message
    assert info.value.error_code == code
    assert info.value.message.endswith(ErrorCode(code).name)
    assert isinstance(info.value, ProtocolError)
    # Everything before the bad frame was still delivered, and nothing past the bad byte.
    assert all(seg.end <= offset for seg in info.value.segments)
    assert info.value.segments == lab_outcome(body[:offset]).segments


@pytest.mark.parametrize(
    ("body", "offset", "message", "code"), INVALID.values(), ids=INVALID.keys()
)
def test_invalid_vector_byte_by_byte(body: bytes, offset: int, message: str, code: int) -> None:
    whole = lab_outcome(body)
    split = lab_outcome(body, bytewise(body))
    assert split.status == "error"
    assert split.error_offset == offset
    same_result(whole, split)


def test_the_prefix_before_an_error_is_not_an_error() -> None:
    """The error offset names the bad field: everything before it, fed alone, is accepted
    (complete, or waiting for more)."""
    for body, offset, _, _ in INVALID.values():
        assert lab_outcome(body[:offset]).status != "error", body[:40]
    for body, _, _, offset, _ in PROBLEMS.values():
        assert lab_outcome(body[:offset], strict=True).status != "error", body[:40]


def test_not_a_preface_at_all() -> None:
    with pytest.raises(H2FrameError, match="byte 0 is b'G', expected b'P'") as info:
        FrameDecoder(expect_preface=True).feed(b"GET / HTTP/1.1\r\n\r\n")
    assert info.value.offset == 0
    # Split: the preface is checked as it arrives, nothing is held.
    decoder = FrameDecoder(expect_preface=True)
    assert decoder.feed(PREFACE[:5]) == []
    assert decoder.buffered == 0
    with pytest.raises(H2FrameError) as info:
        decoder.feed(b" HTTP/1.1")
    assert info.value.offset == 11


def test_a_failed_decoder_refuses_more_input() -> None:
    decoder = FrameDecoder()
    with pytest.raises(H2FrameError):
        decoder.feed(encode_frame(6, 0, 0, bytes(7)))
    with pytest.raises(H2FrameError, match="already failed") as info:
        decoder.feed(h2f.ping())
    assert info.value.offset == 0
    assert info.value.error_code == ErrorCode.FRAME_SIZE_ERROR
    with pytest.raises(H2FrameError, match="already failed"):
        decoder.eof()


@pytest.mark.parametrize(("body", "message"), INCOMPLETE.values(), ids=INCOMPLETE.keys())
def test_eof_on_incomplete_input(body: bytes, message: str) -> None:
    for cuts in ([], bytewise(body)):
        decoder = FrameDecoder(expect_preface=body[:1] == b"P", offset=7)
        for piece in pieces(body, cuts):
            decoder.feed(piece)
        if not message:
            decoder.eof()
            continue
        with pytest.raises(H2FrameError) as info:
            decoder.eof()
        assert info.value.offset == 7 + len(body)
        assert message in info.value.message
        with pytest.raises(H2FrameError, match="already failed"):
            decoder.feed(h2f.ping())


# ------------------------------------------------------------------ problems: noted, or strict


@pytest.mark.parametrize(
    ("body", "index", "words", "offset", "code"), PROBLEMS.values(), ids=PROBLEMS.keys()
)
def test_problem_is_noted_and_decoding_goes_on(
    body: bytes, index: int, words: str, offset: int, code: int
) -> None:
    tail = h2f.ping(b"goes on!")  # a viewer keeps showing frames after the bad one
    for cuts in ([], bytewise(body + tail)):
        outcome = lab_outcome(body + tail, cuts)
        assert outcome.status == "ok", outcome.message
        frames = outcome.frames
        assert words in (frames[index].problem or "")
        assert all(f.problem is None for i, f in enumerate(frames) if i != index)
        assert isinstance(frames[-1], PingFrame)
        assert frames[-1].opaque_data == b"goes on!"
        assert "; problem: " + (frames[index].problem or "") in frames[index].note()


@pytest.mark.parametrize(
    ("body", "index", "words", "offset", "code"), PROBLEMS.values(), ids=PROBLEMS.keys()
)
def test_problem_raises_in_strict_mode(
    body: bytes, index: int, words: str, offset: int, code: int
) -> None:
    for cuts in ([], bytewise(body)):
        outcome = lab_outcome(body, cuts, strict=True)
        assert outcome.status == "error"
        assert (outcome.error_offset, outcome.error_code) == (offset, code)
        assert words.split("; ", 1)[0] in outcome.message  # the first problem raises
        assert len(outcome.frames) == index


def test_dropped_block_then_orphan_continuation() -> None:
    """After an interleaved frame the open block is dropped: its late CONTINUATION is an
    orphan, and a new block starts cleanly."""
    frames = lab_outcome(DROPPED_BLOCK + h2f.headers(3, BLOCK)).frames
    assert [f.problem is not None for f in frames] == [False, True, True, False]
    assert "PING inside the field block of stream 1 (opened by HEADERS at offset 0)" in (
        frames[1].problem or ""
    )
    assert "no field block open" in (frames[2].problem or "")
    strict = lab_outcome(DROPPED_BLOCK, strict=True)
    assert (strict.error_offset, len(strict.frames)) == (H + 3, 1)


def test_field_block_open_tracks_the_sequence() -> None:
    decoder = FrameDecoder()
    decoder.feed(HEADERS_OPEN)
    assert decoder.field_block_open
    decoder.feed(h2f.continuation(1, b"", end_headers=False))
    assert decoder.field_block_open
    decoder.feed(h2f.continuation(1, BLOCK[4:]))
    assert not decoder.field_block_open
    decoder.eof()  # an open block at EOF is not a framing error either


# ----------------------------------------------------------------- the early length check


def test_a_16_mib_header_is_refused_before_its_payload() -> None:
    """A header claiming 16 MiB is refused the moment its 9 octets are in: the decoder
    never holds more than the header. h2's FrameBuffer (which drives hyperframe) checks the
    length only once the whole frame is buffered, so it holds every byte it is sent."""
    decoder = FrameDecoder()
    with pytest.raises(H2FrameError, match="over the maximum frame size") as info:
        decoder.feed(TOO_BIG_HEADER)
    assert info.value.offset == 0
    assert info.value.error_code == ErrorCode.FRAME_SIZE_ERROR
    assert decoder.buffered == 0
    trickle = FrameDecoder()
    for i in range(8):
        assert trickle.feed(TOO_BIG_HEADER[i : i + 1]) == []
        assert trickle.buffered == i + 1 <= 9
    with pytest.raises(H2FrameError):
        trickle.feed(TOO_BIG_HEADER[8:])
    # The same header and a megabyte of its payload, to h2.
    buffer = h2.frame_buffer.FrameBuffer()
    buffer.max_frame_size = 16384
    buffer.add_data(TOO_BIG_HEADER)
    assert list(buffer) == []  # waiting for the payload
    for _ in range(64):
        buffer.add_data(bytes(16384))
        assert list(buffer) == []
    assert len(buffer._data) == 9 + 64 * 16384  # held, unchecked


def test_max_frame_size_can_be_raised() -> None:
    big = h2f.data(1, bytes(20_000))
    assert lab_outcome(big).status == "error"
    decoder = FrameDecoder()
    decoder.max_frame_size = 20_000
    [frame] = decoder.feed(big)
    assert isinstance(frame, DataFrame)
    assert len(frame.data) == 20_000
    assert lab_outcome(big, max_frame_size=MAX_FRAME_SIZE_LIMIT).status == "ok"
    for bad in (16383, 2**24, 0):
        with pytest.raises(ValueError, match="max_frame_size"):
            FrameDecoder(max_frame_size=bad)


# ------------------------------------------------------------------------- notes and shapes


def test_common_attributes_and_helpers() -> None:
    [frame] = parse(h2f.headers(1, BLOCK, end_stream=True, pad_length=1))
    assert isinstance(frame, HeadersFrame)
    assert (frame.length, frame.type, frame.flags, frame.stream_id) == (len(BLOCK) + 2, 1, 0xD, 1)
    assert frame.payload == b"\x01" + BLOCK + b"\x00"
    assert frame.type_name == "HEADERS"
    assert frame.flag_names == ("END_STREAM", "END_HEADERS", "PADDED")
    assert frame.header_end == frame.start + 9
    assert frame.end - frame.start == 9 + frame.length
    assert frame.kind == "h2-frame"
    [unknown] = parse(encode_frame(0x0B, 0xFF, 0, b""))
    assert unknown.type_name == "UNKNOWN(0x0b)"
    assert unknown.flag_names == ()
    [ping] = parse(h2f.ping(ack=True))
    assert ping.flag_names == ("ACK",)
    assert Preface(0, 24).kind == "h2-preface"


def test_notes() -> None:
    notes = [s.note() for s in lab_outcome(VALID["a connection's worth"][0]).segments]
    assert notes == [
        "client connection preface (RFC 9113 §3.4); a SETTINGS frame must follow",
        "SETTINGS stream 0 (connection): MAX_CONCURRENT_STREAMS=100",
        "WINDOW_UPDATE stream 0 (connection): window +1048576",
        "HEADERS stream 1 [END_STREAM, END_HEADERS]: 20 bytes of field block",
        "SETTINGS stream 0 (connection) [ACK]: acknowledges the peer's settings",
        "RST_STREAM stream 1: NO_ERROR (0x0)",
        "GOAWAY stream 0 (connection): last stream 1, NO_ERROR (0x0)",
    ]

    def note(raw: bytes) -> str:
        return lab_outcome(raw).segments[-1].note()

    assert note(h2f.data(1, b"abc", pad_length=4)) == (
        "DATA stream 1 [PADDED]: 3 bytes + 4 bytes of padding"
    )
    assert note(with_reserved_bit(with_flags(h2f.data(1, b"x"), 0xF6))) == (
        "DATA stream 1: 1 byte (unused flags 0xf6 ignored) (reserved bit set, ignored)"
    )
    assert note(h2f.headers(5, b"", depends_on=3, weight=255, exclusive=True)) == (
        "HEADERS stream 5 [END_HEADERS, PRIORITY]: 0 bytes of field block; exclusively depends"
        " on stream 3, weight 256 (deprecated, RFC 9113 §5.3.2)"
    )
    assert note(h2f.priority(3, 1)) == (
        "PRIORITY stream 3: depends on stream 1, weight 16 (deprecated, RFC 9113 §5.3.2)"
    )
    assert note(h2f.rst_stream(1, 0xABC)) == "RST_STREAM stream 1: UNKNOWN(0xabc) (0xabc)"
    assert note(h2f.settings()) == "SETTINGS stream 0 (connection): no settings (defaults)"
    assert note(h2f.push_promise(1, 2, b"ab")) == (
        "PUSH_PROMISE stream 1 [END_HEADERS]: promises stream 2; 2 bytes of field block"
    )
    assert note(h2f.ping(b"\x00" * 7 + b"\x01", ack=True)) == (
        "PING stream 0 (connection) [ACK]: opaque data 0000000000000001 (the reply)"
    )
    assert note(h2f.goaway(3, 1, b"bad\x00")) == (
        "GOAWAY stream 0 (connection): last stream 3, PROTOCOL_ERROR (0x1), debug data 'bad\\x00'"
    )
    assert note(HEADERS_OPEN + h2f.continuation(1, BLOCK[4:])) == (
        "CONTINUATION stream 1 [END_HEADERS]: 16 bytes of field block"
    )
    assert note(encode_frame(0x0B, 0x3, 9, b"xyz")) == (
        "UNKNOWN(0x0b) stream 9: 3 bytes, flags 0x03; ignored (§5.5)"
    )
    assert note(encode_frame(8, 0, 1, bytes(4))) == (
        "WINDOW_UPDATE stream 1: window +0; problem: WINDOW_UPDATE with increment 0 (a stream"
        " error; the increment is 1..2^31-1, RFC 9113 §6.9)"
    )


def test_names_and_tables() -> None:
    assert h2f.error_name(0xD) == "HTTP_1_1_REQUIRED"
    assert h2f.error_name(0xE) == "UNKNOWN(0x0e)"
    assert h2f.setting_name(8) == "ENABLE_CONNECT_PROTOCOL"
    assert h2f.setting_name(7) == "UNKNOWN(0x0007)"
    assert list(h2f.ERROR_CODE_NAMES.values())[:2] == ["NO_ERROR", "PROTOCOL_ERROR"]
    assert len(h2f.ERROR_CODE_NAMES) == 14
    assert h2f.FRAME_TYPE_NAMES[9] == "CONTINUATION"
    assert set(h2f.SETTING_NAMES) == {1, 2, 3, 4, 5, 6, 8}
    assert [name for _, name in h2f.FRAME_FLAGS[1]] == [
        "END_STREAM", "END_HEADERS", "PADDED", "PRIORITY",
    ]  # fmt: skip


def test_segments_are_frozen_and_slotted() -> None:
    [frame] = parse(h2f.data(1, b"x"))
    with pytest.raises(AttributeError):
        frame.data = b"y"  # type: ignore[misc]
    assert not hasattr(frame, "__dict__")


def test_fast_path_builds_the_same_frame_as_init() -> None:
    [fast] = parse(h2f.data(7, b"token"))
    slow = DataFrame(0, 14, 5, 0, 0, 7, b"token", None, b"token")
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert hash(fast.start) == hash(slow.start)


# ------------------------------------------------------------------------- encoder, parse()


def test_encoder_writes_exact_bytes() -> None:
    assert h2f.preface() == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert h2f.data(1, b"hi", end_stream=True) == bytes.fromhex("000002 00 01 00000001 6869")
    assert h2f.data(3, b"a", pad_length=2) == bytes.fromhex("000004 00 08 00000003 02 61 0000")
    assert h2f.headers(1, b"\x82", depends_on=0, weight=255, exclusive=True) == bytes.fromhex(
        "000006 01 24 00000001 80000000 ff 82"
    )
    assert h2f.priority(5, 3, 7) == bytes.fromhex("000005 02 00 00000005 00000003 07")
    assert h2f.rst_stream(1, 8) == bytes.fromhex("000004 03 00 00000001 00000008")
    assert h2f.settings({3: 100}) == bytes.fromhex("000006 04 00 00000000 0003 00000064")
    assert h2f.settings(ack=True) == bytes.fromhex("000000 04 01 00000000")
    assert h2f.push_promise(1, 2, b"\x82") == bytes.fromhex("000005 05 04 00000001 00000002 82")
    assert h2f.ping(b"abcdefgh", ack=True) == bytes.fromhex("000008 06 01 00000000") + b"abcdefgh"
    assert h2f.goaway(1, 2, b"x") == bytes.fromhex("000009 07 00 00000000 00000001 00000002 78")
    assert h2f.window_update(0, 1) == bytes.fromhex("000004 08 00 00000000 00000001")
    assert h2f.continuation(1, b"", end_headers=False) == bytes.fromhex("000000 09 00 00000001")
    assert encode_frame(0xFF, 0xFF, MAX_STREAM_ID, b"") == bytes.fromhex("000000 ff ff 7fffffff")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_frame(256, 0, 1), "8 bits"),
        (lambda: encode_frame(0, 256, 1), "8 bits"),
        (lambda: encode_frame(0, 0, 2**31), "stream_id"),
        (lambda: encode_frame(0, 0, -1), "stream_id"),
        (lambda: encode_frame(0, 0, 1, bytes(2**24)), "24-bit Length"),
        (lambda: h2f.data(0, b"x"), "DATA stream_id 0"),
        (lambda: h2f.data(1, b"x", pad_length=256), "pad_length"),
        (lambda: h2f.data(1, bytes(2**24 - 1), pad_length=0), "24-bit Length"),
        (lambda: h2f.headers(0, b""), "HEADERS stream_id"),
        (lambda: h2f.headers(3, b"", depends_on=3), "cannot depend on itself"),
        (lambda: h2f.headers(3, b"", depends_on=1, weight=256), "weight"),
        (lambda: h2f.priority(1, 2**31), "depends_on"),
        (lambda: h2f.rst_stream(1, 2**32), "32 bits"),
        (lambda: h2f.settings({2: 2}), "only 0 or 1"),
        (lambda: h2f.settings({5: 100}), "outside 2^14..2^24-1"),
        (lambda: h2f.settings({4: 2**31}), "over the largest window"),
        (lambda: h2f.settings({0x10000: 1}), "16 bits"),
        (lambda: h2f.settings({3: 2**32}), "32 bits"),
        (lambda: h2f.settings({3: 1}, ack=True), "ACK carries no settings"),
        (lambda: h2f.push_promise(1, 3, b""), "odd"),
        (lambda: h2f.push_promise(1, 0, b""), "promised_stream_id 0"),
        (lambda: h2f.ping(b"short"), "8 octets"),
        (lambda: h2f.goaway(2**31), "last_stream_id"),
        (lambda: h2f.window_update(0, 0), "1..2^31-1"),
        (lambda: h2f.window_update(0, 2**31), "1..2^31-1"),
        (lambda: h2f.continuation(0, b""), "CONTINUATION stream_id"),
    ],
)
def test_encoder_refuses_what_cannot_be_encoded_or_is_invalid(
    call: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_parse_whole_captures() -> None:
    body, expected = VALID["a connection's worth"]
    assert parse(body) == [s for s in expected if isinstance(s, Frame)]
    assert parse(b"") == []
    assert parse(h2f.ping()) == lab_outcome(h2f.ping()).frames
    with pytest.raises(H2FrameError, match="inside a frame") as info:
        parse(h2f.ping()[:-1])
    assert info.value.offset == 16
    with pytest.raises(H2FrameError, match="client preface"):
        parse(b"POST / HTTP/1.1\r\n")
    [headers] = parse(h2f.headers(1, BLOCK), decode_headers=True)
    assert isinstance(headers, HeadersFrame)
    assert headers.block is not None
    assert headers.block.headers[3] == (b":authority", b"www.example.com")


# ------------------------------------------------------------------------ generated frames

Expected = tuple[bytes, type, dict[str, object]]

stream_ids = st.one_of(st.integers(1, 9), st.integers(1, MAX_STREAM_ID))
payloads = st.binary(max_size=48)
pads = st.one_of(st.none(), st.integers(0, 255))
weights = st.integers(0, 255)


@st.composite
def frame_groups(draw: st.DrawFn) -> list[Expected]:
    """One frame of a random type (a HEADERS or PUSH_PROMISE and its CONTINUATIONs for
    CONTINUATION), made with the encoder helpers, and the fields each must decode to."""
    kind = draw(st.sampled_from([*FrameType, "unknown"]))
    sid = draw(stream_ids)
    if kind == FrameType.DATA:
        body, end, pad = draw(payloads), draw(st.booleans()), draw(pads)
        flags = ("END_STREAM",) * end + ("PADDED",) * (pad is not None)
        raw = h2f.data(sid, body, end_stream=end, pad_length=pad)
        return [(raw, DataFrame, {"data": body, "pad_length": pad, "flag_names": flags})]
    if kind == FrameType.HEADERS:
        block, end, pad = draw(payloads), draw(st.booleans()), draw(pads)
        dep = draw(st.one_of(st.none(), st.integers(0, MAX_STREAM_ID).filter(lambda d: d != sid)))
        weight, exclusive = draw(weights), draw(st.booleans())
        raw = h2f.headers(
            sid,
            block,
            end_stream=end,
            pad_length=pad,
            depends_on=dep,
            weight=weight,
            exclusive=exclusive,
        )
        flags = (
            ("END_STREAM",) * end
            + ("END_HEADERS",)
            + ("PADDED",) * (pad is not None)
            + ("PRIORITY",) * (dep is not None)
        )
        prio = {
            "depends_on": dep,
            "weight": weight if dep is not None else None,
            "exclusive": exclusive if dep is not None else None,
        }
        return [
            (raw, HeadersFrame, {"fragment": block, "pad_length": pad, "flag_names": flags, **prio})
        ]
    if kind == FrameType.PRIORITY:
        dep = draw(st.integers(0, MAX_STREAM_ID).filter(lambda d: d != sid))
        weight, exclusive = draw(weights), draw(st.booleans())
        raw = h2f.priority(sid, dep, weight, exclusive=exclusive)
        return [(raw, PriorityFrame, {"depends_on": dep, "weight": weight, "exclusive": exclusive})]
    if kind == FrameType.RST_STREAM:
        code = draw(st.one_of(st.sampled_from(list(ErrorCode)), st.integers(0, 2**32 - 1)))
        return [
            (
                h2f.rst_stream(sid, code),
                RstStreamFrame,
                {"error_code": code, "error_name": h2f.error_name(code)},
            )
        ]
    if kind == FrameType.SETTINGS:
        if draw(st.booleans()):
            return [(h2f.settings(ack=True), SettingsFrame, {"settings": (), "ack": True})]
        values = draw(
            st.lists(
                st.tuples(st.sampled_from([1, 3, 6, 0x99, 0xFFFF]), st.integers(0, 2**32 - 1)),
                max_size=6,
            )
        )
        values += draw(st.lists(st.tuples(st.sampled_from([2, 8]), st.integers(0, 1)), max_size=2))
        values += draw(st.lists(st.tuples(st.just(4), st.integers(0, MAX_STREAM_ID)), max_size=1))
        values += draw(st.lists(st.tuples(st.just(5), st.integers(2**14, 2**24 - 1)), max_size=1))
        values = draw(st.permutations(values))
        expected = tuple(Setting(i, h2f.setting_name(i), v) for i, v in values)
        return [(h2f.settings(values), SettingsFrame, {"settings": expected, "ack": False})]
    if kind == FrameType.PUSH_PROMISE:
        promised = draw(st.integers(1, MAX_STREAM_ID // 2)) * 2
        block, pad = draw(payloads), draw(pads)
        raw = h2f.push_promise(sid, promised, block, pad_length=pad)
        return [
            (
                raw,
                PushPromiseFrame,
                {"promised_stream_id": promised, "fragment": block, "pad_length": pad},
            )
        ]
    if kind == FrameType.PING:
        opaque, ack = draw(st.binary(min_size=8, max_size=8)), draw(st.booleans())
        return [(h2f.ping(opaque, ack=ack), PingFrame, {"opaque_data": opaque, "ack": ack})]
    if kind == FrameType.GOAWAY:
        last, code, debug = (
            draw(st.integers(0, MAX_STREAM_ID)),
            draw(st.integers(0, 2**32 - 1)),
            draw(payloads),
        )
        return [
            (
                h2f.goaway(last, code, debug),
                GoAwayFrame,
                {"last_stream_id": last, "error_code": code, "debug_data": debug},
            )
        ]
    if kind == FrameType.WINDOW_UPDATE:
        sid = draw(st.integers(0, 9))
        increment = draw(st.integers(1, MAX_STREAM_ID))
        return [
            (
                h2f.window_update(sid, increment),
                WindowUpdateFrame,
                {"increment": increment, "stream_id": sid},
            )
        ]
    if kind == FrameType.CONTINUATION:
        parts = draw(st.lists(payloads, min_size=2, max_size=4))
        if draw(st.booleans()):
            first: Expected = (
                h2f.headers(sid, parts[0], end_headers=False),
                HeadersFrame,
                {"fragment": parts[0]},
            )
        else:
            first = (
                h2f.push_promise(sid, 2, parts[0], end_headers=False),
                PushPromiseFrame,
                {"fragment": parts[0]},
            )
        rest: list[Expected] = [
            (
                h2f.continuation(sid, part, end_headers=i == len(parts) - 2),
                ContinuationFrame,
                {"fragment": part, "flag_names": ("END_HEADERS",) * (i == len(parts) - 2)},
            )
            for i, part in enumerate(parts[1:])
        ]
        return [first, *rest]
    ftype = draw(st.integers(0x0A, 0xFF))
    flags, body = draw(st.integers(0, 255)), draw(payloads)
    raw = encode_frame(ftype, flags, sid, body)
    return [(raw, UnknownFrame, {"type": ftype, "flags": flags, "payload": body})]


def flatten(groups: list[list[Expected]]) -> list[Expected]:
    return [item for group in groups for item in group]


def check_round_trip(items: list[Expected], cuts: Sequence[int]) -> None:
    """Encoded frames decode, under any split, to frames with exactly the fields encoded,
    and no problem."""
    raw = b"".join(r for r, _, _ in items)
    outcome = lab_outcome(raw, cuts, expect_preface=False)
    assert outcome.status == "ok", outcome.message
    assert len(outcome.frames) == len(items)
    at = 0
    for frame, (one, cls, fields) in zip(outcome.frames, items, strict=True):
        assert type(frame) is cls
        assert (frame.start, frame.end) == (at, at + len(one))
        assert frame.problem is None
        for name, value in fields.items():
            assert getattr(frame, name) == value, name
        at += len(one)


def cuts_for(data: st.DataObject, body: bytes) -> list[int]:
    return data.draw(st.lists(st.integers(0, len(body)), max_size=10), label="cuts")


@settings(max_examples=150, deadline=None)
@given(st.lists(frame_groups(), min_size=1, max_size=6), st.data())
def test_round_trip(groups: list[list[Expected]], data: st.DataObject) -> None:
    items = flatten(groups)
    check_round_trip(items, cuts_for(data, b"".join(r for r, _, _ in items)))


# ------------------------------------------------------------------- hyperframe side by side


def hyperframe_one(raw: bytes) -> dict[str, object] | str:
    """One whole frame through hyperframe as h2 drives it: its fields, or "rejected"."""
    try:
        frame, length = hf.Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9 : 9 + length]))
    except (HyperframeError, ValueError):
        return "rejected"
    return hyperframe_view(frame, length)


def lab_one(raw: bytes) -> Frame | str:
    """One whole frame through the lab's decoder: the frame (perhaps with a problem; a lone
    CONTINUATION's sequence problem is hyperframe's blind spot, not a frame rule), or
    "rejected"."""
    try:
        [frame] = FrameDecoder().feed(raw)
    except H2FrameError:
        return "rejected"
    assert isinstance(frame, Frame)
    return frame


def documented_difference(raw: bytes) -> str | None:
    """Which numbered difference in the module docstring this frame falls under, judged from
    its bytes alone; None if the two decoders must agree."""
    length, ftype, flags = int.from_bytes(raw[:3], "big"), raw[3], raw[4]
    payload = raw[9:]
    sid = int.from_bytes(raw[5:9], "big") & MASK
    if length > 16384:
        return "1 frame size"
    if ftype == 0xA:
        return "5 ALTSVC"
    if not payload or len(payload) != length:
        return None
    padded = bool(flags & 0x08)
    if ftype == FrameType.WINDOW_UPDATE and length == 4 and payload[0] & 0x80:
        return "2 reserved bit"
    if ftype == FrameType.GOAWAY and length >= 8 and sid == 0 and payload[0] & 0x80:
        return "2 reserved bit"
    if ftype == FrameType.PUSH_PROMISE and sid and length >= 4 + padded:
        (promised,) = U32.unpack_from(payload, 1 if padded else 0)
        if promised > MASK:
            return "2 reserved bit"
        pad = payload[0] if padded else 0
        ours_reject = padded and pad > length - 5
        theirs_reject = not promised or promised % 2 or (pad and pad >= length)
        if ours_reject and not theirs_reject:
            return "4 PUSH_PROMISE padding"
        if not ours_reject and (not promised or promised % 2):
            return "6 promised stream"
    if ftype == FrameType.HEADERS and sid and padded:
        prio = 5 if flags & 0x20 else 0
        if length >= 1 + prio:
            pad = payload[0]
            theirs = bool(pad) and pad >= length - 1
            ours = pad > length - 1 - prio
            if theirs != ours:
                return "3 HEADERS padding"
    if ftype == FrameType.WINDOW_UPDATE and length == 4 and not U32.unpack(payload)[0] & MASK:
        return "6 increment 0"
    return None


def check_one_against_hyperframe(raw: bytes) -> None:
    theirs = hyperframe_one(raw)
    ours = lab_one(raw)
    difference = documented_difference(raw)
    if difference is None:
        if theirs == "rejected" or ours == "rejected":
            assert (ours, theirs) == ("rejected", "rejected"), raw.hex()
            return
        assert isinstance(ours, Frame)
        assert isinstance(theirs, dict)
        assert lab_view(ours, theirs) == theirs, raw.hex()
        sequence = ours.type == FrameType.CONTINUATION and "no field block" in (ours.problem or "")
        setting = ours.type == FrameType.SETTINGS
        dependency = "depends on itself" in (ours.problem or "")
        assert ours.problem is None or sequence or setting or dependency, ours.problem
        return
    if difference.startswith("6"):
        assert theirs == "rejected"
        assert isinstance(ours, Frame)
        assert ours.problem is not None
        assert lab_outcome(raw, strict=True).status == "error"
    elif difference.startswith("2"):
        assert isinstance(ours, Frame | str)  # either way the bit is not part of a field
        if isinstance(ours, Frame) and isinstance(theirs, dict):
            key = (
                "increment"
                if ours.type == FrameType.WINDOW_UPDATE
                else ("last_stream_id" if ours.type == FrameType.GOAWAY else "promised_stream_id")
            )
            assert theirs[key] == getattr(ours, key) | 0x80000000
    elif difference.startswith(("3", "4")):
        assert (ours == "rejected") != (theirs == "rejected")


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A generated frame with its header or payload changed: type, flags, stream (0, the
    reserved bit), Length (with the payload cut or grown to match), the Pad Length octet."""
    raw = draw(st.sampled_from([r for r, _, _ in draw(frame_groups())]))
    header, payload = bytearray(raw[:9]), raw[9:]
    for change in draw(
        st.lists(st.sampled_from(["type", "flags", "stream", "size", "pad", "bit"]), max_size=3)
    ):
        if change == "type":
            header[3] = draw(st.integers(0, 0x0B))
        elif change == "flags":
            header[4] = draw(st.integers(0, 255))
        elif change == "stream":
            header[5:9] = U32.pack(draw(st.sampled_from([0, 1, 2, 0x80000000, 0x80000001])))
        elif change == "size":
            size = draw(st.integers(0, 24))
            payload = (payload + draw(st.binary(min_size=size, max_size=size)))[:size]
        elif change == "pad" and payload:
            payload = bytes([draw(st.integers(0, 255))]) + payload[1:]
        elif change == "bit" and payload:
            payload = bytes([payload[0] ^ 0x80]) + payload[1:]
    header[:3] = len(payload).to_bytes(3, "big")
    return bytes(header) + payload


def whole_frames(data: bytes) -> list[bytes]:
    """``data`` cut into frames by their Length fields, as far as whole frames go."""
    out = []
    pos = 0
    while len(data) - pos >= 9:
        end = pos + 9 + int.from_bytes(data[pos : pos + 3], "big")
        if end > len(data):
            break
        out.append(data[pos:end])
        pos = end
    return out


@settings(max_examples=200, deadline=None)
@given(frame_groups())
def test_generated_frames_against_hyperframe(group: list[Expected]) -> None:
    for raw, _, _ in group:
        check_one_against_hyperframe(raw)


@settings(max_examples=300, deadline=None)
@given(mutated_frames())
def test_mutated_frames_against_hyperframe(raw: bytes) -> None:
    check_one_against_hyperframe(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_against_hyperframe(data: bytes) -> None:
    for raw in whole_frames(data):
        check_one_against_hyperframe(raw)


# (frame, hyperframe's outcome, the lab's outcome): one group per numbered point in the
# module docstring's "Where this decoder differs from hyperframe 6.1.0". An outcome is
# "ok", "rejected", or "problem" (decoded, with a note; strict mode rejects).
DIFFERENCES: dict[str, tuple[bytes, str, str]] = {
    "1 Length over the maximum": (h2f.data(1, bytes(16385)), "ok", "rejected"),
    "2 WINDOW_UPDATE with the reserved bit": (
        payload_bit(h2f.window_update(1, 10)), "rejected", "ok",
    ),
    "2 GOAWAY with the reserved bit": (payload_bit(h2f.goaway(3)), "ok", "ok"),
    "2 PUSH_PROMISE with the reserved bit": (payload_bit(h2f.push_promise(1, 2, b"")), "ok", "ok"),
    "3 HEADERS padded, empty fragment": (h2f.headers(1, b"", pad_length=3), "rejected", "ok"),
    "3 HEADERS padding over the priority fields": (
        encode_frame(1, 0x2C, 1, b"\x03" + bytes(5)), "ok", "rejected",
    ),
    "4 PUSH_PROMISE padding over the promised ID": (
        encode_frame(5, 0xC, 1, b"\x04" + U32.pack(2)), "ok", "rejected",
    ),
    "5 ALTSVC with a bad origin length": (encode_frame(0xA, 0, 0, b"\x00\x09ab"), "rejected", "ok"),
    "6 WINDOW_UPDATE of 0": (encode_frame(8, 0, 1, bytes(4)), "rejected", "problem"),
    "6 PUSH_PROMISE of an odd stream": (encode_frame(5, 4, 1, U32.pack(3)), "rejected", "problem"),
    "6 SETTINGS ENABLE_PUSH=2": (one_setting(2, 2), "ok", "problem"),
    "6 PRIORITY on itself": (encode_frame(2, 0, 3, U32.pack(3) + b"\x0f"), "ok", "problem"),
}  # fmt: skip


@pytest.mark.parametrize(("raw", "theirs", "ours"), DIFFERENCES.values(), ids=DIFFERENCES.keys())
def test_documented_difference_from_hyperframe(raw: bytes, theirs: str, ours: str) -> None:
    assert (hyperframe_one(raw) == "rejected") == (theirs == "rejected")
    lab = lab_one(raw)
    if ours == "rejected":
        assert lab == "rejected"
    else:
        assert isinstance(lab, Frame)
        assert (lab.problem is not None) == (ours == "problem")
        assert lab_outcome(raw, strict=True).status == ("error" if ours == "problem" else "ok")


def test_reserved_bits_hyperframe_keeps_we_mask() -> None:
    """Difference 2: the values, side by side."""
    goaway = payload_bit(h2f.goaway(3))
    assert hyperframe_one(goaway)["last_stream_id"] == 0x80000003  # type: ignore[index]
    assert lab_one(goaway).last_stream_id == 3  # type: ignore[union-attr]
    promise = payload_bit(h2f.push_promise(1, 2, b""))
    assert hyperframe_one(promise)["promised_stream_id"] == 0x80000002  # type: ignore[index]
    assert lab_one(promise).promised_stream_id == 2  # type: ignore[union-attr]


def test_repeated_settings_hyperframe_keeps_the_last() -> None:
    """Difference 7: a dict there, every setting in order here."""
    raw = h2f.settings([(3, 100), (4, 1), (3, 200)])
    assert hyperframe_one(raw)["settings"] == {3: 200, 4: 1}  # type: ignore[index]
    frame = lab_one(raw)
    assert isinstance(frame, SettingsFrame)
    assert [(s.id, s.value) for s in frame.settings] == [(3, 100), (4, 1), (3, 200)]


def test_altsvc_hyperframe_decodes_we_keep_raw() -> None:
    raw = encode_frame(0xA, 0, 0, b'\x00\x03abch2=":443"')
    frame, length = hf.Frame.parse_frame_header(memoryview(raw[:9]))
    frame.parse_body(memoryview(raw[9 : 9 + length]))
    assert isinstance(frame, hf.AltSvcFrame)
    assert frame.origin == b"abc"
    ours = lab_one(raw)
    assert isinstance(ours, UnknownFrame)
    assert ours.payload == raw[9:]


# --------------------------------------------------------------------------------- HPACK


def hpack_decode(
    blocks: Sequence[bytes], *, limit: int = 4096
) -> tuple[list[list[tuple[bytes, bytes, bool]]], list[tuple[list[tuple[bytes, bytes]], int, int]]]:
    """hpack's answer for a sequence of blocks: per block the fields (name, value, never
    indexed), and the dynamic table (entries newest first, size, max size) after it."""
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = limit
    fields, tables = [], []
    for block in blocks:
        headers = decoder.decode(block, raw=True)
        fields.append(
            [
                (n, v, isinstance(hv, hpack.NeverIndexedHeaderTuple))
                for hv in headers
                for n, v in [hv]
            ]
        )
        table = decoder.header_table
        tables.append((list(table.dynamic_entries), table._current_size, table.maxsize))
    return fields, tables  # fmt: skip


def lab_decode(blocks: Sequence[bytes], *, limit: int = 4096) -> list[HeaderBlock]:
    decoder = HeaderBlockDecoder(max_table_size=limit)
    return [decoder.decode(block) for block in blocks]


def check_blocks_against_hpack(blocks: Sequence[bytes], *, limit: int = 4096) -> list[HeaderBlock]:
    """The lab's HPACK decoder and hpack's agree on every field and on the dynamic table
    after every block; representations tile each block."""
    theirs_fields, theirs_tables = hpack_decode(blocks, limit=limit)
    ours = lab_decode(blocks, limit=limit)
    for block, decoded, fields, table in zip(
        blocks, ours, theirs_fields, theirs_tables, strict=True
    ):
        never = [r.representation is Representation.NEVER_INDEXED for r in decoded.representations
                 if r.representation is not Representation.SIZE_UPDATE]  # fmt: skip
        assert [(n, v) for n, v, _ in fields] == list(decoded.headers)
        assert [flag for _, _, flag in fields] == never
        assert (list(decoded.table), decoded.table_size, decoded.table_max_size) == table
        reps = decoded.representations
        assert [r.start for r in reps] == [0, *(r.end for r in reps[:-1])][: len(reps)]
        assert (reps[-1].end if reps else 0) == len(block)
        assert decoded.size == len(block)
        assert decoded.data == block
    return ours


def test_rfc7541_c2_one_representation_of_each_kind() -> None:
    blocks = {
        "C.2.1": bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"),
        "C.2.2": bytes.fromhex("040c2f73616d706c652f70617468"),
        "C.2.3": bytes.fromhex("100870617373776f726406736563726574"),
        "C.2.4": bytes.fromhex("82"),
    }
    reps = {name: lab_decode([block])[0].representations for name, block in blocks.items()}
    for block in blocks.values():
        check_blocks_against_hpack([block])
    [c21] = reps["C.2.1"]
    assert (c21.representation, c21.name, c21.value, c21.index) == (
        Representation.INCREMENTAL, b"custom-key", b"custom-header", None,
    )  # fmt: skip
    assert (c21.name_huffman, c21.name_octets, c21.value_huffman, c21.value_octets) == (
        False,
        10,
        False,
        13,
    )
    assert (c21.table_entries, c21.table_size) == (1, 55)
    [c22] = reps["C.2.2"]
    assert (c22.representation, c22.name, c22.value, c22.index) == (
        Representation.WITHOUT_INDEXING, b":path", b"/sample/path", 4,
    )  # fmt: skip
    [c23] = reps["C.2.3"]
    assert (c23.representation, c23.name, c23.value) == (
        Representation.NEVER_INDEXED,
        b"password",
        b"secret",
    )
    [c24] = reps["C.2.4"]
    assert (c24.representation, c24.index, c24.name, c24.value, c24.end) == (
        Representation.INDEXED, 2, b":method", b"GET", 1,
    )  # fmt: skip
    assert c24.note() == ":method: GET — indexed (static 2)"
    assert (
        c22.note()
        == ":path: /sample/path — literal without indexing, name static 4, value literal (12 bytes)"
    )
    assert c21.note() == (
        "custom-key: custom-header — literal with incremental indexing, name literal (10 bytes),"
        " value literal (13 bytes); table now 1 entry, 55 bytes"
    )
    assert c21.kind == "hpack-field"


C3 = [
    bytes.fromhex("828684410f7777772e6578616d706c652e636f6d"),
    bytes.fromhex("828684be58086e6f2d6361636865"),
    bytes.fromhex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"),
]
C4 = [
    bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
    bytes.fromhex("828684be5886a8eb10649cbf"),
    bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"),
]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["C.3 without Huffman", "C.4 with Huffman"])
def test_rfc7541_request_examples(blocks: list[bytes]) -> None:
    decoded = check_blocks_against_hpack(blocks)
    assert [b.table_size for b in decoded] == [57, 110, 164]
    assert decoded[2].headers == (
        (b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
        (b":authority", b"www.example.com"), (b"custom-key", b"custom-value"),
    )  # fmt: skip
    assert decoded[2].table[0] == (b"custom-key", b"custom-value")
    authority = decoded[1].representations[3]
    assert (authority.representation, authority.index) == (Representation.INDEXED, 62)
    assert authority.note() == ":authority: www.example.com — indexed (dynamic 62)"
    literal = decoded[1].representations[4]
    huffman = blocks is C4
    assert literal.value_huffman is huffman
    assert literal.note() == (
        "cache-control: no-cache — literal with incremental indexing, name static 24, value "
        + ("Huffman (8→6 bytes)" if huffman else "literal (8 bytes)")
        + "; table now 2 entries, 110 bytes"
    )


# A test-side HPACK writer for the representations hpack's encoder never writes (literal
# without indexing, literal names with Huffman choices of our own, size updates anywhere).
HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def integer(value: int, prefix_bits: int, pattern: int) -> bytes:
    encoded = hpack.hpack.encode_integer(value, prefix_bits)
    encoded[0] |= pattern
    return bytes(encoded)


def string(text: bytes, huffman: bool) -> bytes:
    raw = HUFFMAN.encode(text) if huffman else text
    return integer(len(raw), 7, 0x80 if huffman else 0) + raw


def literal(
    pattern: int,
    prefix_bits: int,
    name: bytes | int,
    value: bytes,
    huffman: tuple[bool, bool] = (False, False),
) -> bytes:
    if isinstance(name, int):
        return integer(name, prefix_bits, pattern) + string(value, huffman[1])
    return bytes([pattern]) + string(name, huffman[0]) + string(value, huffman[1])  # fmt: skip


def test_every_representation_kind_and_string_form() -> None:
    block = b"".join([
        integer(100, 5, 0x20),  # size update to 100
        integer(2, 7, 0x80),  # indexed :method GET
        literal(0x40, 6, b"x-a", b"1", (True, False)),  # incremental, literal name, Huffman name
        literal(0x00, 4, 31, b"text/plain", (False, True)),  # without indexing, static name
        literal(0x10, 4, b"x-secret", b"s", (False, False)),  # never indexed, literal name
        literal(0x40, 6, 62, b"2" * 80, (False, False)),  # incremental, dynamic name: evicts x-a
        integer(62, 7, 0x80),  # indexed, dynamic: nothing (the big entry did not fit)
    ])  # fmt: skip
    with pytest.raises(HPACKError, match="past the end of the table"):
        HeaderBlockDecoder().decode(block)
    block = block[:-1]  # without the dangling reference
    [decoded] = check_blocks_against_hpack([block])
    kinds = [
        (r.representation, r.index, r.name_huffman, r.value_huffman)
        for r in decoded.representations
    ]
    assert kinds == [
        (Representation.SIZE_UPDATE, None, None, None),
        (Representation.INDEXED, 2, None, None),
        (Representation.INCREMENTAL, None, True, False),
        (Representation.WITHOUT_INDEXING, 31, None, True),
        (Representation.NEVER_INDEXED, None, False, False),
        (Representation.INCREMENTAL, 62, None, False),
    ]
    update, _, x_a, _, _, big = decoded.representations
    assert update.new_max_size == 100
    assert update.note() == "dynamic table size update to 100; table now 0 entries, 0 bytes"
    assert (x_a.table_entries, x_a.table_size, x_a.evicted) == (1, 36, 0)
    # 32 + 3 + 80 = 115 > 100: adding it empties the table and it is not added (§4.4).
    assert (big.name, big.table_entries, big.table_size, big.evicted) == (b"x-a", 0, 0, 1)
    assert big.note().endswith("; table now 0 entries, 0 bytes (evicted 1)")
    assert decoded.note() == (
        "5 fields (1 indexed, 2 literal with incremental indexing, 1 literal without indexing,"
        " 1 literal never indexed); table now 0 entries, 0 bytes"
    )


# (block, offset, words): each refused by the lab's decoder, and by hpack.
HPACK_INVALID = {
    "index 0": (b"\x82\x80", 1, "index 0"),
    "index past the table": (b"\xbe", 0, "index 62 is past the end"),
    "name index past the table": (b"\x7e\x01a", 0, "index 62"),
    "integer cut short": (b"\x82\xff", 2, "ends inside an integer"),
    "integer of 7 octets": (b"\xff" + b"\x80" * 5 + b"\x01", 6, "longer than 6 octets"),
    "string cut short": (b"\x40\x05abc", 5, "string literal of 5 octets"),
    "name with nothing after it": (b"\x40\x01a", 3, "before a string literal"),
    "Huffman with bad padding": (b"\x40\x81\x00\x00", 2, "invalid Huffman code"),
    "Huffman EOS": (b"\x40\x84\xff\xff\xff\xff\x00", 2, "invalid Huffman code"),
    "size update after a field": (b"\x82\x20", 1, "size update after a field"),
    "size update over the limit": (b"\x3f\xe2\x1f", 0, "over the SETTINGS_HEADER_TABLE_SIZE"),
}


@pytest.mark.parametrize(
    ("block", "offset", "words"), HPACK_INVALID.values(), ids=HPACK_INVALID.keys()
)
def test_hpack_errors_both_refuse(block: bytes, offset: int, words: str) -> None:
    with pytest.raises(hpack.HPACKDecodingError):
        hpack.Decoder().decode(block, raw=True)
    decoder = HeaderBlockDecoder()
    with pytest.raises(HPACKError) as info:
        decoder.decode(block)
    assert (info.value.offset, info.value.error_code) == (offset, ErrorCode.COMPRESSION_ERROR)
    assert words in info.value.message
    with pytest.raises(HPACKError, match="already failed"):
        decoder.decode(b"\x82")


def test_a_lowered_limit_requires_a_size_update() -> None:
    """RFC 7541 §4.2 / RFC 9113 §4.3.1: once the decoder's SETTINGS_HEADER_TABLE_SIZE is
    acknowledged below the table's maximum, the next block must start with a size update."""
    theirs = hpack.Decoder()
    theirs.max_allowed_table_size = 100
    ours = HeaderBlockDecoder()
    ours.max_table_size = 100
    with pytest.raises(hpack.HPACKDecodingError):
        theirs.decode(b"\x82", raw=True)
    with pytest.raises(HPACKError, match="must start with a dynamic table size update") as info:
        ours.decode(b"\x82")
    assert info.value.offset == 0
    with pytest.raises(HPACKError, match="must start with"):
        HeaderBlockDecoder(max_table_size=100).decode(b"")
    good = HeaderBlockDecoder(max_table_size=100)
    [update, field_] = good.decode(
        b"\x3f\x45\x82"
    ).representations  # update to 100, then :method GET
    assert (update.new_max_size, field_.name) == (100, b":method")
    assert good.table_max_size == 100
    check_blocks_against_hpack([b"\x3f\x45\x82", b"\x20\x3f\x45\x82"], limit=100)


def test_header_list_and_block_limits() -> None:
    # :method GET, 2,000 times: 2,000 octets that count 42 each (32 + 7 + 3).
    with pytest.raises(HPACKError, match="header list larger than 65536") as info:
        HeaderBlockDecoder().decode(b"\x82" * 2000)
    assert (info.value.offset, info.value.error_code, info.value.status_hint) == (
        65536 // 42,
        ErrorCode.ENHANCE_YOUR_CALM,
        431,
    )
    big = literal(0x00, 4, b"x", b"v" * 40_000)
    with pytest.raises(HPACKError, match="field block longer than 65536") as info:
        HeaderBlockDecoder(max_header_list_size=10**6).decode(big + big)
    assert info.value.offset == MAX_FIELD_BLOCK_SIZE
    # The HPACK bomb: one big entry, referenced again and again.
    bomb = literal(0x40, 6, b"x", b"v" * 4000) + b"\xbe" * 20
    with pytest.raises(HPACKError, match="header list larger"):
        HeaderBlockDecoder().decode(bomb)
    assert HeaderBlockDecoder(max_header_list_size=10**6).decode(bomb).size == len(bomb)
    assert MAX_HEADER_LIST_SIZE == hpack.hpack.DEFAULT_MAX_HEADER_LIST_SIZE


header_names = st.sampled_from(
    [b":method", b":path", b":status", b":authority", b"content-type", b"cache-control",
     b"cookie", b"x-request-id", b"authorization", b"x-custom"]
)  # fmt: skip
header_values = st.one_of(
    st.sampled_from([b"GET", b"/", b"200", b"text/event-stream", b"no-cache", b""]),
    st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b"")),
    st.text(max_size=20).map(str.encode),
)


@st.composite
def encoded_blocks(draw: st.DrawFn, max_blocks: int = 4) -> tuple[list[bytes], int]:
    """Field blocks from hpack's encoder: Huffman or not, sensitive fields, table size
    changes between blocks; and the decoder limit they were written for."""
    encoder = hpack.Encoder()
    limit = draw(st.sampled_from([4096, 8192]))
    blocks = []
    for _ in range(draw(st.integers(1, max_blocks))):
        if draw(st.integers(0, 3)) == 0:
            encoder.header_table_size = draw(st.sampled_from([0, 64, 256, 4096, limit]))
        fields = draw(st.lists(st.tuples(header_names, header_values, st.booleans()), max_size=8))
        blocks.append(encoder.encode(fields, huffman=draw(st.booleans())))
    return blocks, limit


@settings(max_examples=150, deadline=None)
@given(encoded_blocks())
def test_hpack_encoder_blocks_decode_as_hpack_decodes_them(case: tuple[list[bytes], int]) -> None:
    blocks, limit = case
    check_blocks_against_hpack(blocks, limit=limit)


def test_block_over_several_frames_decoded_inline() -> None:
    """decode_headers: HEADERS + CONTINUATIONs, a representation straddling two frames, the
    block carried by the frame with END_HEADERS, offsets mapped back to the wire."""
    encoder = hpack.Encoder()
    block = encoder.encode(
        [(":status", "200"), ("content-type", "text/event-stream"), ("x-id", "abc")]
    )
    reps = HeaderBlockDecoder().decode(block).representations
    cut1, cut2 = reps[1].start + 2, reps[2].start + 2  # inside content-type, then inside x-id
    wire = (
        h2f.headers(1, block[:cut1], end_headers=False, pad_length=2)
        + h2f.continuation(1, block[cut1:cut2], end_headers=False)
        + h2f.continuation(1, block[cut2:])
        + h2f.headers(3, encoder.encode([("content-type", "text/event-stream")]))
    )
    for cuts in ([], bytewise(wire)):
        frames = lab_outcome(wire, cuts, decode_headers=True).frames
        first, second, last, again = frames
        assert isinstance(first, HeadersFrame)
        assert isinstance(second, ContinuationFrame)
        assert isinstance(last, ContinuationFrame)
        assert first.block is None
        assert first.fields == ()
        assert second.block is None
        assert last.block is not None
        assert last.block.headers == (
            (b":status", b"200"),
            (b"content-type", b"text/event-stream"),
            (b"x-id", b"abc"),
        )
        assert last.block.fragments == (
            (first.start + 10, first.start + 10 + cut1),
            (second.header_end, second.end),
            (last.header_end, last.end),
        )
        content_type = last.fields[1]
        assert last.block.data == block
        assert last.block.data[content_type.start : content_type.end] == block[1 : reps[1].end]
        assert last.block.wire_ranges(content_type.start, content_type.end) == [
            (first.start + 10 + content_type.start, first.start + 10 + cut1),
            (second.header_end, second.header_end + content_type.end - cut1),
        ]
        assert content_type.note() == (
            "content-type: text/event-stream — literal with incremental indexing, name static 31,"
            " value Huffman (17→12 bytes); table now 1 entry, 61 bytes"
        )
        assert isinstance(again, HeadersFrame)
        assert again.fields[0].note() == "content-type: text/event-stream — indexed (dynamic 63)"
        assert (
            "HEADERS stream 3 [END_HEADERS]: 1 byte of field block; 1 field (1 indexed);"
            in again.note()
        )


def test_hpack_error_inline_names_the_wire_offset() -> None:
    wire = (
        h2f.ping() + h2f.headers(1, b"\x82\x83", end_headers=False) + h2f.continuation(1, b"\x80")
    )
    for cuts in ([], bytewise(wire)):
        outcome = lab_outcome(wire, cuts, decode_headers=True)
        assert outcome.status == "error"
        assert outcome.error_code == ErrorCode.COMPRESSION_ERROR
        assert outcome.error_offset == 17 + 11 + 9  # the \x80 in the CONTINUATION
        assert len(outcome.frames) == 2  # the PING and the HEADERS; not the CONTINUATION
    # Without decode_headers the same bytes are just frames.
    assert lab_outcome(wire).status == "ok"


def test_open_block_is_bounded() -> None:
    """With decode_headers, fragments wait for END_HEADERS: MAX_FIELD_BLOCK_SIZE bounds
    them, however many CONTINUATIONs they come in (h2 counts 64 frames instead)."""
    wire = h2f.headers(1, bytes(1000), end_headers=False)
    wire += h2f.continuation(1, bytes(16000), end_headers=False) * 5
    outcome = lab_outcome(wire, decode_headers=True)
    assert outcome.status == "error"
    assert outcome.error_code == ErrorCode.ENHANCE_YOUR_CALM
    assert outcome.error_offset == 1009 + 4 * 16009 + 9 + (MAX_FIELD_BLOCK_SIZE - 1000 - 4 * 16000)
    assert lab_outcome(wire).status == "ok"  # without decoding nothing is held


def test_header_decoder_is_reachable_and_configurable() -> None:
    decoder = FrameDecoder(decode_headers=True)
    assert decoder.header_decoder is not None
    decoder.header_decoder.max_table_size = 0
    with pytest.raises(HPACKError, match="must start with a dynamic table size update"):
        decoder.feed(h2f.headers(1, b"\x82"))
    assert FrameDecoder().header_decoder is None


# ------------------------------------------------------------- a real exchange, h2 to h2


def h2_exchange(
    tokens: list[bytes],
) -> tuple[bytes, bytes, list[h2.events.Event], list[h2.events.Event]]:
    """A client and a server H2Connection talking in memory: GET /tokens, a 200 with one
    DATA frame per token. Returns (client-to-server bytes, server-to-client bytes, the
    server's events, the client's events)."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    c2s, s2c = bytearray(), bytearray()
    server_events: list[h2.events.Event] = []
    client_events: list[h2.events.Event] = []

    def pump() -> None:
        while True:
            out = client.data_to_send()
            c2s.extend(out)
            if out:
                server_events.extend(server.receive_data(out))
            back = server.data_to_send()
            s2c.extend(back)
            if back:
                client_events.extend(client.receive_data(back))
            if not out and not back:
                return

    client.initiate_connection()
    server.initiate_connection()
    pump()
    client.send_headers(
        1,
        [
            (b":method", b"GET"),
            (b":path", b"/tokens?n=5"),
            (b":scheme", b"http"),
            (b":authority", b"lab"),
        ],
        end_stream=True,
    )
    pump()
    server.send_headers(1, [(b":status", b"200"), (b"content-type", b"text/plain; charset=utf-8")])
    for token in tokens:
        server.send_data(1, token)
    server.end_stream(1)
    pump()
    client.ping(b"pingpong")
    pump()
    return bytes(c2s), bytes(s2c), server_events, client_events  # fmt: skip


def hyperframe_types(data: bytes) -> list[tuple[int, int, int]]:
    out = []
    for raw in whole_frames(data):
        frame, length = hf.Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9 : 9 + length]))
        out.append((frame.type, frame.stream_id, length))
    return out


def test_a_real_h2_exchange() -> None:
    tokens = [f"tok{i} ".encode() for i in range(5)]
    c2s, s2c, server_events, client_events = h2_exchange(tokens)
    for cuts in ([], bytewise(c2s)):
        request = lab_outcome(c2s, cuts, decode_headers=True)
        assert request.status == "ok"
        assert isinstance(request.segments[0], Preface)
        assert [(f.type, f.stream_id, f.length) for f in request.frames] == hyperframe_types(
            c2s[24:]
        )
    response = lab_outcome(s2c, bytewise(s2c), decode_headers=True)
    assert response.status == "ok"
    assert [(f.type, f.stream_id, f.length) for f in response.frames] == hyperframe_types(s2c)
    assert all(f.problem is None for f in request.frames + response.frames)
    # What h2 decoded on each side is what the lab decoded from the bytes.
    [received] = [e for e in server_events if isinstance(e, h2.events.RequestReceived)]
    [req_headers] = [f for f in request.frames if isinstance(f, HeadersFrame)]
    assert req_headers.block is not None
    assert list(req_headers.block.headers) == list(received.headers)
    assert req_headers.flag_names == ("END_STREAM", "END_HEADERS")
    [answered] = [e for e in client_events if isinstance(e, h2.events.ResponseReceived)]
    [resp_headers] = [f for f in response.frames if isinstance(f, HeadersFrame)]
    assert resp_headers.block is not None
    assert list(resp_headers.block.headers) == list(answered.headers)
    data_frames = [f for f in response.frames if isinstance(f, DataFrame)]
    assert [f.data for f in data_frames] == [*tokens, b""]
    assert [e.data for e in client_events if isinstance(e, h2.events.DataReceived)] == [
        *tokens,
        b"",
    ]
    assert data_frames[-1].flag_names == ("END_STREAM",)
    settings_frames = [f for f in response.frames if isinstance(f, SettingsFrame)]
    assert [s.ack for s in settings_frames] == [False, True]
    assert {s.name for s in settings_frames[0].settings} >= {
        "MAX_CONCURRENT_STREAMS",
        "ENABLE_CONNECT_PROTOCOL",
    }
    pings = [f for f in response.frames if isinstance(f, PingFrame)]
    assert [(p.opaque_data, p.ack) for p in pings] == [(b"pingpong", True)]


# ------------------------------------------------------------------- the fuzz invariant


LEXICON = st.sampled_from(
    [
        PREFACE[:8], PREFACE[8:], h2f.settings(), h2f.settings(ack=True), h2f.ping(),
        h2f.data(1, b"tok"), h2f.headers(1, BLOCK), HEADERS_OPEN, h2f.continuation(1, b"\x82"),
        h2f.window_update(0, 1), encode_frame(8, 0, 1, bytes(4)), TOO_BIG_HEADER[:5],
        b"\x00\x00", b"\x00\x00\x05", b"\x01", b"\x04", b"\x08", b"\x09", b"\x80", b"\x00",
        b"\xff", b"\x00\x00\x00\x01", b"\x82\x84\x86",
    ]
)  # fmt: skip
noise = st.one_of(st.binary(max_size=80), st.lists(LEXICON, max_size=20).map(b"".join))


def check_invariant(body: bytes, cuts: Sequence[int], **options: Any) -> None:
    """Arbitrary bytes: segments or H2FrameError, nothing else, the same under any split.
    (lab_outcome lets any other exception through.)"""
    same_result(lab_outcome(body, **options), lab_outcome(body, cuts, **options))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_arbitrary_bytes_give_segments_or_h2_frame_error(data: st.DataObject) -> None:
    body = data.draw(noise)
    check_invariant(body, cuts_for(data, body))
    check_invariant(body, cuts_for(data, body), decode_headers=True, strict=True)
