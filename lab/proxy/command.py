"""``lab proxy``: run the proxy experiments and print what each leg carried.

::

    lab proxy [--matrix] [--json] [--proxy nginx|haproxy] [--experiment NAME ...]
              [--out DIR] [--list]

- without ``--matrix``: the chosen experiments (``--experiment``, by default ``buffering``,
  or ``haproxy`` with ``--proxy haproxy``), each run shown in the two-leg view
  (:mod:`lab.proxy.view`), then the verdict table;
- ``--matrix``: every experiment (or those named), the verdict table only, then the
  configurations, the claims with their verdicts (:mod:`lab.proxy.claims`) and which
  timeouts run between reads (without ``--matrix`` too, the claims the runs bear on);
- ``--json``: the verdict rows as a JSON array on stdout, nothing else there;
- ``--list``: the experiments and their configurations.

Every run's trace is written (``NAME.trace`` and ``NAME.pcapng``) into ``--out``, by default
a new directory ``proxy-runs-YYYYmmdd-HHMMSS`` in the current one, for ``lab show``.
Progress goes to stderr (:mod:`lab.progress`). Exit status 2 for an unknown experiment, 1
when a proxy cannot be run (missing binary: the message names the Debian package).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Final

import trio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.progress import Reporter
from lab.proxy.claims import TIMEOUTS, claims
from lab.proxy.configs import ProxyKind
from lab.proxy.experiments import EXPERIMENTS, configurations
from lab.proxy.harness import ProxyError
from lab.proxy.plot import write_plots
from lab.proxy.runner import Run, run_all, save_runs
from lab.proxy.verdicts import rows_json, settings_table, table
from lab.proxy.view import render_legs

__all__ = ["DEFAULT_EXPERIMENT", "add_arguments", "default_out", "run"]

# What `lab proxy` runs when no experiment is named: the first question about each proxy.
DEFAULT_EXPERIMENT: Final[dict[ProxyKind, str]] = {"nginx": "buffering", "haproxy": "haproxy"}


def default_out(now: float | None = None) -> Path:
    """``proxy-runs-YYYYmmdd-HHMMSS`` in the current directory (local time)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path(f"proxy-runs-{stamp}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--matrix", action="store_true",
        help="run every experiment (or those named) and print the verdict table",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="the verdict rows as JSON")
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default=None)
    parser.add_argument(
        "--experiment", action="append", default=[], metavar="NAME",
        help="an experiment or configuration (repeatable); `lab proxy --list` lists them",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None,
        help="where the traces go (default: a new proxy-runs-TIME directory here)",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the experiments and stop")
    parser.add_argument(
        "--plots", action="store_true",
        help="also write NAME.png per probe: messages over time on both legs (plots extra)",
    )  # fmt: skip


def _list(console: Console) -> None:
    for experiment in EXPERIMENTS:
        console.print(f"[bold]{experiment.name}[/bold]: {escape(experiment.title)}")
        for config in experiment.configurations:
            probes = ", ".join(p.label for p in config.probes)
            line = f"  {config.name:<30} {config.summary} [{probes}]"
            console.print(escape(line), soft_wrap=True)


def _claims_table(runs: list[Run]) -> Table:
    out = Table(title="claims, and what this run says", show_lines=True)
    out.add_column("claim")
    out.add_column("verdict")
    out.add_column("evidence (measured in this run)")
    for claim in claims([r.row for r in runs]):
        out.add_row(escape(claim.text), escape(claim.verdict), escape(claim.evidence))
    return out


def _timeouts_table() -> Table:
    out = Table(title="which timeouts run between reads, and which bound a whole exchange")
    for name in ("proxy", "directive", "kind", "what it bounds"):
        out.add_column(name)
    for row in TIMEOUTS:
        out.add_row(*row)
    return out


def run(args: argparse.Namespace, console: Console, report: Reporter) -> int:
    """The command; ``console`` is stdout, ``report`` the progress reporter (stderr)."""
    if args.list:
        _list(console)
        return 0
    names = tuple(args.experiment)
    if not names and not args.matrix:
        names = (DEFAULT_EXPERIMENT[args.proxy or "nginx"],)
    try:
        selected = configurations(names, args.proxy)
    except KeyError as exc:
        print(f"lab proxy: {exc.args[0]}", file=sys.stderr)
        return 2
    if not selected:
        print(f"lab proxy: no {args.proxy} configuration in {', '.join(names)}", file=sys.stderr)
        return 2
    try:
        runs = trio.run(run_all, selected, report)
    except ProxyError as exc:
        print(f"lab proxy: {exc}", file=sys.stderr)
        return 1
    out = args.out if args.out is not None else default_out()
    for run_, path in zip(runs, save_runs(runs, out), strict=True):
        run_.row.trace = str(path)
    saved = f"{len(runs)} traces (.trace and .pcapng) in {out}/: `lab show {out}/NAME.trace`"
    if args.plots:
        try:
            write_plots([r.trace for r in runs], out)
        except ModuleNotFoundError as exc:
            print(f"lab proxy: no plots: {exc}", file=sys.stderr)
            return 1
        saved += f"; a plot of both legs per probe: {out}/NAME.png"
    if args.json:
        print(rows_json([r.row for r in runs]))
        print(saved, file=sys.stderr)
        return 0
    if not args.matrix:
        for run_ in runs:
            render_legs(run_.trace, console)
            console.print()
    console.print(table([r.row for r in runs]))
    console.print(settings_table([r.row for r in runs]))
    if claims([r.row for r in runs]):
        console.print(_claims_table(runs))
    if args.matrix:
        console.print(_timeouts_table())
    console.print(escape(saved), soft_wrap=True)
    return 0
