"""Views of a trace: how a person sees what crossed the socket.

Every view is computed from the trace's bytes through :func:`lab.capture.annotate`; none
of them paraphrases. The terminal views write to a :class:`rich.console.Console`:

==============  =========================================================================
``annotated``   one row per protocol unit: time, direction, byte range, the bytes
                (escaped, capped at :data:`MAX_SHOWN_BYTES`), and what they mean; the
                connection events (connect, EOF, close, reset) in between
``hex``         one hexdump per ``send``/``recv`` record, every byte coloured by the kind
                of unit it belongs to, so a record's boundaries and the protocol's can be
                compared
``timeline``    when body data arrived: time, gap since the previous piece, size, a bar
``sequence``    a two-column sequence diagram, one arrow per message unit (a head, a
                chunk, the last chunk, trailers, connection events)
==============  =========================================================================

:func:`plot_timeline` draws cumulative body bytes over time with matplotlib,
:func:`data_arrivals` gives the numbers behind it, and :func:`render_html` writes the
annotated view as a standalone page.

Colours: one per segment kind, in :data:`KIND_STYLES`; a codec that adds kinds adds its
colours there (a kind without one gets :data:`DEFAULT_KIND_STYLE`).
"""

from __future__ import annotations

import io
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.capture.annotate import Annotated, AnnotatedConnection, Unparsed, annotate_connection
from lab.capture.trace import (
    CLOSE,
    CONNECT,
    EOF,
    RECV,
    RESET,
    SEND,
    SHUTDOWN,
    ConnectionTrace,
    Record,
    Trace,
)
from lab.wire.chunked import ChunkData, ChunkSize, LastChunk, TrailerField
from lab.wire.h2frames import DataFrame
from lab.wire.http1 import BodyData, HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested, Segment

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DATA_KINDS",
    "DEFAULT_KIND_STYLE",
    "EVENT_STYLES",
    "HTML_WIDTH",
    "KIND_STYLES",
    "MAX_HEX_BYTES_PER_RECORD",
    "MAX_LANE_WIDTH",
    "MAX_SHOWN_BYTES",
    "MIN_LANE_WIDTH",
    "PREVIEW_BYTES",
    "TIMELINE_BAR_WIDTH",
    "VIEWS",
    "data_arrivals",
    "escape_bytes",
    "kind_style",
    "plot_timeline",
    "render",
    "render_annotated",
    "render_hex",
    "render_html",
    "render_sequence",
    "render_timeline",
]

VIEWS: Final = ("annotated", "hex", "timeline", "sequence")

# -- limits ------------------------------------------------------------------------------

# Bytes shown per row of the annotated view. Enough for any start line or header field of
# the lab's own traffic and a dozen tokens of body; a 1 MB body then costs one short row
# per read instead of a screenful, and the row says how many bytes it left out.
MAX_SHOWN_BYTES: Final = 96
# Bytes of one record the hex view dumps by default: 256 lines. A 64 KiB read in full is
# 4,096 lines, which no one reads in a terminal; render_hex(max_bytes=None) shows it all.
MAX_HEX_BYTES_PER_RECORD: Final = 4096
# Bytes of data quoted in a sequence-diagram arrow or a timeline row: a token or two.
PREVIEW_BYTES: Final = 24
# Width of the timeline's bar column, in cells.
TIMELINE_BAR_WIDTH: Final = 40
# The sequence diagram's lane (between the two lifelines) stays within these widths, so
# arrows are long enough to read on a narrow terminal and short enough on a wide one.
MIN_LANE_WIDTH: Final = 40
MAX_LANE_WIDTH: Final = 100

# -- styles ------------------------------------------------------------------------------

# One style per segment kind (rich style strings). Every colour reads on a light and on a
# dark background (no white, no pale yellow): notebooks and HTML pages are usually light,
# terminals usually dark. Payload bold, framing plainer, the CRLFs between chunks grey.
KIND_STYLES: Final[dict[str, str]] = {
    # HTTP/1.1 heads and bodies (lab.wire.http1)
    "request-line": "bold dodger_blue1",
    "status-line": "bold medium_purple",
    "header-field": "dark_cyan",
    "head-end": "steel_blue",
    "body-data": "green3",
    # chunked coding (lab.wire.chunked)
    "chunk-size": "bold dark_orange",
    "chunk-data": "bold chartreuse3",
    "chunk-crlf": "grey58",
    "last-chunk": "bold deep_pink3",
    "trailer-field": "orchid",
    "body-end": "magenta",
    "empty-line": "grey42",
    # Server-Sent Events inside a body (lab.wire.sse), shown as a nested layer
    "sse-bom": "light_slate_grey",
    "sse-comment": "italic grey66",
    "sse-field": "bold dark_goldenrod",
    "sse-dispatch": "bold deep_sky_blue3",
    "sse-incomplete": "bold red3",
    # HTTP/2 (lab.wire.h2frames, lab.wire.h2messages)
    "h2-preface": "bold slate_blue1",
    "h2-frame": "bold dark_sea_green4",
    "hpack-field": "cadet_blue",
    # bytes no decoder took (lab.capture.annotate)
    "unparsed": "bold red",
}
# For kinds added by later codecs before they get a colour of their own.
DEFAULT_KIND_STYLE: Final = "italic gold3"
# Connection events (records without data).
EVENT_STYLES: Final[dict[str, str]] = {
    CONNECT: "italic grey50",
    EOF: "italic dark_orange3",
    SHUTDOWN: "italic dark_orange3",
    CLOSE: "bold italic dark_orange3",
    RESET: "bold red",
}
_OTHER_EVENT_STYLE: Final = "italic"
_DIM: Final = "grey50"

# Kinds whose segments carry body data. Codecs that add data-carrying kinds (SSE event
# data, HTTP/2 DATA frames) add them here, with a ``data: bytes`` field on the segment.
DATA_KINDS: Final = frozenset({"chunk-data", "body-data"})


def kind_style(kind: str) -> str:
    return KIND_STYLES.get(kind, DEFAULT_KIND_STYLE)


# -- bytes as text -----------------------------------------------------------------------


def _escape_table() -> tuple[str, ...]:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\"}
    return tuple(named.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in range(256))


_ESCAPES: Final = _escape_table()
# The hexdump's ASCII column: printable ASCII as is, everything else a dot.
_ASCII: Final = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in range(256))


def escape_bytes(data: bytes) -> str:
    """``data`` as one line of text: printable ASCII as is, CR, LF, TAB and backslash as
    ``\\r``, ``\\n``, ``\\t``, ``\\\\``, every other byte as ``\\xNN``."""
    return "".join(map(_ESCAPES.__getitem__, data))


def _shown(stream: bytes, start: int, end: int, limit: int, style: str) -> Text:
    """Bytes ``stream[start:end]`` escaped, at most ``limit`` of them, saying what is left."""
    stop = min(end, start + limit)
    text = Text(escape_bytes(stream[start:stop]), style=style)
    if end > stop:
        text.append(f" … (+{end - stop} bytes)", style=_DIM)
    return text


def _preview(data: bytes) -> str:
    shown = escape_bytes(data[:PREVIEW_BYTES])
    return f'"{shown}…"' if len(data) > PREVIEW_BYTES else f'"{shown}"'


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _arrow(from_client: bool) -> str:
    return "C→S" if from_client else "S→C"


# -- the annotated connection, with what every view needs --------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    """A record without data (connect, EOF, shutdown, close, reset)."""

    record: Record


@dataclass(slots=True)
class _ConnView:
    ac: AnnotatedConnection
    streams: dict[bool, bytes]  # from_client -> every byte of that direction
    t0: float  # time of the connection's first record
    not_annotated: str  # why the bytes are shown raw, or "" if they were annotated

    @property
    def conn(self) -> ConnectionTrace:
        return self.ac.conn

    def entries(self) -> Iterator[Annotated | _Event]:
        """Segments and connection events in the order they happened.

        An event comes before the segments its record completed (an EOF, then the
        "message cut short" it revealed).
        """
        items = self.ac.items
        j = 0
        for i, rec in enumerate(self.conn.records):
            if rec.kind not in (SEND, RECV):
                yield _Event(rec)
            while j < len(items) and items[j].record <= i:
                yield items[j]
                j += 1
        yield from items[j:]

    def event_words(self, rec: Record) -> tuple[str, str]:
        """(direction, what happened) for a record without data, from the tapped side."""
        me = self.conn.side
        peer = "server" if me == "client" else "client"
        me_arrow = _arrow(me == "client")
        peer_arrow = _arrow(peer == "client")
        if rec.kind == CONNECT:
            return "C→S", "connect: TCP connection established"
        if rec.kind == EOF:
            return peer_arrow, f"EOF: the {peer} finished sending (FIN)"
        if rec.kind == SHUTDOWN:
            return me_arrow, f"shutdown: the {me} finished sending (FIN), still reading"
        if rec.kind == CLOSE:
            return me_arrow, f"close: the {me} closed the connection"
        if rec.kind == RESET:
            return "C×S", f"reset: the connection broke under the {me}"
        return "   ", rec.kind


def _raw_connection(conn: ConnectionTrace, index: int, why: str) -> AnnotatedConnection:
    """Every data record as one Unparsed segment: the bytes, without meaning."""
    items = []
    offsets = {True: 0, False: 0}
    for i, rec in enumerate(conn.records):
        if rec.kind in (SEND, RECV) and rec.data:
            from_client = conn.is_from_client(rec)
            start = offsets[from_client]
            offsets[from_client] = start + len(rec.data)
            seg = Unparsed(start, start + len(rec.data), why)
            items.append(Annotated(from_client, seg, i, rec.t))
    return AnnotatedConnection(index, conn, items)


def _views(trace: Trace) -> list[_ConnView]:
    out = []
    for index, conn in enumerate(trace.connections):
        try:
            ac = annotate_connection(conn, index)
            why = ""
        except ValueError as exc:
            # No annotator for this protocol yet: show the bytes anyway, and say why.
            why = f"not annotated: {exc}"
            ac = _raw_connection(conn, index, why)
        streams = {True: conn.client_to_server(), False: conn.server_to_client()}
        t0 = conn.records[0].t if conn.records else 0.0
        out.append(_ConnView(ac, streams, t0, why))
    return out


def _heading(view: _ConnView) -> Text:
    conn = view.conn
    text = Text()
    text.append(f"connection {view.ac.index}", style="bold")
    text.append(f"  client {_addr(conn.client)} → server {_addr(conn.server)}")
    text.append(f"  {conn.protocol}", style="bold")
    text.append(f"  tapped at the {conn.side}", style="italic")
    text.append(
        f"  {len(view.streams[True])} B C→S · {len(view.streams[False])} B S→C"
        f" · {len(conn.records)} records",
        style=_DIM,
    )
    if view.not_annotated:
        text.append(f"\n{view.not_annotated}", style=kind_style("unparsed"))
    return text


def _legend(kinds: Sequence[str]) -> Text:
    text = Text("kinds: ", style=_DIM)
    for i, kind in enumerate(kinds):
        if i:
            text.append("  ")
        text.append("■ " + kind, style=kind_style(kind))
    return text


# -- the annotated view ------------------------------------------------------------------


def render_annotated(trace: Trace, console: Console) -> None:
    """Per connection, one row per segment and per connection event, in order."""
    for view in _views(trace):
        console.print(_heading(view))
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("ms", justify="right", no_wrap=True, style=_DIM)
        table.add_column("dir", no_wrap=True)
        table.add_column("[start, end)", justify="right", no_wrap=True, style=_DIM)
        table.add_column("on the wire", overflow="fold")
        table.add_column("meaning", overflow="fold")
        kinds: dict[str, None] = {}
        previous: bool | None = None
        for entry in view.entries():
            if isinstance(entry, _Event):
                rec = entry.record
                arrow, words = view.event_words(rec)
                style = EVENT_STYLES.get(rec.kind, _OTHER_EVENT_STYLE)
                table.add_row(_ms(rec.t - view.t0), arrow, "", "", Text(words, style=style))
                continue
            seg = entry.segment
            if previous is not None and previous != entry.from_client:
                # A blank line where the direction changes: requests and responses apart.
                table.add_row()
            previous = entry.from_client
            if isinstance(seg, Nested):
                # A unit of the body's own format (an SSE line), under the framing that
                # carried it: its own bytes, placed at its wire range.
                style = kind_style(seg.unit.kind)
                kinds[seg.unit.kind] = None
                shown = Text("↳ ", style=_DIM)
                shown.append_text(_shown(seg.data, 0, len(seg.data), MAX_SHOWN_BYTES, style))
                table.add_row(
                    _ms(entry.t - view.t0), "", f"[{seg.start}, {seg.end})", shown,
                    Text(seg.note(), style=style if seg.unit.kind == "sse-dispatch" else ""),
                )  # fmt: skip
                continue
            style = kind_style(seg.kind)
            kinds[seg.kind] = None
            shown = _shown(
                view.streams[entry.from_client], seg.start, seg.end, MAX_SHOWN_BYTES, style
            )
            note = Text(seg.note(), style=style if isinstance(seg, Unparsed) else "")
            table.add_row(
                _ms(entry.t - view.t0),
                _arrow(entry.from_client),
                f"[{seg.start}, {seg.end})",
                shown,
                note,
            )
        console.print(table)
        if kinds:
            console.print(_legend(list(kinds)))
        console.print()


# -- the hex view ------------------------------------------------------------------------

_Span = tuple[int, int, str]  # (start, end, kind) of a segment in its direction's stream


class _KindMap:
    """Which kind of segment each byte of one direction belongs to."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.spans: list[_Span] = sorted(
            (s.start, s.end, s.kind) for s in segments if s.end > s.start
        )
        self.starts = [s for s, _, _ in self.spans]

    def runs(self, a: int, b: int) -> list[tuple[int, int, str | None]]:
        """[a, b) cut into runs of one kind (None: bytes no segment covers)."""
        out: list[tuple[int, int, str | None]] = []
        spans = self.spans
        k = max(bisect_right(self.starts, a) - 1, 0)
        pos = a
        while pos < b:
            while k < len(spans) and spans[k][1] <= pos:
                k += 1
            if k == len(spans) or spans[k][0] >= b:
                out.append((pos, b, None))
                break
            start, end, kind = spans[k]
            if start > pos:
                out.append((pos, start, None))
                pos = start
                continue
            stop = min(end, b)
            out.append((pos, stop, kind))
            pos = stop
        return out


# 16 bytes as "xx" with a space between two and an extra one after the eighth.
_HEX_WIDTH: Final = 16 * 3


def _hex_line(data: bytes, offset: int, kmap: _KindMap, used: dict[str, None]) -> Text:
    """One hexdump line: ``data`` (at most 16 bytes) starts at stream offset ``offset``;
    the kinds it shows are added to ``used``."""
    line = Text(f"{offset:08x}  ", style=_DIM)
    hexes = Text()
    ascii_ = Text()
    runs: list[tuple[int, int, str | None]] = []
    for start, end, kind in kmap.runs(offset, offset + len(data)):
        half = offset + 8
        if start < half < end:
            runs += [(start, half, kind), (half, end, kind)]
        else:
            runs.append((start, end, kind))
    for start, end, kind in runs:
        chunk = data[start - offset : end - offset]
        style = kind_style(kind) if kind is not None else ""
        if kind is not None:
            used[kind] = None
        if start > offset:
            hexes.append("  " if start - offset == 8 else " ")
        hexes.append(chunk.hex(" "), style=style)
        ascii_.append("".join(map(_ASCII.__getitem__, chunk)), style=style)
    hexes.pad_right(_HEX_WIDTH - len(hexes))
    line.append_text(hexes)
    line.append("  |", style=_DIM)
    line.append_text(ascii_)
    line.append("|", style=_DIM)
    return line


def render_hex(
    trace: Trace, console: Console, *, max_bytes: int | None = MAX_HEX_BYTES_PER_RECORD
) -> None:
    """Per record: its time and size, then a hexdump coloured by segment kind.

    Offsets are within the record's direction stream (the same numbers as the annotated
    view's byte ranges). At most ``max_bytes`` of each record are dumped (None: all).
    """
    for view in _views(trace):
        console.print(_heading(view))
        kmaps = {d: _KindMap(view.ac.segments(from_client=d)) for d in (True, False)}
        offsets = {True: 0, False: 0}
        used: dict[str, None] = {}
        for rec in view.conn.records:
            t = f"+{_ms(rec.t - view.t0)} ms"
            if rec.kind not in (SEND, RECV):
                arrow, words = view.event_words(rec)
                style = EVENT_STYLES.get(rec.kind, _OTHER_EVENT_STYLE)
                console.print(Text.assemble((t, "bold"), "  ", arrow, "  ", (words, style)))
                continue
            from_client = view.conn.is_from_client(rec)
            base = offsets[from_client]
            offsets[from_client] = base + len(rec.data)
            console.print(
                Text.assemble(
                    (t, "bold"),
                    f"  {rec.kind} {len(rec.data)} bytes  {_arrow(from_client)}",
                    (f"  [{base}, {base + len(rec.data)})", _DIM),
                )
            )
            shown = len(rec.data) if max_bytes is None else min(len(rec.data), max_bytes)
            kmap = kmaps[from_client]
            lines = [
                _hex_line(rec.data[k : min(k + 16, shown)], base + k, kmap, used)
                for k in range(0, shown, 16)
            ]
            if lines:
                console.print(Text("\n").join(lines))
            if shown < len(rec.data):
                console.print(
                    Text(f"… (+{len(rec.data) - shown} bytes of this record)", style=_DIM)
                )
        if used:
            console.print(_legend(list(used)))
        console.print()


# -- data arrivals and the timeline ------------------------------------------------------


def _segment_data(seg: Segment, stream: bytes) -> bytes:
    data = getattr(seg, "data", None)
    return data if isinstance(data, bytes) else stream[seg.start : seg.end]


def _carries_data(seg: Segment) -> bool:
    """Body data: chunk data or a slice of a body in HTTP/1.1, a non-empty DATA frame in
    HTTP/2 (an empty one only carries END_STREAM)."""
    if isinstance(seg, DataFrame):
        return bool(seg.data)
    return seg.kind in DATA_KINDS


def _arrivals(view: _ConnView) -> list[tuple[float, bytes]]:
    stream = view.streams[False]
    return [
        (a.t, _segment_data(a.segment, stream))
        for a in view.ac.items
        if not a.from_client and _carries_data(a.segment)
    ]


def data_arrivals(trace: Trace) -> list[tuple[int, float, int, bytes]]:
    """(connection index, t, size, data) for every data-carrying segment the server sent.

    ``t`` is in seconds on the trace's time axis (since its first connect): when the
    record that completed the segment was made, so on a client-side trace, when the data
    arrived. Connections in trace order, segments in stream order.
    """
    return [
        (view.ac.index, t, len(data), data) for view in _views(trace) for t, data in _arrivals(view)
    ]


def _bar(position: float) -> str:
    """A marker at ``position`` (0..1) of the bar column."""
    cells = round(position * (TIMELINE_BAR_WIDTH - 1))
    return "·" * cells + "█"


def render_timeline(trace: Trace, console: Console) -> None:
    """Per connection, one row per piece of body data the server sent, then a summary.

    Times are ms since the connection's first record. The bar puts each piece at its
    place between the first piece and the last, so the spacing of the pieces shows even
    when the wait for the first one was much longer.
    """
    for view in _views(trace):
        console.print(_heading(view))
        arrivals = _arrivals(view)
        if not arrivals:
            console.print(Text("no body data from the server", style=_DIM))
            console.print()
            continue
        times = [t - view.t0 for t, _ in arrivals]
        # Every piece at one time (one read, or a normalised trace): bars at the start.
        span = (times[-1] - times[0]) or 1.0
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("ms", justify="right", no_wrap=True)
        table.add_column("gap ms", justify="right", no_wrap=True, style=_DIM)
        table.add_column("bytes", justify="right", no_wrap=True)
        table.add_column(f"when ({_ms(times[0])} … {_ms(times[-1])} ms)", no_wrap=True)
        table.add_column("data", no_wrap=True, overflow="ellipsis")
        previous: float | None = None
        for rel, (_, data) in zip(times, arrivals, strict=True):
            gap = "" if previous is None else _ms(rel - previous)
            previous = rel
            table.add_row(
                _ms(rel),
                gap,
                str(len(data)),
                Text(_bar((rel - times[0]) / span), style=kind_style("chunk-data")),
                Text(_preview(data), style=_DIM),
            )
        console.print(table)
        total = sum(len(data) for _, data in arrivals)
        gaps = [b - a for a, b in pairwise(times)]
        mean = f"{_ms(sum(gaps) / len(gaps))} ms" if gaps else "n/a (one piece)"
        console.print(
            Text(
                f"{len(arrivals)} {_plural(len(arrivals), 'piece')}, {total} bytes;"
                f" first byte at {_ms(times[0])} ms, last at {_ms(times[-1])} ms; mean gap {mean}",
                style="bold",
            )
        )
        console.print()


# -- the sequence diagram ----------------------------------------------------------------


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


# -- dispatch and HTML -------------------------------------------------------------------


def render(trace: Trace, view: str = "annotated", console: Console | None = None) -> None:
    """Show ``trace`` in one of :data:`VIEWS` on ``console`` (default: standard output)."""
    renderers = {
        "annotated": render_annotated,
        "hex": render_hex,
        "timeline": render_timeline,
        "sequence": render_sequence,
    }
    try:
        renderer = renderers[view]
    except KeyError:
        raise ValueError(f"unknown view {view!r}: one of {', '.join(VIEWS)}") from None
    if console is None:
        console = Console(highlight=False)
    if trace.description or trace.name:
        title = Text(f"trace {trace.name}", style="bold underline")
        if trace.description:
            title.append(f"  {trace.description}", style="italic")
        console.print(title)
    if not trace.connections:
        console.print(Text("no connections in this trace", style=_DIM))
    renderer(trace, console)


# Width of the HTML page's text, in characters: wide enough that rows rarely wrap.
HTML_WIDTH: Final = 160


def render_html(trace: Trace) -> str:
    """The annotated view as a standalone HTML page, in the terminal's colours."""
    console = Console(
        record=True,
        file=io.StringIO(),
        width=HTML_WIDTH,
        color_system="truecolor",
        force_terminal=True,
        highlight=False,
    )
    render(trace, "annotated", console)
    return console.export_html(inline_styles=True, clear=True)


# -- the plot ----------------------------------------------------------------------------


def plot_timeline(
    trace_or_traces: Trace | Sequence[Trace],
    ax: Axes | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Cumulative body bytes the server sent, over time, one step line per connection.

    Each line starts at 0 when its connection's first record was made and ends when its
    last was; a marker sits at every data segment's arrival. Pass several traces to
    compare them (fixed vs chunked, say) on one set of axes. Draws on ``ax`` if given,
    otherwise on a new figure (not registered with pyplot, so nothing pops up and nothing
    piles up); saves a PNG to ``path`` if given. Returns the figure.
    """
    # Imported here: matplotlib takes longer to import than every other view needs to run.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    traces = [trace_or_traces] if isinstance(trace_or_traces, Trace) else list(trace_or_traces)
    if ax is None:
        fig = Figure(figsize=(8, 4.5), layout="constrained")
        FigureCanvasAgg(fig)  # draws and saves without pyplot or an interactive backend
        ax = fig.add_subplot()
    else:
        root = ax.get_figure(root=True)
        assert root is not None, "the axes belong to no figure"
        fig = root
    for trace in traces:
        for view in _views(trace):
            arrivals = _arrivals(view)
            xs = [0.0]
            ys = [0]
            for t, data in arrivals:
                xs.append((t - view.t0) * 1000)
                ys.append(ys[-1] + len(data))
            end = (view.conn.records[-1].t - view.t0) * 1000 if view.conn.records else 0.0
            xs.append(max(end, xs[-1]))
            ys.append(ys[-1])
            label = trace.name if len(trace.connections) == 1 else f"{trace.name} #{view.ac.index}"
            ax.step(
                xs,
                ys,
                where="post",
                marker="o",
                markersize=3,
                markevery=list(range(1, len(xs) - 1)),
                label=f"{label} ({len(arrivals)} {_plural(len(arrivals), 'piece')}, {ys[-1]} B)",
            )
    ax.set_title("Body bytes from the server over time")
    ax.set_xlabel("time since connect (ms)")
    ax.set_ylabel("body bytes (cumulative)")
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="best")
    if path is not None:
        fig.savefig(path, format="png")
    return fig
