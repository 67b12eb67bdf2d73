"""HTTP/2 frames written (RFC 9113 §4.1, §6): :func:`encode_frame` for any header and
payload, and one helper per frame type (:func:`data`, :func:`headers`, ...
:func:`continuation`) that writes only frames the decoder takes without a problem.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from lab.wire.h2constants import (
    _HEADER,
    _SETTING,
    _U32,
    MAX_FRAME_SIZE_LIMIT,
    MAX_STREAM_ID,
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    SettingId,
    _setting_complaint,
    setting_name,
)

__all__ = [
    "continuation",
    "data",
    "data_frame_header",
    "encode_frame",
    "goaway",
    "headers",
    "ping",
    "preface",
    "priority",
    "push_promise",
    "rst_stream",
    "settings",
    "window_update",
]


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


def data_frame_header(stream_id: int, length: int) -> bytes:
    """The 9-octet header of a DATA frame (§6.1) with no flags, unchecked: for a sender that
    has already checked ``length`` against the frame size and the windows, and the stream."""
    return _HEADER.pack(length << 8, 0, stream_id)


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
