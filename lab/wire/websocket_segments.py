"""What a WebSocket byte stream (RFC 6455 §5) decodes into: the constants, the error, the
messages and the frame segment.

- :class:`Opcode` (§5.2, §11.8) and :class:`CloseCode` (§7.4.1, §11.7), with their names
  and what each means, and which close codes a Close frame may carry (§7.4.2);
- :class:`WebSocketError`, the :class:`~lab.wire.errors.ProtocolError` that also carries
  the close code RFC 6455 names for the failure (§7.4.1: 1002, 1007, 1009);
- :class:`Message`, what an application receives: a whole text or binary message, or a
  ping, pong or close (the counterpart of SSE's ``Event``);
- :class:`WebSocketFrame`, one whole frame as a segment, with every header field decoded
  and the payload both as on the wire (masked) and unmasked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Final, Literal

from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

__all__ = [
    "MAX_CONTROL_PAYLOAD",
    "MAX_MESSAGE_SIZE",
    "NOTE_DATA_CHARS",
    "CloseCode",
    "Message",
    "MessageType",
    "Opcode",
    "Role",
    "WebSocketError",
    "WebSocketFrame",
    "close_code_meaning",
    "close_code_name",
    "close_code_problem",
    "is_control",
    "opcode_meaning",
    "opcode_name",
]

# --------------------------------------------------------------------------------------
# Limits

# §5.5: "All control frames MUST have a payload length of 125 bytes or less". A protocol
# rule, not a choice: it is what the 7-bit length can say without an extended length.
MAX_CONTROL_PAYLOAD: Final = 125

# The largest message the decoder reassembles, and so the largest frame payload it holds
# (a frame is part of one message). RFC 6455 sets no limit (§10.4 asks implementations to
# set their own) and the 64-bit length allows 2^63-1 bytes. Chat and MCP messages are a
# few kilobytes; a text message carrying a base64 image is a few megabytes. 16 MiB takes
# those and still refuses a frame announcing 2^62 bytes from its header alone, with close
# code 1009 (message too big, §7.4.1), before a byte of its payload is held.
MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024

# Notes quote a payload up to this many characters, then "..."; the bytes are in view.
NOTE_DATA_CHARS: Final = 60

Role = Literal["client", "server"]
MessageType = Literal["text", "binary", "ping", "pong", "close"]


# --------------------------------------------------------------------------------------
# Opcodes (§5.2, §11.8)


class Opcode(IntEnum):
    """The 4-bit opcode (§5.2). 0x3-0x7 are reserved for further non-control frames,
    0xB-0xF for further control frames; a frame with a reserved opcode is refused."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


_OPCODE_MEANING: Final[Mapping[int, str]] = {
    Opcode.CONTINUATION: "the next fragment of the message in progress (§5.4)",
    Opcode.TEXT: "a text message: UTF-8 (§5.6)",
    Opcode.BINARY: "a binary message: any octets (§5.6)",
    Opcode.CLOSE: "the closing handshake: a close code and reason may follow (§5.5.1)",
    Opcode.PING: "a ping: the receiver answers with a Pong carrying the same data (§5.5.2)",
    Opcode.PONG: "a pong: the answer to a Ping, or a unidirectional heartbeat (§5.5.3)",
}


def opcode_name(opcode: int) -> str:
    """``"TEXT"`` ... ``"PONG"``, or ``"RESERVED(0x3)"``."""
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"RESERVED(0x{opcode:x})"


def opcode_meaning(opcode: int) -> str:
    """What a frame with this opcode is, in words, citing its section."""
    if opcode in _OPCODE_MEANING:
        return _OPCODE_MEANING[opcode]
    kind = "control" if opcode & 0x8 else "non-control"
    return f"reserved for further {kind} frames: refused (§5.2)"


def is_control(opcode: int) -> bool:
    """Control frames have the high bit of the opcode set (§5.5)."""
    return bool(opcode & 0x8)


# --------------------------------------------------------------------------------------
# Close codes (§7.4)


class CloseCode(IntEnum):
    """Close codes: §7.4.1 defines 1000-1011 and 1015, and the IANA registry §11.7 set up
    holds 1012-1014 as well. 1004 is reserved; 1005, 1006 and 1015 are for reporting
    only and never sent in a Close frame."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RECEIVED = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


_CLOSE_MEANING: Final[Mapping[int, str]] = {
    1000: "normal closure: the purpose of the connection was fulfilled",
    1001: "going away: a server going down, a browser leaving the page",
    1002: "protocol error",
    1003: "unsupported data: a type of data the endpoint cannot accept",
    1005: "no status received: reported when a Close frame had no code; never sent",
    1006: "abnormal closure: the connection closed without a Close frame; never sent",
    1007: "invalid frame payload data: data not consistent with its message type",
    1008: "policy violation",
    1009: "message too big to process",
    1010: "mandatory extension: the client expected the server to negotiate an extension",
    1011: "internal error: the server met an unexpected condition",
    1012: "service restart (IANA registry, §11.7)",
    1013: "try again later (IANA registry, §11.7)",
    1014: "bad gateway (IANA registry, §11.7)",
    1015: "TLS handshake failure; never sent",
}

# §7.4.1: "MUST NOT be set as a status code in a Close control frame by an endpoint".
_NEVER_SENT: Final = frozenset({1005, 1006, 1015})


def close_code_name(code: int) -> str:
    """``"NORMAL_CLOSURE"`` ..., or the range a code without a name belongs to (§7.4.2)."""
    try:
        return CloseCode(code).name
    except ValueError:
        pass
    if 3000 <= code <= 3999:
        return "REGISTERED"
    if 4000 <= code <= 4999:
        return "PRIVATE"
    return "RESERVED" if 1000 <= code <= 2999 else "INVALID"


def close_code_meaning(code: int) -> str:
    """What a close code says, in words, citing §7.4.1 or §7.4.2."""
    if code in _CLOSE_MEANING:
        return f"{_CLOSE_MEANING[code]} (§7.4.1)"
    if 3000 <= code <= 3999:
        return "for libraries and frameworks, registered with IANA (§7.4.2)"
    if 4000 <= code <= 4999:
        return "private use, by agreement between the endpoints (§7.4.2)"
    if 1000 <= code <= 2999:
        return "reserved for this protocol and its extensions, not defined (§7.4.2)"
    return "outside every range §7.4.2 defines"


def close_code_problem(code: int) -> str | None:
    """Why a Close frame may not carry ``code`` (§7.4.1, §7.4.2), or None if it may."""
    if code in _NEVER_SENT:
        return f"close code {code} ({close_code_name(code)}) is never sent in a Close frame"
    if code < 1000 or code > 4999:
        return f"close code {code} is outside 1000-4999 (§7.4.2: 0-999 are not used)"
    if code <= 2999 and code not in _CLOSE_MEANING:
        return f"close code {code} is reserved and not defined (§7.4.2)"
    return None


# --------------------------------------------------------------------------------------
# The error


class WebSocketError(ProtocolError):
    """Input the decoder refuses, at byte ``offset``.

    ``close_code`` is what RFC 6455 says the receiving endpoint fails the connection with
    (§7.1.7, §7.4.1): 1002 for a protocol error, 1007 for data not consistent with its
    type (invalid UTF-8), 1009 for a message over the decoder's limit; and 1006 when the
    input ended inside a frame (nothing is sent then: the connection is already gone).
    ``segments`` (from :class:`ProtocolError`) holds what the failing call had completed.
    """

    def __init__(
        self,
        message: str,
        offset: int,
        *,
        close_code: int = CloseCode.PROTOCOL_ERROR,
        status_hint: int = 400,
        segments: Sequence[Segment] = (),
    ) -> None:
        super().__init__(message, offset, status_hint=status_hint, segments=segments)
        self.close_code = int(close_code)

    @property
    def close_name(self) -> str:
        return close_code_name(self.close_code)


def _error(text: str, offset: int, code: int = CloseCode.PROTOCOL_ERROR) -> WebSocketError:
    return WebSocketError(
        f"{text}: close code {code} {close_code_name(code)}", offset, close_code=code
    )


# --------------------------------------------------------------------------------------
# Messages and frames


def _shorten(data: str | bytes) -> str:
    """A payload for a note: repr-quoted, cut to NOTE_DATA_CHARS characters."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace") if _printable(data) else data.hex()
    if len(data) > NOTE_DATA_CHARS:
        return repr(data[:NOTE_DATA_CHARS]) + "..."
    return repr(data)


def _printable(data: bytes) -> bool:
    try:
        return data.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        return False


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True, slots=True)
class Message:
    """What the receiving application gets (§6.2): a whole message or a control frame.

    ``type`` is ``"text"`` or ``"binary"`` for a data message (reassembled from its
    fragments), ``"ping"``, ``"pong"`` or ``"close"`` for a control frame. ``data`` is a
    ``str`` for a text message and ``bytes`` otherwise (the Close frame's whole payload,
    for a close); a text message transformed by a negotiated extension (RSV bits set)
    stays ``bytes``, as the decoder does not undo extensions. ``code`` and ``reason`` are a
    Close frame's: ``code`` is None when the frame had no body (an endpoint then reports
    1005, §7.1.5).
    """

    type: MessageType
    data: str | bytes
    code: int | None = None
    reason: str = ""

    def note(self) -> str:
        if self.type == "close":
            if self.code is None:
                return "close, no code (reported as 1005 NO_STATUS_RECEIVED, §7.1.5)"
            text = f"close {self.code} {close_code_name(self.code)}"
            return text + (f", reason {_shorten(self.reason)}" if self.reason else "")
        size = _plural(len(self.data), _unit(self.data))
        what = f"{self.type} message" if self.type in ("text", "binary") else self.type
        return f"{what}, {size}: {_shorten(self.data)}"


def _unit(data: str | bytes) -> str:
    return "character" if isinstance(data, str) else "byte"


@dataclass(frozen=True, slots=True)
class WebSocketFrame(Segment):
    """One whole frame (§5.2): ``start``/``end`` cover its header and payload.

    ``fin``, ``rsv`` (RSV1 RSV2 RSV3 as a 3-bit number, RSV1 the high bit), ``opcode`` and
    ``masked`` are the header's bits; ``length`` is the payload length and
    ``length_octets`` how many octets of extended length carried it (0: the 7-bit field
    alone; 2: the 16-bit form after 126; 8: the 64-bit form after 127). ``mask_key`` is
    the masking key or None. ``payload`` is the payload as on the wire (masked, when
    ``masked``) and ``data`` the payload unmasked.

    What the frame is in its message: ``message_type`` is ``"text"`` or ``"binary"`` for
    a data frame (for a CONTINUATION, the type of the message it continues), ``fragment``
    its 1-based place in that message (0 for a control frame). ``message`` is the
    :class:`Message` this frame completes: set on a data frame with FIN and on every
    control frame. ``interleaved`` marks a control frame between the fragments of a
    message (§5.4), ``after_close`` a control frame after the peer's Close frame (§1.4:
    the receiver discards it).
    """

    fin: bool = field()
    rsv: int
    opcode: int
    masked: bool
    length: int
    length_octets: int
    mask_key: bytes | None
    payload: bytes
    data: bytes
    message_type: Literal["text", "binary"] | None = None
    fragment: int = 0
    message: Message | None = None
    interleaved: bool = False
    after_close: bool = False

    kind: ClassVar[str] = "ws-frame"
    binary: ClassVar[bool] = True

    @property
    def opcode_name(self) -> str:
        return opcode_name(self.opcode)

    @property
    def is_control(self) -> bool:
        return is_control(self.opcode)

    @property
    def header_size(self) -> int:
        """2 octets, the extended length, and the 4-octet masking key if masked."""
        return 2 + self.length_octets + (4 if self.masked else 0)

    @property
    def payload_start(self) -> int:
        """Absolute offset of the first payload byte: the header is ``[start,
        payload_start)``, the payload ``[payload_start, end)``."""
        return self.start + self.header_size

    def note(self) -> str:
        flags = [name for on, name in ((self.fin, "FIN"), (self.masked, "MASK")) if on]
        flags += [f"RSV{i + 1}" for i in range(3) if self.rsv & (4 >> i)]
        text = self.opcode_name + (f" [{', '.join(flags)}]" if flags else "")
        text += f" {_plural(self.length, 'byte')}"
        if self.is_control:
            if self.opcode == Opcode.CLOSE and self.message is not None:
                text += ": " + self.message.note()
            elif self.data:
                text += f": {_shorten(self.data)}"
            if self.interleaved:
                text += "; between the fragments of a message (§5.4)"
            if self.after_close:
                text += "; after the Close frame: the receiver discards it (§1.4)"
            return text
        kind = self.message_type or "data"
        if self.fragment == 1 and not self.fin:
            text += f", first fragment of a {kind} message"
        elif self.fin and self.fragment > 1:
            text += f", fragment {self.fragment}, the last, of a {kind} message"
        elif not self.fin:
            text += f", fragment {self.fragment} of a {kind} message"
        if self.message is not None:
            text += ": " + self.message.note()
        elif self.data:
            text += f": {_shorten(self.data)}"
        return text
