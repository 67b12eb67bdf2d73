"""HTTP/2 (h2c prior knowledge, or h2 by ALPN) on h2 over trio.

h2 is the state machine and the frame/HPACK codec; this module adds what h2 leaves to its
user (h2 has no rate limits, no timeouts and no I/O):

- **Frames are looked at before h2 parses them.** A read is split into whole frames here
  (only the 9-byte headers are parsed, RFC 9113 §4.1), so that a header announcing more
  than the advertised SETTINGS_MAX_FRAME_SIZE is refused with GOAWAY(FRAME_SIZE_ERROR) as
  soon as its 9 bytes are in (§4.2; h2 would buffer the whole frame first; the frames
  before it in the same read are still processed), the control-frame budget is charged
  frame by frame (nothing after the frame that exceeds it is processed), and h2 is fed
  one frame at a time, so that a connection error is answered with exactly the right
  GOAWAY.
- **One writer per connection.** Handlers and the read loop only queue frames; one task
  writes them (coalescing what several streams queued meanwhile). Frames the server owes
  the peer (a PING ACK, a RST_STREAM, an error GOAWAY) are never lost to a cancelled
  handler, and a write is never cut in the middle of a frame.
- **MAX_CONCURRENT_STREAMS as a stream error.** h2 turns one stream too many into a
  connection error, killing every stream on the connection. The lab keeps h2's own limit
  off, advertises the limit itself, and refuses one stream over it with
  RST_STREAM(REFUSED_STREAM), which a client may safely retry (§8.7).
- **Bounded closed-stream bookkeeping** (h2 keeps 65,536 closed streams by default).
- **A control-frame budget** against floods of frames that cost the server work without
  giving the client data: PING, SETTINGS, RST_STREAM (rapid reset, CVE-2023-44487),
  WINDOW_UPDATE (beyond the two per DATA frame sent that acknowledge it), PRIORITY,
  empty DATA, unknown types, DATA or HEADERS on a stream that is over (h2 answers each
  with RST_STREAM), streams refused over the limit and the server's own resets
  (CVE-2019-9512, -9514, -9515, -9518). Each frame spends from the connection's budget
  and from its client address's, which every connection from that address shares
  (lab.server.budget), so that a flood spread over many connections is stopped too.
  Past either, GOAWAY(ENHANCE_YOUR_CALM). Handlers start once a whole read is processed,
  so a stream reset in the read that opened it costs no handler.
- **Request heads and bodies in budgets.** SETTINGS_MAX_HEADER_LIST_SIZE is advertised and
  a larger head gets 431 on its stream (§6.5.2, RFC 6585 §5); HPACK itself stops decoding
  at a hard cap (a connection error, since the table would be out of step). A body over
  the per-request limit gets 413 then RST_STREAM(NO_ERROR) (§8.1); bodies buffered on one
  connection share a budget, and bodies on every connection of the server another; past
  either, a stream is refused with RST_STREAM(REFUSED_STREAM) (§8.7: safe to retry).
- **Error codes h2 gets wrong:** an HPACK decoding failure is COMPRESSION_ERROR (§4.3), a
  SETTINGS ACK with a payload FRAME_SIZE_ERROR (§6.5); h2 says PROTOCOL_ERROR for both.
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack.exceptions
import trio
from hyperframe.frame import GoAwayFrame, SettingsFrame

from lab.apps.interface import AbortResponse, Handler, Headers, HTTPError, make_request, send_text
from lab.server.budget import RateBudget
from lab.server.closing import linger
from lab.server.faults import boundary, contains, first_of, leaves
from lab.server.http1 import SERVER_NAME
from lab.server.limits import Limits

if TYPE_CHECKING:
    from lab.server.listener import ConnectionState

__all__ = ["PREFACE", "serve_h2"]

log = logging.getLogger("lab.server")

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Header fields that are HTTP/1.1 connection management; HTTP/2 forbids them
# (RFC 9113 §8.2.2), so they are dropped from what a handler sets.
_CONNECTION_SPECIFIC: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
ErrorCodes = h2.errors.ErrorCodes
# Frame types (RFC 9113 §6) and the flags this module looks at.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION: Final = 9
FLAG_END_STREAM: Final = 0x1
FLAG_ACK: Final = 0x1
FLAG_END_HEADERS: Final = 0x4
# Frame types that cost the server work without carrying request data; each one spends
# from the control-frame budget. HEADERS and CONTINUATION are bounded by the stream limit
# and the header-list size instead; DATA only when empty (checked per frame).
_CONTROL_TYPES: Final = frozenset({PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE})
_KNOWN_TYPES: Final = frozenset(range(10))
# Frames parsed from one read before other tasks get a turn: parsing one costs h2 about
# 20-50 µs, so a turn is about a millisecond. With 64, ten connections bursting at once
# (rapid reset from one address) held a bystander's stream up ~150 ms; with 16, ~80 ms
# (lab bench attacks --attack rapid-reset-many).
FRAMES_PER_TURN: Final = 16
# A client may answer each DATA frame with two WINDOW_UPDATEs, its stream's and the
# connection's (RFC 9113 §6.9); those are not counted as control frames.
_UPDATES_PER_DATA_FRAME: Final = 2


class _LabH2Connection(h2.connection.H2Connection):
    # How many closed streams h2 remembers, to tell a late frame on a stream it reset
    # (ignore) from a frame on a stream that never existed (error). h2's 65,536 cost
    # ~10.8 MiB per connection under a rapid-reset flood; streams a client opened more
    # than 1,024 streams ago do not send late frames in practice.
    MAX_CLOSED_STREAMS = 1024


class _ConnectionError(Exception):
    """The peer broke the protocol: GOAWAY with ``code``, then close (RFC 9113 §5.4.1)."""

    def __init__(self, code: ErrorCodes, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class _Gone(Exception):
    """The connection's writer failed: the client left, reset, or stopped reading."""


class _Stalled(Exception):
    """A stream's send waited longer than the send timeout for flow-control window."""


def _header_list_size(fields: list[tuple[bytes, bytes]]) -> int:
    # RFC 9113 §6.5.2: each field counts its name and value octets plus 32.
    return sum(len(name) + len(value) + 32 for name, value in fields)


@dataclass(eq=False)
class _Stream:
    stream_id: int
    body: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False  # the request (headers + body) is all in
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    window_open: trio.Event = field(default_factory=trio.Event)
    started: bool = False
    ended: bool = False  # the server sent END_STREAM or RST_STREAM, or the client reset it
    running: bool = False  # a handler task runs for it
    body_deadline: float = 0.0  # when a request body that stopped coming times out
    held: int = 0  # request body bytes this stream counts in the connection's budget
    status_override: tuple[int, str] | None = None  # answer this instead of the handler


class _H2Response:
    """:class:`lab.apps.interface.ResponseStream` over one HTTP/2 stream."""

    def __init__(self, owner: _H2Connection, stream: _Stream) -> None:
        self._owner = owner
        self._stream = stream

    async def start(self, status: int, headers: Headers = ()) -> None:
        if self._stream.started:
            raise RuntimeError("response already started")
        self._stream.started = True
        fields = [
            (":status", str(status)),
            ("date", self._owner.state.date_source().decode("ascii")),
            ("server", SERVER_NAME.decode("ascii")),
        ]
        fields += [(k.lower(), v) for k, v in headers if k.lower() not in _CONNECTION_SPECIFIC]
        self._owner.conn.send_headers(self._stream.stream_id, fields)
        await self._owner.flush()

    async def send(self, data: bytes) -> None:
        if not self._stream.started:
            raise RuntimeError("send() before start()")
        if data:
            await self._owner.send_data(self._stream, data)

    async def end(self, trailers: Headers = ()) -> None:
        if self._stream.ended:
            return
        self._owner.mark_ended(self._stream)
        if trailers:
            fields = [(k.lower(), v) for k, v in trailers]
            self._owner.conn.send_headers(self._stream.stream_id, fields, end_stream=True)
        else:
            self._owner.conn.end_stream(self._stream.stream_id)
        await self._owner.flush()


class _FrameSplitter:
    """Sans-IO: bytes in, whole frames out; checks the client preface and frame lengths.

    Only the 9-byte frame header is parsed (RFC 9113 §4.1); the frame itself is handed to
    h2 unparsed. At most one frame's bytes are kept.
    """

    def __init__(self, max_frame_size: int, preface_done: bool) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._preface_done = preface_done
        # A frame header announcing too large a frame: the connection error to raise
        # once the frames before it (returned by the same feed) have been processed.
        self.failed: _ConnectionError | None = None

    def feed(self, data: bytes) -> list[tuple[int, int, int, int, bytes]]:
        """(type, flags, stream id, length, whole frame) for every frame ``data`` completes,
        up to a frame header that announces too large a frame (then ``failed`` is set and
        nothing more is split)."""
        if self.failed is not None:
            return []
        self._buffer += data
        buf = self._buffer
        if not self._preface_done:
            seen = bytes(buf[: len(PREFACE)])
            if not PREFACE.startswith(seen):
                raise _ConnectionError(
                    ErrorCodes.PROTOCOL_ERROR, f"invalid client preface {seen!r} (RFC 9113 §3.4)"
                )
            if len(seen) < len(PREFACE):
                return []
            del buf[: len(PREFACE)]
            self._preface_done = True
        frames: list[tuple[int, int, int, int, bytes]] = []
        start = 0
        while len(buf) - start >= 9:
            length = int.from_bytes(buf[start : start + 3], "big")
            if length > self.max_frame_size:
                self.failed = _ConnectionError(
                    ErrorCodes.FRAME_SIZE_ERROR,
                    f"frame of {length} bytes; SETTINGS_MAX_FRAME_SIZE is {self.max_frame_size}",
                )
                self._buffer = bytearray()
                return frames
            end = start + 9 + length
            if len(buf) < end:
                break
            kind, flags = buf[start + 3], buf[start + 4]
            stream_id = int.from_bytes(buf[start + 5 : start + 9], "big") & 0x7FFF_FFFF
            frames.append((kind, flags, stream_id, length, bytes(buf[start:end])))
            start = end
        if start:
            del buf[:start]
        return frames

    @property
    def incomplete(self) -> bool:
        """Part of the preface or of a frame is in, the rest not yet."""
        return not self._preface_done or bool(self._buffer)


class _H2Connection:
    def __init__(
        self, stream: trio.abc.Stream, app: Handler, limits: Limits,
        state: ConnectionState,
    ) -> None:  # fmt: skip
        self.stream = stream
        self.app = app
        self.limits = limits
        self.state = state
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=True
        )
        self.conn = _LabH2Connection(config=config)
        # h2's own MAX_CONCURRENT_STREAMS check is a connection error; keep it off (no
        # initial value: unlimited) and enforce the limit per stream below.
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_head_size,
            },
        )
        # HPACK stops decoding past this (a connection error); between the advertised
        # size and this, the stream gets 431 (checked on the decoded fields).
        self.conn.decoder.max_header_list_size = limits.h2_header_list_hard_cap
        # The splitter checks the client preface; h2 expects it too, and gets it here.
        self.conn.receive_data(PREFACE)
        self.splitter = _FrameSplitter(self.conn.max_inbound_frame_size, preface_done=False)
        self.streams: dict[int, _Stream] = {}
        self.active = 0  # streams whose handler runs
        # Streams accepted and not yet ended (RFC 9113 §5.1.2 counts them against
        # MAX_CONCURRENT_STREAMS); kept as a count, since a flood makes the dict large.
        self.live = 0
        self._ready: list[_Stream] = []  # complete requests whose handlers start next
        self._receiving = False  # a read is being parsed (it yields between frames)
        self.last_processed = 0  # the highest stream id handed to a handler
        self.buffered_body = 0  # request body bytes held for streams on this connection
        self.budget = RateBudget(limits.h2_control_frames_per_second)
        # WINDOW_UPDATEs the client has earned by receiving DATA, which do not spend from
        # the budget: a client that acknowledges every DATA frame of a fast download
        # sends thousands a second. Banked up to two seconds' worth of the budget.
        self._update_credit = 0
        self._update_credit_max = 2 * limits.h2_control_frames_per_second
        self._nursery: trio.Nursery | None = None
        self._no_streams = trio.Event()
        self._no_streams.set()
        self._activity = trio.Event()  # set by every read; the watchdog's idle clock
        # The code of the last GOAWAY queued (None: none yet). One per connection, but
        # for an error after a graceful GOAWAY(NO_ERROR), which gets its own (§6.8).
        self._goaway_code: ErrorCodes | None = None
        self._peer_goaway = False  # the client sent GOAWAY: finish, then close
        # The writer: bytes queued for the socket, how many were ever queued and written.
        self._out = bytearray()
        self._queued = 0
        self._written = 0
        self._wake_writer = trio.Event()
        self._progress = trio.Event()  # set (and replaced) after every write
        self._broken = False
        self._sealed = False  # an error GOAWAY was queued: nothing more is written
        self._read_scope = trio.CancelScope()
        # A connection error found outside the read loop (the server's own resets over
        # the budget): the read loop is cancelled and run() answers it.
        self._pending_error: _ConnectionError | None = None
        # Slowloris over HTTP/2: since when a frame, the preface or a header block has
        # been incomplete. All of it must arrive within head_timeout of its first byte,
        # as an HTTP/1.1 request head must (reads in between do not reset the clock).
        self._header_block_open = False
        self._incomplete_since: float | None = trio.current_time()

    # -- the writer ------------------------------------------------------------------

    def _queue(self, raw: bytes = b"") -> int:
        """Take what h2 has to send (and ``raw`` frames after it) into the writer's
        queue; the queue position the caller's bytes end at."""
        data = self.conn.data_to_send()
        if self._sealed:
            return self._queued
        if data or raw:
            self._out += data
            self._out += raw
            self._queued += len(data) + len(raw)
            self._wake_writer.set()
        return self._queued

    async def flush(self) -> None:
        """Queue what h2 has to send and wait until the socket took it (back-pressure).

        A caller cancelled while it waits loses nothing: the writer still sends it.
        """
        target = self._queue()
        while self._written < target:
            if self._broken:
                raise _Gone
            await self._progress.wait()

    async def _writer(self) -> None:
        """The only task that writes to the socket."""
        while True:
            if not self._out:
                self._wake_writer = trio.Event()
                await self._wake_writer.wait()
                continue
            data = bytes(self._out)
            self._out.clear()
            try:
                with trio.fail_after(self.limits.send_timeout):
                    await self.stream.send_all(data)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if isinstance(exc, trio.TooSlowError):
                    log.info(
                        "%s: client too slow: no progress sending for %ss",
                        self.state.label, self.limits.send_timeout,
                    )  # fmt: skip
                self._broken = True
                self._progress.set()
                self._read_scope.cancel()
                self._cancel_all()
                return
            self._written += len(data)
            progress, self._progress = self._progress, trio.Event()
            progress.set()

    async def _drain(self) -> None:
        """Wait (bounded) until everything queued is written."""
        with trio.move_on_after(self.limits.send_timeout), contextlib.suppress(_Gone):
            await self.flush()

    async def send_data(self, stream: _Stream, data: bytes) -> None:
        view = memoryview(data)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream.stream_id),
                self.conn.max_outbound_frame_size,
            )
            if window <= 0:
                # Wait for WINDOW_UPDATE on this stream or on the connection (which sets
                # every stream's event), or a new SETTINGS_INITIAL_WINDOW_SIZE. One plain
                # event, no nursery: a cancelled handler sees a plain trio.Cancelled.
                stream.window_open = trio.Event()
                with trio.move_on_after(self.limits.send_timeout) as waited:
                    await stream.window_open.wait()
                if waited.cancelled_caught:
                    raise _Stalled
                continue
            self.conn.send_data(stream.stream_id, bytes(view[:window]))
            view = view[window:]
            self._update_credit = min(
                self._update_credit + _UPDATES_PER_DATA_FRAME, self._update_credit_max
            )
            await self.flush()

    # -- streams ---------------------------------------------------------------------

    def _request(self, stream: _Stream) -> tuple[str, str, list[tuple[str, str]]]:
        method = path = ""
        headers = []
        for raw_name, raw_value in stream.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif name == ":authority":
                headers.append(("host", value))
            elif not name.startswith(":"):
                headers.append((name, value))
        return method, path, headers

    async def _run_stream(self, stream: _Stream) -> None:
        """One request's handler, behind the stream's fault boundary."""
        method, path, headers = self._request(stream)
        where = f"{self.state.label} stream {stream.stream_id} {method} {path[:200]}"
        response = _H2Response(self, stream)
        outcome: BaseException | None = None
        try:
            with stream.scope:
                try:
                    if stream.status_override is not None:
                        raise HTTPError(*stream.status_override)
                    body, stream.body = bytes(stream.body), bytearray()
                    request = make_request(method, path, headers, body, "h2")
                    del body
                    await self.app(request, response)
                    if not stream.started:
                        raise RuntimeError("handler returned without starting a response")
                    await response.end()
                except Exception as exc:
                    outcome = exc
            with boundary(where) as fault:
                await self._conclude(stream, response, outcome, where)
            if fault:
                self._reset(stream, ErrorCodes.INTERNAL_ERROR)  # RFC 9113 §5.4.2
                self._queue()
        finally:
            self._release(stream)

    async def _conclude(
        self, stream: _Stream, response: _H2Response, outcome: BaseException | None, where: str
    ) -> None:
        """End the stream the way its outcome says (outside the handler's scope, so that a
        cancelled handler still gets its RST_STREAM written)."""
        if outcome is None or stream.scope.cancelled_caught or self._broken:
            if not stream.ended:  # cancelled by shutdown, or the connection broke
                self._reset(stream, ErrorCodes.CANCEL)
            self._queue()
            return
        if contains(outcome, _Gone):
            return
        if contains(outcome, (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError)):
            return  # the client reset the stream or the connection ended under the handler
        if contains(outcome, _Stalled):
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
            except _Stalled:
                self._reset(stream, ErrorCodes.CANCEL)
            except (_Gone, h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                return
        if not stream.complete:
            # Answered before the whole request came (413, 431, 408): ask the client to
            # stop sending without error (RFC 9113 §8.1).
            self._reset(stream, ErrorCodes.NO_ERROR)
        self._queue()

    def _give_back(self, stream: _Stream) -> None:
        """Return a stream's request body bytes to the connection's and server's budgets."""
        self.buffered_body -= stream.held
        self.state.bodies.release(stream.held)
        stream.held = 0

    def mark_ended(self, stream: _Stream) -> None:
        """The server sent END_STREAM or RST_STREAM on ``stream``, or the client reset it:
        it no longer counts against MAX_CONCURRENT_STREAMS."""
        if not stream.ended:
            stream.ended = True
            if self.streams.get(stream.stream_id) is stream:
                self.live -= 1

    def _release(self, stream: _Stream) -> None:
        self._give_back(stream)
        stream.body = bytearray()
        self.mark_ended(stream)
        if self.streams.pop(stream.stream_id, None) is None:
            return
        if stream.running:
            self.active -= 1
            if not self.active:
                self._no_streams.set()
                if self._peer_goaway:
                    self._read_scope.cancel()  # the client said GOAWAY: done now

    def _reset(self, stream: _Stream | int, code: ErrorCodes) -> None:
        stream_id = stream if isinstance(stream, int) else stream.stream_id
        known = self.streams.get(stream_id)
        if known is not None:
            self.mark_ended(known)
        if self._pending_error is not None:
            return  # the connection is about to end with GOAWAY, which closes the stream
        # The server's own resets cost frames too: a client that provokes them (streams
        # over the limit, say) spends from the same budgets. Checked before the frame is
        # made, so that the reset over the budget is not sent: GOAWAY comes instead.
        self._pending_error = self._overspent("provoked RST_STREAM")
        if self._pending_error is not None:
            self._read_scope.cancel()
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, code)

    def _cancel_all(self) -> None:
        for stream in self.streams.values():
            stream.scope.cancel()

    def _start_stream(self, stream: _Stream) -> None:
        """Run ``stream``'s handler once the frames of this read are processed (see
        _launch)."""
        self._ready.append(stream)

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

    def _launch_one(self, stream: _Stream) -> None:
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

    def _answer_early(self, stream: _Stream, status: int, message: str) -> None:
        """Answer ``status`` before the request is complete, then stop its body."""
        self._give_back(stream)
        stream.body = bytearray()
        stream.status_override = (status, message)
        if not stream.running:
            self._start_stream(stream)

    # -- frames in -------------------------------------------------------------------

    def _check_frame(self, kind: int, flags: int, stream_id: int, length: int, raw: bytes) -> bool:
        """The lab's own rules for one frame before h2 sees it; False: do not feed h2."""
        if kind in (HEADERS, PUSH_PROMISE, CONTINUATION):
            # A header block runs from HEADERS to the frame with END_HEADERS (§4.3).
            self._header_block_open = not flags & FLAG_END_HEADERS
        if kind == WINDOW_UPDATE and self._update_credit:
            self._update_credit -= 1  # answers DATA the server sent: not a flood
        elif (
            kind in _CONTROL_TYPES
            or kind not in _KNOWN_TYPES
            or (kind == DATA and length == 0 and not flags & FLAG_END_STREAM)
        ):
            self._spend(_TYPE_NAMES.get(kind, f"type-{kind}"))
        elif (
            kind in (DATA, HEADERS)
            and 0 < stream_id <= self.conn.highest_inbound_stream_id
            and stream_id not in self.streams
        ):
            # A frame on a stream that is over: no request data, and h2 answers each one
            # on a reset stream with RST_STREAM(STREAM_CLOSED) (CVE-2019-9514).
            self._spend(f"{'DATA' if kind == DATA else 'HEADERS'} on a closed stream")
        if kind == SETTINGS and flags & FLAG_ACK and length:
            raise _ConnectionError(
                ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload (RFC 9113 §6.5)"
            )
        if kind == GOAWAY:
            if stream_id:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "GOAWAY on a stream (§6.8)")
            if length < 8:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            code = int.from_bytes(raw[13:17], "big")
            log.info("%s: client sent GOAWAY (error code %d)", self.state.label, code)
            self._peer_goaway = True
            if not self.active:
                self._read_scope.cancel()
            return False
        return True

    def _spend(self, what: str) -> None:
        error = self._overspent(what)
        if error is not None:
            raise error

    def _overspent(self, what: str) -> _ConnectionError | None:
        """Spend one control frame from this connection's budget and from its client
        address's (shared by every connection from there); the error if either is over."""
        own = self.budget.spend()
        shared = self.state.addresses.spend(self.state.peer_host)
        if not own:
            return _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"too many {what} frames: over {self.budget.per_second} control frames a second",
            )
        if not shared:
            return _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"too many {what} frames from {self.state.peer_host}: over "
                f"{self.state.addresses.per_second} control frames a second from one address",
            )
        return None

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
        for count, (kind, flags, stream_id, length, raw) in enumerate(self.splitter.feed(data)):
            if count and not count % FRAMES_PER_TURN:
                await trio.lowlevel.checkpoint()
            if not self._check_frame(kind, flags, stream_id, length, raw):
                continue
            self._queue()  # what h2 owed before this frame is not lost on an error below
            try:
                events = self.conn.receive_data(raw)
            except h2.exceptions.ProtocolError as exc:
                self.conn.data_to_send()  # h2's own GOAWAY: replaced by the right one
                code = ErrorCodes(exc.error_code)
                if isinstance(exc.__cause__, hpack.exceptions.HPACKError) and not isinstance(
                    exc.__cause__, hpack.exceptions.OversizedHeaderListError
                ):
                    code = ErrorCodes.COMPRESSION_ERROR  # RFC 9113 §4.3
                raise _ConnectionError(code, str(exc)) from None
            for event in events:
                self._handle(event)
            if self._pending_error is not None:
                raise self._pending_error
        if self.splitter.failed is not None:
            raise self.splitter.failed

    def _handle(self, event: h2.events.Event) -> None:
        """Act on one h2 event."""
        if isinstance(event, h2.events.RequestReceived):
            self._new_stream(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.complete:
                stream.complete = True
                if not stream.running:
                    self._start_stream(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self.mark_ended(stream)
                stream.scope.cancel()  # the client gave up: stop generating
                if not stream.running:
                    self._release(stream)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.window_open.set()
            else:
                for stream in self.streams.values():
                    stream.window_open.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            # A new INITIAL_WINDOW_SIZE may open every stream's window.
            for stream in self.streams.values():
                stream.window_open.set()

    def _new_stream(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        # RFC 9113 §5.1.2 counts open and half-closed streams: those accepted here and
        # not yet ended. One over the limit is refused, not the whole connection.
        if self.live >= self.limits.h2_max_concurrent_streams or self._peer_goaway:
            self._reset(sid, ErrorCodes.REFUSED_STREAM)  # spends from the budget
            return
        fields = [(bytes(k), bytes(v)) for k, v in event.headers or []]
        stream = _Stream(sid, headers=fields)
        self.streams[sid] = stream
        self.live += 1
        stream.body_deadline = trio.current_time() + self.limits.body_timeout
        if event.stream_ended is not None:
            stream.complete = True
        size = _header_list_size(fields)
        if size > self.limits.max_head_size:
            self._answer_early(
                stream, 431,
                f"request header list is {size} bytes (RFC 9113 §6.5.2 counting); "
                f"SETTINGS_MAX_HEADER_LIST_SIZE is {self.limits.max_head_size}\n",
            )  # fmt: skip
        elif stream.complete:
            self._start_stream(stream)

    def _data(self, event: h2.events.DataReceived) -> None:
        # Flow-control credit goes back at once: the body is bounded by the limits below,
        # not by the window.
        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.complete or stream.status_override is not None:
            return
        data = event.data or b""
        stream.body_deadline = trio.current_time() + self.limits.body_timeout
        if len(stream.body) + len(data) > self.limits.max_body_size:
            self._answer_early(
                stream, 413, f"request body over {self.limits.max_body_size} bytes\n"
            )
            return
        refused = None
        if self.buffered_body + len(data) > self.limits.h2_max_buffered_body:
            refused = f"{self.buffered_body} request body bytes buffered on this connection"
        elif not self.state.bodies.reserve(len(data)):
            refused = f"{self.state.bodies.used} request body bytes buffered by the server"
        if refused is not None:
            # Refused before any processing: the client may retry it (§8.7).
            log.info("%s: %s: stream %d refused", self.state.label, refused, stream.stream_id)
            self._reset(stream, ErrorCodes.REFUSED_STREAM)
            self._release(stream)
            return
        stream.body += data
        stream.held += len(data)
        self.buffered_body += len(data)
        if event.stream_ended is not None:
            stream.complete = True
            self._start_stream(stream)

    # -- the connection --------------------------------------------------------------

    async def _read_loop(self, initial: bytes) -> None:
        """Feed h2 until the client leaves, or the watchdog stops reading."""
        data = initial
        while True:
            if data:
                self._activity.set()
                await self._receive(data)
                if not (self.splitter.incomplete or self._header_block_open):
                    self._incomplete_since = None
                elif self._incomplete_since is None:
                    self._incomplete_since = trio.current_time()
                # Back-pressure: a client that sends frames the server must answer (PING)
                # but does not read the answers is not read from either.
                target = self._queue()
                if len(self._out) > self.limits.h2_max_write_backlog:
                    while self._written < target and not self._broken:
                        await self._progress.wait()
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
                self._pending_error = _ConnectionError(
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

    def goaway(self, code: ErrorCodes, debug: bytes = b"") -> None:
        """Queue the connection's GOAWAY: one, or two when a connection error follows a
        graceful GOAWAY(NO_ERROR) (RFC 9113 §6.8: "MAY send multiple GOAWAY frames if
        circumstances change"); never a GOAWAY(NO_ERROR) after an error one.

        Written here rather than through h2's close_connection(): h2 moves to CLOSED the
        moment it sends GOAWAY and then refuses to send anything on the streams still in
        flight. Streams that arrive after it are refused by _start_stream.
        """
        sent = self._goaway_code
        if sent is not None and (code == ErrorCodes.NO_ERROR or sent != ErrorCodes.NO_ERROR):
            return
        self._goaway_code = code
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_processed
        frame.error_code = code
        frame.additional_data = debug
        self._queue(frame.serialize())

    def _settings_frame(self) -> bytes:
        self.conn.initiate_connection()
        self.conn.data_to_send()  # replaced by the SETTINGS frame below
        frame = SettingsFrame(0)
        for setting, value in self.conn.local_settings.items():
            frame.settings[setting] = value
        frame.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] = self.limits.h2_max_concurrent_streams
        return bytes(frame.serialize())

    async def run(self, initial: bytes) -> None:
        """Serve the connection; an unforeseen error ends it with GOAWAY(INTERNAL_ERROR).

        The writer runs outside the fault boundary, so that the GOAWAY after an internal
        error goes through it too: after whole frames, never into the middle of one.
        """
        close: str | None = None
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._writer)
                self._queue(self._settings_frame())
                with boundary(self.state.label) as fault:
                    close = await self._run(initial)
                if fault:
                    # The connection's state is unknown: what h2 still had to send is
                    # dropped, the GOAWAY follows the frames already queued.
                    with boundary(f"{self.state.label}, answering an internal error"):
                        self.conn.data_to_send()
                        self.goaway(ErrorCodes.INTERNAL_ERROR)
                    self._sealed = True
                    close = "error"
                await self._drain()
                outer.cancel_scope.cancel()
        finally:
            # Whatever ended the connection, the bodies it held go back to the budgets.
            for stream in list(self.streams.values()):
                self._release(stream)
        if self._broken:
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
        error: _ConnectionError | None = None
        close = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watchdog)
            with self._read_scope:
                try:
                    await self._read_loop(initial)
                except _ConnectionError as exc:
                    error = exc
            error = error or self._pending_error
            if error is not None:
                # RFC 9113 §5.4.1: GOAWAY with the code, then close; no stream goes on.
                log.info(
                    "%s: connection error %s: %s", self.state.label, error.code.name, error.message
                )
                self.goaway(error.code, error.message.encode()[:256])
                self._sealed = True
                close = "error"
            elif not self.state.client_gone and not self._broken:
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


_TYPE_NAMES: Final = {
    DATA: "empty DATA", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM", SETTINGS: "SETTINGS",
    PING: "PING", WINDOW_UPDATE: "WINDOW_UPDATE",
}  # fmt: skip


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
