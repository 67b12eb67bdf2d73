"""The vocabulary of HTTP/2 framing (RFC 9113), shared by the frame segments, the decoder
and the encoder.

Here are the limits (§4.2, §5.1.1) and the client connection preface (§3.4); the registries
of frame types (§6), flags, error codes (§7) and settings (§6.5.2), with their names; what
each frame type requires of its payload size and its stream (§6.1-§6.10); the binary
layout of the frame header (§4.1) and of the fixed payload fields; the values a setting may
take (§6.5.2, RFC 8441 §3); and the helpers that put numbers and bytes into notes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from enum import IntEnum
from typing import Final

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "ERROR_CODE_NAMES",
    "FRAME_FLAGS",
    "FRAME_TYPE_NAMES",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_STREAM_ID",
    "NOTE_VALUE_CHARS",
    "PREFACE",
    "SETTING_NAMES",
    "ErrorCode",
    "Flag",
    "FrameType",
    "SettingId",
    "error_name",
    "setting_name",
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
# What each frame type requires of its size and stream (§6), and what a setting may be

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


# --------------------------------------------------------------------------------------
# Wire layouts

# Length (24) + Type (8) as one 32-bit word, Flags (8), R + Stream Identifier (32).
_HEADER: Final = struct.Struct(">IBI")
_U32: Final = struct.Struct(">I")
_U32X2: Final = struct.Struct(">II")
_SETTING: Final = struct.Struct(">HI")
_STREAM_MASK: Final = 0x7FFFFFFF
