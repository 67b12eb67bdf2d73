"""WebSocket frames written (RFC 6455 §5.2): :func:`encode_frame` for any header and payload,
one helper per frame type (:func:`text`, :func:`binary`, :func:`continuation`,
:func:`ping`, :func:`pong`, :func:`close`), :func:`message` for a whole message in
fragments, and masking (:func:`mask`, :func:`random_mask_key`, §5.3).

Every frame is written with the minimal payload length encoding (§5.2). A client masks
every frame it sends and a server none (§5.1): pass ``mask_key`` (4 octets) for a client's
frame, a fresh :func:`random_mask_key` each time, as §5.3 asks. :func:`encode_frame` writes
whatever header it is given (tests build invalid frames with it); the helpers refuse, with
ValueError, what a receiver would refuse, so what they write decodes without an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from lab.wire.websocket_segments import (
    MAX_CONTROL_PAYLOAD,
    Opcode,
    close_code_problem,
)

__all__ = [
    "binary",
    "close",
    "continuation",
    "encode_frame",
    "mask",
    "message",
    "ping",
    "pong",
    "random_mask_key",
    "text",
]

# The largest payload length the 64-bit form may hold: its most significant bit is 0 (§5.2).
MAX_PAYLOAD_LENGTH = (1 << 63) - 1


def mask(data: bytes, key: bytes) -> bytes:
    """``data`` XORed with ``key``: octet i with key octet i mod 4 (§5.3). The same
    operation masks and unmasks."""
    if len(key) != 4:
        raise ValueError(f"a masking key is 4 octets, not {len(key)}")
    n = len(data)
    if not n:
        return b""
    stream = key * (n // 4 + 1)
    value = int.from_bytes(data, "big") ^ int.from_bytes(stream[:n], "big")
    return value.to_bytes(n, "big")


def random_mask_key() -> bytes:
    """A fresh masking key from a strong source of entropy, as §5.3 requires: the key of
    one frame must not let a proxy predict the next."""
    return os.urandom(4)


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    mask_key: bytes | None = None,
    rsv: int = 0,
) -> bytes:
    """One frame: FIN, RSV1-3 (``rsv`` as 3 bits, RSV1 = 4), the 4-bit opcode, the MASK
    bit and the minimal payload length, the masking key if any, then the payload (masked
    with ``mask_key`` if given). Nothing is checked beyond what the header can hold."""
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode {opcode} does not fit in 4 bits")
    if not 0 <= rsv <= 7:
        raise ValueError(f"rsv {rsv} does not fit in 3 bits (RSV1 = 4, RSV2 = 2, RSV3 = 1)")
    n = len(payload)
    if n > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload of {n} bytes: the 64-bit length holds at most 2^63-1")
    head = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask_key is not None else 0
    if n <= 125:
        head.append(mask_bit | n)
    elif n <= 0xFFFF:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if mask_key is None:
        return bytes(head) + payload
    return bytes(head) + mask_key + mask(payload, mask_key)


def text(data: str, *, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """A TEXT frame of ``data`` as UTF-8; ``fin=False`` for the first of several
    fragments (:func:`continuation` for the rest)."""
    return encode_frame(Opcode.TEXT, data.encode("utf-8"), fin, mask_key)


def binary(data: bytes, *, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """A BINARY frame of ``data``."""
    return encode_frame(Opcode.BINARY, data, fin, mask_key)


def continuation(data: bytes, *, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """A CONTINUATION frame: the next fragment of the message in progress (§5.4). A text
    message's fragments may split a UTF-8 character; the message as a whole is UTF-8."""
    return encode_frame(Opcode.CONTINUATION, data, fin, mask_key)


def _control(opcode: Opcode, payload: bytes, mask_key: bytes | None) -> bytes:
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError(
            f"{opcode.name} payload of {len(payload)} bytes: a control frame carries at most"
            f" {MAX_CONTROL_PAYLOAD} (§5.5)"
        )
    return encode_frame(opcode, payload, True, mask_key)


def ping(data: bytes = b"", *, mask_key: bytes | None = None) -> bytes:
    """A PING frame (§5.5.2), at most 125 octets of application data."""
    return _control(Opcode.PING, data, mask_key)


def pong(data: bytes = b"", *, mask_key: bytes | None = None) -> bytes:
    """A PONG frame (§5.5.3): in answer to a Ping, the same application data."""
    return _control(Opcode.PONG, data, mask_key)


def close(code: int | None = None, reason: str = "", *, mask_key: bytes | None = None) -> bytes:
    """A CLOSE frame (§5.5.1): no body when ``code`` is None, else the 2-octet close code
    and the UTF-8 ``reason``. Refuses a reason without a code, a code a Close frame may not
    carry (§7.4.1, §7.4.2) and a body over 125 octets."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code before it (§5.5.1)")
        return _control(Opcode.CLOSE, b"", mask_key)
    problem = close_code_problem(code)
    if problem is not None:
        raise ValueError(problem)
    return _control(Opcode.CLOSE, code.to_bytes(2, "big") + reason.encode("utf-8"), mask_key)


def _pieces(payload: bytes, size: int | None) -> Iterator[bytes]:
    if not size or len(payload) <= size:
        yield payload
        return
    for i in range(0, len(payload), size):
        yield payload[i : i + size]


def message(data: str | bytes, *, fragment_size: int | None = None, masked: bool = False) -> bytes:
    """A whole message: TEXT for ``str``, BINARY for ``bytes``, in frames of at most
    ``fragment_size`` octets of payload (the first with the message's opcode, the rest
    CONTINUATION, FIN on the last, §5.4). ``masked=True`` writes a client's frames, each
    with a fresh :func:`random_mask_key`."""
    if fragment_size is not None and fragment_size < 1:
        raise ValueError("fragment_size must be at least 1")
    opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    payload = data.encode("utf-8") if isinstance(data, str) else data
    parts = list(_pieces(payload, fragment_size))
    out = bytearray()
    for i, part in enumerate(parts):
        key = random_mask_key() if masked else None
        op = opcode if i == 0 else Opcode.CONTINUATION
        out += encode_frame(op, part, i == len(parts) - 1, key)
    return bytes(out)
