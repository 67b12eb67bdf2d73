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
into its own trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from lab.capture.tap import DEFAULT_PROTOCOL, Recorder

__all__ = ["CONNECT_TIMEOUT", "RECEIVE_SIZE", "Relay"]

# How long the relay waits for the target to accept: the target is on loopback, where a
# connect takes microseconds; seconds cover a loaded machine, and the peer's connection
# is closed (recorded) if the target never answers.
CONNECT_TIMEOUT: Final = 10.0
# Bytes asked of a socket per receive: the lab's clients and servers use the same size,
# so a record of the relay is comparable with a record of theirs.
RECEIVE_SIZE: Final = 64 * 1024

# What a side that broke raises: a reset or broken pipe (trio's translation), or a stream
# the other direction already closed.
_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


class Relay:
    """Relay every connection to ``host:port`` on to ``target``, recording each one.

    ``port=0`` picks a free port; :attr:`port` holds it once :meth:`serve` has started.
    ``protocol`` is what the connection traces say the bytes are (``"http/1.1"`` for a
    proxy's upstream connections).
    """

    def __init__(
        self,
        target: tuple[str, int],
        recorder: Recorder,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        protocol: str = DEFAULT_PROTOCOL,
    ) -> None:
        self.target = target
        self.recorder = recorder
        self.host = host
        self.port = port
        self.protocol = protocol
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
        try:
            await self._relay(accepted)
        finally:
            self.open -= 1
            self._note_change()

    async def _relay(self, accepted: trio.SocketStream) -> None:
        peer = self.recorder.tap(accepted, "server", protocol=self.protocol)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                target = await trio.open_tcp_stream(*self.target)
        except (OSError, trio.TooSlowError):
            self.failed_connects += 1
            with trio.CancelScope(shield=True):
                await peer.aclose()
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, peer, target, nursery.cancel_scope, self._peer_done)
                nursery.start_soon(_pump, target, peer, nursery.cancel_scope, None)
        finally:
            with trio.CancelScope(shield=True):
                await peer.aclose()
                await target.aclose()


async def _pump(
    source: trio.abc.ReceiveStream,
    sink: trio.abc.HalfCloseableStream,
    pair: trio.CancelScope,
    on_end: Callable[[], None] | None,
) -> None:
    """Copy ``source`` to ``sink`` until EOF, then half-close ``sink``; if either side
    breaks, end the whole pair (both sockets are then closed). ``on_end`` is told when
    ``source`` stops sending (its FIN, or a reset)."""
    try:
        while data := await source.receive_some(RECEIVE_SIZE):
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
    if on_end is not None:
        on_end()
    try:
        await sink.send_eof()
    except _GONE:
        pair.cancel()
