"""HTTP/1.1 on h11 over trio: one task per connection, one request at a time.

h11 does the parsing and the framing; this module adds what h11 leaves to its user:

- a request-head size limit on *complete* heads (h11's ``max_incomplete_event_size`` is
  only checked while a head is incomplete) -> 431;
- ``Content-Length`` together with ``Transfer-Encoding`` -> 400 and close (RFC 9112 §6.1
  says a server that accepts such a request must close afterwards; h11 0.16 keeps the
  connection open, which is the request-smuggling foothold);
- head, body, idle and send timeouts; a body size limit -> 413;
- while a response streams, a watcher keeps reading so that a client that goes away
  cancels its handler at once (and pipelined requests are kept, bounded, for later);
- a lingering close after errors, so the client reads the error instead of a reset.

Pipelined requests are answered in order because h11 itself will not parse the next
request until ``start_next_cycle``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from http import HTTPStatus

import h11
import trio

from lab.server.closing import linger
from lab.server.connection import SERVER_NAME, ConnectionState
from lab.server.faults import boundary, contains, first_of, leaves
from lab.server.h1writer import ResponseWriter
from lab.server.interface import (
    AbortResponse,
    Handler,
    Headers,
    HTTPError,
    make_request,
    send_text,
)
from lab.server.limits import Limits
from lab.server.websocket import ServerWebSocket
from lab.server.websocket_http1 import accept, upgrade_of

__all__ = ["serve_http1"]

log = logging.getLogger("lab.server")

# How h11 writes the header that makes a response body chunked (lower-cased).
_CHUNKED = b"\r\ntransfer-encoding: chunked\r\n"

# A request's log line quotes at most this much of its target (heads go up to 16 KiB).
_LOGGED_TARGET = 200


class _Abort(Exception):
    """The connection cannot go on (client gone, too slow, or a broken stream)."""


class _Reject(Exception):
    """Answer the current request with an error status, then close."""

    def __init__(self, status: int, message: str, headers: Headers = ()) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = headers


def _reason(status: int) -> bytes:
    # h11 writes an empty reason phrase unless given one; some tools count that as an
    # error, so every response gets its standard phrase.
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class _H1Response:
    """:class:`lab.server.interface.ResponseStream` over one h11 connection.

    The head, the body and the end go through the response's :class:`ResponseWriter`
    (each written at once, or several chunks per write in a burst). h11 frames the head
    and the end and keeps the message state; each chunk of a chunked body is framed here
    (RFC 9112 §7.1: size in hex, CRLF, data, CRLF), which is all h11 would do with it.
    """

    def __init__(
        self, owner: _H1Connection, *, close: bool, request: h11.Request | None = None
    ) -> None:
        self._owner = owner
        self._close = close
        self.started = False
        self.ended = False
        self.chunked = False  # the body is chunked: send() frames each chunk itself
        # For accept_websocket() (lab.server.websocket_http1): the request, and the
        # nursery the handler runs in, where the WebSocket's reader runs beside it.
        self.request = request
        self.nursery: trio.Nursery | None = None
        self.websocket: ServerWebSocket | None = None
        self.writer = ResponseWriter(
            owner.stream, limit=owner.limits.send_buffer_size,
            send_timeout=owner.limits.send_timeout,
        )  # fmt: skip

    async def start(self, status: int, headers: Headers = ()) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        fields = [(b"date", self._owner.state.date_source()), (b"server", SERVER_NAME)]
        fields += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        if self._close:
            fields.append((b"connection", b"close"))
        self._owner.status = status
        head = self._owner.h11.send(
            h11.Response(status_code=status, headers=fields, reason=_reason(status))
        )
        # h11 chose the framing (RFC 9112 §6.3): chunked when the handler gave no length
        # to an HTTP/1.1 client, and then it names it in the head it wrote.
        self.chunked = not self._owner.head and _CHUNKED in head.lower()
        await self._send(head)

    async def send(self, data: bytes) -> None:
        if not self.started or self.websocket is not None:
            raise RuntimeError("send() before start(), or on a WebSocket")
        # A HEAD response has no content (RFC 9110 §9.3.2): h11 refuses any.
        if not data or self._owner.head:
            return
        if self.chunked:
            parts: tuple[bytes, ...] = (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            parts = (self._owner.h11.send(h11.Data(data=data)) or b"",)
        self._owner.body_sent += len(data)
        await self._send(*parts)

    async def _send(self, *parts: bytes) -> None:
        nursery = self.nursery
        if nursery is None:  # an error reply outside a handler's nursery
            self.writer.queue(*parts)
            await self.flush()
            return
        try:
            await self.writer.send(nursery, *parts)
        except trio.BrokenResourceError:
            raise _Abort from None

    async def end(self, trailers: Headers = ()) -> None:
        if self.ended:
            return
        if self.websocket is not None:
            await self.websocket.close()  # returned with the WebSocket open: 1000
            self.ended = True
            return
        self.ended = True
        fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in trailers]
        last = self._owner.h11.send(h11.EndOfMessage(headers=fields))
        if last:  # the last chunk and trailers (a Content-Length body ends with nothing)
            self.writer.queue(last)
        await self.flush()

    async def flush(self) -> None:
        """Wait until everything sent so far is written; _Abort when it cannot be."""
        try:
            await self.writer.flush()
        except trio.BrokenResourceError:
            raise _Abort from None

    async def accept_websocket(self, headers: Headers = ()) -> ServerWebSocket:
        self.websocket = await accept(self._owner, self, headers)
        return self.websocket


class _H1Connection:
    def __init__(
        self, stream: trio.abc.Stream, app: Handler, limits: Limits,
        state: ConnectionState,
    ) -> None:  # fmt: skip
        self.stream = stream
        self.app = app
        self.limits = limits
        self.state = state
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_size)
        self.fed = 0  # bytes given to h11 so far, to measure heads
        self.reserved = 0  # request body bytes counted in the server's budget
        # When the first request head began: the listener's sniffing counts against the
        # head timeout, so a head dribbled through it gets one timeout, not two.
        self.head_started: float | None = None
        # The response being written, for the request's log line: its status (0: none
        # yet) and the body bytes handed to h11 so far.
        self.status = 0
        self.body_sent = 0
        self.head = False  # the request is HEAD: its response carries no content
        # The disconnect watch of the response being written, which a WebSocket stops.
        self._watch_scope = trio.CancelScope()
        self._watch_done = trio.Event()

    # -- sending ---------------------------------------------------------------------

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.send_bytes(data)

    async def send_bytes(self, data: bytes) -> None:
        try:
            with trio.fail_after(self.limits.send_timeout):
                await self.stream.send_all(data)
        except trio.TooSlowError:
            log.info("client too slow: no progress sending for %ss", self.limits.send_timeout)
            raise _Abort from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Abort from None

    # -- receiving -------------------------------------------------------------------

    async def receive(self, wait: float) -> bool:
        """Feed h11 one read; False if none came within ``wait`` seconds."""
        with trio.move_on_after(wait) as scope:
            try:
                data = await self.stream.receive_some(self.limits.receive_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Abort from None
        if scope.cancelled_caught:
            return False
        # b"" is h11's EOF, as it should be. (A SocketStream gives bytes; only another
        # stream type could give a bytearray, which h11 is not typed for.)
        self.h11.receive_data(data if type(data) is bytes else bytes(data))
        self.fed += len(data)
        return True

    def consumed(self) -> int:
        return self.fed - len(self.h11.trailing_data[0])

    async def next_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request and its whole body, or None when the client is done."""
        begin = self.consumed()
        deadline: float | None = None
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            if self.consumed() == self.fed:
                # Nothing of a new request yet: the connection is idle, and shutdown may
                # end this wait.
                with self.state.idle() as scope:
                    more = await self.receive(self.limits.idle_timeout)
                if scope.cancelled_caught or not more:
                    return None
                continue
            # Part of a head is in: the whole head must arrive by one deadline (a
            # per-read timeout would let a client dribble a byte at a time forever).
            if deadline is None:
                started, self.head_started = self.head_started, None
                if started is None:
                    started = trio.current_time()
                deadline = started + self.limits.head_timeout
            if not await self.receive(max(0.0, deadline - trio.current_time())):
                raise _Reject(408, "request head not complete in time\n")
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise _Reject(400, f"expected a request, got {type(event).__name__}\n")
        request = event
        head_size = self.consumed() - begin
        if head_size > self.limits.max_head_size:
            raise _Reject(
                431, f"request head is {head_size} bytes; the limit is "
                f"{self.limits.max_head_size}\n",
            )  # fmt: skip
        names = {name for name, _ in request.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 §6.1: such a message may be a smuggling attempt; reject and close.
            raise _Reject(400, "Content-Length together with Transfer-Encoding\n")
        if self.h11.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        body = bytearray()
        while True:
            part = await self._next_event(self.limits.body_timeout, "request body")
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > self.limits.max_body_size:
                    raise _Reject(413, f"request body over {self.limits.max_body_size} bytes\n")
                if not self.state.bodies.reserve(len(part.data)):
                    log.info("%s: request bodies over the server's budget: 503", self.state.label)
                    raise _Reject(
                        503, "the server holds too many request bodies; try again shortly\n",
                        [("retry-after", "1")],
                    )  # fmt: skip
                self.reserved += len(part.data)
            elif isinstance(part, h11.EndOfMessage):
                return request, bytes(body)
            else:
                raise _Reject(400, "connection closed inside the request body\n")

    async def _next_event(self, wait: float, what: str) -> object:
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            if not await self.receive(wait):
                raise _Reject(408, f"{what} not complete in time\n")
        return event

    # -- one request -----------------------------------------------------------------

    async def respond(self, request: h11.Request, body: bytes) -> None:
        """Answer one request and log one line for it (status, body bytes, duration);
        raise _Abort when the connection cannot go on."""
        method, target = request.method.decode("ascii"), request.target.decode("ascii")
        self.state.request_read(method, target)
        self.status, self.body_sent = 0, 0
        self.head = request.method == b"HEAD"
        started = trio.current_time()
        complete = False
        try:
            await self._respond(request, body, f"{method} {target}")
            complete = True
        finally:
            # Whole if the last of the response went out, even if the client left right
            # after it (its EOF may end the exchange before the handler's task returns).
            complete = complete or self.h11.our_state is h11.DONE
            self.head = False  # an error reply to a later, unreadable request has content
            log.info(
                "connection %d http/1.1 %s %s -> %s, %d body bytes in %.3f s%s",
                self.state.number, method, target[:_LOGGED_TARGET], self.status or "-",
                self.body_sent, trio.current_time() - started, "" if complete else " (cut short)",
            )  # fmt: skip

    async def _respond(self, request: h11.Request, body: bytes, what: str) -> None:
        """Run the handler for one request; raise _Abort when the connection cannot go on.

        The handler runs in a nursery beside the disconnect watcher, so whatever it raises
        arrives here wrapped in an exception group; the outcome is sorted out *after* the
        nursery, and an error reply is written outside any ``except`` clause, so that a
        failure of that reply (the client left meanwhile) is an ordinary _Abort.
        """
        response = _H1Response(self, close=self.state.closing, request=request)
        outcome: BaseException | None = None
        self._watch_scope, self._watch_done = trio.CancelScope(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_for_disconnect, nursery.cancel_scope, response.writer)
            response.nursery = nursery
            response.writer.cancel = nursery.cancel_scope
            try:
                req = make_request(
                    request.method.decode("ascii"),
                    request.target.decode("ascii"),
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers],
                    body,
                    "http/1.1",
                    local=self.state.local,
                    peer=self.state.peer,
                    background=self.state.background,
                    feed=self.state.feed,
                    upgrade=upgrade_of(request.headers),
                )
                await self.app(req, response)
                if not response.started:
                    raise RuntimeError("handler returned without starting a response")
                await response.end()
            except Exception as exc:
                outcome = exc
            if response.websocket is not None and outcome is not None:
                outcome = await response.websocket.conclude(outcome)
                response.ended = outcome is None
            elif outcome is not None and response.writer.pending:
                # Cut short: what the handler sent before goes out first, so the client
                # sees every chunk it was sent, then the cut.
                with contextlib.suppress(_Abort):
                    await response.flush()
            nursery.cancel_scope.cancel()
        if self.state.client_gone or outcome is None:
            if self.state.client_gone or not response.ended:
                raise _Abort  # cancelled by the watcher: the client left
            return
        if contains(outcome, _Abort):
            raise _Abort  # a send failed: the client left, reset or stopped reading
        cut = first_of(outcome, AbortResponse)
        if isinstance(cut, AbortResponse):
            log.info("%s %s: %s cut off: %s", self.state.label, what, "response", cut.reason)
            raise _Abort
        error = first_of(outcome, HTTPError)
        if isinstance(error, HTTPError) and not response.started:
            await send_text(
                _H1Response(self, close=self.state.closing),
                error.status, error.message, error.headers,
            )  # fmt: skip
            return
        if not isinstance(error, HTTPError):
            log.warning("%s %s: handler failed: %r", self.state.label, what, outcome)
            log.debug("%s %s: traceback", self.state.label, what, exc_info=outcome)
        if response.started:
            # Mid-stream failure: stop without the last chunk, so that the client sees an
            # incomplete body instead of a complete-looking truncated one.
            raise _Abort
        await send_text(
            _H1Response(self, close=self.state.closing),
            500, f"handler failed: {next(leaves(outcome))!r}\n",
        )  # fmt: skip

    async def _watch_for_disconnect(
        self, cancel_scope: trio.CancelScope, writer: ResponseWriter
    ) -> None:
        """Read while the response is written: EOF means the client left. Also keeps the
        writer's send timeout (ResponseWriter.arm / next_check): the deadline of each
        wait here is the writer's next check."""
        kept = 0
        deadline = math.inf
        with self._watch_scope:  # stop_watching() ends the watch
            try:
                while True:
                    with trio.CancelScope(deadline=deadline) as wait:
                        writer.arm = functools.partial(setattr, wait, "deadline")
                        if kept > self.limits.max_pipelined_bytes:
                            # Enough buffered; stop reading until this response is done.
                            await trio.sleep_forever()
                        data = await self.stream.receive_some(self.limits.receive_size)
                    if wait.cancelled_caught:
                        deadline = writer.next_check(trio.current_time())
                        continue
                    deadline = wait.deadline
                    if not data:
                        break
                    # Pipelined bytes: h11 keeps them until start_next_cycle().
                    self.h11.receive_data(data if type(data) is bytes else bytes(data))
                    self.fed += len(data)
                    kept += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                writer.arm = None
            # EOF (or a broken stream) while the response is still going: the client
            # left. The lab treats a half-close as leaving too, as most servers do.
            self.state.client_gone = True
            cancel_scope.cancel()
        self._watch_done.set()

    async def stop_watching(self) -> None:
        """End the disconnect watch (a WebSocket reads the stream from now on); what it
        read is in h11's buffer (a cancelled receive reads nothing)."""
        self._watch_scope.cancel()
        await self._watch_done.wait()

    async def reject(self, status: int, message: str, headers: Headers = ()) -> None:
        """Send an error response if h11 still allows one, then linger and close."""
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError):
                await send_text(_H1Response(self, close=True), status, message, headers)
                # A request the handler never saw gets its log line here.
                log.info(
                    "connection %d http/1.1 (request refused) -> %d: %s",
                    self.state.number, status, message.strip()[:_LOGGED_TARGET],
                )  # fmt: skip
        await linger(self.stream, self.limits)

    # -- the connection --------------------------------------------------------------

    async def run(self, initial: bytes) -> None:
        if initial:
            self.h11.receive_data(initial)
            self.fed += len(initial)
        try:
            while True:
                try:
                    got = await self.next_request()
                except h11.RemoteProtocolError as exc:
                    await self.reject(exc.error_status_hint, f"bad request: {exc}\n")
                    return
                except _Reject as exc:
                    await self.reject(exc.status, exc.message, exc.headers)
                    return
                if got is None:
                    return
                try:
                    await self.respond(*got)
                finally:
                    self.release_body()
                if self.h11.our_state is not h11.DONE or self.state.closing:
                    return
                self.h11.start_next_cycle()
        except _Abort:
            return
        finally:
            self.release_body()

    def release_body(self) -> None:
        self.state.bodies.release(self.reserved)
        self.reserved = 0


async def serve_http1(
    stream: trio.abc.Stream,
    app: Handler,
    limits: Limits,
    state: ConnectionState,
    initial: bytes = b"",
    *,
    head_started: float | None = None,
) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until the client or the server is done.

    ``initial`` is what the listener already read while deciding the protocol, and
    ``head_started`` when it started reading it (the head timeout counts from there). Nothing
    raised while serving leaves this function except cancellation: an unforeseen error
    ends this connection only (a 500 if no response had started, else a cut response).
    """
    connection = _H1Connection(stream, app, limits, state)
    connection.head_started = head_started
    with boundary(state.label) as fault:
        await connection.run(initial)
    if fault:
        with boundary(f"{state.label}, answering an internal error"), contextlib.suppress(_Abort):
            await connection.reject(500, "internal server error\n")
