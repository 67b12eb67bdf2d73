"""Views of a trace: how a person sees what crossed the socket.

Every view is computed from the trace's bytes through :func:`lab.capture.annotate`; none
of them paraphrases. The terminal views write to a :class:`rich.console.Console`:

==============  =========================================================================
``annotated``   one row per protocol unit: time, direction, byte range, the bytes (text
                escaped, binary as hex, capped at :data:`MAX_SHOWN_BYTES` and
                :data:`MAX_SHOWN_HEX_BYTES`), and what they mean; under a unit, the units
                nested in it (an HTTP/2 frame's fields, HPACK fields, SSE lines); the
                connection events (connect, EOF, close, reset) in between
``hex``         one hexdump per ``send``/``recv`` record, every byte coloured by the kind
                of unit it belongs to (an HTTP/2 frame by its fields), so a record's
                boundaries and the protocol's can be compared
``timeline``    when body data arrived: time, gap since the previous piece, the HTTP/2
                stream, size, a bar
``sequence``    a two-column sequence diagram, one arrow per message unit (a head, a
                chunk, the last chunk, trailers, an SSE event, a frame, connection
                events), never cutting what the exchange is about (see
                :mod:`~lab.capture.views.sequence`)
==============  =========================================================================

Times are on the trace's one clock by default, so connections line up; pass
``clock="connection"`` to count each connection from its own start (:data:`CLOCKS`).

:func:`plot_timeline` draws cumulative body bytes over time with matplotlib,
:func:`data_arrivals` gives the numbers behind it, and :func:`render_html` writes the
annotated view as a standalone page.

Each view has its module: :mod:`~lab.capture.views.annotated`,
:mod:`~lab.capture.views.hex`, :mod:`~lab.capture.views.timeline` (with the data arrivals
and the plot), :mod:`~lab.capture.views.sequence`; what they share (the styles, bytes as
text, the connection view) is in :mod:`~lab.capture.views.common`. This package holds the
dispatch, :func:`render`, and the HTML page, and every public name is importable from it.
"""

from __future__ import annotations

import io
from typing import Final

from rich.console import Console
from rich.text import Text

from lab.capture.trace import Trace
from lab.capture.views.annotated import MAX_SHOWN_BYTES, MAX_SHOWN_HEX_BYTES, render_annotated
from lab.capture.views.common import (
    _DIM,
    CLOCKS,
    DATA_KINDS,
    DEFAULT_KIND_STYLE,
    EVENT_STYLES,
    KIND_STYLES,
    PREVIEW_BYTES,
    escape_bytes,
    hex_bytes,
    is_text,
    kind_style,
)
from lab.capture.views.hex import MAX_HEX_BYTES_PER_RECORD, render_hex
from lab.capture.views.sequence import (
    KEPT_FIELDS,
    MAX_LANE_WIDTH,
    MIN_LANE_WIDTH,
    render_sequence,
)
from lab.capture.views.timeline import (
    TIMELINE_BAR_WIDTH,
    data_arrivals,
    plot_timeline,
    render_timeline,
)

__all__ = [
    "CLOCKS",
    "DATA_KINDS",
    "DEFAULT_KIND_STYLE",
    "EVENT_STYLES",
    "HTML_WIDTH",
    "KEPT_FIELDS",
    "KIND_STYLES",
    "MAX_HEX_BYTES_PER_RECORD",
    "MAX_LANE_WIDTH",
    "MAX_SHOWN_BYTES",
    "MAX_SHOWN_HEX_BYTES",
    "MIN_LANE_WIDTH",
    "PREVIEW_BYTES",
    "TIMELINE_BAR_WIDTH",
    "VIEWS",
    "data_arrivals",
    "escape_bytes",
    "hex_bytes",
    "is_text",
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


# -- dispatch and HTML -------------------------------------------------------------------


def render(
    trace: Trace,
    view: str = "annotated",
    console: Console | None = None,
    *,
    clock: str = "trace",
) -> None:
    """Show ``trace`` in one of :data:`VIEWS` on ``console`` (default: standard output).

    ``clock`` is one of :data:`CLOCKS`: ``"trace"`` (the default) shows every connection's
    times on the trace's one clock, from its first record, so the time between connections
    (a reconnect's delay) shows; ``"connection"`` counts each connection from its start.
    """
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
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}: one of {', '.join(CLOCKS)}")
    renderer(trace, console, clock=clock)


# Width of the HTML page's text, in characters: wide enough that rows rarely wrap.
HTML_WIDTH: Final = 160


def render_html(trace: Trace, *, clock: str = "trace") -> str:
    """The annotated view as a standalone HTML page, in the terminal's colours."""
    console = Console(
        record=True,
        file=io.StringIO(),
        width=HTML_WIDTH,
        color_system="truecolor",
        force_terminal=True,
        highlight=False,
    )
    render(trace, "annotated", console, clock=clock)
    return console.export_html(inline_styles=True, clear=True)
