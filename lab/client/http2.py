"""A raw HTTP/2 (h2c, prior knowledge) client on h2 over trio that records every byte.

The HTTP/2 counterpart of :mod:`lab.client.http1`: low level on purpose, so that the
scenarios can do what a teaching lab needs — two streams at once, a tiny flow-control
window that the client opens by hand, a stream reset mid-reply, a PING, a GOAWAY.

Before its first request the client completes the SETTINGS exchange (it waits for the
server's SETTINGS and for the ACK of its own), so a capture shows the handshake as one
block and the order of records does not depend on timing.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from lab.capture.tap import Recorder
from lab.capture.trace import Trace

__all__ = ["H2ClientConnection", "H2Response", "fetch_h2", "open_h2_connection"]

# Bound on any one wait for the server.
CLIENT_TIMEOUT: Final = 30.0
RECEIVE_SIZE: Final = 64 * 1024
USER_AGENT: Final = "streamlab-client/0.1"


@dataclass(slots=True)
class H2Response:
    stream_id: int
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (time, DATA payload)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset_code: int | None = None  # RST_STREAM's error code, from either side

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.frames)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


class H2ClientConnection:
    def __init__(self, stream: trio.abc.Stream, authority: str, recorder: Recorder) -> None:
        self._stream = stream
        self._authority = authority
        self._recorder = recorder
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        # The lab's client writes its header strings as plain HPACK literals, not Huffman
        # code, so that a hexdump of its requests reads as text (the lab's server uses
        # Huffman, as most peers do: captures show both). h2 has no switch for it.
        encode = self.conn.encoder.encode
        self.conn.encoder.encode = functools.partial(encode, huffman=False)  # type: ignore[method-assign]
        self.responses: dict[int, H2Response] = {}
        self.events: list[h2.events.Event] = []
        self.auto_window = True  # give back flow-control credit as DATA is read
        self.closed = False
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.h2_stopped = ""  # why h2 stopped taking bytes (see pump)

    @property
    def trace(self) -> Trace:
        return self._recorder.trace

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            with trio.fail_after(CLIENT_TIMEOUT):
                await self._stream.send_all(data)

    async def handshake(self, settings: dict[int, int] | None = None) -> None:
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)  # type: ignore[arg-type]
        self.conn.initiate_connection()
        await self.flush()
        # Both the server's SETTINGS and the ACK of ours before answering: the capture
        # then shows the handshake in one order, whatever the timing.
        with trio.fail_after(CLIENT_TIMEOUT):
            while not (
                any(isinstance(e, h2.events.RemoteSettingsChanged) for e in self.events)
                and any(isinstance(e, h2.events.SettingsAcknowledged) for e in self.events)
            ):
                await self.pump(answer=False)
                if self.closed:
                    raise ConnectionError("the server closed during the HTTP/2 handshake")
        await self.flush()

    async def pump(self, *, answer: bool = True) -> list[h2.events.Event]:
        """One read from the server; the h2 events it produced (answers are sent unless
        ``answer`` is False)."""
        with trio.fail_after(CLIENT_TIMEOUT):
            data = await self._stream.receive_some(RECEIVE_SIZE)
        if not data:
            self.closed = True
            return []
        now = self._recorder.now()
        if self.h2_stopped:
            return []  # the bytes are in the trace; h2 no longer takes them
        try:
            events = self.conn.receive_data(bytes(data))
        except h2.exceptions.ProtocolError as exc:
            # h2 (the library) moves to CLOSED when it receives GOAWAY and then refuses
            # the DATA that RFC 9113 §6.8 lets the server still send on older streams.
            # The lab keeps reading, so the trace holds the rest of the conversation.
            self.h2_stopped = str(exc)
            return []
        for event in events:
            self._note(event, now)
        self.events.extend(events)
        if answer:
            await self.flush()
        return events

    def _note(self, event: h2.events.Event, now: float) -> None:
        sid = getattr(event, "stream_id", None)
        response = self.responses.get(sid) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            response.headers = [(str(k), str(v)) for k, v in event.headers or []]
            response.status = int(response.header(":status") or 0)
        elif isinstance(event, h2.events.DataReceived) and response is not None:
            response.frames.append((now, event.data or b""))
            if self.auto_window and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived) and response is not None:
            response.trailers = [(str(k), str(v)) for k, v in event.headers or []]
        elif isinstance(event, h2.events.StreamEnded) and response is not None:
            response.ended = True
        elif isinstance(event, h2.events.StreamReset) and response is not None:
            response.reset_code = int(event.error_code or 0)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    async def pump_until(self, done: Callable[[], bool]) -> None:
        with trio.fail_after(CLIENT_TIMEOUT):
            while not done():
                await self.pump()
                if self.closed or self.goaway is not None:
                    break

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method), (":scheme", "http"), (":authority", self._authority),
            (":path", target), ("user-agent", USER_AGENT), *headers,
        ]  # fmt: skip
        self.conn.send_headers(sid, fields, end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.responses[sid] = H2Response(sid)
        await self.flush()
        return sid

    async def finish(self, *stream_ids: int) -> list[H2Response]:
        """Read until the given streams (all, if none given) ended or were reset."""
        ids = stream_ids or tuple(self.responses)

        def done() -> bool:
            return all(
                self.responses[s].ended or self.responses[s].reset_code is not None for s in ids
            )

        await self.pump_until(done)
        return [self.responses[s] for s in ids]

    async def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self.conn.reset_stream(stream_id, code)
        self.responses[stream_id].reset_code = code
        await self.flush()

    async def ping(self, opaque: bytes = b"streamlb") -> None:
        self.conn.ping(opaque)
        await self.flush()
        await self.pump_until(
            lambda: any(isinstance(e, h2.events.PingAckReceived) for e in self.events)
        )

    async def open_window(self, stream_id: int, increment: int) -> None:
        self.conn.increment_flow_control_window(increment, stream_id=stream_id)
        await self.flush()

    async def close(self) -> None:
        """A polite end: GOAWAY(NO_ERROR), then close."""
        self.conn.close_connection()
        await self.flush()


@asynccontextmanager
async def open_h2_connection(
    host: str,
    port: int,
    *,
    recorder: Recorder | None = None,
    settings: dict[int, int] | None = None,
) -> AsyncIterator[H2ClientConnection]:
    """Connect, speak h2c by prior knowledge, complete the SETTINGS exchange, yield."""
    if recorder is None:
        recorder = Recorder(Trace(name="h2"))
    with trio.fail_after(CLIENT_TIMEOUT):
        sock = await trio.open_tcp_stream(host, port)
    stream = recorder.tap(sock, "client", protocol="h2c")
    conn = H2ClientConnection(stream, f"{host}:{port}", recorder)
    try:
        await conn.handshake(settings)
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def fetch_h2(
    host: str,
    port: int,
    method: str = "GET",
    target: str = "/",
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    name: str = "fetch-h2",
) -> tuple[H2Response, Trace]:
    """One request on a new h2c connection: the response and the connection's trace."""
    recorder = Recorder(Trace(name=name, description=f"{method} {target} over h2c"))
    async with open_h2_connection(host, port, recorder=recorder) as conn:
        sid = await conn.request(method, target, headers, body)
        (response,) = await conn.finish(sid)
        await conn.close()
    return response, recorder.trace
