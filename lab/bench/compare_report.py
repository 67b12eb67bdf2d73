"""``lab compare``'s output and command line: the table, the JSON, the plot, the files.

The table's column names are the JSON objects' keys (:data:`lab.bench.compare.FIELDS`),
so a row reads the same either way. Everything is written to the output directory:
``NAME.trace`` and ``NAME.pcapng`` per transport (``lab show DIR/NAME.trace`` shows a
row's bytes), ``compare.json`` (the rows) and ``arrivals.png`` (tokens decoded over time,
one line per transport; it needs matplotlib, the ``plots`` extra, and is skipped with a
note without it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import trio

from lab.apps.params import MAX_INTERVAL_MS, MAX_N, MAX_PROMPT_CHARS
from lab.bench.compare import BY_NAME, FIELDS, TRANSPORTS, CompareOptions, Row, run_streams
from lab.bench.compare_idle import MAX_IDLE, NotServed, measure_idle
from lab.capture.names import utc_stamp
from lab.capture.store import write_capture
from lab.progress import Reporter

__all__ = ["add_arguments", "command", "plot", "table"]

# The longest gap between two short polls: as long as the longest gap between tokens.
MAX_POLL_INTERVAL_MS: Final = MAX_INTERVAL_MS
# Columns of the table, in order: the status last, as it may be a sentence.
COLUMNS: Final = (*(f for f in FIELDS if f not in ("status", "trace")), "status")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[Row], *, idle: bool) -> str:
    """One line per transport; ``idle_kib`` only if it was measured."""
    columns = [c for c in COLUMNS if idle or c != "idle_kib"]
    cells = [[_cell(getattr(row, c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [
            v.ljust(w) if c in ("produced", "status") else v.rjust(w)
            for v, w, c in zip(values[1:], widths[1:], columns[1:], strict=True)
        ]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(columns), *(line(r) for r in cells)])


def plot(rows: Sequence[Row], path: Path, title: str) -> str | None:
    """Tokens decoded over time since each client began, one step line per transport;
    saved as a PNG at ``path``. Returns why it was skipped, or None."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
    except ModuleNotFoundError:
        return "plot skipped: matplotlib is missing (pip install -e '.[plots]')"
    fig = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for row in rows:
        if row.arrivals:
            xs = [0.0, *row.arrivals]
            ys = list(range(len(xs)))
            ax.step(xs, ys, where="post", label=row.transport, marker=".", markersize=4)
    ax.set_xlabel("ms since the client began")
    ax.set_ylabel("tokens decoded")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path, dpi=110)
    return None


# -- the command ---------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown transport {', '.join(unknown) or '(none)'}; choose from {', '.join(BY_NAME)}"
        )
    return names


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, not {value}")
        return value

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = CompareOptions()
    p.add_argument(
        "--transports", type=_names, default=defaults.transports, metavar="A,B,...",
        help=f"only these, comma-separated: {', '.join(t.name for t in TRANSPORTS)}",
    )  # fmt: skip
    p.add_argument("--n", type=_bounded(1, MAX_N), default=defaults.n, help="tokens")
    p.add_argument(
        "--interval-ms", type=_bounded(0, MAX_INTERVAL_MS), default=defaults.interval_ms,
        help="ms between two tokens on the server",
    )  # fmt: skip
    p.add_argument(
        "--poll-interval-ms", type=_bounded(1, MAX_POLL_INTERVAL_MS),
        default=defaults.poll_interval_ms, help="short polling: ms between two polls",
    )  # fmt: skip
    p.add_argument("--prompt", default=defaults.prompt, help="seeds the tokens")
    p.add_argument(
        "--idle", type=_bounded(0, MAX_IDLE), default=0, metavar="N",
        help="also measure server memory per idle client, N per transport, each transport "
        "against its own `lab serve` process",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="default: compare-<UTC time>/")
    p.add_argument("--json", action="store_true", help="the rows as JSON, one object each")


def command(args: argparse.Namespace, report: Reporter) -> int:
    if len(args.prompt) > MAX_PROMPT_CHARS:
        print(f"lab compare: --prompt is at most {MAX_PROMPT_CHARS} characters", file=sys.stderr)
        return 2
    options = CompareOptions(
        transports=args.transports, prompt=args.prompt, n=args.n, interval_ms=args.interval_ms,
        poll_interval_ms=args.poll_interval_ms, idle=args.idle,
    )  # fmt: skip
    out: Path = args.out or Path(f"compare-{utc_stamp(time.time())}")
    with report(len(options.transports), "compare") as step:
        results = trio.run(run_streams, options, step)
    rows = [r.row for r in results]
    if options.idle:
        with report(len(rows), "compare --idle") as step:
            for row in rows:
                if row.status.startswith("not served"):
                    continue
                try:
                    row.idle_kib = round(measure_idle(row.transport, options.idle, step), 2)
                except NotServed as exc:
                    row.status = f"{row.status}; idle: not served ({exc})"
    for result in results:
        trace_path, _ = write_capture(result.trace, out)
        result.row.trace = str(trace_path)
    (out / "compare.json").write_text(json.dumps([r.as_json() for r in rows], indent=1) + "\n")
    title = (
        f"{options.n} tokens {options.interval_ms} ms apart, prompt {options.prompt!r}; "
        f"short polls every {options.poll_interval_ms} ms"
    )
    skipped = plot(rows, out / "arrivals.png", title)
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=1))
    else:
        print(f"one stream: {title}; server and client in this process, one clock")
        print(table(rows, idle=bool(options.idle)))
        print(f"traces, rows (compare.json) and plot in {out}/: lab show {out}/NAME.trace")
    if skipped:
        print(f"lab compare: {skipped}", file=sys.stderr)
    failed = [r for r in rows if r.status.startswith(("error", "tokens differ"))]
    return 1 if failed else 0
