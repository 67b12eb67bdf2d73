"""The tap: a trio stream wrapper that records every call into a :class:`ConnectionTrace`.

::

    recorder = Recorder(Trace("tokens-h1"))
    stream = recorder.tap(await trio.open_tcp_stream(host, port), "client")
    await stream.send_all(request)  # -> a SEND record with exactly these bytes
    ...
    recorder.trace.save("tokens-h1.trace")

What is recorded, one record per call on the wrapped stream:

==========================  ===============================================================
``TappedStream(...)``       CONNECT (the tap is made right after the connection is)
``send_all(data)``          SEND with ``data``, once it has all been handed to the kernel
``receive_some()``          RECV with what it returned, or EOF if that was ``b""``
``send_eof()``              SHUTDOWN
``aclose()``                CLOSE (once, however often it is called)
broken connection           RESET, when the wrapped stream raises
                            :class:`trio.BrokenResourceError` or
                            :class:`ConnectionResetError`; the error is re-raised
==========================  ===============================================================

A record's time is taken when the call completes (``aclose``: when it is called, since it
closes even if cancelled), so a connection's records are in time order even when one task
sends while another receives. A ``send_all`` that fails or is cancelled records no SEND: how
many of its bytes left is not known.

:class:`TappedStream` is a :class:`trio.abc.HalfCloseableStream`, like the
:class:`trio.SocketStream` the lab's servers and clients hand it, so code written against
either takes it unchanged; wrapping a stream that cannot half-close is fine until someone
calls ``send_eof``.

The tap sits on every send and receive of the lab's servers, so the hot path only builds a
:class:`Record` and appends it: no formatting, and no copy unless ``send_all`` is given a
``bytearray`` or ``memoryview`` (which the caller may reuse once the call returns).

Times: one monotonic axis per trace, starting when its first connection is tapped.
:class:`Recorder` holds that origin; :func:`tap_socket_stream` takes it explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import trio

from lab.capture.trace import (
    CLOSE,
    CONNECT,
    EOF,
    RECV,
    RESET,
    SEND,
    SHUTDOWN,
    ConnectionTrace,
    Record,
    Side,
    Trace,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "Recorder",
    "TappedStream",
    "socket_addresses",
    "tap_socket_stream",
]

DEFAULT_PROTOCOL: Final = "http/1.1"

# What a broken connection looks like from a wrapped stream: trio's streams translate
# ECONNRESET / EPIPE into BrokenResourceError; a bare socket wrapper may let the OSError out.
_BROKEN: Final = (trio.BrokenResourceError, ConnectionResetError)


class TappedStream(trio.abc.HalfCloseableStream):
    """``stream``, with every call recorded into ``conn.records``.

    ``clock`` returns seconds on the trace's axis; the CONNECT record is at ``connected_at``,
    or now. ``send_eof`` needs the wrapped stream to be half-closeable (as
    :class:`trio.SocketStream` is); otherwise it raises :class:`TypeError`.

    ``sink``, if given, takes each record instead of ``conn.records.append``, as it is
    recorded (a live feed that keeps a bounded number and publishes each one). Without a
    sink the hot path is the plain append; a sink must not raise.
    """

    __slots__ = ("_append", "_clock", "_closed", "conn", "stream")

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: ConnectionTrace,
        clock: Callable[[], float],
        *,
        connected_at: float | None = None,
        sink: Callable[[Record], None] | None = None,
    ) -> None:
        self.stream = stream
        self.conn = conn
        self._clock = clock
        self._append = conn.records.append if sink is None else sink
        self._closed = False
        self._append(Record(clock() if connected_at is None else connected_at, CONNECT))

    def set_protocol(self, protocol: str) -> None:
        """Name the protocol once it is known (after sniffing a client preface, say)."""
        self.conn.protocol = protocol

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        payload = data if type(data) is bytes else bytes(data)
        try:
            await self.stream.send_all(payload)
        except _BROKEN:
            self._append(Record(self._clock(), RESET))
            raise
        self._append(Record(self._clock(), SEND, payload))

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.stream.receive_some(max_bytes)
        except _BROKEN:
            self._append(Record(self._clock(), RESET))
            raise
        if type(data) is not bytes:
            data = bytes(data)
        self._append(Record(self._clock(), RECV, data) if data else Record(self._clock(), EOF))
        return data

    async def send_eof(self) -> None:
        stream = self.stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            raise TypeError(f"{type(stream).__name__} cannot send EOF (not half-closeable)")
        try:
            await stream.send_eof()
        except _BROKEN:
            self._append(Record(self._clock(), RESET))
            raise
        self._append(Record(self._clock(), SHUTDOWN))

    async def aclose(self) -> None:
        # Recorded before awaiting: aclose closes the stream even if it is cancelled.
        if not self._closed:
            self._closed = True
            self._append(Record(self._clock(), CLOSE))
        await self.stream.aclose()


def socket_addresses(stream: trio.SocketStream) -> tuple[tuple[str, int], tuple[str, int]]:
    """(local, peer) of a socket stream, as a trace records them."""
    return _address(stream.socket.getsockname()), _address(stream.socket.getpeername())


def _address(address: object) -> tuple[str, int]:
    # AF_INET gives (host, port), AF_INET6 (host, port, flowinfo, scope_id); an AF_UNIX
    # path has no port.
    if isinstance(address, tuple):
        return str(address[0]), int(address[1])
    return str(address), 0


def tap_socket_stream(
    stream: trio.SocketStream,
    side: Side,
    trace: Trace,
    t0: float | None = None,
    protocol: str = DEFAULT_PROTOCOL,
) -> TappedStream:
    """Tap ``stream`` as a new connection of ``trace``, seen from ``side``.

    Addresses come from the socket. Times are ``time.monotonic() - t0``; ``t0=None`` starts
    the axis now, which is right for a trace of one connection; for several, use a
    :class:`Recorder` (or pass the same ``t0``) so that they share one axis.
    """
    origin = time.monotonic() if t0 is None else t0
    return Recorder(trace, t0=origin).tap(stream, side, protocol=protocol)


class Recorder:
    """A trace being recorded, and the origin of its time axis.

    ``clock`` is any monotonic clock in seconds (``trio.current_time`` makes traces taken
    under an autojump clock deterministic); the axis starts at the first tap, unless ``t0``
    fixes it.
    """

    __slots__ = ("_clock", "t0", "trace")

    def __init__(
        self,
        trace: Trace | None = None,
        *,
        t0: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trace = Trace(name="untitled") if trace is None else trace
        self.t0 = t0
        self._clock = clock

    def now(self) -> float:
        """Seconds on the trace's axis (starting it if no connection was tapped yet)."""
        if self.t0 is None:
            self.t0 = self._clock()
        return self._clock() - self.t0

    def tap(
        self,
        stream: trio.abc.Stream,
        side: Side,
        *,
        protocol: str = DEFAULT_PROTOCOL,
        local: tuple[str, int] | None = None,
        peer: tuple[str, int] | None = None,
        received: bytes | bytearray | memoryview = b"",
    ) -> TappedStream:
        """Wrap ``stream`` and record it as a new connection of the trace.

        The addresses are read from a :class:`trio.SocketStream`; any other stream (a memory
        stream in a test, a TLS stream) needs ``local`` and ``peer``. ``received`` is what
        was already read from the stream before it was tapped, e.g. a client preface read
        to choose the protocol: it is recorded as one RECV right after the CONNECT, so the
        trace still holds every byte.
        """
        if local is None or peer is None:
            if not isinstance(stream, trio.SocketStream):
                raise TypeError(f"give local and peer addresses to tap a {type(stream).__name__}")
            sock_local, sock_peer = socket_addresses(stream)
            local = sock_local if local is None else local
            peer = sock_peer if peer is None else peer
        conn = ConnectionTrace(side=side, local=local, peer=peer, protocol=protocol)
        self.trace.connections.append(conn)
        clock, now = self._clock, self._clock()
        if self.t0 is None:
            self.t0 = now  # the first connect is time 0
        t0 = self.t0
        tapped = TappedStream(stream, conn, lambda: clock() - t0, connected_at=now - t0)
        if received:
            conn.records.append(Record(clock() - t0, RECV, bytes(received)))
        return tapped
