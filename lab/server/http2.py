"""HTTP/2 (h2c prior knowledge, or h2 by ALPN) on h2 over trio.

h2 is the state machine and the frame/HPACK codec; this module adds what h2 leaves to its
user (h2 has no rate limits, no timeouts and no I/O):

- **Frames are looked at before h2 parses them.** A read is split into whole frames here
  (only the 9-byte headers are parsed, RFC 9113 §4.1), so that a header announcing more
  than the advertised SETTINGS_MAX_FRAME_SIZE is refused with GOAWAY(FRAME_SIZE_ERROR) as
  soon as its 9 bytes are in (§4.2; h2 would buffer the whole frame first), the
  control-frame budget is charged frame by frame, and h2 is fed one frame at a time, so
  that a connection error is answered with exactly the right GOAWAY.
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
  WINDOW_UPDATE, PRIORITY, empty DATA, unknown types, streams refused over the limit and
  the server's own resets (CVE-2019-9512, -9514, -9515, -9518). Past it,
  GOAWAY(ENHANCE_YOUR_CALM).
- **Request heads and bodies in budgets.** SETTINGS_MAX_HEADER_LIST_SIZE is advertised and
  a larger head gets 431 on its stream (§6.5.2, RFC 6585 §5); HPACK itself stops decoding
  at a hard cap (a connection error, since the table would be out of step). A body over
  the per-request limit gets 413 then RST_STREAM(NO_ERROR) (§8.1); bodies buffered on one
  connection share a budget, past which a stream is refused.
- **Error codes h2 gets wrong:** an HPACK decoding failure is COMPRESSION_ERROR (§4.3), a
  SETTINGS ACK with a payload FRAME_SIZE_ERROR (§6.5); h2 says PROTOCOL_ERROR for both.
- **The client's GOAWAY** (§6.8) stops new streams; open ones finish and PINGs are still
  answered (h2 would refuse every frame after it).
- **Connection errors** (§5.4.1): one GOAWAY with the code, then the write side closes at
  once; the server lingers only as a reader.
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
import time
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
# Frame types that cost the server work without carrying request data; each one spends
# from the control-frame budget. HEADERS and CONTINUATION are bounded by the stream limit
# and the header-list size instead; DATA only when empty (checked per frame).
_CONTROL_TYPES: Final = frozenset({PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE})
_KNOWN_TYPES: Final = frozenset(range(10))


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
        self._stream.ended = True
        if trailers:
            fields = [(k.lower(), v) for k, v in trailers]
            self._owner.conn.send_headers(self._stream.stream_id, fields, end_stream=True)
        else:
            self._owner.conn.end_stream(self._stream.stream_id)
        await self._owner.flush()


class _Budget:
    """A count of control frames per one-second window."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window = 0
        self._count = 0

    def spend(self, n: int = 1) -> bool:
        """Count ``n``; False once the budget of this second is exceeded."""
        now = int(time.monotonic())
        if now != self._window:
            self._window, self._count = now, 0
        self._count += n
        return self._count <= self.per_second


class _FrameSplitter:
    """Sans-IO: bytes in, whole frames out; checks the client preface and frame lengths.

    Only the 9-byte frame header is parsed (RFC 9113 §4.1); the frame itself is handed to
    h2 unparsed. At most one frame's bytes are kept.
    """

    def __init__(self, max_frame_size: int, preface_done: bool) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._preface_done = preface_done

    def feed(self, data: bytes) -> list[tuple[int, int, int, int, bytes]]:
        """(type, flags, stream id, length, whole frame) for every frame ``data`` completes."""
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
        frames = []
        start = 0
        while len(buf) - start >= 9:
            length = int.from_bytes(buf[start : start + 3], "big")
            if length > self.max_frame_size:
                raise _ConnectionError(
                    ErrorCodes.FRAME_SIZE_ERROR,
                    f"frame of {length} bytes; SETTINGS_MAX_FRAME_SIZE is {self.max_frame_size}",
                )
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
        self.last_processed = 0  # the highest stream id handed to a handler
        self.buffered_body = 0  # request body bytes held for streams on this connection
        self.budget = _Budget(limits.h2_control_frames_per_second)
        self._connection_window = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._no_streams = trio.Event()
        self._no_streams.set()
        self._activity = trio.Event()  # set by every read; the watchdog's idle clock
        self._goaway_sent = False
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
                # Wait for WINDOW_UPDATE on this stream or on the connection.
                stream.window_open = trio.Event()
                self._connection_window = trio.Event()
                with trio.move_on_after(self.limits.send_timeout) as waited:
                    await _first(stream.window_open, self._connection_window)
                if waited.cancelled_caught:
                    raise _Stalled
                continue
            self.conn.send_data(stream.stream_id, bytes(view[:window]))
            view = view[window:]
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

    def _release(self, stream: _Stream) -> None:
        self.buffered_body -= stream.held
        stream.held = 0
        stream.body = bytearray()
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
            known.ended = True
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, code)
            # The server's own resets cost frames too: a client that provokes them
            # (streams over the limit, say) spends from the same budget.
            if not self.budget.spend() and self._pending_error is None:
                self._pending_error = _ConnectionError(
                    ErrorCodes.ENHANCE_YOUR_CALM,
                    f"provoked too many RST_STREAM: over {self.budget.per_second} "
                    "control frames a second",
                )
                self._read_scope.cancel()

    def _cancel_all(self) -> None:
        for stream in self.streams.values():
            stream.scope.cancel()

    def _start_stream(self, stream: _Stream) -> None:
        assert self._nursery is not None
        if self.state.closing or self._goaway_sent:
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
        self.buffered_body -= stream.held
        stream.held = 0
        stream.body = bytearray()
        stream.status_override = (status, message)
        if not stream.running:
            self._start_stream(stream)

    # -- frames in -------------------------------------------------------------------

    def _check_frame(self, kind: int, flags: int, stream_id: int, length: int, raw: bytes) -> bool:
        """The lab's own rules for one frame before h2 sees it; False: do not feed h2."""
        if (
            kind in _CONTROL_TYPES
            or kind not in _KNOWN_TYPES
            or (kind == DATA and length == 0 and not flags & FLAG_END_STREAM)
        ):
            self._spend(_TYPE_NAMES.get(kind, f"type-{kind}"))
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
        if not self.budget.spend():
            raise _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"too many {what} frames: over {self.budget.per_second} control frames a second",
            )

    def _receive(self, data: bytes) -> None:
        """Feed one read: split it into frames, check each, hand it to h2, act on events."""
        for kind, flags, stream_id, length, raw in self.splitter.feed(data):
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
                stream.ended = True
                stream.scope.cancel()  # the client gave up: stop generating
                if not stream.running:
                    self._release(stream)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.window_open.set()
            else:
                self._connection_window.set()
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
        live = sum(1 for s in self.streams.values() if not s.ended)
        if live >= self.limits.h2_max_concurrent_streams or self._peer_goaway:
            self._reset(sid, ErrorCodes.REFUSED_STREAM)  # spends from the budget
            return
        fields = [(bytes(k), bytes(v)) for k, v in event.headers or []]
        stream = _Stream(sid, headers=fields)
        self.streams[sid] = stream
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
        if self.buffered_body + len(data) > self.limits.h2_max_buffered_body:
            log.info(
                "%s: %d request body bytes buffered: stream %d refused",
                self.state.label, self.buffered_body, stream.stream_id,
            )  # fmt: skip
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
                self._receive(data)
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
        """Answer 408 on streams whose body stopped coming; the next such deadline."""
        now = trio.current_time()
        next_deadline = now + self.limits.idle_timeout
        for stream in list(self.streams.values()):
            if stream.complete or stream.running:
                continue
            if stream.body_deadline <= now:
                self._answer_early(stream, 408, "request body not complete in time\n")
            else:
                next_deadline = min(next_deadline, stream.body_deadline)
        self._queue()
        return next_deadline

    async def _watchdog(self) -> None:
        """The idle and body timeouts, and the shutdown sequence: GOAWAY at once, keep
        reading (the streams in flight still need WINDOW_UPDATEs), stop once they are done."""
        while True:
            if self.state.closing:
                self.goaway(ErrorCodes.NO_ERROR)
                with trio.move_on_after(self.limits.shutdown_grace):
                    await self._no_streams.wait()
                self._read_scope.cancel()
                return
            deadline = self._expire_bodies()
            if self.active:
                with trio.move_on_at(deadline):
                    await _first(self._no_streams, self.state.closing_event)
                continue
            self._activity = trio.Event()
            with trio.move_on_at(deadline) as timer:
                await _first(self._activity, self.state.closing_event)
            if timer.cancelled_caught and not self.streams:
                self._read_scope.cancel()  # idle too long
                return

    def goaway(self, code: ErrorCodes, debug: bytes = b"") -> None:
        """Queue the connection's one GOAWAY (later calls do nothing).

        Written here rather than through h2's close_connection(): h2 moves to CLOSED the
        moment it sends GOAWAY and then refuses to send anything on the streams still in
        flight. Streams that arrive after it are refused by _start_stream.
        """
        if self._goaway_sent:
            return
        self._goaway_sent = True
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
        error: _ConnectionError | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            self._queue(self._settings_frame())
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
                self._cancel_all()
                await self._drain()
                await linger(self.stream, self.limits, reader_only=True)
            elif not self.state.client_gone and not self._broken:
                # Reading is over; say which streams will still be answered, let them
                # finish (bounded), then close so that the GOAWAY is read.
                self.goaway(ErrorCodes.NO_ERROR)
                with trio.move_on_after(self.limits.shutdown_grace):
                    await self._no_streams.wait()
                await self._drain()
                await linger(self.stream, self.limits)
            nursery.cancel_scope.cancel()

    async def fail(self) -> None:
        """After an internal error: GOAWAY(INTERNAL_ERROR) straight to the socket (the
        connection's state is unknown, so nothing else is sent), then close."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_processed
        frame.error_code = ErrorCodes.INTERNAL_ERROR
        with trio.move_on_after(self.limits.close_timeout):
            await self.stream.send_all(frame.serialize())


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
    with boundary(state.label) as fault:
        await connection.run(initial)
    if fault:
        with boundary(f"{state.label}, answering an internal error"):
            await connection.fail()
