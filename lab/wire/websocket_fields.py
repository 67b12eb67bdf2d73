"""The fields of a WebSocket frame as segments: each a byte range of the frame with its
meaning, the way :mod:`lab.wire.h2fields` splits an HTTP/2 frame.

:func:`frame_fields` splits one decoded :class:`~lab.wire.websocket_segments.
WebSocketFrame` into the fields RFC 6455 §5.2 lays out, in wire order::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +

The first two octets hold bit fields: FIN, RSV1-3 and the opcode share octet 0, MASK and
Payload len octet 1. Each is a segment of its own over that octet, and
:attr:`FrameField.bits` says which bits of it are the field's (``0x80`` for FIN, ``0x70``
for RSV1-3, ``0x0f`` for the opcode; ``0xff`` for a field of whole octets). So over every
octet of the frame the fields' bits are disjoint and together make ``0xff``: the fields
tile the frame bit by bit.

The payload is one :class:`PayloadField` whose ``data`` is the unmasked payload (the
:class:`~lab.wire.segment.Nested` segment's ``data`` keeps the octets as on the wire,
masked); a Close frame's body is a :class:`CloseCodeField` and a :class:`CloseReasonField`
instead (§5.5.1), each carrying its unmasked value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lab.wire.segment import Nested, Segment
from lab.wire.websocket_segments import (
    Opcode,
    WebSocketFrame,
    _plural,
    _shorten,
    close_code_meaning,
    close_code_name,
    opcode_meaning,
)

__all__ = [
    "CloseCodeField",
    "CloseReasonField",
    "FinField",
    "FrameField",
    "LengthField",
    "MaskBitField",
    "MaskingKeyField",
    "OpcodeField",
    "PayloadField",
    "RsvField",
    "frame_bytes",
    "frame_fields",
]


# --------------------------------------------------------------------------------------
# The field segments


@dataclass(frozen=True, slots=True)
class FrameField(Segment):
    """One field of a frame: ``name`` as RFC 6455 §5.2 spells it, ``text`` what it says,
    ``bits`` the bits of each of its octets that are this field."""

    name: str
    text: str
    bits: int
    kind: ClassVar[str] = "ws-field"
    binary: ClassVar[bool] = True

    def note(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class FinField(FrameField):
    """FIN, bit 0x80 of octet 0: the last frame of a message (§5.2, §5.4)."""

    kind: ClassVar[str] = "ws-fin"


@dataclass(frozen=True, slots=True)
class RsvField(FrameField):
    """RSV1, RSV2, RSV3, bits 0x70 of octet 0: 0 unless an extension says otherwise."""

    kind: ClassVar[str] = "ws-rsv"


@dataclass(frozen=True, slots=True)
class OpcodeField(FrameField):
    """The opcode, bits 0x0f of octet 0 (§5.2)."""

    kind: ClassVar[str] = "ws-opcode"


@dataclass(frozen=True, slots=True)
class MaskBitField(FrameField):
    """MASK, bit 0x80 of octet 1: whether a masking key follows (§5.2, §5.3)."""

    kind: ClassVar[str] = "ws-mask"


@dataclass(frozen=True, slots=True)
class LengthField(FrameField):
    """The payload length: Payload len (bits 0x7f of octet 1), and the 16-bit or 64-bit
    Extended payload length after it when Payload len is 126 or 127 (§5.2)."""

    kind: ClassVar[str] = "ws-length"


@dataclass(frozen=True, slots=True)
class MaskingKeyField(FrameField):
    """The 4-octet Masking-key (§5.3)."""

    kind: ClassVar[str] = "ws-masking-key"


@dataclass(frozen=True, slots=True)
class PayloadField(FrameField):
    """Payload Data: ``data`` is the payload unmasked (the Nested segment's ``data`` holds
    it as on the wire)."""

    data: bytes = b""
    kind: ClassVar[str] = "ws-payload"
    binary: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class CloseCodeField(FrameField):
    """The 2-octet close code at the start of a Close frame's body (§5.5.1, §7.4)."""

    code: int = 0
    kind: ClassVar[str] = "ws-close-code"


@dataclass(frozen=True, slots=True)
class CloseReasonField(FrameField):
    """The UTF-8 reason after a Close frame's code (§5.5.1)."""

    reason: str = ""
    kind: ClassVar[str] = "ws-close-reason"
    binary: ClassVar[bool] = False


# --------------------------------------------------------------------------------------
# Splitting a frame


def frame_bytes(frame: WebSocketFrame) -> bytes:
    """The frame as it was on the wire (the decoder only takes minimal length forms, so the
    header is determined by the decoded fields)."""
    head = bytearray([(0x80 if frame.fin else 0) | frame.rsv << 4 | frame.opcode])
    mask_bit = 0x80 if frame.masked else 0
    if frame.length_octets == 0:
        head.append(mask_bit | frame.length)
    else:
        head.append(mask_bit | (126 if frame.length_octets == 2 else 127))
        head += frame.length.to_bytes(frame.length_octets, "big")
    if frame.mask_key is not None:
        head += frame.mask_key
    return bytes(head) + frame.payload


def _fin_text(frame: WebSocketFrame) -> str:
    if frame.is_control:
        return "FIN 1: control frames are never fragmented (§5.4, §5.5)"
    if frame.fin:
        return "FIN 1: the last frame of its message (§5.2, §5.4)"
    return "FIN 0: more fragments of this message follow, as CONTINUATION frames (§5.4)"


def _rsv_text(frame: WebSocketFrame) -> str:
    bits = ", ".join(f"RSV{i + 1} {int(bool(frame.rsv & (4 >> i)))}" for i in range(3))
    if not frame.rsv:
        return f"{bits}: no extension in use (§5.2)"
    return f"{bits}: given a meaning by a negotiated extension (§5.2, §9)"


def _length_text(frame: WebSocketFrame) -> str:
    if frame.length_octets == 0:
        return f"Payload len {frame.length}: {_plural(frame.length, 'octet')} of payload (§5.2)"
    form = "16-bit" if frame.length_octets == 2 else "64-bit"
    return (
        f"Payload len {126 if frame.length_octets == 2 else 127}: the {form} length follows (§5.2)"
    )


def _extended_text(frame: WebSocketFrame) -> str:
    if frame.length_octets == 2:
        rule = "the form for 126 to 65535 octets"
    else:
        rule = "the form from 65536 octets; its most significant bit is 0"
    return (
        f"Extended payload length {frame.length}: {_plural(frame.length, 'octet')} of"
        f" payload, {rule} (§5.2)"
    )


def _payload_text(frame: WebSocketFrame) -> str:
    n = frame.length
    masked = ", masked on the wire" if frame.masked else ""
    text = f"Payload data, {_plural(n, 'octet')}{masked}: {_shorten(frame.data)}"
    if frame.opcode == Opcode.PING:
        return text + "; the Pong echoes it (§5.5.2)"
    if frame.opcode == Opcode.PONG:
        return text + "; a Ping's data echoed (§5.5.3)"
    if frame.rsv:
        return text + "; transformed by the extension, not decoded here (§9)"
    if frame.message_type == "text":
        return text + "; UTF-8 text (§5.6)"
    return text + " (§5.6)"


def frame_fields(frame: WebSocketFrame, raw: bytes | None = None) -> list[Nested]:
    """``frame``'s fields, each a :class:`~lab.wire.segment.Nested` segment whose ``unit``
    is a :class:`FrameField`, in wire order; ``raw`` is the frame's bytes if at hand
    (:func:`frame_bytes` otherwise)."""
    wire = raw if raw is not None else frame_bytes(frame)
    base = frame.start
    out: list[Nested] = []

    def add(field: FrameField) -> None:
        out.append(
            Nested(field.start, field.end, field, wire[field.start - base : field.end - base])
        )

    s = base
    add(FinField(s, s + 1, "FIN", _fin_text(frame), 0x80))
    add(RsvField(s, s + 1, "RSV1-3", _rsv_text(frame), 0x70))
    op = f"Opcode 0x{frame.opcode:x} {frame.opcode_name}: {opcode_meaning(frame.opcode)}"
    add(OpcodeField(s, s + 1, "opcode", op, 0x0F))
    if frame.masked:
        mask_text = "MASK 1: a Masking-key follows; a client masks every frame (§5.1, §5.3)"
    else:
        mask_text = "MASK 0: no masking key; a server never masks (§5.1)"
    add(MaskBitField(s + 1, s + 2, "MASK", mask_text, 0x80))
    add(LengthField(s + 1, s + 2, "Payload len", _length_text(frame), 0x7F))
    at = s + 2
    if frame.length_octets:
        end = at + frame.length_octets
        add(LengthField(at, end, "Extended payload length", _extended_text(frame), 0xFF))
        at = end
    if frame.mask_key is not None:
        key_text = (
            f"Masking-key {frame.mask_key.hex()}: payload octet i is XORed with key octet"
            " i mod 4 (§5.3)"
        )
        add(MaskingKeyField(at, at + 4, "Masking-key", key_text, 0xFF))
        at += 4
    if (
        frame.opcode == Opcode.CLOSE
        and frame.message is not None
        and frame.message.code is not None
    ):
        code = frame.message.code
        code_text = f"close code {code} {close_code_name(code)}: {close_code_meaning(code)}"
        add(CloseCodeField(at, at + 2, "Status code", code_text, 0xFF, code))
        at += 2
        if at < frame.end:
            reason = frame.message.reason
            reason_text = (
                f"close reason {_shorten(reason)}: UTF-8, for debugging, not for users (§5.5.1)"
            )
            add(CloseReasonField(at, frame.end, "Reason", reason_text, 0xFF, reason))
    elif at < frame.end:
        add(PayloadField(at, frame.end, "Payload data", _payload_text(frame), 0xFF, frame.data))
    return out
