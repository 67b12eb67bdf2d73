"""``lab tap``: a recording relay between any client and any server, one trace per connection.

::

    lab tap --listen 9000 --to 127.0.0.1:8000            # then point the client at :9000
    lab tap --listen 9443 --to 127.0.0.1:8000 --tls      # a browser's HTTPS and h2, decrypted

It listens on 127.0.0.1 and relays every connection to the target with
:class:`lab.capture.relay.Relay`, recording both directions exactly as they pass (the
relay's socket reads and writes: what the client sent, what the target sent). While it
runs it prints one line per request once its response is over: method, target, status,
the response's bytes on the wire and how long it took, read with the lab's HTTP/1.1 and
HTTP/2 decoders as the bytes pass (:mod:`lab.capture.requestlog`). When a connection
closes, its trace is written to ``--out`` as ``.trace`` and ``.pcapng`` (``lab show``,
Wireshark), named by when it was accepted, its number and its first request
(:mod:`lab.capture.names`).

Without ``--tls`` the bytes are relayed as they are: HTTP/1.1, or HTTP/2 with prior
knowledge (h2c), told apart by the client's first bytes. With ``--tls`` the tap
terminates TLS with a certificate from a CA made for this run (written to ``--ca-out``,
for the client to trust): it offers ALPN ``h2`` and ``http/1.1`` (RFC 7301; browsers
speak HTTP/2 only over TLS, RFC 9113 §3.2), records the decrypted bytes, and forwards
them in plaintext to the target, as h2c with prior knowledge when the client negotiated
h2, as HTTP/1.1 otherwise. The target must therefore speak h2c for a client that picks
h2 (the lab's server does; many servers behind a TLS terminator do not: for those,
``--no-h2`` offers only ``http/1.1``, and browsers speak HTTP/1.1 to the tap).

Ctrl-C or SIGTERM stops it: open connections are closed, and their traces written.
"""

from __future__ import annotations

import argparse
import errno
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Final

import trio
from rich.console import Console
from rich.markup import escape

from lab.capture.names import claim_stem, connection_stem
from lab.capture.relay import AUTO, Relay, RelayedConnection
from lab.capture.requestlog import LoggedRequest
from lab.capture.store import write_capture
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.server.tls import ALPN_PROTOCOLS, make_tls

__all__ = ["CA_FILE", "DEFAULT_OUT", "LISTEN_HOST", "add_arguments", "parse_target", "run"]

# Where the tap listens: loopback only. A relay that records everything is a wiretap; on
# another interface it would record (and relay to the target) anyone who finds the port.
LISTEN_HOST: Final = "127.0.0.1"
# Traces go here by default: a browser opens a connection per origin and more, so one
# directory keeps a session's files together.
DEFAULT_OUT: Final = Path("taps")
# The CA certificate's file name inside --out, unless --ca-out says otherwise.
CA_FILE: Final = "lab-tap-ca.pem"
# Names the certificate is made for by default: what a local client types for the tap.
CERT_HOSTS: Final = ("127.0.0.1", "localhost")


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) as (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port to connect to: 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _listen_port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r} (0-65535; 0: any free)")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen", type=_listen_port, required=True, metavar="PORT",
        help=f"the port to listen on, on {LISTEN_HOST} (0: any free one, printed)",
    )  # fmt: skip
    p.add_argument(
        "--to", dest="target", type=parse_target, required=True, metavar="HOST:PORT",
        help="where to relay each connection (the server being inspected)",
    )  # fmt: skip
    p.add_argument(
        "--tls", action="store_true",
        help="terminate TLS (ALPN h2, http/1.1) with a certificate from a new local CA, "
        "record the decrypted bytes, forward plaintext (h2c for h2 clients)",
    )  # fmt: skip
    p.add_argument(
        "--no-h2", action="store_true",
        help="with --tls: offer only http/1.1 in ALPN (for a target that does not speak h2c)",
    )  # fmt: skip
    p.add_argument(
        "--ca-out", type=Path, default=None, metavar="FILE",
        help=f"with --tls: where to write the CA certificate (default: OUT/{CA_FILE})",
    )  # fmt: skip
    p.add_argument(
        "--cert-host", action="append", default=[], metavar="NAME",
        help="with --tls: a name or address the certificate is for (repeatable; "
        f"default: {', '.join(CERT_HOSTS)})",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
        help=f"where each connection's .trace and .pcapng go (default: {DEFAULT_OUT}/)",
    )  # fmt: skip


def run(args: argparse.Namespace, console: Console) -> int:
    """The ``lab tap`` command; its exit status."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tap = _Tap(args, console)
    if args.tls:
        tls = make_tls(tuple(args.cert_host) or CERT_HOSTS)
        tap.context = tls.context
        if args.no_h2:
            tls.context.set_alpn_protocols(["http/1.1"])
        tap.ca_out = args.ca_out or out / CA_FILE
        tap.ca_out.parent.mkdir(parents=True, exist_ok=True)
        tap.ca_out.write_bytes(tls.ca_pem)
    try:
        trio.run(tap.main)
    except (OSError, BaseExceptionGroup) as exc:
        cause = _listen_error(exc)
        if cause is None:
            raise
        print(f"lab tap: cannot listen on {LISTEN_HOST}:{args.listen}: {cause}", file=sys.stderr)
        return 1
    return 0


def _listen_error(exc: BaseException) -> str | None:
    if isinstance(exc, BaseExceptionGroup):
        causes = [_listen_error(e) for e in exc.exceptions]
        return next((c for c in causes if c is not None), None)
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES):
        return exc.strerror or str(exc)
    return None


class _Tap:
    """One ``lab tap`` run: the relay, its log lines and the files it writes."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.target: tuple[str, int] = args.target
        self.out: Path = args.out
        self.written = 0
        self.context: ssl.SSLContext | None = None  # --tls: the server side's
        self.ca_out: Path | None = None  # --tls: where the CA certificate was written

    async def main(self) -> None:
        context = self.context
        # Every connection gets its own recorder (new_recorder): the shared one is unused.
        relay = Relay(
            self.target, Recorder(), host=LISTEN_HOST, port=self.args.listen,
            protocol=AUTO, tls=context, new_recorder=self._recorder,
            on_request=self._on_request, on_close=self._on_close,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(relay.serve)
            target = f"{self.target[0]}:{self.target[1]}"
            if context is None:
                self._say(
                    f"lab tap: listening on http://{LISTEN_HOST}:{relay.port}, relaying to "
                    f"{target} as it is (HTTP/1.1, or h2c by the client's first bytes)"
                )
            else:
                alpn = "http/1.1" if self.args.no_h2 else ", ".join(ALPN_PROTOCOLS)
                self._say(
                    f"lab tap: listening on https://{LISTEN_HOST}:{relay.port} (TLS, ALPN "
                    f"{alpn}), relaying decrypted to {target} (h2c for h2, else HTTP/1.1)"
                )
                self._say(f"lab tap: the CA certificate of this run is in {self.ca_out}")
            self._say(
                f"lab tap: one .trace and .pcapng per connection in {self.out}/ as each "
                "closes; Ctrl-C stops"
            )
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()
        self._say(
            f"lab tap: stopped after {_count(relay.accepted, 'connection')}; "
            f"{_count(self.written, 'trace')} written to {self.out}/"
        )

    def _recorder(self) -> Recorder:
        return Recorder(Trace("tap"))

    def _say(self, text: str) -> None:
        self.console.print(escape(text), soft_wrap=True, highlight=False)

    def _on_request(self, relayed: RelayedConnection, request: LoggedRequest) -> None:
        proto = relayed.conn.protocol if relayed.conn is not None else "?"
        stream = f" s{request.stream_id}" if request.stream_id is not None else ""
        status = "---" if request.status is None else str(request.status)
        how = request.how or ("" if request.complete else "cut short")
        self._say(
            f"{_clock()} c{relayed.number} {proto}{stream} {request.method} {request.target} "
            f"→ {status} {request.response_bytes} B {request.duration * 1000:.1f} ms"
            + (f" ({how})" if how else "")
        )

    def _on_close(self, relayed: RelayedConnection) -> None:
        where = f"{_clock()} c{relayed.number}"
        conn = relayed.conn
        if conn is None:
            self._say(f"{where} from {relayed.peer[0]}:{relayed.peer[1]}: {relayed.error}")
            return
        first = relayed.first_request
        method = first.method if first is not None else ""
        target = first.target if first is not None else ""
        stem = claim_stem(self.out, connection_stem(relayed.number, method, target, relayed.opened))
        trace = relayed.recorder.trace
        trace.name = stem
        alpn = f", ALPN {relayed.alpn}" if relayed.alpn else ""
        tls = " (TLS terminated by the tap: decrypted bytes)" if conn.tls else ""
        trace.description = (
            f"lab tap: connection {relayed.number} from {relayed.peer[0]}:{relayed.peer[1]} "
            f"relayed to {self.target[0]}:{self.target[1]}{alpn}{tls}"
        )
        trace_path, pcap_path = write_capture(trace, self.out)
        self.written += 1
        error = f"; {relayed.error}" if relayed.error else ""
        self._say(
            f"{where} closed: {_count(relayed.logged, 'request')}, "
            f"{len(conn.client_to_server())} B in, {len(conn.server_to_client())} B out"
            f"{error} → {trace_path.name}, {pcap_path.name}"
        )


def _clock() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
