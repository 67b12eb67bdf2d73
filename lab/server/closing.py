"""Closing a connection so that the client reads the last thing the server said."""

from __future__ import annotations

import contextlib

import trio

from lab.server.limits import Limits

__all__ = ["LingeringTransport", "linger"]


class LingeringTransport(trio.abc.HalfCloseableStream):
    """The TCP stream under TLS, able to close the way :func:`linger` does.

    TLS has no half-close of its own: its close is close_notify followed by closing the
    transport. When ``linger_on_close`` is set, closing this transport sends FIN first
    and reads (and discards) what the client still sends, within the linger limits, so
    that close_notify and everything before it reach the client instead of being wiped
    out by a reset (RFC 9113 §5.4.1 asks for the GOAWAY to be read).
    """

    def __init__(self, inner: trio.SocketStream, limits: Limits) -> None:
        self.inner = inner
        self.limits = limits
        self.linger_on_close = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        try:
            if self.linger_on_close:
                await _drain_after_eof(self.inner, self.limits)
        finally:
            await self.inner.aclose()


async def _drain_after_eof(stream: trio.abc.HalfCloseableStream, limits: Limits) -> None:
    with trio.move_on_after(limits.linger_timeout):
        try:
            await stream.send_eof()
            await _drain(stream, limits)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _drain(stream: trio.abc.ReceiveStream, limits: Limits) -> None:
    """Read and discard until EOF or ``linger_bytes``."""
    drained = 0
    while drained < limits.linger_bytes:
        data = await stream.receive_some(limits.receive_size)
        if not data:
            break
        drained += len(data)


def _transport_under_tls(stream: trio.abc.Stream) -> LingeringTransport | None:
    """The :class:`LingeringTransport` under ``stream`` (through a tap and TLS), if any."""
    for _ in range(3):  # tap -> TLS -> transport at most
        if isinstance(stream, LingeringTransport):
            return stream
        inner = getattr(stream, "transport_stream", None) or getattr(stream, "stream", None)
        if not isinstance(inner, trio.abc.Stream):
            return None
        stream = inner
    return stream if isinstance(stream, LingeringTransport) else None


async def linger(stream: trio.abc.Stream, limits: Limits, *, reader_only: bool = False) -> None:
    """Half-close, then read and discard what the client still sends, within limits.

    Closing a socket that has unread input makes the kernel send RST, and a RST can
    destroy the response (an HTTP/1.1 error, an HTTP/2 GOAWAY) before the client reads
    it. So: send FIN, drain at most ``linger_bytes`` for at most ``linger_timeout``
    (RFC 9112 §9.6 calls this a lingering close), then the caller closes. TLS has no
    half-close, so over TLS it only drains.

    ``reader_only``: the peer must see the close at once (after a connection error,
    RFC 9113 §5.4.1), so the server never waits as a writer: over TLS it returns at once,
    and the caller's close sends close_notify, then FIN, then drains below TLS (see
    :class:`LingeringTransport`).
    """
    with trio.move_on_after(limits.linger_timeout):
        try:
            half_closed = False
            if isinstance(stream, trio.abc.HalfCloseableStream):
                with contextlib.suppress(TypeError):  # a tap above TLS: no half-close
                    await stream.send_eof()
                    half_closed = True
            if reader_only and not half_closed:
                transport = _transport_under_tls(stream)
                if transport is not None:
                    transport.linger_on_close = True
                return
            await _drain(stream, limits)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
