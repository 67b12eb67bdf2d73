"""The segments an HTTP/2 byte stream decodes into (RFC 9113 §3.4, §4.1, §6): the client
connection :class:`Preface`, and one whole :class:`Frame` per frame, a subclass per frame
type with its decoded fields (:class:`DataFrame`, :class:`HeadersFrame`, ...
:class:`UnknownFrame`). Each says in one line what it is (:meth:`Frame.note`).

The frame header (§4.1)::

    Length (24)  Type (8)  Flags (8)  Reserved (1)  Stream Identifier (31)  Payload (Length)

Length counts the payload only. Type picks the layout (§6); unknown types are kept raw and
otherwise ignored, as §4.1 and §5.5 require. Flags mean something per type (END_STREAM 0x1,
ACK 0x1, END_HEADERS 0x4, PADDED 0x8, PRIORITY 0x20); unused flags are kept in
:attr:`Frame.flags` and ignored, as is the reserved bit. Stream 0 is the connection itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from lab.wire.h2constants import (
    _DEFINED_FLAGS,
    FRAME_FLAGS,
    FRAME_TYPE_NAMES,
    Flag,
    _plural,
    _show,
    _unknown,
    error_name,
)
from lab.wire.hpack import HeaderBlock, HeaderRepresentation
from lab.wire.segment import Segment

__all__ = [
    "ContinuationFrame",
    "DataFrame",
    "Frame",
    "GoAwayFrame",
    "HeadersFrame",
    "PingFrame",
    "Preface",
    "PriorityFrame",
    "PushPromiseFrame",
    "RstStreamFrame",
    "Setting",
    "SettingsFrame",
    "UnknownFrame",
    "WindowUpdateFrame",
]


@dataclass(frozen=True, slots=True)
class Preface(Segment):
    """The client connection preface, ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``."""

    kind: ClassVar[str] = "h2-preface"

    def note(self) -> str:
        return "client connection preface (RFC 9113 §3.4); a SETTINGS frame must follow"


class Setting(NamedTuple):
    """One setting of a SETTINGS frame: identifier, its name, value (§6.5.1)."""

    id: int
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Frame(Segment):
    """One whole frame: ``start``/``end`` cover the 9-octet header and the payload.

    ``length`` is the frame's Length field, the payload size, so ``end - start == 9 +
    length``. ``type`` and ``flags`` are the raw octets (unused flags kept),
    ``stream_id`` the 31-bit identifier, ``payload`` the raw payload. ``reserved`` is the
    reserved bit of the stream identifier, which is ignored. ``problem`` says why a
    well-formed frame is invalid where it stands (see :mod:`lab.wire.h2decoder`), or is None.

    Every frame type has a subclass with its decoded fields; :class:`UnknownFrame` is the
    one for types RFC 9113 does not define.
    """

    # An explicit field(): were a base class to have an attribute called ``length`` (Segment
    # once had a property of that name), dataclass would take it for the default value.
    length: int = field()
    type: int
    flags: int
    stream_id: int
    payload: bytes
    problem: str | None = field(default=None, kw_only=True)
    reserved: bool = field(default=False, kw_only=True)

    kind: ClassVar[str] = "h2-frame"
    binary: ClassVar[bool] = True

    @property
    def type_name(self) -> str:
        """``"DATA"`` ... ``"CONTINUATION"``, or ``"UNKNOWN(0x..)"``."""
        return FRAME_TYPE_NAMES.get(self.type) or _unknown(self.type)

    @property
    def flag_names(self) -> tuple[str, ...]:
        """The names of the set flags that this frame's type defines, in bit order."""
        flags = self.flags
        return tuple(name for bit, name in FRAME_FLAGS.get(self.type, ()) if flags & bit)

    @property
    def header_end(self) -> int:
        """Absolute offset of the first payload byte: the 9-octet header is
        ``[start, header_end)``, the payload ``[header_end, end)``."""
        return self.start + 9

    def note(self) -> str:
        stream = f"stream {self.stream_id}" if self.stream_id else "stream 0 (connection)"
        parts = [f"{self.type_name} {stream}"]
        names = self.flag_names
        if names:
            parts.append(f"[{', '.join(names)}]")
        text = " ".join(parts)
        detail = self._detail()
        if detail:
            text += ": " + detail
        unused = self.flags & ~_DEFINED_FLAGS.get(self.type, 0)
        if unused and self.type in FRAME_TYPE_NAMES:
            text += f" (unused flags 0x{unused:02x} ignored)"
        if self.reserved:
            text += " (reserved bit set, ignored)"
        if self.problem:
            text += f"; problem: {self.problem}"
        return text

    def _detail(self) -> str:
        return _plural(self.length, "byte")


def _padding(pad_length: int | None) -> str:
    return "" if pad_length is None else f" + {_plural(pad_length, 'byte')} of padding"


@dataclass(frozen=True, slots=True)
class DataFrame(Frame):
    """DATA (§6.1): ``data`` is the payload without Pad Length and padding; ``pad_length``
    is None unless PADDED is set."""

    pad_length: int | None
    data: bytes

    def _detail(self) -> str:
        return _plural(len(self.data), "byte") + _padding(self.pad_length)


def _priority_text(exclusive: bool | None, depends_on: int | None, weight: int | None) -> str:
    if depends_on is None or weight is None:
        return ""
    mode = "exclusively " if exclusive else ""
    return f"{mode}depends on stream {depends_on}, weight {weight + 1}"


@dataclass(frozen=True, slots=True)
class HeadersFrame(Frame):
    """HEADERS (§6.2). The priority fields are None unless PRIORITY is set; ``weight`` is
    the wire value 0-255 (the weight it means is one more). ``fragment`` is the field block
    fragment. ``block`` is the decoded field block when the decoder decodes headers and
    this frame ends the block (END_HEADERS)."""

    pad_length: int | None
    exclusive: bool | None
    depends_on: int | None
    weight: int | None
    fragment: bytes
    block: HeaderBlock | None = field(default=None, kw_only=True)

    @property
    def fields(self) -> tuple[HeaderRepresentation, ...]:
        """How each field of the block was encoded; empty if the block was not decoded."""
        return self.block.representations if self.block is not None else ()

    def _detail(self) -> str:
        text = f"{_plural(len(self.fragment), 'byte')} of field block" + _padding(self.pad_length)
        prio = _priority_text(self.exclusive, self.depends_on, self.weight)
        if prio:
            text += f"; {prio} (deprecated, RFC 9113 §5.3.2)"
        if self.block is not None:
            text += "; " + self.block.note()
        return text


@dataclass(frozen=True, slots=True)
class PriorityFrame(Frame):
    """PRIORITY (§6.3, deprecated): ``weight`` is the wire value 0-255."""

    exclusive: bool
    depends_on: int
    weight: int

    def _detail(self) -> str:
        prio = _priority_text(self.exclusive, self.depends_on, self.weight)
        return f"{prio} (deprecated, RFC 9113 §5.3.2)"


@dataclass(frozen=True, slots=True)
class RstStreamFrame(Frame):
    """RST_STREAM (§6.4)."""

    error_code: int

    @property
    def error_name(self) -> str:
        return error_name(self.error_code)

    def _detail(self) -> str:
        return f"{self.error_name} (0x{self.error_code:x})"


@dataclass(frozen=True, slots=True)
class SettingsFrame(Frame):
    """SETTINGS (§6.5): every setting in wire order, repeats and unknown identifiers kept
    (unknown ones are ignored by a receiver, and the last value of a repeat wins)."""

    settings: tuple[Setting, ...]

    @property
    def ack(self) -> bool:
        return bool(self.flags & Flag.ACK)

    def _detail(self) -> str:
        if not self.settings:
            return "acknowledges the peer's settings" if self.ack else "no settings (defaults)"
        return ", ".join(f"{s.name}={s.value}" for s in self.settings)


@dataclass(frozen=True, slots=True)
class PushPromiseFrame(Frame):
    """PUSH_PROMISE (§6.6): the stream it reserves, and the promised request's field block
    fragment (``block`` as for :class:`HeadersFrame`)."""

    pad_length: int | None
    promised_stream_id: int
    fragment: bytes
    block: HeaderBlock | None = field(default=None, kw_only=True)

    @property
    def fields(self) -> tuple[HeaderRepresentation, ...]:
        return self.block.representations if self.block is not None else ()

    def _detail(self) -> str:
        text = (
            f"promises stream {self.promised_stream_id};"
            f" {_plural(len(self.fragment), 'byte')} of field block" + _padding(self.pad_length)
        )
        if self.block is not None:
            text += "; " + self.block.note()
        return text


@dataclass(frozen=True, slots=True)
class PingFrame(Frame):
    """PING (§6.7): 8 opaque octets, echoed back in the ACK."""

    opaque_data: bytes

    @property
    def ack(self) -> bool:
        return bool(self.flags & Flag.ACK)

    def _detail(self) -> str:
        return f"opaque data {self.opaque_data.hex()}" + (" (the reply)" if self.ack else "")


@dataclass(frozen=True, slots=True)
class GoAwayFrame(Frame):
    """GOAWAY (§6.8): the last stream the sender may act on, why, and opaque debug data."""

    last_stream_id: int
    error_code: int
    debug_data: bytes

    @property
    def error_name(self) -> str:
        return error_name(self.error_code)

    def _detail(self) -> str:
        text = f"last stream {self.last_stream_id}, {self.error_name} (0x{self.error_code:x})"
        if self.debug_data:
            text += f", debug data '{_show(self.debug_data)}'"
        return text


@dataclass(frozen=True, slots=True)
class WindowUpdateFrame(Frame):
    """WINDOW_UPDATE (§6.9): the increment, reserved bit removed."""

    increment: int

    def _detail(self) -> str:
        return f"window +{self.increment}"


@dataclass(frozen=True, slots=True)
class ContinuationFrame(Frame):
    """CONTINUATION (§6.10): the next fragment of an open field block (``block`` as for
    :class:`HeadersFrame`, on the CONTINUATION that ends the block)."""

    fragment: bytes
    block: HeaderBlock | None = field(default=None, kw_only=True)

    @property
    def fields(self) -> tuple[HeaderRepresentation, ...]:
        return self.block.representations if self.block is not None else ()

    def _detail(self) -> str:
        text = f"{_plural(len(self.fragment), 'byte')} of field block"
        if self.block is not None:
            text += "; " + self.block.note()
        return text


@dataclass(frozen=True, slots=True)
class UnknownFrame(Frame):
    """A frame type RFC 9113 does not define: kept raw; a receiver discards it (§5.5)."""

    def _detail(self) -> str:
        return f"{_plural(self.length, 'byte')}, flags 0x{self.flags:02x}; ignored (§5.5)"
