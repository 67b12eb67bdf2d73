"""The annotated view: one row per protocol unit, with its bytes and what they mean.

Per connection, a row per segment: time, direction, byte range, the bytes, and what they
mean; the connection events (connect, EOF, close, reset) in between. Under a segment, the
units nested in it (the fields of an HTTP/2 frame, HPACK fields, SSE lines) get rows of
their own, marked ``↳``.

Bytes are escaped text for a text protocol (at most :data:`MAX_SHOWN_BYTES` per row) and
hex for a binary one (at most :data:`MAX_SHOWN_HEX_BYTES`); content is text when it is
text (see :mod:`lab.capture.views.common`).
"""

from __future__ import annotations

from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.capture.annotate import Unparsed
from lab.capture.trace import Trace
from lab.capture.views.common import (
    _DIM,
    _OTHER_EVENT_STYLE,
    EVENT_STYLES,
    _arrow,
    _as_hex,
    _Event,
    _heading,
    _legend,
    _ms,
    _views,
    escape_bytes,
    hex_bytes,
    kind_style,
)
from lab.wire.segment import Nested, Segment

__all__ = ["MAX_SHOWN_BYTES", "MAX_SHOWN_HEX_BYTES", "render_annotated"]

# Bytes shown per row of the annotated view. Enough for any start line or header field of
# the lab's own traffic and a dozen tokens of body; a 1 MB body then costs one short row
# per read instead of a screenful, and the row says how many bytes it left out.
MAX_SHOWN_BYTES: Final = 96


# Bytes shown per row in hex: three cells each, so a row is as wide on screen as
# MAX_SHOWN_BYTES of text. It holds a frame header and the first fields of its payload; the
# frame's own fields follow on rows of their own.
MAX_SHOWN_HEX_BYTES: Final = MAX_SHOWN_BYTES // 3


def _shown(seg: Segment, data: bytes, total: int, style: str) -> Text:
    """The bytes of ``seg`` as text or hex, capped, saying how many of its ``total`` are
    left out. ``data`` is its first bytes, at least as many as a row shows."""
    if _as_hex(seg, data):
        stop = min(len(data), MAX_SHOWN_HEX_BYTES)
        text = Text(hex_bytes(data[:stop]), style=style)
    else:
        stop = min(len(data), MAX_SHOWN_BYTES)
        text = Text(escape_bytes(data[:stop]), style=style)
    if total > stop:
        text.append(f" … (+{total - stop} bytes)", style=_DIM)
    return text


def render_annotated(trace: Trace, console: Console, *, clock: str = "trace") -> None:
    """Per connection, one row per segment and per connection event, in order; times on
    ``clock`` (one of :data:`~lab.capture.views.common.CLOCKS`)."""
    for view in _views(trace, clock):
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
                # A unit under the segment that carried it (a field of an HTTP/2 frame,
                # an HPACK field, an SSE line): its own bytes, placed at its wire range.
                style = kind_style(seg.unit.kind)
                kinds[seg.unit.kind] = None
                shown = Text("↳ ", style=_DIM)
                shown.append_text(_shown(seg.unit, seg.data, len(seg.data), style))
                table.add_row(
                    _ms(entry.t - view.t0), "", f"[{seg.start}, {seg.end})", shown,
                    Text(seg.note(), style=style if seg.unit.kind == "sse-dispatch" else ""),
                )  # fmt: skip
                continue
            style = kind_style(seg.kind)
            kinds[seg.kind] = None
            # Only what a row can show is sliced: a 1 MB body costs a short row.
            end = min(seg.end, seg.start + MAX_SHOWN_BYTES)
            shown = _shown(seg, view.streams[entry.from_client][seg.start : end], seg.nbytes, style)
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
