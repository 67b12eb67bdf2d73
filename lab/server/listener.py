"""The listening socket: accept, pick the protocol, run one task per connection, shut down.

One port serves every protocol the lab speaks; the listener reads the first bytes of a
connection to tell HTTP/2's client preface (h2c) from an HTTP/1.1 request.

Two ways to watch the connections, both through the tap (lab.capture.tap):

- ``trace_dir``: each connection's whole trace is written there when it closes, as
  ``.trace`` and ``.pcapng`` side by side, named by when it was accepted, its number and
  its first request (lab.capture.names), never over an earlier file; while it is open,
  at most ``Limits.trace_bytes_held`` of its records are in memory, the older ones in a
  temporary file beside them (lab.capture.spill);
- ``viewer=True``: every connection goes to the server's live feed (lab.capture.live),
  within the ``viewer_*`` limits, which the wire viewer's endpoints (``GET /lab/``) read
  through ``request.feed``.

The protocol modules log one line per request (logger ``lab.server``, INFO).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from lab.capture.live import FeedLimits, LiveConnection, LiveFeed
from lab.capture.names import claim_stem, connection_stem, utc_stamp
from lab.capture.spill import SpilledRecords
from lab.capture.spillsave import write_spilled
from lab.capture.store import write_capture
from lab.capture.tap import TappedStream, socket_addresses
from lab.capture.trace import ConnectionTrace, Record, Trace
from lab.server.background import ServerTasks
from lab.server.budget import AddressBudgets, ServerBudget
from lab.server.closing import LingeringTransport
from lab.server.connection import ConnectionState, http_date
from lab.server.faults import boundary
from lab.server.http1 import serve_http1
from lab.server.http2 import PREFACE, serve_h2
from lab.server.interface import Handler
from lab.server.limits import Limits
from lab.server.reports import register, unregister
from lab.server.tls import TLSConfig

__all__ = ["ConnectionState", "Server", "serve_tcp", "sniff"]

log = logging.getLogger("lab.server")


class Server:
    """A running lab server; ``await nursery.start(serve_tcp, ...)`` returns one."""

    def __init__(
        self,
        app: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits | None = None,
        trace_dir: Path | None = None,
        date_source: Callable[[], bytes] = http_date,
        tls: TLSConfig | None = None,
        viewer: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.date_source = date_source
        self.tls = tls
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.trace_dir = trace_dir
        # When each connection was accepted, for its trace file's name.
        self.wall_clock = wall_clock
        self.feed = LiveFeed(_feed_limits(self.limits)) if viewer else None
        self.spills: set[SpilledRecords] = set()  # the records of the open traced connections
        self.connections: set[ConnectionState] = set()
        self.accepted = 0
        self._accept_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._no_connections = trio.Event()
        self._no_connections.set()
        self._connection_closed = trio.Event()  # set (and replaced) as each one ends
        self.bodies = ServerBudget(self.limits.max_buffered_bodies)
        self.addresses = AddressBudgets(
            self.limits.h2_control_frames_per_address_per_second, self.limits.max_addresses
        )
        self._shutting_down = False
        self.background = ServerTasks()  # app work that outlives a request

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def serve(
        self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        register(self.stats)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.background.run)
                if self.feed is not None:
                    await nursery.start(self._run_feed, self.feed)
                nursery.start_soon(self._accept, listeners, nursery)
                task_status.started(self)
        finally:
            unregister(self.stats)

    def stats(self) -> dict[str, int | str]:
        """What this server holds now (``GET /stats`` lists it)."""
        return {
            "url": self.url,
            "accepted": self.accepted,
            "connections": len(self.connections),
            "tasks": _count_tasks(self._nursery) if self._nursery is not None else 0,
            "buffered_body_bytes": self.bodies.used,
            "bodies_refused": self.bodies.refused,
            "background_tasks": self.background.running,
            **(self.feed.stats() if self.feed is not None else {}),
            **(self._trace_stats() if self.trace_dir is not None else {}),
        }

    def _trace_stats(self) -> dict[str, int | str]:
        spills = list(self.spills)
        return {
            "trace_records_held": sum(len(s.conn.records) for s in spills),
            "trace_bytes_held": sum(s.held for s in spills),
            "trace_records_spilled": sum(s.spilled for s in spills),
        }

    @staticmethod
    async def _run_feed(
        feed: LiveFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # A fault in the feed ends the feed (viewers see no more), never the server.
        with boundary("live feed"):
            await feed.run(task_status=task_status)

    async def _accept(self, listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
        try:
            with self._accept_scope:
                await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)
        finally:
            for listener in listeners:
                await listener.aclose()

    async def wait_no_connections(self) -> None:
        """Return once no connection is open and every trace is written (at once if none is)."""
        await self._no_connections.wait()

    async def wait_connections(self, at_most: int) -> None:
        """Return once at most ``at_most`` connections are open (their traces written)."""
        while len(self.connections) > at_most:
            await self._connection_closed.wait()

    def shutdown(self) -> None:
        """Stop accepting, close idle connections, let streams finish within the grace."""
        if self._shutting_down or self._nursery is None:
            return
        self._shutting_down = True
        self._accept_scope.cancel()
        if self.feed is not None:
            self.feed.close()  # viewers' streams end, so their connections can close
        for state in list(self.connections):
            state.close_when_idle()
        self._nursery.start_soon(self._cancel_after_grace)

    async def _cancel_after_grace(self) -> None:
        # Each connection ends its own streams when the grace is over (HTTP/2 resets
        # them); the server cancels what is left only after that had time to be written.
        with trio.move_on_after(self.limits.shutdown_grace + self.limits.close_timeout):
            await self._no_connections.wait()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        if len(self.connections) >= self.limits.max_connections:
            log.warning("over %d connections: closing a new one", self.limits.max_connections)
            await stream.aclose()
            return
        self.accepted += 1
        number = self.accepted
        opened = self.wall_clock()
        try:
            host, port = stream.socket.getpeername()[:2]
        except OSError:  # already reset by the client
            host, port = "?", 0
        state = ConnectionState(
            closing=self._shutting_down, date_source=self.date_source, number=number,
            peer=f"{host}:{port}", peer_host=host, bodies=self.bodies, addresses=self.addresses,
            local=_address(stream.socket.getsockname()), background=self.background,
            feed=self.feed,
        )  # fmt: skip
        self.connections.add(state)
        if self._no_connections.is_set():
            self._no_connections = trio.Event()
        holder = _Open(stream, opened=opened)
        try:
            # The last fault boundary: each protocol has its own inside, which answers
            # the way its protocol says; whatever still escapes ends this connection only.
            with boundary(state.label):
                await self._serve(holder, state)
        finally:
            try:
                with trio.CancelScope(shield=True), boundary(f"{state.label}, closing"):
                    try:
                        with trio.move_on_after(self.limits.close_timeout):
                            await holder.stream.aclose()
                    finally:
                        if holder.live is not None:
                            holder.live.end()
                    if holder.trace is not None and self.trace_dir is not None:
                        # Formatting and annotating a long trace takes a while: off the
                        # event loop, so that other connections do not stall; shielded,
                        # so that shutdown does not lose it.
                        save = functools.partial(
                            _save_trace, self.trace_dir, holder.trace, holder.spill,
                            number=state.number, method=state.first_method,
                            target=state.first_target, opened=holder.opened,
                        )  # fmt: skip
                        await trio.to_thread.run_sync(save)
            finally:
                if holder.spill is not None:
                    self.spills.discard(holder.spill)
                    holder.spill.close()  # if the trace was not written, its file goes
                # Only once the trace is written: wait_no_connections() then means every
                # connection's trace is on disk (another connection may finish first).
                self.connections.discard(state)
                if not self.connections:
                    self._no_connections.set()
                closed, self._connection_closed = self._connection_closed, trio.Event()
                closed.set()

    async def _serve(self, holder: _Open, state: ConnectionState) -> None:
        """TLS if configured, the tap if tracing, then the protocol the client speaks."""
        socket_stream = holder.stream
        assert isinstance(socket_stream, trio.SocketStream)
        alpn = None
        if self.tls is not None:
            transport = LingeringTransport(socket_stream, self.limits)
            tls_stream = trio.SSLStream(transport, self.tls.context, server_side=True)
            holder.stream = tls_stream
            with trio.move_on_after(self.limits.head_timeout) as handshake:
                try:
                    await tls_stream.do_handshake()
                except trio.BrokenResourceError as exc:
                    log.info("%s: TLS handshake failed: %s", state.label, exc.__cause__ or exc)
                    return
            if handshake.cancelled_caught:
                return
            alpn = tls_stream.selected_alpn_protocol()
        if self.trace_dir is not None or self.feed is not None:
            self._tap(holder, state, socket_stream)
        started = trio.current_time()
        if alpn == "h2":
            initial: bytes | None = b""
            protocol = "h2"
        else:
            initial, protocol = await sniff(holder.stream, self.limits)
            if self.tls is not None and protocol == "h2c":
                protocol = "h2"  # prior knowledge inside TLS, without ALPN
        state.protocol = protocol
        if holder.trace is not None:
            holder.trace.connections[-1].protocol = protocol
        if holder.live is not None:
            holder.live.set_protocol(protocol)
        if initial is None:
            return
        if protocol in ("h2", "h2c"):
            await serve_h2(holder.stream, self.app, self.limits, state, initial)
        else:
            await serve_http1(
                holder.stream, self.app, self.limits, state, initial, head_started=started
            )

    def _tap(self, holder: _Open, state: ConnectionState, socket: trio.SocketStream) -> None:
        """Record the connection: into a whole trace (trace_dir), the live feed, or both."""
        local, peer = socket_addresses(socket)
        tls = self.tls is not None
        sink: Callable[[Record], None] | None = None
        if self.feed is not None:
            live = holder.live = self.feed.open(
                state.number, local=local, peer=peer, tls=tls, opened=holder.opened
            )
            state.on_request = live.request
            conn, sink = live.conn, live.add
        if self.trace_dir is not None:
            conn = ConnectionTrace(side="server", local=local, peer=peer, tls=tls)
            holder.trace = Trace(
                name=f"c{state.number:05d}",
                description=(
                    f"server side of connection {state.number}, accepted {utc_stamp(holder.opened)}"
                ),
                connections=[conn],
            )
            spill = holder.spill = SpilledRecords(
                conn, self.trace_dir, limit=self.limits.trace_bytes_held
            )
            self.spills.add(spill)
            sink = spill.add if holder.live is None else _tee(spill.add, holder.live.add)
        t0 = time.monotonic()  # one axis per connection, from its CONNECT record
        holder.stream = TappedStream(
            holder.stream, conn, lambda: time.monotonic() - t0, connected_at=0.0, sink=sink
        )


@dataclass(eq=False, slots=True)
class _Open:
    """One accepted connection's outermost stream (socket, TLS or tap), when it was
    accepted, its whole trace (trace_dir) and its place in the live feed (viewer)."""

    stream: trio.abc.Stream
    opened: float = 0.0
    trace: Trace | None = None
    spill: SpilledRecords | None = None  # the trace's records, most of them on disk
    live: LiveConnection | None = None


def _tee(
    first: Callable[[Record], None], second: Callable[[Record], None]
) -> Callable[[Record], None]:
    def both(record: Record) -> None:
        first(record)
        second(record)

    return both


def _save_trace(
    directory: Path,
    trace: Trace,
    spill: SpilledRecords | None,
    *,
    number: int,
    method: str,
    target: str,
    opened: float,
) -> None:
    """Write ``trace`` as .trace and .pcapng under a name no file in ``directory`` has,
    with the records ``spill`` kept on disk; then remove its file."""
    trace.name = claim_stem(directory, connection_stem(number, method, target, opened))
    if method:
        trace.description += f"; first request {method} {target}"
    try:
        if spill is None:
            write_capture(trace, directory)
        else:
            write_spilled(trace, spill, directory)
    finally:
        if spill is not None:
            spill.close()


def _feed_limits(limits: Limits) -> FeedLimits:
    return FeedLimits(
        connections=limits.viewer_connections,
        records_per_connection=limits.viewer_records_per_connection,
        bytes_per_connection=limits.viewer_bytes_per_connection,
        total_bytes=limits.viewer_total_bytes,
        log_events=limits.viewer_log_events,
        log_bytes=limits.viewer_log_bytes,
        clients=limits.viewer_clients,
        downloads=limits.viewer_downloads,
    )


def _address(sockname: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """A socket address as "host:port", an IPv6 host in brackets (RFC 3986 §3.2.2)."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _count_tasks(nursery: trio.Nursery) -> int:
    """Tasks running under ``nursery``, at any depth."""
    return sum(
        1 + sum(_count_tasks(child) for child in task.child_nurseries)
        for task in nursery.child_tasks
    )


async def sniff(stream: trio.abc.Stream, limits: Limits) -> tuple[bytes | None, str]:
    """Read until the first bytes tell HTTP/2's client preface from an HTTP/1.1 request.

    Returns the bytes read (to be fed to the chosen protocol) and "h2c" or "http/1.1";
    None for the bytes when there is nothing to answer: the client sent nothing before
    closing or timing out, or it was still dribbling an HTTP/2 preface when the head
    timeout ran out (it gets no HTTP/1.1 reply to a request it never made). As soon as a
    byte differs from the preface it is HTTP/1.1 (an HTTP/1.1 request line cannot start
    with "PRI * HTTP/2.0"; RFC 9113 §3.4), so an HTTP/1.1 client never waits for 24 bytes.
    """
    seen = b""
    with trio.move_on_after(limits.head_timeout):
        while PREFACE.startswith(seen) and len(seen) < len(PREFACE):
            try:
                data = await stream.receive_some(limits.receive_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None, "http/1.1"
            if not data:
                return (seen or None), "http/1.1"
            seen += data
        # "PRI * HTTP/2.0" is HTTP/2's whatever follows: a preface that goes wrong after
        # its first line is HTTP/2's connection error (RFC 9113 §3.4), not an HTTP/1.1
        # request for "*".
        return seen, "h2c" if seen.startswith(PREFACE[:_PREFACE_LINE]) else "http/1.1"
    if len(seen) >= _PREFACE_ONLY and PREFACE.startswith(seen):
        log.info("client preface not complete in %ss: closed", limits.head_timeout)
        return None, "h2c"
    return (seen or None), "http/1.1"


# "PRI" starts only the HTTP/2 preface: PRI is no HTTP/1.1 method the lab serves, and
# RFC 9113 §3.4 chose it for that. A shorter prefix ("P", "PR") may be a dribbled "POST".
_PREFACE_ONLY: Final = 3
_PREFACE_LINE: Final = len(b"PRI * HTTP/2.0\r\n")


async def serve_tcp(
    app: Handler,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    limits: Limits | None = None,
    trace_dir: Path | None = None,
    date_source: Callable[[], bytes] = http_date,
    tls: TLSConfig | None = None,
    viewer: bool = False,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the lab on ``host:port`` (port 0 picks a free one) until cancelled or shut down.

    ``server = await nursery.start(serve_tcp, app, 0)`` gives the running :class:`Server`;
    ``lab.apps.app`` is the lab's own endpoints. ``viewer=True`` keeps the live feed the
    wire viewer (``GET /lab/``) shows.
    """
    server = Server(
        app, host=host, port=port, limits=limits, trace_dir=trace_dir, date_source=date_source,
        tls=tls, viewer=viewer,
    )  # fmt: skip
    await server.serve(task_status=task_status)
