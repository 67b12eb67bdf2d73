"""The sequence view: a two-column sequence diagram of a connection.

Client on the left, server on the right, one arrow per message unit (a head, a chunk, the
last chunk, trailers, a dispatched SSE event, connection events), in time order.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from lab.wire.chunked import ChunkData, ChunkSize, LastChunk, TrailerField
from lab.wire.http1 import BodyData, HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested

__all__ = ["MAX_LANE_WIDTH", "MIN_LANE_WIDTH", "render_sequence"]

# The sequence diagram's lane (between the two lifelines) stays within these widths, so
# arrows are long enough to read on a narrow terminal and short enough on a wide one.
MIN_LANE_WIDTH: Final = 40
MAX_LANE_WIDTH: Final = 100


@dataclass(slots=True)
class _Unit:
    """One arrow of the sequence diagram."""

    t: float  # when its last byte was seen
    direction: bool | None  # from_client, or None for what belongs to neither (a reset)
    label: str
    style: str


_HEAD, _CHUNK, _TRAILERS = "head", "chunk", "trailers"
# What continues an open unit, and what closes it (its last segment).
_CONTINUES: Final = {_HEAD: "header-field", _CHUNK: "chunk-data", _TRAILERS: "trailer-field"}
_CLOSES: Final = {_HEAD: "head-end", _CHUNK: "chunk-crlf", _TRAILERS: "body-end"}


class _Units:
    """Folds a connection's segments into message units: a head (start line and header
    fields), a chunk (size line, data, CRLF), a trailer section, a piece of body."""

    def __init__(self) -> None:
        self.out: list[_Unit] = []
        self._open: _Unit | None = None  # a head, chunk or trailer section being built
        self._what = ""  # _HEAD, _CHUNK or _TRAILERS while a unit is open
        self._fields = 0
        self._chunk = bytearray()
        self._trailers: list[str] = []
        self._pending: list[_Unit] = []  # nested events, shown after their carrier

    def _flush(self) -> None:
        self.out.extend(self._pending)
        self._pending.clear()

    def _close(self) -> None:
        unit = self._open
        if unit is None:
            self._flush()
            return
        if self._what == _HEAD and self._fields:
            unit.label += f"  + {self._fields} {_plural(self._fields, 'header field')}"
        elif self._what == _CHUNK:
            unit.label = f"chunk {len(self._chunk)} B {_preview(bytes(self._chunk))}"
        elif self._what == _TRAILERS:
            unit.label = "trailers: " + ", ".join(self._trailers)
        self.out.append(unit)
        self._open = None
        self._fields = 0
        self._chunk.clear()
        self._trailers.clear()
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
            self._fields += 1
        elif isinstance(seg, ChunkData):
            self._chunk += seg.data
        elif isinstance(seg, TrailerField):
            self._trailers.append(f"{escape_bytes(seg.name)}: {escape_bytes(seg.value)}")
        unit.t = a.t
        return True

    def segment(self, a: Annotated, stream: bytes) -> None:
        seg = a.segment
        if isinstance(seg, Nested):
            # Only what the body's format *did* becomes an arrow: a dispatched SSE event.
            event = getattr(seg.unit, "event", None)
            if event is not None:
                label = f"SSE {event.type}"
                if event.last_event_id:
                    label += f" id={event.last_event_id}"
                label += f" {_preview(event.data.encode())}"
                self._pending.append(_Unit(a.t, a.from_client, label, kind_style(seg.unit.kind)))
                if self._open is None:
                    self._flush()
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
            if isinstance(seg, LastChunk):
                label = "last chunk (0)"
            elif isinstance(seg, BodyData):
                label = f"body {seg.nbytes} B {_preview(_segment_data(seg, stream))}"
            elif isinstance(seg, Unparsed) or seg.kind in ("h2-frame", "h2-preface"):
                label = seg.note()
            else:
                label = f"{seg.kind}: {seg.note()}"
            self.out.append(_Unit(a.t, a.from_client, label, kind_style(seg.kind)))

    def event(self, unit: _Unit) -> None:
        self._close()
        self.out.append(unit)

    def finish(self) -> list[_Unit]:
        self._close()
        return self.out


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


def _fit(label: str, width: int) -> str:
    return label if len(label) <= width else label[: max(width - 1, 0)] + "…"


def _arrow_line(unit: _Unit, lane: int) -> Text:
    """The part between the lifelines: ``label ───▶`` or ``◀─── label``."""
    if unit.direction is None:
        label = _fit(f"✕ {unit.label} ✕", lane)
        pad = lane - len(label)
        return Text(" " * (pad // 2) + label + " " * (pad - pad // 2), style=unit.style)
    label = _fit(unit.label, lane - 6)
    rule = "─" * (lane - len(label) - 4)
    text = Text()
    if unit.direction:
        text.append(" ")
        text.append(label, style=unit.style)
        text.append(f" {rule}▶", style=_DIM)
    else:
        text.append(f"◀{rule} ", style=_DIM)
        text.append(label, style=unit.style)
        text.append(" ")
    return text


def render_sequence(trace: Trace, console: Console) -> None:
    """Per connection, a sequence diagram: client on the left, server on the right, one
    arrow per message unit, in time order, with the time in ms since the connection's
    first record."""
    lane = max(MIN_LANE_WIDTH, min(console.width - 14, MAX_LANE_WIDTH))
    for view in _views(trace):
        console.print(_heading(view))
        head = Text(f"{'ms':>10}  ", style=_DIM)
        head.append("client".ljust(lane // 2 + 1) + "server".rjust(lane - lane // 2 + 1), "bold")
        console.print(head)
        for unit in _sequence_units(view):
            line = Text(f"{_ms(unit.t - view.t0):>10}  ", style=_DIM)
            line.append("│", style="bold")
            line.append_text(_arrow_line(unit, lane))
            line.append("│", style="bold")
            console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
        console.print()
