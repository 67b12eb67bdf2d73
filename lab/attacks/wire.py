"""What an attacker sends and what it reads back, in bytes, with every wait bounded."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from typing import Final

import h2.errors
import hpack
import trio
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

__all__ = [
    "PREFACE",
    "h1_request",
    "h1_status",
    "h2_headers",
    "h2_hello",
    "h2_outcomes",
    "open_conn",
    "read_until_close",
    "reset",
    "split_frames",
]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The longest an attacker waits for the server to answer and close.
READ_TIMEOUT: Final = 20.0
# What an attacker keeps of the server's answer (its first bytes say everything).
KEEP: Final = 256 * 1024


async def open_conn(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def read_until_close(
    stream: trio.SocketStream, wait: float = READ_TIMEOUT, keep: int = KEEP
) -> bytes:
    """What the server sends until it closes (or ``wait`` seconds), at most ``keep`` bytes."""
    out = bytearray()
    with trio.move_on_after(wait), contextlib.suppress(trio.BrokenResourceError):
        while data := await stream.receive_some(65536):
            if len(out) < keep:
                out += data[: keep - len(out)]
    return bytes(out)


async def reset(stream: trio.SocketStream) -> None:
    """Leave with a TCP RST (SO_LINGER 0)."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


def h1_request(
    target: str, headers: Iterable[tuple[str, str]] = (), method: str = "GET", body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def h1_status(raw: bytes) -> str:
    """ "HTTP 431" from a response's first line; "closed" if the server said nothing."""
    if not raw:
        return "closed"
    line = raw.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if not line.startswith(b"HTTP/1.1 ") or len(parts) < 2:
        return f"garbled {raw[:40]!r}"
    return f"HTTP {parts[1].decode('ascii', 'replace')}"


def h2_hello(settings: dict[int, int] | None = None) -> bytes:
    frame = SettingsFrame(0)
    for key, value in (settings or {}).items():
        frame.settings[key] = value
    return PREFACE + frame.serialize()


def h2_headers(
    stream_id: int, path: str, *, end_stream: bool = True, end_headers: bool = True,
    extra: Iterable[tuple[str, str]] = (), method: str = "GET",
) -> bytes:  # fmt: skip
    """A HEADERS frame with a literal (never-indexed) HPACK block, so that any number of
    them decode the same whatever came before."""
    fields = [(":method", method), (":path", path), (":scheme", "http"),
              (":authority", "127.0.0.1"), *extra]  # fmt: skip
    block = hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in fields])
    frame = HeadersFrame(stream_id, block)
    if end_stream:
        frame.flags.add("END_STREAM")
    if end_headers:
        frame.flags.add("END_HEADERS")
    return bytes(frame.serialize())


def split_frames(raw: bytes) -> tuple[list[Frame], int]:
    """The whole frames at the start of ``raw``, parsed by hyperframe, and how many bytes
    of a partial frame follow them."""
    frames: list[Frame] = []
    view = memoryview(raw)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            break
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames, len(view)


def h2_outcomes(raw: bytes) -> list[str]:
    """What the server told the client: "GOAWAY <code>", "RST_STREAM <code>" and
    "status NNN" per response, in order; frames are parsed by hyperframe."""
    out: list[str] = []
    decoder = hpack.Decoder()
    decoder.max_header_list_size = 1 << 20
    block = b""
    for frame in split_frames(raw)[0]:
        if isinstance(frame, GoAwayFrame):
            out.append(f"GOAWAY {_code(frame.error_code)}")
        elif isinstance(frame, RstStreamFrame):
            out.append(f"RST_STREAM {_code(frame.error_code)}")
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            block += frame.data
            if "END_HEADERS" in frame.flags:
                fields = dict(decoder.decode(block, raw=True))
                block = b""
                if b":status" in fields:
                    out.append(f"status {fields[b':status'].decode('ascii')}")
        elif isinstance(frame, DataFrame):
            continue
    return out or ["closed"]


def _code(value: int) -> str:
    """An HTTP/2 error code's name (RFC 9113 §7), or its number if unknown."""
    try:
        return h2.errors.ErrorCodes(value).name
    except ValueError:
        return str(value)
