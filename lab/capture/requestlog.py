"""Requests and their responses on one connection, read as the bytes pass: a relay's log.

A :class:`RequestLog` is fed each direction's bytes of one connection in the order they
crossed (``feed``, ``end``, ``close``) and reports each request once its response is over,
as a :class:`LoggedRequest` (method, target, status, response bytes, duration). It reads
with the lab's own decoders, the ones the annotated view uses
(:class:`lab.wire.http1.MessageDecoder`, :class:`lab.wire.h2messages.H2Decoder`), so what
the log says is what ``lab show`` shows for the saved trace.

When a response is over:

- HTTP/1.1 (RFC 9112 §6.3): its head ends a message without a body (HEAD, 204, 304), its
  Content-Length worth of body arrived, its last chunk and trailers arrived, or, for a
  body delimited by the close, the server finished sending. Responses come in the order
  of the requests (§9.3). A ``101 Switching Protocols`` ends the log of the connection:
  what follows is not HTTP/1.1 (a WebSocket, say);
- HTTP/2 (RFC 9113 §8.1): a frame of the server's with END_STREAM on the request's
  stream, or an RST_STREAM on it from either side (``how="reset"``).

Whatever is still open when the connection ends is reported then, ``complete=False``.

A response's bytes are what it took on the wire: HTTP/1.1, its head and body, interim
(1xx) heads included; HTTP/2, every frame of the server's on its stream (frame headers
included). Times are those the caller passes with the bytes (the trace's clock).

``protocol="auto"`` tells HTTP/2 with prior knowledge from HTTP/1.1 by the client's first
bytes (the connection preface, RFC 9113 §3.4), as the lab's server does.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from lab.wire.chunked import BodyEnd
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    SettingId,
    SettingsFrame,
)
from lab.wire.h2messages import H2Decoder
from lab.wire.http1 import BodyData, HeadEnd, MessageDecoder, RequestLine, StatusLine
from lab.wire.segment import Nested, Segment

__all__ = ["AUTO", "PREFACE", "LoggedRequest", "RequestLog", "sniff_protocol", "widen_limits"]

AUTO: Final = "auto"
# RFC 9113 §3.4: the client connection preface of HTTP/2.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Requests open at once on one connection that the log follows. HTTP/1.1 clients keep one
# or a few in flight; HTTP/2 allows 100 concurrent streams by default in most servers
# (SETTINGS_MAX_CONCURRENT_STREAMS). Past this, a request is not logged, so that a client
# that never reads its responses cannot grow the log without end.
MAX_OPEN_REQUESTS: Final = 1024
_END_STREAM: Final = 0x1


def sniff_protocol(first: bytes) -> str | None:
    """``"h2c"`` if ``first`` (a client's first bytes) begin the HTTP/2 preface,
    ``"http/1.1"`` if they cannot, None while too few bytes were seen to tell."""
    if PREFACE.startswith(first[: len(PREFACE)]):
        return "h2c" if len(first) >= len(PREFACE) else None
    return "http/1.1"


def widen_limits(decoder: H2Decoder, frame: SettingsFrame) -> None:
    """Apply one side's SETTINGS to the decoder of what the other side sends.

    They bound the other side's frames and HPACK table (RFC 9113 §6.5.2). A peer may use
    a value as soon as it has read it (§6.5.3), so a reader of the bytes in passing takes
    it at once, the largest value winning: it must never refuse what the peers accepted.
    """
    frames = decoder.frames
    for setting in frame.settings:
        if setting.id == SettingId.MAX_FRAME_SIZE:
            with contextlib.suppress(ValueError):  # out of range: a problem, not a size
                frames.max_frame_size = max(frames.max_frame_size, setting.value)
        elif setting.id == SettingId.HEADER_TABLE_SIZE and frames.header_decoder:
            table = frames.header_decoder
            table.max_table_size = max(table.max_table_size, setting.value)


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request and how its response went."""

    number: int  # 1, 2 ... on its connection, in the order the requests came
    stream_id: int | None  # HTTP/2: the request's stream; None on HTTP/1.1
    method: str
    target: str
    status: int | None  # the final status (a 101 counts as final); None: no response head
    response_bytes: int  # the response on the wire (see the module docstring)
    started: float  # when the bytes that completed the request's head passed
    ended: float  # when the response was over (or the connection ended)
    complete: bool  # the response ended as its framing says
    how: str = ""  # "reset", "cut short", "upgraded", "not parsed: ..." or ""

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass(slots=True)
class _Open:
    number: int
    stream_id: int | None
    method: str
    target: str
    started: float
    status: int | None = None
    start: int | None = None  # HTTP/1.1: offset of its first status line
    size: int = 0  # HTTP/2: bytes of its frames so far
    remaining: int | None = None  # HTTP/1.1: Content-Length bytes still to come


class RequestLog:
    """One connection's requests, reported to ``on_request`` as their responses end.

    ``protocol`` is ``"http/1.1"``, ``"h2c"``, ``"h2"`` or :data:`AUTO`. Decoding stops
    (and says why in :attr:`stopped`) at the first byte a decoder refuses; the requests
    open then are reported at :meth:`close`.
    """

    def __init__(self, protocol: str, on_request: Callable[[LoggedRequest], None]) -> None:
        self.protocol = protocol
        self.on_request = on_request
        self.count = 0  # requests seen
        self.stopped = ""  # why the log stopped reading, or ""
        self._first = b""  # AUTO: the client's first bytes while the protocol is unknown
        self._early: list[tuple[bool, bytes, float]] = []  # bytes held until it is known
        self._decoders: dict[bool, MessageDecoder | H2Decoder] = {}
        self._pending: deque[_Open] = deque()  # HTTP/1.1, in order
        self._streams: dict[int, _Open] = {}  # HTTP/2, by stream id
        self._ends_after_block: set[int] = set()  # HTTP/2: END_STREAM on a HEADERS w/o block
        self._last_end = 0  # HTTP/1.1: end offset of the last response segment read
        if protocol != AUTO:
            self._start(protocol)

    @property
    def h2(self) -> bool:
        return self.protocol in ("h2", "h2c")

    # -- input ---------------------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, t: float) -> None:
        """Bytes that passed in one direction at ``t``."""
        if self.stopped or not data:
            return
        if not self._decoders:
            self._early.append((from_client, data, t))
            if from_client:
                self._first += data
                found = sniff_protocol(self._first)
                if found is not None:
                    self._start(found)
                    early, self._early = self._early, []
                    for c, d, when in early:
                        self._read(c, d, when)
            return
        self._read(from_client, data, t)

    def end(self, from_client: bool, t: float) -> None:
        """One direction finished (its FIN): a body delimited by the close ends here."""
        decoder = self._decoders.get(from_client)
        if decoder is None or self.stopped:
            return
        try:
            segs = decoder.eof()
        except ProtocolError as exc:
            self._take(from_client, exc.segments, t)
            self.stopped = f"not parsed: {exc}"
            return
        self._take(from_client, segs, t)
        if not from_client and not self.h2 and self._pending:
            current = self._pending[0]
            if current.status is not None and current.remaining is None:
                self._report(self._pending.popleft(), t, complete=True)

    def close(self, t: float) -> None:
        """The connection is over: report every request still open."""
        how = self.stopped or "cut short"
        for req in [*self._pending, *self._streams.values()]:
            self._report(req, t, complete=False, how=how)
        self._pending.clear()
        self._streams.clear()

    # -- decoding ------------------------------------------------------------------------

    def _start(self, protocol: str) -> None:
        self.protocol = protocol
        if self.h2:
            self._decoders = {
                True: H2Decoder(from_client=True),
                False: H2Decoder(from_client=False),
            }
        else:
            self._decoders = {True: MessageDecoder("request"), False: MessageDecoder("response")}

    def _read(self, from_client: bool, data: bytes, t: float) -> None:
        if self.stopped:
            return
        try:
            segs = self._decoders[from_client].feed(data)
        except ProtocolError as exc:
            self._take(from_client, exc.segments, t)
            self.stopped = self.stopped or f"not parsed: {exc}"
            return
        self._take(from_client, segs, t)

    def _take(self, from_client: bool, segs: list[Segment], t: float) -> None:
        for seg in segs:
            if self.stopped:
                return
            if isinstance(seg, Nested):
                continue  # fields, HPACK fields and SSE lines are inside what is counted
            if self.h2:
                self._h2(from_client, seg, t)
            else:
                self._h1(from_client, seg, t)

    def _h1(self, from_client: bool, seg: Segment, t: float) -> None:
        if from_client:
            if isinstance(seg, RequestLine):
                self.count += 1
                response = self._decoders[False]
                assert isinstance(response, MessageDecoder)
                response.expect(seg.method)  # a response to HEAD has no body
                if len(self._pending) < MAX_OPEN_REQUESTS:
                    self._pending.append(_Open(self.count, None, seg.method, seg.target, t))
            return
        if not self._pending:
            return  # a response to no request seen (or one not followed): nothing to log
        current = self._pending[0]
        if isinstance(seg, StatusLine):
            if current.start is None:
                current.start = seg.start
            if seg.status >= 200 or seg.status == 101:
                current.status = seg.status
        elif isinstance(seg, HeadEnd) and current.status is not None:
            if current.status == 101:
                # The connection now speaks another protocol (RFC 9110 §15.2.2): the
                # request is complete, and what follows is not for this log.
                self._pending.popleft()
                self._report(current, t, complete=True, how="upgraded", end=seg.end)
                self.stopped = f"upgraded to another protocol after request {current.number}"
            elif seg.framing.startswith("absent"):
                self._done(current, t, seg.end)
            elif seg.framing.startswith("of "):
                current.remaining = int(seg.framing.split()[1])
                if current.remaining == 0:
                    self._done(current, t, seg.end)
        elif isinstance(seg, BodyData) and current.remaining is not None:
            current.remaining -= len(seg.data)
            if current.remaining <= 0:
                self._done(current, t, seg.end)
        elif isinstance(seg, BodyEnd):
            self._done(current, t, seg.end)
        self._last_end = seg.end

    def _done(self, current: _Open, t: float, end: int) -> None:
        self._pending.popleft()
        self._report(current, t, complete=True, end=end)

    def _h2(self, from_client: bool, seg: Segment, t: float) -> None:
        if not isinstance(seg, Frame):
            return  # the preface
        if isinstance(seg, SettingsFrame):
            if not seg.ack and seg.problem is None:
                self._apply_settings(seg, from_client)
            return
        sid = seg.stream_id
        req = self._streams.get(sid)
        block = seg.block if isinstance(seg, HeadersFrame | ContinuationFrame) else None
        if from_client:
            if block is not None and req is None:
                fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in block.headers}
                if ":method" in fields:
                    self.count += 1
                    if len(self._streams) < MAX_OPEN_REQUESTS:
                        target = fields.get(":path", fields.get(":authority", ""))
                        self._streams[sid] = _Open(self.count, sid, fields[":method"], target, t)
        elif req is not None:
            req.size += seg.nbytes
            if block is not None:
                status = next((v for k, v in block.headers if k == b":status"), b"")
                if status.isdigit() and int(status) >= 200:
                    req.status = int(status)
            if isinstance(seg, HeadersFrame | DataFrame) and seg.flags & _END_STREAM:
                if block is None and isinstance(seg, HeadersFrame):
                    self._ends_after_block.add(sid)  # CONTINUATION frames still to come
                else:
                    self._report(self._streams.pop(sid), t, complete=True)
                    return
            if block is not None and sid in self._ends_after_block:
                self._ends_after_block.discard(sid)
                self._report(self._streams.pop(sid), t, complete=True)
                return
        if req is not None and seg.type_name == "RST_STREAM" and sid in self._streams:
            self._report(self._streams.pop(sid), t, complete=False, how="reset")

    def _apply_settings(self, frame: SettingsFrame, from_client: bool) -> None:
        decoder = self._decoders[not from_client]
        assert isinstance(decoder, H2Decoder)
        widen_limits(decoder, frame)

    def _report(
        self, req: _Open, t: float, *, complete: bool, how: str = "", end: int | None = None
    ) -> None:
        if self.h2:
            size = req.size
        elif req.start is None:
            size = 0
        else:
            size = (end if end is not None else self._last_end) - req.start
        self.on_request(
            LoggedRequest(
                number=req.number,
                stream_id=req.stream_id,
                method=req.method,
                target=req.target,
                status=req.status,
                response_bytes=size,
                started=req.started,
                ended=t,
                complete=complete,
                how=how,
            )
        )
