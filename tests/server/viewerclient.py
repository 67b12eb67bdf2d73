"""For tests of the live wire viewer: a lab server with its live feed, a feed reader that is
not a browser, and a token stream the test holds open.

:class:`FeedReader` reads ``GET /lab/events`` on a raw connection with an h11 client and
decodes the body with the lab's own SSE decoder. :func:`held_tokens` wraps an app so that
the second ``send`` of a ``/tokens`` response waits for an event the test sets: the stream
is then provably still running while the test looks at what the viewer shows of it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import trio

from lab.apps import Handler, Request, ResponseStream
from lab.apps import app as lab_app
from lab.server import Limits, Server
from lab.server.interface import Headers
from lab.wire.sse import SSEDecoder
from lab.wire.sse_segments import Dispatch, Event
from tests.server.helpers import WAIT, H11Client

__all__ = ["FeedReader", "held_tokens", "viewer_server"]


@asynccontextmanager
async def viewer_server(
    app: Handler = lab_app, limits: Limits | None = None, trace_dir: Path | None = None
) -> AsyncIterator[Server]:
    """A lab server on 127.0.0.1 port 0 with its live feed on."""
    server = Server(app, limits=limits, trace_dir=trace_dir, viewer=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


class FeedReader:
    """``GET /lab/events`` from a client that is not a browser."""

    def __init__(self, client: H11Client, status: int) -> None:
        self.client = client
        self.status = status
        self.decoder = SSEDecoder()
        self.pending: deque[Event] = deque()
        self.ended = False

    @classmethod
    async def open(cls, server: Server, last_event_id: str | None = None) -> FeedReader:
        client = await H11Client.connect(server)
        headers = [("last-event-id", last_event_id)] if last_event_id is not None else []
        await client.get("/lab/events", headers)
        head = await client.next_event()
        assert isinstance(head, h11.Response), head
        return cls(client, head.status_code)

    async def next(self) -> Event:
        """The next event the page would get (bounded wait); EOFError once the stream ends."""
        with trio.fail_after(WAIT):
            while not self.pending:
                if self.ended:
                    raise EOFError("the feed's response ended")
                event = await self.client.next_event()
                if isinstance(event, h11.Data):
                    for seg in self.decoder.feed(bytes(event.data)):
                        if isinstance(seg, Dispatch) and seg.event is not None:
                            self.pending.append(seg.event)
                elif isinstance(event, h11.EndOfMessage):
                    self.ended = True
        return self.pending.popleft()

    async def until(self, done: Callable[[Event], bool]) -> list[Event]:
        """Events up to and including the first for which ``done`` is true."""
        events = [await self.next()]
        while not done(events[-1]):
            events.append(await self.next())
        return events


def data(event: Event) -> Any:
    return json.loads(event.data)


def held_tokens(gate: trio.Event, app: Handler = lab_app) -> Handler:
    """``app``, with each ``/tokens`` response held after its first token until ``gate``."""

    async def handler(request: Request, response: ResponseStream) -> None:
        if request.path == "/tokens":
            response = _Held(response, gate)
        await app(request, response)

    return handler


class _Held:
    def __init__(self, response: ResponseStream, gate: trio.Event) -> None:
        self._response = response
        self._gate = gate
        self._sent = 0

    async def start(self, status: int, headers: Headers = ()) -> None:
        await self._response.start(status, headers)

    async def send(self, data: bytes) -> None:
        if self._sent:
            await self._gate.wait()
        self._sent += 1
        await self._response.send(data)

    async def end(self, trailers: Headers = ()) -> None:
        await self._response.end(trailers)
