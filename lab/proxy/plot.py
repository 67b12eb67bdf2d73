"""The two legs of a proxied exchange as a plot: messages over time, on each leg.

For every exchange of a proxy trace, two step lines on one time axis (the trace's clock,
ms since the request crossed the first leg): how many messages the upstream had handed to
the proxy (the upstream leg, from the recording relay) and how many the client had
received (the client leg). A proxy that streams keeps the two lines together; one that
buffers shows the client line as a single late step; a cut shows the client line ending
short. Markers sit at each message's time, so clumping (several messages in one client
read) is visible as markers stacked at one instant.

``lab proxy --plots`` writes one PNG per probe beside its trace. matplotlib is an extra
(``pip install -e '.[plots]'``); without it :func:`plot_legs` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lab.capture.trace import Trace
from lab.proxy.legs import arrivals, pairs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_legs", "write_plots"]


def _steps(times: list[float]) -> tuple[list[float], list[int]]:
    """Step-line points: the count of messages so far at each message's time."""
    xs: list[float] = []
    ys: list[int] = []
    for n, t in enumerate(sorted(times), 1):
        xs.append(t)
        ys.append(n)
    return xs, ys


def plot_legs(trace: Trace, ax: Axes | None = None, path: str | Path | None = None) -> Figure:
    """Messages sent upstream and received by the client, over time, one pair of lines per
    exchange of ``trace``; on ``ax`` if given, else a new figure; a PNG at ``path`` if
    given. Returns the figure."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"plot_legs needs matplotlib ({exc}): pip install -e '.[plots]'", name=exc.name
        ) from None
    if ax is None:
        fig = Figure(figsize=(8, 4.5), layout="constrained")
        FigureCanvasAgg(fig)  # draws and saves without pyplot or an interactive backend
        ax = fig.add_subplot()
    else:
        root = ax.get_figure(root=True)
        assert root is not None, "the axes belong to no figure"
        fig = root
    for k, (client, upstream) in enumerate(pairs(trace), 1):
        found = arrivals(client, upstream)
        start = next(
            (leg.request_t for leg in (client, upstream) if leg and leg.request_t is not None),
            0.0,
        )
        for label, times, style in (
            ("upstream sent", [a.upstream_t for a in found], "--"),
            ("client got", [a.client_t for a in found], "-"),
        ):
            known = [(t - start) * 1000 for t in times if t is not None]
            if not known:
                continue
            xs, ys = _steps(known)
            ax.step(xs, ys, style, where="post", marker="o", markersize=3,
                    label=f"exchange {k}: {label} ({len(known)})")  # fmt: skip
    ax.set_xlabel("ms since the request")
    ax.set_ylabel("messages so far")
    ax.set_title(trace.name)
    if ax.get_lines():
        ax.legend(loc="lower right", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def write_plots(traces: list[Trace], out: Path) -> list[Path]:
    """``NAME.png`` for each trace in ``out``; the paths."""
    paths = []
    for trace in traces:
        path = out / f"{trace.name}.png"
        plot_legs(trace, path=path)
        paths.append(path)
    return paths
