"""One token stream, received over each way a browser-era client can get it.

Every transport here reads the same deterministic reply (one prompt, ``n`` tokens,
``interval_ms`` apart on the server) and returns a :class:`TransportRun`: each token with
its index and the moment the client had decoded it, and the :class:`Trace` of every
connection it made. Times are seconds on the trace's axis; pass one :class:`Recorder`
(``clock=trio.current_time``) and the transport's connections, however many, share it.

=============  ==========================================================================
short-poll     ``GET /poll`` on a fixed schedule (every ``poll_interval_ms``), the cursor
               carried from answer to answer; one keep-alive connection (RFC 9112 §9.3)
long-poll      ``GET /longpoll``, asked again as soon as each answer arrives
chunked        ``GET /tokens``: text/plain, one token per chunk (RFC 9112 §7.1), ``[DONE]``
ndjson         ``POST /chat`` with ``Accept: application/x-ndjson``: one JSON line a token
sse-get        ``GET /sse/tokens`` as an EventSource (WHATWG HTML §9.2), until ``[DONE]``
sse-post       ``POST /chat`` with ``Accept: text/event-stream`` (the fetch-event-source
               pattern: a body, which EventSource cannot send)
sse-h2         ``GET /sse/tokens`` on an h2c stream: the events in DATA frames (RFC 9113 §6.1)
=============  ==========================================================================

The WebSocket transports are in :mod:`lab.client.transports_ws`.

When is a token *decoded*? When the bytes that complete its unit have been read: the
chunk's end for text/plain (h11 marks it), the line's LF for NDJSON, the blank line that
dispatches the event for SSE, the whole JSON body for a poll.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode

import h11
import trio

from lab.capture.tap import Recorder, TappedStream
from lab.capture.trace import Trace
from lab.client.http2 import open_h2_connection
from lab.client.sse import event_source
from lab.wire.sse import Dispatch, Event, SSEDecoder

__all__ = [
    "DONE",
    "MAX_POLL_REQUESTS",
    "MAX_RUN_BYTES",
    "Budget",
    "Received",
    "StreamSpec",
    "TransportError",
    "TransportRun",
    "chunked",
    "long_poll",
    "ndjson",
    "short_poll",
    "sse_get",
    "sse_h2",
    "sse_post",
]

DONE: Final = "[DONE]"
# Requests one polling run may make before it gives up: a long poll needs at most n + 1
# (n <= 10,000 tokens, lab.apps.params.MAX_N); a short poll every millisecond over a 10 s
# stream makes 10,000. Past it the run fails rather than polling for ever.
MAX_POLL_REQUESTS: Final = 20_000
# Connections one polling run may open: it opens a new one only when the server closed
# the last (an idle timeout, Connection: close).
MAX_POLL_CONNECTIONS: Final = 64
# Bound on any one wait for the server (a long poll's hold included: at most 30 s).
CLIENT_TIMEOUT: Final = 60.0
# Bytes one run may read before it gives up: the longest lab reply (10,000 tokens) in its
# most verbose framing (an SSE event, or a poll's answer, per token: a few hundred bytes
# each) is a few MiB; a server that never ends its reply is cut off here.
MAX_RUN_BYTES: Final = 64 * 1024 * 1024
RECEIVE_SIZE: Final = 64 * 1024
USER_AGENT: Final = "streamlab-client/0.1"


class TransportError(Exception):
    """The server answered in a way the transport cannot read tokens from."""


class Budget:
    """Bytes read so far in one run, refused past MAX_RUN_BYTES."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_RUN_BYTES if limit is None else limit
        self.used = 0

    def take(self, data: bytes) -> bytes:
        self.used += len(data)
        if self.used > self.limit:
            raise TransportError(f"over {self.limit} bytes read: the reply does not end")
        return data


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """The one stream every transport reads."""

    prompt: str = "hello"
    n: int = 8
    interval_ms: int = 25
    stream: str = "compare"  # the poll stream id (lab.apps.poll)
    poll_interval_ms: int = 100
    longpoll_timeout_ms: int = 20_000

    def query(self, **extra: str | int) -> str:
        """The query string every endpoint takes, plus ``extra``."""
        fields = {"prompt": self.prompt, "n": self.n, "interval_ms": self.interval_ms, **extra}
        return urlencode(fields)

    def chat_body(self) -> bytes:
        return json.dumps(
            {"prompt": self.prompt, "n": self.n, "interval_ms": self.interval_ms}
        ).encode()


@dataclass(frozen=True, slots=True)
class Received:
    index: int
    token: str
    t: float  # seconds on the trace's axis: when the client had decoded it


@dataclass(slots=True)
class TransportRun:
    name: str
    trace: Trace
    tokens: list[Received] = field(default_factory=list)
    served: bool = True  # False: the server does not offer this transport (note says why)
    note: str = ""

    @property
    def text(self) -> str:
        return "".join(r.token for r in self.tokens)


# -- a small HTTP/1.1 exchange on h11, that sees chunk ends ---------------------------


class _H1:
    """One tapped HTTP/1.1 connection driven by h11 (the lab's client, without its
    Response: here the events themselves are needed, for the end of each chunk)."""

    def __init__(self, stream: TappedStream, authority: str, recorder: Recorder) -> None:
        self.stream = stream
        self.authority = authority
        self.recorder = recorder
        self.h11 = h11.Connection(h11.CLIENT)
        self.budget = Budget()

    async def send(
        self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        fields = [("host", self.authority), ("user-agent", USER_AGENT), *headers]
        if body:
            fields.append(("content-length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=fields)) or b""
        if body:
            data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        with trio.fail_after(CLIENT_TIMEOUT):
            await self.stream.send_all(data)

    async def events(self) -> AsyncIterator[tuple[float, h11.Event]]:
        """Each event of the response with the time of the read that completed it, up to
        and including EndOfMessage (then the connection is ready for the next request)."""
        t = self.recorder.now()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                with trio.fail_after(CLIENT_TIMEOUT):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                t = self.recorder.now()
                self.h11.receive_data(self.budget.take(data))
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise TransportError("the server closed the connection mid-response")
            assert isinstance(event, h11.Event)
            yield t, event
            if isinstance(event, h11.EndOfMessage):
                if self.h11.our_state is self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                return

    @property
    def reusable(self) -> bool:
        return self.h11.our_state is h11.IDLE and self.h11.their_state is h11.IDLE


@asynccontextmanager
async def _h1(host: str, port: int, recorder: Recorder) -> AsyncIterator[_H1]:
    with trio.fail_after(CLIENT_TIMEOUT):
        sock = await trio.open_tcp_stream(host, port)
    stream = recorder.tap(sock, "client")
    try:
        yield _H1(stream, f"{host}:{port}", recorder)
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def _check_status(status: int, what: str, content_type: str, want: str) -> None:
    if status != 200:
        raise TransportError(f"{what}: status {status}")
    if content_type.split(";", maxsplit=1)[0].strip().lower() != want:
        raise TransportError(f"{what}: Content-Type {content_type!r}, not {want}")


def _content_type(event: h11.Response) -> str:
    for name, value in event.headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return ""


# -- polling ------------------------------------------------------------------------


async def _poll(
    host: str, port: int, spec: StreamSpec, recorder: Recorder, path: str, *, scheduled: bool
) -> list[Received]:
    """Ask ``path`` with the cursor until an answer says done; ``scheduled``: at fixed
    times ``poll_interval_ms`` apart (short polling), else at once after each answer."""
    out: list[Received] = []
    cursor, asked = 0, 0
    start = trio.current_time()
    extra: dict[str, str | int] = {"stream": spec.stream}
    if not scheduled:
        extra["timeout_ms"] = spec.longpoll_timeout_ms
    for _ in range(MAX_POLL_CONNECTIONS):
        async with _h1(host, port, recorder) as conn:
            while conn.reusable:
                if asked >= MAX_POLL_REQUESTS:
                    raise TransportError(f"no end after {MAX_POLL_REQUESTS} requests")
                if scheduled:
                    await trio.sleep_until(start + asked * spec.poll_interval_ms / 1000)
                asked += 1
                await conn.send("GET", f"{path}?{spec.query(cursor=cursor, **extra)}")
                body, at = bytearray(), 0.0
                async for t, event in conn.events():
                    at = t  # the answer is whole at its last event's read
                    if isinstance(event, h11.Response):
                        _check_status(
                            event.status_code, path, _content_type(event), "application/json"
                        )
                    elif isinstance(event, h11.Data):
                        body += event.data
                answer = json.loads(body)
                tokens = answer["tokens"]
                out += [Received(cursor + i, tok, at) for i, tok in enumerate(tokens)]
                cursor = int(answer["cursor"])
                if answer["done"]:
                    return out
    raise TransportError(f"no end after {MAX_POLL_CONNECTIONS} connections")


async def short_poll(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    tokens = await _poll(host, port, spec, recorder, "/poll", scheduled=True)
    return TransportRun("short-poll", recorder.trace, tokens)


async def long_poll(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    tokens = await _poll(host, port, spec, recorder, "/longpoll", scheduled=False)
    return TransportRun("long-poll", recorder.trace, tokens)


# -- one streamed response over HTTP/1.1 ---------------------------------------------


async def chunked(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    """``GET /tokens``: a token is each chunk's data, complete at the chunk's end."""
    out: list[Received] = []
    async with _h1(host, port, recorder) as conn:
        await conn.send("GET", f"/tokens?{spec.query()}")
        piece = bytearray()
        async for t, event in conn.events():
            if isinstance(event, h11.Response):
                _check_status(event.status_code, "/tokens", _content_type(event), "text/plain")
            elif isinstance(event, h11.Data):
                piece += event.data
                if event.chunk_end:
                    text = piece.decode("utf-8")
                    piece.clear()
                    if text.strip() != DONE:  # the end marker is no token
                        out.append(Received(len(out), text, t))
    return TransportRun("chunked", recorder.trace, out)


async def ndjson(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    """``POST /chat`` as NDJSON: a token is each line's object, complete at its LF."""
    out: list[Received] = []
    headers = [("accept", "application/x-ndjson"), ("content-type", "application/json")]
    async with _h1(host, port, recorder) as conn:
        await conn.send("POST", "/chat", headers, spec.chat_body())
        buffer = bytearray()
        async for t, event in conn.events():
            if isinstance(event, h11.Response):
                ctype = _content_type(event)
                _check_status(event.status_code, "/chat", ctype, "application/x-ndjson")
            elif isinstance(event, h11.Data):
                buffer += event.data
                while (end := buffer.find(b"\n")) >= 0:
                    line = json.loads(buffer[:end])
                    del buffer[: end + 1]
                    if "token" in line:
                        out.append(Received(int(line["index"]), str(line["token"]), t))
    return TransportRun("ndjson", recorder.trace, out)


# -- Server-Sent Events ---------------------------------------------------------------


def _token_event(event: Event, t: float, out: list[Received]) -> None:
    if event.data == DONE:
        return
    payload = json.loads(event.data)
    out.append(Received(int(payload["index"]), str(payload["token"]), t))


def _is_done(event: Event) -> bool:
    return event.data == DONE


async def _sse(
    host: str, port: int, spec: StreamSpec, recorder: Recorder, *, post: bool
) -> list[Received]:
    out: list[Received] = []

    def on_event(event: Event) -> None:
        _token_event(event, recorder.now(), out)

    if post:
        result = await event_source(
            host, port, "/chat", method="POST", body=spec.chat_body(),
            headers=[("content-type", "application/json")], until=_is_done,
            on_event=on_event, recorder=recorder, max_connections=1,
        )  # fmt: skip
    else:
        result = await event_source(
            host, port, f"/sse/tokens?{spec.query()}", until=_is_done, on_event=on_event,
            recorder=recorder, max_connections=1,
        )  # fmt: skip
    if not result.events or not _is_done(result.events[-1]):
        raise TransportError(f"the event stream ended without [DONE]: {result.stopped}")
    return out


async def sse_get(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    return TransportRun(
        "sse-get", recorder.trace, await _sse(host, port, spec, recorder, post=False)
    )


async def sse_post(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    return TransportRun(
        "sse-post", recorder.trace, await _sse(host, port, spec, recorder, post=True)
    )


async def sse_h2(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    """``GET /sse/tokens`` on an h2c stream; each DATA frame's payload goes to the SSE
    decoder as it arrives (the time is that of the read that carried the frame)."""
    out: list[Received] = []
    decoder = SSEDecoder()
    async with open_h2_connection(host, port, recorder=recorder) as conn:
        sid = await conn.request(
            "GET", f"/sse/tokens?{spec.query()}",
            [("accept", "text/event-stream"), ("cache-control", "no-cache")],
        )  # fmt: skip
        response = conn.responses[sid]
        seen = 0
        done = False
        budget = Budget()
        # Each read is bounded in time (pump), the whole by the bytes it may read.
        while not (response.ended or response.reset_code is not None or conn.closed):
            await conn.pump()
            for t, data in response.frames[seen:]:
                for seg in decoder.feed(budget.take(data)):
                    if isinstance(seg, Dispatch) and seg.event is not None:
                        done = done or _is_done(seg.event)
                        _token_event(seg.event, t, out)
            seen = len(response.frames)
        if response.status:
            ctype = response.header("content-type") or ""
            _check_status(response.status, "/sse/tokens", ctype, "text/event-stream")
        if not done:
            raise TransportError(
                f"the h2 stream ended without [DONE] (reset {response.reset_code})"
            )
        await conn.close()
    return TransportRun("sse-h2", recorder.trace, out)
