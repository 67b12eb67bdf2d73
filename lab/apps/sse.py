"""Server-Sent Events endpoints: /events, /progress, and the SSE framing of POST /chat.

Every SSE response goes through :class:`EventChannel`: the handler *produces* events into
a bounded per-client queue, and one sender task writes them to the client, sending a
heartbeat comment whenever nothing was sent for ``heartbeat_ms``.

Slow-reader policy: when a client's queue is full (it reads slower than events are made
and the socket buffers are already full) and stays full for ``QUEUE_FULL_GRACE``, the
server cuts that response off
(:class:`~lab.apps.interface.AbortResponse`). Memory stays bounded, no event is dropped
silently, and an EventSource reconnects with ``Last-Event-ID`` and resumes from the
stream's event log. A client that stops reading altogether is also cut off by the
server's send timeout. A client that goes away is noticed by the server (EOF) or, at the
latest, by the next heartbeat write, and the handler is cancelled.

Resuming ``/events`` (WHATWG HTML §9.2.3: an EventSource reconnects sending its last
event ID in the ``Last-Event-ID`` header of §9.2.4): event ``k`` of a stream is a pure
function of the stream name and ``k``, made in constant time, so what a response costs
depends on how many events it sends (at most ``n``), never on the id it resumes after.
The header is read as follows:

- ASCII digits naming an id in 1..``MAX_EVENT_ID`` (leading zeros allowed): the response
  continues with the next event. What the stream's log still holds is replayed as it was
  first sent; an id older than the log is told in a comment which events are gone; an id
  newer than anything logged (the server restarted, say) is simply continued from. Each
  stream ends at ``MAX_EVENT_ID`` (or at ``total``); resuming there is answered 204.
  ``0`` is the start, as if no id had been sent.
- anything else (not digits, non-ASCII digits, or a number above ``MAX_EVENT_ID``,
  however long): not an id this server hands out. The stream starts again from event 1,
  after a comment that says so; a long value costs one scan of its characters, never a
  conversion to an integer.

The log records only the stream's events in order, each one the successor of the
newest logged: the events a client makes the server produce by resuming after an id
that was never sent are sent but not logged, so one client's odd Last-Event-ID cannot
make the log skip events for every other client of that stream.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio

from lab.apps.interface import AbortResponse, HTTPError, Request, ResponseStream
from lab.apps.pacing import Schedule
from lab.apps.params import DEFAULT_INTERVAL_MS, MAX_INTERVAL_MS, MAX_N, int_param
from lab.apps.tokens import DONE, token_at, tokens_for
from lab.wire.sse import encode_comment, encode_event

__all__ = [
    "CLIENT_QUEUE_SIZE",
    "EVENT_LOG_SIZE",
    "MAX_EVENT_ID",
    "MAX_STREAMS",
    "QUEUE_FULL_GRACE",
    "SSE_HEADERS",
    "EventChannel",
    "EventLog",
    "chat_sse",
    "events",
    "open_event_channel",
    "parse_last_event_id",
    "progress",
]

# Headers every SSE response carries. text/event-stream is what EventSource requires
# (anything else fails the connection for good); no-store keeps caches out of it;
# X-Accel-Buffering: no tells nginx-style proxies not to buffer this response.
SSE_HEADERS: Final = (
    ("content-type", "text/event-stream"),
    ("cache-control", "no-store"),
    ("x-accel-buffering", "no"),
)
# Events waiting for one client. 64 covers bursts of the demo streams many times over; a
# client that falls this far behind is cut off (see the module docstring).
CLIENT_QUEUE_SIZE: Final = 64
# How long a producer waits for room in a full queue. A reading client empties its queue
# in microseconds (a producer with no pause can still outrun the sender for a moment); a
# client whose socket is full for this long is not reading, and is cut off.
QUEUE_FULL_GRACE: Final = 1.0
# Events kept per stream for resumption: a client that reconnects within the last 1,024
# events misses nothing; an older Last-Event-ID is told which events are gone.
EVENT_LOG_SIZE: Final = 1024
# Streams with a log at once (least recently used dropped first), so that random stream
# names cannot grow memory without bound.
MAX_STREAMS: Final = 256
MAX_STREAM_NAME: Final = 64
# The last id a stream can have. An event's id is also the "seq" number in its JSON data,
# and integers beyond 2**53 - 1 are not exact in every JSON parser (RFC 8259 §6), not in
# JavaScript's JSON.parse above all; a larger Last-Event-ID is not one of ours.
MAX_EVENT_ID: Final = 2**53 - 1
# Digits in MAX_EVENT_ID (16): a Last-Event-ID with more significant digits is too large
# without converting it (int() of a long digit string is quadratic, and refused beyond
# sys.get_int_max_str_digits()).
_MAX_EVENT_ID_DIGITS: Final = len(str(MAX_EVENT_ID))
# Defaults: small enough for demos and tests. A heartbeat every 15 s is what keeps common
# proxies (60 s idle timeouts) from dropping an idle stream.
DEFAULT_EVENTS_PER_RESPONSE: Final = 5
DEFAULT_RETRY_MS: Final = 1000
DEFAULT_HEARTBEAT_MS: Final = 15_000
MAX_RETRY_MS: Final = 600_000
# A notification stream may be quiet for minutes (heartbeats keep it alive), so /events
# allows longer gaps than the token endpoints: up to ten minutes.
MAX_EVENT_INTERVAL_MS: Final = 600_000
MAX_HEARTBEAT_MS: Final = 600_000
MIN_HEARTBEAT_MS: Final = 10  # a heartbeat per millisecond would be a flood, not a keepalive


# -- the per-client channel -------------------------------------------------------------


@dataclass(eq=False)
class EventChannel:
    """The producer's side of one SSE response: ``await put(bytes)`` of encoded events."""

    _send: trio.MemorySendChannel[bytes]
    queued_high_water: int = 0  # the fullest the queue got, for tests and notebooks

    async def put(self, data: bytes) -> None:
        """Queue one encoded event. If the queue is full, wait at most QUEUE_FULL_GRACE
        for room; a client still that far behind is cut off (see the module docstring)."""
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            with trio.move_on_after(QUEUE_FULL_GRACE):
                await self._send.send(data)
                return
            size = self._send.statistics().max_buffer_size
            raise AbortResponse(
                f"client too slow: {size} events queued and unsent for {QUEUE_FULL_GRACE} s"
            ) from None
        used = self._send.statistics().current_buffer_used
        self.queued_high_water = max(self.queued_high_water, used)


async def _sender(
    response: ResponseStream,
    receive: trio.MemoryReceiveChannel[bytes],
    heartbeat: float,
) -> None:
    async with receive:
        while True:
            with trio.move_on_after(heartbeat) as scope:
                try:
                    data = await receive.receive()
                except trio.EndOfChannel:
                    return
            if scope.cancelled_caught:
                data = encode_comment(" heartbeat")
            await response.send(data)


@asynccontextmanager
async def open_event_channel(
    response: ResponseStream,
    *,
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
    queue_size: int = CLIENT_QUEUE_SIZE,
    headers: tuple[tuple[str, str], ...] = (),
) -> AsyncIterator[EventChannel]:
    """Start an SSE response; yield the channel to put encoded events into.

    On normal exit every queued event is sent, then the response ends.
    """
    await response.start(200, [*SSE_HEADERS, *headers])
    send, receive = trio.open_memory_channel[bytes](queue_size)
    channel = EventChannel(send)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sender, response, receive, heartbeat_ms / 1000)
            async with send:
                yield channel
    except BaseExceptionGroup as group:
        # The nursery wraps even a lone error; the servers expect the error itself (an
        # AbortResponse, say). Cancellation is left to trio.
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
    await response.end()


# -- the event log ----------------------------------------------------------------------


class EventLog:
    """Per-stream logs of the events sent, each bounded, the set of streams bounded too."""

    def __init__(self, size: int = EVENT_LOG_SIZE, streams: int = MAX_STREAMS) -> None:
        self.size = size
        self.streams = streams
        self._logs: OrderedDict[str, deque[tuple[int, bytes]]] = OrderedDict()

    def _log(self, stream: str) -> deque[tuple[int, bytes]]:
        log = self._logs.get(stream)
        if log is None:
            log = self._logs[stream] = deque(maxlen=self.size)
            while len(self._logs) > self.streams:
                self._logs.popitem(last=False)
        self._logs.move_to_end(stream)
        return log

    def record(self, stream: str, event_id: int, data: bytes) -> None:
        """Log event ``event_id`` if it is the successor of the newest logged (1 for an
        empty log); any other event is left out, so the log never has a gap."""
        log = self._log(stream)
        newest = log[-1][0] if log else 0
        if event_id == newest + 1:
            log.append((event_id, data))

    def since(self, stream: str, last_id: int) -> tuple[list[tuple[int, bytes]], int | None]:
        """Logged events after ``last_id``, and the first id that is gone (if any are)."""
        log = self._log(stream)
        if log and last_id + 1 < log[0][0]:
            return list(log), last_id + 1
        return [(i, d) for i, d in log if i > last_id], None

    def newest(self, stream: str) -> int:
        log = self._log(stream)
        return log[-1][0] if log else 0


EVENT_LOG = EventLog()


def parse_last_event_id(value: str | None) -> tuple[int, str | None]:
    """The id a request's Last-Event-ID resumes after (0: from the start), and a comment
    for the client when the value is not an id of ours (see the module docstring)."""
    if value is None:
        return 0, None
    if not (value.isascii() and value.isdigit()):
        return 0, f"Last-Event-ID {value[:40]!r} is not one of ours; from the start"
    significant = value.lstrip("0")
    if len(significant) > _MAX_EVENT_ID_DIGITS or int(significant or "0") > MAX_EVENT_ID:
        return 0, (
            f"Last-Event-ID {value[:40]!r} is beyond the last event id {MAX_EVENT_ID};"
            " from the start"
        )
    return int(significant or "0"), None


def _stream_event(stream: str, seq: int, multiline: bool) -> str:
    # Event seq carries token seq - 1 of the stream's reply, made directly: constant work
    # per event, whatever seq is.
    word = token_at(stream, seq - 1).strip() if seq else ""
    # multiline: the same JSON, indented, so that it takes several data: lines.
    return json.dumps({"seq": seq, "stream": stream, "word": word}, indent=1 if multiline else None)


async def events(request: Request, response: ResponseStream) -> None:
    """Numbered events with ids and a retry field; resumable; ends after ``n`` events.

    ``stream`` names the event sequence (and its log); ``total`` (0: no end) is how many
    events the stream has, after which a reconnecting client gets 204 (stop);
    ``multiline=1`` spreads each event's JSON over several ``data:`` lines. A
    ``Last-Event-ID`` is read by :func:`parse_last_event_id` (see the module docstring).
    """
    stream = request.query.get("stream", "default")
    if not stream or len(stream) > MAX_STREAM_NAME or not stream.isprintable():
        raise HTTPError(400, f"stream must be 1..{MAX_STREAM_NAME} printable characters\n")
    n = int_param(request, "n", DEFAULT_EVENTS_PER_RESPONSE, 1, MAX_N)
    total = int_param(request, "total", 0, 0, 10 * MAX_N)
    interval = (
        int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_EVENT_INTERVAL_MS) / 1000
    )
    retry_ms = int_param(request, "retry_ms", DEFAULT_RETRY_MS, 0, MAX_RETRY_MS)
    heartbeat_ms = int_param(
        request, "heartbeat_ms", DEFAULT_HEARTBEAT_MS, MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS
    )
    multiline = int_param(request, "multiline", 0, 0, 1) == 1
    last_id, note = parse_last_event_id(request.header("last-event-id"))
    last_event = total or MAX_EVENT_ID
    if last_id >= last_event:
        # WHATWG §9.2.3: 204 No Content tells the EventSource to stop reconnecting.
        await response.start(204, [("cache-control", "no-store")])
        await response.end()
        return
    end_id = min(last_id + n, last_event)
    async with open_event_channel(response, heartbeat_ms=heartbeat_ms) as channel:
        # The reconnection time first, so it holds even if this response breaks early.
        await channel.put(_retry_field(retry_ms))
        if note:
            await channel.put(encode_comment(" " + note))
        # Only a resuming client (it sent Last-Event-ID) is replayed what it missed, at
        # once; a new client gets the stream from the start, at the stream's pace.
        replay, gone_from = EVENT_LOG.since(stream, last_id) if last_id else ([], None)
        next_id = last_id + 1
        if gone_from is not None:
            first_kept = replay[0][0] if replay else EVENT_LOG.newest(stream) + 1
            await channel.put(
                encode_comment(f" events {gone_from}..{first_kept - 1} are no longer in the log")
            )
            next_id = first_kept
        sent = 0
        for event_id, data in replay:
            if event_id > end_id:
                break
            await channel.put(data)
            next_id = event_id + 1
            sent += 1
        schedule = Schedule(interval)
        if sent:
            schedule.start()  # after a replay, the next new event one interval later
        while next_id <= end_id:
            await schedule.tick()
            data = encode_event(_stream_event(stream, next_id, multiline), id=str(next_id))
            EVENT_LOG.record(stream, next_id, data)
            await channel.put(data)
            next_id += 1
            sent += 1


def _retry_field(retry_ms: int) -> bytes:
    # A retry field in a block of its own: it takes effect as soon as it is parsed, and the
    # blank line after it dispatches nothing (the data buffer is empty).
    return f"retry: {retry_ms}\n\n".encode()


async def progress(request: Request, response: ResponseStream) -> None:
    """Named ``progress`` events, then one ``result`` event; ``fail_at=K`` sends an
    ``error`` event at step K instead and ends the stream."""
    n = int_param(request, "n", DEFAULT_EVENTS_PER_RESPONSE, 1, MAX_N)
    interval = int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_INTERVAL_MS) / 1000
    fail_at = int_param(request, "fail_at", 0, 0, MAX_N)
    heartbeat_ms = int_param(
        request, "heartbeat_ms", DEFAULT_HEARTBEAT_MS, MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS
    )
    async with open_event_channel(response, heartbeat_ms=heartbeat_ms) as channel:
        schedule = Schedule(interval)
        for step in range(1, n + 1):
            await schedule.tick()
            if step == fail_at:
                error = {"step": step, "message": f"step {step} failed (fail_at={fail_at})"}
                await channel.put(encode_event(json.dumps(error), event="error"))
                return
            percent = math.floor(100 * step / n)
            body = {"step": step, "of": n, "percent": percent}
            await channel.put(encode_event(json.dumps(body), event="progress"))
        result = {"steps": n, "words": tokens_for("progress", n)}
        await channel.put(encode_event(json.dumps(result), event="result"))


async def chat_sse(response: ResponseStream, words: list[str], interval: float) -> None:
    """POST /chat as SSE: ``data: {"token": ...}`` per token, then ``data: [DONE]``."""
    async with open_event_channel(response) as channel:
        schedule = Schedule(interval)
        for i, token in enumerate(words):
            await schedule.tick()
            await channel.put(encode_event(json.dumps({"index": i, "token": token})))
        await channel.put(encode_event(DONE))
