"""``python -m lab`` / ``lab``: serve, scenarios, capture, show, tour."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.apps import app as lab_app
from lab.apps import index_text
from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.capture.normalize import normalized_text
from lab.capture.store import write_capture
from lab.capture.trace import Trace
from lab.capture.views import data_arrivals, render
from lab.scenarios import SCENARIOS, get, run_scenarios
from lab.server import Limits, serve_tcp
from lab.server.tls import make_tls
from lab.wire.h2frames import HeadersFrame

__all__ = ["VIEWS", "main"]

VIEWS = ("annotated", "hex", "timeline", "sequence")


# Width when the output is not a terminal (a pipe, a CI log) and COLUMNS is not set:
# rich would fall back to 80, which folds every annotated row in two.
PIPE_WIDTH = 140


def _console() -> Console:
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width)


# -- serve ---------------------------------------------------------------------------


async def _serve(args: argparse.Namespace, console: Console) -> None:
    tls = make_tls() if args.tls else None
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_tcp(
                lab_app,
                port=args.port,
                host=args.host,
                trace_dir=args.trace_dir,
                tls=tls,
                limits=args.limits,
                task_status=task_status,
            )
        )
        if tls is None:
            console.print(
                f"streamlab serving HTTP/1.1 and h2c (prior knowledge) on {server.url}",
                style="bold",
            )
        else:
            args.ca_out.write_bytes(tls.ca_pem)
            console.print(
                f"streamlab serving TLS (ALPN h2, http/1.1) on {server.url}", style="bold"
            )
            console.print(f"the CA certificate of this run is in {args.ca_out}")
            console.print(f"try: curl --cacert {args.ca_out} {server.url}/tokens")
        if args.trace_dir is not None:
            above = " (taken above TLS: decrypted bytes)" if tls is not None else ""
            console.print(f"one trace per connection in {args.trace_dir}/{above}")
        console.print(escape(index_text()))
        console.print("Ctrl-C stops the server.")
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                console.print("shutting down: idle connections close, streams get a grace")
                server.shutdown()
                break


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        args.limits = parse_limits(args.limit)
    except ValueError as exc:
        print(f"lab serve: {exc}", file=sys.stderr)
        return 2
    trio.run(_serve, args, _console())
    return 0


def parse_limits(items: list[str]) -> Limits:
    """``NAME=VALUE`` settings over the default :class:`Limits`; ValueError names the bad one."""
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"--limit {item!r}: expected NAME=VALUE with NAME one of {known}")
        default = getattr(Limits(), name)
        try:
            value = type(default)(raw)
        except ValueError:
            raise ValueError(f"--limit {item!r}: {name} takes a {type(default).__name__}") from None
        if value < 0:
            raise ValueError(f"--limit {item!r}: must not be negative")
        changes[name] = value
    return dataclasses.replace(Limits(), **changes)


# -- scenarios / capture / tour ------------------------------------------------------


def cmd_scenarios(args: argparse.Namespace) -> int:

    console = _console()
    width = max(len(s.name) for s in SCENARIOS)
    for s in SCENARIOS:
        console.print(f"{s.name:<{width}}  {escape(s.summary)}")
    return 0


def _scenario_names(args: argparse.Namespace) -> list[str]:

    if args.all:
        return [s.name for s in SCENARIOS]
    if not args.names:
        raise SystemExit("name one or more scenarios, or --all (see `lab scenarios`)")
    for name in args.names:
        try:
            get(name)
        except KeyError as exc:
            raise SystemExit(str(exc.args[0])) from None
    return list(args.names)


def _unchanged(trace: Trace, out: Path) -> bool:
    """Whether ``out`` already holds this capture but for run-to-run noise (times, ports,
    dates, read boundaries): then the golden files are kept, and git shows no churn."""
    old = out / f"{trace.name}.trace"
    if not old.exists() or not (out / f"{trace.name}.pcapng").exists():
        return False
    try:
        return normalized_text(load(old)) == normalized_text(trace)
    except ValueError:
        return False  # an unreadable old file is replaced


def cmd_capture(args: argparse.Namespace) -> int:
    console = _console()
    traces = trio.run(run_scenarios, _scenario_names(args))
    for trace in traces:
        console.rule(f"[bold]{escape(trace.name)}")
        render(trace, "annotated", console)
        if _unchanged(trace, args.out):
            console.print(f"{args.out / trace.name}.trace: same bytes as before; kept as it is")
            continue
        trace_path, pcap_path = write_capture(trace, args.out)
        console.print(f"wrote {trace_path} and {pcap_path}")
    return 0


def summary_row(trace: Trace) -> tuple[str, ...]:
    """Figures for the tour's summary table, all read off the trace."""
    up = sum(len(c.client_to_server()) for c in trace.connections)
    down = sum(len(c.server_to_client()) for c in trace.connections)
    requests = sum(
        1
        for ac in annotate(trace)
        for a in ac.items
        # An HTTP/1.1 request line, or the HEADERS frame that opens an HTTP/2 stream.
        if a.segment.kind == "request-line"
        or (a.from_client and isinstance(a.segment, HeadersFrame))
    )
    arrivals = data_arrivals(trace)
    if arrivals:
        first, last = arrivals[0][1], arrivals[-1][1]
        times = f"{first * 1000:.1f} / {last * 1000:.1f}"
    else:
        times = "-"
    return (
        trace.name,
        str(len(trace.connections)),
        str(requests),
        str(up),
        str(down),
        str(len(arrivals)),
        times,
    )


def cmd_tour(args: argparse.Namespace) -> int:

    console = _console()
    console.rule("[bold]streamlab tour: streaming HTTP on the wire")
    console.print(
        "Each scenario below ran just now against a lab server on 127.0.0.1. Every row is "
        "a byte range that really crossed the socket, with its time (ms since connect), "
        "its direction (C→S client to server, S→C back) and what it means."
    )
    traces = trio.run(run_scenarios, [s.name for s in SCENARIOS])
    table = Table(title="summary (all figures read off this run's traces)")
    for column in (
        "scenario", "conns", "requests", "bytes C→S", "bytes S→C",
        "body pieces", "first / last body byte, ms",
    ):  # fmt: skip
        table.add_column(column, no_wrap=True)
    for scenario, trace in zip(SCENARIOS, traces, strict=True):
        console.rule(f"[bold]{escape(scenario.name)}")
        console.print(escape(scenario.story), style="italic")
        render(trace, "annotated", console)
        table.add_row(*summary_row(trace))
    console.rule()
    console.print(table)
    return 0


# -- bench ---------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import (  # noqa: PLC0415 - only bench needs them
        attack_bench,
        chunked_bench,
        idle_bench,
        protocol_bench,
        sse_bench,
        stream_bench,
    )

    if args.what == "chunked":
        print(f"chunked decoding, lab vs h11, same input, best pass of {args.seconds * 2:.1f} s")
        print(chunked_bench.table(chunked_bench.run(args.seconds)))
    elif args.what == "protocols":
        print(
            f"one /tokens?n={protocol_bench.TOKENS} stream, h2load --h1 vs h2load (h2c), "
            f"best of {args.rounds} alternating rounds"
        )
        print(protocol_bench.table(protocol_bench.run(args.rounds)))
    elif args.what == "idle":
        print(f"idle {args.kind} against `lab serve` in its own process ({args.count} of them)")
        print(idle_bench.table(idle_bench.run(args.count, args.kind)))
    elif args.what == "attacks":
        print(
            "each attack against its own `lab serve` process; bystander time to first byte "
            "during the attack, as a ratio to the same bystander just before it"
        )
        rows = attack_bench.run(args.attack or None)
        print(attack_bench.markdown(rows) if args.markdown else attack_bench.table(rows))
    elif args.what == "sse":
        print(f"SSE decoding, lab vs httpx-sse, same input, {args.seconds:.1f} s per case")
        print(sse_bench.table(sse_bench.run(args.seconds)))
    else:
        print(
            f"one client, /tokens?n={stream_bench.TOKENS}&interval_ms=0 over HTTP/1.1, "
            f"server in its own process, best of {args.rounds} alternating rounds"
        )
        print(stream_bench.table(stream_bench.run(args.rounds)))
    return 0


# -- show ----------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    console = _console()
    trace = load(args.file)
    render(trace, args.view, console)
    return 0


# -- entry point ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab", description="streamlab: streaming HTTP on the wire, byte by byte"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the lab's endpoints (HTTP/1.1 and HTTP/2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--trace-dir", type=Path, default=None, help="one trace per connection")
    p.add_argument("--tls", action="store_true", help="TLS with ALPN h2/http1.1, new certificate")
    p.add_argument("--ca-out", type=Path, default=Path("lab-ca.pem"), help="with --tls: CA file")
    p.add_argument(
        "--limit", dest="limit", action="append", default=[], metavar="NAME=VALUE",
        help="set one of the server's limits (lab.server.Limits), e.g. head_timeout=2",
    )  # fmt: skip
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("scenarios", help="list the scenarios")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser("capture", help="run scenarios and write .trace and .pcapng files")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--out", type=Path, default=Path("captures"))
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("show", help="view a trace file")
    p.add_argument("file", type=Path)
    p.add_argument("--view", choices=VIEWS, default="annotated")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("bench", help="measure side by side: the lab's codecs vs the reference")
    p.add_argument("what", choices=["attacks", "chunked", "idle", "protocols", "sse", "stream"])
    p.add_argument("--seconds", type=float, default=1.0, help="chunked: per case and decoder")
    p.add_argument("--rounds", type=int, default=5, help="stream: rounds per configuration")
    p.add_argument("--count", type=int, default=2000, help="idle: streams to open")
    p.add_argument("--kind", choices=["sse", "h2c"], default="sse", help="idle: what to open")
    p.add_argument(
        "--attack", action="append", default=[], metavar="NAME",
        help="attacks: only this one (repeatable); names as in tests/attacks",
    )  # fmt: skip
    p.add_argument("--markdown", action="store_true", help="attacks: the README's table")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("tour", help="every scenario in order, narrated")
    p.set_defaults(func=cmd_tour)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `lab tour | head`
        sys.stderr.close()
        return 0
    return result
