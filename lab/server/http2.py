"""HTTP/2 (h2c, prior knowledge) on h2 over trio: one task per connection, one per stream.

h2 is the state machine and the frame/HPACK codec; this module adds what h2 leaves to its
user (PROTOCOLS.md, "h2 ... has no rate limits"):

- **MAX_CONCURRENT_STREAMS as a stream error.** h2 turns one stream too many into a
  connection error (GOAWAY), killing every stream on the connection. The lab keeps h2's
  own limit off and advertises the limit in its SETTINGS frame itself; a stream over it
  gets RST_STREAM(REFUSED_STREAM), which a client may safely retry (RFC 9113 §8.7).
- **Bounded closed-stream bookkeeping** (h2 keeps 65,536 closed streams by default).
- **A control-frame budget** against PING / SETTINGS / RST_STREAM floods (CVE-2019-9512,
  -9515, rapid reset CVE-2023-44487): past it, GOAWAY(ENHANCE_YOUR_CALM) and close.
- **Flow control on the way out.** A handler's ``send`` waits for window (stream and
  connection) and splits data into frames of at most the peer's MAX_FRAME_SIZE.
- **Cancellation.** RST_STREAM from the client cancels that stream's handler; the end of
  the connection cancels them all.
- **Shutdown.** GOAWAY with the last stream id the server will process, streams in flight
  finish, then the connection closes.

The same endpoints as HTTP/1.1 run unchanged: each ``send`` is one DATA frame (or several,
when it is larger than a frame or the window).
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
import trio
from hyperframe.frame import GoAwayFrame, SettingsFrame

from lab.apps.interface import AbortResponse, Handler, Headers, HTTPError, make_request, send_text
from lab.server.closing import linger
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


class _LabH2Connection(h2.connection.H2Connection):
    # How many closed streams h2 remembers, to tell a late frame on a stream it reset
    # (ignore) from a frame on a stream that never existed (error). h2's 65,536 cost
    # ~10.8 MiB per connection under a rapid-reset flood; streams a client opened more
    # than 1,024 streams ago do not send late frames in practice.
    MAX_CLOSED_STREAMS = 1024


@dataclass(eq=False)
class _Stream:
    stream_id: int
    body: bytearray = field(default_factory=bytearray)
    headers: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = False  # the request (headers + body) is all in
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    window_open: trio.Event = field(default_factory=trio.Event)
    started: bool = False
    ended: bool = False  # the server sent END_STREAM or RST_STREAM, or the client reset it


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
            client_side=False, header_encoding="utf-8", validate_inbound_headers=True
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
        self.streams: dict[int, _Stream] = {}
        self.active = 0  # streams whose handler runs
        self.last_processed = 0  # the highest stream id handed to a handler
        self.budget = _Budget(limits.h2_control_frames_per_second)
        self._send_lock = trio.Lock()
        self._connection_window = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._no_streams = trio.Event()
        self._no_streams.set()
        self._activity = trio.Event()  # set by every read; the watchdog's idle clock
        self._goaway_sent = False
        self._raw_out = b""  # frames the lab writes itself (the graceful GOAWAY)

    # -- sending ---------------------------------------------------------------------

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.conn.data_to_send()
            if self._raw_out:
                data, self._raw_out = data + self._raw_out, b""
            if not data:
                return
            try:
                with trio.fail_after(self.limits.send_timeout):
                    await self.stream.send_all(data)
            except trio.TooSlowError:
                log.info(
                    "h2 client too slow: no progress sending for %ss", self.limits.send_timeout
                )
                raise _Gone from None
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Gone from None

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
                with trio.fail_after(self.limits.send_timeout):
                    await _first(stream.window_open, self._connection_window)
                continue
            self.conn.send_data(stream.stream_id, bytes(view[:window]))
            view = view[window:]
            await self.flush()

    # -- streams ---------------------------------------------------------------------

    async def _run_stream(self, stream: _Stream) -> None:
        method = path = ""
        headers = []
        for name, value in stream.headers:
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif name == ":authority":
                headers.append(("host", value))
            elif not name.startswith(":"):
                headers.append((name, value))
        request = make_request(method, path, headers, bytes(stream.body), "h2")
        response = _H2Response(self, stream)
        try:
            with stream.scope:
                try:
                    await self.app(request, response)
                    if not stream.started:
                        raise RuntimeError("handler returned without starting a response")
                    await response.end()
                except HTTPError as exc:
                    if stream.started:
                        self._reset(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    else:
                        await send_text(response, exc.status, exc.message, exc.headers)
                except AbortResponse as exc:
                    log.info("%s %s cut off: %s", method, path, exc.reason)
                    self._reset(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
                except _Gone:
                    raise
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass  # the client reset or the connection ended under the handler
                except Exception as exc:  # a handler bug must not take the connection down
                    log.exception("handler for %s %s failed", method, path)
                    if stream.started:
                        self._reset(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    else:
                        await send_text(response, 500, f"handler failed: {exc!r}\n")
            await self.flush()
        except _Gone:
            self._cancel_all()
        finally:
            self.streams.pop(stream.stream_id, None)
            self.active -= 1
            if not self.active:
                self._no_streams.set()

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.ended = True
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.conn.reset_stream(stream_id, code)

    def _cancel_all(self) -> None:
        for stream in self.streams.values():
            stream.scope.cancel()

    def _start_stream(self, stream: _Stream) -> None:
        assert self._nursery is not None
        if self.state.closing:
            # After GOAWAY no new stream is processed (RFC 9113 §6.8).
            self._reset(stream.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            self.streams.pop(stream.stream_id, None)
            return
        self.active += 1
        self._no_streams = trio.Event() if self._no_streams.is_set() else self._no_streams
        self.last_processed = max(self.last_processed, stream.stream_id)
        self._nursery.start_soon(self._run_stream, stream)

    # -- events ----------------------------------------------------------------------

    def _handle(self, event: h2.events.Event) -> bool:
        """Act on one h2 event; False when the connection is over."""
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            # RFC 9113 §5.1.2 counts open and half-closed streams: those accepted here
            # and not yet ended. One over the limit is refused, not the whole connection.
            live = sum(1 for s in self.streams.values() if not s.ended)
            if live >= self.limits.h2_max_concurrent_streams:
                self._reset(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                return True
            stream = _Stream(sid, headers=[(str(k), str(v)) for k, v in event.headers or []])
            self.streams[sid] = stream
            if event.stream_ended is not None:
                stream.complete = True
                self._start_stream(stream)
        elif isinstance(event, h2.events.DataReceived):
            stream_or_none = self.streams.get(event.stream_id)
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream_or_none is not None and not stream_or_none.complete:
                stream_or_none.body += event.data or b""
                if len(stream_or_none.body) > self.limits.max_body_size:
                    self.streams.pop(event.stream_id)
                    self._reset(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                elif event.stream_ended is not None:
                    stream_or_none.complete = True
                    self._start_stream(stream_or_none)
        elif isinstance(event, h2.events.StreamEnded):
            stream_or_none = self.streams.get(event.stream_id)
            if stream_or_none is not None and not stream_or_none.complete:
                stream_or_none.complete = True
                self._start_stream(stream_or_none)
        elif isinstance(event, h2.events.StreamReset):
            stream_or_none = self.streams.get(event.stream_id)
            if stream_or_none is not None:
                stream_or_none.ended = True
                stream_or_none.scope.cancel()  # the client gave up: stop generating
                if not stream_or_none.complete:
                    self.streams.pop(event.stream_id)
            if not self.budget.spend():
                return self._calm_down("RST_STREAM")
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream_or_none = self.streams.get(event.stream_id)
                if stream_or_none is not None:
                    stream_or_none.window_open.set()
            else:
                self._connection_window.set()
                for stream in self.streams.values():
                    stream.window_open.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            # A new INITIAL_WINDOW_SIZE may open every stream's window.
            for stream in self.streams.values():
                stream.window_open.set()
            if not self.budget.spend():
                return self._calm_down("SETTINGS")
        elif isinstance(event, h2.events.PingReceived):
            if not self.budget.spend():
                return self._calm_down("PING")
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    def _calm_down(self, what: str) -> bool:
        log.info("h2 %s flood: over %d control frames a second", what, self.budget.per_second)
        self._goaway_sent = True
        self.conn.close_connection(
            h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
            additional_data=f"too many {what} frames".encode(),
            last_stream_id=self.last_processed,
        )
        self._cancel_all()
        return False

    # -- the connection --------------------------------------------------------------

    async def _read_loop(self, initial: bytes) -> None:
        """Feed h2 until the client leaves or breaks the protocol, or the watchdog stops
        reading (idle, or shut down and done)."""
        data = initial
        while True:
            if data:
                self._activity.set()
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    # h2 has queued a GOAWAY with the right error code: send it and stop.
                    log.info("h2 protocol error from the client: %s", exc)
                    self._cancel_all()
                    await self.flush()
                    return
                for event in events:
                    if not self._handle(event):
                        self._cancel_all()
                        await self.flush()
                        return
                await self.flush()
            try:
                data = bytes(await self.stream.receive_some(self.limits.receive_size))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.state.client_gone = True
                self._cancel_all()
                return

    async def _watchdog(self, read_scope: trio.CancelScope) -> None:
        """The idle timeout, and the shutdown sequence: GOAWAY at once, keep reading (the
        streams in flight still need WINDOW_UPDATEs), stop once they are done."""
        while True:
            if self.state.closing:
                self.goaway()
                await self.flush()
                with trio.move_on_after(self.limits.shutdown_grace):
                    await self._no_streams.wait()
                read_scope.cancel()
                return
            if self.streams:
                await _first(self._no_streams, self.state.closing_event)
                continue
            self._activity = trio.Event()
            with trio.move_on_after(self.limits.idle_timeout) as timer:
                await _first(self._activity, self.state.closing_event)
            if timer.cancelled_caught and not self.streams:
                read_scope.cancel()  # idle too long
                return

    def goaway(self) -> None:
        """A graceful GOAWAY(NO_ERROR): no new streams, those up to last_processed finish.

        Written here rather than through h2's close_connection(): h2 moves to CLOSED the
        moment it sends GOAWAY and then refuses to send anything on the streams still in
        flight. Streams that arrive after it are refused by _start_stream.
        """
        if not self._goaway_sent:
            self._goaway_sent = True
            frame = GoAwayFrame(0)
            frame.last_stream_id = self.last_processed
            frame.error_code = h2.errors.ErrorCodes.NO_ERROR
            self._raw_out += frame.serialize()

    async def run(self, initial: bytes) -> None:
        frame = SettingsFrame(0)
        self.conn.initiate_connection()
        self.conn.data_to_send()  # replaced by the SETTINGS frame below
        for setting, value in self.conn.local_settings.items():
            frame.settings[setting] = value
        frame.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] = self.limits.h2_max_concurrent_streams
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self.stream.send_all(frame.serialize())
                with trio.CancelScope() as read_scope:
                    nursery.start_soon(self._watchdog, read_scope)
                    await self._read_loop(initial)
                if not self.state.client_gone:
                    # Reading is over; say which streams will still be answered, let
                    # them finish (bounded), then close so that the GOAWAY is read.
                    self.goaway()
                    await self.flush()
                    with trio.move_on_after(self.limits.shutdown_grace):
                        await self._no_streams.wait()
                    await linger(self.stream, self.limits)
                nursery.cancel_scope.cancel()
        except (_Gone, trio.BrokenResourceError, trio.ClosedResourceError):
            return


class _Gone(Exception):
    """The connection broke under a send."""


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
    """Serve HTTP/2 on ``stream`` (``initial``: the client preface already read)."""
    await _H2Connection(stream, app, limits, state).run(initial)
