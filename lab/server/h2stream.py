"""One HTTP/2 stream as the server keeps it, and the response stream a handler writes to.

A stream (RFC 9113 §5.1) is accepted when its HEADERS arrive, collects its request body
within the lab's budgets, runs one handler task, and ends when the server sends
END_STREAM or RST_STREAM or the client resets it. :class:`H2Response` maps
:class:`lab.server.interface.ResponseStream` onto HEADERS and DATA frames; the connection
(lab.server.http2) does the sending, within flow control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

import h2.connection
import trio

from lab.server.connection import SERVER_NAME, ConnectionState
from lab.server.interface import Headers

if TYPE_CHECKING:
    from lab.server.websocket import ServerWebSocket

__all__ = ["H2Response", "Stalled", "Stream", "TunnelInbox"]

# Header fields that are HTTP/1.1 connection management; HTTP/2 forbids them
# (RFC 9113 §8.2.2), so they are dropped from what a handler sets.
_CONNECTION_SPECIFIC: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


class Stalled(Exception):
    """A stream's send waited longer than the send timeout for flow-control window."""


class TunnelInbox:
    """The DATA of an extended CONNECT stream (RFC 8441 §4) that its WebSocket has not read.

    Bounded by the stream's flow-control window (RFC 9113 §5.2): the connection gives the
    client credit for the stream's bytes only as they are taken from here.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self.ended = False  # the client sent END_STREAM
        self._ready = trio.Event()

    def put(self, data: bytes) -> None:
        self._data += data
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def take(self) -> bytes:
        """Everything received so far, waiting for some; b"" once the client ended."""
        while not self._data and not self.ended:
            self._ready = trio.Event()
            await self._ready.wait()
        data = bytes(self._data)
        self._data.clear()
        return data


@dataclass(eq=False)
class Stream:
    stream_id: int
    body: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False  # the request (headers + body) is all in
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    window_open: trio.Event = field(default_factory=trio.Event)
    started: bool = False
    ended: bool = False  # the server sent END_STREAM or RST_STREAM, or the client reset it
    running: bool = False  # a handler task runs for it
    body_deadline: float = 0.0  # when a request body that stopped coming times out
    held: int = 0  # request body bytes this stream counts in the connection's budget
    status_override: tuple[int, str] | None = None  # answer this instead of the handler
    head: bool = False  # a HEAD request: the response carries no content (RFC 9110 §9.3.2)
    # An extended CONNECT (RFC 8441 §4): its :protocol, its DATA until the handler reads
    # it, and the WebSocket once the handler accepted one.
    protocol: str = ""
    inbox: TunnelInbox | None = None
    websocket: ServerWebSocket | None = None


class _Owner(Protocol):
    """What a response needs from its connection."""

    state: ConnectionState

    @property
    def conn(self) -> h2.connection.H2Connection: ...

    async def flush(self) -> None: ...

    async def pace(self) -> None: ...

    async def send_data(self, stream: Stream, data: bytes) -> None: ...

    def mark_ended(self, stream: Stream) -> None: ...


class H2Response:
    """:class:`lab.server.interface.ResponseStream` over one HTTP/2 stream."""

    def __init__(self, owner: _Owner, stream: Stream) -> None:
        self._owner = owner
        self._stream = stream

    async def start(self, status: int, headers: Headers = ()) -> None:
        if self._stream.started:
            raise RuntimeError("response already started")
        self._stream.started = True
        fields = [
            (":status", str(status)),
            ("date", self._owner.state.date_source().decode("ascii")),
            ("server", SERVER_NAME.decode("ascii")),
        ]
        fields += [(k.lower(), v) for k, v in headers if k.lower() not in _CONNECTION_SPECIFIC]
        self._owner.conn.send_headers(self._stream.stream_id, fields)
        await self._owner.pace()

    async def send(self, data: bytes) -> None:
        if not self._stream.started or self._stream.websocket is not None:
            raise RuntimeError("send() before start(), or on a WebSocket")
        if data and not self._stream.head:  # a HEAD response has no content (RFC 9110 §9.3.2)
            await self._owner.send_data(self._stream, data)

    async def end(self, trailers: Headers = ()) -> None:
        if self._stream.ended:
            return
        self._owner.mark_ended(self._stream)
        if trailers:
            fields = [(k.lower(), v) for k, v in trailers]
            self._owner.conn.send_headers(self._stream.stream_id, fields, end_stream=True)
        else:
            self._owner.conn.end_stream(self._stream.stream_id)
        await self._owner.flush()
