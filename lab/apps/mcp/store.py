"""The bounded event store behind resumable MCP streams (revision 2025-11-25).

A session's server-to-client messages travel on *streams*: stream 0 is the one a client
opens with ``GET /mcp``; every POST answered with SSE opens the next one (1, 2, ...). Each
message becomes one SSE event whose id names its stream and its place in it::

    id: 3-5          the 5th event of stream 3
    data: {"jsonrpc":"2.0","method":"notifications/progress",...}

So the id is unique across the session, as transports.mdx §"Resumability and Redelivery"
requires, and a ``Last-Event-ID: 3-5`` tells the server which stream was cut and where:
it replays events 3-6, 3-7, ... of stream 3, never another stream's ("The server MUST
NOT replay messages that would have been delivered on a different stream").

The producer (a tool call, the session's log) *appends* to a :class:`StreamLog`; the
connection that carries the stream *reads* it from a cursor. The two are decoupled on
purpose: a dropped connection loses nothing that is still in the log, and the tool keeps
running for a while (2025-11-25: "Disconnection SHOULD NOT be interpreted as the client
cancelling its request"), at most ``McpLimits.detached_call_timeout`` seconds without a
reader. Only one connection reads a stream at a time; a resumption takes the
stream over from a connection that is still attached (one that the server has not yet
noticed is dead), because the spec forbids sending a message on two streams.

Everything is bounded: events kept per stream, and streams kept per session (closed
streams are dropped oldest first; streams still being written are bounded by the calls a
session may have in flight). A resumption from an event that was dropped gets the
oldest events still kept, after an SSE comment saying which ones are gone.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

import trio

from lab.wire.sse import encode_event

__all__ = ["GET_STREAM", "EventStore", "StreamLog", "event_id", "parse_event_id"]

# The stream a client opens with GET; POST streams are numbered from 1.
GET_STREAM: Final = 0
_EVENT_ID = re.compile(r"(\d{1,9})-(\d{1,15})")


def event_id(stream_id: int, seq: int) -> str:
    return f"{stream_id}-{seq}"


def parse_event_id(value: str) -> tuple[int, int] | None:
    """``"3-5"`` -> ``(3, 5)``; None for anything this server did not hand out."""
    match = _EVENT_ID.fullmatch(value.strip())
    if match is None:
        return None
    return int(match[1]), int(match[2])


@dataclass(eq=False)
class StreamLog:
    """One stream's events, the newest ``size`` of them, and who is reading it."""

    stream_id: int
    size: int
    events: deque[tuple[int, bytes]] = field(default_factory=deque)
    last_seq: int = 0  # the id of the newest event appended; 0 before the first
    closed: bool = False  # no more events will come: the stream ends after the last one
    reader: int = 0  # which attach() owns the stream; an older reader stops
    attached: bool = False  # a connection is reading the stream now
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)

    def append(self, data: str) -> bytes:
        """Add one message (its JSON text); return the encoded SSE event."""
        if self.closed:
            raise RuntimeError(f"stream {self.stream_id} is closed")
        self.last_seq += 1
        encoded = encode_event(data, id=event_id(self.stream_id, self.last_seq))
        self.events.append((self.last_seq, encoded))
        while len(self.events) > self.size:
            self.events.popleft()
        self._wake()
        return encoded

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake()

    def attach(self) -> int:
        """Become the stream's one reader; the previous reader, if any, is told to stop."""
        self.reader += 1
        self.attached = True
        self._wake()
        return self.reader

    def detach(self, reader: int) -> bool:
        """``reader`` stops reading; False if a newer reader had taken the stream over."""
        if self.reader != reader:
            return False
        self.attached = False
        return True

    def since(self, seq: int) -> tuple[list[tuple[int, bytes]], int | None]:
        """Events after ``seq``, and the first id that was already dropped (if any was)."""
        if self.events and seq + 1 < self.events[0][0]:
            return list(self.events), seq + 1
        if not self.events and seq < self.last_seq:
            return [], seq + 1
        return [(s, e) for s, e in self.events if s > seq], None

    async def wait_beyond(self, seq: int, reader: int) -> None:
        """Return once there is an event after ``seq``, the stream closed, or ``reader``
        lost the stream to a newer one."""
        while self.last_seq <= seq and not self.closed and self.reader == reader:
            await self._changed.wait()

    def _wake(self) -> None:
        # A fresh Event per change: everyone waiting on the old one wakes once.
        self._changed.set()
        self._changed = trio.Event()


class EventStore:
    """A session's streams: at most ``max_streams`` logs of at most ``events_per_stream``."""

    def __init__(self, *, events_per_stream: int, max_streams: int) -> None:
        self.events_per_stream = events_per_stream
        self.max_streams = max_streams
        self._streams: OrderedDict[int, StreamLog] = OrderedDict()
        self._next_id = GET_STREAM + 1
        self._streams[GET_STREAM] = StreamLog(GET_STREAM, events_per_stream)

    def open(self) -> StreamLog:
        """A new stream for a POST response, dropping the oldest closed ones over the limit."""
        log = StreamLog(self._next_id, self.events_per_stream)
        self._next_id += 1
        self._streams[log.stream_id] = log
        if len(self._streams) > self.max_streams:
            for old in [s for s in self._streams.values() if s.closed]:
                del self._streams[old.stream_id]
                if len(self._streams) <= self.max_streams:
                    break
        return log

    def get(self, stream_id: int) -> StreamLog | None:
        return self._streams.get(stream_id)

    @property
    def get_stream(self) -> StreamLog:
        return self._streams[GET_STREAM]

    def live(self) -> int:
        """Streams whose producer is still running (the GET stream not counted)."""
        return sum(1 for s in self._streams.values() if not s.closed) - (
            0 if self.get_stream.closed else 1
        )

    def close_all(self) -> None:
        for log in self._streams.values():
            log.close()

    def __len__(self) -> int:
        return len(self._streams)
