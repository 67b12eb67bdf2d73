"""lab.wire.h2fields: every frame splits into the fields RFC 9113 lays out, which tile it,
each with its bytes and what they mean; H2Decoder nests them (and HPACK fields) under it."""

from __future__ import annotations

import itertools
import struct

import pytest

from lab.wire.h2encode import (
    continuation,
    data,
    encode_frame,
    goaway,
    headers,
    ping,
    preface,
    priority,
    push_promise,
    rst_stream,
    settings,
    window_update,
)
from lab.wire.h2fields import (
    DataField,
    DebugDataField,
    FlagsField,
    FragmentField,
    FrameField,
    LengthField,
    PaddingField,
    PayloadField,
    StreamIdField,
    TypeField,
    frame_bytes,
    frame_fields,
)
from lab.wire.h2frames import ErrorCode, Frame, FrameDecoder, SettingId
from lab.wire.h2messages import H2Decoder
from lab.wire.hpack import HeaderRepresentation
from lab.wire.segment import Nested

HEADER = ["Length", "Type", "Flags", "Stream Identifier"]
BLOCK = b"\x82\x86\x84"  # :method GET, :scheme http, :path / (RFC 7541 Appendix A)

# (the frame's bytes, the names of its payload's fields in wire order): RFC 9113 §6.
CASES = {
    "DATA": (data(1, b"hello"), ["Data"]),
    "DATA padded": (
        data(1, b"hello", pad_length=3, end_stream=True),
        ["Pad Length", "Data", "Padding"],
    ),
    "DATA empty": (data(1, end_stream=True), []),
    "HEADERS padded with priority": (
        headers(3, BLOCK, pad_length=2, depends_on=1, weight=200, exclusive=True),
        ["Pad Length", "Stream Dependency", "Weight", "Field Block Fragment", "Padding"],
    ),
    "PRIORITY": (priority(5, 3, 7), ["Stream Dependency", "Weight"]),
    "RST_STREAM": (rst_stream(1, ErrorCode.CANCEL), ["Error Code"]),
    "SETTINGS": (
        settings({SettingId.INITIAL_WINDOW_SIZE: 16, 0x99: 7}),
        ["Setting", "Setting"],
    ),
    "SETTINGS ACK": (settings(ack=True), []),
    "PUSH_PROMISE padded": (
        push_promise(1, 2, BLOCK, pad_length=1),
        ["Pad Length", "Promised Stream ID", "Field Block Fragment", "Padding"],
    ),
    "PING": (ping(b"lab-ping", ack=True), ["Opaque Data"]),
    "GOAWAY": (
        goaway(7, ErrorCode.ENHANCE_YOUR_CALM, b"too many resets"),
        ["Last-Stream-ID", "Error Code", "Additional Debug Data"],
    ),
    "WINDOW_UPDATE": (window_update(0, 1024), ["Window Size Increment"]),
    "CONTINUATION": (continuation(9, BLOCK), ["Field Block Fragment"]),
    "unknown type": (encode_frame(0xFA, 0x3, 1, b"\x01\x02"), ["Payload"]),
}


def decode(wire: bytes) -> Frame:
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, Frame)
    return frame


@pytest.mark.parametrize("name", CASES)
def test_fields_tile_the_frame_in_wire_order(name: str) -> None:
    wire, payload_fields = CASES[name]
    if name == "CONTINUATION":
        # A CONTINUATION only continues a block a HEADERS opened.
        decoder = FrameDecoder()
        decoder.feed(headers(9, b"", end_headers=False))
        (frame,) = decoder.feed(wire)
        assert isinstance(frame, Frame)
    else:
        frame = decode(wire)
    assert frame_bytes(frame) == wire
    fields = frame_fields(frame)
    assert [f.unit.name for f in fields if isinstance(f.unit, FrameField)] == [
        *HEADER,
        *payload_fields,
    ]
    assert fields[0].start == frame.start
    assert fields[-1].end == frame.end
    for a, b in itertools.pairwise(fields):
        assert a.end == b.start
    for f in fields:
        assert f.unit.start == f.start
        assert f.unit.end == f.end
        assert f.data == wire[f.start - frame.start : f.end - frame.start]
        assert f.nbytes > 0


def test_the_header_is_four_fields_of_3_1_1_4_octets() -> None:
    frame = decode(settings({SettingId.MAX_CONCURRENT_STREAMS: 100}))
    length, type_, flags, stream = (f.unit for f in frame_fields(frame)[:4])
    assert (type(length), type(type_), type(flags), type(stream)) == (
        LengthField, TypeField, FlagsField, StreamIdField,
    )  # fmt: skip
    assert [f.nbytes for f in (length, type_, flags, stream)] == [3, 1, 1, 4]
    assert length.note().startswith(f"Length {frame.length}: ")
    assert type_.note().startswith("Type SETTINGS (0x04)")
    assert flags.note().startswith("Flags 0x00: ACK clear")
    assert stream.note().startswith("Stream Identifier 0: the connection as a whole")
    assert "RFC 9113 §4.1" in length.note()


def test_each_flag_is_named_set_or_clear() -> None:
    frame = decode(headers(1, BLOCK, end_stream=True, depends_on=0))
    flags = frame_fields(frame)[2].unit
    assert flags.note().startswith(
        "Flags 0x25: END_STREAM (0x1), END_HEADERS (0x4), PRIORITY (0x20) set; PADDED clear"
    )
    frame = decode(encode_frame(0x7, 0x41, 0, bytes(8)))  # GOAWAY defines no flags
    note = frame_fields(frame)[2].unit.note()
    assert "GOAWAY defines no flags" in note
    assert "0x41 means nothing for this type and is ignored" in note


def test_reserved_bits_are_shown_and_masked() -> None:
    wire = bytearray(window_update(3, 10))
    wire[5] |= 0x80  # R in the header
    wire[9] |= 0x80  # R before the increment
    fields = {f.unit.name: f.unit for f in frame_fields(decode(bytes(wire)))}
    assert fields["Stream Identifier"].note().startswith("Stream Identifier 3: a client-initiated")
    assert "R 1: reserved, ignored" in fields["Stream Identifier"].note()
    assert fields["Window Size Increment"].note().startswith("Window Size Increment 10: ")
    assert "R 1: reserved, ignored" in fields["Window Size Increment"].note()


def test_payload_fields_say_their_values() -> None:
    def notes(wire: bytes) -> dict[str, str]:
        return {f.unit.name: f.unit.note() for f in frame_fields(decode(wire))}

    (setting, unknown) = [
        f.unit.note()
        for f in frame_fields(decode(settings({SettingId.INITIAL_WINDOW_SIZE: 16, 0x99: 7})))
        if f.unit.name == "Setting"
    ]
    assert setting.startswith("setting INITIAL_WINDOW_SIZE (0x4) = 16: ")
    assert unknown.startswith("setting of an unknown identifier (0x99) = 7: ")
    assert "ignores it" in unknown
    assert notes(rst_stream(1, ErrorCode.CANCEL))["Error Code"].startswith(
        "Error Code CANCEL (0x8): the stream is no longer needed"
    )
    away = notes(goaway(7, ErrorCode.ENHANCE_YOUR_CALM, b"too many resets"))
    assert away["Last-Stream-ID"].startswith("Last-Stream-ID 7: ")
    assert away["Error Code"].startswith("Error Code ENHANCE_YOUR_CALM (0xb)")
    assert "'too many resets'" in away["Additional Debug Data"]
    assert notes(ping(b"lab-ping"))["Opaque Data"].startswith(
        f"Opaque Data {b'lab-ping'.hex()} ('lab-ping')"
    )
    assert "on the connection" in notes(window_update(0, 1024))["Window Size Increment"]
    padded = notes(headers(3, BLOCK, pad_length=2, depends_on=1, weight=200, exclusive=True))
    assert padded["Pad Length"].startswith("Pad Length 2: ")
    assert padded["Stream Dependency"].startswith("E 1, Stream Dependency 1: ")
    assert padded["Weight"].startswith("Weight 200: a share of 201")
    assert padded["Padding"].startswith("Padding, 2 octets")
    assert padded["Field Block Fragment"].startswith("Field Block Fragment, 3 octets")
    promised = notes(push_promise(1, 2, BLOCK))
    assert promised["Promised Stream ID"].startswith("Promised Stream ID 2: ")


def test_what_a_frame_carries_is_content_and_the_rest_is_binary() -> None:
    kinds = {type(f.unit): f.unit for f in frame_fields(decode(data(1, b"hi", pad_length=1)))}
    assert not kinds[DataField].binary  # the stream's content: text or not
    assert kinds[PaddingField].binary
    assert kinds[LengthField].binary
    away = {type(f.unit) for f in frame_fields(decode(goaway(0, 0, b"bye")))}
    assert DebugDataField in away
    assert PayloadField in away


def test_h2_decoder_nests_fields_and_hpack_under_each_frame() -> None:
    block = b"\x82\x86\x84\x41\x09127.0.0.1"  # GET http / and a literal :authority
    wire = preface() + settings() + headers(1, block, end_stream=True)
    segs = H2Decoder(from_client=True).feed(wire)
    frames = [s for s in segs if isinstance(s, Frame)]
    assert [f.type_name for f in frames] == ["SETTINGS", "HEADERS"]
    after = segs[segs.index(frames[1]) + 1 :]
    assert all(isinstance(s, Nested) for s in after)
    units = [s.unit for s in after if isinstance(s, Nested)]
    names = [u.name if isinstance(u, FrameField) else type(u).__name__ for u in units]
    assert names == [*HEADER, "Field Block Fragment", *["HeaderRepresentation"] * 4]
    fragment = next(s for s in after if isinstance(s, Nested) and isinstance(s.unit, FragmentField))
    reps = [s for s in after if isinstance(s, Nested) and isinstance(s.unit, HeaderRepresentation)]
    # The HPACK fields tile the fragment they were decoded from.
    assert reps[0].start == fragment.start
    assert reps[-1].end == fragment.end
    assert b"".join(r.data for r in reps) == block


def test_a_padded_frame_s_fields_have_the_wire_s_bytes() -> None:
    wire = data(1, b"abc", pad_length=4)
    fields = frame_fields(decode(wire))
    assert [f.data for f in fields] == [
        struct.pack(">I", 8)[1:], b"\x00", b"\x08", b"\x00\x00\x00\x01", b"\x04", b"abc", bytes(4),
    ]  # fmt: skip
