"""WebSocket over HTTP/1.1 (RFC 6455 §4): the opening handshake through h11, then the frames
on the connection's own stream.

The request is an ordinary GET that h11 has read whole, with ``Upgrade: websocket``. When
the handler accepts it (``response.accept_websocket()``):

1. the handshake is checked (:func:`lab.wire.websocket_handshake.check_request`, §4.2.1);
   a bad one is refused with 400, or 426 with ``Sec-WebSocket-Version: 13`` when only the
   version is wrong (§4.2.2, §4.4), as an :class:`HTTPError` the handler lets through;
2. the server stops its disconnect watch (lab.server.http1 reads the stream while a
   response is written; from now on the WebSocket does);
3. ``101 Switching Protocols`` with ``Sec-WebSocket-Accept`` goes out through h11 (§4.2.2),
   which moves to SWITCHED_PROTOCOL: h11 is done with the connection, and the bytes it
   had read past the request (``trailing_data``: frames the client sent right after its
   handshake) are the first the WebSocket decodes;
4. :class:`lab.server.websocket.ServerWebSocket` runs on the raw stream: reads with
   ``receive_size``, writes within ``send_timeout``, and closes the TCP connection itself
   once the closing handshake is over (§7.1.1: the server closes first), after a failure
   with a lingering close (so the Close frame is read, not reset away).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import h11
import trio

from lab.server.closing import linger
from lab.server.connection import SERVER_NAME, ConnectionState
from lab.server.interface import Headers, HTTPError
from lab.server.limits import Limits
from lab.server.websocket import Ending, ServerWebSocket, TransportClosed
from lab.wire.websocket_handshake import VERSION, HandshakeError, check_request, response_headers

__all__ = ["accept", "refusal", "upgrade_of"]

log = logging.getLogger("lab.server")


class _Connection(Protocol):
    """What the handshake needs of lab.server.http1's connection."""

    stream: trio.abc.Stream
    limits: Limits
    state: ConnectionState
    h11: h11.Connection
    status: int

    async def send_bytes(self, data: bytes) -> None: ...

    async def stop_watching(self) -> None: ...


class _Response(Protocol):
    """What the handshake needs of the response the handler holds."""

    request: h11.Request | None
    nursery: trio.Nursery | None
    started: bool
    ended: bool


def upgrade_of(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """``"websocket"`` when ``Upgrade`` lists it (RFC 9110 §7.8, a comma-separated list that
    may span several lines), else ""."""
    tokens = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"upgrade"
        for token in value.split(b",")
    }
    return "websocket" if b"websocket" in tokens else ""


def refusal(exc: HandshakeError) -> HTTPError:
    """The answer to a handshake the server refuses: 400, or 426 (§4.2.2 item 4) with the
    version it speaks, ``Sec-WebSocket-Version: 13`` (§4.4). A 426 also names the protocol
    to upgrade to (RFC 9110 §15.5.22), with the Connection option Upgrade needs (§7.8)."""
    headers = [("sec-websocket-version", VERSION)]
    if exc.status_hint == 426:
        headers += [("upgrade", "websocket"), ("connection", "upgrade")]
    message = "WebSocket handshake refused: " + "; ".join(exc.problems) + "\n"
    return HTTPError(exc.status_hint, message, headers)


async def accept(owner: _Connection, response: _Response, headers: Headers) -> ServerWebSocket:
    """Check the handshake, answer 101, and start the WebSocket on the raw stream."""
    request = response.request
    if response.started or request is None or response.nursery is None:
        raise RuntimeError("accept_websocket() after the response started")
    try:
        key = check_request(
            request.method.decode("ascii"),
            request.headers,
            http_version=request.http_version.decode("ascii"),
        )
    except HandshakeError as exc:
        raise refusal(exc) from None
    await owner.stop_watching()
    response.started = True
    fields = [(b"date", owner.state.date_source()), (b"server", SERVER_NAME)]
    fields += [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in [*response_headers(key), *headers]
    ]
    switch = h11.InformationalResponse(
        status_code=101, headers=fields, reason=b"Switching Protocols"
    )
    data = owner.h11.send(switch) or b""
    owner.status = 101
    await owner.send_bytes(data)
    initial, _ = owner.h11.trailing_data
    websocket = ServerWebSocket(_Transport(owner, response), owner.limits, initial=bytes(initial))
    response.nursery.start_soon(websocket.run)
    return websocket


class _Transport:
    """The connection's stream, under a WebSocket (lab.server.websocket.Transport)."""

    def __init__(self, owner: _Connection, response: _Response) -> None:
        self._owner = owner
        self._response = response
        self.label = f"{owner.state.label} WebSocket"
        self.closing_event = owner.state.closing_event

    async def receive(self) -> bytes:
        try:
            data = await self._owner.stream.receive_some(self._owner.limits.receive_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportClosed from None
        return bytes(data)

    async def send(self, data: bytes) -> None:
        limits = self._owner.limits
        try:
            with trio.fail_after(limits.send_timeout):
                await self._owner.stream.send_all(data)
        except trio.TooSlowError:
            log.info("%s: client too slow: no progress sending for %ss", self.label,
                     limits.send_timeout)  # fmt: skip
            raise TransportClosed from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportClosed from None

    async def finish(self, ending: Ending) -> None:
        stream, limits = self._owner.stream, self._owner.limits
        if ending == "fail":
            # §7.1.7: the client must see the close at once, and may still be sending:
            # FIN (over TLS: close_notify, then FIN), then read and discard (bounded), so
            # that what it sends does not turn the close into a reset that loses the Close.
            await linger(stream, limits, reader_only=True)
        with trio.move_on_after(limits.close_timeout):
            await stream.aclose()

    def cancel_handler(self, *, gone: bool) -> None:
        if gone:
            self._owner.state.client_gone = True
        else:
            self._response.ended = True
        if self._response.nursery is not None:
            self._response.nursery.cancel_scope.cancel()
