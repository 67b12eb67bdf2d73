"""A WebSocket connection on the lab's servers (RFC 6455 §5-§7), the same over HTTP/1.1 and
HTTP/2: :class:`ServerWebSocket` is the :class:`~lab.server.interface.WebSocket` a handler
gets from ``response.accept_websocket()``.

Only the opening handshake and the transport differ between the protocols, and they live
beside each one (lab.server.websocket_http1: a 101 through h11, then the raw stream;
lab.server.websocket_h2: RFC 8441's 200 on an extended CONNECT stream, then its DATA
frames). Both hand this module a :class:`Transport`; everything after the handshake is
here, and is the same:

- **One reader per connection**, a server task beside the handler: it decodes the peer's
  frames with :class:`lab.wire.websocket.WebSocketDecoder` (server role: every frame must
  be masked, §5.1), answers each Ping with a Pong (§5.5.2), and queues whole messages for
  :meth:`ServerWebSocket.receive` (at most ``ws_max_queued_messages``; then it stops
  reading, and the transport's own window holds the peer back).
- **Bad input fails the connection** (§7.1.7): a Close frame with the code the decoder
  names (1002 protocol error, 1007 invalid UTF-8, 1009 too big), then the connection is
  closed without waiting for an answer.
- **The closing handshake both ways** (§5.5.1, §7.1.2): a peer's Close is answered with
  a Close echoing its code, then the connection is closed; a Close the server sends waits
  for the peer's at most ``ws_close_timeout``, then the connection is cut.
- **Limits**: the message size and frames per message (1009), idle (1001 after
  ``ws_idle_timeout`` with no frame either way), shutdown (1001), a handler that leaves
  a full queue unread for ``ws_idle_timeout`` (1011).
- **Sends are whole frames**: one lock, so a Pong never lands inside a message frame.

A handler still running once the connection is closed gets :class:`WebSocketClosed` from
its next call and ``ws_close_timeout`` to return; then it is cancelled. A peer that just
leaves (no Close) cancels it at once, as a client that leaves an HTTP response does.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final, Literal, Protocol

import trio

from lab.server.faults import boundary, first_of, leaves
from lab.server.interface import AbortResponse, WebSocketClosed
from lab.server.limits import Limits
from lab.wire.websocket_decoder import WebSocketDecoder
from lab.wire.websocket_encode import binary, close, pong, text
from lab.wire.websocket_segments import (
    CloseCode,
    Message,
    Opcode,
    WebSocketError,
    WebSocketFrame,
    close_code_problem,
)

__all__ = ["Ending", "ServerWebSocket", "Transport", "TransportClosed"]

log = logging.getLogger("lab.server")

# How a connection ends, for the transport: "clean" after a whole closing handshake;
# "fail" after the server's Close for bad input (§7.1.7: no answer is waited for);
# "abort" when the peer left, stopped answering, or the handler was cut off.
Ending = Literal["clean", "fail", "abort"]

# A Close frame's reason: what is left of the 125-octet control payload after the code.
MAX_REASON_BYTES: Final = 123


class TransportClosed(Exception):
    """The transport under the WebSocket failed: the peer left, reset, or stopped reading."""


class Transport(Protocol):
    """What a WebSocket needs of the protocol that carries it."""

    label: str  # how log lines name it
    closing_event: trio.Event  # set when the server shuts down (1001)

    async def receive(self) -> bytes:
        """The next bytes from the peer; b"" when it ended its side (TCP FIN, END_STREAM).
        Raises :class:`TransportClosed`."""
        ...

    async def send(self, data: bytes) -> None:
        """Send ``data`` within the send timeout; :class:`TransportClosed` if it fails."""
        ...

    async def finish(self, ending: Ending) -> None:
        """Close the connection under the WebSocket (bounded; never raises)."""
        ...

    def cancel_handler(self, *, gone: bool) -> None:
        """Cancel the handler still running (``gone``: the peer left without a Close)."""
        ...


def _utf8_prefix(reason: str, limit: int) -> str:
    """``reason`` cut to at most ``limit`` UTF-8 octets, on a character boundary."""
    return reason.encode("utf-8")[:limit].decode("utf-8", "ignore")


class ServerWebSocket:
    """One accepted WebSocket: the reader task (:meth:`run`) and the handler's calls."""

    def __init__(self, transport: Transport, limits: Limits, *, initial: bytes = b"") -> None:
        self._t = transport
        self._limits = limits
        self._initial = initial  # bytes of frames read with the handshake
        self._decoder = WebSocketDecoder("server", max_message_size=limits.ws_max_message_size)
        self._queue_in, self._queue_out = trio.open_memory_channel[Message](
            limits.ws_max_queued_messages
        )
        self._lock = trio.Lock()  # one frame at a time on the transport
        self._scope = trio.CancelScope()  # the whole session: stop()
        self._reader_scope = trio.CancelScope()  # the reader alone: cut off a silent peer
        self._last = trio.current_time()  # the last frame either way (the idle clock)
        self.sent_close: tuple[int, str] | None = None
        self._sent_close_at = 0.0
        self.received_close: tuple[int, str] | None = None
        self._finished = False
        self.done = trio.Event()  # the connection under the WebSocket is closed
        self.ending: Ending | None = None
        self.messages_in = 0
        self.messages_out = 0

    # -- the handler's side ----------------------------------------------------------

    def _closed(self) -> WebSocketClosed:
        if self.received_close is not None:
            return WebSocketClosed(*self.received_close)
        if self.sent_close is not None:
            return WebSocketClosed(*self.sent_close)
        return WebSocketClosed(CloseCode.ABNORMAL_CLOSURE, "no Close frame from the peer")

    async def receive(self) -> Message:
        try:
            return await self._queue_out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._closed() from None

    async def send_text(self, data: str) -> None:
        await self._send_message(text(data))

    async def send_bytes(self, data: bytes) -> None:
        await self._send_message(binary(bytes(data)))

    async def _send_message(self, frame: bytes) -> None:
        # §5.5.1: no data frame after a Close frame.
        if self.sent_close is not None or self.done.is_set():
            raise self._closed()
        await self._send(frame)
        self.messages_out += 1

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        problem = close_code_problem(code)
        if problem is not None:
            raise ValueError(problem)
        if len(reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise ValueError(f"a close reason is at most {MAX_REASON_BYTES} UTF-8 octets (§5.5)")
        if self.done.is_set():
            return
        if self.sent_close is None:
            self._queue_out.close()  # no message reaches the handler after its Close
            try:
                await self._send_close(code, reason)
            except WebSocketClosed:
                return
        # The reader answers nothing more and finishes once the peer's Close is in; a
        # peer that stays silent is cut off after the wait.
        with trio.move_on_after(self._limits.ws_close_timeout):
            await self.done.wait()
        if not self.done.is_set():
            await self._cut()

    async def conclude(self, outcome: BaseException) -> BaseException | None:
        """The handler raised ``outcome`` after accepting: close the connection the way
        it says. None when that is done; ``outcome`` itself when the server must cut the
        connection off (:class:`AbortResponse`)."""
        if first_of(outcome, AbortResponse) is not None:
            self._queue_out.close()
            self._reader_scope.cancel()
            return outcome
        if all(isinstance(leaf, WebSocketClosed) for leaf in leaves(outcome)):
            await self.close()  # closed already, or closing: wait for it (bounded)
            return None
        log.warning("%s: handler failed: %r", self._t.label, next(leaves(outcome)))
        log.debug("%s: traceback", self._t.label, exc_info=outcome)
        # §7.4.1: 1011, the server met a condition that prevented it from going on.
        await self.close(CloseCode.INTERNAL_ERROR, "internal error")
        return None

    def stop(self) -> None:
        """The handler is over and the stream is done: end the reader now. A WebSocket
        not closed yet ended with what carried it (the client left, reset the stream, or
        the server cut it off)."""
        self._scope.cancel()
        if not self._finished:
            self._finished = True
            self.ending = "abort"
            self.done.set()
            self._log_end()

    # -- sending ---------------------------------------------------------------------

    async def _send(self, frame: bytes) -> None:
        async with self._lock:
            if self._finished:
                raise self._closed()
            try:
                await self._t.send(frame)
            except TransportClosed:
                self._queue_in.close()
                await self._finish("abort")
                raise self._closed() from None
            self._last = trio.current_time()

    async def _send_close(self, code: int | None, reason: str = "") -> None:
        """Send a Close frame: ``code`` None for one without a body (§5.5.1)."""
        reason = _utf8_prefix(reason, MAX_REASON_BYTES) if code is not None else ""
        self.sent_close = (code if code is not None else CloseCode.NO_STATUS_RECEIVED, reason)
        self._sent_close_at = trio.current_time()
        await self._send(close(code, reason))

    async def _finish(self, ending: Ending) -> None:
        if self._finished:
            return
        self._finished = True
        self.ending = ending
        try:
            await self._t.finish(ending)
        finally:
            self.done.set()
            self._log_end()

    async def _cut(self, *, by_reader: bool = False) -> None:
        """The peer did not answer the server's Close in time: cut the connection off
        (and stop the reader, unless it is the caller)."""
        if self._finished:
            return
        log.info(
            "%s: no Close frame in answer within %ss: connection cut",
            self._t.label, self._limits.ws_close_timeout,
        )  # fmt: skip
        if not by_reader:
            self._reader_scope.cancel()
        await self._finish("abort")

    def _log_end(self) -> None:
        sent = f"{self.sent_close[0]}" if self.sent_close is not None else "none"
        got = f"{self.received_close[0]}" if self.received_close is not None else "none"
        log.info(
            "%s: WebSocket closed (%s): Close sent %s, received %s; %d messages in, %d out",
            self._t.label, self.ending, sent, got, self.messages_in, self.messages_out,
        )  # fmt: skip

    # -- the reader ------------------------------------------------------------------

    async def run(self) -> None:
        """The server's tasks for this WebSocket: the reader, and the shutdown watch."""
        with self._scope, boundary(self._t.label) as fault:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_then_release, nursery.cancel_scope)
                nursery.start_soon(self._shutdown_watch)
        if fault:
            # The session's state is unknown: close the connection under it.
            with trio.CancelScope(shield=True), boundary(f"{self._t.label}, closing"):
                with trio.move_on_after(self._limits.close_timeout):
                    await self._finish("abort")
                self._t.cancel_handler(gone=True)

    async def _shutdown_watch(self) -> None:
        # Set by the listener on shutdown: 1001, "a server going down" (§7.4.1).
        await self._t.closing_event.wait()
        await self.close(CloseCode.GOING_AWAY, "server shutting down")

    async def _read_then_release(self, tasks: trio.CancelScope) -> None:
        gone = False
        with self._reader_scope:  # cancelled by _cut(), which finishes the connection
            gone = await self._read()
        if gone:
            self._t.cancel_handler(gone=True)
            tasks.cancel()
            return
        # Closed: the handler's next call raises WebSocketClosed; one that does not
        # return within the wait is cancelled.
        await trio.sleep(self._limits.ws_close_timeout)
        self._t.cancel_handler(gone=False)
        tasks.cancel()

    async def _read(self) -> bool:
        """Read until the connection is closed; True when the peer left without a Close
        (or the transport failed)."""
        data, self._initial = self._initial, b""
        while True:
            if data:
                self._last = trio.current_time()
                if not await self._feed(data):
                    return False
            received = await self._receive()
            if received is None:
                return False  # closed: the peer did not answer the server's Close
            if not received:
                if not self._finished:
                    log.info("%s: the peer left without a Close frame (1006)", self._t.label)
                    self._queue_in.close()
                    await self._finish("abort")
                return True
            data = received

    async def _receive(self) -> bytes | None:
        """The next read; b"" at the end of input; None once the connection was cut
        because the peer did not answer the server's Close."""
        while True:
            closing = self.sent_close is not None
            if closing:
                deadline = self._sent_close_at + self._limits.ws_close_timeout
            else:
                deadline = self._last + self._limits.ws_idle_timeout
            with trio.move_on_at(deadline):
                try:
                    return await self._t.receive()
                except TransportClosed:
                    return b""
            now = trio.current_time()
            if closing and now >= deadline:
                await self._cut(by_reader=True)
                return None
            if not closing and now >= self._last + self._limits.ws_idle_timeout:
                idle = self._limits.ws_idle_timeout
                log.info("%s: no frame either way for %ss: closing", self._t.label, idle)
                self._queue_out.close()
                try:
                    await self._send_close(CloseCode.GOING_AWAY, f"idle for {idle:g} s")
                except WebSocketClosed:
                    return b""

    async def _feed(self, data: bytes) -> bool:
        """Decode ``data`` and act on each frame; False once the connection is closed."""
        try:
            segments = self._decoder.feed(data)
        except WebSocketError as exc:
            # The frames before the bad one still count (a Ping is still answered).
            for segment in exc.segments:
                if isinstance(segment, WebSocketFrame) and not await self._frame(segment):
                    return False
            await self._fail(exc.close_code, str(exc))
            return False
        for segment in segments:
            if isinstance(segment, WebSocketFrame) and not await self._frame(segment):
                return False
        return True

    async def _fail(self, code: int, why: str) -> None:
        """_Fail the WebSocket Connection_ (§7.1.7): Close with ``code``, then close."""
        log.info("%s: WebSocket failed with %d: %s", self._t.label, code, why)
        self._queue_out.close()
        if self.sent_close is None:
            try:
                await self._send_close(code, why)
            except WebSocketClosed:
                return
        await self._finish("fail")

    async def _frame(self, frame: WebSocketFrame) -> bool:
        """Act on one frame from the peer; False once the connection is closed."""
        if not frame.is_control:
            if frame.fragment > self._limits.ws_max_frames_per_message:
                await self._fail(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"a message in more than {self._limits.ws_max_frames_per_message} frames",
                )
                return False
            if frame.message is not None:
                self.messages_in += 1
                # Back-pressure: a full queue stops the reading here. Once no one reads
                # any more (a Close was sent), the message is dropped.
                idle = self._limits.ws_idle_timeout
                with (
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                    trio.move_on_after(idle) as waited,
                ):
                    await self._queue_in.send(frame.message)
                if waited.cancelled_caught:
                    # The handler took no message for that long: nothing here can tell
                    # whether the peer is still there. 1011, as the websockets library
                    # closes when its reading stalls (its keepalive ping goes unanswered).
                    await self._fail(
                        CloseCode.INTERNAL_ERROR, f"the handler read no message for {idle:g} s"
                    )
                    return False
            return True
        if frame.opcode == Opcode.PING:
            if self.sent_close is None:  # §5.5.2: unless a Close was sent already
                try:
                    await self._send(pong(frame.data))
                except WebSocketClosed:
                    return False
            return True
        if frame.opcode != Opcode.CLOSE or frame.message is None:
            return True  # a Pong: nothing to do (§5.5.3)
        code, reason = frame.message.code, frame.message.reason
        self.received_close = (code if code is not None else CloseCode.NO_STATUS_RECEIVED, reason)
        self._queue_in.close()  # the handler gets what was queued, then WebSocketClosed
        if self.sent_close is None:
            # §5.5.1: answer with a Close, "typically echoing the status code it received"
            # (none when it carried none).
            try:
                await self._send_close(code)
            except WebSocketClosed:
                return False
        await self._finish("clean")
        return False
