"""Polling endpoints, and the token stream as SSE by GET: the transports before streaming.

A polling client does not hold a response open while tokens are made; it asks again. So
the tokens have to exist on the server between requests, on a schedule every request
sees the same way. Here a *poll stream* is named by its ``stream`` id together with its
``prompt``, ``n`` and ``interval_ms``; it starts at the first request that names it, and
token ``i`` (``token_at(prompt, i)``, the same words ``/tokens`` sends) is *produced* at
``start + i * interval_ms`` on the server's clock (``trio.current_time()``): token 0 at
once, the last at ``start + (n - 1) * interval``. Nothing runs in the background; a request
works out what exists from the clock, so every client of one stream sees the same tokens at
the same moments, whatever protocol carried its requests.

- ``GET /poll?stream=&cursor=K&prompt=&n=&interval_ms=`` (short polling): at once, the
  tokens produced so far from index ``K`` on, the next cursor, and whether the stream is
  done: ``{"tokens": [...], "cursor": K2, "done": false}``.
- ``GET /longpoll?...&timeout_ms=T`` (long polling): the same answer, but when no token
  past ``K`` exists yet the server holds the request until the next one is produced or
  ``T`` ms have passed (capped by :data:`LONGPOLL_MAX_TIMEOUT_MS`); a request answered by
  the timeout has no tokens and the same cursor.
- ``GET /sse/tokens?prompt=&n=&interval_ms=``: the stream as Server-Sent Events for an
  EventSource (WHATWG HTML §9.2): the framing of ``POST /chat`` with ``Accept:
  text/event-stream`` (``data: {"index": i, "token": ...}`` per token, then ``data:
  [DONE]``), reachable by GET, which is all an EventSource can send.

Answers to polls are whole JSON bodies with Content-Length and ``Cache-Control:
no-store`` (RFC 9111 §5.2.2.5): a cache that answered a poll would freeze the stream.

The streams are kept in a bounded table (:class:`PollStreams`): at most
:data:`MAX_POLL_STREAMS`, the least recently asked dropped first, and any not asked for
:data:`POLL_STREAM_EXPIRY` seconds forgotten; a request for a forgotten stream starts it
again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import trio

from lab.apps.interface import HTTPError, Request, ResponseStream
from lab.apps.params import (
    DEFAULT_INTERVAL_MS,
    DEFAULT_N,
    MAX_INTERVAL_MS,
    MAX_N,
    MAX_PROMPT_CHARS,
    int_param,
)
from lab.apps.sse import chat_sse
from lab.apps.tokens import token_at, tokens_for

__all__ = [
    "DEFAULT_LONGPOLL_TIMEOUT_MS",
    "LONGPOLL_MAX_TIMEOUT_MS",
    "MAX_POLL_STREAMS",
    "MAX_STREAM_ID",
    "POLL_STREAMS",
    "POLL_STREAM_EXPIRY",
    "PollStream",
    "PollStreams",
    "longpoll",
    "poll",
    "sse_tokens",
]

DEFAULT_PROMPT: Final = "hello"  # as /tokens and POST /chat
# The longest a long poll is held. Below the 60 s after which common proxies give up on a
# response that sends nothing (nginx's proxy_read_timeout, HAProxy's usual timeout
# server), so that the server, not a proxy, ends a held request; long enough that an idle
# client asks about twice a minute.
LONGPOLL_MAX_TIMEOUT_MS: Final = 30_000
DEFAULT_LONGPOLL_TIMEOUT_MS: Final = 20_000
# Poll streams kept at once: each is a few hundred bytes (its key and two times), so the
# table stays well under a megabyte; a 1,025th stream drops the least recently asked one,
# which starts again if it is asked for later.
MAX_POLL_STREAMS: Final = 1024
# Seconds after its last request that a stream is forgotten: more than the longest hold
# (LONGPOLL_MAX_TIMEOUT_MS) plus a slow client's pause between two polls, so that a client
# still reading its stream never loses it to expiry.
POLL_STREAM_EXPIRY: Final = 120.0
# A stream id is a name the client picks; 64 printable characters, as /events' stream.
MAX_STREAM_ID: Final = 64

StreamKey = tuple[str, str, int, int]  # stream id, prompt, n, interval_ms


@dataclass(eq=False, slots=True)
class PollStream:
    """One stream's schedule: token ``i`` exists from ``start + i * interval`` on."""

    key: StreamKey
    start: float  # trio.current_time() at the first request
    last_seen: float

    @property
    def n(self) -> int:
        return self.key[2]

    @property
    def interval(self) -> float:
        return self.key[3] / 1000

    def due(self, i: int) -> float:
        """When token ``i`` is produced, on the server's clock."""
        return self.start + i * self.interval

    def produced(self, now: float) -> int:
        """How many tokens exist at ``now``: every ``i < n`` with ``due(i) <= now``."""
        if now < self.start:
            return 0
        if self.interval == 0:
            return self.n
        k = min(self.n, int((now - self.start) / self.interval) + 1)
        # The division rounds; the schedule is due(i) <= now, checked exactly, and the
        # estimate is off by at most one either way.
        if k < self.n and self.due(k) <= now:
            k += 1
        if k > 0 and self.due(k - 1) > now:
            k -= 1
        return k


class PollStreams:
    """The poll streams, bounded in number (least recently asked dropped first) and in age
    (none kept ``expiry`` seconds after its last request)."""

    def __init__(self, capacity: int = MAX_POLL_STREAMS, expiry: float = POLL_STREAM_EXPIRY):
        self.capacity = capacity
        self.expiry = expiry
        self._streams: OrderedDict[StreamKey, PollStream] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streams)

    def get(self, key: StreamKey, now: float) -> PollStream:
        """The stream for ``key``, started at ``now`` if it is not kept; marked as asked."""
        self._expire(now)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = PollStream(key, start=now, last_seen=now)
            while len(self._streams) > self.capacity:
                self._streams.popitem(last=False)
        stream.last_seen = now
        self._streams.move_to_end(key)
        return stream

    def touch(self, stream: PollStream, now: float) -> None:
        """Mark ``stream`` as asked at ``now`` (after a long poll's hold), keeping it even
        if it was dropped while the request was held: its schedule must not start again."""
        stream.last_seen = now
        self._streams[stream.key] = stream
        self._streams.move_to_end(stream.key)
        while len(self._streams) > self.capacity:
            self._streams.popitem(last=False)

    def lookup(self, key: StreamKey) -> PollStream | None:
        """The stream for ``key`` if it is kept, without marking it (for a reader of the
        schedule, such as ``lab compare``)."""
        return self._streams.get(key)

    def _expire(self, now: float) -> None:
        # Oldest first: the scan stops at the first stream still fresh, so each request
        # does work only for the streams it drops.
        while self._streams:
            oldest = next(iter(self._streams.values()))
            if now - oldest.last_seen <= self.expiry:
                return
            self._streams.popitem(last=False)


POLL_STREAMS = PollStreams()


def stream_key(request: Request) -> StreamKey:
    """The poll stream a request names (400 for a bad parameter)."""
    stream = request.query.get("stream", "default")
    if not stream or len(stream) > MAX_STREAM_ID or not stream.isprintable():
        raise HTTPError(400, f"stream must be 1..{MAX_STREAM_ID} printable characters\n")
    prompt = request.query.get("prompt", DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    n = int_param(request, "n", DEFAULT_N, 0, MAX_N)
    interval_ms = int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_INTERVAL_MS)
    return stream, prompt, n, interval_ms


async def _answer(response: ResponseStream, stream: PollStream, cursor: int, now: float) -> None:
    end = max(cursor, stream.produced(now))
    prompt = stream.key[1]
    body = {
        "tokens": [token_at(prompt, i) for i in range(cursor, end)],
        "cursor": end,
        "done": end >= stream.n,
    }
    data = json.dumps(body).encode("utf-8") + b"\n"
    await response.start(
        200,
        [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("cache-control", "no-store"),
        ],
    )
    await response.send(data)
    await response.end()


async def poll(request: Request, response: ResponseStream) -> None:
    """Short polling: the tokens produced since ``cursor``, at once."""
    key = stream_key(request)
    cursor = int_param(request, "cursor", 0, 0, key[2])
    now = trio.current_time()
    await _answer(response, POLL_STREAMS.get(key, now), cursor, now)


async def longpoll(request: Request, response: ResponseStream) -> None:
    """Long polling: as ``/poll``, but held until a token past ``cursor`` is produced or
    ``timeout_ms`` passes (at most LONGPOLL_MAX_TIMEOUT_MS)."""
    key = stream_key(request)
    cursor = int_param(request, "cursor", 0, 0, key[2])
    timeout_ms = int_param(
        request, "timeout_ms", DEFAULT_LONGPOLL_TIMEOUT_MS, 0, LONGPOLL_MAX_TIMEOUT_MS
    )
    now = trio.current_time()
    stream = POLL_STREAMS.get(key, now)
    if cursor < stream.n and stream.produced(now) <= cursor:
        # Nothing new yet: wake when token `cursor` is due, or at the timeout.
        await trio.sleep_until(min(stream.due(cursor), now + timeout_ms / 1000))
        now = trio.current_time()
        POLL_STREAMS.touch(stream, now)
    await _answer(response, stream, cursor, now)


async def sse_tokens(request: Request, response: ResponseStream) -> None:
    """The token stream as SSE by GET, framed as ``POST /chat`` frames it for
    ``Accept: text/event-stream``."""
    n = int_param(request, "n", DEFAULT_N, 0, MAX_N)
    interval_ms = int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_INTERVAL_MS)
    prompt = request.query.get("prompt", DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    await chat_sse(response, tokens_for(prompt, n), interval_ms / 1000)
