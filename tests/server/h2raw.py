"""HTTP/2 by hand: frames built as bytes, everything the server sends parsed by hyperframe.

The conformance tests speak to the server the way h2's own tests speak to h2: exact frames
in, exact frames out. Frames are built here from their RFC 9113 §4.1 layout (or by
hyperframe, an independent codec), header blocks by hpack; what the server sends is parsed
with hyperframe and must be a whole sequence of frames: a frame cut in the middle fails
the test.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Final

import hpack
import trio
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from lab.attacks import wire
from lab.server import Server
from tests.server.helpers import WAIT
from tests.server.peers import Conn, connect

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types (RFC 9113 §6) and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION: Final = 9
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xA, 0xB
# SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441 §3).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x1, 0x2, 0x3, 0x4
MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, ENABLE_CONNECT_PROTOCOL = 0x5, 0x6, 0x8


def frame(kind: int, flags: int = 0, stream_id: int = 0, payload: bytes = b"") -> bytes:
    """One frame: Length(24) Type(8) Flags(8) R(1) Stream Identifier(31), payload (§4.1)."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def settings(*pairs: tuple[int, int], ack: bool = False) -> bytes:
    payload = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs)
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def ping(opaque: bytes = b"\0" * 8, *, ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, opaque)


def data(stream_id: int, payload: bytes = b"", *, end_stream: bool = False) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def goaway(last_stream_id: int = 0, code: int = NO_ERROR, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big") + debug)


def priority(stream_id: int, depends_on: int = 0, weight: int = 16) -> bytes:
    return frame(PRIORITY, 0, stream_id, depends_on.to_bytes(4, "big") + bytes([weight - 1]))


def request_fields(
    path: str, method: str = "GET", extra: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    fields = [(":method", method), (":path", path), (":scheme", "http"),
              (":authority", "127.0.0.1")]  # fmt: skip
    return fields + (extra or [])


def client_start(*pairs: tuple[int, int]) -> bytes:
    """The client preface and the client's SETTINGS (RFC 9113 §3.4)."""
    return PREFACE + settings(*pairs)


@dataclass
class Client:
    """The client's side: an HPACK encoder and decoder, kept in step with the server."""

    encoder: hpack.Encoder = field(default_factory=hpack.Encoder)
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)

    def headers(
        self, stream_id: int, fields: list[tuple[str, str]], *, end_stream: bool = True
    ) -> bytes:
        block = self.encoder.encode(fields)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream_id, block)

    def get(self, stream_id: int, path: str) -> bytes:
        return self.headers(stream_id, request_fields(path))

    def decode(self, frame: HeadersFrame) -> dict[str, str]:
        """The fields of a HEADERS frame the server sent (every one, in order)."""
        return {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in self.decoder.decode(bytes(frame.data), raw=True)
        }


def split_frames(raw: bytes, *, whole: bool = True) -> list[Frame]:
    """Every frame in ``raw`` (hyperframe's parser); with ``whole``, ``raw`` must end
    exactly at a frame boundary."""
    frames, left = wire.split_frames(raw)
    if whole:
        assert not left, f"{left} bytes of a partial frame after {len(frames)} frames"
    return frames


def describe(f: Frame) -> tuple[Any, ...]:
    """A frame as a comparable tuple: its type, its stream and what matters of its payload.

    HEADERS bodies depend on HPACK state and the date, DATA bodies on the endpoint, so
    those are described by flags and length; GOAWAY leaves out its debug data.
    """
    flags = frozenset(f.flags)
    if isinstance(f, SettingsFrame):
        return ("SETTINGS", "ACK" in flags, dict(f.settings))
    if isinstance(f, PingFrame):
        return ("PING", "ACK" in flags, bytes(f.opaque_data))
    if isinstance(f, GoAwayFrame):
        return ("GOAWAY", f.last_stream_id, f.error_code)
    if isinstance(f, RstStreamFrame):
        return ("RST_STREAM", f.stream_id, f.error_code)
    if isinstance(f, WindowUpdateFrame):
        return ("WINDOW_UPDATE", f.stream_id, f.window_increment)
    if isinstance(f, HeadersFrame):
        return ("HEADERS", f.stream_id, "END_STREAM" in flags)
    if isinstance(f, DataFrame):
        return ("DATA", f.stream_id, len(f.data), "END_STREAM" in flags)
    return (type(f).__name__, f.stream_id, sorted(flags))


def server_settings(
    max_head_size: int, max_concurrent_streams: int
) -> tuple[str, bool, dict[int, int]]:
    """What the lab's server announces in its first SETTINGS frame."""
    return ("SETTINGS", False, {
        HEADER_TABLE_SIZE: 4096, ENABLE_PUSH: 0, INITIAL_WINDOW_SIZE: 65535,
        MAX_FRAME_SIZE: 16384, ENABLE_CONNECT_PROTOCOL: 1,
        MAX_HEADER_LIST_SIZE: max_head_size, MAX_CONCURRENT_STREAMS: max_concurrent_streams,
    })  # fmt: skip


SETTINGS_ACK: Final = ("SETTINGS", True, {})


class RawH2:
    """One connection on which the test writes bytes and reads frames."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.raw = bytearray()  # every byte the server sent
        self.closed = False  # the server closed its write side (EOF read)
        self.client = Client()
        self._pings = 0

    @classmethod
    async def open(cls, server: Server, protocol: str, start: bytes = b"") -> RawH2:
        raw = cls(await connect(server, protocol))
        if start:
            await raw.send(start)
        return raw

    async def send(self, *chunks: bytes) -> None:
        """Everything in one write."""
        await self.conn.send(b"".join(chunks))

    async def sync(self) -> None:
        """Send a PING and wait for its ACK: the server has processed everything before
        it (RFC 9113 §6.7: a PING is answered in order with the frames around it)."""
        self._pings += 1
        opaque = b"sync" + self._pings.to_bytes(4, "big")
        await self.send(ping(opaque))
        await self.until_frame(lambda d: d == ("PING", True, opaque))

    async def send_quietly(self, *chunks: bytes) -> None:
        """Send, ignoring a server that has already closed."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.send(*chunks)

    @property
    def frames(self) -> list[Frame]:
        """Whole frames received so far (a partial frame at the end is still arriving)."""
        return split_frames(bytes(self.raw), whole=False)

    def described(self) -> list[tuple[Any, ...]]:
        return [describe(f) for f in self.frames]

    async def _read(self) -> bool:
        try:
            chunk = await self.conn.stream.receive_some(65536)
        except trio.BrokenResourceError:
            chunk = b""  # a TCP reset: counts as a close, but see read_until_close
        if not chunk:
            self.closed = True
            return False
        self.raw += chunk
        return True

    async def until(self, done: Any, within: float = WAIT) -> list[Frame]:
        """Read until ``done(frames)`` holds; the frames read so far."""
        with trio.fail_after(within):
            while not done(self.frames):
                assert await self._read(), f"closed early after {self.described()}"
        return self.frames

    async def until_frame(self, match: Any, within: float = WAIT) -> Frame:
        """Read until a frame whose description ``match(tuple)`` accepts; that frame."""
        frames = await self.until(lambda fs: any(match(describe(f)) for f in fs), within)
        return next(f for f in frames if match(describe(f)))

    async def until_ended(self, stream_id: int, within: float = WAIT) -> list[Frame]:
        """Read until ``stream_id`` ends (END_STREAM or RST_STREAM from the server)."""
        return await self.until(lambda fs: any(ends(stream_id, describe(f)) for f in fs), within)

    async def until_close(self, within: float = WAIT) -> list[Frame]:
        """Read until the server closes; every frame, which must be whole."""
        with trio.fail_after(within):
            while await self._read():
                pass
        return split_frames(bytes(self.raw))

    async def clean_close(self, within: float = WAIT) -> list[Frame]:
        """Like until_close, but the close must be orderly: FIN, or close_notify over TLS
        (trio raises BrokenResourceError for a TLS connection cut without it)."""
        with trio.fail_after(within):
            while chunk := await self.conn.stream.receive_some(65536):
                self.raw += chunk
        self.closed = True
        return split_frames(bytes(self.raw))

    async def silent_for(self, seconds: float) -> list[Frame]:
        """Read for ``seconds``; the frames that arrived meanwhile (the server stays open)."""
        before = len(self.frames)
        with trio.move_on_after(seconds):
            while await self._read():
                pass
        assert not self.closed, "the server closed"
        return self.frames[before:]


def ends(stream_id: int, described: tuple[Any, ...]) -> bool:
    """Whether a described frame ends ``stream_id`` (END_STREAM or RST_STREAM)."""
    kind, sid = described[0], described[1]
    if sid != stream_id:
        return False
    return kind == "RST_STREAM" or (kind in ("DATA", "HEADERS") and described[-1] is True)


def goaways(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]
