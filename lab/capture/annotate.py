"""Trace -> annotated segments: every byte of every connection, grouped by protocol unit.

Records are replayed in the order they happened; each direction's bytes go to that
direction's decoder from :mod:`lab.wire`, and every segment a decoder completes is stamped
with the record (and so the time) whose bytes completed it. Requests and responses
therefore interleave exactly as they did on the socket.

Nothing is dropped: bytes a decoder refuses become an :class:`Unparsed` segment carrying
the decoder's error, and a message cut short by the end of the connection is marked.

WebSocket is nested where it starts. Over HTTP/1.1 the two directions' decoders are paired
(:class:`lab.wire.http1.MessageDecoder`): after a 101 (RFC 6455 §4.2.2) both read WebSocket
frames, the response direction from the 101's empty line, the request direction from the
end of the request that asked; what a client sent before the answer came is held, and read
once the record carrying the answer's head has been. Over HTTP/2 each extended CONNECT the
client sends (RFC 8441 §4) is announced to the server direction's decoder, so that its DATA
frames are read as WebSocket frames once the server accepts.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

from lab.capture.pcapread_records import StreamBreak
from lab.capture.pcapread_tls import TLSRecordDecoder
from lab.capture.trace import EOF, RECV, SEND, SHUTDOWN, ConnectionTrace, Record, Trace
from lab.wire.errors import ProtocolError
from lab.wire.h2fields import FrameField
from lab.wire.h2frames import (
    DEFAULT_HEADER_TABLE_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    ContinuationFrame,
    HeadersFrame,
    SettingId,
    SettingsFrame,
)
from lab.wire.h2messages import H2Decoder, opens_websocket
from lab.wire.http1 import MessageDecoder, RequestLine
from lab.wire.segment import Nested, Segment
from lab.wire.websocket_fields import FrameField as WebSocketField

__all__ = [
    "Annotated",
    "AnnotatedConnection",
    "ConnectionAnnotator",
    "Unparsed",
    "annotate",
    "annotate_connection",
    "iter_annotated",
]


@dataclass(frozen=True, slots=True)
class Unparsed(Segment):
    """Bytes the decoder could not take (or, when empty, the point a message was cut)."""

    error: str
    kind: ClassVar[str] = "unparsed"

    def note(self) -> str:
        what = f"{self.nbytes} bytes not parsed" if self.nbytes else "message cut short"
        return f"{what}: {self.error}"


@dataclass(frozen=True, slots=True)
class Annotated:
    from_client: bool
    segment: Segment
    record: int  # index in the connection's records of the record that completed it
    t: float  # that record's time


class _Decoder(Protocol):
    def feed(self, data: bytes) -> list[Segment]: ...
    def eof(self) -> list[Segment]: ...


@dataclass(slots=True)
class AnnotatedConnection:
    index: int  # from 0, as in the trace file, the pcapng and Wireshark's tcp.stream
    conn: ConnectionTrace
    items: list[Annotated]

    def segments(self, *, from_client: bool, nested: bool = False) -> list[Segment]:
        """One direction's segments in order: the framing layer, which tiles the bytes,
        and with ``nested`` also the units of the bodies' own formats (SSE lines)."""
        return [
            a.segment
            for a in self.items
            if a.from_client == from_client and (nested or not isinstance(a.segment, Nested))
        ]

    def record_notes(self) -> dict[int, list[str]]:
        """For each SEND/RECV record, the notes of the segments whose bytes it carried.

        The fields of an HTTP/2 or a WebSocket frame are left out: the frame's own note
        says what they hold, and a pcapng reader (Wireshark) dissects the fields itself.
        """
        out: dict[int, list[str]] = {}
        for direction in (True, False):
            spans = _record_spans(self.conn, from_client=direction)
            starts = [start for _, start, _ in spans]
            for seg in self.segments(from_client=direction, nested=True):
                if isinstance(seg, Nested) and isinstance(seg.unit, FrameField | WebSocketField):
                    continue
                first = max(bisect_right(starts, seg.start) - 1, 0)
                last = max(bisect_left(starts, seg.end) - 1, first)
                for k in range(first, min(last + 1, len(spans))):
                    out.setdefault(spans[k][0], []).append(seg.note())
        return out


def _record_spans(conn: ConnectionTrace, *, from_client: bool) -> list[tuple[int, int, int]]:
    spans = []
    offset = 0
    for i, rec in enumerate(conn.records):
        if rec.kind in (SEND, RECV) and conn.is_from_client(rec) == from_client:
            spans.append((i, offset, offset + len(rec.data)))
            offset += len(rec.data)
    return spans


class _Direction:
    """One direction's decoder plus what is needed to keep every byte accounted for."""

    def __init__(self, decoder: _Decoder, total: int) -> None:
        self.decoder = decoder
        self.total = total  # bytes this direction carries in the whole trace
        self.covered = 0  # end of the last segment handed out
        self.failed = False
        self.ended = False

    def feed(self, data: bytes) -> list[Segment]:
        return self._guard(self.decoder.feed, data)

    def eof(self) -> list[Segment]:
        self.ended = True
        return self._guard(lambda _: self.decoder.eof(), b"")

    def stop(self, reason: str) -> list[Segment]:
        """A break in a capture's stream: the rest of this direction is one Unparsed."""
        if self.failed:
            return []
        self.failed = True
        return [Unparsed(self.covered, self.total, reason)]

    def _guard(self, step: Callable[[bytes], list[Segment]], data: bytes) -> list[Segment]:
        if self.failed:
            return []
        try:
            segs = step(data)
        except ProtocolError as exc:
            self.failed = True
            done = exc.segments  # what the failing feed completed before the bad byte
            self._cover(done)
            return [*done, Unparsed(self.covered, self.total, str(exc))]
        self._cover(segs)
        return segs

    def _cover(self, segs: list[Segment]) -> None:
        ends = [s.end for s in segs if not isinstance(s, Nested)]
        if ends:
            self.covered = max(self.covered, *ends)


class _H2Settings:
    """One side's SETTINGS, applied to the decoder of what the other side sends.

    SETTINGS_HEADER_TABLE_SIZE caps the other side's HPACK table size updates and
    SETTINGS_MAX_FRAME_SIZE its frames (RFC 9113 §6.5.2). A value binds the other side
    once it has acknowledged it (§6.5.3), but it may act on it as soon as it has read it,
    in the same send as its ACK; so the decoder allows the highest of the acknowledged
    value and any announced since (a browser raises the table to 64 KiB, and the server's
    next field block starts with a size update to that).
    """

    _IDS = (SettingId.HEADER_TABLE_SIZE, SettingId.MAX_FRAME_SIZE)

    def __init__(self, other: H2Decoder) -> None:
        self.other = other
        self.acked: dict[int, int] = {
            SettingId.HEADER_TABLE_SIZE: DEFAULT_HEADER_TABLE_SIZE,
            SettingId.MAX_FRAME_SIZE: DEFAULT_MAX_FRAME_SIZE,
        }
        self.pending: deque[dict[int, int]] = deque()

    def announced(self, frame: SettingsFrame) -> None:
        if frame.problem is None:  # an invalid value is a connection error, not a limit
            self.pending.append({s.id: s.value for s in frame.settings if s.id in self._IDS})
            self._apply()

    def acknowledged(self) -> None:
        if self.pending:
            self.acked.update(self.pending.popleft())
            self._apply()

    def _apply(self) -> None:
        def allowed(setting: int) -> int:
            return max([self.acked[setting], *(p[setting] for p in self.pending if setting in p)])

        frames = self.other.frames
        frames.max_frame_size = allowed(SettingId.MAX_FRAME_SIZE)
        if frames.header_decoder is not None:
            frames.header_decoder.max_table_size = allowed(SettingId.HEADER_TABLE_SIZE)


def _decoders(conn: ConnectionTrace) -> tuple[_Decoder, _Decoder]:
    if conn.protocol.startswith("http/1"):
        requests = MessageDecoder("request")
        return requests, MessageDecoder("response", requests=requests)
    if conn.protocol in ("h2", "h2c"):
        return H2Decoder(from_client=True), H2Decoder(from_client=False)
    if conn.protocol == "tls":  # a packet capture of TLS: records, the payload opaque
        return TLSRecordDecoder(), TLSRecordDecoder()
    raise ValueError(f"no annotator for protocol {conn.protocol!r}")


def _awaiting(decoder: _Decoder) -> bool:
    """An HTTP/1.1 request decoder holding what follows a request that asked to upgrade."""
    return isinstance(decoder, MessageDecoder) and decoder.awaiting_answer is not None


def annotate_connection(conn: ConnectionTrace, index: int = 0) -> AnnotatedConnection:
    totals = (len(conn.client_to_server()), len(conn.server_to_client()))
    return AnnotatedConnection(index, conn, list(iter_annotated(conn, conn.records, totals)))


def iter_annotated(
    conn: ConnectionTrace, records: Iterable[Record], totals: tuple[int, int]
) -> Iterator[Annotated]:
    """The annotated segments of ``records`` (``conn``'s, which may be elsewhere than in
    ``conn.records``: read from a file as they go), each as soon as the record that
    completed it has been read. ``totals`` is the bytes the client and the server sent in
    all of them."""
    annotator = ConnectionAnnotator(conn, totals)
    for i, rec in enumerate(records):
        yield from annotator.feed(i, rec)
    yield from annotator.finish()


class ConnectionAnnotator:
    """Annotation fed one record at a time: :meth:`feed` each record in order, then
    :meth:`finish`; each returns the segments the record completed."""

    def __init__(self, conn: ConnectionTrace, totals: tuple[int, int]) -> None:
        self.conn = conn
        self.to_server, self.to_client = _decoders(conn)
        self.sides = {
            True: _Direction(self.to_server, totals[0]),
            False: _Direction(self.to_client, totals[1]),
        }
        # Whose SETTINGS (True: the client's) bound which direction's decoder.
        self.settings = (
            {True: _H2Settings(self.to_client), False: _H2Settings(self.to_server)}
            if isinstance(self.to_server, H2Decoder) and isinstance(self.to_client, H2Decoder)
            else None
        )
        self.items: list[Annotated] = []
        self.last, self.t_last = -1, 0.0

    def _emit(self, from_client: bool, segs: list[Segment], i: int, t: float) -> None:
        settings, to_client = self.settings, self.to_client
        for seg in segs:
            self.items.append(Annotated(from_client, seg, i, t))
            if settings is not None and isinstance(seg, SettingsFrame):
                if seg.ack:
                    settings[not from_client].acknowledged()
                else:
                    settings[from_client].announced(seg)
            if (
                from_client
                and isinstance(seg, RequestLine)
                and isinstance(to_client, MessageDecoder)
            ):
                to_client.expect(seg.method)
            if (
                from_client
                and isinstance(seg, HeadersFrame | ContinuationFrame)
                and isinstance(to_client, H2Decoder)
                and opens_websocket(seg)
            ):
                to_client.expect_websocket(seg.stream_id)  # a WebSocket, if it is accepted

    def feed(self, i: int, rec: Record) -> list[Annotated]:
        """Read record ``i``; the segments it completed."""
        conn, sides, emit = self.conn, self.sides, self._emit
        self.last, self.t_last = i, rec.t
        if isinstance(rec, StreamBreak):  # from a packet capture: a gap or a conflict
            from_client = conn.is_from_client(rec)
            emit(from_client, sides[from_client].stop(rec.reason), i, rec.t)
        elif rec.kind in (SEND, RECV):
            from_client = conn.is_from_client(rec)
            held = _awaiting(self.to_server)
            emit(from_client, sides[from_client].feed(rec.data), i, rec.t)
            if held and not from_client and not _awaiting(self.to_server):
                # The answer to a request that asked to upgrade (RFC 9110 §7.8) came: what
                # the client sent after it is read now, as the new protocol or as HTTP/1.1.
                emit(True, sides[True].feed(b""), i, rec.t)
        elif rec.kind in (EOF, SHUTDOWN):
            # EOF: the tapped side's peer finished sending; SHUTDOWN: the tapped side did.
            from_client = (conn.side == "server") == (rec.kind == EOF)
            emit(from_client, sides[from_client].eof(), i, rec.t)
        return self._take()

    def finish(self) -> list[Annotated]:
        """After the last record: what the end of the trace cut short."""
        for from_client, d in self.sides.items():
            if not d.ended and not d.failed:
                # The trace ends without this direction's EOF (the tapped side closed, or
                # a reset): a message still open was cut short.
                self._emit(from_client, d.eof(), self.last, self.t_last)
        return self._take()

    def _take(self) -> list[Annotated]:
        items, self.items = self.items, []
        return items


def annotate(trace: Trace) -> list[AnnotatedConnection]:
    """Every connection of ``trace``, annotated."""
    return [annotate_connection(c, i) for i, c in enumerate(trace.connections)]
