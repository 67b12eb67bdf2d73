"""The annotated view: one row per protocol unit, with its bytes and what they mean.

Per connection, a row per segment: time, direction, byte range, the bytes (escaped, capped
at :data:`MAX_SHOWN_BYTES`), and what they mean; the connection events (connect, EOF,
close, reset) in between.
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
    _Event,
    _heading,
    _legend,
    _ms,
    _views,
    escape_bytes,
    kind_style,
)
from lab.wire.segment import Nested

__all__ = ["MAX_SHOWN_BYTES", "render_annotated"]

# Bytes shown per row of the annotated view. Enough for any start line or header field of
# the lab's own traffic and a dozen tokens of body; a 1 MB body then costs one short row
# per read instead of a screenful, and the row says how many bytes it left out.
MAX_SHOWN_BYTES: Final = 96


def _shown(stream: bytes, start: int, end: int, limit: int, style: str) -> Text:
    """Bytes ``stream[start:end]`` escaped, at most ``limit`` of them, saying what is left."""
    stop = min(end, start + limit)
    text = Text(escape_bytes(stream[start:stop]), style=style)
    if end > stop:
        text.append(f" … (+{end - stop} bytes)", style=_DIM)
    return text


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
