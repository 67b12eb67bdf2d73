"""The fields of an HTTP/2 frame as segments: each a byte range of the frame with its meaning.

:func:`frame_fields` splits one decoded :class:`~lab.wire.h2segments.Frame` into the fields
RFC 9113 lays out, in wire order, and they tile the frame exactly. The 9-octet header
(§4.1)::

    +-----------------------------------------------+
    |                 Length (24)                   |   LengthField
    +---------------+---------------+---------------+
    |   Type (8)    |   Flags (8)   |                   TypeField, FlagsField
    +-+-------------+---------------+-------------------------------+
    |R|                 Stream Identifier (31)                      |   StreamIdField
    +=+=============================================================+
    |                   Frame Payload (0...)                      ...
    +---------------------------------------------------------------+

and the payload, per type (§6): Pad Length and Padding (§6.1, §6.2, §6.6); the deprecated
priority fields, E + Stream Dependency and Weight (§6.2, §6.3); an Error Code (§6.4, §6.8);
each setting, Identifier (16) and Value (32) (§6.5.1); the Promised Stream ID (§6.6); the
Opaque Data of a PING (§6.7); GOAWAY's Last-Stream-ID and Additional Debug Data (§6.8);
the Window Size Increment (§6.9); and what a frame carries, the Data (§6.1) or a Field
Block Fragment (§4.3).

Each field is a :class:`~lab.wire.segment.Nested` segment under its frame (the way
:mod:`lab.wire.h2messages` nests HPACK fields under HEADERS), so a viewer shows it as a
row of its own, with its octets in hex. A field's kind says which part of the frame it
is, so a hexdump can colour the header's four fields and the payload apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from lab.wire.h2constants import (
    _HEADER,
    _SECTION,
    _STREAM_MASK,
    FRAME_FLAGS,
    ErrorCode,
    SettingId,
    _plural,
    _show,
    error_name,
)
from lab.wire.h2segments import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from lab.wire.segment import Nested, Segment

__all__ = [
    "DataField",
    "DebugDataField",
    "FlagsField",
    "FragmentField",
    "FrameField",
    "LengthField",
    "PaddingField",
    "PayloadField",
    "StreamIdField",
    "TypeField",
    "frame_bytes",
    "frame_fields",
]

# --------------------------------------------------------------------------------------
# The field segments


@dataclass(frozen=True, slots=True)
class FrameField(Segment):
    """One field of a frame: ``name`` as RFC 9113 spells it, ``text`` what it says."""

    name: str
    text: str
    kind: ClassVar[str] = "h2-field"
    binary: ClassVar[bool] = True

    def note(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class LengthField(FrameField):
    """The 24-bit Length: how many octets of payload follow the header (§4.1)."""

    kind: ClassVar[str] = "h2-length"


@dataclass(frozen=True, slots=True)
class TypeField(FrameField):
    """The 8-bit Type, which decides the payload's layout (§4.1, §6)."""

    kind: ClassVar[str] = "h2-type"


@dataclass(frozen=True, slots=True)
class FlagsField(FrameField):
    """The 8 flag bits, each named by the frame's type (§4.1, §6)."""

    kind: ClassVar[str] = "h2-flags"


@dataclass(frozen=True, slots=True)
class StreamIdField(FrameField):
    """The reserved bit R and the 31-bit Stream Identifier (§4.1, §5.1.1)."""

    kind: ClassVar[str] = "h2-stream-id"


@dataclass(frozen=True, slots=True)
class PayloadField(FrameField):
    """A fixed field of the payload: a setting, an error code, an increment, a stream id
    in the payload, the priority fields, the Pad Length, PING's opaque data."""


@dataclass(frozen=True, slots=True)
class PaddingField(FrameField):
    """Padding (§6.1): octets that only hide the size of the rest."""

    kind: ClassVar[str] = "h2-padding"


@dataclass(frozen=True, slots=True)
class FragmentField(FrameField):
    """A field block fragment (§4.3): HPACK-coded fields, nested under it one by one."""

    kind: ClassVar[str] = "h2-fragment"


@dataclass(frozen=True, slots=True)
class DataField(FrameField):
    """The Data of a DATA frame (§6.1): the stream's content, text or not."""

    kind: ClassVar[str] = "h2-data"
    binary: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class DebugDataField(FrameField):
    """GOAWAY's Additional Debug Data (§6.8): opaque, often text."""

    kind: ClassVar[str] = "h2-debug-data"
    binary: ClassVar[bool] = False


# --------------------------------------------------------------------------------------
# What the values mean, in words (RFC 9113 §6.5.2, §7; RFC 8441 §3)

_SETTING_MEANING: Final[Mapping[int, str]] = {
    SettingId.HEADER_TABLE_SIZE: "the HPACK dynamic table the sender's decoder keeps, in octets",
    SettingId.ENABLE_PUSH: "whether the server may push (PUSH_PROMISE)",
    SettingId.MAX_CONCURRENT_STREAMS: "the most streams the peer may have open at once",
    SettingId.INITIAL_WINDOW_SIZE: "the flow-control window each stream starts with, in octets",
    SettingId.MAX_FRAME_SIZE: "the largest frame payload the sender accepts",
    SettingId.MAX_HEADER_LIST_SIZE: "advisory: the largest field section the sender accepts",
    SettingId.ENABLE_CONNECT_PROTOCOL: "whether extended CONNECT is allowed",
}

_ERROR_MEANING: Final[Mapping[int, str]] = {
    ErrorCode.NO_ERROR: "not an error: a graceful end",
    ErrorCode.PROTOCOL_ERROR: "the peer broke the protocol",
    ErrorCode.INTERNAL_ERROR: "the sender failed unexpectedly",
    ErrorCode.FLOW_CONTROL_ERROR: "the peer broke flow control",
    ErrorCode.SETTINGS_TIMEOUT: "a SETTINGS frame was not acknowledged in time",
    ErrorCode.STREAM_CLOSED: "a frame came on a stream already half-closed",
    ErrorCode.FRAME_SIZE_ERROR: "a frame had an invalid size",
    ErrorCode.REFUSED_STREAM: "the stream was refused before any processing; it may be retried",
    ErrorCode.CANCEL: "the stream is no longer needed",
    ErrorCode.COMPRESSION_ERROR: "the HPACK context broke",
    ErrorCode.CONNECT_ERROR: "the connection of a CONNECT request failed",
    ErrorCode.ENHANCE_YOUR_CALM: "the peer causes excessive load",
    ErrorCode.INADEQUATE_SECURITY: "the transport is not secure enough",
    ErrorCode.HTTP_1_1_REQUIRED: "the request must use HTTP/1.1",
}


def _error_text(code: int) -> str:
    name = error_name(code)
    meaning = _ERROR_MEANING.get(code, "a code RFC 9113 does not define: treat as INTERNAL_ERROR")
    return f"Error Code {name} (0x{code:x}): {meaning} (RFC 9113 §7)"


def _stream_text(stream_id: int) -> str:
    if stream_id == 0:
        return "the connection as a whole, not a stream"
    if stream_id % 2:
        return "a client-initiated stream (odd)"
    return "a server-initiated stream (even)"


def _flags_text(frame: Frame) -> str:
    defined = FRAME_FLAGS.get(frame.type, ())
    section = _SECTION.get(frame.type, "§5.5")
    text = f"Flags 0x{frame.flags:02x}: "
    if defined:
        on = [f"{name} (0x{bit:x})" for bit, name in defined if frame.flags & bit]
        off = [name for bit, name in defined if not frame.flags & bit]
        parts = []
        if on:
            parts.append(", ".join(on) + " set")
        if off:
            parts.append(", ".join(off) + " clear")
        text += "; ".join(parts)
    else:
        text += f"{frame.type_name} defines no flags"
    unused = frame.flags & ~sum(bit for bit, _ in defined)
    if unused:
        text += f"; 0x{unused:02x} means nothing for this type and is ignored"
    return f"{text} (RFC 9113 {section})"


# --------------------------------------------------------------------------------------
# Splitting a frame


def frame_bytes(frame: Frame) -> bytes:
    """The frame as it was on the wire: its 9-octet header, then its payload."""
    word = (frame.reserved << 31) | (frame.stream_id & _STREAM_MASK)
    return _HEADER.pack((frame.length << 8) | frame.type, frame.flags, word) + frame.payload


class _Fields:
    """Builds one frame's fields in wire order, each at the next offset."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.wire = frame_bytes(frame)
        self.at = frame.start
        self.out: list[Nested] = []

    def add(self, cls: type[FrameField], size: int, name: str, text: str) -> None:
        if size <= 0:
            return  # an empty fragment, no data, no padding: nothing on the wire
        start, end = self.at, self.at + size
        lo = start - self.frame.start
        self.out.append(Nested(start, end, cls(start, end, name, text), self.wire[lo : lo + size]))
        self.at = end

    def header(self) -> None:
        f = self.frame
        self.add(
            LengthField, 3, "Length",
            f"Length {f.length}: octets of payload after this 9-octet header (RFC 9113 §4.1)",
        )  # fmt: skip
        self.add(
            TypeField, 1, "Type",
            f"Type {f.type_name} (0x{f.type:02x}): the layout of the payload"
            f" (RFC 9113 {_SECTION.get(f.type, '§5.5: unknown types are ignored')})",
        )  # fmt: skip
        self.add(FlagsField, 1, "Flags", _flags_text(f))
        reserved = "R 1: reserved, ignored" if f.reserved else "R 0"
        self.add(
            StreamIdField, 4, "Stream Identifier",
            f"Stream Identifier {f.stream_id}: {_stream_text(f.stream_id)}; {reserved}"
            " (RFC 9113 §4.1, §5.1.1)",
        )  # fmt: skip

    def pad_length(self, pad_length: int | None) -> None:
        if pad_length is not None:
            self.add(
                PayloadField, 1, "Pad Length",
                f"Pad Length {pad_length}: octets of padding at the end of the payload"
                f" (RFC 9113 {_SECTION[self.frame.type]})",
            )  # fmt: skip

    def padding(self, pad_length: int | None) -> None:
        if pad_length:
            self.add(
                PaddingField, pad_length, "Padding",
                f"Padding, {_plural(pad_length, 'octet')}: hides the size of the rest;"
                f" the receiver ignores it (RFC 9113 {_SECTION[self.frame.type]})",
            )  # fmt: skip

    def priority(self, exclusive: bool | None, depends_on: int | None, weight: int | None) -> None:
        if depends_on is None or weight is None:
            return
        section = _SECTION[self.frame.type]
        self.add(
            PayloadField, 4, "Stream Dependency",
            f"E {int(bool(exclusive))}, Stream Dependency {depends_on}: the stream this one"
            f" {'exclusively ' if exclusive else ''}depends on; priority signals are"
            f" deprecated (RFC 9113 {section}, §5.3.2)",
        )  # fmt: skip
        self.add(
            PayloadField, 1, "Weight",
            f"Weight {weight}: a share of {weight + 1} in 1..256 (RFC 9113 {section})",
        )  # fmt: skip

    def fragment(self, size: int) -> None:
        ends = self.frame.flags & 0x4  # END_HEADERS, on HEADERS, PUSH_PROMISE, CONTINUATION
        rest = "the block ends here (END_HEADERS)" if ends else "the block goes on in CONTINUATION"
        self.add(
            FragmentField, size, "Field Block Fragment",
            f"Field Block Fragment, {_plural(size, 'octet')} of HPACK-coded fields; {rest}"
            " (RFC 9113 §4.3, RFC 7541)",
        )  # fmt: skip

    def stream_field(self, name: str, value: int, meaning: str) -> None:
        """A reserved bit and a 31-bit value inside the payload (RFC 9113 §6.x, the frame
        type's section)."""
        r_set = self.wire[self.at - self.frame.start] & 0x80
        reserved = "R 1: reserved, ignored" if r_set else "R 0"
        section = _SECTION[self.frame.type]
        self.add(
            PayloadField, 4, name, f"{name} {value}: {meaning}; {reserved} (RFC 9113 {section})"
        )

    def payload(self) -> None:
        f = self.frame
        rest = f.end - self.at
        if isinstance(f, DataFrame):
            self.pad_length(f.pad_length)
            self.add(
                DataField, len(f.data), "Data",
                f"Data, {_plural(len(f.data), 'octet')} of stream {f.stream_id}'s content;"
                " counted against flow control (RFC 9113 §6.1, §6.9)",
            )  # fmt: skip
            self.padding(f.pad_length)
        elif isinstance(f, HeadersFrame):
            self.pad_length(f.pad_length)
            self.priority(f.exclusive, f.depends_on, f.weight)
            self.fragment(len(f.fragment))
            self.padding(f.pad_length)
        elif isinstance(f, PriorityFrame):
            self.priority(f.exclusive, f.depends_on, f.weight)
        elif isinstance(f, RstStreamFrame | GoAwayFrame):
            if isinstance(f, GoAwayFrame):
                self.stream_field(
                    "Last-Stream-ID", f.last_stream_id,
                    "the highest stream the sender may have acted on; higher ones were not"
                    " processed and may be retried",
                )  # fmt: skip
            self.add(PayloadField, 4, "Error Code", _error_text(f.error_code))
            if isinstance(f, GoAwayFrame):
                self.add(
                    DebugDataField, len(f.debug_data), "Additional Debug Data",
                    f"Additional Debug Data, {_plural(len(f.debug_data), 'octet')}"
                    f" '{_show(f.debug_data)}': for diagnostics only (RFC 9113 §6.8)",
                )  # fmt: skip
        elif isinstance(f, SettingsFrame):
            for s in f.settings:
                meaning = _SETTING_MEANING.get(
                    s.id, "an identifier not defined here: the receiver ignores it"
                )
                cite = "RFC 8441 §3" if s.id == SettingId.ENABLE_CONNECT_PROTOCOL else "§6.5.2"
                name = s.name if s.id in _SETTING_MEANING else "of an unknown identifier"
                self.add(
                    PayloadField, 6, "Setting",
                    f"setting {name} (0x{s.id:x}) = {s.value}: {meaning}"
                    f" (RFC 9113 §6.5.1, {cite})",
                )  # fmt: skip
        elif isinstance(f, PushPromiseFrame):
            self.pad_length(f.pad_length)
            self.stream_field(
                "Promised Stream ID", f.promised_stream_id,
                "the stream the server reserves for the response it pushes",
            )  # fmt: skip
            self.fragment(len(f.fragment))
            self.padding(f.pad_length)
        elif isinstance(f, PingFrame):
            self.add(
                PayloadField, 8, "Opaque Data",
                f"Opaque Data {f.opaque_data.hex()} ('{_show(f.opaque_data)}'): any 8 octets;"
                " the ACK echoes them (RFC 9113 §6.7)",
            )  # fmt: skip
        elif isinstance(f, WindowUpdateFrame):
            where = f"stream {f.stream_id}" if f.stream_id else "the connection"
            self.stream_field(
                "Window Size Increment", f.increment,
                f"the sender may now send {_plural(f.increment, 'more octet')} of DATA on"
                f" {where}",
            )  # fmt: skip
        elif isinstance(f, ContinuationFrame):
            self.fragment(len(f.fragment))
        else:
            self.add(
                PayloadField, rest, "Payload",
                f"Payload, {_plural(rest, 'octet')} of a type RFC 9113 does not define:"
                " the receiver ignores it (RFC 9113 §5.5)",
            )  # fmt: skip
        # Whatever a layout above does not account for (nothing, for a frame the decoder
        # accepted) is still shown, so the fields always tile the frame.
        if self.at < f.end:
            self.add(PayloadField, f.end - self.at, "Payload", "the rest of the payload")


def frame_fields(frame: Frame) -> list[Nested]:
    """``frame``'s fields, each a :class:`~lab.wire.segment.Nested` segment whose ``unit``
    is a :class:`FrameField`: in wire order, tiling ``[frame.start, frame.end)``."""
    fields = _Fields(frame)
    fields.header()
    fields.payload()
    return fields.out
