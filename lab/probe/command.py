"""``lab probe``: its arguments, its run, what it prints at the end and the files it writes.

::

    lab probe http://127.0.0.1:8080/tokens?n=5
    lab probe --http2 http://127.0.0.1:8080/tokens?n=5              # h2c, prior knowledge
    lab probe --cacert lab-ca.pem https://127.0.0.1:8443/tokens      # TLS, ALPN h2 or http/1.1
    lab probe --sse 'http://127.0.0.1:8080/events?n=2&total=4&retry_ms=100'
    lab probe -X POST -H 'Content-Type: application/json' -d '{"n": 3}' http://host/chat

While the bytes arrive, each unit is printed with what it means (:mod:`lab.probe.live`);
lines of the probe's own start with ``*``. At the end: a summary of the response (or of
the EventSource's run), and the trace written to ``--out`` as ``.trace`` and ``.pcapng``,
named by the time (UTC) and the host, for ``lab show`` and Wireshark. ``--view`` other
than ``annotated`` shows that view of the whole trace at the end instead.

Exit status: 0 when a response came (whatever its status, as curl); 1, with one line on
stderr, when none did or it was cut short (the name does not resolve, nothing listens,
TLS fails, no answer in time); 2 for a mistake on the command line.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Final

import trio
from rich.console import Console

from lab.capture.names import claim_stem, utc_stamp
from lab.capture.store import write_capture
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.capture.views import VIEWS, render
from lab.client.sse import MAX_CONNECTIONS
from lab.probe.connect import ProbeError, Target, client_context, parse_url
from lab.probe.exchange import Outcome, Request, Settings, probe_event_source, probe_once
from lab.probe.live import LivePrinter

__all__ = ["DEFAULT_OUT", "MAX_DATA_BYTES", "SSE_MAX_TIME", "add_arguments", "run"]

# Where the trace goes unless --out says: here, as curl -o would put it.
DEFAULT_OUT: Final = Path(".")
# How long --sse listens unless --max-time says: an EventSource never stops by itself,
# and a probe is a look, not a subscription. Long enough for a few reconnects at the
# default 3 s, and for a server's heartbeat (often 15 s) to show.
SSE_MAX_TIME: Final = 60.0
# The largest -d body: a request body typed or read from a file for a probe, not an upload
# (it is held in memory, and shown).
MAX_DATA_BYTES: Final = 16 * 1024 * 1024
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._]+")


def _url(text: str) -> Target:
    try:
        return parse_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not _TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    if any(c in value for c in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"a header value cannot hold CR, LF or NUL: {text!r}")
    return name, value.strip(" \t")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more: {text!r}")
    return int(text)


def add_arguments(p: argparse.ArgumentParser, colors: tuple[str, ...], color_help: str) -> None:
    p.add_argument("url", type=_url, metavar="URL", help="http://... or https://...")
    p.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        help="the method (default GET, or POST with -d)",
    )
    p.add_argument(
        "-H",
        "--header",
        dest="headers",
        type=_header,
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a header field to send (repeatable; replaces Host, User-Agent)",
    )
    p.add_argument(
        "-d", "--data", metavar="DATA", help="the request body (@FILE: a file's bytes, as they are)"
    )
    p.add_argument(
        "--sse",
        action="store_true",
        help="read as an EventSource: reconnect with Last-Event-ID as a browser "
        "does, until the server stops it or the limits",
    )
    p.add_argument(
        "--http2",
        action="store_true",
        help="on http://, HTTP/2 with prior knowledge (h2c); on https:// ALPN offers h2 anyway",
    )
    p.add_argument(
        "-k", "--insecure", action="store_true", help="https: do not check the server's certificate"
    )
    p.add_argument(
        "--cacert",
        type=Path,
        metavar="FILE",
        help="https: trust these CA certificates (PEM) instead of the system's",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where the .trace and .pcapng go (default: the current directory)",
    )
    p.add_argument(
        "--view",
        choices=VIEWS,
        default="annotated",
        help="annotated: live, as the bytes arrive; the others: at the end",
    )
    p.add_argument(
        "-m",
        "--max-time",
        type=_seconds,
        metavar="SECONDS",
        help=f"stop after this long (default: none; --sse: {SSE_MAX_TIME:g})",
    )
    p.add_argument(
        "--max-connections",
        type=_count,
        default=MAX_CONNECTIONS,
        metavar="N",
        help=f"--sse: connections in all, reconnects included (default {MAX_CONNECTIONS})",
    )
    p.add_argument("--color", choices=colors, default="auto", help=color_help)


def _body(data: str | None) -> bytes:
    if data is None:
        return b""
    if data.startswith("@"):
        path = Path(data[1:])
        if path.stat().st_size > MAX_DATA_BYTES:
            raise ProbeError(f"{path} is over {MAX_DATA_BYTES} bytes (MAX_DATA_BYTES)")
        return path.read_bytes()
    return data.encode()


def run(args: argparse.Namespace, console: Console) -> int:
    """The ``lab probe`` command; its exit status."""
    where: Target = args.url
    headers = tuple(args.headers)
    try:
        body = _body(args.data)
        context = None
        if where.scheme == "https":
            context = client_context(verify=not args.insecure, cafile=args.cacert)
    except ProbeError as exc:
        print(f"lab probe: {exc}", file=sys.stderr)
        return 1
    if body and not any(k.lower() == "content-type" for k, _ in headers):
        headers += (("Content-Type", "application/x-www-form-urlencoded"),)  # as curl -d
    method = args.method or ("POST" if body else "GET")
    request = Request(method, headers, body)
    max_time = args.max_time or (SSE_MAX_TIME if args.sse else None)
    settings = Settings(context, args.http2, max_time, args.max_connections)
    wall = time.time()
    base = f"probe-{utc_stamp(wall)}-{_UNSAFE.sub('-', where.host).strip('-')}-{where.port}"
    recorder = Recorder(Trace(base, f"lab probe: {method} {where.url}"))
    printer = LivePrinter(console, show=args.view == "annotated")
    how = "as an EventSource" if args.sse else ""
    printer.note(f"{method} {where.url} {how}".rstrip())
    probe = probe_event_source if args.sse else probe_once
    interrupted = False
    try:
        outcome = trio.run(probe, where, request, settings, recorder, printer)
    except KeyboardInterrupt:
        interrupted = True
        outcome = Outcome(error="interrupted (Ctrl-C)")
    _summary(printer, outcome, sse=args.sse)
    trace = recorder.trace
    if trace.connections:
        out: Path = args.out
        trace.name = claim_stem(out, base)
        trace_path, pcap_path = write_capture(trace, out)
        printer.note(f"saved {trace_path} and {pcap_path}", style="")
        if args.view != "annotated":
            render(trace, args.view, console)
    if outcome.error:
        print(f"lab probe: {outcome.error}", file=sys.stderr)
        return 130 if interrupted else 1
    return 0


def _summary(printer: LivePrinter, outcome: Outcome, *, sse: bool) -> None:
    for answer in outcome.answers:
        if answer.status is None:
            continue
        parts = [f"response: {answer.protocol} {answer.status} {answer.reason}".rstrip()]
        done = "complete" if answer.complete else "not complete"
        if not answer.read:
            done = "left unread: the EventSource stops at this head"
        parts.append(f"{answer.body_bytes} B of body, {done}")
        if answer.first_byte is not None:
            parts.append(f"head after {(answer.first_byte - answer.started) * 1000:.1f} ms")
        if answer.ended is not None:
            parts.append(f"ended after {(answer.ended - answer.started) * 1000:.1f} ms")
        printer.note(", ".join(parts), style="bold")
    if sse:
        connections = len(outcome.answers)
        printer.note(
            f"EventSource: {outcome.events} events over {connections} connections; "
            f"stopped: {outcome.stopped or outcome.error}",
            style="bold",
        )
