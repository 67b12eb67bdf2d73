"""The sequence view: a two-column sequence diagram of a connection.

Client on the left, server on the right, one arrow per message unit (a head, a chunk, the
last chunk, trailers, a dispatched SSE event, an HTTP/2 frame, a WebSocket message or
frame, connection events), in time order.

An arrow's words come in three parts, and only the last is ever cut to fit the lane:

- what the unit is: the request's method and target, the response's status, an SSE
  event's type and id, a frame's type, stream and flags. Never cut: when it is longer than
  the lane it wraps onto the lines below the arrow;
- what the exchange is about, also never cut, on the arrow's line when it fits and on lines
  of their own below it when not: the header fields in :data:`KEPT_FIELDS` (and
  Cache-Control on an event stream), every trailer field, what a JSON-RPC message is
  (``tools/call id=2``, ``result id=2 (tools/call)``: :mod:`~lab.capture.views.jsonrpc`),
  what a control frame says (a setting, an error code, a window increment);
- the rest, which may be cut (``…``): how many other header fields there are, a quote of
  the data.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Final

from rich.console import Console
from rich.text import Text

from lab.capture.annotate import Annotated, Unparsed
from lab.capture.trace import Trace
from lab.capture.views.common import (
    _DIM,
    _OTHER_EVENT_STYLE,
    EVENT_STYLES,
    _ConnView,
    _Event,
    _heading,
    _ms,
    _plural,
    _preview,
    _segment_data,
    _views,
    escape_bytes,
    kind_style,
)
from lab.capture.views.jsonrpc import Methods, details, messages, summary
from lab.wire.chunked import ChunkData, ChunkSize, LastChunk, TrailerField
from lab.wire.h2frames import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    Preface,
    PushPromiseFrame,
)
from lab.wire.http1 import BodyData, HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested
from lab.wire.websocket_segments import WebSocketFrame

__all__ = ["KEPT_FIELDS", "MAX_LANE_WIDTH", "MIN_LANE_WIDTH", "render_sequence"]

# The sequence diagram's lane (between the two lifelines) stays within these widths, so
# arrows are long enough to read on a narrow terminal and short enough on a wide one.
MIN_LANE_WIDTH: Final = 40
MAX_LANE_WIDTH: Final = 100

# Header fields an arrow always shows, never folded into "+ N header fields": the ones
# that decide how a streaming exchange goes, which is what the lab's scenarios are about.
KEPT_FIELDS: Final = frozenset(
    {
        # How the body is delimited (RFC 9112 §6.1-§6.3), and whether the connection
        # stays open after it (RFC 9112 §9.6).
        "transfer-encoding",
        "content-length",
        "connection",
        # What the body is, and what the client will take (RFC 9110 §8.3, §12.5.1): JSON,
        # NDJSON or an event stream.
        "content-type",
        "accept",
        # Trailers: asked for, and announced (RFC 9110 §10.1.4, §6.6.2).
        "te",
        "trailer",
        # Resuming an event stream where it broke off (WHATWG HTML §9.2.4).
        "last-event-id",
        # MCP Streamable HTTP: the session, the protocol version, and the Origin a server
        # must check (MCP 2025-11-25, transports.mdx, "Session Management", "Protocol
        # Version Header", "Security Warning").
        "mcp-session-id",
        "mcp-protocol-version",
        "origin",
    }
)
# Kept on an event stream only: whether a cache may hold the stream back (RFC 9111 §5.2).
_KEPT_ON_EVENT_STREAMS: Final = frozenset({"cache-control"})
_EVENT_STREAM: Final = "text/event-stream"
# Between the parts of an arrow's words.
_SEP: Final = "  "


@dataclass(slots=True)
class _Unit:
    """One arrow of the sequence diagram."""

    t: float  # when its last byte was seen
    direction: bool | None  # from_client, or None for what belongs to neither (a reset)
    label: str  # what the unit is: never cut
    style: str
    keep: list[str] = field(default_factory=list)  # what it is about: never cut
    extra: str = ""  # the rest: cut to fit
    sep: str = _SEP  # between the label and what is kept, when they share a line
    jsonrpc: list[dict[str, object]] = field(default_factory=list)  # the messages it carries


def _kept(fields: list[tuple[str, str]]) -> tuple[list[str], int]:
    """The fields an arrow shows, as ``name: value``, and how many it folds."""
    types = [v for n, v in fields if n.lower() == "content-type"]
    event_stream = any(v.split(";")[0].strip().lower() == _EVENT_STREAM for v in types)
    shown = [
        f"{name}: {value}"
        for name, value in fields
        if name.lower() in KEPT_FIELDS or (event_stream and name.lower() in _KEPT_ON_EVENT_STREAMS)
    ]
    return shown, len(fields) - len(shown)


def _folded(count: int) -> str:
    return f"+ {count} {_plural(count, 'header field')}" if count else ""


def _h2_head(frame: HeadersFrame | ContinuationFrame | PushPromiseFrame) -> _Unit | None:
    """The words for a HEADERS (or the CONTINUATION ending its block, or a PUSH_PROMISE):
    the request's method and path or the response's status, then the kept fields."""
    block = frame.block
    if block is None:
        return None
    head = frame.note().partition(": ")[0]
    fields = [(escape_bytes(n), escape_bytes(v)) for n, v in block.headers]
    pseudo = {n: v for n, v in fields if n.startswith(":")}
    regular = [(n, v) for n, v in fields if not n.startswith(":")]
    words = _Unit(0.0, None, head, "")
    if ":status" in pseudo:
        words.label = f"{head}: status {pseudo[':status']}"
    elif ":method" in pseudo:
        words.label = f"{head}: {pseudo[':method']} {pseudo.get(':path', '')}".rstrip()
    else:
        # No pseudo-header fields: a trailer section (RFC 9113 §8.1), all of it kept.
        words.label = f"{head}: trailers"
        words.keep = [f"{n}: {v}" for n, v in regular]
        return words
    words.keep, folded = _kept(regular)
    words.extra = _folded(folded + len(pseudo.keys() - {":status", ":method", ":path"}))
    return words


_HEAD, _CHUNK, _TRAILERS = "head", "chunk", "trailers"
# What continues an open unit, and what closes it (its last segment).
_CONTINUES: Final = {_HEAD: "header-field", _CHUNK: "chunk-data", _TRAILERS: "trailer-field"}
_CLOSES: Final = {_HEAD: "head-end", _CHUNK: "chunk-crlf", _TRAILERS: "body-end"}


class _Units:
    """Folds a connection's segments into message units: a head (start line and header
    fields), a chunk (size line, data, CRLF), a trailer section, a piece of body, a
    frame."""

    def __init__(self) -> None:
        self.out: list[_Unit] = []
        self._open: _Unit | None = None  # a head, chunk or trailer section being built
        self._what = ""  # _HEAD, _CHUNK or _TRAILERS while a unit is open
        self._fields: list[tuple[str, str]] = []
        self._chunk = bytearray()
        self._pending: list[_Unit] = []  # nested events, shown after their carrier
        self._data_stream: int | None = None  # the stream of the last DATA frame (HTTP/2)

    def _flush(self) -> None:
        self.out.extend(self._pending)
        self._pending.clear()

    def _close(self) -> None:
        unit = self._open
        if unit is None:
            self._flush()
            return
        if self._what == _HEAD:
            unit.keep, folded = _kept(self._fields)
            unit.extra = _folded(folded)
        elif self._what == _CHUNK:
            _data_unit(unit, f"chunk {len(self._chunk)} B", bytes(self._chunk))
        elif self._what == _TRAILERS:
            unit.label = "trailers"
            unit.keep = [f"{name}: {value}" for name, value in self._fields]
        self.out.append(unit)
        self._open = None
        self._fields = []
        self._chunk.clear()
        self._flush()

    def _start(self, a: Annotated, what: str, label: str) -> None:
        self._close()
        self._open = _Unit(a.t, a.from_client, label, kind_style(a.segment.kind))
        self._what = what

    def _extend(self, a: Annotated) -> bool:
        """Add ``a`` to the open unit if it continues or ends it."""
        unit = self._open
        if unit is None or unit.direction != a.from_client:
            return False
        seg = a.segment
        if seg.kind == _CLOSES[self._what]:
            unit.t = a.t
            self._close()
            return True
        if seg.kind != _CONTINUES[self._what]:
            return False
        if isinstance(seg, HeaderField):
            self._fields.append((seg.name, seg.value))
        elif isinstance(seg, ChunkData):
            self._chunk += seg.data
        elif isinstance(seg, TrailerField):
            self._fields.append((escape_bytes(seg.name), escape_bytes(seg.value)))
        unit.t = a.t
        return True

    def _nested(self, a: Annotated, seg: Nested) -> None:
        # Only what the body's format *did* becomes an arrow: a dispatched SSE event, a
        # WebSocket frame (in the DATA frames of an RFC 8441 stream).
        if isinstance(seg.unit, WebSocketFrame):
            unit = _Unit(a.t, a.from_client, "", kind_style(seg.unit.kind))
            _ws_unit(unit, seg.unit)
            if self._data_stream is not None:
                unit.label += f" on stream {self._data_stream}"
            self._pending.append(unit)
            if self._open is None:
                self._flush()
            return
        event = getattr(seg.unit, "event", None)
        if event is None:
            return
        label = f"SSE {event.type}"
        if event.last_event_id:
            label += f" id={event.last_event_id}"
        if self._data_stream is not None:
            label += f" on stream {self._data_stream}"  # HTTP/2: the DATA frame's stream
        unit = _Unit(a.t, a.from_client, label, kind_style(seg.unit.kind))
        _data_unit(unit, label, event.data.encode())
        self._pending.append(unit)
        if self._open is None:
            self._flush()

    def segment(self, a: Annotated, stream: bytes) -> None:
        seg = a.segment
        if isinstance(seg, Nested):
            self._nested(a, seg)
            return
        if self._extend(a):
            return
        if isinstance(seg, RequestLine):
            self._start(a, _HEAD, f"{seg.method} {seg.target} {seg.version}")
        elif isinstance(seg, StatusLine):
            self._start(a, _HEAD, f"{seg.version} {seg.status} {seg.reason}".rstrip())
        elif isinstance(seg, ChunkSize):
            self._start(a, _CHUNK, "")
        elif isinstance(seg, TrailerField):
            self._start(a, _TRAILERS, "")
            self._extend(a)
        elif seg.kind in ("body-end", "chunk-crlf"):
            self._close()  # framing that ends nothing open: its unit already said it
        else:
            self._close()
            unit = _Unit(a.t, a.from_client, "", kind_style(seg.kind))
            if isinstance(seg, LastChunk):
                unit.label = "last chunk (0)"
            elif isinstance(seg, BodyData):
                _data_unit(unit, f"body {seg.nbytes} B", _segment_data(seg, stream))
            elif isinstance(seg, WebSocketFrame):
                _ws_unit(unit, seg)
            elif isinstance(seg, Frame):
                _frame_unit(unit, seg)
                if isinstance(seg, DataFrame):
                    self._data_stream = seg.stream_id
            elif isinstance(seg, Unparsed):
                # What was not parsed, and why: the why is kept.
                unit.label, _, why = seg.note().partition(": ")
                unit.keep = [why] if why else []
            elif isinstance(seg, Preface):
                unit.label, _, unit.extra = seg.note().partition("; ")
            else:
                unit.label = f"{seg.kind}: {seg.note()}"
            self.out.append(unit)

    def event(self, unit: _Unit) -> None:
        self._close()
        self.out.append(unit)

    def finish(self) -> list[_Unit]:
        self._close()
        return self.out


def _data_unit(unit: _Unit, label: str, data: bytes) -> None:
    """A unit carrying ``data``: the JSON-RPC messages in it, or a quote of it."""
    unit.label = label
    unit.jsonrpc = messages(data)
    # Of a JSON-RPC message, quote what it carries: its method and id are said already.
    quoted = details(unit.jsonrpc) if unit.jsonrpc else data
    if quoted:
        unit.extra = _preview(quoted)


def _ws_unit(unit: _Unit, frame: WebSocketFrame) -> None:
    """A WebSocket frame's words: the message it completes (``ws text "Hello"``, ``ws close
    1000``), or, for a fragment that completes none, the frame."""
    message = frame.message
    if message is None:
        unit.label = f"ws {frame.opcode_name} fragment {frame.fragment}"
        unit.extra = _preview(frame.data) if frame.data else ""
    elif message.type == "close":
        unit.label = "ws close" + (f" {message.code}" if message.code is not None else "")
        unit.keep = [f"reason {message.reason!r}"] if message.reason else []
    elif message.type == "binary":
        unit.label = f"ws binary {len(message.data)} B"
        unit.extra = _preview(frame.data)
    else:  # text, ping, pong: the data is the point, and short
        data = message.data.encode() if isinstance(message.data, str) else message.data
        unit.label = f"ws {message.type}" + (f" {_preview(data)}" if data else "")
    if frame.fragment > 1:
        unit.extra = f"{frame.fragment} fragments"


def _frame_unit(unit: _Unit, frame: Frame) -> None:
    if isinstance(frame, HeadersFrame | ContinuationFrame | PushPromiseFrame):
        words = _h2_head(frame)
        if words is not None:
            unit.label, unit.keep, unit.extra = words.label, words.keep, words.extra
            return
    head, _, detail = frame.note().partition(": ")
    if isinstance(frame, DataFrame):
        _data_unit(unit, f"{head}: {len(frame.data)} B", frame.data)
    else:
        # A control frame's detail (settings, an error code, an increment) is the point.
        unit.label, unit.sep = head, ": "
        unit.keep = [detail] if detail else []


def _sequence_units(view: _ConnView) -> list[_Unit]:
    units = _Units()
    for entry in view.entries():
        if isinstance(entry, _Event):
            rec = entry.record
            arrow, words = view.event_words(rec)
            direction = {"C→S": True, "S→C": False}.get(arrow)
            style = EVENT_STYLES.get(rec.kind, _OTHER_EVENT_STYLE)
            units.event(_Unit(rec.t, direction, words, style))
        else:
            units.segment(entry, view.streams[entry.from_client])
    return units.finish()


# -- laying the words out --------------------------------------------------------------


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width``, broken between words where it can be and
    inside a word only when one is longer than a line: nothing is cut off."""
    return textwrap.wrap(
        text, width, initial_indent=indent, subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    ) or [indent]  # fmt: skip


def _with_extra(line: str, extra: str, width: int) -> str:
    room = width - len(line) - len(_SEP)
    if not extra or room < 1:
        return line
    return line + _SEP + _fit(extra, room)


def _lines(unit: _Unit, keep: list[str], width: int) -> list[str]:
    """The arrow's words in lines of at most ``width``: the first goes on the arrow."""
    inline = unit.label + (unit.sep + _SEP.join(keep) if keep else "")
    if len(inline) <= width:
        return [_with_extra(inline, unit.extra, width)]
    lines = _wrap(unit.label, width)
    lines[-1] = _with_extra(lines[-1], unit.extra, width)
    for item in keep:
        lines.extend(_wrap(item, width, _SEP))
    return lines


def _arrow_lines(unit: _Unit, keep: list[str], lane: int) -> list[Text]:
    """The parts between the lifelines: ``label ───▶`` or ``◀─── label``, then the lines
    that did not fit on the arrow, on the sender's side."""
    if unit.direction is None:
        out: list[Text] = []
        for words in _lines(unit, keep, lane - 5):
            shown = f"✕ {words} ✕" if not out else words
            pad = lane - 1 - len(shown)
            out.append(Text(" " * (pad // 2) + shown + " " * (pad - pad // 2), style=unit.style))
        return out
    first, *rest = _lines(unit, keep, lane - 6)
    rule = "─" * (lane - len(first) - 4)
    text = Text()
    if unit.direction:
        text.append(" ")
        text.append(first, style=unit.style)
        text.append(f" {rule}▶", style=_DIM)
    else:
        text.append(f"◀{rule} ", style=_DIM)
        text.append(first, style=unit.style)
        text.append(" ")
    out = [text]
    for words in rest:
        if unit.direction:
            out.append(Text(" " + words.ljust(lane - 2), style=unit.style))
        else:
            out.append(Text(words.rjust(lane - 2) + " ", style=unit.style))
    return out


def render_sequence(trace: Trace, console: Console, *, clock: str = "trace") -> None:
    """Per connection, a sequence diagram: client on the left, server on the right, one
    arrow per message unit, in time order, with the time in ms on ``clock`` (one of
    :data:`~lab.capture.views.common.CLOCKS`)."""
    lane = max(MIN_LANE_WIDTH, min(console.width - 14, MAX_LANE_WIDTH))
    views = _views(trace, clock)
    every = [_sequence_units(view) for view in views]
    # A response names no method: learn every request's first, from every connection (a
    # resumed stream answers a request made on another).
    methods = Methods()
    for units in every:
        for unit in units:
            methods.saw(unit.direction, unit.jsonrpc)
    for view, units in zip(views, every, strict=True):
        console.print(_heading(view))
        head = Text(f"{'ms':>10}  ", style=_DIM)
        head.append("client".ljust(lane // 2 + 1) + "server".rjust(lane - lane // 2 + 1), "bold")
        console.print(head)
        for unit in units:
            keep = [summary(unit.jsonrpc, unit.direction, methods)] if unit.jsonrpc else []
            for i, part in enumerate(_arrow_lines(unit, keep + unit.keep, lane)):
                when = _ms(unit.t - view.t0) if i == 0 else ""
                line = Text(f"{when:>10}  ", style=_DIM)
                line.append("│", style="bold")
                line.append_text(part)
                line.append("│", style="bold")
                console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
        console.print()
