"""Closing a connection so that the client reads the last thing the server said."""

from __future__ import annotations

import contextlib

import trio

from lab.server.limits import Limits

__all__ = ["linger"]


async def linger(stream: trio.abc.Stream, limits: Limits, *, reader_only: bool = False) -> None:
    """Half-close, then read and discard what the client still sends, within limits.

    Closing a socket that has unread input makes the kernel send RST, and a RST can
    destroy the response (an HTTP/1.1 error, an HTTP/2 GOAWAY) before the client reads
    it. So: send FIN, drain at most ``linger_bytes`` for at most ``linger_timeout``
    (RFC 9112 §9.6 calls this a lingering close), then the caller closes. TLS has no
    half-close, so over TLS it only drains.

    ``reader_only``: the peer must see the close at once (after a connection error,
    RFC 9113 §5.4.1), so the server lingers only if it could half-close; over TLS it
    returns at once and the caller's close sends close_notify.
    """
    with trio.move_on_after(limits.linger_timeout):
        try:
            half_closed = False
            if isinstance(stream, trio.abc.HalfCloseableStream):
                with contextlib.suppress(TypeError):  # a tap above TLS: no half-close
                    await stream.send_eof()
                    half_closed = True
            if reader_only and not half_closed:
                return
            drained = 0
            while drained < limits.linger_bytes:
                data = await stream.receive_some(limits.receive_size)
                if not data:
                    break
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
