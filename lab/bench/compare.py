"""``lab compare``: one token stream over every transport, measured from its traces.

One deterministic stream (one prompt, ``n`` tokens, ``interval_ms`` apart) is read over
each transport of :mod:`lab.client.transports` and :mod:`lab.client.transports_ws`, one
after the other, from a lab server started in this process (``serve_tcp`` on 127.0.0.1,
port 0). Every number in a row comes from that run:

- ``requests``, ``connections``, ``bytes_up`` (client to server) and ``bytes_down``: from
  the transport's trace (requests are the request lines, RFC 9112 §3, and the HTTP/2
  streams the client opened with HEADERS, RFC 9113 §8.1, found by lab.capture.annotate);
- ``wire_per_token_byte``: (``bytes_up`` + ``bytes_down``) / the UTF-8 bytes of the
  tokens received: what each byte of text cost on the wire, both directions, TCP/IP
  headers not counted;
- ``ttft_ms``: from the moment the client began (before it connected) to the first token
  decoded;
- ``delay_p50_ms`` / ``delay_p99_ms``: per token, decoded by the client minus produced on
  the server, on one clock (``trio.current_time``: both ends run in this process), at
  nearest rank. *Produced* is measured, not assumed: for the streaming transports, when
  the endpoint handed the token to the server (its ``send`` call, stamped by a wrapper
  around the app); for the polling transports, ``start + i * interval`` of the poll stream
  (lab.apps.poll), the moment from which a poll answers with token ``i``, with the start
  the server stamped at the stream's first request. The ``produced`` field says which.
- ``idle_kib`` (with ``--idle N``): resident memory per idle client on a ``lab serve`` of
  its own (:mod:`lab.bench.compare_idle`).

A transport the server does not offer (the WebSocket ones while no endpoint answers the
handshake) gets a row that says ``not served`` and why, with no numbers. Every trace is
written to the output directory (``NAME.trace`` and ``NAME.pcapng``) for ``lab show``,
beside the rows as JSON and a plot of token arrival (:mod:`lab.bench.compare_report`).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import h11
import trio

from lab.apps import app as lab_app
from lab.apps.interface import Handler, Request, ResponseStream
from lab.apps.poll import POLL_STREAMS
from lab.apps.tokens import token_at, tokens_for
from lab.capture.annotate import annotate
from lab.capture.records import RECV, SEND
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.client.transports import (
    Received,
    StreamSpec,
    TransportError,
    TransportRun,
    chunked,
    long_poll,
    ndjson,
    short_poll,
    sse_get,
    sse_h2,
    sse_post,
)
from lab.client.transports_ws import ws_h1, ws_h2
from lab.progress import Step
from lab.server import serve_tcp
from lab.wire.errors import ProtocolError
from lab.wire.h2segments import HeadersFrame
from lab.wire.http1 import RequestLine

__all__ = [
    "FIELDS",
    "TRANSPORTS",
    "CompareOptions",
    "ProductionLog",
    "Row",
    "Transport",
    "measure",
    "run_streams",
]

Run = Callable[[str, int, StreamSpec, Recorder], Awaitable[TransportRun]]


@dataclass(frozen=True, slots=True)
class Transport:
    name: str
    run: Run
    polled: bool  # tokens produced on the poll schedule, not by a send
    what: str


TRANSPORTS: Final = (
    Transport("short-poll", short_poll, True, "GET /poll every poll interval, HTTP/1.1"),
    Transport("long-poll", long_poll, True, "GET /longpoll, held until a token, HTTP/1.1"),
    Transport("chunked", chunked, False, "GET /tokens, text/plain chunks, HTTP/1.1"),
    Transport("ndjson", ndjson, False, "POST /chat, application/x-ndjson, HTTP/1.1"),
    Transport("sse-get", sse_get, False, "GET /sse/tokens as an EventSource, HTTP/1.1"),
    Transport("sse-post", sse_post, False, "POST /chat, text/event-stream, HTTP/1.1"),
    Transport("sse-h2", sse_h2, False, "GET /sse/tokens on an h2c stream"),
    Transport("ws-h1", ws_h1, False, "WebSocket /ws/tokens, RFC 6455 over HTTP/1.1"),
    Transport("ws-h2", ws_h2, False, "WebSocket /ws/tokens, RFC 8441 over h2c"),
)
BY_NAME: Final = {t.name: t for t in TRANSPORTS}
# The row's fields, in the table's order; the JSON objects use the same names.
FIELDS: Final = (
    "transport", "status", "tokens", "requests", "connections", "bytes_up", "bytes_down",
    "wire_per_token_byte", "ttft_ms", "delay_p50_ms", "delay_p99_ms", "produced", "idle_kib",
    "trace",
)  # fmt: skip
# Requests whose sends the production log keeps in one transport's run: the streaming
# transports make one (a few with reconnects); polls are never logged (their tokens are
# produced on the poll schedule). Past it later requests are not logged.
MAX_LOGGED_REQUESTS: Final = 64
# Sends kept per logged request: every token of the longest stream (MAX_N = 10,000) and
# the response's end markers.
MAX_LOGGED_SENDS: Final = 10_016
# Paths whose sends are tokens being produced.
STREAMING_PATHS: Final = ("/tokens", "/chat", "/sse/tokens", "/ws/tokens")


@dataclass(frozen=True, slots=True)
class CompareOptions:
    transports: tuple[str, ...] = tuple(t.name for t in TRANSPORTS)
    prompt: str = "hello"
    n: int = 20
    interval_ms: int = 25
    poll_interval_ms: int = 100
    idle: int = 0  # idle clients per transport for idle_kib; 0: not measured


# -- the production log: when the server's endpoints handed each token over -------------


@dataclass(slots=True)
class LoggedRequest:
    path: str
    started: float  # trio.current_time() when the handler was called
    sends: list[tuple[float, bytes]] = field(default_factory=list)


class _StampedResponse:
    """A ResponseStream that stamps each send with trio.current_time() before passing it
    on; anything else a server's response offers is passed through, and the WebSocket
    ``accept_websocket`` returns has its sends stamped too."""

    def __init__(self, inner: ResponseStream, log: LoggedRequest) -> None:
        self._inner = inner
        self._log = log

    async def start(self, status: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self._inner.start(status, headers)

    async def send(self, data: bytes) -> None:
        if data and len(self._log.sends) < MAX_LOGGED_SENDS:
            self._log.sends.append((trio.current_time(), bytes(data)))
        await self._inner.send(data)

    async def end(self, trailers: Sequence[tuple[str, str]] = ()) -> None:
        await self._inner.end(trailers)

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self._inner, name)
        if name != "accept_websocket":
            return inner

        async def accept(*args: Any, **kwargs: Any) -> Any:
            return _StampedWebSocket(await inner(*args, **kwargs), self._log)

        return accept


class _StampedWebSocket:
    """An accepted WebSocket whose sends are stamped as a response's are."""

    def __init__(self, inner: Any, log: LoggedRequest) -> None:
        self._inner = inner
        self._log = log

    def _stamp(self, data: bytes) -> None:
        if data and len(self._log.sends) < MAX_LOGGED_SENDS:
            self._log.sends.append((trio.current_time(), data))

    async def send_text(self, text: str) -> None:
        self._stamp(text.encode("utf-8"))
        await self._inner.send_text(text)

    async def send_bytes(self, data: bytes) -> None:
        self._stamp(bytes(data))
        await self._inner.send_bytes(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ProductionLog:
    """Wraps an app; logs the streaming requests it handles, bounded (see the limits)."""

    def __init__(self) -> None:
        self.requests: list[LoggedRequest] = []

    def wrap(self, app: Handler) -> Handler:
        async def logged(request: Request, response: ResponseStream) -> None:
            if request.path not in STREAMING_PATHS or len(self.requests) >= MAX_LOGGED_REQUESTS:
                await app(request, response)
                return
            entry = LoggedRequest(request.path, trio.current_time())
            self.requests.append(entry)
            await app(request, _StampedResponse(response, entry))

        return logged


def _send_times(log: ProductionLog, prompt: str, n: int) -> dict[int, float]:
    """Token index -> when a send first carried it, matched in order: token ``i`` is in
    the first send after token ``i - 1``'s whose bytes hold its text (as it is, or as a
    JSON string's content), skipping SSE comments (heartbeats start with ':')."""
    sends = [s for entry in log.requests for s in entry.sends]
    found: dict[int, float] = {}
    k = 0
    for i in range(n):
        text = json.dumps(token_at(prompt, i))[1:-1].encode("utf-8")
        while k < len(sends) and (sends[k][1].startswith(b":") or text not in sends[k][1]):
            k += 1
        if k == len(sends):
            break
        found[i] = sends[k][0]
        k += 1
    return found


# -- the rows ------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    transport: str
    status: str
    tokens: int | None = None
    requests: int | None = None
    connections: int | None = None
    bytes_up: int | None = None
    bytes_down: int | None = None
    wire_per_token_byte: float | None = None
    ttft_ms: float | None = None
    delay_p50_ms: float | None = None
    delay_p99_ms: float | None = None
    produced: str | None = None  # "send" or "schedule": where production times came from
    idle_kib: float | None = None
    trace: str | None = None
    # Not in the table: what the plot needs.
    arrivals: list[float] = field(default_factory=list, repr=False)  # ms, per token

    def as_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in FIELDS}


def count_requests(trace: Trace) -> int:
    """Requests the client made: request lines on HTTP/1.1 connections, and the streams
    it opened with a HEADERS frame on HTTP/2 ones."""
    total = 0
    for ac in annotate(trace):
        segments = ac.segments(from_client=True)
        total += sum(1 for s in segments if isinstance(s, RequestLine))
        total += len({s.stream_id for s in segments if isinstance(s, HeadersFrame)})
    return total


def wire_bytes(trace: Trace) -> tuple[int, int]:
    """(client to server, server to client) bytes of a client-side trace."""
    up = sum(len(r.data) for c in trace.connections for r in c.records if r.kind == SEND)
    down = sum(len(r.data) for c in trace.connections for r in c.records if r.kind == RECV)
    return up, down


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` % of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def measure(
    run: TransportRun, produced: dict[int, float], t0: float, how: str, spec: StreamSpec
) -> Row:
    """The row of one transport's run. ``produced``: token index -> production time on
    the server's clock; ``t0``: that clock's reading when the client began (the trace's
    time 0)."""
    if not run.served:
        return Row(run.name, run.note)
    up, down = wire_bytes(run.trace)
    text_bytes = sum(len(r.token.encode("utf-8")) for r in run.tokens)
    expected = tokens_for(spec.prompt, spec.n)
    got = [r.token for r in sorted(run.tokens, key=lambda r: r.index)]
    status = "ok" if got == expected else f"tokens differ: {len(got)} of {len(expected)}"
    delays = [r.t - (produced[r.index] - t0) for r in run.tokens if r.index in produced]
    if len(delays) < len(run.tokens):
        how = f"{how}, {len(run.tokens) - len(delays)} not matched"
    return Row(
        transport=run.name,
        status=status,
        tokens=len(run.tokens),
        requests=count_requests(run.trace),
        connections=len(run.trace.connections),
        bytes_up=up,
        bytes_down=down,
        wire_per_token_byte=round((up + down) / text_bytes, 2) if text_bytes else None,
        ttft_ms=round(run.tokens[0].t * 1000, 3) if run.tokens else None,
        delay_p50_ms=round(percentile(delays, 50) * 1000, 3) if delays else None,
        delay_p99_ms=round(percentile(delays, 99) * 1000, 3) if delays else None,
        produced=how if delays else None,
        arrivals=[r.t * 1000 for r in run.tokens],
    )


# -- running them ------------------------------------------------------------------------


@dataclass(slots=True)
class StreamResult:
    row: Row
    trace: Trace
    received: list[Received]


async def run_streams(
    options: CompareOptions, step: Step = lambda _: None, app: Handler = lab_app
) -> list[StreamResult]:
    """Each chosen transport in turn against a server in this process; a row and a trace
    for each."""
    log = ProductionLog()
    run_id = secrets.token_hex(4)
    results = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_tcp, log.wrap(app), 0)
        for name in options.transports:
            step(name)
            transport = BY_NAME[name]
            spec = StreamSpec(
                prompt=options.prompt, n=options.n, interval_ms=options.interval_ms,
                stream=f"compare-{run_id}-{name}", poll_interval_ms=options.poll_interval_ms,
            )  # fmt: skip
            results.append(await _one(transport, spec, server.port, log))
        server.shutdown()
    return results


async def _one(
    transport: Transport, spec: StreamSpec, port: int, log: ProductionLog
) -> StreamResult:
    trace = Trace(
        name=transport.name,
        description=f"lab compare: {transport.what}; prompt {spec.prompt!r}, n={spec.n}, "
        f"interval_ms={spec.interval_ms}"
        + (f", poll_interval_ms={spec.poll_interval_ms}" if transport.polled else ""),
    )
    log.requests.clear()
    t0 = trio.current_time()
    recorder = Recorder(trace, t0=t0, clock=trio.current_time)
    try:
        run = await transport.run("127.0.0.1", port, spec, recorder)
    except (
        TransportError, ProtocolError, h11.ProtocolError, OSError, trio.BrokenResourceError,
        trio.TooSlowError, ValueError, KeyError,
    ) as exc:  # fmt: skip
        return StreamResult(Row(transport.name, f"error: {exc}"), trace, [])
    if transport.polled:
        key = (spec.stream, spec.prompt, spec.n, spec.interval_ms)
        stream = POLL_STREAMS.lookup(key)
        produced = {} if stream is None else {i: stream.due(i) for i in range(spec.n)}
        how = "schedule"
    else:
        produced = _send_times(log, spec.prompt, spec.n)
        how = "send"
    return StreamResult(measure(run, produced, t0, how, spec), trace, run.tokens)
