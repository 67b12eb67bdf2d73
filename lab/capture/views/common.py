"""What every view of a trace shares: the styles, bytes as text, and the connection view.

Every view is computed from the trace's bytes through :func:`lab.capture.annotate`; this
module turns a trace into one :class:`_ConnView` per connection (its annotated segments,
both directions' bytes, its connection events in order) and holds the helpers the views
have in common: the heading of a connection, the legend of kinds, times in ms, bytes as
text or hex.

Bytes as text or hex: a text protocol's units (an HTTP/1.1 head, a chunk-size line, an SSE
line) are escaped text, a binary protocol's (an HTTP/2 frame or field, an HPACK
representation: :attr:`lab.wire.segment.Segment.binary`) are hex, and content (a body, the
data of a DATA frame) is text when it is text and hex when it is not (:func:`is_text`).

Clocks: every record of a trace is timed on one monotonic axis. By default the views show
times on it, counted from the trace's first record (``clock="trace"``), so a reconnect's
delay and connections that overlap show; ``clock="connection"`` counts each connection
from its own first record instead. Either way a connection's heading says when it started
on the trace's clock.

Colours: one per segment kind, in :data:`KIND_STYLES`; a codec that adds kinds adds its
colours there (a kind without one gets :data:`DEFAULT_KIND_STYLE`).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

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
from lab.wire.segment import Segment

__all__ = [
    "CLOCKS",
    "DATA_KINDS",
    "DEFAULT_KIND_STYLE",
    "EVENT_STYLES",
    "KIND_STYLES",
    "PREVIEW_BYTES",
    "escape_bytes",
    "hex_bytes",
    "is_text",
    "kind_style",
]

# -- limits ------------------------------------------------------------------------------

# Bytes of data quoted in a sequence-diagram arrow or a timeline row: a token or two.
PREVIEW_BYTES: Final = 24

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
    # the fields of an HTTP/2 frame (lab.wire.h2fields): the header's four, then the payload
    "h2-length": "bold dark_khaki",
    "h2-type": "bold sea_green3",
    "h2-flags": "bold light_salmon3",
    "h2-stream-id": "bold slate_blue3",
    "h2-field": "medium_orchid",
    "h2-padding": "grey62",
    "h2-fragment": "steel_blue3",
    "h2-data": "bold spring_green3",
    "h2-debug-data": "indian_red",
    # WebSocket (lab.wire.websocket): a frame, then its fields (lab.wire.websocket_fields)
    "ws-frame": "bold orange3",
    "ws-fin": "bold hot_pink3",
    "ws-rsv": "grey46",
    "ws-opcode": "bold dark_violet",
    "ws-mask": "bold royal_blue1",
    "ws-length": "bold yellow4",
    "ws-masking-key": "turquoise4",
    "ws-payload": "bold dark_olive_green3",
    "ws-close-code": "bold medium_violet_red",
    "ws-close-reason": "rosy_brown",
    # the bytes of another protocol after a 101 (lab.wire.http1)
    "upgraded-data": "tan",
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
# Kinds whose bytes are content rather than protocol: shown as text if they are text, as
# hex if not (the data of a DATA frame, GOAWAY debug data, bytes no decoder took).
_CONTENT_KINDS: Final = DATA_KINDS | {"h2-data", "h2-debug-data", "unparsed"}

# The clocks a view can show times on (see the module docstring).
CLOCKS: Final = ("trace", "connection")


def kind_style(kind: str) -> str:
    return KIND_STYLES.get(kind, DEFAULT_KIND_STYLE)


# -- bytes as text -----------------------------------------------------------------------


def _escape_table() -> tuple[str, ...]:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\"}
    return tuple(named.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in range(256))


_ESCAPES: Final = _escape_table()


def escape_bytes(data: bytes) -> str:
    """``data`` as one line of text: printable ASCII as is, CR, LF, TAB and backslash as
    ``\\r``, ``\\n``, ``\\t``, ``\\\\``, every other byte as ``\\xNN``."""
    return "".join(map(_ESCAPES.__getitem__, data))


def hex_bytes(data: bytes) -> str:
    """``data`` as hex octets separated by spaces: ``00 00 2a 04``."""
    return data.hex(" ")


# C0 controls and DEL, but TAB, LF and CR, which text has.
_CONTROL: Final = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D} | {0x7F}
# A UTF-8 character is at most 4 octets, so a read boundary leaves at most 3 of one behind.
_MAX_CUT_UTF8: Final = 3


def is_text(data: bytes) -> bool:
    """Whether ``data`` reads as text: UTF-8 without control characters other than TAB,
    CR and LF. A character cut in two by a read boundary, at either end, still counts."""
    if not _CONTROL.isdisjoint(data):
        return False
    head = 0
    while head < min(len(data), _MAX_CUT_UTF8) and 0x80 <= data[head] < 0xC0:
        head += 1  # continuation octets of a character that began before this piece
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[head:], final=False)
    except UnicodeDecodeError:
        return False
    return True


def _as_hex(seg: Segment, data: bytes) -> bool:
    """Whether ``seg``'s bytes (``data``) are shown as hex rather than escaped text."""
    if seg.binary:
        return True
    return seg.kind in _CONTENT_KINDS and not is_text(data)


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


def _segment_data(seg: Segment, stream: bytes) -> bytes:
    data = getattr(seg, "data", None)
    return data if isinstance(data, bytes) else stream[seg.start : seg.end]


# -- the annotated connection, with what every view needs --------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    """A record without data (connect, EOF, shutdown, close, reset)."""

    record: Record


@dataclass(slots=True)
class _ConnView:
    ac: AnnotatedConnection
    streams: dict[bool, bytes]  # from_client -> every byte of that direction
    t0: float  # the origin of the times shown: the trace's first record, or this connection's
    started: float  # this connection's first record, in seconds since the trace's first
    clock: str  # one of CLOCKS: what t0 is
    previous_end: float | None  # the previous connection's last record, like ``started``
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


def _trace_t0(trace: Trace) -> float:
    """The time of the trace's first record: the origin of the trace's clock."""
    return min((c.records[0].t for c in trace.connections if c.records), default=0.0)


def _views(trace: Trace, clock: str = "trace") -> list[_ConnView]:
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}: one of {', '.join(CLOCKS)}")
    trace_t0 = _trace_t0(trace)
    out: list[_ConnView] = []
    for index, conn in enumerate(trace.connections):
        try:
            ac = annotate_connection(conn, index)
            why = ""
        except ValueError as exc:
            # No annotator for this protocol yet: show the bytes anyway, and say why.
            why = f"not annotated: {exc}"
            ac = _raw_connection(conn, index, why)
        streams = {True: conn.client_to_server(), False: conn.server_to_client()}
        first = conn.records[0].t if conn.records else trace_t0
        t0 = trace_t0 if clock == "trace" else first
        previous = out[-1].conn.records if out else []
        previous_end = previous[-1].t - trace_t0 if previous else None
        out.append(_ConnView(ac, streams, t0, first - trace_t0, clock, previous_end, why))
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
    text.append(f"\nstarted at {_ms(view.started)} ms on the trace's clock", style="italic")
    if view.previous_end is not None:
        before = f"connection {view.ac.index - 1}"
        if view.started >= view.previous_end:
            gap = _ms(view.started - view.previous_end)
            text.append(f", {gap} ms after {before}'s last record", style="italic")
        else:
            text.append(f", while {before} was open", style="italic")
    origin = "the trace's first record" if view.clock == "trace" else "this connection's start"
    text.append(f" · times are ms since {origin}", style=_DIM)
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
