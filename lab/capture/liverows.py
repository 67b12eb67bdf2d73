"""One connection annotated record by record, as it is recorded: the live viewer's rows.

:mod:`lab.capture.annotate` annotates a whole :class:`ConnectionTrace` at once; doing that
again for every new record of a growing connection would cost O(n²). A
:class:`RowMaker` instead keeps each direction's decoder from :mod:`lab.wire` running and
feeds it one record at a time, so each record costs what its own bytes cost. Every
segment a record completes is reported in that record's row, as
:func:`lab.capture.annotate.annotate_connection` stamps it with that record.

A row is plain data, ready for JSON (the feed sends it as is)::

    {"i": 5, "t": 0.1032, "kind": "send", "c": false, "size": 12,
     "wire": "5\\r\\nhello\\r\\n", "cut": 0,
     "segs": [{"k": "chunk-size", "note": "chunk size 0x5 = 5 bytes", "s": 120, "e": 123,
               "c": false}, ...],
     "more": 0, "text": [[1, "hello"]], "req": [], "status": [], "done": []}

- ``c``: whether the bytes went from client to server (None for a record without data);
- ``wire``: the record's first :data:`PREVIEW_BYTES` bytes, as text with escapes for
  HTTP/1.1 (``\\r``, ``\\n``, ``\\xNN``) and as hex pairs for HTTP/2; ``cut`` is how many
  more there were;
- ``segs``: the segments this record completed (at most :data:`SEGMENTS_PER_ROW`;
  ``more`` counts the rest), a frame with its ``sid`` (stream id), ``type`` and ``flags``,
  a unit nested in a body (an SSE field) with ``nested``;
- ``text``: what a user of the app sees arrive, per response (``[sid, text]``: the HTTP/2
  stream id, or the response's number on an HTTP/1.1 connection): the body as UTF-8 text,
  or for an event stream (WHATWG HTML §9.2) the data of each event dispatched;
- ``req`` (``[sid, method, target]``), ``status`` (``[sid, code]``) and ``done``
  (``sid``) say which requests this record started and which responses it began and
  ended.

HTTP/2 SETTINGS are applied leniently: a decoder accepts the largest frame size and HPACK
table size the receiving side has announced, acknowledged or not (RFC 9113 §6.5.3 lets a
peer use them once it has read them). A viewer must not fail where the peers did not.
"""

from __future__ import annotations

import codecs
import contextlib
from typing import Any, Final

from lab.capture.records import EOF, RECV, SEND, SHUTDOWN, ConnectionTrace, Record
from lab.wire.chunked import BodyEnd, ChunkData
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import DataFrame, Frame, HeadersFrame, SettingId, SettingsFrame
from lab.wire.h2messages import H2Decoder
from lab.wire.http1 import (
    BodyData,
    HeadEnd,
    HeaderField,
    MessageDecoder,
    RequestLine,
    StatusLine,
)
from lab.wire.segment import Nested, Segment
from lab.wire.sse_segments import Dispatch

__all__ = [
    "NOTE_CHARS",
    "PREVIEW_BYTES",
    "SEGMENTS_PER_ROW",
    "TEXT_CHARS_PER_ROW",
    "TEXT_STREAMS",
    "RowMaker",
]

# How much of one record a row shows: the bytes' meaning is in the segments, and the
# whole record is in the .trace download; 256 bytes is a request head or a few chunks.
PREVIEW_BYTES: Final = 256
# Segments listed per row: a record of 64 KiB may complete hundreds of tiny frames or
# SSE lines; a row names the first 64 and counts the rest.
SEGMENTS_PER_ROW: Final = 64
# A note is one line; longer ones (a long header value) are cut here.
NOTE_CHARS: Final = 300
# Body text per row: a token is a few characters, a /fixed piece 16 KiB; the page needs
# the start of it, not all of it.
TEXT_CHARS_PER_ROW: Final = 2048
# Responses whose text is followed at once on one connection (HTTP/2 streams): each holds
# a UTF-8 decoder for a character split across records. Past it, text is not shown.
TEXT_STREAMS: Final = 256

_END_STREAM: Final = 0x1


def _escape(data: bytes) -> str:
    out = []
    for b in data:
        if b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def _segment(seg: Segment, from_client: bool) -> dict[str, Any]:
    unit = seg.unit if isinstance(seg, Nested) else seg
    out: dict[str, Any] = {
        "k": unit.kind,
        "note": seg.note()[:NOTE_CHARS],
        "s": seg.start,
        "e": seg.end,
        "c": from_client,
    }
    if isinstance(seg, Nested):
        out["nested"] = True
    if isinstance(seg, Frame):
        out["sid"] = seg.stream_id
        out["type"] = seg.type_name
        out["flags"] = list(seg.flag_names)
    return out


class _Side:
    """One direction's decoder; after a protocol error it takes nothing more."""

    def __init__(self, decoder: MessageDecoder | H2Decoder) -> None:
        self.decoder = decoder
        self.failed: str | None = None
        self.ended = False

    def feed(self, data: bytes) -> list[Segment]:
        if self.failed is not None:
            return []
        try:
            return self.decoder.feed(data)
        except ProtocolError as exc:
            self.failed = str(exc)
            return exc.segments

    def eof(self) -> list[Segment]:
        if self.failed is not None or self.ended:
            return []
        self.ended = True
        try:
            return self.decoder.eof()
        except ProtocolError as exc:
            self.failed = str(exc)
            return exc.segments


class _Row:
    """What one record's segments add up to, while they are read in order."""

    def __init__(self) -> None:
        self.segs: list[dict[str, Any]] = []
        self.more = 0
        self.text: dict[int, list[str]] = {}
        self.req: list[list[Any]] = []
        self.status: list[list[int]] = []
        self.done: list[int] = []
        self.text_chars = 0

    def add(self, seg: Segment, from_client: bool) -> None:
        if len(self.segs) < SEGMENTS_PER_ROW:
            self.segs.append(_segment(seg, from_client))
        else:
            self.more += 1

    def add_text(self, sid: int, text: str) -> None:
        room = TEXT_CHARS_PER_ROW - self.text_chars
        if text and room > 0:
            self.text.setdefault(sid, []).append(text[:room])
            self.text_chars += min(len(text), room)

    def failure(self, message: str, from_client: bool, *, at_end: bool = False) -> None:
        what = "message cut short" if at_end else "the rest of this direction is not parsed"
        note = f"{what}: {message}"[:NOTE_CHARS]
        self.segs.append({"k": "unparsed", "note": note, "s": None, "e": None, "c": from_client})

    def as_dict(self) -> dict[str, Any]:
        return {
            "segs": self.segs,
            "more": self.more,
            "text": [[sid, "".join(parts)] for sid, parts in self.text.items()],
            "req": self.req[:SEGMENTS_PER_ROW],
            "status": self.status[:SEGMENTS_PER_ROW],
            "done": self.done[:SEGMENTS_PER_ROW],
        }


class RowMaker:
    """Rows for the records of ``conn``, made one record at a time, in order.

    Raises :class:`ValueError` for a protocol the lab has no decoder for.
    """

    def __init__(self, conn: ConnectionTrace) -> None:
        self.conn = conn
        self.h2 = conn.protocol in ("h2", "h2c")
        if self.h2:
            self._to_server: _Side = _Side(H2Decoder(from_client=True))
            self._to_client: _Side = _Side(H2Decoder(from_client=False))
        elif conn.protocol.startswith("http/1"):
            self._to_server = _Side(MessageDecoder("request"))
            self._to_client = _Side(MessageDecoder("response"))
        else:
            raise ValueError(f"no decoder for protocol {conn.protocol!r}")
        # Per response: a UTF-8 decoder (None: an event stream, whose events are shown).
        self._bodies: dict[int, codecs.IncrementalDecoder | None] = {}
        self._requests = 0  # HTTP/1.1: requests seen, final responses begun
        self._responses = 0
        self._final = False  # HTTP/1.1: the response being read is not an interim 1xx
        self._length: int | None = None  # its Content-Length body bytes still to come
        self._last_data_sid = 0  # HTTP/2: the stream of the last DATA frame read

    def row(self, index: int, record: Record) -> dict[str, Any]:
        """The row of record ``index`` (records must come in order, each once)."""
        row = _Row()
        from_client: bool | None = None
        if record.kind in (SEND, RECV):
            from_client = self.conn.is_from_client(record)
            side = self._to_server if from_client else self._to_client
            before = side.failed
            self._read(row, side.feed(record.data), from_client)
            if side.failed is not None and before is None:
                row.failure(side.failed, from_client)
        elif record.kind in (EOF, SHUTDOWN):
            # EOF: the tapped side's peer finished sending; SHUTDOWN: the tapped side did.
            ends_client = (self.conn.side == "server") == (record.kind == EOF)
            self.end_direction(row, ends_client)
        return _shape(index, record, from_client, row, hexed=self.h2)

    @staticmethod
    def bare_row(conn: ConnectionTrace, index: int, record: Record) -> dict[str, Any]:
        """A row without annotation, for a protocol the lab has no decoder for."""
        from_client = conn.is_from_client(record) if record.kind in (SEND, RECV) else None
        return _shape(index, record, from_client, _Row(), hexed=True)

    def finish(self) -> dict[str, Any]:
        """What the end of the connection completes (messages cut short), as a row's
        ``segs`` / ``text`` / ``done`` part."""
        row = _Row()
        for from_client in (True, False):
            self.end_direction(row, from_client)
        return row.as_dict()

    def end_direction(self, row: _Row, from_client: bool) -> None:
        side = self._to_server if from_client else self._to_client
        before = side.failed
        self._read(row, side.eof(), from_client)
        if side.failed is not None and before is None:
            row.failure(side.failed, from_client, at_end=True)

    # -- reading segments --------------------------------------------------------------

    def _read(self, row: _Row, segs: list[Segment], from_client: bool) -> None:
        for seg in segs:
            row.add(seg, from_client)
            if self.h2:
                self._h2(row, seg, from_client)
            else:
                self._h1(row, seg, from_client)

    def _h1(self, row: _Row, seg: Segment, from_client: bool) -> None:
        if isinstance(seg, RequestLine):
            self._requests += 1
            row.req.append([self._requests, seg.method, seg.target])
            decoder = self._to_client.decoder
            assert isinstance(decoder, MessageDecoder)
            decoder.expect(seg.method)  # a response to HEAD has no body
        elif from_client:
            return
        elif isinstance(seg, StatusLine):
            self._final = seg.status >= 200
            if self._final:
                self._responses += 1
                self._bodies[self._responses] = _utf8()
                self._length = None
            row.status.append([self._responses, seg.status])
        elif isinstance(seg, HeaderField) and self._final:
            name = seg.name.lower()
            if name == "content-type" and _is_event_stream(seg.value):
                self._bodies[self._responses] = None
            elif name == "content-length" and seg.value.isdigit():
                self._length = int(seg.value)
        elif isinstance(seg, HeadEnd) and self._final:
            if not seg.framing.startswith("of "):
                self._length = None  # chunked, or to the close: not by Content-Length
            if seg.framing.startswith("absent") or self._length == 0:
                self._done(row, self._responses)
        elif isinstance(seg, Nested):
            self._event(row, self._responses, seg)
        elif isinstance(seg, ChunkData):
            self._text(row, self._responses, seg.data)
        elif isinstance(seg, BodyData):
            self._text(row, self._responses, seg.data)
            if self._length is not None:
                self._length -= len(seg.data)
                if self._length <= 0:
                    self._done(row, self._responses)
        elif isinstance(seg, BodyEnd):
            self._done(row, self._responses)

    def _done(self, row: _Row, sid: int) -> None:
        self._end_body(row, sid)
        row.done.append(sid)

    def _h2(self, row: _Row, seg: Segment, from_client: bool) -> None:
        if isinstance(seg, SettingsFrame):
            if not seg.ack and seg.problem is None:
                self._apply_settings(seg, from_client)
        elif isinstance(seg, HeadersFrame) and seg.block is not None:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in seg.block.headers}
            sid = seg.stream_id
            if from_client:
                row.req.append([sid, headers.get(":method", ""), headers.get(":path", "")])
            elif ":status" in headers and headers[":status"].isdigit():
                row.status.append([sid, int(headers[":status"])])
                if int(headers[":status"]) >= 200 and len(self._bodies) < TEXT_STREAMS:
                    sse = _is_event_stream(headers.get("content-type", ""))
                    self._bodies[sid] = None if sse else _utf8()
            if not from_client and seg.flags & _END_STREAM:
                self._done(row, sid)
        elif isinstance(seg, DataFrame) and not from_client:
            self._last_data_sid = seg.stream_id
            self._text(row, seg.stream_id, seg.data)
            if seg.flags & _END_STREAM:
                self._done(row, seg.stream_id)
        elif isinstance(seg, Nested) and not from_client:
            # An SSE unit comes right after the DATA frame that completed it.
            self._event(row, self._last_data_sid, seg)
        elif isinstance(seg, Frame) and seg.type_name == "RST_STREAM":
            self._done(row, seg.stream_id)

    def _apply_settings(self, frame: SettingsFrame, from_client: bool) -> None:
        # One side's SETTINGS bound what the other side sends it.
        other = self._to_client if from_client else self._to_server
        decoder = other.decoder
        assert isinstance(decoder, H2Decoder)
        frames = decoder.frames
        for setting in frame.settings:
            if setting.id == SettingId.MAX_FRAME_SIZE:
                # Out of range: the frame carries it as a problem, the decoder keeps its size.
                with contextlib.suppress(ValueError):
                    frames.max_frame_size = max(frames.max_frame_size, setting.value)
            elif setting.id == SettingId.HEADER_TABLE_SIZE and frames.header_decoder:
                table = frames.header_decoder
                table.max_table_size = max(table.max_table_size, setting.value)

    # -- what the user sees ------------------------------------------------------------

    def _text(self, row: _Row, sid: int, data: bytes) -> None:
        decoder = self._bodies.get(sid)
        if decoder is not None and data:
            row.add_text(sid, decoder.decode(data))

    def _event(self, row: _Row, sid: int, seg: Nested) -> None:
        if sid in self._bodies and self._bodies[sid] is None and isinstance(seg.unit, Dispatch):
            event = seg.unit.event
            if event is not None:
                row.add_text(sid, event.data + "\n")

    def _end_body(self, row: _Row, sid: int) -> None:
        decoder = self._bodies.pop(sid, None)
        if decoder is not None:
            row.add_text(sid, decoder.decode(b"", final=True))


def _shape(
    index: int, record: Record, from_client: bool | None, row: _Row, *, hexed: bool
) -> dict[str, Any]:
    data = record.data[:PREVIEW_BYTES]
    return {
        "i": index,
        "t": round(record.t, 6),
        "kind": record.kind,
        "c": from_client,
        "size": len(record.data),
        "wire": data.hex(" ") if hexed else _escape(data),
        "cut": len(record.data) - len(data),
        **row.as_dict(),
    }


def _utf8() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _is_event_stream(content_type: str) -> bool:
    return content_type.split(";", maxsplit=1)[0].strip().lower() == "text/event-stream"
