"""The timeline view: when body data arrived, and the numbers and plot behind it.

:func:`render_timeline` prints, per connection, a row per piece of body data the server
sent: time, gap since the previous piece, size, a bar, and on an HTTP/2 connection the
stream the piece belongs to (RFC 9113 §5), so streams interleaving on one connection show,
with a line per stream after the table. :func:`data_arrivals` gives the numbers behind it,
and :func:`plot_timeline` draws cumulative body bytes over time with matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.capture.trace import Trace
from lab.capture.views.common import (
    _DIM,
    DATA_KINDS,
    _ConnView,
    _heading,
    _ms,
    _plural,
    _preview,
    _segment_data,
    _views,
    kind_style,
)
from lab.wire.h2frames import DataFrame
from lab.wire.segment import Segment
from lab.wire.websocket_segments import WebSocketFrame

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["TIMELINE_BAR_WIDTH", "data_arrivals", "plot_timeline", "render_timeline"]

# Width of the timeline's bar column, in cells.
TIMELINE_BAR_WIDTH: Final = 40


def _carries_data(seg: Segment) -> bool:
    """Body data: chunk data or a slice of a body in HTTP/1.1, a non-empty DATA frame in
    HTTP/2 (an empty one only carries END_STREAM), a WebSocket data frame after a 101 (its
    payload, unmasked; control frames carry no data)."""
    if isinstance(seg, DataFrame):
        return bool(seg.data)
    if isinstance(seg, WebSocketFrame):
        return not seg.is_control and bool(seg.data)
    return seg.kind in DATA_KINDS


class _Arrival(NamedTuple):
    t: float  # on the trace's axis: the time of the record that completed the piece
    data: bytes
    stream: int | None  # the HTTP/2 stream it belongs to; None in HTTP/1.1


def _arrivals(view: _ConnView) -> list[_Arrival]:
    stream = view.streams[False]
    return [
        _Arrival(
            a.t,
            _segment_data(a.segment, stream),
            a.segment.stream_id if isinstance(a.segment, DataFrame) else None,
        )
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
        (view.ac.index, a.t, len(a.data), a.data) for view in _views(trace) for a in _arrivals(view)
    ]


def _bar(position: float) -> str:
    """A marker at ``position`` (0..1) of the bar column."""
    cells = round(position * (TIMELINE_BAR_WIDTH - 1))
    return "·" * cells + "█"


def render_timeline(trace: Trace, console: Console, *, clock: str = "trace") -> None:
    """Per connection, one row per piece of body data the server sent, then a summary.

    Times are ms on ``clock`` (one of :data:`~lab.capture.views.common.CLOCKS`): since the
    trace's first record by default. The bar puts each piece at its place between the
    connection's first piece and its last, so the spacing of the pieces shows even when
    the wait for the first one was much longer. On an HTTP/2 connection a column says
    which stream each piece belongs to, and a line per stream sums it up.
    """
    for view in _views(trace, clock):
        console.print(_heading(view))
        arrivals = _arrivals(view)
        if not arrivals:
            console.print(Text("no body data from the server", style=_DIM))
            console.print()
            continue
        times = [a.t - view.t0 for a in arrivals]
        multiplexed = view.conn.protocol in ("h2", "h2c")
        # Every piece at one time (one read, or a normalised trace): bars at the start.
        span = (times[-1] - times[0]) or 1.0
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("ms", justify="right", no_wrap=True)
        table.add_column("gap ms", justify="right", no_wrap=True, style=_DIM)
        if multiplexed:
            table.add_column("stream", justify="right", no_wrap=True)
        table.add_column("bytes", justify="right", no_wrap=True)
        table.add_column(f"when ({_ms(times[0])} … {_ms(times[-1])} ms)", no_wrap=True)
        table.add_column("data", no_wrap=True, overflow="ellipsis")
        previous: float | None = None
        for rel, arrival in zip(times, arrivals, strict=True):
            gap = "" if previous is None else _ms(rel - previous)
            previous = rel
            stream = [f"{arrival.stream}"] if multiplexed else []
            table.add_row(
                _ms(rel),
                gap,
                *stream,
                str(len(arrival.data)),
                Text(_bar((rel - times[0]) / span), style=kind_style("chunk-data")),
                Text(_preview(arrival.data), style=_DIM),
            )
        console.print(table)
        console.print(Text(_summary(times, arrivals), style="bold"))
        if multiplexed:
            for stream_id in sorted({a.stream for a in arrivals if a.stream is not None}):
                mine = [
                    (t, a) for t, a in zip(times, arrivals, strict=True) if a.stream == stream_id
                ]
                line = _summary([t for t, _ in mine], [a for _, a in mine])
                console.print(Text(f"  stream {stream_id}: {line}"))
        console.print()


def _summary(times: list[float], arrivals: list[_Arrival]) -> str:
    total = sum(len(a.data) for a in arrivals)
    gaps = [b - a for a, b in pairwise(times)]
    mean = f"{_ms(sum(gaps) / len(gaps))} ms" if gaps else "n/a (one piece)"
    return (
        f"{len(arrivals)} {_plural(len(arrivals), 'piece')}, {total} bytes;"
        f" first byte at {_ms(times[0])} ms, last at {_ms(times[-1])} ms; mean gap {mean}"
    )


# -- the plot ----------------------------------------------------------------------------


def plot_timeline(
    trace_or_traces: Trace | Sequence[Trace],
    ax: Axes | None = None,
    path: str | Path | None = None,
    *,
    clock: str = "trace",
) -> Figure:
    """Cumulative body bytes the server sent, over time, one step line per connection.

    Each line starts at 0 bytes when its connection's first record was made and ends when
    its last was; a marker sits at every data segment's arrival. With ``clock="trace"``
    (the default) a connection's line starts where it started on its trace's clock, so a
    reconnect's delay shows; with ``"connection"`` every line starts at 0 ms. Pass several traces to
    compare them (fixed vs chunked, say) on one set of axes. Draws on ``ax`` if given,
    otherwise on a new figure (not registered with pyplot, so nothing pops up and nothing
    piles up); saves a PNG to ``path`` if given. Returns the figure.
    """
    # Imported here: matplotlib takes longer to import than every other view needs to run,
    # and it is an extra (the tour does not plot).
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"plot_timeline needs matplotlib ({exc}): pip install -e '.[plots]'", name=exc.name
        ) from None

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
        for view in _views(trace, clock):
            arrivals = _arrivals(view)
            records = view.conn.records
            xs = [(records[0].t - view.t0) * 1000 if records else 0.0]
            ys = [0]
            for arrival in arrivals:
                xs.append((arrival.t - view.t0) * 1000)
                ys.append(ys[-1] + len(arrival.data))
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
    origin = "the trace's first connect" if clock == "trace" else "connect"
    ax.set_xlabel(f"time since {origin} (ms)")
    ax.set_ylabel("body bytes (cumulative)")
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="best")
    if path is not None:
        fig.savefig(path, format="png")
    return fig
