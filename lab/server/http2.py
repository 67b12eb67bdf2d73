"""HTTP/2 (h2c prior knowledge, or h2 by ALPN) on h2 over trio.

h2 is the state machine and the frame/HPACK codec; this module adds what h2 leaves to its
user (h2 has no rate limits, no timeouts and no I/O):

- **Frames are looked at before h2 parses them** (lab.server.h2input): split into whole
  frames, lengths checked on the 9-byte header, a control-frame budget charged frame by
  frame, and h2 fed one frame at a time, so that a connection error is answered with
  exactly the right GOAWAY.
- **One writer per connection** (lab.server.h2writer): handlers and the read loop only
  queue frames; frames the server owes are never lost to a cancelled handler.
- **MAX_CONCURRENT_STREAMS as a stream error.** h2 turns one stream too many into a
  connection error, killing every stream on the connection. The lab keeps h2's own limit
  off, advertises the limit itself, and refuses one stream over it with
  RST_STREAM(REFUSED_STREAM), which a client may safely retry (§8.7).
- **Bounded closed-stream bookkeeping** (h2 keeps 65,536 closed streams by default).
- **A control-frame budget** against floods of frames that cost the server work
  (lab.server.h2input), per connection and per client address; past either,
  GOAWAY(ENHANCE_YOUR_CALM). Handlers start once a whole read is processed, so a stream
  reset in the read that opened it (rapid reset) costs no handler.
- **Request heads and bodies in budgets.** SETTINGS_MAX_HEADER_LIST_SIZE is advertised and
  a larger head gets 431 on its stream (§6.5.2, RFC 6585 §5); HPACK itself stops decoding
  at a hard cap (a connection error, since the table would be out of step). A body over
  the per-request limit gets 413 then RST_STREAM(NO_ERROR) (§8.1); bodies buffered on one
  connection share a budget, and bodies on every connection of the server another; past
  either, a stream is refused with RST_STREAM(REFUSED_STREAM) (§8.7: safe to retry).
- **Error codes h2 gets wrong:** an HPACK decoding failure is COMPRESSION_ERROR (§4.3);
  h2 says PROTOCOL_ERROR (a SETTINGS ACK with a payload: lab.server.h2input).
- **The client's GOAWAY** (§6.8) stops new streams; open ones finish and PINGs are still
  answered (h2 would refuse every frame after it).
- **Connection errors** (§5.4.1): one GOAWAY with the code, then the write side closes at
  once; the server lingers only as a reader. Never a GOAWAY(NO_ERROR) after an error one;
  an error after a graceful GOAWAY(NO_ERROR) gets a second GOAWAY with its code (§6.8).
- **Shutdown**: GOAWAY(NO_ERROR) at once; streams in flight get the shutdown grace, then
  each one still running is cancelled with RST_STREAM(CANCEL).
- **Timeouts**: idle connections, request bodies that stop coming, and sends stalled by
  flow control or a client that does not read (RST_STREAM(CANCEL) and one log line).
- **Fault boundaries** around each stream and the connection (see lab.server.faults).

The same endpoints as HTTP/1.1 run unchanged: each ``send`` is one DATA frame (or several,
when it is larger than a frame or the window). Header fields are decoded as ISO-8859-1,
as on HTTP/1.1, so an endpoint sees the same strings over both protocols.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack.exceptions
import trio

from lab.server.closing import linger
from lab.server.connection import ConnectionState
from lab.server.faults import boundary, contains, first_of, leaves
from lab.server.h2input import (
    PREFACE,
    H2ConnectionError,
)
from lab.server.h2state import (
    H2State,
    _LabH2Connection,  # noqa: F401 - h2 with the lab's bounds
)
from lab.server.h2stream import H2Response, Stalled, Stream
from lab.server.h2writer import Gone
from lab.server.interface import (
    AbortResponse,
    Handler,
    Headers,
    HTTPError,
    make_request,
    send_text,
)
from lab.server.limits import YIELD_EVERY, Limits
from lab.server.websocket import ServerWebSocket
from lab.server.websocket_h2 import accept

__all__ = ["PREFACE", "serve_h2"]

log = logging.getLogger("lab.server")

ErrorCodes = h2.errors.ErrorCodes
# A stream's log line quotes at most this much of its :path (heads go up to 16 KiB).
_LOGGED_TARGET: Final = 200
# Frames parsed from one read before other tasks get a turn: parsing one costs h2 about
# 20-50 µs, so a turn is about a millisecond. With 64, ten connections bursting at once
# (rapid reset from one address) held a bystander's stream up ~150 ms; with 16, ~80 ms
# (lab bench attacks --attack rapid-reset-many).
FRAMES_PER_TURN: Final = 16


class _H2Connection(H2State):
    """The tasks of one HTTP/2 connection: reading, writing, handlers, the watchdog."""

    async def flush(self) -> None:
        """Queue what h2 has to send and wait until the socket took it (back-pressure)."""
        await self.writer.written_to(self._queue())

    async def pace(self) -> None:
        """Queue what h2 has to send; wait for the socket only when the writer is more than
        ``send_buffer_size`` behind (back-pressure), and otherwise let other tasks run
        every YIELD_EVERY calls: a burst of frames costs the writer one write per batch,
        not one per frame, and its handler no trip through the scheduler per frame."""
        position = self._queue()
        if self.writer.backlog >= self.limits.send_buffer_size:
            await self.writer.written_to(position)
            return
        self._paced += 1
        if self._paced % YIELD_EVERY == 0:
            await trio.lowlevel.checkpoint()

    async def send_data(self, stream: Stream, data: bytes) -> None:
        if self.queue_data(stream.stream_id, data):  # the plain case: one whole frame
            self.rules.sent_data_frame()
            await self.pace()
            return
        view = memoryview(data)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream.stream_id),
                self.conn.max_outbound_frame_size,
            )
            # Silly-window avoidance (as a TCP sender does, RFC 1122 §4.2.3.4): a window
            # too small for the rest of the data and under half the peer's initial window
            # is waited on, not filled. A peer that returns credit frame by frame would
            # otherwise get one tiny frame per round trip for ever after the first split.
            wanted = min(
                len(view), self.conn.max_outbound_frame_size,
                max(1, self.conn.remote_settings.initial_window_size // 2),
            )  # fmt: skip
            if window < wanted:
                # Wait for WINDOW_UPDATE on this stream or on the connection (which sets
                # every stream's event), or a new SETTINGS_INITIAL_WINDOW_SIZE. One plain
                # event, no nursery: a cancelled handler sees a plain trio.Cancelled.
                stream.window_open = trio.Event()
                with trio.move_on_after(self.limits.send_timeout) as waited:
                    await stream.window_open.wait()
                if waited.cancelled_caught:
                    raise Stalled
                continue
            self.conn.send_data(stream.stream_id, bytes(view[:window]))
            view = view[window:]
            self.rules.sent_data_frame()
            await self.pace()

    async def _run_stream(self, stream: Stream) -> None:
        """One request's handler, behind the stream's fault boundary; one log line."""
        method, path, headers = self._request(stream)
        self.state.request_read(method, path)
        where = f"{self.state.label} stream {stream.stream_id} {method} {path[:200]}"
        response = _Counted(H2Response(self, stream), stream, self)
        outcome: BaseException | None = None
        started = trio.current_time()
        try:
            with stream.scope:
                try:
                    if stream.status_override is not None:
                        raise HTTPError(*stream.status_override)
                    body, stream.body = bytes(stream.body), bytearray()
                    request = make_request(
                        method, path, headers, body, "h2", local=self.state.local,
                        peer=self.state.peer, background=self.state.background,
                        feed=self.state.feed,
                        upgrade="websocket" if stream.protocol == "websocket" else "",
                    )  # fmt: skip
                    del body
                    await self.app(request, response)
                    if not stream.started:
                        raise RuntimeError("handler returned without starting a response")
                    await response.end()
                except Exception as exc:
                    outcome = exc
                if response.websocket is not None and outcome is not None:
                    outcome = await response.websocket.conclude(outcome)
            with boundary(where) as fault:
                await self._conclude(stream, response, outcome, where)
            if fault:
                self._reset(stream, ErrorCodes.INTERNAL_ERROR)  # RFC 9113 §5.4.2
                self._queue()
        finally:
            self._release(stream)
            complete = response.complete and not self.writer.broken
            log.info(
                "connection %d %s stream %d %s %s -> %s, %d body bytes in %.3f s%s",
                self.state.number, self.state.protocol, stream.stream_id, method,
                path[:_LOGGED_TARGET], response.status or "-", response.sent,
                trio.current_time() - started, "" if complete else " (cut short)",
            )  # fmt: skip

    async def _conclude(
        self, stream: Stream, response: _Counted, outcome: BaseException | None, where: str
    ) -> None:
        """End the stream the way its outcome says (outside the handler's scope, so that a
        cancelled handler still gets its RST_STREAM written)."""
        if outcome is None or stream.scope.cancelled_caught or self.writer.broken:
            if not stream.ended:  # cancelled by shutdown, or the connection broke
                self._reset(stream, ErrorCodes.CANCEL)
            self._queue()
            return
        if contains(outcome, Gone):
            return
        if contains(outcome, (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError)):
            return  # the client reset the stream or the connection ended under the handler
        if contains(outcome, Stalled):
            log.info(
                "%s: no flow-control window for %ss: cancelled", where, self.limits.send_timeout
            )
            self._reset(stream, ErrorCodes.CANCEL)
            self._queue()
            return
        cut = first_of(outcome, AbortResponse)
        if cut is not None:
            log.info("%s: cut off: %s", where, cut.reason)
            self._reset(stream, ErrorCodes.CANCEL)
            self._queue()
            return
        error = first_of(outcome, HTTPError)
        if error is None:
            log.warning("%s: handler failed: %r", where, next(leaves(outcome)))
            log.debug("%s: traceback", where, exc_info=outcome)
        if stream.started:
            self._reset(stream, ErrorCodes.INTERNAL_ERROR)
            self._queue()
            return
        if error is not None:
            status, message, headers = error.status, error.message, error.headers
        else:
            status, message, headers = 500, f"handler failed: {next(leaves(outcome))!r}\n", ()
        # The error reply may meet a reset stream, a closed window or a broken connection
        # as any response may; a client's RST_STREAM cancels it like a handler.
        stream.scope = trio.CancelScope()
        with stream.scope:
            try:
                await send_text(response, status, message, headers)
            except Stalled:
                self._reset(stream, ErrorCodes.CANCEL)
            except (Gone, h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                return
        if not stream.complete:
            # Answered before the whole request came (413, 431, 408): ask the client to
            # stop sending without error (RFC 9113 §8.1).
            self._reset(stream, ErrorCodes.NO_ERROR)
        self._queue()

    def _launch(self) -> None:
        """Start the handlers of the streams made ready, but not those the client reset
        meanwhile: HEADERS and RST_STREAM in one read (rapid reset, CVE-2023-44487) cost
        no task and no handler."""
        if self._receiving:
            return  # the read loop launches them once its read is processed
        ready, self._ready = self._ready, []
        for stream in ready:
            if self.streams.get(stream.stream_id) is not stream or stream.running:
                continue  # reset and released meanwhile, or made ready twice
            self._launch_one(stream)

    def _launch_one(self, stream: Stream) -> None:
        assert self._nursery is not None
        if self.state.closing or self._goaway_code is not None:
            # After GOAWAY no new stream is processed (RFC 9113 §6.8).
            self._reset(stream, ErrorCodes.REFUSED_STREAM)
            self._release(stream)
            return
        stream.running = True
        self.active += 1
        self._no_streams = trio.Event() if self._no_streams.is_set() else self._no_streams
        self.last_processed = max(self.last_processed, stream.stream_id)
        self._nursery.start_soon(self._run_stream, stream)

    async def _receive(self, data: bytes) -> None:
        """Feed one read: split it into frames, check each, hand it to h2, act on events.

        A read may hold thousands of small frames; every FRAMES_PER_TURN of them the
        event loop gets a turn, so that other connections are not held up while one
        client's burst is parsed (handlers start once the whole read is in, see _launch).
        """
        self._receiving = True  # no handler starts before the whole read is in
        try:
            await self._receive_frames(data)
        finally:
            self._receiving = False
        self._launch()

    async def _receive_frames(self, data: bytes) -> None:
        for count, frame in enumerate(self.splitter.feed(data)):
            if count and not count % FRAMES_PER_TURN:
                await trio.lowlevel.checkpoint()
            if not self._check_frame(frame):
                continue
            self._queue()  # what h2 owed before this frame is not lost on an error below
            try:
                events = self.conn.receive_data(frame.raw)
            except h2.exceptions.ProtocolError as exc:
                self.conn.data_to_send()  # h2's own GOAWAY: replaced by the right one
                code = ErrorCodes(exc.error_code)
                if isinstance(exc.__cause__, hpack.exceptions.HPACKError) and not isinstance(
                    exc.__cause__, hpack.exceptions.OversizedHeaderListError
                ):
                    code = ErrorCodes.COMPRESSION_ERROR  # RFC 9113 §4.3
                raise H2ConnectionError(code, str(exc)) from None
            for event in events:
                self._handle(event)
            if self._pending_error is not None:
                raise self._pending_error
        if self.splitter.failed is not None:
            raise self.splitter.failed

    async def _read_loop(self, initial: bytes) -> None:
        """Feed h2 until the client leaves, or the watchdog stops reading."""
        data = initial
        while True:
            if data:
                self._activity.set()
                await self._receive(data)
                if not (self.splitter.incomplete or self.rules.header_block_open):
                    self._incomplete_since = None
                elif self._incomplete_since is None:
                    self._incomplete_since = trio.current_time()
                # Back-pressure: a client that sends frames the server must answer (PING)
                # but does not read the answers is not read from either.
                target = self._queue()
                if self.writer.backlog > self.limits.h2_max_write_backlog:
                    with contextlib.suppress(Gone):
                        await self.writer.written_to(target)
            try:
                data = bytes(await self.stream.receive_some(self.limits.receive_size))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.state.client_gone = True
                self._cancel_all()
                return

    def _expire_bodies(self) -> float:
        """Answer 408 on streams whose body stopped coming, end a connection whose frame
        or header block is late; the next such deadline."""
        now = trio.current_time()
        next_deadline = now + self.limits.idle_timeout
        if self._incomplete_since is not None and self._pending_error is None:
            late = self._incomplete_since + self.limits.head_timeout
            if late <= now:
                self._pending_error = H2ConnectionError(
                    ErrorCodes.NO_ERROR,
                    f"a frame or header block not complete in {self.limits.head_timeout}s",
                )
                self._read_scope.cancel()
            else:
                next_deadline = min(next_deadline, late)
        for stream in list(self.streams.values()):
            if stream.complete or stream.running:
                continue
            if stream.body_deadline <= now:
                self._answer_early(stream, 408, "request body not complete in time\n")
            else:
                next_deadline = min(next_deadline, stream.body_deadline)
        self._launch()
        self._queue()
        return next_deadline

    async def _watchdog(self) -> None:
        """The idle and body timeouts, and the shutdown sequence: GOAWAY at once, keep
        reading (the streams in flight still need WINDOW_UPDATEs), stop once they are done
        or the grace is over (then each stream still running is cancelled and gets
        RST_STREAM(CANCEL))."""
        while True:
            if self.state.closing:
                self.goaway(ErrorCodes.NO_ERROR)
                with trio.move_on_after(self.limits.shutdown_grace):
                    await self._no_streams.wait()
                self._cancel_all()
                self._read_scope.cancel()
                return
            deadline = self._expire_bodies()
            if self.active:
                with trio.move_on_at(deadline):
                    await _first(self._no_streams, self.state.closing_event)
                continue
            self._activity = trio.Event()
            idle_at = trio.current_time() + self.limits.idle_timeout
            with trio.move_on_at(deadline):
                await _first(self._activity, self.state.closing_event)
            # Woken by a body or frame deadline, the loop deals with it; by nothing at
            # all for idle_timeout, the connection is idle.
            idle = trio.current_time() >= idle_at and not self._activity.is_set()
            if idle and not self.streams and self._pending_error is None:
                self._read_scope.cancel()  # idle too long
                return

    async def run(self, initial: bytes) -> None:
        """Serve the connection; an unforeseen error ends it with GOAWAY(INTERNAL_ERROR).

        The writer runs outside the fault boundary, so that the GOAWAY after an internal
        error goes through it too: after whole frames, never into the middle of one.
        """
        close: str | None = None
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self.writer.run)
                self._queue(self._settings_frame())
                with boundary(self.state.label) as fault:
                    close = await self._run(initial)
                if fault:
                    # The connection's state is unknown: what h2 still had to send is
                    # dropped, the GOAWAY follows the frames already queued.
                    with boundary(f"{self.state.label}, answering an internal error"):
                        self.conn.data_to_send()
                        self.goaway(ErrorCodes.INTERNAL_ERROR)
                    self.writer.sealed = True
                    close = "error"
                self._queue()
                await self.writer.drain()
                outer.cancel_scope.cancel()
        finally:
            # Whatever ended the connection, the bodies it held go back to the budgets.
            for stream in list(self.streams.values()):
                self._release(stream)
        if self.writer.broken:
            return
        if close == "error":
            # The client must see the close at once: FIN now, then read (not write) for
            # a while, so that what it still sends does not turn the close into a reset.
            await linger(self.stream, self.limits, reader_only=True)
        elif close == "graceful":
            await linger(self.stream, self.limits)

    async def _run(self, initial: bytes) -> str | None:
        """Read, run the streams and the watchdog; how the connection is to be closed:
        "error" (an error GOAWAY is queued), "graceful" (GOAWAY(NO_ERROR), the streams
        are done) or None (the client is gone)."""
        error: H2ConnectionError | None = None
        close = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watchdog)
            with self._read_scope:
                try:
                    await self._read_loop(initial)
                except H2ConnectionError as exc:
                    error = exc
            error = error or self._pending_error
            if error is not None:
                # RFC 9113 §5.4.1: GOAWAY with the code, then close; no stream goes on.
                log.info(
                    "%s: connection error %s: %s", self.state.label, error.code.name, error.message
                )
                self.goaway(error.code, error.message.encode()[:256])
                self.writer.sealed = True
                close = "error"
            elif not self.state.client_gone and not self.writer.broken:
                # Reading is over; say which streams will still be answered, let them
                # finish (bounded), cancel the rest (each gets RST_STREAM(CANCEL)), then
                # close so that the GOAWAY is read.
                self.goaway(ErrorCodes.NO_ERROR)
                with trio.move_on_after(self.limits.shutdown_grace):
                    await self._no_streams.wait()
                self._cancel_all()
                with trio.move_on_after(self.limits.close_timeout):
                    await self._no_streams.wait()
                close = "graceful"
            nursery.cancel_scope.cancel()  # the watchdog, any stream left
        return close


class _Counted:
    """A stream's response as the handler writes it, noting what its log line says."""

    def __init__(self, response: H2Response, stream: Stream, owner: _H2Connection) -> None:
        self._response = response
        self._stream = stream
        self._owner = owner
        self.status = 0  # 0: no response started
        self.sent = 0  # body bytes handed to the connection
        self.complete = False  # ended with END_STREAM (not reset, not cut)
        self.websocket: ServerWebSocket | None = None

    async def start(self, status: int, headers: Headers = ()) -> None:
        await self._response.start(status, headers)
        self.status = status

    async def send(self, data: bytes) -> None:
        await self._response.send(data)
        self.sent += len(data)

    async def accept_websocket(self, headers: Headers = ()) -> ServerWebSocket:
        assert self._owner._nursery is not None
        spawn = self._owner._nursery.start_soon
        self.websocket = await accept(self._owner, self._stream, headers, spawn)
        self.status = 200
        return self.websocket

    async def end(self, trailers: Headers = ()) -> None:
        if self.websocket is not None:
            await self.websocket.close()  # returned with the WebSocket open: 1000
            self.complete = self.websocket.ending == "clean"
            return
        if self._stream.ended:
            return  # reset, or ended already
        try:
            await self._response.end(trailers)
        except trio.Cancelled:
            # Only its flush awaits: END_STREAM is queued, and the writer sends it.
            self.complete = True
            raise
        self.complete = True


async def _first(*events: trio.Event) -> None:
    """Return when any of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)


async def serve_h2(
    stream: trio.abc.Stream,
    app: Handler,
    limits: Limits,
    state: ConnectionState,
    initial: bytes = b"",
) -> None:
    """Serve HTTP/2 on ``stream`` (``initial``: what of the client preface was read).

    Nothing raised while serving leaves this function except cancellation: an unforeseen
    error ends this connection only, with GOAWAY(INTERNAL_ERROR).
    """
    connection = _H2Connection(stream, app, limits, state)
    # Inside, a boundary around everything but the writer answers with GOAWAY; this one
    # catches what escapes the writer or the closing itself (nothing more is written).
    with boundary(f"{state.label}, writing or closing"):
        await connection.run(initial)
