"""The state of one HTTP/2 server connection, and what happens on each frame it receives.

This is the synchronous half of the server connection (lab.server.http2 adds the tasks):
h2's state machine with the lab's settings, the streams accepted and refused
(MAX_CONCURRENT_STREAMS as a stream error, RFC 9113 §5.1.2, §8.7), request bodies within
the connection's and the server's budgets, resets that spend from the control-frame
budget, and the GOAWAY and SETTINGS frames the lab writes itself (§6.5, §6.8). Nothing
here waits: frames go to the writer's queue (lab.server.h2writer), handlers are started
by the connection once a whole read is processed.

Extended CONNECT (RFC 8441): the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL = 1
(§3), and a request with ``:protocol`` is a tunnel: its handler starts at once (the
request never ends), and its DATA waits in the stream's inbox for the WebSocket
(lab.server.websocket_h2), credited back to the client as it is read.
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
import h2.stream
import trio
from hyperframe.frame import GoAwayFrame, SettingsFrame

from lab.server.connection import ConnectionState
from lab.server.h2input import (
    GOAWAY,
    PREFACE,
    FrameRules,
    FrameSplitter,
    H2ConnectionError,
    RawFrame,
    header_list_size,
)
from lab.server.h2stream import Stream, TunnelInbox
from lab.server.h2writer import FrameWriter
from lab.server.interface import Handler
from lab.server.limits import Limits
from lab.wire.h2encode import data_frame_header

__all__ = ["H2State"]

log = logging.getLogger("lab.server")

ErrorCodes = h2.errors.ErrorCodes


# Where h2's state machines take SEND_DATA without a transition (h2.connection,
# h2.stream): the cases H2State.queue_data does itself.
_SERVER_OPEN: Final = h2.connection.ConnectionState.SERVER_OPEN
_SENDING_DATA: Final = frozenset(
    {h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE}
)


class _LabH2Connection(h2.connection.H2Connection):
    # How many closed streams h2 remembers, to tell a late frame on a stream it reset
    # (ignore) from a frame on a stream that never existed (error). h2's 65,536 cost
    # ~10.8 MiB per connection under a rapid-reset flood; streams a client opened more
    # than 1,024 streams ago do not send late frames in practice.
    MAX_CLOSED_STREAMS = 1024


class H2State:
    """One connection's h2 state machine, streams, budgets and queued frames."""

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
                # RFC 8441 §3: WebSocket over HTTP/2, by extended CONNECT.
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        # HPACK stops decoding past this (a connection error); between the advertised
        # size and this, the stream gets 431 (checked on the decoded fields).
        self.conn.decoder.max_header_list_size = limits.h2_header_list_hard_cap
        # The splitter checks the client preface; h2 expects it too, and gets it here.
        self.conn.receive_data(PREFACE)
        self.splitter = FrameSplitter(self.conn.max_inbound_frame_size, preface_done=False)
        self.rules = FrameRules(limits, state)
        self.streams: dict[int, Stream] = {}
        self.active = 0  # streams whose handler runs
        # Streams accepted and not yet ended (RFC 9113 §5.1.2 counts them against
        # MAX_CONCURRENT_STREAMS); kept as a count, since a flood makes the dict large.
        self.live = 0
        self._ready: list[Stream] = []  # complete requests whose handlers start next
        self._receiving = False  # a read is being parsed (it yields between frames)
        self.last_processed = 0  # the highest stream id handed to a handler
        self.buffered_body = 0  # request body bytes held for streams on this connection
        self._nursery: trio.Nursery | None = None
        self._no_streams = trio.Event()
        self._no_streams.set()
        self._activity = trio.Event()  # set by every read; the watchdog's idle clock
        self._paced = 0  # frames queued without waiting for the writer (see pace())
        # The code of the last GOAWAY queued (None: none yet). One per connection, but
        # for an error after a graceful GOAWAY(NO_ERROR), which gets its own (§6.8).
        self._goaway_code: ErrorCodes | None = None
        self._peer_goaway = False  # the client sent GOAWAY: finish, then close
        self._read_scope = trio.CancelScope()
        self.writer = FrameWriter(stream, limits, state.label, self._writer_broke)
        # A connection error found outside the read loop (the server's own resets over
        # the budget): the read loop is cancelled and run() answers it.
        self._pending_error: H2ConnectionError | None = None
        # Slowloris over HTTP/2: since when a frame, the preface or a header block has
        # been incomplete. All of it must arrive within head_timeout of its first byte,
        # as an HTTP/1.1 request head must (reads in between do not reset the clock).
        self._incomplete_since: float | None = trio.current_time()

    def _queue(self, raw: bytes = b"") -> int:
        """Take what h2 has to send (and ``raw`` frames after it) into the writer's
        queue; the queue position the caller's bytes end at."""
        return self.writer.queue(self.conn.data_to_send() + raw)

    def queue_data(self, stream_id: int, data: bytes) -> bool:
        """Queue ``data`` as one DATA frame without END_STREAM, exactly as h2's ``send_data``
        would, without its per-frame objects; False (nothing done) when this is not the
        plain case, which is then h2's to handle.

        The plain case: the connection is open, the stream is in a state where sending
        DATA leaves it where it is (open or half-closed (remote), RFC 9113 §5.1), and the
        data fits the frame size and both flow-control windows (§6.9.1). There h2's state
        machines make no transition, and what h2 does is what this does: take the length
        off the connection's and the stream's send windows, and serialise the frame
        (§6.1: type 0, no flags, no padding) after whatever h2 has queued before it.
        """
        conn = self.conn
        stream = conn.streams.get(stream_id)
        size = len(data)
        if (
            stream is None
            or conn.state_machine.state is not _SERVER_OPEN
            or stream.state_machine.state not in _SENDING_DATA
            or size > conn.max_outbound_frame_size
            or size > conn.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
        ):
            return False
        conn.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        self._queue(data_frame_header(stream_id, size) + data)
        return True

    def _writer_broke(self) -> None:
        self._read_scope.cancel()
        self._cancel_all()

    def _request(self, stream: Stream) -> tuple[str, str, list[tuple[str, str]]]:
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

    def _give_back(self, stream: Stream) -> None:
        """Return a stream's request body bytes to the connection's and server's budgets."""
        self.buffered_body -= stream.held
        self.state.bodies.release(stream.held)
        stream.held = 0

    def mark_ended(self, stream: Stream) -> None:
        """The server sent END_STREAM or RST_STREAM on ``stream``, or the client reset it:
        it no longer counts against MAX_CONCURRENT_STREAMS."""
        if not stream.ended:
            stream.ended = True
            if self.streams.get(stream.stream_id) is stream:
                self.live -= 1

    def _release(self, stream: Stream) -> None:
        if stream.websocket is not None:
            stream.websocket.stop()
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

    def _reset(self, stream: Stream | int, code: ErrorCodes) -> None:
        stream_id = stream if isinstance(stream, int) else stream.stream_id
        known = self.streams.get(stream_id)
        if known is not None:
            self.mark_ended(known)
        if self._pending_error is not None:
            return  # the connection is about to end with GOAWAY, which closes the stream
        # The server's own resets cost frames too: a client that provokes them (streams
        # over the limit, say) spends from the same budgets. Checked before the frame is
        # made, so that the reset over the budget is not sent: GOAWAY comes instead.
        self._pending_error = self.rules.overspent("provoked RST_STREAM")
        if self._pending_error is not None:
            self._read_scope.cancel()
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, code)

    def _cancel_all(self) -> None:
        for stream in self.streams.values():
            stream.scope.cancel()

    def _start_stream(self, stream: Stream) -> None:
        """Run ``stream``'s handler once the frames of this read are processed (see
        _launch)."""
        self._ready.append(stream)

    def _answer_early(self, stream: Stream, status: int, message: str) -> None:
        """Answer ``status`` before the request is complete, then stop its body."""
        self._give_back(stream)
        stream.body = bytearray()
        stream.status_override = (status, message)
        if not stream.running:
            self._start_stream(stream)

    def _check_frame(self, frame: RawFrame) -> bool:
        """The lab's own rules for one frame before h2 sees it; False: do not feed h2."""
        on_closed_stream = (
            0 < frame.stream_id <= self.conn.highest_inbound_stream_id
            and frame.stream_id not in self.streams
        )
        self.rules.check(frame, on_closed_stream)
        if frame.kind == GOAWAY:
            code = int.from_bytes(frame.raw[13:17], "big")
            log.info("%s: client sent GOAWAY (error code %d)", self.state.label, code)
            self._peer_goaway = True
            if not self.active:
                self._read_scope.cancel()
            return False
        return True

    def _handle(self, event: h2.events.Event) -> None:
        """Act on one h2 event."""
        if isinstance(event, h2.events.RequestReceived):
            self._new_stream(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.inbox is not None:
                stream.inbox.end()  # a tunnel: the client closed its side (RFC 8441 §6)
            elif stream is not None and not stream.complete:
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
        stream = Stream(sid, headers=fields, head=(b":method", b"HEAD") in fields)
        self.streams[sid] = stream
        self.live += 1
        stream.body_deadline = trio.current_time() + self.limits.body_timeout
        if event.stream_ended is not None:
            stream.complete = True
        size = header_list_size(fields)
        if size > self.limits.max_head_size:
            self._answer_early(
                stream, 431,
                f"request header list is {size} bytes (RFC 9113 §6.5.2 counting); "
                f"SETTINGS_MAX_HEADER_LIST_SIZE is {self.limits.max_head_size}\n",
            )  # fmt: skip
        elif stream.complete:
            self._start_stream(stream)
        elif (b":method", b"CONNECT") in fields and (protocol := dict(fields).get(b":protocol")):
            # Extended CONNECT (RFC 8441 §4): the request is the start of a tunnel.
            stream.protocol = protocol.decode("latin-1").lower()
            stream.inbox = TunnelInbox()
            self._start_stream(stream)

    def _tunnel_data(self, stream: Stream, inbox: TunnelInbox, size: int, data: bytes) -> None:
        """DATA on a tunnel: the connection's window is credited back at once, so that a
        WebSocket that is not read holds up only its own stream; the stream's as the
        WebSocket reads (lab.server.websocket_h2), padding at once."""
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            if size:
                self.conn.increment_flow_control_window(size)
            if size > len(data):
                self.conn.increment_flow_control_window(size - len(data), stream.stream_id)
        inbox.put(data)

    def _data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.inbox is not None:
            self._tunnel_data(stream, stream.inbox, event.flow_controlled_length, event.data or b"")
            return
        # Flow-control credit goes back at once: the body is bounded by the limits below,
        # not by the window.
        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
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
