"""One client, one token stream over HTTP/1.1: chunks per second, tracing off and on.

The server runs as users run it (``python -m lab serve`` in its own process, so it has a
core of its own); the client is a plain blocking socket in this process that reads until
the last-chunk, so the client costs as little as possible. Rounds alternate between a
server without tracing and one with ``--trace-dir`` so that both see the same machine
load, and the best round of each is kept. Only ratios measured side by side in one run
mean anything on a shared machine.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from lab.apps.params import MAX_N
from lab.progress import Reporter, progress, silent

__all__ = ["run", "table"]

# Tokens per measured response: the most /tokens gives, so that set-up is noise.
TOKENS: Final = MAX_N
# Bound on starting a server, and on one response.
START_TIMEOUT: Final = 30.0
RESPONSE_TIMEOUT: Final = 120.0
# Responses of TOKENS tokens read one after another on one keep-alive connection, after
# the timed rounds, to see what a long traced connection costs in memory: 30 x 10,000
# tokens is about 5 MB sent in about 3,600 records, which a trace held whole until the
# close keeps in memory (and formats whole), and a bounded one does not.
LONG_RESPONSES: Final = 30
# Bound on waiting for a traced server to write the long connection's trace.
SAVE_TIMEOUT: Final = 120.0
_END: Final = b"\r\n0\r\n\r\n"


@contextmanager
def _server(*extra: str) -> Iterator[int]:
    with _process(*extra) as (port, _):
        yield port


@contextmanager
def _process(*extra: str) -> Iterator[tuple[int, int]]:
    """(port, pid) of a fresh ``lab serve`` with ``extra`` arguments."""
    with subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + START_TIMEOUT
            line = proc.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not match or time.monotonic() > deadline:
                raise RuntimeError(f"lab serve did not start: {line!r}")
            yield int(match.group(1)), proc.pid
        finally:
            proc.terminate()
            proc.wait(START_TIMEOUT)


def _one_stream(port: int, n: int) -> tuple[float, int]:
    """Seconds from sending the request to reading the last-chunk, and bytes read."""
    with socket.create_connection(("127.0.0.1", port), timeout=RESPONSE_TIMEOUT) as sock:
        return _response(sock, n)


def _response(sock: socket.socket, n: int) -> tuple[float, int]:
    """Ask for ``n`` tokens on ``sock``; seconds until the last-chunk, and bytes read."""
    request = f"GET /tokens?n={n}&interval_ms=0 HTTP/1.1\r\nhost: bench\r\n\r\n".encode()
    start = time.perf_counter()
    sock.sendall(request)
    total = 0
    tail = b""
    while True:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("server closed before the last chunk")
        if not total and not data.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"expected a 200 stream, got {data[:200]!r}")
        total += len(data)
        tail = (tail + data)[-len(_END) :]
        if tail == _END:
            break
    return time.perf_counter() - start, total


def _peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process has held since it started."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
    return int(match.group(1))


def _long_connection(port: int, pid: int, n: int, responses: int) -> int:
    """Read ``responses`` responses on one connection; the server's peak RSS in KiB,
    read while that connection is still open."""
    with socket.create_connection(("127.0.0.1", port), timeout=RESPONSE_TIMEOUT) as sock:
        for _ in range(responses):
            _response(sock, n)
        return _peak_rss_kib(pid)


def _wait_for_traces(port: int) -> None:
    """Until the server holds no connection but the one asking (GET /stats): a traced
    server lets a connection go once its trace is written."""
    deadline = time.monotonic() + SAVE_TIMEOUT
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=RESPONSE_TIMEOUT) as s:
            s.sendall(b"GET /stats HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            raw = b""
            while data := s.recv(65536):
                raw += data
        (server,) = json.loads(raw.partition(b"\r\n\r\n")[2])["servers"]
        if int(server["connections"]) <= 1:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the traced server did not write its traces in time")
        time.sleep(0.05)


def run(
    rounds: int = 3, n: int = TOKENS, report: Reporter = silent, long: int = LONG_RESPONSES
) -> list[dict[str, float | str]]:
    """Best of ``rounds`` for each configuration; the traced row carries the ratio. After
    the rounds, ``long`` responses on one connection to each server: its peak RSS while
    that connection is open, and once its trace is written. ``report`` gets a step for
    the start and one per measured stream."""
    best = {"tracing off": float("inf"), "tracing on": float("inf")}
    peak_open: dict[str, int] = {}
    peak: dict[str, int] = {}
    size = 0
    with report(1 + 2 * rounds, "bench stream") as step:
        step("start both servers, warm up")
        with (
            tempfile.TemporaryDirectory() as traces,
            _process() as (plain, plain_pid),
            _process("--trace-dir", traces) as (traced, traced_pid),
        ):
            for port in (plain, traced):
                _one_stream(port, 10)  # warm up: imports, first connection
            servers = (("tracing off", plain, plain_pid), ("tracing on", traced, traced_pid))
            for r in range(rounds):
                for name, port, _ in servers:
                    step(f"round {r + 1} of {rounds}, {name}")
                    elapsed, size = _one_stream(port, n)
                    best[name] = min(best[name], elapsed)
            for name, port, pid in servers:
                peak_open[name] = _long_connection(port, pid, n, long)
                _wait_for_traces(port)
                peak[name] = _peak_rss_kib(pid)
    rows: list[dict[str, float | str]] = []
    for name, elapsed in best.items():
        row: dict[str, float | str] = {
            "config": name,
            "chunks_per_s": (n + 1) / elapsed,  # the tokens and [DONE]
            "mb_per_s": size / elapsed / 1e6,
            "peak_open_mib": peak_open[name] / 1024,
            "peak_mib": peak[name] / 1024,
        }
        if name == "tracing on":
            row["ratio"] = best["tracing off"] / elapsed
        rows.append(row)
    return rows


def table(rows: list[dict[str, float | str]]) -> str:
    """The rows; peak RSS in MiB while the long connection was open, and after it."""
    lines = [
        f"{'server':<14}{'chunks/s':>12}{'MB/s':>8}{'on/off':>8}{'RSS open':>10}{'RSS after':>11}"
    ]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(
            f"{row['config']!s:<14}{row['chunks_per_s']:>12,.0f}{row['mb_per_s']:>8.2f}{ratio:>8}"
            f"{row['peak_open_mib']:>10.1f}{row['peak_mib']:>11.1f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
