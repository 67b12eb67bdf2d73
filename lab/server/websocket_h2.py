"""WebSocket over HTTP/2 (RFC 8441): an extended CONNECT stream, answered 200, whose DATA
frames carry the WebSocket frames both ways.

The server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3; lab.server.
h2state). A request with ``:method CONNECT`` and ``:protocol`` starts its handler at once,
without waiting for END_STREAM, and the stream's DATA waits in its inbox
(:class:`lab.server.h2stream.TunnelInbox`). When the handler accepts a WebSocket:

1. the request is checked (:func:`lab.wire.websocket_handshake.extended_connect_problems`:
   ``:protocol websocket``, ``:scheme``, ``:path``, ``:authority``, no Connection or
   Upgrade, RFC 8441 §4, §5); a bad one gets 400, a Sec-WebSocket-Version other than 13
   gets 426 with the version the server speaks (RFC 6455 §4.2.2, §4.4); no key and no
   accept are exchanged (RFC 8441 §5);
2. ``200`` goes out in a HEADERS frame without END_STREAM (RFC 8441 §5);
3. :class:`lab.server.websocket.ServerWebSocket` reads the inbox and sends DATA frames
   like any response (flow control, the send timeout, the one writer). The stream's
   flow-control window is credited back as the WebSocket reads, so a handler that does
   not read holds the client back by the window, not by a buffer; the connection's
   window is credited at once, so the other streams go on.

How the stream ends (RFC 8441 §6: END_STREAM stands for the TCP FIN, RST_STREAM for the
TCP RST): END_STREAM after the closing handshake; after a failure (a Close with 1002,
1007 or 1009, §7.1.7) END_STREAM, then RST_STREAM(NO_ERROR) if the client's side is still
open (RFC 9113 §8.1: the response is complete, stop sending); RST_STREAM(CANCEL) when the
peer stopped answering, left, or the handler was cut off. The h2 frame checks and
budgets of lab.server.h2input apply to the stream as to any other.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import h2.connection
import h2.errors
import h2.exceptions
import trio

from lab.server.connection import ConnectionState
from lab.server.h2stream import H2Response, Stalled, Stream, TunnelInbox
from lab.server.h2writer import Gone
from lab.server.interface import Headers, HTTPError
from lab.server.limits import Limits
from lab.server.websocket import Ending, ServerWebSocket, TransportClosed
from lab.wire.websocket_handshake import VERSION, extended_connect_problems

__all__ = ["accept"]

log = logging.getLogger("lab.server")

ErrorCodes = h2.errors.ErrorCodes
_STREAM_GONE = (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError)


class _Connection(Protocol):
    """What a WebSocket needs of lab.server.http2's connection."""

    state: ConnectionState
    limits: Limits

    @property
    def conn(self) -> h2.connection.H2Connection: ...

    async def flush(self) -> None: ...

    async def pace(self) -> None: ...

    async def send_data(self, stream: Stream, data: bytes) -> None: ...

    def mark_ended(self, stream: Stream) -> None: ...

    def _reset(self, stream: Stream | int, code: ErrorCodes) -> None: ...

    def _queue(self, raw: bytes = b"") -> int: ...


def _problems(stream: Stream) -> tuple[int, list[str]]:
    """The status a refusal gets and why, or (200, [])."""
    if stream.inbox is None:
        return 400, ["a WebSocket needs an extended CONNECT that stays open (RFC 8441 §4)"]
    fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in stream.headers]
    problems = extended_connect_problems(fields)
    if problems:
        return 400, problems
    versions = [value for name, value in fields if name == "sec-websocket-version"]
    if versions and versions != [VERSION]:
        return 426, [
            f"Sec-WebSocket-Version {', '.join(versions)}: this server speaks {VERSION}"
            " (RFC 6455 §4.2.2, §4.4)"
        ]
    return 200, []


async def accept(
    owner: _Connection,
    stream: Stream,
    headers: Headers,
    spawn: Callable[[Callable[[], Awaitable[None]]], None],
) -> ServerWebSocket:
    """Check the extended CONNECT, answer 200, and start the WebSocket on the stream."""
    if stream.started:
        raise RuntimeError("accept_websocket() after the response started")
    status, problems = _problems(stream)
    if problems:
        message = "WebSocket handshake refused: " + "; ".join(problems) + "\n"
        raise HTTPError(status, message, [("sec-websocket-version", VERSION)])
    assert stream.inbox is not None
    await H2Response(owner, stream).start(200, headers)
    websocket = ServerWebSocket(_Transport(owner, stream, stream.inbox), owner.limits)
    stream.websocket = websocket
    spawn(websocket.run)
    return websocket


class _Transport:
    """One extended CONNECT stream, under a WebSocket (lab.server.websocket.Transport)."""

    def __init__(self, owner: _Connection, stream: Stream, inbox: TunnelInbox) -> None:
        self._owner = owner
        self._stream = stream
        self._inbox = inbox
        self.label = f"{owner.state.label} stream {stream.stream_id} WebSocket"
        self.closing_event = owner.state.closing_event

    async def receive(self) -> bytes:
        data = await self._inbox.take()
        if data:
            # Read: the client may send as much again on this stream (RFC 9113 §6.9).
            with contextlib.suppress(*_STREAM_GONE):
                self._owner.conn.increment_flow_control_window(len(data), self._stream.stream_id)
                self._owner._queue()
        return data

    async def send(self, data: bytes) -> None:
        try:
            await self._owner.send_data(self._stream, data)
        except Stalled:
            log.info(
                "%s: no flow-control window for %ss: cut off",
                self.label, self._owner.limits.send_timeout,
            )  # fmt: skip
            raise TransportClosed from None
        except (Gone, *_STREAM_GONE):
            raise TransportClosed from None

    async def finish(self, ending: Ending) -> None:
        owner, stream = self._owner, self._stream
        if stream.ended:
            return
        if ending == "abort":
            owner._reset(stream, ErrorCodes.CANCEL)
            owner._queue()
            return
        with contextlib.suppress(*_STREAM_GONE):
            owner.conn.end_stream(stream.stream_id)
        owner.mark_ended(stream)
        if ending == "fail" and not self._inbox.ended:
            owner._reset(stream, ErrorCodes.NO_ERROR)
        owner._queue()
        with trio.move_on_after(owner.limits.close_timeout), contextlib.suppress(Gone):
            await owner.flush()

    def cancel_handler(self, *, gone: bool) -> None:
        self._stream.scope.cancel()
