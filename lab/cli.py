"""``python -m lab`` / ``lab``: serve, scenarios, capture, show, decode, tour, bench, fuzz,
proxy, probe, tap, notebooks."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import trio
from rich.console import Console
from rich.markup import escape

from lab.apps import app as lab_app
from lab.apps import index_text
from lab.bench import compare_report
from lab.capture.fileformat import TraceFormatError, load
from lab.capture.pcapread import CaptureError, capture_format, read_capture
from lab.capture.store import NOISE, save_capture
from lab.capture.views import CLOCKS, render
from lab.decode import CODECS, INPUT_MODES, InputError, decode, load_input, render_decoded
from lab.fuzz import command as fuzz_command
from lab.probe import command as probe_command
from lab.progress import progress
from lab.proxy import command as proxy_command
from lab.scenarios import SCENARIOS, get
from lab.server import Limits, serve_tcp
from lab.server.tls import make_tls
from lab.tapcmd import add_arguments as add_tap_arguments
from lab.tapcmd import run as run_tap
from lab.tour import UnknownScenario, choose, contents, interactive, run_tour, run_with_progress

__all__ = ["COLORS", "VIEWS", "main"]

VIEWS = ("annotated", "hex", "timeline", "sequence")
COLORS = ("auto", "always", "never")
COLOR_HELP = (
    "colours and styles: auto (on a terminal only; NO_COLOR turns them off), always (also "
    "into a pipe or file, e.g. `| less -R`), never"
)


# Width when the output is not a terminal (a pipe, a CI log) and COLUMNS is not set:
# rich would fall back to 80, which folds every annotated row in two.
PIPE_WIDTH = 140


def _console(color: str = "auto") -> Console:
    """The stdout console; ``color`` as in :data:`COLOR_HELP` (``always`` beats NO_COLOR)."""
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    if color == "never":
        # Not a terminal to rich: no escape sequence at all, not even bold.
        return Console(highlight=False, soft_wrap=False, width=width, force_terminal=False)
    if color == "always":
        console = Console(
            highlight=False, soft_wrap=False, width=width, force_terminal=True, no_color=False
        )
        if console.color_system is None:  # TERM=dumb: asked for colours all the same
            console = Console(
                highlight=False, soft_wrap=False, width=width, force_terminal=True,
                no_color=False, color_system="standard",
            )  # fmt: skip
        return console
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
                viewer=args.viewer,
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
            console.print(f"one .trace and .pcapng per connection in {args.trace_dir}/{above}")
        if args.viewer:
            console.print(f"live wire viewer: {server.url}/lab/")
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
    _log_to_stderr()
    try:
        trio.run(_serve, args, _console())
    except (OSError, BaseExceptionGroup) as exc:
        cause = _listen_error(exc)
        if cause is None:
            raise
        print(f"lab serve: cannot listen on {args.host}:{args.port}: {cause}", file=sys.stderr)
        return 1
    return 0


def _listen_error(exc: BaseException) -> str | None:
    """Why the listening socket could not be made (the port is taken, not ours to use, or
    the address is not this machine's), found in ``exc`` or the group it is in."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [_listen_error(e) for e in exc.exceptions]
        return next((c for c in causes if c is not None), None)
    if isinstance(exc, OSError) and exc.errno in (
        errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL,
    ):  # fmt: skip
        return exc.strerror or str(exc)
    return None


def _log_to_stderr() -> None:
    """The lab's log on stderr, with the time: one line per request (logger lab.server)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    lab_log = logging.getLogger("lab")
    lab_log.addHandler(handler)
    lab_log.setLevel(logging.INFO)


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
        print("lab capture: name one or more scenarios, or --all (see `lab scenarios`)",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    for name in args.names:
        try:
            get(name)
        except KeyError as exc:
            print(f"lab capture: {exc.args[0]}", file=sys.stderr)
            raise SystemExit(2) from None
    return list(args.names)


def cmd_capture(args: argparse.Namespace) -> int:
    console = _console()
    chosen = [get(name) for name in _scenario_names(args)]
    traces = trio.run(run_with_progress, chosen, progress, "capture")
    kept = 0
    for trace in traces:
        console.rule(f"[bold]{escape(trace.name)}")
        render(trace, "annotated", console)
        saved = save_capture(trace, args.out, force=args.force)
        if saved.written:
            console.print(f"wrote {saved.trace_path} and {saved.pcap_path}", soft_wrap=True)
            continue
        kept += 1
        console.print(
            f"{saved.trace_path} kept: same bytes as this run apart from {NOISE}, so "
            "`lab show` shows the earlier run; --force writes this run",
            style="yellow",
            soft_wrap=True,
        )
    if kept and len(traces) > 1:
        console.print(
            f"{len(traces) - kept} written, {kept} kept as they were (--force writes them all)"
        )
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    console = _console(args.color)
    if args.list:
        contents(console)
        return 0
    try:
        chosen = choose(args.names)
    except UnknownScenario as exc:
        print(f"lab tour: {exc}", file=sys.stderr)
        return 2
    pause = not args.no_pause and interactive(sys.stdin, sys.stdout)
    run_tour(console, chosen, pause=pause, report=progress)
    return 0


# -- bench ---------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import (  # noqa: PLC0415 - only bench needs them
        attack_bench,
        chunked_bench,
        fleet_bench,
        frameworks,
        idle_bench,
        protocol_bench,
        servers_bench,
        sse_bench,
        stream_bench,
    )

    if args.seconds is None:  # each bench its own default
        args.seconds = fleet_bench.DEFAULT_SECONDS if args.what == "fleet" else 1.0
    if args.what == "fleet":
        if args.rate <= 0 or args.seconds <= 0:
            print("lab bench fleet: --rate and --seconds must be positive", file=sys.stderr)
            return 2
        result = fleet_bench.run(args.streams, args.rate, args.seconds, report=progress)
        if args.json:
            print(fleet_bench.as_json(result))
        else:
            print(
                f"{args.streams} SSE streams of {result['target']} against `lab serve` in "
                f"its own process, read by {result['client_processes']} client processes"
            )
            print(fleet_bench.table(result))
    elif args.what == "chunked":
        print(f"chunked decoding, lab vs h11, same input, best pass of {args.seconds * 2:.1f} s")
        print(chunked_bench.table(chunked_bench.run(args.seconds, report=progress)))
    elif args.what == "protocols":
        print(
            f"one /tokens?n={protocol_bench.TOKENS} stream, h2load --h1 vs h2load (h2c), "
            f"best of {args.rounds} alternating rounds"
        )
        print(protocol_bench.table(protocol_bench.run(args.rounds, report=progress)))
    elif args.what == "idle":
        count = args.count or idle_bench.DEFAULT_COUNT
        print(f"idle {args.kind} against `lab serve` in its own process ({count} of them)")
        print(idle_bench.table(idle_bench.run(count, args.kind, report=progress)))
    elif args.what == "frameworks":
        print(
            f"/tokens (text) and SSE, n={frameworks.PROBE_N} every "
            f"{frameworks.PROBE_INTERVAL_MS} ms, each server in its own process, "
            "read from the raw client's traces"
        )
        probed = frameworks.probe_all(report=progress)
        print(frameworks.table(probed, markdown=args.markdown))
    elif args.what == "servers":
        if args.tokens > servers_bench.TOKENS:
            print(f"lab bench servers: --tokens is at most {servers_bench.TOKENS}", file=sys.stderr)
            return 2
        count = args.count or servers_bench.DEFAULT_COUNT
        print(
            f"one client, /tokens?n={args.tokens}&interval_ms=0 {servers_bench.STREAMS} times "
            f"over HTTP/1.1 and over h2c (h2load: one connection, then 10 × 10 streams), and "
            f"{count} idle SSE streams; each server fresh in its own process per round; medians of "
            f"{args.rounds} rounds [min-max]; lab×: the lab's ratio (above 1: the lab does "
            f"better); CPU time counts in clock ticks of {1e6 / servers_bench.CLOCK_TICKS:,.0f} µs"
        )
        measures = servers_bench.run(args.rounds, count, args.tokens, report=progress)
        print(servers_bench.table(servers_bench.summarize(measures)))
    elif args.what == "attacks":
        print(
            "each attack against its own `lab serve` process; bystander time to first byte "
            "during the attack, as a ratio to the same bystander just before it"
        )
        rows = attack_bench.run(args.attack or None, report=progress)
        print(attack_bench.markdown(rows) if args.markdown else attack_bench.table(rows))
    elif args.what == "sse":
        print(f"SSE decoding, lab vs httpx-sse, same input, {args.seconds:.1f} s per case")
        print(sse_bench.table(sse_bench.run(args.seconds, report=progress)))
    else:
        print(
            f"one client, /tokens?n={stream_bench.TOKENS}&interval_ms=0 over HTTP/1.1, "
            f"server in its own process, best of {args.rounds} alternating rounds"
        )
        print(stream_bench.table(stream_bench.run(args.rounds, report=progress)))
    return 0


# -- compare -------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    return compare_report.command(args, progress)


# -- proxy ---------------------------------------------------------------------------


def cmd_proxy(args: argparse.Namespace) -> int:
    return proxy_command.run(args, _console(), progress)


# -- notebooks -----------------------------------------------------------------------


def cmd_notebooks(args: argparse.Namespace) -> int:
    # Imported here: the lessons need JupyterLab only when they are opened.
    from lab.lessons import open_notebooks  # noqa: PLC0415

    return open_notebooks(list(args.rest))


# -- show ----------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    console = _console(args.color)
    with Path(args.file).open("rb") as f:
        magic = f.read(4)
    # A packet capture, by its magic number (pcap, pcapng): its TCP connections as a trace.
    try:
        trace = read_capture(args.file) if capture_format(magic) else load(args.file)
    except CaptureError as exc:
        print(f"lab show: {args.file}: {exc}", file=sys.stderr)
        return 1
    except TraceFormatError as exc:
        print(f"lab show: {args.file} is not a readable trace: {exc}", file=sys.stderr)
        return 1
    render(trace, args.view, console, clock=args.clock)
    return 0


# -- decode / fuzz -------------------------------------------------------------------


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            data = load_input(sys.stdin.buffer, args.input)
        else:
            with Path(args.file).open("rb") as f:
                data = load_input(f, args.input)
    except InputError as exc:
        print(f"lab decode: {exc}", file=sys.stderr)
        return 2
    decoded = decode(CODECS[args.codec], data)
    render_decoded(decoded, data, _console(args.color))
    if decoded.error is not None:
        print(f"lab decode {args.codec}: {decoded.error}", file=sys.stderr)
        return 1
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    return fuzz_command.run(args, _console(), progress)


# -- probe / tap ---------------------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> int:
    return probe_command.run(args, _console(args.color))


def cmd_tap(args: argparse.Namespace) -> int:
    return run_tap(args, _console())


# -- entry point ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line on stderr, exit status 2 (subcommands' parsers too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port: 0-65535 (0: any free one)")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lab", description="streamlab: streaming HTTP on the wire, byte by byte")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the lab's endpoints (HTTP/1.1 and HTTP/2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8080, help="0-65535; 0: any free port")
    p.add_argument("--trace-dir", type=Path, default=None, help="one trace per connection")
    p.add_argument(
        "--no-viewer", dest="viewer", action="store_false",
        help="no live wire viewer at /lab/ (it keeps the newest connections, within limits)",
    )  # fmt: skip
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
    p.add_argument(
        "--force", action="store_true",
        help=f"write every capture, even one the same as the file there but for {NOISE} "
        "(by default that file is kept, so that golden captures do not churn)",
    )  # fmt: skip
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("show", help="view a trace file")
    p.add_argument("file", type=Path)
    p.add_argument("--view", choices=VIEWS, default="annotated")
    p.add_argument(
        "--clock", choices=CLOCKS, default="trace",
        help="times since the trace's first record (trace) or each connection's start",
    )  # fmt: skip
    p.add_argument("--color", choices=COLORS, default="auto", help=COLOR_HELP)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("bench", help="measure side by side: the lab's codecs vs the reference")
    p.add_argument(
        "what",
        choices=[
            "attacks", "chunked", "fleet", "frameworks", "idle", "protocols", "servers", "sse",
            "stream",
        ],
    )  # fmt: skip
    p.add_argument(
        "--seconds", type=float, default=None,
        help="chunked: per case and decoder (1); sse: per case (1); fleet: measured (10)",
    )  # fmt: skip
    p.add_argument("--streams", type=_positive_int, default=2000, help="fleet: streams")
    p.add_argument("--rate", type=float, default=25.0, help="fleet: tokens/s per stream")
    p.add_argument("--json", action="store_true", help="fleet: the result as JSON")
    p.add_argument(
        "--rounds", type=_positive_int, default=5, help="stream: rounds per configuration"
    )
    p.add_argument(
        "--count", type=_positive_int, default=None,
        help="idle: streams to open (2000); servers: idle SSE streams per server (1000)",
    )  # fmt: skip
    p.add_argument(
        "--tokens", type=_positive_int, default=10_000,
        help="servers: tokens in the measured stream (at most 10000, the lab's /tokens limit)",
    )  # fmt: skip
    p.add_argument("--kind", choices=["sse", "h2c"], default="sse", help="idle: what to open")
    p.add_argument(
        "--attack", action="append", default=[], metavar="NAME",
        help="attacks: only this one (repeatable); names as in tests/attacks",
    )  # fmt: skip
    p.add_argument(
        "--markdown", action="store_true", help="attacks, frameworks: the README's table"
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "compare", help="one token stream over every transport: polling, chunked, SSE, ...",
        description="Read one deterministic token stream over each transport (short and "
        "long polling, chunked, NDJSON, SSE by GET, POST and over h2c, WebSocket) from a lab "
        "server in this process; one row each, measured from that run's traces, which are "
        "saved for `lab show` (lab.bench.compare).",
    )  # fmt: skip
    compare_report.add_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "tour", help="every scenario in order, narrated (or the ones named)",
        description="Run scenarios against a lab server on 127.0.0.1 and show each one's "
        "bytes with its story; then a summary table and what to try next. In a terminal "
        "(stdin and stdout, outside CI) it waits for Enter between scenarios; q stops.",
    )  # fmt: skip
    p.add_argument(
        "names", nargs="*", metavar="NAME",
        help="only these: scenario names, numbers or chapters (http1, sse, http2, mcp, ...), "
        "as `lab tour --list` shows them; all by default",
    )  # fmt: skip
    p.add_argument("--list", action="store_true", help="the table of contents, and stop")
    p.add_argument("--no-pause", action="store_true", help="never wait between scenarios")
    p.add_argument("--color", choices=COLORS, default="auto", help=COLOR_HELP)
    p.set_defaults(func=cmd_tour)

    p = sub.add_parser(
        "proxy", help="nginx and HAProxy in front of the lab: both legs recorded, verdicts",
        description="Run a real reverse proxy (Debian's nginx, HAProxy) in front of a lab "
        "server with a generated configuration, record the client and upstream legs on "
        "one clock, and measure what the proxy did to the stream (lab.proxy).",
    )  # fmt: skip
    proxy_command.add_arguments(p)
    p.set_defaults(func=cmd_proxy)

    p = sub.add_parser(
        "decode", help="any bytes through one codec, shown annotated (file or stdin)",
        description="Hand bytes to one of the lab's decoders and see each unit: its byte "
        "range, its bytes and what they mean; a refusal names its byte offset (exit 1).",
    )  # fmt: skip
    p.add_argument("codec", choices=list(CODECS), help="the decoder (lab.decode.CODECS)")
    p.add_argument("file", nargs="?", default="-", help="the bytes; - or nothing: stdin")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--hex", dest="input", action="store_const", const="hex",
                     help="the input is hex digits (spaces and line breaks ignored)")  # fmt: skip
    how.add_argument("--escaped", dest="input", action="store_const", const="escaped",
                     help=r"the input is Python-style escapes (\r\n, \x00)")  # fmt: skip
    p.set_defaults(input=INPUT_MODES[0])
    p.add_argument("--color", choices=COLORS, default="auto", help=COLOR_HELP)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser(
        "fuzz", help="fuzz a codec against its reference library, or a lab server",
        description="Differential fuzzing of one codec against its reference (with the "
        "codec's own invariants), or of a `lab serve` process (lab.fuzz).",
    )  # fmt: skip
    fuzz_command.add_arguments(p)
    p.set_defaults(func=cmd_fuzz)

    p = sub.add_parser(
        "probe", help="one request to any server, its bytes annotated as they arrive (curl -v)",
        description="Send one request (HTTP/1.1, h2c, or HTTPS with ALPN h2/http1.1), or "
        "read as an EventSource (--sse), showing each protocol unit as it arrives; the "
        "trace is saved as .trace and .pcapng (lab.probe).",
    )  # fmt: skip
    probe_command.add_arguments(p, COLORS, COLOR_HELP)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "tap", help="a recording relay between any client and any server (--tls: decrypt)",
        description="Listen on 127.0.0.1, relay each connection to HOST:PORT and record "
        "both directions; one line per request, one .trace and .pcapng per connection; "
        "--tls terminates TLS with a local CA's certificate (lab.tapcmd).",
    )  # fmt: skip
    add_tap_arguments(p)
    p.set_defaults(func=cmd_tap)

    p = sub.add_parser(
        "notebooks", help="open the lessons in JupyterLab on 127.0.0.1", add_help=False,
        description="Open the lessons in JupyterLab on 127.0.0.1 (lab.lessons).",
    )  # fmt: skip
    p.set_defaults(func=cmd_notebooks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if rest and args.func is not cmd_notebooks:
        build_parser().parse_args(argv)  # the usual error for what no command takes
    args.rest = rest
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `lab tour | head`
        sys.stderr.close()
        return 0
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"lab {args.command}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return result
