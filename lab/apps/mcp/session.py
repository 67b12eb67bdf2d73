"""MCP sessions (revision 2025-11-25): ids, the bounded table, expiry, eviction, and the
calls that outlive the request that started them.

A session begins when a client POSTs ``initialize``: the response carries
``Mcp-Session-Id``, and every later request must send it back (transports.mdx §"Session
Management"). The id is 32 characters from ``secrets.token_urlsafe``: 192 random bits, in
``[A-Za-z0-9_-]``, inside the visible-ASCII range (0x21-0x7E) the spec requires.

A session is *established* once its client has finished the handshake
(``notifications/initialized``, lifecycle.mdx §"Initialization") and then sent one more
request of any kind. Anyone can mint sessions with one bare ``initialize`` each, so until
a session is established it is cheap to lose: it expires sooner and is evicted first.

The table is bounded, and a session ends in one of three ways:

- ``DELETE /mcp`` with its id (the client is done);
- *expiry*: no request for :attr:`McpLimits.session_idle_timeout` seconds (an
  established session) or :attr:`McpLimits.new_session_timeout` (one that is not) while
  nothing of the session runs (no call in flight, no stream being read). Expiry is lazy:
  it is noticed when the id is next used, or when the table needs room;
- *eviction* when the table is full and a new client initializes. Policy, in order:
  expired sessions go first; then, least recently used first within each class, a
  session that is not established; then an idle established one; then one whose only
  activity is a reader of its GET stream or calls whose client has left. A session with
  a call in flight whose client is connected and reading the call's stream is never
  evicted; if every session is such, the new ``initialize`` is refused with 503 and
  ``Retry-After``. An evicted client gets 404 on its next request, which the spec tells it
  to answer by initializing again (transports.mdx §"Session Management").

So the only way to hold a slot against newcomers is to stay connected to a running call:
nothing a client leaves behind keeps a slot. A call whose stream no client reads runs on
for :attr:`McpLimits.detached_call_timeout` seconds (long enough to reconnect and resume
with ``Last-Event-ID``), then is stopped; what it stored is bounded by
:attr:`McpLimits.events_per_stream`.

An ended session's id is forgotten, so it answers 404 exactly like an id never issued.
Ending a session cancels its calls and ends its streams.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

import trio

from lab.apps.mcp.messages import RequestId
from lab.apps.mcp.store import EventStore, StreamLog

__all__ = [
    "LOG_LEVELS",
    "Call",
    "McpLimits",
    "Session",
    "SessionTable",
    "SessionsFull",
    "new_session_id",
]

log = logging.getLogger("lab.mcp")

# RFC 5424 severities, least severe first (logging.mdx §"Log Levels").
LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
# What a session logs before the client sends logging/setLevel: the spec leaves it to the
# server; "info" shows the tool calls starting and ending without debug chatter.
DEFAULT_LOG_LEVEL: Final = "info"
# secrets.token_urlsafe(24): 24 random bytes, 32 characters.
SESSION_ID_BYTES: Final = 24


@dataclass(frozen=True, slots=True)
class McpLimits:
    # Sessions at once. Each may hold up to streams_per_session x events_per_stream stored
    # events (~250 bytes each for this server's messages), so 64 sessions cost at most
    # ~64 MiB even if every one of them filled its store; in practice a few KiB each.
    # A full table makes room by eviction (see the module docstring), so the number bounds
    # memory, not how many clients may come and go.
    max_sessions: int = 64
    # An established session with nothing running that sees no request for this long is
    # ended. Ten minutes outlasts a reader pausing between notebook cells.
    session_idle_timeout: float = 600.0
    # The same for a session that is not established (no notifications/initialized, or
    # no request after it). An SDK client sends both within milliseconds of the
    # initialize response, and a person typing the handshake into curl within a minute;
    # a session that stays half-made longer was minted and forgotten.
    new_session_timeout: float = 60.0
    # One JSON-RPC message (the POST body) -> 413. This server's messages are under 1 KiB;
    # 256 KiB leaves room for large tool arguments while json.loads (not incremental)
    # stays cheap. The HTTP servers' own 1 MiB limit is checked first.
    max_message_size: int = 256 * 1024
    # Events kept per stream for resumption. A stream_tokens call sends one progress event
    # per token plus its response, so a default call (8 tokens) is kept whole many times
    # over; a longer one loses its oldest progress events first. This also bounds what a
    # call whose client left can store before it is stopped.
    events_per_stream: int = 256
    # Streams kept per session (the GET stream and POST streams whose call has ended; a
    # stream whose call still runs is never dropped, and those are bounded by
    # max_calls_per_session).
    streams_per_session: int = 16
    # Calls in flight at once in one session -> 429. Demo clients run one or two.
    max_calls_per_session: int = 8
    # How long a call keeps running while no connection reads its stream (2025-11-25
    # transports.mdx: a disconnection "SHOULD NOT be interpreted as the client cancelling
    # its request", so the call waits for a resumption). The SDK clients reconnect after
    # the priming event's retry (1 s) and give up after two attempts; 30 s covers that
    # with a wide margin, and a person re-running a cell. Then the call is stopped and
    # its stream ends with an error response, so a late resumption still gets an answer.
    detached_call_timeout: float = 30.0


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


@dataclass(eq=False)
class Call:
    """A 2025-11-25 call in flight: the stream it answers on, and what stops it.

    The scope's deadline is the detached-call timer: unset (infinite) while a connection
    reads the stream, ``timeout`` seconds away while none does. It starts set, so that a
    call whose POST never got to read its own stream is stopped too.
    """

    request_id: RequestId
    stream: StreamLog
    timeout: float  # McpLimits.detached_call_timeout
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: bool = False  # stop() was called: by notifications/cancelled or the session

    def __post_init__(self) -> None:
        self.reader_left()

    @property
    def connected(self) -> bool:
        """A connection is reading the call's stream right now."""
        return self.stream.attached

    def reader_came(self) -> None:
        self.scope.deadline = math.inf

    def reader_left(self) -> None:
        self.scope.deadline = trio.current_time() + self.timeout

    def stop(self) -> None:
        self.stopped = True
        self.scope.cancel()

    @property
    def abandoned(self) -> bool:
        """After the call ended: stopped by its deadline (no reader for ``timeout``)."""
        return self.scope.cancelled_caught and not self.stopped


@dataclass(eq=False)
class Session:
    id: str
    protocol_version: str
    store: EventStore
    last_active: float
    log_level: str = DEFAULT_LOG_LEVEL
    initialized: bool = False  # notifications/initialized arrived
    used: bool = False  # a request other than initialize and notifications/initialized
    closed: bool = False
    readers: int = 0  # connections reading one of its streams right now
    calls: dict[RequestId, Call] = field(default_factory=dict)
    cancelled: list[RequestId] = field(default_factory=list)  # by notifications/cancelled

    @property
    def established(self) -> bool:
        """The client finished the handshake and came back: not a forgotten session."""
        return self.initialized and self.used

    @property
    def busy(self) -> bool:
        """Something of the session runs: it does not expire."""
        return bool(self.readers or self.calls)

    @property
    def protected(self) -> bool:
        """A client is connected to a call in flight: it is not evicted."""
        return any(call.connected for call in self.calls.values())

    def call_on(self, stream: StreamLog) -> Call | None:
        """The call in flight that answers on ``stream``, if any."""
        return next((c for c in self.calls.values() if c.stream is stream), None)

    def wants(self, level: str) -> bool:
        """Whether a log message at ``level`` passes the client's logging/setLevel."""
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(self.log_level)

    def cancel(self, request_id: RequestId) -> bool:
        """Stop the call ``request_id`` (cancellation.mdx); False if none is running."""
        call = self.calls.get(request_id)
        if call is None:
            return False
        self.cancelled.append(request_id)
        call.stop()
        return True

    def close(self) -> None:
        self.closed = True
        for call in self.calls.values():
            call.stop()
        self.store.close_all()


class SessionsFull(Exception):
    """Every session slot is held by a client connected to a call in flight."""


class SessionTable:
    """The sessions of one endpoint, bounded, least recently used first."""

    def __init__(self, limits: McpLimits) -> None:
        self.limits = limits
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.expired = 0  # sessions ended by expiry, for tests and notebooks
        self.evicted = 0  # sessions ended to make room

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        if session.busy:
            return False
        limits = self.limits
        timeout = limits.session_idle_timeout if session.established else limits.new_session_timeout
        return now - session.last_active > timeout

    @staticmethod
    def _eviction_class(session: Session) -> int:
        """Which sessions go first when the table is full (lower first)."""
        if not session.established:
            return 0
        if not session.busy:
            return 1
        return 2  # reading its GET stream, or calls whose client left

    def create(self, protocol_version: str) -> Session:
        now = trio.current_time()
        for session in [s for s in self._sessions.values() if self._expired(s, now)]:
            self._end(session)
            self.expired += 1
        if len(self._sessions) >= self.limits.max_sessions:
            # min() keeps the first of equals: the least recently used of the class.
            candidates = (s for s in self._sessions.values() if not s.protected)
            victim = min(candidates, key=self._eviction_class, default=None)
            if victim is None:
                raise SessionsFull
            kind = ("not established", "idle", "with no call connected")
            log.info("MCP session table full: evicting a session (%s)",
                     kind[self._eviction_class(victim)])  # fmt: skip
            self._end(victim)
            self.evicted += 1
        session = Session(
            id=new_session_id(),
            protocol_version=protocol_version,
            store=EventStore(
                events_per_stream=self.limits.events_per_stream,
                max_streams=self.limits.streams_per_session,
            ),
            last_active=now,
        )
        self._sessions[session.id] = session
        return session

    def lookup(self, session_id: str) -> Session | None:
        """The live session with this id (its activity noted: it is now the most recently
        used), or None."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = trio.current_time()
        if self._expired(session, now):
            self._end(session)
            self.expired += 1
            return None
        session.last_active = now
        self._sessions.move_to_end(session_id)
        return session

    def peek(self, session_id: str) -> Session | None:
        """The session with this id as it stands, for tests and notebooks: unlike
        :meth:`lookup`, neither a use nor an expiry check."""
        return self._sessions.get(session_id)

    def end(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        if session is None:
            return False
        self._end(session)
        return True

    def _end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        session.close()

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self._end(session)
