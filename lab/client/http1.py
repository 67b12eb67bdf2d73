"""A raw HTTP/1.1 client on h11 over trio that records everything it sends and receives.

The lab's ``curl -v``: it writes a request on a plain TCP socket, reads the response with
h11, and hands back both the decoded response and the :class:`~lab.capture.trace.Trace`
of the exact bytes. Lower level than an HTTP library on purpose: a connection can carry
several requests, a read can stop after N pieces of body, and a connection can be
dropped mid-response, because the lab's scenarios need all of that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

from lab.capture.tap import Recorder
from lab.capture.trace import Trace

__all__ = [
    "CLIENT_TIMEOUT",
    "ClientConnection",
    "Exchange",
    "Response",
    "fetch",
    "open_connection",
]

# How long the client waits for any one read or write before giving up: long enough for
# the slowest demo stream (intervals are capped at 10 s), short enough not to hang a test.
CLIENT_TIMEOUT: Final = 30.0
# Bytes asked of the socket per receive.
RECEIVE_SIZE: Final = 64 * 1024
# The client reads whole response heads of at most this size (h11's default).
MAX_HEAD_SIZE: Final = 16 * 1024
USER_AGENT: Final = "streamlab-client/0.1"


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = False  # the whole message arrived (last chunk / Content-Length)
    # (trace time, bytes) for each piece of body h11 handed over, in order. A piece is what
    # one read made available, so it is neither a chunk nor a token by itself.
    pieces: list[tuple[float, bytes]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(slots=True)
class Exchange:
    response: Response
    trace: Trace


class ClientConnection:
    def __init__(self, stream: trio.abc.HalfCloseableStream, host: str, recorder: Recorder) -> None:
        self._stream = stream
        self._host = host
        self._recorder = recorder
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)

    @property
    def trace(self) -> Trace:
        return self._recorder.trace

    async def send_request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        fields = [("host", self._host), ("user-agent", USER_AGENT), *headers]
        names = {k.lower() for k, _ in fields}
        if body and "content-length" not in names and "transfer-encoding" not in names:
            fields.append(("content-length", str(len(body))))
        data = self._h11.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            data += self._h11.send(h11.Data(data=body))
        data += self._h11.send(h11.EndOfMessage())
        with trio.fail_after(CLIENT_TIMEOUT):
            await self._stream.send_all(data)

    async def _next_event(self) -> h11.Event:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                assert isinstance(event, h11.Event)
                return event
            with trio.fail_after(CLIENT_TIMEOUT):
                data = await self._stream.receive_some(RECEIVE_SIZE)
            self._h11.receive_data(bytes(data))

    async def read_head(self) -> Response:
        """Read up to the end of the next final response's head (1xx ones are skipped)."""
        while True:
            event = await self._next_event()
            if not isinstance(event, h11.InformationalResponse):
                break
        if not isinstance(event, h11.Response):
            raise h11.RemoteProtocolError(f"expected a response, got {event!r}")
        return Response(
            status=event.status_code,
            reason=event.reason.decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
        )

    async def read_body(
        self, response: Response, on_piece: Callable[[bytes], bool] | None = None
    ) -> Response:
        """Read ``response``'s body into it. ``on_piece`` sees each piece as it arrives and
        returns True to stop reading there (``complete`` then stays False)."""
        body = bytearray()
        try:
            while True:
                try:
                    event = await self._next_event()
                except h11.RemoteProtocolError:
                    break  # the connection ended inside the body: complete stays False
                if isinstance(event, h11.Data):
                    body += event.data
                    piece = bytes(event.data)
                    response.pieces.append((self._recorder.now(), piece))
                    if on_piece is not None and on_piece(piece):
                        break
                elif isinstance(event, h11.EndOfMessage):
                    response.trailers = [
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers
                    ]
                    response.complete = True
                    break
                else:
                    break
        finally:
            response.body = bytes(body)
        if response.complete and self._h11.our_state is self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        return response

    async def read_response(self, *, stop_after_pieces: int | None = None) -> Response:
        """Read one response. With ``stop_after_pieces``, return after that many pieces of
        body (the response then has ``complete=False``), e.g. to hang up mid-stream."""
        response = await self.read_head()
        if stop_after_pieces == 0:
            return response
        limit = stop_after_pieces

        def enough(_: bytes) -> bool:
            return limit is not None and len(response.pieces) >= limit

        return await self.read_body(response, enough)

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        await self.send_request(method, target, headers, body)
        return await self.read_response()

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are, bypassing h11 (for malformed-request experiments)."""
        with trio.fail_after(CLIENT_TIMEOUT):
            await self._stream.send_all(data)

    async def read_until_close(self) -> bytes:
        """Read raw bytes until the server closes (after ``send_raw``)."""
        out = bytearray()
        with trio.fail_after(CLIENT_TIMEOUT):
            while data := await self._stream.receive_some(RECEIVE_SIZE):
                out += data
        return bytes(out)

    async def aclose(self) -> None:
        await self._stream.aclose()


@asynccontextmanager
async def open_connection(
    host: str, port: int, *, trace: Trace | None = None, recorder: Recorder | None = None
) -> AsyncIterator[ClientConnection]:
    """Connect and yield a :class:`ClientConnection` whose bytes go into ``trace``.

    Pass the same ``recorder`` to several connections to put them on one time axis.
    """
    if recorder is None:
        recorder = Recorder(trace if trace is not None else Trace(name="client"))
    with trio.fail_after(CLIENT_TIMEOUT):
        sock = await trio.open_tcp_stream(host, port)
    stream = recorder.tap(sock, "client")
    conn = ClientConnection(stream, host if port == 80 else f"{host}:{port}", recorder)
    try:
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def fetch(
    host: str,
    port: int,
    method: str = "GET",
    target: str = "/",
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    name: str = "fetch",
) -> Exchange:
    """One request on a new connection: the response and the trace of the connection."""
    trace = Trace(name=name, description=f"{method} {target}")
    async with open_connection(host, port, trace=trace) as conn:
        response = await conn.request(method, target, headers, body)
    return Exchange(response, trace)
