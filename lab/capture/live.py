"""The live feed: a server's connections as they happen, for the wire viewer (``GET /lab/``).

A server with the viewer on (``Server(viewer=True)``) opens one :class:`LiveConnection`
per accepted connection and taps the connection with its :meth:`~LiveConnection.add` as
the tap's sink (:class:`lab.capture.tap.TappedStream`), so each record reaches the feed as
it is recorded. The feed keeps what the limits allow (:class:`FeedLimits`), annotates it
record by record (:class:`lab.capture.liverows.RowMaker`) and publishes one event per
record into a bounded log, which the viewer's endpoint (lab.apps.viewer) sends to each
page as Server-Sent Events (WHATWG HTML §9.2).

What it costs, and what it keeps:

- **The hot path** (the connection's own task) only appends the record to a list and,
  while someone watches, puts the connection on the feed's to-do list once. The decoding
  is done by the feed's own task (:meth:`LiveFeed.run`), a bounded number of records per
  turn; nothing is decoded until the first viewer subscribes.
- **Per connection**: the first ``records_per_connection`` records, at most
  ``bytes_per_connection`` bytes (each record counted with :data:`RECORD_COST` bytes of
  bookkeeping). What comes later is counted, not kept, and the page says so: the kept
  records are always the connection's beginning, so they still decode.
- **In total**: ``connections`` connections shown (oldest dropped first, with an event
  saying so), as many more not yet classified (accepted, no request read yet), and
  ``total_bytes`` for all of them together (oldest dropped first).
- **The log** of published events, for pages that reconnect with ``Last-Event-ID``
  (§9.2.4): ``log_events`` events and ``log_bytes`` bytes, oldest dropped first. An id
  the log no longer holds (or one from another server run) starts the page again from a
  ``hello`` snapshot.

**The viewer's own connections are not in the feed.** The protocol modules report each
request's target as they read it, before its handler runs (:meth:`LiveConnection.request`);
a connection whose request is for :data:`VIEWER_PATH` is dropped from the feed at once and
records nothing more, so the feed never shows (or feeds on) its own traffic. Until its
first request a connection's rows are held back, so a viewer's connection never flashes
up either. A connection shown before it carried a viewer request (a keep-alive connection
a browser reuses) is withdrawn with a ``gone`` event.

Events (``event:`` name, JSON ``data``; ``n`` is the server's connection number):
``conn`` (a connection to show: protocol, addresses, first request), ``row`` (one record:
:mod:`lab.capture.liverows`), ``limit`` (its per-connection limit was reached), ``close``
(it ended; what the end completed, and the counts), ``dropped`` (no longer kept: over a
limit), ``gone`` (withdrawn: it carries the viewer), and ``hello`` (a snapshot of what
is kept, sent first to a page that starts or restarts; it has no id).
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Final

import trio

from lab.capture.liverows import RowMaker
from lab.capture.names import connection_stem
from lab.capture.records import ConnectionTrace, Record
from lab.capture.trace import Trace
from lab.wire.sse_encode import encode_event

__all__ = [
    "CONNECTION_COST",
    "FEED_TICK",
    "HELD_ROWS",
    "RECORDS_PER_TURN",
    "RECORD_COST",
    "SINCE_BATCH",
    "VIEWER_PATH",
    "FeedBusy",
    "FeedLimits",
    "LiveConnection",
    "LiveFeed",
    "is_viewer_target",
]

log = logging.getLogger("lab.capture.live")

# The viewer's URL path: its page, its feed and its downloads are under it.
VIEWER_PATH: Final = "/lab"
# What a kept record costs beyond its data: the Record object (~56 bytes), its bytes
# object's header (~33) and its float (~24), rounded up.
RECORD_COST: Final = 120
# What a kept connection costs before any record: its objects and, once a viewer
# watches, its decoders' state between records.
CONNECTION_COST: Final = 2048
# Rows held back until a connection's first request says whether it is the viewer's
# own: a request head arrives in a few records; a connection that dribbles more than
# this before its first request (a slow head) is shown anyway.
HELD_ROWS: Final = 64
# Records the feed decodes for one connection before other tasks get a turn: each is at
# most one receive (64 KiB), so a turn stays around a millisecond.
RECORDS_PER_TURN: Final = 32
# How often the feed's task wakes while records come in: every wake costs a few task
# switches and a write to each page, so the feed decodes and publishes what came in the
# last 10 ms at once (a 200-token stream cost the server 26 ms with a page watching, woken
# per record; 10 ms later than the record is still live to the eye).
FEED_TICK: Final = 0.01
# Drop notices a new page is told about (the rest are counted).
DROP_NOTICES: Final = 64
# Events handed to a viewer's endpoint per call of LiveFeed.since().
SINCE_BATCH: Final = 64


class FeedBusy(Exception):
    """Too many viewers (or downloads) at once: the limit in the message."""


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """What a feed keeps; the server's values and why are in lab.server.limits."""

    connections: int
    records_per_connection: int
    bytes_per_connection: int
    total_bytes: int
    log_events: int
    log_bytes: int
    clients: int
    downloads: int


def is_viewer_target(target: str) -> bool:
    """Whether a request target is the viewer's own (its page, feed or a download)."""
    path = target.split("?", 1)[0]
    return path == VIEWER_PATH or path.startswith(VIEWER_PATH + "/")


class LiveConnection:
    """One connection as the feed keeps it; ``conn.records`` holds the kept records."""

    __slots__ = (
        "announced",
        "classified",
        "close_told",
        "conn",
        "cost",
        "cursor",
        "dirty",
        "ended",
        "feed",
        "full",
        "gone",
        "held",
        "limit_told",
        "lost_bytes",
        "lost_records",
        "maker",
        "method",
        "number",
        "opened",
        "protocol_known",
        "target",
    )

    def __init__(self, feed: LiveFeed, number: int, conn: ConnectionTrace, opened: float) -> None:
        self.feed = feed
        self.number = number
        self.conn = conn
        self.opened = opened  # wall-clock time it was accepted
        self.cost = CONNECTION_COST  # what it counts in the feed's total_bytes
        self.full = False  # a per-connection limit was reached: nothing more is kept
        self.lost_records = 0  # records (and their bytes) seen but not kept
        self.lost_bytes = 0
        self.protocol_known = False
        self.classified = False  # its first request was read (or it ended without one)
        self.method = ""  # the first request's
        self.target = ""
        self.ended = False
        self.gone = False  # dropped or withdrawn: add() keeps nothing more
        self.dirty = False  # on the feed's to-do list
        self.cursor = 0  # records decoded so far
        self.maker: RowMaker | None = None
        self.held: list[dict[str, Any]] = []  # rows held back until it is classified
        self.announced = False  # its ``conn`` event was published
        self.limit_told = False
        self.close_told = False

    # -- told by the tap and the server (the connection's own task) ----------------------

    def add(self, record: Record) -> None:
        """The tap's sink: keep ``record`` if the limits allow, and tell the feed."""
        if self.gone:
            return
        feed = self.feed
        limits = feed.limits
        cost = len(record.data) + RECORD_COST
        records = self.conn.records
        if (
            self.full
            or len(records) >= limits.records_per_connection
            or self.cost + cost > limits.bytes_per_connection
        ):
            self.lost_records += 1
            self.lost_bytes += len(record.data)
            if self.full and self.limit_told:
                return
            self.full = True
        else:
            records.append(record)
            self.cost += cost
            feed.kept_bytes += cost
            if feed.kept_bytes > limits.total_bytes:
                feed._shed()
        self.touch()

    def set_protocol(self, protocol: str) -> None:
        """The protocol the server chose (after sniffing): decoding can start."""
        self.conn.protocol = protocol
        self.protocol_known = True
        self.touch()

    def request(self, method: str, target: str) -> None:
        """A request was read on this connection (called before its handler runs)."""
        if self.gone:
            return
        if is_viewer_target(target):
            self.feed._withdraw(self)
            return
        if not self.classified:
            self.method, self.target = method, target
            self.feed._classify(self)
            self.touch()

    def end(self) -> None:
        """The connection is closed: no record follows."""
        self.ended = True
        if not self.gone and not self.classified:
            self.feed._classify(self)
        self.touch()

    def touch(self) -> None:
        """Put this connection on the feed's to-do list (while someone watches)."""
        feed = self.feed
        if feed.annotating and not self.dirty and not self.gone:
            self.dirty = True
            feed._dirty.append(self)
            feed._wake.set()

    # -- read by the viewer ----------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        conn = self.conn
        return {
            "n": self.number,
            "protocol": conn.protocol,
            "local": f"{conn.local[0]}:{conn.local[1]}",
            "peer": f"{conn.peer[0]}:{conn.peer[1]}",
            "tls": conn.tls,
            "opened": round(self.opened * 1000),
            "method": self.method,
            "target": self.target,
            "records": len(conn.records),
            "bytes": sum(len(r.data) for r in conn.records),
            "lost_records": self.lost_records,
            "lost_bytes": self.lost_bytes,
            "open": not self.ended,
        }

    def stem(self) -> str:
        """The file name (without suffix) its downloads get."""
        return connection_stem(self.number, self.method, self.target, self.opened)

    def trace(self) -> Trace:
        """What is kept of it, as a trace of one connection (a copy: it may grow)."""
        conn = self.conn
        copy = ConnectionTrace(
            side=conn.side, local=conn.local, peer=conn.peer, protocol=conn.protocol,
            records=list(conn.records), tls=conn.tls,
        )  # fmt: skip
        described = f"server side of connection {self.number}"
        if self.method:
            described += f": {self.method} {self.target}"
        if self.lost_records:
            described += (
                f"; only its first {len(copy.records)} records were kept by the live viewer"
                f" ({self.lost_records} more, {self.lost_bytes} bytes of data, were not)"
            )
        return Trace(name=self.stem(), description=described, connections=[copy])


class LiveFeed:
    """Every connection of one server, kept within ``limits`` and published as events."""

    def __init__(self, limits: FeedLimits) -> None:
        self.limits = limits
        # Ids are "EPOCH-SEQ": an id from another run of the server is not taken for ours.
        self.epoch = secrets.token_hex(4)
        self._pending: OrderedDict[int, LiveConnection] = OrderedDict()  # no request yet
        self._kept: OrderedDict[int, LiveConnection] = OrderedDict()  # shown, or to be
        self.kept_bytes = 0
        self.annotating = False  # set for good when the first viewer subscribes
        self._dirty: deque[LiveConnection] = deque()
        self._wake = trio.Event()
        self._log: deque[tuple[int, bytes]] = deque()
        self._log_bytes = 0
        self.last_seq = 0  # the newest event's number; 0 before the first
        self._new = trio.Event()  # set (and replaced) when events are published
        self.clients = 0
        self.downloads = 0
        self.notices: deque[dict[str, Any]] = deque(maxlen=DROP_NOTICES)
        self.dropped_total = 0
        self.withdrawn_total = 0
        self.closed = False

    # -- connections -----------------------------------------------------------------------

    def open(
        self, number: int, *, local: tuple[str, int], peer: tuple[str, int], tls: bool,
        opened: float,
    ) -> LiveConnection:  # fmt: skip
        """A new connection, accepted at wall-clock time ``opened``."""
        while len(self._pending) >= self.limits.connections:
            self._drop(next(iter(self._pending.values())), "over the limit of connections")
        conn = ConnectionTrace(side="server", local=local, peer=peer, tls=tls)
        live = LiveConnection(self, number, conn, opened)
        self._pending[number] = live
        self.kept_bytes += live.cost
        if self.kept_bytes > self.limits.total_bytes:
            self._shed()
        return live

    def connection(self, number: int) -> LiveConnection | None:
        """Connection ``number`` if it is kept."""
        return self._kept.get(number) or self._pending.get(number)

    def connections(self) -> list[LiveConnection]:
        """Every connection kept, oldest first."""
        return sorted([*self._kept.values(), *self._pending.values()], key=lambda c: c.number)

    def _classify(self, live: LiveConnection) -> None:
        live.classified = True
        self._pending.pop(live.number, None)
        while len(self._kept) >= self.limits.connections:
            self._drop(next(iter(self._kept.values())), "over the limit of connections")
        self._kept[live.number] = live

    def _shed(self) -> None:
        total = self.limits.total_bytes
        while self.kept_bytes > total and (self._kept or self._pending):
            oldest = min(itertools.chain(self._kept, self._pending))
            victim = self.connection(oldest)
            assert victim is not None
            self._drop(victim, f"over {total} bytes kept for all connections")

    def _forget(self, live: LiveConnection) -> None:
        live.gone = True
        self._kept.pop(live.number, None)
        self._pending.pop(live.number, None)
        self.kept_bytes -= live.cost
        live.cost = 0
        live.conn.records = []
        live.held = []
        live.maker = None

    def _drop(self, live: LiveConnection, reason: str) -> None:
        notice = {
            "n": live.number,
            "reason": reason,
            "method": live.method,
            "target": live.target,
            "records": len(live.conn.records) + live.lost_records,
        }
        self._forget(live)
        self.dropped_total += 1
        self.notices.append(notice)
        if self.annotating:
            self._publish("dropped", notice)

    def _withdraw(self, live: LiveConnection) -> None:
        announced = live.announced
        self._forget(live)
        self.withdrawn_total += 1
        if announced:
            reason = f"it now carries the viewer's own requests ({VIEWER_PATH}/...)"
            self._publish("gone", {"n": live.number, "reason": reason})

    # -- the feed's task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Decode what was recorded and publish it, until :meth:`close`."""
        task_status.started()
        while not self.closed:
            await self._wake.wait()
            await trio.sleep(FEED_TICK)  # what else comes meanwhile is decoded with it
            self._wake = trio.Event()
            while self._dirty and not self.closed:
                live = self._dirty.popleft()
                live.dirty = False
                try:
                    more = self._advance(live)
                except Exception as exc:  # one connection's view ends, not the feed
                    log.warning("live feed: connection %d not shown: %r", live.number, exc)
                    log.debug("live feed: traceback", exc_info=exc)
                    self._drop(live, f"the viewer failed to decode it: {exc!r}"[:200])
                    more = False
                if more:
                    live.touch()  # to the back of the list: every connection gets turns
                await trio.lowlevel.checkpoint()

    def _advance(self, live: LiveConnection) -> bool:
        """Decode up to RECORDS_PER_TURN of ``live``'s records; True if more are waiting."""
        if live.gone or not (live.protocol_known or live.ended):
            return False
        records = live.conn.records
        stop = min(len(records), live.cursor + RECORDS_PER_TURN)
        if live.maker is None and live.cursor < stop and live.conn.protocol:
            try:
                live.maker = RowMaker(live.conn)
            except ValueError:
                live.maker = None  # no decoder: bare rows
        while live.cursor < stop:
            index = live.cursor
            live.cursor += 1
            if live.maker is not None:
                row = live.maker.row(index, records[index])
            else:
                row = RowMaker.bare_row(live.conn, index, records[index])
            row["n"] = live.number
            if live.announced:
                self._publish("row", row)
            else:
                live.held.append(row)
        if not live.announced and (live.classified or len(live.held) >= HELD_ROWS):
            self._announce(live)
        if live.cursor < len(records):
            return True
        if live.full and not live.limit_told and live.announced:
            live.limit_told = True
            self._publish("limit", live.summary())
        if live.ended and not live.close_told and live.announced:
            live.close_told = True
            end = live.maker.finish() if live.maker is not None else {}
            live.maker = None  # its decoders are not needed any more
            self._publish("close", {**live.summary(), **end})
        return False

    def _announce(self, live: LiveConnection) -> None:
        live.announced = True
        self._publish("conn", live.summary())
        held, live.held = live.held, []
        for row in held:
            self._publish("row", row)

    def _publish(self, name: str, data: dict[str, Any]) -> None:
        self.last_seq += 1
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        encoded = encode_event(text, event=name, id=f"{self.epoch}-{self.last_seq}")
        self._log.append((self.last_seq, encoded))
        self._log_bytes += len(encoded)
        limits = self.limits
        while len(self._log) > 1 and (
            len(self._log) > limits.log_events or self._log_bytes > limits.log_bytes
        ):
            self._log_bytes -= len(self._log.popleft()[1])
        self._new.set()
        self._new = trio.Event()

    def close(self) -> None:
        """Stop the feed's task and release every viewer (the server is shutting down)."""
        self.closed = True
        self._wake.set()
        self._new.set()

    # -- for the viewer's endpoints --------------------------------------------------------

    @contextmanager
    def subscribe(self) -> Iterator[None]:
        """Count one viewer for as long as the block runs; FeedBusy past the limit.

        The first viewer starts the decoding: every connection kept so far is decoded
        from its first record, so the page sees them too.
        """
        if self.clients >= self.limits.clients:
            raise FeedBusy(f"{self.clients} viewers follow the feed already (the limit)")
        self.clients += 1
        if not self.annotating:
            self.annotating = True
            for live in [*self._pending.values(), *self._kept.values()]:
                live.touch()
        try:
            yield
        finally:
            self.clients -= 1

    @contextmanager
    def download(self) -> Iterator[None]:
        """Count one download for as long as the block runs; FeedBusy past the limit."""
        if self.downloads >= self.limits.downloads:
            raise FeedBusy(f"{self.downloads} downloads are being made already (the limit)")
        self.downloads += 1
        try:
            yield
        finally:
            self.downloads -= 1

    @property
    def first_seq(self) -> int:
        """The oldest event the log still holds (one past the newest if it is empty)."""
        return self._log[0][0] if self._log else self.last_seq + 1

    def start(self, last_event_id: str | None) -> tuple[int, bool]:
        """Where a viewer that sent ``last_event_id`` starts: after which event, and
        whether it needs a ``hello`` first (it is new, or its id is not in the log)."""
        if last_event_id:
            epoch, _, seq = last_event_id.partition("-")
            # 16 digits: a longer number is none of ours, and int() of it would cost.
            if epoch == self.epoch and seq.isascii() and seq.isdigit() and len(seq) <= 16:
                number = int(seq)
                if self.first_seq - 1 <= number <= self.last_seq:
                    return number, False
        return self.first_seq - 1, True

    def since(self, seq: int) -> list[tuple[int, bytes]] | None:
        """Up to SINCE_BATCH events after event ``seq``; None if some of them are gone."""
        first = self.first_seq
        if seq < first - 1:
            return None
        skip = seq + 1 - first
        return list(itertools.islice(self._log, skip, skip + SINCE_BATCH))

    async def wait_beyond(self, seq: int) -> None:
        """Return once an event newer than ``seq`` is published (or the feed closes)."""
        while self.last_seq <= seq and not self.closed:
            await self._new.wait()

    def hello(self) -> bytes:
        """The snapshot a starting page gets: the limits, what is shown, what was dropped."""
        shown = [live.summary() for live in self._kept.values() if live.announced]
        data = {
            "epoch": self.epoch,
            "limits": asdict(self.limits),
            "connections": shown,
            "dropped": list(self.notices),
            "dropped_total": self.dropped_total,
            "first": self.first_seq,
            "last": self.last_seq,
        }
        return encode_event(json.dumps(data, separators=(",", ":")), event="hello")

    def stats(self) -> dict[str, int]:
        """What the feed holds now (``GET /stats`` lists it with its server)."""
        return {
            "viewer_connections": len(self._kept) + len(self._pending),
            "viewer_kept_bytes": self.kept_bytes,
            "viewer_log_events": len(self._log),
            "viewer_log_bytes": self._log_bytes,
            "viewer_clients": self.clients,
        }
