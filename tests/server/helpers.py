"""A real lab server on 127.0.0.1 port 0, and an independent h11 client to drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
import trio.testing

from lab.apps import Handler
from lab.apps import app as lab_app
from lab.server import Limits, Server, serve_tcp

# Every wait in these tests is bounded: a hang fails the test instead of stalling CI.
WAIT = 10.0
# Client sockets opened during a lab_server block, closed when it ends.
_opened: list[trio.SocketStream] = []


async def connect(server: Server) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    _opened.append(stream)
    return stream


def run(fn: Callable[[], Awaitable[Any]], *, autojump: bool = False) -> Any:
    """trio.run, optionally under a clock that jumps over idle time (for timeouts)."""
    clock = trio.testing.MockClock(autojump_threshold=0) if autojump else None
    return trio.run(fn, clock=clock)


@asynccontextmanager
async def lab_server(app: Handler = lab_app, limits: Limits | None = None) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve_tcp(app, 0, limits=limits, task_status=task_status)
        )
        try:
            yield server
        finally:
            while _opened:
                await _opened.pop().aclose()
            nursery.cancel_scope.cancel()


class H11Client:
    """A plain h11 client on a raw socket: the independent peer the server is tested by."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.raw = bytearray()  # every byte received, for framing assertions

    @classmethod
    async def connect(cls, server: Server) -> H11Client:
        return cls(await connect(server))

    async def send(self, *events: h11.Event) -> None:
        await self.stream.send_all(b"".join(self.conn.send(e) or b"" for e in events))

    async def get(self, target: str, headers: list[tuple[str, str]] | None = None) -> None:
        fields = [("host", "lab"), *(headers or [])]
        await self.send(
            h11.Request(method="GET", target=target, headers=fields), h11.EndOfMessage()
        )

    async def next_event(self) -> h11.Event:
        with trio.fail_after(WAIT):
            while (event := self.conn.next_event()) is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                self.raw += data
                self.conn.receive_data(data)
        assert isinstance(event, h11.Event)
        return event

    async def response(self) -> tuple[h11.Response, list[h11.Data], h11.EndOfMessage]:
        head = await self.next_event()
        assert isinstance(head, h11.Response), head
        data: list[h11.Data] = []
        while isinstance(event := await self.next_event(), h11.Data):
            data.append(event)
        assert isinstance(event, h11.EndOfMessage), event
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return head, data, event


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    """Raw bytes until the server closes."""
    out = bytearray()
    with trio.fail_after(WAIT):
        while data := await stream.receive_some(65536):
            out += data
    return bytes(out)


async def exchange_raw(server: Server, request: bytes) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    stream = await connect(server)
    await stream.send_all(request)
    return await read_all(stream)
