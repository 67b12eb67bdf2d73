"""HTTP/2 frames (RFC 9113 §4, §6) decoded into annotated segments; HPACK field blocks
(RFC 7541) decoded representation by representation.

Everything on an HTTP/2 connection is a frame: a 9-octet header, then a payload whose layout
the frame's type decides. A client opening an h2c connection and getting a streamed reply
looks like this (client to server, then server to client; the notes are
:meth:`Frame.note`)::

    PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n  client connection preface (RFC 9113 §3.4); a SETT...
    000006 04 00 00000000 0003...   SETTINGS stream 0 (connection): MAX_CONCURRENT_STREAMS=100
    00000e 01 05 00000001 8244...   HEADERS stream 1 [END_STREAM, END_HEADERS]: 14 bytes of fie...

    000000 04 01 00000000           SETTINGS stream 0 (connection) [ACK]: acknowledges the peer...
    00000a 01 04 00000001 885f...   HEADERS stream 1 [END_HEADERS]: 10 bytes of field block
    000020 00 00 00000001 7b22...   DATA stream 1: 32 bytes
    000000 00 01 00000001           DATA stream 1 [END_STREAM]: 0 bytes

The frame header (§4.1)::

    Length (24)  Type (8)  Flags (8)  Reserved (1)  Stream Identifier (31)  Payload (Length)

Length counts the payload only. Type picks the layout (§6); unknown types are kept raw and
otherwise ignored, as §4.1 and §5.5 require. Flags mean something per type (END_STREAM 0x1,
ACK 0x1, END_HEADERS 0x4, PADDED 0x8, PRIORITY 0x20); unused flags are kept in
:attr:`Frame.flags` and ignored, as is the reserved bit. Stream 0 is the connection itself.

How to use it: make a :class:`FrameDecoder` (``expect_preface=True`` for the client-to-server
direction), hand it bytes as they arrive with :meth:`FrameDecoder.feed`, and it returns a
:class:`Frame` for every frame that became complete (a subclass per type:
:class:`DataFrame`, :class:`HeadersFrame`, ... :class:`UnknownFrame`). Frames are atomic:
a frame comes out once all its bytes are in, never in pieces. ``decode_headers=True`` also
runs every complete field block through a :class:`HeaderBlockDecoder`, and the frame that
ends the block carries the result (:attr:`HeadersFrame.block`, :attr:`HeadersFrame.fields`).
:func:`parse` does a whole capture at once; :func:`encode_frame` and the per-type helpers
(:func:`data`, :func:`headers`, ...) go the other way.

Offsets are absolute, from the first byte fed (plus ``offset``), and an error's offset is
the field that is wrong: the Length field (the frame's first byte) for a size that the type
or the limit forbids, the Stream Identifier (5 bytes in) for a frame on the wrong stream, the
Pad Length octet for padding that does not fit, the first byte that differs from the
preface. The same bad bytes give the same offset however they are split into reads.

The frame header is checked as soon as its 9 bytes are in, before a byte of the payload is
buffered. h2 (the library) waits for the whole frame first, so a header claiming 16 MiB makes
it hold 16 MiB before it says no; this decoder holds at most ``9 + max_frame_size`` bytes,
and nothing at all of a frame whose header is refused.

What raises, and what is only a problem note
--------------------------------------------

A lab viewer has to keep showing a connection after a frame that a real endpoint would
answer with GOAWAY: that frame is the interesting one. So the decoder splits invalid input
in two.

**It raises** :class:`H2FrameError` when the bytes cannot be laid out as the frame they
claim to be, or when the frame header alone breaks a rule of §6 that makes the connection
unusable. After either, the decoder refuses more input. These are:

- the client preface is not ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` (§3.4, PROTOCOL_ERROR);
- Length over ``max_frame_size`` (§4.2, FRAME_SIZE_ERROR);
- a payload size the type forbids (FRAME_SIZE_ERROR): PRIORITY not 5 octets (§6.3),
  RST_STREAM not 4 (§6.4), SETTINGS not a multiple of 6 or an ACK with a payload (§6.5),
  PING not 8 (§6.7), GOAWAY under 8 (§6.8), WINDOW_UPDATE not 4 (§6.9), and any frame too
  short for its mandatory fields (§4.2): a Pad Length octet, HEADERS priority fields, the
  PUSH_PROMISE promised stream ID;
- a frame on the wrong stream (PROTOCOL_ERROR): DATA, HEADERS, PRIORITY, RST_STREAM,
  PUSH_PROMISE or CONTINUATION on stream 0; SETTINGS, PING or GOAWAY on any other;
- padding that does not fit in the payload beside the frame's other fields (§6.1, §6.2,
  §6.6, PROTOCOL_ERROR);
- with ``decode_headers``, a field block HPACK cannot decode (§4.3, COMPRESSION_ERROR), or
  one over the decoder's size limits (ENHANCE_YOUR_CALM): the decompression context is
  lost, so no later block could be decoded either.

One deliberate overreach: §6.3 makes a PRIORITY frame of the wrong size only a *stream*
error. Its fields cannot be decoded, so it is refused like the others; h2 does the same
(it tears down the connection with FRAME_SIZE_ERROR).

**It decodes the frame and sets** :attr:`Frame.problem` when the frame is well formed but
invalid for what it says or where it is. With ``strict=True`` these raise instead, at the
offset of the offending field:

- WINDOW_UPDATE with increment 0 (§6.9: a stream error, or a connection error on stream 0,
  of type PROTOCOL_ERROR). The frame is perfectly well formed; what is wrong is asking for
  nothing, so it is shown, with the note;
- PUSH_PROMISE promising stream 0 or an odd (client-side) stream (§5.1.1, §6.6);
- SETTINGS values out of range: ENABLE_PUSH or ENABLE_CONNECT_PROTOCOL not 0 or 1,
  INITIAL_WINDOW_SIZE over 2^31-1 (FLOW_CONTROL_ERROR), MAX_FRAME_SIZE outside
  2^14..2^24-1 (§6.5.2; RFC 8441 §3);
- a stream made to depend on itself, in PRIORITY or HEADERS (RFC 7540 §5.3.1, a scheme RFC
  9113 §5.3.2 deprecates);
- the field block sequence (§4.3, §6.10): a CONTINUATION with no block open, and any frame
  other than a CONTINUATION of the same stream while a block is open. The open block is
  dropped (with ``decode_headers`` its fragments are never decoded).

Not checked here at all, because they need more than the frames of one direction: stream
states (§5.1), the order of stream IDs, flow-control windows, pseudo-header rules (§8).
That is h2's job; a viewer built on this decoder shows what h2 would refuse.

Where this decoder differs from hyperframe 6.1.0
------------------------------------------------

Measured by running hyperframe the way h2 drives it (``Frame.parse_frame_header`` on the
9-octet header, then ``parse_body`` on the payload); each point has a test showing both,
and the fuzz tests check that every other frame gets the same fields from both, or is
rejected by both. Both reject every payload-size and stream-association error listed above.

1. **Frame size**: ``parse_frame_header`` does not look at the length at all (h2 checks it
   after buffering the whole frame). We refuse a Length over ``max_frame_size`` at once.
2. **Reserved bits in payload fields**: hyperframe keeps the reserved bit as part of the
   PUSH_PROMISE promised stream ID and the GOAWAY last stream ID, and rejects a
   WINDOW_UPDATE whose reserved bit is set (the increment then reads as 2^31 or more). The
   RFC says the bit is ignored on receipt (§6.6, §6.8, §6.9), so we mask it.
3. **HEADERS padding**: hyperframe measures Pad Length against the payload minus the Pad
   Length octet, so it rejects a padded HEADERS whose fragment is empty (``pad_length ==
   length - 1``), which §6.2 allows; and it does not count the priority fields, so it
   accepts a PADDED+PRIORITY HEADERS whose padding overlaps them (slicing an empty
   fragment out of the overlap). We accept the first and reject the second.
4. **PUSH_PROMISE padding**: likewise hyperframe accepts padding that overlaps the
   promised stream ID as long as it is shorter than the payload; we reject it.
5. **ALTSVC (0xa)**: hyperframe decodes RFC 7838's ALTSVC frame and rejects a malformed one;
   RFC 9113 does not define type 0xa, so we keep it raw as UNKNOWN(0x0a).
6. **Contextual rules as problems**: hyperframe rejects a WINDOW_UPDATE of 0 and a
   PUSH_PROMISE promising stream 0 or an odd stream; we decode them with a
   :attr:`Frame.problem` (``strict=True`` rejects them, as hyperframe does). hyperframe
   does not check SETTINGS values, self-dependencies or the field block sequence.
7. **Repeated settings**: hyperframe stores SETTINGS in a dict (the last value of a
   repeated identifier wins, in the place of the first); we keep every setting in wire
   order, duplicates included.

HPACK (RFC 7541)
----------------

A field block is a sequence of representations, each starting with a bit pattern::

    1xxxxxxx  indexed field (§6.1): 7-bit-prefix index into the static (1-61) or dynamic
              (62-) table
    01xxxxxx  literal with incremental indexing (§6.2.1): 6-bit-prefix name index (0: a
              literal name follows), a value; the field is added to the dynamic table
    0000xxxx  literal without indexing (§6.2.2): 4-bit-prefix name index, value
    0001xxxx  literal never indexed (§6.2.3): the same, and intermediaries must not index it
              either (what ``hpack.Encoder`` sends for a sensitive header)
    001xxxxx  dynamic table size update (§6.3): 5-bit-prefix new maximum size

Integers (§5.1) fill the prefix; a prefix of all ones continues in 7-bit groups, low group
first. A string literal (§5.2) is a Huffman bit H, a 7-bit-prefix length, and that many
octets, Huffman-coded if H is set. :class:`HeaderBlockDecoder` parses these itself, to say
how every field was encoded and which bytes carry it (:class:`HeaderRepresentation`), and
keeps its own dynamic table (§4) to say what each one did to it; it uses hpack for Huffman
decoding and for the static table. The tests decode the same blocks with ``hpack.Decoder``
and check that both get the same fields and the same dynamic table after every block.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import ClassVar, Final, NamedTuple

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

__all__ = [
    "DEFAULT_HEADER_TABLE_SIZE",
    "DEFAULT_MAX_FRAME_SIZE",
    "ERROR_CODE_NAMES",
    "FRAME_FLAGS",
    "FRAME_TYPE_NAMES",
    "MAX_FIELD_BLOCK_SIZE",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_HEADER_LIST_SIZE",
    "MAX_HPACK_INTEGER_OCTETS",
    "MAX_STREAM_ID",
    "PREFACE",
    "SETTING_NAMES",
    "ContinuationFrame",
    "DataFrame",
    "ErrorCode",
    "Flag",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GoAwayFrame",
    "H2FrameError",
    "HPACKError",
    "HeaderBlock",
    "HeaderBlockDecoder",
    "HeaderRepresentation",
    "HeadersFrame",
    "PingFrame",
    "Preface",
    "PriorityFrame",
    "PushPromiseFrame",
    "Representation",
    "RstStreamFrame",
    "Setting",
    "SettingId",
    "SettingsFrame",
    "UnknownFrame",
    "WindowUpdateFrame",
    "continuation",
    "data",
    "encode_frame",
    "error_name",
    "goaway",
    "headers",
    "parse",
    "ping",
    "preface",
    "priority",
    "push_promise",
    "rst_stream",
    "setting_name",
    "settings",
    "window_update",
]

# --------------------------------------------------------------------------------------
# Limits

# §4.2: until the receiver raises SETTINGS_MAX_FRAME_SIZE, no payload may exceed 2^14 octets,
# and every endpoint must accept that much. A FrameDecoder starts here; set
# FrameDecoder.max_frame_size once the receiver has sent (and had acknowledged) a larger one.
DEFAULT_MAX_FRAME_SIZE: Final = 2**14

# The largest payload the 24-bit Length can say, and the largest SETTINGS_MAX_FRAME_SIZE
# (§4.2). Nothing can be encoded past it; a decoder set this high buffers up to 16 MiB.
MAX_FRAME_SIZE_LIMIT: Final = 2**24 - 1

# Stream identifiers are 31 bits (§5.1.1).
MAX_STREAM_ID: Final = 2**31 - 1

# §4.3.1, §6.5.2: both HPACK contexts start with a 4,096-octet dynamic table.
DEFAULT_HEADER_TABLE_SIZE: Final = 4096

# The decoded size of one field section, counted as §6.5.2 (SETTINGS_MAX_HEADER_LIST_SIZE)
# and RFC 7541 §4.1 count it: name + value + 32 octets per field. The setting's initial
# value is "unlimited", so a receiver has to pick one: 64 KiB is what h2 and hpack use
# (DEFAULT_MAX_HEADER_LIST_SIZE = 2**16); it is also what stops an "HPACK bomb", a tiny block
# of indexed references to one big dynamic-table entry that decodes to megabytes.
MAX_HEADER_LIST_SIZE: Final = 64 * 1024

# The compressed size of one field block, all its fragments together. The fragments of an
# open block are held until END_HEADERS, so this bounds that memory. An honest encoder never
# makes a block bigger than the field section it decodes to (an indexed field is 1 octet
# for 32+ octets of list size, a literal its strings plus a few prefix octets; only a
# Huffman code made of the 30-bit codes of rare bytes can be longer than its text), so a
# block over MAX_HEADER_LIST_SIZE could only decode to a section that is refused anyway.
# h2 counts frames instead (64 CONTINUATIONs, CONTINUATION_BACKLOG), which with 16 KiB
# frames lets a megabyte pile up.
MAX_FIELD_BLOCK_SIZE: Final = MAX_HEADER_LIST_SIZE

# Octets in one HPACK integer, prefix included. RFC 7541 §5.1 leaves the bound to the
# implementation ("integer encodings that exceed implementation limits ... MUST be treated
# as decoding errors"). Six octets carry 35 bits past the prefix, more than any 32-bit
# quantity needs, and a run of zero-valued continuation octets cannot go on forever; hpack
# 4.2 stops at the same place (VARINT_MAX_LENGTH), so both refuse the same integers.
MAX_HPACK_INTEGER_OCTETS: Final = 6

# Notes quote header values and debug data up to this many characters, then "...".
NOTE_VALUE_CHARS: Final = 60

# §3.4: the 24 octets a client sends first, chosen so that HTTP/1 servers choke on them.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# --------------------------------------------------------------------------------------
# Tables: frame types (§6), flags, error codes (§7), settings (§6.5.2)


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag:
    """Flag bits. Their meaning depends on the frame type: 0x1 is END_STREAM on DATA and
    HEADERS, ACK on SETTINGS and PING."""

    END_STREAM: Final = 0x1
    ACK: Final = 0x1
    END_HEADERS: Final = 0x4
    PADDED: Final = 0x8
    PRIORITY: Final = 0x20


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class SettingId(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    # RFC 8441 §3 (extended CONNECT, for WebSockets over HTTP/2); h2 sends it.
    ENABLE_CONNECT_PROTOCOL = 0x8


FRAME_TYPE_NAMES: Final[Mapping[int, str]] = {int(t): t.name for t in FrameType}
ERROR_CODE_NAMES: Final[Mapping[int, str]] = {int(e): e.name for e in ErrorCode}
SETTING_NAMES: Final[Mapping[int, str]] = {int(s): s.name for s in SettingId}

# The flags each type defines (§6): (bit, name), in bit order. Types not listed define none.
FRAME_FLAGS: Final[Mapping[int, tuple[tuple[int, str], ...]]] = {
    FrameType.DATA: ((Flag.END_STREAM, "END_STREAM"), (Flag.PADDED, "PADDED")),
    FrameType.HEADERS: (
        (Flag.END_STREAM, "END_STREAM"),
        (Flag.END_HEADERS, "END_HEADERS"),
        (Flag.PADDED, "PADDED"),
        (Flag.PRIORITY, "PRIORITY"),
    ),
    FrameType.SETTINGS: ((Flag.ACK, "ACK"),),
    FrameType.PUSH_PROMISE: ((Flag.END_HEADERS, "END_HEADERS"), (Flag.PADDED, "PADDED")),
    FrameType.PING: ((Flag.ACK, "ACK"),),
    FrameType.CONTINUATION: ((Flag.END_HEADERS, "END_HEADERS"),),
}
_DEFINED_FLAGS: Final[Mapping[int, int]] = {
    t: sum(bit for bit, _ in flags) for t, flags in FRAME_FLAGS.items()
}


def _unknown(value: int, width: int = 2) -> str:
    return f"UNKNOWN(0x{value:0{width}x})"


def error_name(code: int) -> str:
    """``"CANCEL"`` for 0x8; ``"UNKNOWN(0x..)"`` for a code §7 does not define."""
    return ERROR_CODE_NAMES.get(code) or _unknown(code)


def setting_name(identifier: int) -> str:
    """``"MAX_FRAME_SIZE"`` for 0x5; ``"UNKNOWN(0x..)"`` for an identifier not defined."""
    return SETTING_NAMES.get(identifier) or _unknown(identifier, 4)


def _show(raw: bytes, limit: int = NOTE_VALUE_CHARS) -> str:
    """Bytes for a note: printable ASCII as is, everything else as \\xNN, cut at ``limit``."""
    text = "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw[:limit])
    return text + "..." if len(raw) > limit else text


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


# --------------------------------------------------------------------------------------
# Errors


class H2FrameError(ProtocolError):
    """Input the frame decoder refuses, at byte ``offset``.

    ``error_code`` is the RFC 9113 §7 code a receiving endpoint would put in its GOAWAY
    (PROTOCOL_ERROR, FRAME_SIZE_ERROR, ...). ``segments`` (from :class:`ProtocolError`) holds
    what the failing :meth:`FrameDecoder.feed` call had already completed.
    """

    def __init__(
        self,
        message: str,
        offset: int,
        *,
        error_code: int = ErrorCode.PROTOCOL_ERROR,
        status_hint: int = 400,
        segments: Sequence[Segment] = (),
    ) -> None:
        super().__init__(message, offset, status_hint=status_hint, segments=segments)
        self.error_code = int(error_code)

    @property
    def error_name(self) -> str:
        return error_name(self.error_code)


class HPACKError(H2FrameError):
    """A field block that cannot be decoded (COMPRESSION_ERROR), or one over the decoder's
    limits (ENHANCE_YOUR_CALM, status hint 431). ``offset`` is where decoding stopped; in a
    block spread over several frames that can be inside an earlier frame."""


def _frame_error(text: str, offset: int, code: ErrorCode) -> H2FrameError:
    return H2FrameError(f"{text}: {code.name}", offset, error_code=code)


# --------------------------------------------------------------------------------------
# Segments: the preface and the frames


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
    well-formed frame is invalid where it stands (see the module docstring), or is None.

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


# --------------------------------------------------------------------------------------
# HPACK: representations, blocks, the decoder


class Representation(StrEnum):
    """The five kinds of HPACK representation (RFC 7541 §6)."""

    INDEXED = "indexed"
    INCREMENTAL = "literal with incremental indexing"
    WITHOUT_INDEXING = "literal without indexing"
    NEVER_INDEXED = "literal never indexed"
    SIZE_UPDATE = "dynamic table size update"


_STATIC: Final[tuple[tuple[bytes, bytes], ...]] = tuple(HeaderTable.STATIC_TABLE)
_STATIC_COUNT: Final = len(_STATIC)  # 61 (RFC 7541 Appendix A)


def _table_text(entries: int, size: int) -> str:
    return f"table now {entries} {'entry' if entries == 1 else 'entries'}, {size} bytes"


@dataclass(frozen=True, slots=True)
class HeaderRepresentation(Segment):
    """One representation of a field block; ``start``/``end`` count within the block
    (:meth:`HeaderBlock.wire_ranges` places them on the wire).

    ``index`` is the table index of an indexed field, the name's index for a literal with
    an indexed name, None for a literal name and a size update. ``name_huffman`` and
    ``value_huffman`` say whether each string literal was Huffman-coded (None when there
    was no literal), ``name_octets``/``value_octets`` how many octets it took on the wire
    (length prefix not counted). ``new_max_size`` is set for a size update. The last three
    describe the dynamic table after this representation, and how many entries it evicted.
    """

    representation: Representation
    name: bytes
    value: bytes
    index: int | None
    name_huffman: bool | None
    name_octets: int
    value_huffman: bool | None
    value_octets: int
    new_max_size: int | None
    table_entries: int
    table_size: int
    evicted: int

    kind: ClassVar[str] = "hpack-field"

    def note(self) -> str:
        table = _table_text(self.table_entries, self.table_size)
        if self.evicted:
            table += f" (evicted {self.evicted})"
        if self.representation is Representation.SIZE_UPDATE:
            return f"dynamic table size update to {self.new_max_size}; {table}"
        head = f"{_show(self.name)}: {_show(self.value)} — "
        if self.representation is Representation.INDEXED:
            assert self.index is not None
            return head + f"indexed ({_where(self.index)})"
        if self.index is not None:
            name = f"name {_where(self.index)}"
        else:
            name = "name " + _string_text(len(self.name), self.name_huffman, self.name_octets)
        value = "value " + _string_text(len(self.value), self.value_huffman, self.value_octets)
        text = f"{head}{self.representation}, {name}, {value}"
        if self.representation is Representation.INCREMENTAL:
            text += f"; {table}"
        return text


def _where(index: int) -> str:
    return f"static {index}" if index <= _STATIC_COUNT else f"dynamic {index}"


def _string_text(decoded: int, huffman: bool | None, octets: int) -> str:
    if huffman:
        return f"Huffman ({decoded}→{octets} bytes)"
    return f"literal ({_plural(octets, 'byte')})"


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """A decoded field block.

    ``representations`` tile the block: the first starts at 0, each starts where the last
    ended, the last ends at the block's size. ``table`` is the dynamic table afterwards,
    newest entry first (index 62 is ``table[0]``), with its size and maximum size.
    ``fragments`` are the absolute (start, end) wire ranges the block came in, in order;
    ``data`` is the block itself, its fragments joined (a representation's bytes are
    ``data[rep.start:rep.end]``).
    """

    representations: tuple[HeaderRepresentation, ...]
    table: tuple[tuple[bytes, bytes], ...]
    table_size: int
    table_max_size: int
    fragments: tuple[tuple[int, int], ...]
    data: bytes

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The decoded fields, in order, as (name, value)."""
        return tuple(
            (r.name, r.value)
            for r in self.representations
            if r.representation is not Representation.SIZE_UPDATE
        )

    @property
    def size(self) -> int:
        return sum(end - start for start, end in self.fragments)

    def wire_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """The absolute wire ranges holding block bytes ``[start, end)``: one range, or
        several when they straddle a frame boundary."""
        out: list[tuple[int, int]] = []
        at = 0
        for frag_start, frag_end in self.fragments:
            size = frag_end - frag_start
            lo, hi = max(start, at), min(end, at + size)
            if lo < hi:
                out.append((frag_start + lo - at, frag_start + hi - at))
            at += size
        return out

    def note(self) -> str:
        fields = [
            r for r in self.representations if r.representation is not Representation.SIZE_UPDATE
        ]
        counts: dict[str, int] = {}
        for r in fields:
            counts[r.representation] = counts.get(r.representation, 0) + 1
        how = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        text = f"{_plural(len(fields), 'field')}" + (f" ({how})" if how else "")
        return f"{text}; {_table_text(len(self.table), self.table_size)}"


class _BlockError(Exception):
    """An HPACK failure at a block offset; HeaderBlockDecoder turns it into HPACKError."""

    def __init__(self, message: str, at: int, code: ErrorCode = ErrorCode.COMPRESSION_ERROR):
        super().__init__(message)
        self.message = message
        self.at = at
        self.code = code


def _integer(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 §5.1: the integer whose prefix is the low ``prefix_bits`` of ``block[i]``.
    Returns (value, index past it)."""
    n = len(block)
    limit = (1 << prefix_bits) - 1
    value = block[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    first = i - 1
    while True:
        if i >= n:
            raise _BlockError("the field block ends inside an integer (RFC 7541 §5.1)", n)
        if i - first >= MAX_HPACK_INTEGER_OCTETS:
            raise _BlockError(
                f"integer longer than {MAX_HPACK_INTEGER_OCTETS} octets"
                " (MAX_HPACK_INTEGER_OCTETS; RFC 7541 §5.1)",
                i,
            )
        b = block[i]
        value += (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _string(block: bytes, i: int) -> tuple[bytes, bool, int, int]:
    """RFC 7541 §5.2: a string literal at ``block[i]``. Returns (decoded, Huffman-coded,
    octets on the wire, index past it)."""
    n = len(block)
    if i >= n:
        raise _BlockError("the field block ends before a string literal (RFC 7541 §5.2)", n)
    huffman = bool(block[i] & 0x80)
    length, i = _integer(block, i, 7)
    end = i + length
    if end > n:
        raise _BlockError(
            f"string literal of {_plural(length, 'octet')} but the field block has"
            f" {n - i} left (RFC 7541 §5.2)",
            n,
        )
    raw = block[i:end]
    if not huffman:
        return raw, False, length, end
    try:
        return decode_huffman(raw), True, length, end
    except HPACKDecodingError:
        raise _BlockError(
            "invalid Huffman code: an EOS symbol, or padding that is longer than 7 bits or"
            " not all ones (RFC 7541 §5.2)",
            i,
        ) from None


class HeaderBlockDecoder:
    """One HPACK decoding context (RFC 7541 §2.2): one per direction of a connection.

    :meth:`decode` takes one complete field block (a HEADERS or PUSH_PROMISE fragment and
    its CONTINUATIONs, joined) and returns a :class:`HeaderBlock`. The dynamic table carries
    over from block to block, so blocks must be decoded in the order they were sent, and
    every one of them (§4.3). ``max_table_size`` is the SETTINGS_HEADER_TABLE_SIZE this
    side has sent and had acknowledged: the ceiling for the encoder's size updates. Lowering
    it below the table's current maximum obliges the next block to start with a size update
    (RFC 7541 §4.2, RFC 9113 §4.3.1). After an error the context is unusable and the
    decoder refuses more blocks.
    """

    __slots__ = ("_entries", "_error", "_limit", "_max_block", "_max_list", "_max_size", "_size")

    def __init__(
        self,
        *,
        max_table_size: int = DEFAULT_HEADER_TABLE_SIZE,
        max_header_list_size: int = MAX_HEADER_LIST_SIZE,
        max_block_size: int = MAX_FIELD_BLOCK_SIZE,
    ) -> None:
        if min(max_table_size, max_header_list_size, max_block_size) < 0:
            raise ValueError("limits must not be negative")
        self._entries: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._size = 0
        self._max_size = DEFAULT_HEADER_TABLE_SIZE  # what size updates have set
        self._limit = max_table_size  # SETTINGS_HEADER_TABLE_SIZE: the most they may set
        self._max_list = max_header_list_size
        self._max_block = max_block_size
        self._error: HPACKError | None = None

    @property
    def table(self) -> tuple[tuple[bytes, bytes], ...]:
        """The dynamic table, newest entry first."""
        return tuple(self._entries)

    @property
    def table_size(self) -> int:
        """The table's size as RFC 7541 §4.1 counts it: name + value + 32 per entry."""
        return self._size

    @property
    def table_max_size(self) -> int:
        """The maximum the encoder has set (4,096 until a size update says otherwise)."""
        return self._max_size

    @property
    def max_table_size(self) -> int:
        return self._limit

    @max_table_size.setter
    def max_table_size(self, value: int) -> None:
        if value < 0:
            raise ValueError("the table size limit must not be negative")
        self._limit = value

    @property
    def max_block_size(self) -> int:
        return self._max_block

    def decode(
        self, block: bytes, *, fragments: Sequence[tuple[int, int]] | None = None
    ) -> HeaderBlock:
        """Decode one complete field block.

        ``fragments`` are the absolute wire ranges the block's bytes came from, in order,
        and their sizes must add up to ``len(block)``; errors name wire offsets through
        them. By default the block is its own wire: offsets count from its first byte.
        """
        if self._error is not None:
            raise HPACKError(
                f"the HPACK context already failed: {self._error.message}",
                self._error.offset,
                error_code=self._error.error_code,
            )
        ranges = ((0, len(block)),) if fragments is None else tuple(fragments)
        if sum(end - start for start, end in ranges) != len(block):
            raise ValueError("the fragments do not add up to the block")
        try:
            representations = self._decode(block)
        except _BlockError as exc:
            hint = 431 if exc.code == ErrorCode.ENHANCE_YOUR_CALM else 400
            self._error = HPACKError(
                f"{exc.message}: {exc.code.name}",
                _wire_offset(ranges, exc.at),
                error_code=exc.code,
                status_hint=hint,
            )
            raise self._error from None
        return HeaderBlock(
            representations, tuple(self._entries), self._size, self._max_size, ranges, block
        )

    def _decode(self, block: bytes) -> tuple[HeaderRepresentation, ...]:
        n = len(block)
        if n > self._max_block:
            raise _BlockError(
                f"field block longer than {self._max_block} bytes (MAX_FIELD_BLOCK_SIZE)",
                self._max_block,
                ErrorCode.ENHANCE_YOUR_CALM,
            )
        out: list[HeaderRepresentation] = []
        entries = self._entries
        # RFC 7541 §4.2: after the limit went below the table's maximum, the first thing in
        # the next block must be a size update that gets under it.
        must_update = self._max_size > self._limit
        list_size = 0
        fields_seen = False
        i = 0
        while i < n:
            start = i
            b = block[i]
            if b & 0x80:
                # §6.1 Indexed Header Field: 1 + index (7-bit prefix)
                index, i = _integer(block, i, 7)
                if index == 0:
                    raise _BlockError("indexed field with index 0 (RFC 7541 §6.1)", start)
                name, value = self._lookup(index, start)
                rep = HeaderRepresentation(
                    start, i, Representation.INDEXED, name, value, index,
                    None, 0, None, 0, None, len(entries), self._size, 0,
                )  # fmt: skip
            elif b & 0x40:
                # §6.2.1 Literal Header Field with Incremental Indexing: 01 + name index (6)
                rep = self._literal(block, i, 6, Representation.INCREMENTAL)
            elif b & 0x20:
                # §6.3 Dynamic Table Size Update: 001 + max size (5-bit prefix); only at the
                # start of a block (§4.2), never past SETTINGS_HEADER_TABLE_SIZE.
                if fields_seen:
                    raise _BlockError(
                        "dynamic table size update after a field: updates come first in a"
                        " field block (RFC 7541 §4.2)",
                        start,
                    )
                new_max, i = _integer(block, i, 5)
                if new_max > self._limit:
                    raise _BlockError(
                        f"dynamic table size update to {new_max}, over the"
                        f" SETTINGS_HEADER_TABLE_SIZE of {self._limit} (RFC 7541 §6.3)",
                        start,
                    )
                self._max_size = new_max
                evicted = self._evict(new_max)
                must_update = False
                rep = HeaderRepresentation(
                    start, i, Representation.SIZE_UPDATE, b"", b"", None,
                    None, 0, None, 0, new_max, len(entries), self._size, evicted,
                )  # fmt: skip
                out.append(rep)
                continue
            else:
                # §6.2.2 without indexing (0000 + name index, 4-bit prefix) and §6.2.3 never
                # indexed (0001 + name index)
                kind = Representation.NEVER_INDEXED if b & 0x10 else Representation.WITHOUT_INDEXING
                rep = self._literal(block, i, 4, kind)
            if must_update:
                raise _BlockError(
                    f"the field block must start with a dynamic table size update: the"
                    f" limit is {self._limit}, the table's maximum {self._max_size}"
                    " (RFC 7541 §4.2, RFC 9113 §4.3.1)",
                    start,
                )
            i = rep.end
            fields_seen = True
            list_size += 32 + len(rep.name) + len(rep.value)
            if list_size > self._max_list:
                raise _BlockError(
                    f"header list larger than {self._max_list} bytes (MAX_HEADER_LIST_SIZE,"
                    " counted as RFC 9113 §6.5.2 does)",
                    start,
                    ErrorCode.ENHANCE_YOUR_CALM,
                )
            out.append(rep)
        if must_update:
            raise _BlockError(
                "the field block must start with a dynamic table size update"
                " (RFC 7541 §4.2, RFC 9113 §4.3.1)",
                n,
            )
        return tuple(out)

    def _literal(
        self, block: bytes, i: int, prefix_bits: int, kind: Representation
    ) -> HeaderRepresentation:
        """§6.2: a literal field, name indexed (index > 0) or literal, value literal."""
        start = i
        index, i = _integer(block, i, prefix_bits)
        name_huffman: bool | None = None
        name_octets = 0
        if index:
            name = self._lookup(index, start)[0]
        else:
            name, name_huffman, name_octets, i = _string(block, i)
        value, value_huffman, value_octets, i = _string(block, i)
        evicted = self._add(name, value) if kind is Representation.INCREMENTAL else 0
        return HeaderRepresentation(
            start, i, kind, name, value, index or None, name_huffman, name_octets,
            value_huffman, value_octets, None, len(self._entries), self._size, evicted,
        )  # fmt: skip

    def _lookup(self, index: int, at: int) -> tuple[bytes, bytes]:
        """§2.3.3: indexes 1-61 are the static table, 62 on the dynamic one, newest first."""
        if index <= _STATIC_COUNT:
            return _STATIC[index - 1]
        entries = self._entries
        if index - _STATIC_COUNT > len(entries):
            raise _BlockError(
                f"index {index} is past the end of the table ({_STATIC_COUNT} static +"
                f" {len(entries)} dynamic entries; RFC 7541 §2.3.3)",
                at,
            )
        return entries[index - _STATIC_COUNT - 1]

    def _evict(self, max_size: int) -> int:
        """§4.3-4.4: drop the oldest entries until the table fits in ``max_size``."""
        evicted = 0
        entries = self._entries
        while self._size > max_size:
            name, value = entries.pop()
            self._size -= 32 + len(name) + len(value)
            evicted += 1
        return evicted

    def _add(self, name: bytes, value: bytes) -> int:
        """§4.4: make room, then add; an entry bigger than the whole table empties it and is
        not added."""
        size = 32 + len(name) + len(value)
        if size > self._max_size:
            return self._evict(0)
        evicted = self._evict(self._max_size - size)
        self._entries.appendleft((name, value))
        self._size += size
        return evicted


def _wire_offset(ranges: Sequence[tuple[int, int]], at: int) -> int:
    """Block offset ``at`` as a wire offset; the block's end maps to the last range's end."""
    for start, end in ranges:
        if at < end - start:
            return start + at
        at -= end - start
    return ranges[-1][1] + at if ranges else at


# --------------------------------------------------------------------------------------
# Fast construction for the hot path. A frozen dataclass's __init__ sets every field through
# object.__setattr__ (to get past its own frozen __setattr__), which costs about twice as
# much as writing the slots directly. The decoder builds unpadded DATA frames, the bulk of
# any stream, this way; tests compare them with frames made by __init__.

_new = object.__new__


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The setter of slot ``name``, which the frozen __setattr__ does not guard."""
    setter: Callable[[object, object], None] = vars(cls)[name].__set__
    return setter


_set_start, _set_end = _setter(Segment, "start"), _setter(Segment, "end")
_set_length, _set_type = _setter(Frame, "length"), _setter(Frame, "type")
_set_flags, _set_stream = _setter(Frame, "flags"), _setter(Frame, "stream_id")
_set_payload, _set_problem = _setter(Frame, "payload"), _setter(Frame, "problem")
_set_reserved = _setter(Frame, "reserved")
_set_pad, _set_data = _setter(DataFrame, "pad_length"), _setter(DataFrame, "data")

# Length (24) + Type (8) as one 32-bit word, Flags (8), R + Stream Identifier (32).
_HEADER: Final = struct.Struct(">IBI")
_U32: Final = struct.Struct(">I")
_U32X2: Final = struct.Struct(">II")
_SETTING: Final = struct.Struct(">HI")
_STREAM_MASK: Final = 0x7FFFFFFF

# The frames that must be on a stream, and those that must be on stream 0 (§6.x).
_ON_A_STREAM: Final = frozenset(
    {
        FrameType.DATA,
        FrameType.HEADERS,
        FrameType.PRIORITY,
        FrameType.RST_STREAM,
        FrameType.PUSH_PROMISE,
        FrameType.CONTINUATION,
    }
)
_ON_STREAM_0: Final = frozenset({FrameType.SETTINGS, FrameType.PING, FrameType.GOAWAY})
_SECTION: Final[Mapping[int, str]] = {
    FrameType.DATA: "§6.1",
    FrameType.HEADERS: "§6.2",
    FrameType.PRIORITY: "§6.3",
    FrameType.RST_STREAM: "§6.4",
    FrameType.SETTINGS: "§6.5",
    FrameType.PUSH_PROMISE: "§6.6",
    FrameType.PING: "§6.7",
    FrameType.GOAWAY: "§6.8",
    FrameType.WINDOW_UPDATE: "§6.9",
    FrameType.CONTINUATION: "§6.10",
}
# Exact payload sizes (§6.3, §6.4, §6.7, §6.9).
_EXACT_SIZE: Final[Mapping[int, int]] = {
    FrameType.PRIORITY: 5,
    FrameType.RST_STREAM: 4,
    FrameType.PING: 8,
    FrameType.WINDOW_UPDATE: 4,
}


class _Head(NamedTuple):
    """A frame header, decoded: where the frame starts and its fields."""

    start: int
    length: int
    type: int
    flags: int
    stream_id: int
    reserved: bool

    def common(self, payload: bytes) -> tuple[int, int, int, int, int, int, bytes]:
        """The fields every Frame starts with, in order."""
        return (
            self.start, self.start + 9 + self.length, self.length, self.type, self.flags,
            self.stream_id, payload,
        )  # fmt: skip


_Builder = Callable[["FrameDecoder", _Head, bytes, "str | None"], Frame]


class FrameDecoder:
    """Turns one direction of an HTTP/2 connection, fed in pieces of any size, into
    :class:`Preface` and :class:`Frame` segments.

    ``expect_preface``: the bytes start with the client connection preface (the
    client-to-server direction). ``offset`` is the absolute offset of the first byte you
    will feed. ``max_frame_size`` is the largest payload accepted: the SETTINGS_MAX_FRAME_SIZE
    the receiving side advertised (settable later through :attr:`max_frame_size`).
    ``decode_headers`` decodes field blocks with a :class:`HeaderBlockDecoder`
    (:attr:`header_decoder`). ``strict`` raises for what is otherwise a
    :attr:`Frame.problem`. The bytes held between feeds are one incomplete frame, at most
    ``9 + max_frame_size``; with ``decode_headers``, also the fragments of an open field
    block, at most ``MAX_FIELD_BLOCK_SIZE``.
    """

    __slots__ = (
        "_block_size",
        "_buf",
        "_buf_start",
        "_error",
        "_fragments",
        "_hdec",
        "_max_frame_size",
        "_offset",
        "_open_block",
        "_preface_left",
        "_strict",
    )

    def __init__(
        self,
        expect_preface: bool = False,
        *,
        offset: int = 0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        decode_headers: bool = False,
        strict: bool = False,
    ) -> None:
        self._max_frame_size = 0
        self.max_frame_size = max_frame_size
        self._offset = offset  # absolute offset of the next byte to be fed
        self._preface_left = len(PREFACE) if expect_preface else 0
        self._buf = bytearray()  # an incomplete frame, nothing else
        self._buf_start = offset  # absolute offset of self._buf[0]
        self._strict = strict
        self._hdec = HeaderBlockDecoder() if decode_headers else None
        # The open field block (§4.3): (stream id, offset of the frame that opened it, its
        # type), and with decode_headers its fragments so far as (bytes, wire start).
        self._open_block: tuple[int, int, int] | None = None
        self._fragments: list[tuple[bytes, int]] = []
        self._block_size = 0
        self._error: H2FrameError | None = None

    # ----------------------------------------------------------------------------------
    # Public surface

    @property
    def max_frame_size(self) -> int:
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        # §6.5.2: SETTINGS_MAX_FRAME_SIZE is 2^14..2^24-1; every endpoint takes 2^14.
        if not DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError(
                f"max_frame_size must be {DEFAULT_MAX_FRAME_SIZE}..{MAX_FRAME_SIZE_LIMIT}"
                " (RFC 9113 §6.5.2)"
            )
        self._max_frame_size = value

    @property
    def header_decoder(self) -> HeaderBlockDecoder | None:
        """The HPACK context used with ``decode_headers`` (None without it)."""
        return self._hdec

    @property
    def offset(self) -> int:
        """Absolute offset just past the last byte fed."""
        return self._offset

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete frame are held."""
        return len(self._buf)

    @property
    def field_block_open(self) -> bool:
        """True between a HEADERS or PUSH_PROMISE without END_HEADERS and the end of its
        CONTINUATIONs."""
        return self._open_block is not None

    def feed(self, data: bytes) -> list[Segment]:
        """Take the next bytes; return the segments they completed (:class:`Preface` once,
        then :class:`Frame` objects). ``feed(b"")`` does nothing: the end is :meth:`eof`."""
        if self._error is not None:
            raise self._refusal()
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return []
        out: list[Segment] = []
        base = self._offset  # absolute offset of data[0]
        self._offset += len(data)
        try:
            pos = 0
            if self._preface_left:
                pos = self._preface(data, base, out)
            if self._buf and pos < len(data):
                pos = self._finish_buffered(data, pos, base, out)
            if pos < len(data):
                pos = self._parse(data, pos, base, out)
                if pos < len(data):
                    self._buf = bytearray(data[pos:])
                    self._buf_start = base + pos
        except H2FrameError as exc:
            exc.segments = out
            self._error = exc
            self._buf = bytearray()
            raise
        return out

    def eof(self) -> None:
        """The input has ended: raise :class:`H2FrameError` if it ended inside the preface
        or a frame. (An open field block is not a framing error; see
        :attr:`field_block_open`.)"""
        if self._error is not None:
            raise self._refusal()
        where = None
        if self._preface_left:
            where = "the input ended inside the client connection preface"
        elif len(self._buf) >= 9:
            length = int.from_bytes(self._buf[:3], "big")
            missing = 9 + length - len(self._buf)
            where = f"the input ended inside a frame ({_plural(missing, 'more byte')} announced)"
        elif self._buf:
            where = "the input ended inside a frame header"
        if where is not None:
            self._error = H2FrameError(where, self._offset)
            raise self._error

    # ----------------------------------------------------------------------------------
    # Framing

    def _refusal(self) -> H2FrameError:
        assert self._error is not None
        return H2FrameError(
            f"the decoder already failed: {self._error.message}",
            self._error.offset,
            error_code=self._error.error_code,
        )

    def _preface(self, data: bytes, base: int, out: list[Segment]) -> int:
        """Match the client preface (§3.4) as it arrives; nothing is buffered."""
        done = len(PREFACE) - self._preface_left
        take = min(self._preface_left, len(data))
        expected = PREFACE[done : done + take]
        if data[:take] != expected:
            i = next(i for i in range(take) if data[i] != expected[i])
            raise _frame_error(
                f"not the HTTP/2 client preface: byte {done + i} is {data[i : i + 1]!r},"
                f" expected {expected[i : i + 1]!r} (PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n,"
                " RFC 9113 §3.4)",
                base + i,
                ErrorCode.PROTOCOL_ERROR,
            )
        self._preface_left -= take
        if not self._preface_left:
            out.append(Preface(base + take - len(PREFACE), base + take))
        return take

    def _finish_buffered(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Complete the frame held in the buffer from the head of ``data``. Returns where
        ``data``'s next frame starts, or ``len(data)`` if the frame is still incomplete."""
        buf = self._buf
        n = len(data)
        if len(buf) < 9:
            take = min(9 - len(buf), n - pos)
            buf += data[pos : pos + take]
            pos += take
            if len(buf) < 9:
                return pos
            word, flags, sid = _HEADER.unpack_from(buf)
            self._check_header(self._buf_start, word >> 8, word & 0xFF, flags, sid)
        total = 9 + int.from_bytes(buf[:3], "big")
        take = min(total - len(buf), n - pos)
        buf += data[pos : pos + take]
        pos += take
        if len(buf) < total:
            return pos
        self._buf = bytearray()
        self._parse(bytes(buf), 0, self._buf_start, out)
        return pos

    def _parse(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Decode whole frames from ``data[pos:]``; return the index of the first byte of
        an incomplete frame (``len(data)`` if none). ``base`` is data[0]'s offset."""
        n = len(data)
        append = out.append
        unpack = _HEADER.unpack_from
        max_size = self._max_frame_size
        while n - pos >= 9:
            word, flags, sid = unpack(data, pos)
            length = word >> 8
            if length > max_size:
                # §4.2, before a byte of the payload is held: the early length check.
                raise self._too_long(base + pos, length)
            ftype = word & 0xFF
            end = pos + 9 + length
            if (
                ftype == 0
                and not flags & 0x08
                and 0 < sid <= _STREAM_MASK
                and self._open_block is None
            ):
                # The common case, unpadded DATA on a stream outside a field block: nothing
                # to check but the length, nothing to decode. Built slot by slot.
                if end > n:
                    break
                payload = data[pos + 9 : end]
                frame: DataFrame = _new(DataFrame)
                _set_start(frame, base + pos)
                _set_end(frame, base + end)
                _set_length(frame, length)
                _set_type(frame, 0)
                _set_flags(frame, flags)
                _set_stream(frame, sid)
                _set_payload(frame, payload)
                _set_problem(frame, None)
                _set_reserved(frame, False)
                _set_pad(frame, None)
                _set_data(frame, payload)
                append(frame)
                pos = end
                continue
            start = base + pos
            self._check_header(start, length, ftype, flags, sid)
            if end > n:
                break
            head = _Head(start, length, ftype, flags, sid & _STREAM_MASK, sid > _STREAM_MASK)
            problem = self._sequence(head)
            build = _BUILDERS.get(ftype, FrameDecoder._unknown)
            append(build(self, head, data[pos + 9 : end], problem))
            pos = end
        return pos

    def _check_header(self, start: int, length: int, ftype: int, flags: int, sid: int) -> None:
        """Everything the 9-octet header alone can break (§6), checked before the payload
        is buffered. The size rules come first (offset: the Length field), then the stream
        rules (offset: the Stream Identifier)."""
        if length > self._max_frame_size:
            raise self._too_long(start, length)
        if ftype not in _SECTION:
            return  # unknown types: no rules (§5.5)
        name = FRAME_TYPE_NAMES[ftype]
        section = _SECTION[ftype]
        exact = _EXACT_SIZE.get(ftype)
        too_short = None
        if exact is not None and length != exact:
            raise _frame_error(
                f"{name} frame with Length {length}: its payload is exactly"
                f" {_plural(exact, 'octet')} (RFC 9113 {section})",
                start,
                ErrorCode.FRAME_SIZE_ERROR,
            )
        if ftype == FrameType.SETTINGS:
            if flags & Flag.ACK and length:
                raise _frame_error(
                    f"SETTINGS ACK with Length {length}: an acknowledgement has an empty"
                    " payload (RFC 9113 §6.5)",
                    start,
                    ErrorCode.FRAME_SIZE_ERROR,
                )
            if length % 6:
                raise _frame_error(
                    f"SETTINGS frame with Length {length}: settings are 6 octets each, so"
                    " the Length is a multiple of 6 (RFC 9113 §6.5)",
                    start,
                    ErrorCode.FRAME_SIZE_ERROR,
                )
        elif ftype == FrameType.GOAWAY and length < 8:
            too_short = "the last stream ID and the error code (8 octets)"
        elif ftype in (FrameType.DATA, FrameType.HEADERS, FrameType.PUSH_PROMISE):
            fields = []
            if flags & Flag.PADDED:
                fields.append(("the Pad Length octet", 1))
            if ftype == FrameType.HEADERS and flags & Flag.PRIORITY:
                fields.append(("the priority fields", 5))
            if ftype == FrameType.PUSH_PROMISE:
                fields.append(("the promised stream ID", 4))
            need = sum(size for _, size in fields)
            if length < need:
                what = " and ".join(text for text, _ in fields)
                too_short = f"{what} ({_plural(need, 'octet')})"
        if too_short is not None:
            raise _frame_error(
                f"{name} frame with Length {length} has no room for {too_short}"
                " (RFC 9113 §4.2, " + section + ")",
                start,
                ErrorCode.FRAME_SIZE_ERROR,
            )
        stream = sid & _STREAM_MASK
        if ftype in _ON_A_STREAM and not stream:
            raise _frame_error(
                f"{name} frame on stream 0: {name} belongs to a stream (RFC 9113 {section})",
                start + 5,
                ErrorCode.PROTOCOL_ERROR,
            )
        if ftype in _ON_STREAM_0 and stream:
            raise _frame_error(
                f"{name} frame on stream {stream}: {name} is for the connection, stream 0"
                f" (RFC 9113 {section})",
                start + 5,
                ErrorCode.PROTOCOL_ERROR,
            )

    def _too_long(self, start: int, length: int) -> H2FrameError:
        return _frame_error(
            f"frame Length {length} is over the maximum frame size {self._max_frame_size}"
            " (RFC 9113 §4.2; the receiver's SETTINGS_MAX_FRAME_SIZE)",
            start,
            ErrorCode.FRAME_SIZE_ERROR,
        )

    def _problem(self, text: str, offset: int, code: ErrorCode) -> str:
        """A contextual problem: the note, or in strict mode the error."""
        if self._strict:
            raise _frame_error(text, offset, code)
        return text

    def _sequence(self, h: _Head) -> str | None:
        """§4.3, §6.10: a field block is HEADERS/PUSH_PROMISE then CONTINUATIONs of the same
        stream, nothing in between; a CONTINUATION only ever continues one."""
        open_block = self._open_block
        is_continuation = h.type == FrameType.CONTINUATION
        if open_block is not None:
            if is_continuation and h.stream_id == open_block[0]:
                return None
            self._open_block = None
            self._fragments = []
            name = FRAME_TYPE_NAMES.get(h.type) or _unknown(h.type)
            what = f"CONTINUATION of stream {h.stream_id}" if is_continuation else name
            return self._problem(
                f"{what} inside the field block of stream {open_block[0]} (opened by"
                f" {FRAME_TYPE_NAMES[open_block[2]]} at offset {open_block[1]}): a field block"
                " continues only in CONTINUATION frames of its own stream (RFC 9113 §4.3,"
                " §6.10); the block is dropped",
                h.start + 5 if is_continuation else h.start + 3,
                ErrorCode.PROTOCOL_ERROR,
            )
        if is_continuation:
            return self._problem(
                "CONTINUATION with no field block open: it must follow a HEADERS,"
                " PUSH_PROMISE or CONTINUATION without END_HEADERS on its stream"
                " (RFC 9113 §6.10)",
                h.start + 3,
                ErrorCode.PROTOCOL_ERROR,
            )
        return None

    def _field_block(self, h: _Head, fragment: bytes, frag_start: int) -> HeaderBlock | None:
        """Track (and with decode_headers, decode) the field block this fragment is part
        of; return the decoded block when this frame ends it."""
        hdec = self._hdec
        end_headers = h.flags & Flag.END_HEADERS
        if h.type == FrameType.CONTINUATION:
            if self._open_block is None:
                return None  # an orphan, already noted by _sequence
            if hdec is not None:
                self._add_fragment(fragment, frag_start, hdec)
            if not end_headers:
                return None
            self._open_block = None
            if hdec is None:
                return None
            pieces, self._fragments = self._fragments, []
            block = b"".join(piece for piece, _ in pieces)
            ranges = [(at, at + len(piece)) for piece, at in pieces]
            return hdec.decode(block, fragments=ranges)
        if not end_headers:
            self._open_block = (h.stream_id, h.start, h.type)
            self._fragments = []
            self._block_size = 0
            if hdec is not None:
                self._add_fragment(fragment, frag_start, hdec)
            return None
        if hdec is None:
            return None
        return hdec.decode(fragment, fragments=((frag_start, frag_start + len(fragment)),))

    def _add_fragment(self, fragment: bytes, frag_start: int, hdec: HeaderBlockDecoder) -> None:
        room = hdec.max_block_size - self._block_size
        if len(fragment) > room:
            raise HPACKError(
                f"field block longer than {hdec.max_block_size} bytes (MAX_FIELD_BLOCK_SIZE):"
                f" {ErrorCode.ENHANCE_YOUR_CALM.name}",
                frag_start + room,
                error_code=ErrorCode.ENHANCE_YOUR_CALM,
                status_hint=431,
            )
        self._block_size += len(fragment)
        self._fragments.append((fragment, frag_start))

    def _padding(self, h: _Head, pad_length: int, fixed: int) -> None:
        """The Pad Length octet, the type's fixed fields and the padding must all fit
        (§6.1, §6.2, §6.6: padding as long as the payload or longer is an error; for HEADERS
        with priority and for PUSH_PROMISE the fixed fields must fit too, §4.2)."""
        room = h.length - 1 - fixed
        if pad_length > room:
            fields = " and the fields before the fragment" if fixed else ""
            raise _frame_error(
                f"{FRAME_TYPE_NAMES[h.type]} Pad Length {pad_length}, but only"
                f" {_plural(room, 'octet')} of the {h.length}-octet payload remain after the"
                f" Pad Length octet{fields} (RFC 9113 {_SECTION[h.type]})",
                h.start + 9,
                ErrorCode.PROTOCOL_ERROR,
            )

    # ----------------------------------------------------------------------------------
    # One builder per frame type (§6). Each gets the header, the payload and the
    # field-block problem, checks what the payload can break, and returns the frame.

    def _data(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        pad_length = None
        body = payload
        if h.flags & Flag.PADDED:
            pad_length = payload[0]
            self._padding(h, pad_length, 0)
            body = payload[1 : h.length - pad_length]
        return DataFrame(*h.common(payload), pad_length, body, problem=problem, reserved=h.reserved)

    def _headers(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        i = 0
        pad_length = None
        if h.flags & Flag.PADDED:
            pad_length = payload[0]
            i = 1
            self._padding(h, pad_length, 5 if h.flags & Flag.PRIORITY else 0)
        exclusive: bool | None = None
        depends_on: int | None = None
        weight: int | None = None
        if h.flags & Flag.PRIORITY:
            (word,) = _U32.unpack_from(payload, i)
            exclusive, depends_on, weight = word > _STREAM_MASK, word & _STREAM_MASK, payload[i + 4]
            if depends_on == h.stream_id:
                problem = _join(problem, self._self_dependency(h, h.start + 9 + i))
            i += 5
        fragment = payload[i : h.length - (pad_length or 0)]
        block = self._field_block(h, fragment, h.start + 9 + i)
        return HeadersFrame(
            *h.common(payload), pad_length, exclusive, depends_on, weight, fragment,
            block=block, problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _self_dependency(self, h: _Head, offset: int) -> str:
        return self._problem(
            f"stream {h.stream_id} depends on itself (RFC 7540 §5.3.1, a stream error)",
            offset,
            ErrorCode.PROTOCOL_ERROR,
        )

    def _priority(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        (word,) = _U32.unpack_from(payload)
        depends_on = word & _STREAM_MASK
        if depends_on == h.stream_id:
            problem = _join(problem, self._self_dependency(h, h.start + 9))
        return PriorityFrame(
            *h.common(payload), word > _STREAM_MASK, depends_on, payload[4],
            problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _rst_stream(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        (code,) = _U32.unpack_from(payload)
        return RstStreamFrame(*h.common(payload), code, problem=problem, reserved=h.reserved)

    def _settings(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        values = []
        for i in range(0, h.length, 6):
            ident, value = _SETTING.unpack_from(payload, i)
            values.append(Setting(ident, setting_name(ident), value))
            complaint = _setting_complaint(ident, value)
            if complaint is not None:
                text, code = complaint
                problem = _join(problem, self._problem(text, h.start + 11 + i, code))
        return SettingsFrame(
            *h.common(payload), tuple(values), problem=problem, reserved=h.reserved
        )

    def _push_promise(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        i = 0
        pad_length = None
        if h.flags & Flag.PADDED:
            pad_length = payload[0]
            i = 1
            self._padding(h, pad_length, 4)
        promised = _U32.unpack_from(payload, i)[0] & _STREAM_MASK
        if not promised or promised % 2:
            problem = _join(
                problem,
                self._problem(
                    f"PUSH_PROMISE promises stream {promised}: a server-initiated stream has"
                    " an even, non-zero identifier (RFC 9113 §5.1.1, §6.6)",
                    h.start + 9 + i,
                    ErrorCode.PROTOCOL_ERROR,
                ),
            )
        i += 4
        fragment = payload[i : h.length - (pad_length or 0)]
        block = self._field_block(h, fragment, h.start + 9 + i)
        return PushPromiseFrame(
            *h.common(payload), pad_length, promised, fragment,
            block=block, problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _ping(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        return PingFrame(*h.common(payload), payload, problem=problem, reserved=h.reserved)

    def _goaway(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        last, code = _U32X2.unpack_from(payload)
        return GoAwayFrame(
            *h.common(payload), last & _STREAM_MASK, code, payload[8:],
            problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _window_update(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        increment = _U32.unpack_from(payload)[0] & _STREAM_MASK
        if not increment:
            which = "a stream error" if h.stream_id else "a connection error"
            problem = _join(
                problem,
                self._problem(
                    f"WINDOW_UPDATE with increment 0 ({which}; the increment is 1..2^31-1,"
                    " RFC 9113 §6.9)",
                    h.start + 9,
                    ErrorCode.PROTOCOL_ERROR,
                ),
            )
        return WindowUpdateFrame(
            *h.common(payload), increment, problem=problem, reserved=h.reserved
        )

    def _continuation(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        block = self._field_block(h, payload, h.start + 9)
        return ContinuationFrame(
            *h.common(payload), payload, block=block, problem=problem, reserved=h.reserved
        )

    def _unknown(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        return UnknownFrame(*h.common(payload), problem=problem, reserved=h.reserved)


_BUILDERS: Final[dict[int, _Builder]] = {
    FrameType.DATA: FrameDecoder._data,
    FrameType.HEADERS: FrameDecoder._headers,
    FrameType.PRIORITY: FrameDecoder._priority,
    FrameType.RST_STREAM: FrameDecoder._rst_stream,
    FrameType.SETTINGS: FrameDecoder._settings,
    FrameType.PUSH_PROMISE: FrameDecoder._push_promise,
    FrameType.PING: FrameDecoder._ping,
    FrameType.GOAWAY: FrameDecoder._goaway,
    FrameType.WINDOW_UPDATE: FrameDecoder._window_update,
    FrameType.CONTINUATION: FrameDecoder._continuation,
}


def _join(problem: str | None, more: str) -> str:
    return more if problem is None else f"{problem}; {more}"


def _setting_complaint(ident: int, value: int) -> tuple[str, ErrorCode] | None:
    """§6.5.2 (and RFC 8441 §3): the values a setting may not take."""
    if ident in (SettingId.ENABLE_PUSH, SettingId.ENABLE_CONNECT_PROTOCOL) and value > 1:
        return (
            f"{setting_name(ident)}={value}: only 0 or 1 (RFC 9113 §6.5.2)",
            ErrorCode.PROTOCOL_ERROR,
        )
    if ident == SettingId.INITIAL_WINDOW_SIZE and value > MAX_STREAM_ID:
        return (
            f"INITIAL_WINDOW_SIZE={value}: over the largest window, 2^31-1 (RFC 9113 §6.5.2)",
            ErrorCode.FLOW_CONTROL_ERROR,
        )
    if ident == SettingId.MAX_FRAME_SIZE and not (
        DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT
    ):
        return (
            f"MAX_FRAME_SIZE={value}: outside 2^14..2^24-1 (RFC 9113 §6.5.2)",
            ErrorCode.PROTOCOL_ERROR,
        )
    return None


def parse(data: bytes, *, decode_headers: bool = False) -> list[Frame]:
    """Every frame of one direction of a connection, given whole: an optional client
    preface first, then whole frames. Raises :class:`H2FrameError` if anything is invalid
    or the input ends inside a frame.

    The preface is expected when the input starts with ``P``: as a frame header that byte
    would announce a payload over 5 MiB, far past the default maximum frame size.
    """
    decoder = FrameDecoder(data[:1] == PREFACE[:1], decode_headers=decode_headers)
    segments = decoder.feed(data)
    decoder.eof()
    return [s for s in segments if isinstance(s, Frame)]


# --------------------------------------------------------------------------------------
# The encoder. encode_frame writes any header and payload it is given (tests use it to
# build invalid frames); the per-type helpers refuse, with ValueError, anything the
# decoder would refuse or flag, so they never write a frame with a problem of its own.


def encode_frame(type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: the 9-octet header (reserved bit 0) and ``payload``, unchecked beyond what
    the header can hold."""
    if not 0 <= type <= 0xFF:
        raise ValueError(f"frame type {type} does not fit in 8 bits")
    if not 0 <= flags <= 0xFF:
        raise ValueError(f"flags 0x{flags:x} do not fit in 8 bits")
    _check_stream_id(stream_id, "stream_id", allow_zero=True)
    if len(payload) > MAX_FRAME_SIZE_LIMIT:
        raise ValueError(
            f"payload of {len(payload)} bytes: the 24-bit Length holds at most"
            f" {MAX_FRAME_SIZE_LIMIT} (MAX_FRAME_SIZE_LIMIT)"
        )
    return _HEADER.pack(len(payload) << 8 | type, flags, stream_id) + payload


def _check_stream_id(stream_id: int, what: str, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not low <= stream_id <= MAX_STREAM_ID:
        raise ValueError(f"{what} {stream_id} is not in {low}..2^31-1")


def _pad(pad_length: int | None, body: bytes) -> tuple[int, bytes]:
    """(PADDED flag, payload) for ``body`` with ``pad_length`` octets of zero padding."""
    if pad_length is None:
        return 0, body
    if not 0 <= pad_length <= 0xFF:
        raise ValueError(f"pad_length {pad_length} is not in 0..255")
    return Flag.PADDED, bytes((pad_length,)) + body + bytes(pad_length)


def preface() -> bytes:
    """The client connection preface (§3.4)."""
    return PREFACE


def data(
    stream_id: int, data: bytes = b"", *, end_stream: bool = False, pad_length: int | None = None
) -> bytes:
    """A DATA frame (§6.1)."""
    _check_stream_id(stream_id, "DATA stream_id")
    padded, payload = _pad(pad_length, data)
    return encode_frame(
        FrameType.DATA, padded | (Flag.END_STREAM if end_stream else 0), stream_id, payload
    )


def _priority_fields(stream_id: int, depends_on: int, weight: int, exclusive: bool) -> bytes:
    _check_stream_id(depends_on, "depends_on", allow_zero=True)
    if depends_on == stream_id:
        raise ValueError(f"stream {stream_id} cannot depend on itself")
    if not 0 <= weight <= 0xFF:
        raise ValueError(f"weight {weight} is not in 0..255 (the wire value: weight - 1)")
    return _U32.pack(depends_on | (0x80000000 if exclusive else 0)) + bytes((weight,))


def headers(
    stream_id: int,
    block: bytes,
    *,
    end_stream: bool = False,
    end_headers: bool = True,
    pad_length: int | None = None,
    depends_on: int | None = None,
    weight: int = 15,
    exclusive: bool = False,
) -> bytes:
    """A HEADERS frame (§6.2) carrying ``block`` (a field block or its first fragment).
    Priority fields are written when ``depends_on`` is given; ``weight`` is the wire value
    (15 means 16, the default weight)."""
    _check_stream_id(stream_id, "HEADERS stream_id")
    flags = (Flag.END_STREAM if end_stream else 0) | (Flag.END_HEADERS if end_headers else 0)
    body = block
    if depends_on is not None:
        flags |= Flag.PRIORITY
        body = _priority_fields(stream_id, depends_on, weight, exclusive) + block
    padded, payload = _pad(pad_length, body)
    return encode_frame(FrameType.HEADERS, flags | padded, stream_id, payload)


def priority(
    stream_id: int, depends_on: int, weight: int = 15, *, exclusive: bool = False
) -> bytes:
    """A PRIORITY frame (§6.3; deprecated, but still on the wire)."""
    _check_stream_id(stream_id, "PRIORITY stream_id")
    return encode_frame(
        FrameType.PRIORITY, 0, stream_id, _priority_fields(stream_id, depends_on, weight, exclusive)
    )


def _check_u32(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} {value} does not fit in 32 bits")


def rst_stream(stream_id: int, error_code: int) -> bytes:
    """A RST_STREAM frame (§6.4)."""
    _check_stream_id(stream_id, "RST_STREAM stream_id")
    _check_u32(error_code, "error code")
    return encode_frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(error_code))


def settings(
    values: Mapping[int, int] | Mapping[SettingId, int] | Iterable[tuple[int, int]] = (),
    *,
    ack: bool = False,
) -> bytes:
    """A SETTINGS frame (§6.5): (identifier, value) pairs in order, or the empty ACK."""
    items = list(values.items() if isinstance(values, Mapping) else values)
    if ack and items:
        raise ValueError("a SETTINGS ACK carries no settings (RFC 9113 §6.5)")
    parts = []
    for ident, value in items:
        if not 0 <= ident <= 0xFFFF:
            raise ValueError(f"setting identifier {ident} does not fit in 16 bits")
        _check_u32(value, f"{setting_name(ident)} value")
        complaint = _setting_complaint(ident, value)
        if complaint is not None:
            raise ValueError(complaint[0])
        parts.append(_SETTING.pack(ident, value))
    return encode_frame(FrameType.SETTINGS, Flag.ACK if ack else 0, 0, b"".join(parts))


def push_promise(
    stream_id: int,
    promised_stream_id: int,
    block: bytes,
    *,
    end_headers: bool = True,
    pad_length: int | None = None,
) -> bytes:
    """A PUSH_PROMISE frame (§6.6); the promised stream is even (server-initiated)."""
    _check_stream_id(stream_id, "PUSH_PROMISE stream_id")
    _check_stream_id(promised_stream_id, "promised_stream_id")
    if promised_stream_id % 2:
        raise ValueError(f"promised stream {promised_stream_id} is odd: pushed streams are even")
    padded, payload = _pad(pad_length, _U32.pack(promised_stream_id) + block)
    flags = padded | (Flag.END_HEADERS if end_headers else 0)
    return encode_frame(FrameType.PUSH_PROMISE, flags, stream_id, payload)


def ping(opaque_data: bytes = bytes(8), *, ack: bool = False) -> bytes:
    """A PING frame (§6.7) with exactly 8 octets of opaque data."""
    if len(opaque_data) != 8:
        raise ValueError(f"PING opaque data is 8 octets, not {len(opaque_data)}")
    return encode_frame(FrameType.PING, Flag.ACK if ack else 0, 0, opaque_data)


def goaway(
    last_stream_id: int, error_code: int = ErrorCode.NO_ERROR, debug_data: bytes = b""
) -> bytes:
    """A GOAWAY frame (§6.8)."""
    _check_stream_id(last_stream_id, "last_stream_id", allow_zero=True)
    _check_u32(error_code, "error code")
    return encode_frame(
        FrameType.GOAWAY, 0, 0, struct.pack(">II", last_stream_id, error_code) + debug_data
    )


def window_update(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame (§6.9) for a stream, or for the connection (stream 0)."""
    _check_stream_id(stream_id, "WINDOW_UPDATE stream_id", allow_zero=True)
    if not 1 <= increment <= MAX_STREAM_ID:
        raise ValueError(f"window increment {increment} is not in 1..2^31-1 (RFC 9113 §6.9)")
    return encode_frame(FrameType.WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def continuation(stream_id: int, block: bytes, *, end_headers: bool = True) -> bytes:
    """A CONTINUATION frame (§6.10) with the next fragment of a field block."""
    _check_stream_id(stream_id, "CONTINUATION stream_id")
    return encode_frame(
        FrameType.CONTINUATION, Flag.END_HEADERS if end_headers else 0, stream_id, block
    )
