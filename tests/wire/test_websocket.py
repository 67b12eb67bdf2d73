"""lab.wire.websocket: RFC 6455's own examples, every field of a frame, every refusal with
its offset and close code, fragments with control frames between them, UTF-8 across
fragments, limits, any split of the input, round trips through the encoder, and wsproto
side by side on the same bytes.

The heavy hypothesis and differential runs are in test_websocket_fuzz.py (marked
``fuzz``); the generators and helpers they share live here. The handshake is tested in
test_websocket_handshake.py.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.fuzz.ref_websocket import as_wsproto, wsproto_messages
from lab.wire import websocket as ws
from lab.wire.segment import Nested, Segment
from lab.wire.websocket import (
    CloseCodeField,
    CloseReasonField,
    FrameField,
    LengthField,
    MaskingKeyField,
    Message,
    PayloadField,
    WebSocketDecoder,
    WebSocketError,
    WebSocketFrame,
)

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the masking key of RFC 6455 §5.7's examples

# ------------------------------------------------------------------------------- helpers


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    form: int | None = None,
) -> bytes:
    """One frame built octet by octet from §5.2, independently of lab.wire's encoder.
    ``form`` forces the length form (7, 16 or 64 bits) even where it is not minimal."""
    n = len(payload)
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if key is not None else 0
    if form == 7:
        head = bytes([b0, mask_bit | n])
    elif form == 16:
        head = bytes([b0, mask_bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mask_bit | 127]) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def client_frame(opcode: int, payload: bytes = b"", **kw: Any) -> bytes:
    """A frame as a client sends it: masked (what a "server" decoder reads)."""
    kw.setdefault("key", KEY)
    return frame(opcode, payload, **kw)


@dataclass
class Outcome:
    """What the decoder made of some bytes: "ok", "error" or "incomplete", and details."""

    status: str
    segments: list[Segment] = field(default_factory=list)
    offset: int | None = None
    code: int | None = None
    message: str = ""

    @property
    def frames(self) -> list[WebSocketFrame]:
        return [s for s in self.segments if isinstance(s, WebSocketFrame)]

    @property
    def messages(self) -> list[Message]:
        return [f.message for f in self.frames if f.message is not None]


def pieces(data: bytes, cuts: Sequence[int] = ()) -> list[bytes]:
    """``data`` cut at the given indexes (any order, repeats allowed); no empty pieces."""
    bounds = [0, *sorted({c for c in cuts if 0 <= c <= len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def bytewise(data: bytes) -> list[int]:
    return list(range(1, len(data)))


def lab_outcome(data: bytes, role: str = "server", cuts: Sequence[int] = (), **kw: Any) -> Outcome:
    """Feed ``data`` in pieces, then eof. Any exception other than WebSocketError
    propagates: that is a bug."""
    decoder = WebSocketDecoder(role, **kw)  # type: ignore[arg-type]
    segments: list[Segment] = []
    try:
        for piece in pieces(data, cuts):
            segments += decoder.feed(piece)
    except WebSocketError as exc:
        segments += exc.segments
        return Outcome("error", segments, exc.offset, exc.close_code, exc.message)
    try:
        segments += decoder.eof()
    except WebSocketError as exc:
        return Outcome("incomplete", segments, exc.offset, exc.close_code, exc.message)
    return Outcome("ok", segments)


def same_result(a: Outcome, b: Outcome) -> None:
    assert (a.status, a.offset, a.code, a.message) == (b.status, b.offset, b.code, b.message)
    assert a.segments == b.segments


def cuts_for(draw: st.DataObject, data: bytes) -> list[int]:
    return draw.draw(st.lists(st.integers(0, len(data)), max_size=12), label="cuts")


def check_tiling(out: Outcome, data: bytes) -> None:
    """Every byte before the failure (all of them, when accepted) is in exactly one
    top-level segment, in order; each frame's fields tile it bit by bit."""
    top = [s for s in out.segments if not isinstance(s, Nested)]
    assert all(isinstance(s, WebSocketFrame) for s in top)
    at = 0
    for seg in top:
        assert seg.start == at
        at = seg.end
    if out.status == "ok":
        assert at == len(data)
    else:
        assert out.offset is not None
        assert at <= out.offset <= len(data)
    fields: dict[int, list[Nested]] = {}
    owner = None
    for seg in out.segments:
        if isinstance(seg, WebSocketFrame):
            owner = seg
            fields[id(owner)] = []
        else:
            assert isinstance(seg, Nested)
            assert owner is not None
            fields[id(owner)].append(seg)
    for seg in top:
        assert isinstance(seg, WebSocketFrame)
        check_fields(seg, fields[id(seg)], data)


def check_fields(f: WebSocketFrame, fields: list[Nested], data: bytes) -> None:
    """The fields of ``f``: wire order, each octet's bits disjoint and making 0xff, each
    Nested's data the wire octets, and the frame rebuilt from its fields is the wire."""
    assert fields == ws.frame_fields(f)
    assert ws.frame_bytes(f) == data[f.start : f.end]
    bits = [0] * f.nbytes
    prev = f.start
    for nested in fields:
        unit = nested.unit
        assert isinstance(unit, FrameField)
        assert (nested.start, nested.end) == (unit.start, unit.end)
        assert nested.data == data[unit.start : unit.end]
        assert unit.start >= prev
        prev = unit.start
        for i in range(unit.start - f.start, unit.end - f.start):
            assert not bits[i] & unit.bits
            bits[i] |= unit.bits
    assert bits == [0xFF] * f.nbytes


def run(data: bytes, role: str = "server", **kw: Any) -> Outcome:
    """Whole, then byte by byte: the same result, which is returned, tiling checked."""
    whole = lab_outcome(data, role, **kw)
    same_result(whole, lab_outcome(data, role, bytewise(data), **kw))
    check_tiling(whole, data)
    return whole


# ------------------------------------------------------------------ RFC 6455 §5.7 examples

HELLO = b"Hello"


def test_rfc_examples_decode() -> None:
    # §5.7: a single-frame unmasked text message, and the same masked.
    unmasked = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    masked = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    (f,) = run(unmasked, "client").frames
    assert (f.fin, f.opcode, f.masked, f.length, f.data) == (True, 1, False, 5, HELLO)
    assert f.message == Message("text", "Hello")
    (f,) = run(masked, "server").frames
    assert (f.masked, f.mask_key, f.payload, f.data) == (True, KEY, masked[6:], HELLO)
    assert f.message == Message("text", "Hello")
    # A fragmented unmasked text message: "Hel" then "lo".
    frags = bytes([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F])
    first, last = run(frags, "client").frames
    assert (first.fin, first.fragment, first.message) == (False, 1, None)
    assert "first fragment of a text message: 'Hel'" in first.note()
    assert "fragment 2, the last, of a text message" in last.note()
    assert (last.opcode, last.fragment, last.message) == (0, 2, Message("text", "Hello"))
    # Unmasked Ping, masked Pong, both with "Hello".
    (ping,) = run(bytes([0x89, 0x05]) + HELLO, "client").frames
    assert ping.message == Message("ping", HELLO)
    (pong,) = run(bytes([0x8A, 0x85]) + masked[2:], "server").frames
    assert pong.message == Message("pong", HELLO)
    # 256 bytes binary in a single unmasked frame; 64 KiB likewise.
    body = bytes(range(256))
    (f,) = run(bytes([0x82, 0x7E, 0x01, 0x00]) + body, "client").frames
    assert (f.length, f.length_octets, f.message) == (256, 2, Message("binary", body))
    big = bytes(65536)
    raw = bytes([0x82, 0x7F]) + (65536).to_bytes(8, "big") + big
    (f,) = lab_outcome(raw, "client").frames
    assert (f.length, f.length_octets, f.message) == (65536, 8, Message("binary", big))


def test_encoder_writes_the_rfc_examples() -> None:
    assert ws.text("Hello") == bytes([0x81, 0x05]) + HELLO
    assert ws.text("Hello", mask_key=KEY) == bytes(
        [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
    )
    assert ws.text("Hel", fin=False) + ws.continuation(b"lo") == bytes(
        [0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F]
    )
    assert ws.ping(HELLO) == bytes([0x89, 0x05]) + HELLO
    assert ws.pong(HELLO, mask_key=KEY)[:2] == bytes([0x8A, 0x85])
    assert ws.binary(bytes(256))[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
    assert ws.binary(bytes(65536))[:10] == bytes([0x82, 0x7F]) + (65536).to_bytes(8, "big")


# ------------------------------------------------------------------------ fields of a frame


def fields_of(data: bytes, role: str = "server") -> list[FrameField]:
    out = run(data, role)
    assert out.status == "ok"
    return [s.unit for s in out.segments if isinstance(s, Nested)]  # type: ignore[misc]


def test_fields_name_every_part_of_a_masked_frame() -> None:
    fields = fields_of(client_frame(1, HELLO))
    assert [f.name for f in fields] == [
        "FIN",
        "RSV1-3",
        "opcode",
        "MASK",
        "Payload len",
        "Masking-key",
        "Payload data",
    ]
    assert [(f.start, f.end, f.bits) for f in fields] == [
        (0, 1, 0x80),
        (0, 1, 0x70),
        (0, 1, 0x0F),
        (1, 2, 0x80),
        (1, 2, 0x7F),
        (2, 6, 0xFF),
        (6, 11, 0xFF),
    ]
    assert fields[3].text.startswith("MASK 1")
    assert fields_of(frame(1, HELLO), "client")[3].text.startswith("MASK 0")
    opcode, key, payload = fields[2], fields[5], fields[6]
    assert "TEXT" in opcode.text
    assert "0x1" in opcode.text
    assert isinstance(key, MaskingKeyField)
    assert KEY.hex() in key.text
    assert isinstance(payload, PayloadField)
    assert payload.data == HELLO
    assert "'Hello'" in payload.text
    assert "masked" in payload.text


def test_the_payload_field_is_masked_on_the_wire_and_unmasked_in_the_unit() -> None:
    data = client_frame(2, b"\x00\x01\x02\x03\x04")
    out = run(data)
    (nested,) = [s for s in out.segments if isinstance(s, Nested) and s.unit.kind == "ws-payload"]
    assert nested.data == data[6:] != b"\x00\x01\x02\x03\x04"
    assert isinstance(nested.unit, PayloadField)
    assert nested.unit.data == b"\x00\x01\x02\x03\x04"


@pytest.mark.parametrize(
    ("size", "octets"),
    [(0, 0), (1, 0), (125, 0), (126, 2), (300, 2), (65535, 2), (65536, 8), (70000, 8)],
)
def test_the_payload_length_in_its_three_forms(size: int, octets: int) -> None:
    data = frame(2, bytes(size))
    assert ws.encode_frame(2, bytes(size)) == data  # the encoder picks the minimal form
    out = lab_outcome(data, "client")
    (f,) = out.frames
    assert (f.length, f.length_octets, f.header_size) == (size, octets, 2 + octets)
    check_tiling(out, data)
    lengths = [s.unit for s in out.segments if isinstance(s, Nested)]
    lengths = [u for u in lengths if isinstance(u, LengthField)]
    assert [u.name for u in lengths] == ["Payload len"] + ["Extended payload length"] * bool(octets)
    assert lengths[0].text.startswith(
        f"Payload len {126 if octets == 2 else 127 if octets else size}"
    )
    if octets:
        assert (lengths[1].start, lengths[1].end) == (2, 2 + octets)
        assert f"length {size}:" in lengths[1].text


def test_close_fields_carry_the_code_and_the_reason_unmasked() -> None:
    fields = fields_of(client_frame(8, struct.pack("!H", 1001) + "au revoir é".encode()))
    code, reason = fields[-2], fields[-1]
    assert isinstance(code, CloseCodeField)
    assert code.code == 1001
    assert "GOING_AWAY" in code.text
    assert (code.start, code.end) == (6, 8)
    assert isinstance(reason, CloseReasonField)
    assert reason.reason == "au revoir é"
    assert fields_of(client_frame(8))[-1].name == "Masking-key"  # no body, no body fields


def test_rsv_and_fin_fields_say_what_is_set() -> None:
    data = frame(1, b"x", fin=False, rsv=4) + frame(0, b"y")
    out = run(data, "client", rsv_allowed=4)
    texts = [s.unit.note() for s in out.segments if isinstance(s, Nested)]
    assert "RSV1 1, RSV2 0, RSV3 0" in texts[1]
    assert "extension" in texts[1]
    assert texts[0].startswith("FIN 0")


# ------------------------------------------------------------------------- messages


def test_control_frames_between_fragments_are_delivered_in_order() -> None:
    data = (
        client_frame(1, b"He", fin=False)
        + client_frame(9, b"p1")
        + client_frame(0, b"ll", fin=False)
        + client_frame(10, b"p2")
        + client_frame(0, b"o")
        + client_frame(2, b"\xff")
    )
    out = run(data)
    assert out.status == "ok"
    assert out.messages == [
        Message("ping", b"p1"),
        Message("pong", b"p2"),
        Message("text", "Hello"),
        Message("binary", b"\xff"),
    ]
    f = out.frames
    assert [x.fragment for x in f] == [1, 0, 2, 0, 3, 1]
    assert [x.interleaved for x in f] == [False, True, False, True, False, False]
    assert [x.message_type for x in f] == ["text", None, "text", None, "text", "binary"]
    assert "between the fragments" in f[1].note()
    assert "fragment 3, the last, of a text message" in f[4].note()


def test_empty_fragments_and_empty_messages() -> None:
    data = client_frame(1, fin=False) + client_frame(0, fin=False) + client_frame(0)
    assert run(data).messages == [Message("text", "")]
    assert run(client_frame(2)).messages == [Message("binary", b"")]


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_a_character_may_be_split_across_fragments_anywhere(char: str) -> None:
    raw = ("a" + char + "b").encode()
    for i in range(len(raw) + 1):
        data = client_frame(1, raw[:i], fin=False) + client_frame(9) + client_frame(0, raw[i:])
        out = run(data)
        assert out.status == "ok", (i, out.message)
        assert out.messages[-1] == Message("text", "a" + char + "b")


@pytest.mark.parametrize(
    "bad",
    [b"\xed\xa0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xc2\x41"],
)
def test_the_second_octet_of_a_character_is_checked_across_fragments(bad: bytes) -> None:
    """A lead octet at the end of one fragment limits what the next may start with: no
    surrogates, no overlong forms, nothing past U+10FFFF (RFC 3629 §4)."""
    data = frame(1, b"ab" + bad[:1], fin=False) + frame(9) + frame(0, bad[1:])
    out = run(data, "client")
    assert (out.code, out.offset) == (1007, 5 + 2 + 2), out.message
    assert [m.type for m in out.messages] == ["ping"]


def test_parse_gives_every_message_in_order() -> None:
    data = client_frame(1, b"a") + client_frame(9, b"?") + client_frame(8, b"\x03\xe8")
    assert ws.parse(data, "server") == [
        Message("text", "a"),
        Message("ping", b"?"),
        Message("close", b"\x03\xe8", 1000, ""),
    ]
    with pytest.raises(WebSocketError):
        ws.parse(data[:-1], "server")


def test_close_without_a_body_has_no_code() -> None:
    out = run(client_frame(8))
    assert out.messages == [Message("close", b"", None, "")]
    assert "1005" in out.frames[0].note()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011])
def test_close_codes_rfc_6455_defines_are_accepted(code: int) -> None:
    out = run(client_frame(8, struct.pack("!H", code) + b"why"))
    assert out.messages == [Message("close", struct.pack("!H", code) + b"why", code, "why")]
    assert ws.close_code_name(code) in out.frames[0].note()


@pytest.mark.parametrize("code", [1012, 1013, 1014, 3000, 3999, 4000, 4999])
def test_registered_and_private_close_codes_are_accepted(code: int) -> None:
    assert run(client_frame(8, struct.pack("!H", code))).messages[0].code == code


def test_control_frames_after_close_are_decoded_and_marked() -> None:
    out = run(client_frame(8) + client_frame(9, b"late"))
    assert out.status == "ok"
    assert out.frames[1].after_close
    assert "discards" in out.frames[1].note()


def test_rsv_bits_an_extension_defines_are_its_data_not_utf8() -> None:
    # permessage-style: RSV1 on the first frame of a message; its data is not text.
    data = frame(1, b"\xff\xfe", fin=False, rsv=4) + frame(0, b"\x00")
    out = run(data, "client", rsv_allowed=4)
    assert out.messages == [Message("text", b"\xff\xfe\x00")]
    payload = next(s for s in out.segments if isinstance(s, Nested) and s.unit.kind == "ws-payload")
    assert "not decoded" in payload.note()
    # The extension does not make RSV2 legal, nor stop UTF-8 checks on plain frames.
    assert run(frame(1, b"x", rsv=2), "client", rsv_allowed=4).code == 1002
    assert run(frame(1, b"\xff"), "client", rsv_allowed=4).code == 1007


# ------------------------------------------------------------------------- refusals

# (name, role, bytes, close code, offset, words the message must contain)
REFUSALS: list[tuple[str, str, bytes, int, int, str]] = [
    ("reserved opcode 0x3", "server", client_frame(3), 1002, 0, "reserved opcode 0x3"),
    ("reserved opcode 0x7", "client", frame(7), 1002, 0, "reserved opcode 0x7"),
    ("reserved opcode 0xb", "server", client_frame(0xB), 1002, 0, "reserved opcode 0xb"),
    ("reserved opcode 0xf", "client", frame(0xF), 1002, 0, "reserved opcode 0xf"),
    ("RSV1", "server", client_frame(1, b"x", rsv=4), 1002, 0, "RSV1 set"),
    ("RSV2 RSV3", "client", frame(2, rsv=3), 1002, 0, "RSV2, RSV3 set"),
    ("fragmented ping", "server", client_frame(9, fin=False), 1002, 0, "without FIN"),
    ("fragmented close", "client", frame(8, fin=False), 1002, 0, "without FIN"),
    ("orphan continuation", "server", client_frame(0, b"x"), 1002, 0, "no fragmented"),
    (
        "text inside a message",
        "server",
        client_frame(1, b"a", fin=False) + client_frame(1, b"b"),
        1002,
        7,
        "while a fragmented text message",
    ),
    (
        "binary inside a message, after a ping",
        "client",
        frame(2, b"a", fin=False) + frame(9) + frame(2),
        1002,
        5,
        "while a fragmented binary",
    ),
    ("data after close", "server", client_frame(8) + client_frame(1), 1002, 6, "after the Close"),
    ("unmasked to a server", "server", frame(1, b"x"), 1002, 1, "unmasked frame from the client"),
    (
        "masked to a client",
        "client",
        client_frame(1, b"x"),
        1002,
        1,
        "masked frame from the server",
    ),
    ("ping over 125", "client", frame(9, bytes(126)), 1002, 1, "at most 125"),
    ("close in 64-bit form", "server", client_frame(8, b"", form=64), 1002, 1, "at most 125"),
    ("16-bit form for 125", "client", frame(2, bytes(125), form=16), 1002, 2, "minimal"),
    ("16-bit form for 0", "server", client_frame(1, form=16), 1002, 2, "minimal"),
    ("64-bit form for 65535", "client", frame(2, bytes(65535), form=64), 1002, 2, "minimal"),
    ("64-bit form for 5", "server", client_frame(2, HELLO, form=64), 1002, 2, "minimal"),
    (
        "64-bit length with the top bit",
        "client",
        bytes([0x82, 0x7F, 0x80]) + bytes(7),
        1002,
        2,
        "most significant bit",
    ),
    ("invalid UTF-8", "server", client_frame(1, b"ab\xffc"), 1007, 8, "invalid UTF-8"),
    ("overlong", "client", frame(1, b"\xc0\xaf"), 1007, 2, "invalid UTF-8"),
    ("surrogate", "client", frame(1, b"x\xed\xa0\x80"), 1007, 4, "invalid UTF-8"),
    ("past U+10FFFF", "client", frame(1, b"\xf4\x90\x80\x80"), 1007, 3, "invalid UTF-8"),
    (
        "surrogate start at a fragment end",
        "client",
        frame(1, b"a\xed\xa0", fin=False) + frame(9) + frame(0, b"\x80"),
        1007,
        4,
        "invalid UTF-8",
    ),
    (
        "invalid continuation in the next fragment",
        "client",
        frame(1, b"\xe2\x82", fin=False) + frame(0, b"A"),
        1007,
        6,
        "invalid UTF-8",
    ),
    (
        "message ending inside a character",
        "server",
        client_frame(1, b"\xe2", fin=False) + client_frame(0, b"\x82"),
        1007,
        14,
        "ends inside a UTF-8 character",
    ),
    ("close body of 1 octet", "server", client_frame(8, b"\x03"), 1002, 6, "1-octet body"),
    ("close code 999", "client", frame(8, struct.pack("!H", 999)), 1002, 2, "outside"),
    ("close code 1004", "client", frame(8, struct.pack("!H", 1004)), 1002, 2, "reserved"),
    ("close code 1005", "server", client_frame(8, struct.pack("!H", 1005)), 1002, 6, "never"),
    ("close code 1006", "client", frame(8, struct.pack("!H", 1006)), 1002, 2, "never sent"),
    ("close code 1015", "client", frame(8, struct.pack("!H", 1015)), 1002, 2, "never sent"),
    ("close code 1016", "client", frame(8, struct.pack("!H", 1016)), 1002, 2, "reserved"),
    ("close code 2999", "client", frame(8, struct.pack("!H", 2999)), 1002, 2, "reserved"),
    ("close code 5000", "client", frame(8, struct.pack("!H", 5000)), 1002, 2, "outside"),
    (
        "close reason not UTF-8",
        "server",
        client_frame(8, b"\x03\xe8ok\xfe"),
        1007,
        10,
        "reason is not UTF-8",
    ),
    ("close reason cut", "client", frame(8, b"\x03\xe8\xe2\x82"), 1007, 6, "not UTF-8"),
]


@pytest.mark.parametrize(
    ("role", "data", "code", "offset", "words"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals_name_the_offset_and_the_close_code(
    role: str, data: bytes, code: int, offset: int, words: str
) -> None:
    out = run(data, role)
    assert (out.status, out.code, out.offset) == ("error", code, offset), out.message
    assert words in out.message
    assert f"close code {code}" in out.message
    decoder = WebSocketDecoder(role)  # type: ignore[arg-type]
    with pytest.raises(WebSocketError) as first:
        decoder.feed(data)
    assert first.value.close_name == ws.close_code_name(code)
    with pytest.raises(WebSocketError, match="already failed") as again:
        decoder.feed(b"\x81\x00")
    assert (again.value.offset, again.value.close_code) == (offset, code)


def test_a_refusal_keeps_the_frames_before_it() -> None:
    good = client_frame(1, b"ok") + client_frame(9)
    out = run(good + client_frame(3))
    assert [m.type for m in out.messages] == ["text", "ping"]
    assert out.offset == len(good)


def test_header_refusals_come_before_the_payload_arrives() -> None:
    # The reserved opcode is refused on its first octet, with nothing else fed.
    with pytest.raises(WebSocketError) as exc:
        WebSocketDecoder("client").feed(b"\x83")
    assert exc.value.offset == 0
    # A server frame announcing 2^62 octets is refused from its 10 header octets.
    decoder = WebSocketDecoder("client")
    head = bytes([0x82, 0x7F]) + (1 << 62).to_bytes(8, "big")
    with pytest.raises(WebSocketError) as exc:
        decoder.feed(head)
    assert (exc.value.close_code, exc.value.offset) == (1009, 2)
    assert decoder.buffered == 0


def test_message_size_limit_counts_all_fragments() -> None:
    limit = 200
    assert run(client_frame(2, bytes(200)), max_message_size=limit).status == "ok"
    out = run(client_frame(2, bytes(201)), max_message_size=limit)
    assert (out.code, out.offset) == (1009, 2)  # at the 16-bit length
    data = client_frame(2, bytes(150), fin=False) + client_frame(0, bytes(51))
    out = run(data, max_message_size=limit)
    assert (out.code, out.offset) == (1009, 159)  # the second frame's Payload len
    assert "after 150 bytes" in out.message
    # The count starts again with each message; control frames are never limited.
    data = client_frame(2, bytes(150)) + client_frame(9, bytes(125)) + client_frame(2, bytes(150))
    assert run(data, max_message_size=limit).status == "ok"
    with pytest.raises(ValueError, match="125"):
        WebSocketDecoder("server", max_message_size=124)


def test_default_limit_is_max_message_size() -> None:
    n = ws.MAX_MESSAGE_SIZE + 1
    head = bytes([0x82, 0x7F]) + n.to_bytes(8, "big")
    out = lab_outcome(head, "client")
    assert (out.code, out.offset) == (1009, 2)
    head = bytes([0x82, 0x7F]) + (n - 1).to_bytes(8, "big")
    assert lab_outcome(head, "client").code == 1006  # accepted, then the input ends


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x81", "inside a frame header"),
        (b"\x81\xfe\x01", "inside a frame header"),
        (client_frame(1, HELLO)[:5], "inside a frame header"),  # in the masking key
        (client_frame(1, HELLO)[:-2], "2 more bytes announced"),
    ],
)
def test_input_ending_inside_a_frame_is_an_abnormal_closure(data: bytes, words: str) -> None:
    out = run(data)
    assert (out.status, out.code, out.offset) == ("incomplete", 1006, len(data))
    assert words in out.message


def test_eof_at_a_frame_boundary_is_clean_even_inside_a_message() -> None:
    decoder = WebSocketDecoder("server")
    decoder.feed(client_frame(1, b"a", fin=False))
    assert decoder.eof() == []
    assert decoder.message_open
    assert not decoder.close_received


def test_the_decoder_counts_from_its_offset() -> None:
    out = lab_outcome(client_frame(9, b"x"), offset=1000)
    assert (out.frames[0].start, out.frames[0].end) == (1000, 1007)
    assert [s.start for s in out.segments[1:]] == [1000, 1000, 1000, 1001, 1001, 1002, 1006]
    assert lab_outcome(client_frame(3), offset=50).offset == 50


def test_role_is_checked() -> None:
    with pytest.raises(ValueError, match="role"):
        WebSocketDecoder("browser")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the encoder


def test_mask_is_its_own_inverse_and_follows_the_key() -> None:
    data = bytes(range(11))
    masked = ws.mask(data, KEY)
    assert masked == bytes(b ^ KEY[i % 4] for i, b in enumerate(data))
    assert ws.mask(masked, KEY) == data
    assert ws.mask(b"", KEY) == b""
    with pytest.raises(ValueError, match="4 octets"):
        ws.mask(data, b"abc")


def test_helpers_refuse_what_a_receiver_refuses() -> None:
    with pytest.raises(ValueError, match="125"):
        ws.ping(bytes(126))
    with pytest.raises(ValueError, match="125"):
        ws.close(1000, "x" * 124)
    with pytest.raises(ValueError, match="needs a close code"):
        ws.close(None, "why")
    for code in (999, 1004, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError, match=str(code)):
            ws.close(code)
    with pytest.raises(ValueError, match="4 bits"):
        ws.encode_frame(16)
    with pytest.raises(ValueError, match="3 bits"):
        ws.encode_frame(1, rsv=8)


def test_close_helper_round_trips() -> None:
    assert ws.parse(ws.close(), "client") == [Message("close", b"")]
    assert ws.parse(ws.close(4000, "bye ✓", mask_key=KEY), "server") == [
        Message("close", b"\x0f\xa0" + "bye ✓".encode(), 4000, "bye ✓")
    ]


def test_message_helper_fragments_and_masks_with_fresh_keys() -> None:
    data = ws.message("é" * 10, fragment_size=3, masked=True)
    out = run(data)
    assert out.messages == [Message("text", "é" * 10)]
    assert [f.length for f in out.frames] == [3] * 6 + [2]
    assert [f.opcode for f in out.frames] == [1] + [0] * 6
    assert len({f.mask_key for f in out.frames}) > 1
    assert run(ws.message(b"abc"), "client").messages == [Message("binary", b"abc")]
    assert ws.random_mask_key() != ws.random_mask_key() or ws.random_mask_key() != KEY


# ----------------------------------------------------------------- generated streams


@dataclass
class Built:
    """A stream of frames built from a plan, and the messages it must decode to."""

    data: bytes
    messages: list[Message]


def _utf8_pieces(text: str, cuts: list[int]) -> list[bytes]:
    raw = text.encode()
    return pieces(raw, cuts) or [b""]


@st.composite
def valid_streams(draw: st.DrawFn, role: str = "server") -> Built:
    """Messages (text or binary, in fragments cut anywhere, UTF-8 characters included)
    with control frames between and among their fragments, maybe a Close at the end."""
    masked = role == "server"

    def key() -> bytes | None:
        return draw(st.binary(min_size=4, max_size=4)) if masked else None

    out = bytearray()
    messages: list[Message] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            control = draw(st.sampled_from([9, 10]))
            payload = draw(st.binary(max_size=125))
            out += frame(control, payload, key=key())
            messages.append(Message("ping" if control == 9 else "pong", payload))
            continue
        if draw(st.booleans()):
            text = draw(st.text(max_size=40))
            raw = text.encode()
            opcode, msg = 1, Message("text", text)
        else:
            raw = draw(st.binary(max_size=300))
            opcode, msg = 2, Message("binary", raw)
        parts = pieces(raw, draw(st.lists(st.integers(0, len(raw)), max_size=4))) or [b""]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            out += frame(opcode if i == 0 else 0, part, fin=last, key=key())
            if not last and draw(st.booleans()):
                payload = draw(st.binary(max_size=20))
                out += frame(9, payload, key=key())
                messages.append(Message("ping", payload))
        messages.append(msg)
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
        reason = draw(st.text(max_size=20).filter(lambda r: len(r.encode()) <= 123))
        body = struct.pack("!H", code) + reason.encode()
        out += frame(8, body, key=key())
        messages.append(Message("close", body, code, reason))
    return Built(bytes(out), messages)


GOOD_CODES = [1000, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999]
BAD_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
# Pieces of text payloads: whole characters; characters cut in two (valid or not depending
# on the neighbouring pieces and fragments); octets no context makes valid.
WHOLE = [b"", b"a", b"hi ", "é".encode(), "€".encode(), "😀".encode(), b"\xed\x9f\xbf"]
CUT = [b"\xe2", b"\x82\xac", b"\xf0\x9f", b"\x98\x80", b"\xed", b"\x9f\xbf", b"\xa0"]
BAD = [b"\xff", b"\xc0\xaf", b"\xed\xa0", b"\xf4\x90", b"\xed\xbf\xbf", b"\x82"]


@st.composite
def payloads(draw: st.DrawFn, opcode: int, bad: bool) -> bytes:
    """A payload for ``opcode``: plausible, or with ``bad`` maybe broken."""
    text = st.sampled_from(WHOLE + CUT + (BAD if bad else []))
    if opcode == 8:
        if bad and draw(st.booleans()):
            return draw(st.sampled_from([b"", b"\x03"]))
        code = draw(st.sampled_from(GOOD_CODES + (BAD_CODES if bad else [])))
        reason = b"".join(draw(st.lists(st.sampled_from(WHOLE + (BAD if bad else [])), max_size=4)))
        return struct.pack("!H", code) + reason
    if opcode in (9, 10) or draw(st.integers(0, 9)):
        return b"".join(draw(st.lists(text, max_size=6)))
    return bytes(draw(st.sampled_from([126, 200, 65535])))


@st.composite
def arbitrary_frames(draw: st.DrawFn, role: str = "server") -> bytes:
    """Frames that mostly follow §5 (a message's fragments, control frames among them)
    and now and then break one rule: any opcode, FIN, RSV, mask, length form or payload.
    Valid and invalid streams of every kind §5 describes."""
    out = bytearray()
    open_message = False
    for _ in range(draw(st.integers(1, 6))):
        bad = draw(st.integers(0, 4)) == 0
        broken = draw(st.sampled_from(["opcode", "fin", "rsv", "mask", "form", "payload"]))
        broken = broken if bad else ""
        if broken == "opcode":
            opcode = draw(st.integers(0, 15))
        elif open_message:
            opcode = draw(st.sampled_from([0, 0, 0, 8, 9, 10]))
        else:
            opcode = draw(st.sampled_from([1, 1, 2, 2, 8, 9, 10]))
        control = opcode >= 8
        fin = True if control and broken != "fin" else draw(st.booleans())
        payload = draw(payloads(opcode, broken == "payload"))
        masked = (role == "server") != (broken == "mask")
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        form = draw(st.sampled_from([7, 16, 64])) if broken == "form" else None
        if form == 7 and len(payload) > 125:
            form = None
        rsv = draw(st.integers(1, 7)) if broken == "rsv" else 0
        out += frame(opcode, payload, fin=fin, rsv=rsv, key=key, form=form)
        if (opcode in (1, 2) and not open_message) or (opcode == 0 and open_message):
            open_message = not fin
    return bytes(out)


def check_splits(data: bytes, role: str, cuts: Sequence[int]) -> Outcome:
    """Whole, byte by byte and at ``cuts``: the same segments, the same refusal."""
    whole = lab_outcome(data, role)
    same_result(whole, lab_outcome(data, role, cuts))
    same_result(whole, lab_outcome(data, role, bytewise(data)))
    check_tiling(whole, data)
    return whole


def check_round_trip(built: Built, role: str, cuts: Sequence[int]) -> None:
    out = check_splits(built.data, role, cuts)
    assert out.status == "ok", out.message
    assert out.messages == built.messages
    assert b"".join(ws.frame_bytes(f) for f in out.frames) == built.data


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["server", "client"]), st.data())
def test_generated_streams_decode_to_their_messages_however_split(
    role: str, draw: st.DataObject
) -> None:
    built = draw.draw(valid_streams(role))
    check_round_trip(built, role, cuts_for(draw, built.data))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["server", "client"]), st.data())
def test_arbitrary_frames_give_the_same_result_however_split(
    role: str, draw: st.DataObject
) -> None:
    data = draw.draw(arbitrary_frames(role))
    check_splits(data, role, cuts_for(draw, data))


MESSAGES = st.one_of(
    st.text(max_size=50),
    st.binary(max_size=300),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(MESSAGES, max_size=5),
    st.sampled_from(["server", "client"]),
    st.integers(1, 20),
    st.data(),
)
def test_encoder_round_trip(
    items: list[str | bytes], role: str, size: int, draw: st.DataObject
) -> None:
    """What the encoder writes (the helpers, fragmented, masked by a client) decodes to
    what was written."""
    masked = role == "server"
    key = KEY if masked else None
    data = bytearray()
    expected = []
    for item in items:
        data += ws.message(item, fragment_size=size, masked=masked)
        expected.append(Message("text" if isinstance(item, str) else "binary", item))
    data += ws.ping(b"pi", mask_key=key) + ws.pong(mask_key=key)
    data += ws.close(1000, "fin", mask_key=key)
    expected += [
        Message("ping", b"pi"),
        Message("pong", b""),
        Message("close", b"\x03\xe8fin", 1000, "fin"),
    ]
    built = Built(bytes(data), expected)
    check_round_trip(built, role, cuts_for(draw, built.data))


# ----------------------------------------------------------------- wsproto side by side


@dataclass
class WsprotoOutcome:
    messages: list[Message]
    code: int | None  # the close code of its ParseFailed, None if it accepted


def wsproto_outcome(data: bytes, role: str) -> WsprotoOutcome:
    """Run wsproto's frame layer (what its Connection runs) over ``data`` as ``role``,
    collecting whole messages the way lab.wire reports them."""
    return WsprotoOutcome(*wsproto_messages(data, role))


# A lab message as wsproto reports it: a Close as its code (1005 for none) and reason.
comparable = as_wsproto


@dataclass
class RawFrame:
    """A frame read with no checks at all, to say which documented difference applies."""

    start: int
    end: int
    fin: bool
    opcode: int
    data: bytes


def raw_frames(data: bytes) -> list[RawFrame]:
    out = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        n, at = b1 & 0x7F, pos + 2
        if n >= 126:
            size = 2 if n == 126 else 8
            n, at = int.from_bytes(data[at : at + size], "big"), at + size
        key = data[at : at + 4] if b1 & 0x80 else None
        at += 4 if key else 0
        if at + n > len(data):
            break
        body = data[at : at + n]
        if key:
            body = bytes(b ^ key[i % 4] for i, b in enumerate(body))
        out.append(RawFrame(pos, at + n, bool(b0 & 0x80), b0 & 0xF, body))
        pos = at + n
    return out


def _message_text(frames: list[RawFrame], f: RawFrame, upto: int) -> bytes:
    """The octets of ``f``'s message up to ``f.data[upto]`` included."""
    i = frames.index(f)
    own = [f]
    while own[0].opcode == 0 and i > 0:
        i -= 1
        if frames[i].opcode in (0, 1, 2):
            own.insert(0, frames[i])
    return b"".join(g.data for g in own[:-1]) + f.data[: upto + 1]


def documented_difference(data: bytes, role: str) -> int | None:
    """Which row of lab.wire.websocket's table of differences from wsproto ``data`` falls
    under (the first in stream order), or None: then both must agree."""
    ours = lab_outcome(data, role)
    decoded = {f.start for f in ours.frames}
    frames = raw_frames(data)
    failed_at = ours.offset if ours.status != "ok" else None
    for f in frames:
        if f.opcode != 8:
            continue
        # Did this decoder get to the Close frame's body? (Else both stop before it.)
        in_reason = ours.code == 1007 and failed_at is not None and failed_at >= f.end - len(f.data)
        if f.start not in decoded and not (in_reason and failed_at <= f.end):  # type: ignore[operator]
            break
        if f.data[:2] == struct.pack("!H", 1014):
            return 1
        if f.start in decoded and f.end < len(data):
            return 2
        break
    if ours.status == "error" and ours.code == 1007 and failed_at is not None:
        f = next(f for f in frames if f.start <= failed_at <= f.end)
        bad = failed_at - (f.end - len(f.data))
        last = f.opcode in (0, 1) and not f.fin and bad == len(f.data) - 1
        if last and _message_text(frames, f, bad)[-2:-1] == b"\xed":
            return 3
    last_end = frames[-1].end if frames else 0
    # Row 4 is about a frame that is not whole: refused on its header (1002, 1009) or at
    # the end of input (1006); a 1007 inside the last whole frame is a payload matter.
    if (
        last_end < len(data)
        and failed_at is not None
        and failed_at >= last_end
        and ours.code in (1002, 1006, 1009)
    ):
        return 4
    return None


def check_against_wsproto(data: bytes, role: str) -> None:
    """wsproto and lab.wire agree on the messages and the close code, or the difference is
    one the module docstring documents, and it shows as documented."""
    ours = lab_outcome(data, role)
    mine = [comparable(m) for m in ours.messages]
    theirs = wsproto_outcome(data, role)
    code = ours.code if ours.status == "error" else None
    row = documented_difference(data, role)
    if row is None:
        assert (theirs.messages, theirs.code) == (mine, code), ours.message
    elif row == 1:
        # wsproto refuses the Close frame with 1014 (1002); everything before it agrees.
        assert theirs.code == 1002
        assert theirs.messages == mine[: len(theirs.messages)]
        assert all(m.type != "close" for m in theirs.messages)
    elif row == 2:
        # wsproto reads nothing after the Close frame; this decoder goes on.
        assert theirs.code is None
        close = next(i for i, m in enumerate(mine) if m.type == "close")
        assert theirs.messages == mine[: close + 1]
    elif row == 3:
        # wsproto holds ED A0-BF, may deliver control frames after it, then fails or waits.
        assert theirs.code in (None, 1002, 1007)
        assert theirs.messages[: len(mine)] == mine
        assert all(m.type in ("ping", "pong", "close") for m in theirs.messages[len(mine) :])
    else:
        # The input ends inside a frame: wsproto waits for a whole header before checking
        # it, and checks a text payload as it comes; this decoder the other way round.
        assert ours.code in (1002, 1006, 1009)
        assert theirs.code in (None, 1007, ours.code)
        assert theirs.messages == mine


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["server", "client"]), st.data())
def test_arbitrary_frames_against_wsproto(role: str, draw: st.DataObject) -> None:
    data = draw.draw(arbitrary_frames(role))
    check_against_wsproto(data, role)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["server", "client"]), st.data())
def test_valid_streams_against_wsproto(role: str, draw: st.DataObject) -> None:
    built = draw.draw(valid_streams(role))
    assert documented_difference(built.data, role) is None
    assert wsproto_outcome(built.data, role) == WsprotoOutcome(
        [comparable(m) for m in built.messages], None
    )


# Each row of the module docstring's table, shown on both decoders.


def test_difference_1_close_code_1014() -> None:
    data = frame(8, struct.pack("!H", 1014))
    assert wsproto_outcome(data, "client") == WsprotoOutcome([], 1002)
    assert run(data, "client").messages == [Message("close", data[2:], 1014, "")]
    assert documented_difference(data, "client") == 1
    for code in (1012, 1013):  # its neighbours: both accept
        same = frame(8, struct.pack("!H", code))
        assert wsproto_outcome(same, "client").code is None
        assert documented_difference(same, "client") is None


def test_every_close_code_against_wsproto() -> None:
    """All 2^16 codes: both accept or both refuse, 1014 (difference 1) alone apart."""
    apart = []
    for code in range(1 << 16):
        data = frame(8, struct.pack("!H", code) + b"r")
        ours = lab_outcome(data, "client", fields=False).code
        theirs = wsproto_outcome(data, "client").code
        if ours != theirs:
            apart.append((code, ours, theirs))
    assert apart == [(1014, None, 1002)]


def test_difference_2_after_close() -> None:
    data = frame(8) + frame(1, b"late") + frame(3)
    assert wsproto_outcome(data, "client") == WsprotoOutcome(
        [Message("close", b"", 1005, "")], None
    )
    out = run(data, "client")
    assert (out.code, out.offset) == (1002, 2)
    assert documented_difference(data, "client") == 2
    ping_after = frame(8) + frame(9, b"late")
    assert wsproto_outcome(ping_after, "client").messages == [Message("close", b"", 1005, "")]
    assert run(ping_after, "client").messages[-1] == Message("ping", b"late")


def test_difference_3_surrogate_start_at_a_fragment_end() -> None:
    data = frame(1, b"\xed\xa0", fin=False) + frame(9, b"p") + frame(0, b"\x80")
    assert wsproto_outcome(data, "client") == WsprotoOutcome([Message("ping", b"p")], 1007)
    out = run(data, "client")
    assert (out.code, out.offset, out.messages) == (1007, 3, [])
    assert documented_difference(data, "client") == 3
    # ED 9F is the start of U+D7C0..U+D7FF: valid, held by both.
    ok = frame(1, b"\xed\x9f", fin=False) + frame(9, b"p") + frame(0, b"\xbf")
    assert documented_difference(ok, "client") is None
    assert run(ok, "client").messages[-1] == Message("text", "\ud7ff")


def test_difference_4_input_ending_inside_a_text_frame() -> None:
    data = frame(1, b"\xff" + bytes(20))[:5]
    assert wsproto_outcome(data, "client") == WsprotoOutcome([], 1007)
    assert run(data, "client").code == 1006
    assert documented_difference(data, "client") == 4


def test_difference_5_the_message_size_limit() -> None:
    data = frame(2, bytes(300), fin=False) + frame(0, bytes(300))
    assert wsproto_outcome(data, "client").messages == [Message("binary", bytes(600))]
    assert run(data, "client", max_message_size=500).code == 1009


def test_a_1007_in_the_last_whole_frame_is_not_difference_4() -> None:
    # Found by lab fuzz websocket: a text frame ending inside a UTF-8 character, then the
    # start of another frame. wsproto and the lab agree on it; it is no documented row.
    data = b"\x01\x857\xfa!=T\x9bG\xfe\x9e\x80\x814000\xfa!=\x16\x88\x807\xfa!="
    assert documented_difference(data, "server") is None
    check_against_wsproto(data, "server")
