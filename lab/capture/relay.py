"""A recording TCP relay: accept on a loopback port, connect to a target, copy both ways.

Put it between two peers that the lab does not control the sockets of (a reverse proxy and
the lab server behind it, say) and it records what crossed, in both directions, into a
:class:`~lab.capture.tap.Recorder`::

    relay = Relay(("127.0.0.1", server.port), recorder)
    await nursery.start(relay.serve)          # relay.port is where the peer connects
    ...                                       # the peer's connections are recorded
    await relay.wait_idle(5.0)                # every relayed connection has ended

Each accepted connection is one :class:`~lab.capture.trace.ConnectionTrace` of the
recorder's trace, tapped on the relay's accepted socket: ``side="server"`` (the relay
plays the target to the peer), ``local`` the relay's address, ``peer`` the peer's. Its
RECV records are what the peer sent, its SEND records what the target sent, timed when
the relay handed them on; the target's own socket is not recorded again (the same bytes,
microseconds apart). Sharing the recorder with a client's tap puts the client's
connections and the relayed ones on one clock.

What the relay passes on, besides bytes:

- EOF: when one side finishes sending (a FIN), the relay finishes sending to the other
  (``send_eof``), so a half-close crosses the relay as a half-close (a SHUTDOWN record
  when it is the target's, an EOF record when it is the peer's);
- a broken side (reset, broken pipe): the relay closes both sockets at once, which is
  the nearest a user-space relay gets to passing a reset on;
- when both directions are done, both sockets are closed.

A relayed connection is recorded into the recorder that :attr:`Relay.recorder` held when
it was accepted: set a new one between experiments, and each experiment's connections go
into its own trace. ``new_recorder`` instead gives each connection a recorder (and so a
trace and a clock) of its own, e.g. to write one trace file per connection.

Options for a relay that sits in front of a user's own server (``lab tap``):

- ``tls``: a server-side :class:`ssl.SSLContext`. The relay then terminates TLS: it does
  the handshake with the peer (ALPN as the context offers, RFC 7301), records the
  decrypted bytes (the connection trace says ``tls``, and its CONNECT is when the
  handshake was done) and forwards them in plaintext, so a peer that negotiated ``h2``
  reaches the target as HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3), any other as
  HTTP/1.1. TLS has no half-close here (the stream is opened in trio's HTTPS-compatible
  mode: no close_notify is needed either way), so when the target finishes sending, the
  relay closes the peer's connection once what the target sent has been passed on. A
  handshake that fails or takes over :data:`HANDSHAKE_TIMEOUT` closes the connection,
  unrecorded (there are no application bytes), and is counted and reported.
- ``protocol=AUTO``: the trace's protocol is told from the peer's first bytes (HTTP/2's
  connection preface or not), or by ALPN under TLS.
- ``on_request``: a log line's worth for each request once its response is over
  (:class:`lab.capture.requestlog.RequestLog`, reading the bytes as they pass).
- ``on_close``: each connection once it is over, its trace complete (a
  :class:`RelayedConnection`), including ones the relay closed when it was cancelled.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from lab.capture.requestlog import AUTO, LoggedRequest, RequestLog
from lab.capture.tap import DEFAULT_PROTOCOL, Recorder, TappedStream, socket_addresses
from lab.capture.trace import ConnectionTrace

__all__ = [
    "AUTO",
    "CONNECT_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "RECEIVE_SIZE",
    "Relay",
    "RelayedConnection",
]

# How long the relay waits for the target to accept: the target is on loopback, where a
# connect takes microseconds; seconds cover a loaded machine, and the peer's connection
# is closed (recorded) if the target never answers.
CONNECT_TIMEOUT: Final = 10.0
# Bytes asked of a socket per receive: the lab's clients and servers use the same size,
# so a record of the relay is comparable with a record of theirs.
RECEIVE_SIZE: Final = 64 * 1024
# How long a peer has to complete the TLS handshake: a browser on loopback takes
# milliseconds; one that stalls (or a port scanner) must not hold a task for ever.
HANDSHAKE_TIMEOUT: Final = 10.0

# What a side that broke raises: a reset or broken pipe (trio's translation), or a stream
# the other direction already closed.
_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(eq=False, slots=True)
class RelayedConnection:
    """One accepted connection, as :attr:`Relay.on_close` and ``on_request`` see it."""

    number: int  # 1, 2 ... in the order the relay accepted them
    opened: float  # wall-clock time (time.time()) it was accepted
    peer: tuple[str, int]
    recorder: Recorder  # the recorder its trace went into
    conn: ConnectionTrace | None = None  # None: nothing recorded (a failed TLS handshake)
    alpn: str | None = None  # what TLS negotiated, if the relay terminated TLS
    error: str = ""  # why it ended without being relayed (handshake, target), or ""
    logged: int = 0  # requests logged so far
    first_request: LoggedRequest | None = None  # the earliest of them (for a file name)
    log: RequestLog | None = None


class Relay:
    """Relay every connection to ``host:port`` on to ``target``, recording each one.

    ``port=0`` picks a free port; :attr:`port` holds it once :meth:`serve` has started.
    ``protocol`` is what the connection traces say the bytes are (``"http/1.1"`` for a
    proxy's upstream connections), or :data:`AUTO`. ``tls``, ``new_recorder``,
    ``on_request`` and ``on_close``: see the module docstring.
    """

    def __init__(
        self,
        target: tuple[str, int],
        recorder: Recorder,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        protocol: str = DEFAULT_PROTOCOL,
        tls: ssl.SSLContext | None = None,
        new_recorder: Callable[[], Recorder] | None = None,
        on_request: Callable[[RelayedConnection, LoggedRequest], None] | None = None,
        on_close: Callable[[RelayedConnection], None] | None = None,
    ) -> None:
        self.target = target
        self.recorder = recorder
        self.host = host
        self.port = port
        self.protocol = protocol
        self.tls = tls
        self.new_recorder = new_recorder
        self.on_request = on_request
        self.on_close = on_close
        self.failed_handshakes = 0  # accepted connections whose TLS handshake failed
        self.accepted = 0  # connections accepted so far
        self.open = 0  # connections being relayed now
        self.failed_connects = 0  # accepted connections whose target refused or timed out
        self.peer_finished = 0  # relayed connections whose peer stopped sending (FIN, reset)
        self._changed = trio.Event()  # set (and replaced) whenever ``open`` changes

    async def serve(
        self, *, task_status: trio.TaskStatus[Relay] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and relay until cancelled; ``await nursery.start(relay.serve)``."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def wait_idle(self, within: float) -> bool:
        """Wait until no connection is being relayed (at most ``within`` seconds);
        whether that happened."""
        return await self.wait_until(lambda: not self.open, within)

    async def wait_until(self, condition: Callable[[], bool], within: float) -> bool:
        """Wait until ``condition()`` holds, checked whenever a connection is accepted,
        ends, or its peer stops sending (at most ``within`` seconds); whether it held."""
        with trio.move_on_after(within):
            while not condition():
                await self._changed.wait()
            return True
        return False

    def _peer_done(self) -> None:
        self.peer_finished += 1
        self._note_change()

    def _note_change(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def _handle(self, accepted: trio.SocketStream) -> None:
        self.accepted += 1
        self.open += 1
        self._note_change()
        recorder = self.recorder if self.new_recorder is None else self.new_recorder()
        relayed = RelayedConnection(
            self.accepted, time.time(), socket_addresses(accepted)[1], recorder
        )
        try:
            await self._relay(accepted, relayed)
        finally:
            self.open -= 1
            if relayed.log is not None:
                relayed.log.close(recorder.now())
            if self.on_close is not None:
                self.on_close(relayed)
            self._note_change()

    async def _relay(self, accepted: trio.SocketStream, relayed: RelayedConnection) -> None:
        recorder = relayed.recorder
        protocol = self.protocol
        stream: trio.abc.Stream = accepted
        if self.tls is not None:
            tls_stream = trio.SSLStream(accepted, self.tls, server_side=True, https_compatible=True)
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await tls_stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError) as exc:
                self.failed_handshakes += 1
                why = str(exc.__cause__ or exc) or f"not done within {HANDSHAKE_TIMEOUT:g} s"
                relayed.error = f"TLS handshake failed: {why}"
                with trio.CancelScope(shield=True):
                    await accepted.aclose()
                return
            relayed.alpn = tls_stream.selected_alpn_protocol()
            stream = tls_stream
            if relayed.alpn == "h2":
                protocol = "h2"
        local, peer_address = socket_addresses(accepted)
        peer = recorder.tap(
            stream, "server", protocol=DEFAULT_PROTOCOL if protocol == AUTO else protocol,
            local=local, peer=peer_address,
        )  # fmt: skip
        relayed.conn = peer.conn
        peer.conn.tls = self.tls is not None
        if self.on_request is not None or protocol == AUTO:
            relayed.log = RequestLog(protocol, self._logger(relayed))
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                target = await trio.open_tcp_stream(*self.target)
        except (OSError, trio.TooSlowError) as exc:
            self.failed_connects += 1
            why = str(exc) or f"no answer within {CONNECT_TIMEOUT:g} s"
            relayed.error = f"cannot connect to the target: {why}"
            with trio.CancelScope(shield=True):
                await peer.aclose()
            return
        seen_in, seen_out = self._watchers(relayed, peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    _pump, peer, target, nursery.cancel_scope, self._peer_done, seen_in
                )
                nursery.start_soon(_pump, target, peer, nursery.cancel_scope, None, seen_out)
        finally:
            with trio.CancelScope(shield=True):
                await peer.aclose()
                await target.aclose()

    def _logger(self, relayed: RelayedConnection) -> Callable[[LoggedRequest], None]:
        def logged(request: LoggedRequest) -> None:
            relayed.logged += 1
            first = relayed.first_request
            if first is None or request.number < first.number:
                relayed.first_request = request
            if self.on_request is not None:
                self.on_request(relayed, request)

        return logged

    def _watchers(
        self, relayed: RelayedConnection, peer: TappedStream
    ) -> tuple[_Seen | None, _Seen | None]:
        """What each direction's pump tells the request log: bytes, and the end."""
        log, now, tls = relayed.log, relayed.recorder.now, self.tls is not None
        if log is None:
            return None, None

        def from_peer(data: bytes) -> None:
            if data:
                log.feed(True, data, now())
                if log.protocol != AUTO:
                    # Under TLS, prior knowledge is "h2" (no ALPN was needed to ask for it).
                    found = "h2" if tls and log.protocol == "h2c" else log.protocol
                    if peer.conn.protocol != found:
                        peer.set_protocol(found)
            else:
                log.end(True, now())

        def from_target(data: bytes) -> None:
            if data:
                log.feed(False, data, now())
            else:
                log.end(False, now())

        return from_peer, from_target


_Seen = Callable[[bytes], None]


async def _pump(
    source: trio.abc.ReceiveStream,
    sink: TappedStream | trio.SocketStream,
    pair: trio.CancelScope,
    on_end: Callable[[], None] | None,
    seen: _Seen | None = None,
) -> None:
    """Copy ``source`` to ``sink`` until EOF, then half-close ``sink``; if either side
    breaks, end the whole pair (both sockets are then closed). ``on_end`` is told when
    ``source`` stops sending (its FIN, or a reset); ``seen`` gets each piece of data as it
    passes, and ``b""`` at the FIN. A ``sink`` that cannot half-close (TLS) ends the pair
    instead, once everything was passed on."""
    try:
        while data := await source.receive_some(RECEIVE_SIZE):
            if seen is not None:
                seen(data if type(data) is bytes else bytes(data))
            try:
                await sink.send_all(data)
            except _GONE:
                pair.cancel()
                return
    except _GONE:
        if on_end is not None:
            on_end()
        pair.cancel()
        return
    if seen is not None:
        seen(b"")
    if on_end is not None:
        on_end()
    inner = sink.stream if isinstance(sink, TappedStream) else sink
    if not isinstance(inner, trio.abc.HalfCloseableStream):
        pair.cancel()
        return
    try:
        await sink.send_eof()
    except _GONE:
        pair.cancel()
