"""The hex view: one hexdump per ``send``/``recv`` record, coloured by segment kind.

Every byte is coloured by the kind of unit it belongs to, so a record's boundaries and the
protocol's can be compared. An HTTP/2 frame is coloured by its fields (Length, Type, Flags,
Stream Identifier, then the payload's fields: RFC 9113 §4.1, §6), which tile it; the
units of a body's own format (SSE lines) and HPACK fields are not: the framing is what a
hexdump is for, and the annotated view shows the rest.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

from rich.console import Console
from rich.text import Text

from lab.capture.annotate import AnnotatedConnection
from lab.capture.trace import RECV, SEND, Trace
from lab.capture.views.common import (
    _DIM,
    _OTHER_EVENT_STYLE,
    EVENT_STYLES,
    _arrow,
    _heading,
    _legend,
    _ms,
    _views,
    kind_style,
)
from lab.wire.h2fields import FrameField, LengthField
from lab.wire.h2frames import Frame
from lab.wire.segment import Nested, Segment

__all__ = ["MAX_HEX_BYTES_PER_RECORD", "render_hex"]

# Bytes of one record the hex view dumps by default: 256 lines. A 64 KiB read in full is
# 4,096 lines, which no one reads in a terminal; render_hex(max_bytes=None) shows it all.
MAX_HEX_BYTES_PER_RECORD: Final = 4096
# The hexdump's ASCII column: printable ASCII as is, everything else a dot.
_ASCII: Final = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in range(256))

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


def _framing(ac: AnnotatedConnection, from_client: bool) -> list[Segment]:
    """One direction's framing segments, each HTTP/2 frame replaced by its fields."""
    fields = [
        seg.unit
        for seg in ac.segments(from_client=from_client, nested=True)
        if isinstance(seg, Nested) and isinstance(seg.unit, FrameField)
    ]
    split = {f.start for f in fields if isinstance(f, LengthField)}  # frames with fields
    framing = [
        seg
        for seg in ac.segments(from_client=from_client)
        if not (isinstance(seg, Frame) and seg.start in split)
    ]
    return framing + fields


def render_hex(
    trace: Trace,
    console: Console,
    *,
    max_bytes: int | None = MAX_HEX_BYTES_PER_RECORD,
    clock: str = "trace",
) -> None:
    """Per record: its time and size, then a hexdump coloured by segment kind.

    Offsets are within the record's direction stream (the same numbers as the annotated
    view's byte ranges). At most ``max_bytes`` of each record are dumped (None: all).
    Times are on ``clock`` (one of :data:`~lab.capture.views.common.CLOCKS`).
    """
    for view in _views(trace, clock):
        console.print(_heading(view))
        kmaps = {d: _KindMap(_framing(view.ac, d)) for d in (True, False)}
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
