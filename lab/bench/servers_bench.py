"""The lab's server beside servers it did not write: ``lab bench servers``.

The same workloads against ``lab serve``, Starlette on hypercorn (trio worker) and on
uvicorn, FastAPI + sse-starlette on uvicorn, Node's ``http`` module and a plain trio + h11
server (:mod:`lab.peers`), each in a fresh process of its own per round. Rounds visit the
servers in a rotated order, so that each sees the same machine load in turn; the table
gives medians over rounds with their spread (min-max) and the lab's ratio to each.

- one client, HTTP/1.1, ``/tokens?n=TOKENS&interval_ms=0``, ``STREAMS`` times one after
  another on fresh connections: tokens per second, and the server process's CPU time
  (user + system, ``/proc/PID/stat``) per token, in µs;
- the same over HTTP/2 with prior knowledge (h2c), for the servers that speak it (the lab
  and hypercorn): h2load (nghttp2-client) with one connection and ``STREAMS`` streams one
  after another, then with 10 connections of 10 concurrent streams each (``H2_LOAD``
  requests in all); the DATA bytes h2load counts must be the expected body each time;
- idle SSE streams: the server's RSS (``/proc/PID/status``) with ``count`` streams open,
  each past its first event with the next ten minutes away, less before, per stream (as
  in :mod:`lab.bench.idle_bench`).

The tokens of every measured stream are checked after the clock stops: a server that
sends less, or other bytes, fails the run rather than look fast. Only ratios measured
side by side in one run mean anything on a shared machine.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lab.apps.params import MAX_N
from lab.apps.tokens import DONE, tokens_for
from lab.attacks.process import LabProcess, raise_fd_limit
from lab.bench import idle_bench
from lab.bench.frameworks_h2 import H2C_PEERS
from lab.peers.common import MAX_PEER_INTERVAL_MS
from lab.peers.launcher import start
from lab.progress import Reporter, silent
from lab.wire.chunked import decode

__all__ = ["DEFAULT_COUNT", "SERVERS", "TOKENS", "Measure", "run", "summarize", "table"]

LAB: Final = "lab"
SERVERS: Final = (
    LAB,
    "starlette-hypercorn",
    "starlette-uvicorn",
    "fastapi-uvicorn",
    "node-http",
    "trio-h11",
)
# Tokens per measured stream: the most the lab's /tokens gives (lab.apps.params.MAX_N).
TOKENS: Final = MAX_N
# Idle SSE streams per server: enough that per-stream memory dwarfs allocator noise, few
# enough that six servers and their streams open in seconds.
DEFAULT_COUNT: Final = 1000
PROMPT: Final = "bench"
# Streams per measure: a burst of 10,000 tokens takes the fastest servers tens of
# milliseconds, a few clock ticks of CPU time; ten of them make the CPU figure readable.
STREAMS: Final = 10
# The concurrent HTTP/2 load: h2load -c 10 -m 10, this many requests in all.
H2_LOAD: Final = 100
# The servers measured over h2c (lab.bench.frameworks_h2.H2C_PEERS and the lab).
H2C_SERVERS: Final = (LAB, *H2C_PEERS)
# After the idle streams close, the server tears them down; the CPU it spends on that is
# not the bursts'. The bursts wait until a SETTLE_QUIET passes with no CPU tick (at most
# SETTLE_TIMEOUT).
SETTLE_QUIET: Final = 0.2
SETTLE_TIMEOUT: Final = 10.0
# Bounds on one socket operation and on one whole measured stream.
SOCKET_TIMEOUT: Final = 30.0
STREAM_TIMEOUT: Final = 120.0
RECEIVE_SIZE: Final = 64 * 1024
_END: Final = b"\r\n0\r\n\r\n"
# The peers' idle stream: its first event now, the second ten minutes later.
PEER_IDLE_TARGET: Final = f"/sse?n=2&interval_ms={MAX_PEER_INTERVAL_MS}&prompt=idle"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Measure:
    """One round against one server."""

    server: str
    tokens_per_s: float
    cpu_us_per_token: float
    rss_kib_per_stream: float
    # h2c (NaN for a server that does not speak it): one stream at a time, and 10 × 10.
    h2_tokens_per_s: float = math.nan
    h2_cpu_us_per_token: float = math.nan
    h2_load_tokens_per_s: float = math.nan
    h2_load_cpu_us_per_token: float = math.nan


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status")
    return int(match.group(1))


@contextmanager
def _server(name: str) -> Iterator[tuple[int, int]]:
    """(port, pid) of a fresh server ``name``."""
    if name == LAB:
        with LabProcess() as lab:
            yield lab.port, lab.pid
    else:
        with start(name) as peer:
            yield peer.port, peer.pid


def _stream(port: int, n: int) -> tuple[float, bytes]:
    """Seconds from sending the request to the last-chunk, and the bytes received."""
    target = f"/tokens?n={n}&interval_ms=0&prompt={PROMPT}"
    request = f"GET {target} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()
    pieces: list[bytes] = []
    tail = b""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        start_at = time.perf_counter()
        deadline = time.monotonic() + STREAM_TIMEOUT
        sock.sendall(request)
        while tail != _END:
            data = sock.recv(RECEIVE_SIZE)
            if not data or time.monotonic() > deadline:
                raise RuntimeError(f"stream cut short or too slow after {len(pieces)} reads")
            pieces.append(data)
            tail = (tail + data)[-len(_END) :]
        elapsed = time.perf_counter() - start_at
    return elapsed, b"".join(pieces)


def _check(raw: bytes, n: int, server: str) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or b"chunked" not in head.lower():
        raise RuntimeError(f"{server}: expected a chunked 200, got {head[:200]!r}")
    data, _ = decode(body)
    if data != ("".join(tokens_for(PROMPT, n)) + f"\n{DONE}\n").encode():
        raise RuntimeError(f"{server}: the tokens did not arrive exactly")


def _open_idle(port: int, target: str, marker: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.sendall(f"GET {target} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
    seen = b""
    while marker not in seen.partition(b"\r\n\r\n")[2]:
        data = sock.recv(RECEIVE_SIZE)
        if not data:
            sock.close()
            raise RuntimeError(f"server closed an idle stream early: {seen[:200]!r}")
        seen += data
    return sock


def _idle(name: str, port: int, pid: int, count: int) -> float:
    """KiB of server RSS per idle SSE stream, ``count`` of them open."""
    target, marker = (
        (idle_bench.IDLE_TARGET, b"id: 1\n") if name == LAB else (PEER_IDLE_TARGET, b"data:")
    )
    socks = [_open_idle(port, target, marker)]  # warm-up: first-use allocations
    try:
        before = _rss_kib(pid)
        socks += [_open_idle(port, target, marker) for _ in range(count)]
        after = _rss_kib(pid)
    finally:
        for sock in socks:
            sock.close()
    return (after - before) / count


def _settle(pid: int) -> None:
    """Wait (at most SETTLE_TIMEOUT) until process ``pid`` used no CPU for SETTLE_QUIET."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_QUIET)
        now = _cpu_seconds(pid)
        if now == last:
            return
        last = now


def _h2load(port: int, n: int, args: list[str], requests: int, server: str) -> float:
    """Seconds h2load took for ``requests`` requests of /tokens?n=``n`` (``args``: its
    connection and stream counts); checks every request succeeded with the whole body."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise RuntimeError("h2load is not installed: apt-get install nghttp2-client")
    body = len(("".join(tokens_for(PROMPT, n)) + f"\n{DONE}\n").encode())
    url = f"http://127.0.0.1:{port}/tokens?n={n}&interval_ms=0&prompt={PROMPT}"
    started = time.perf_counter()
    out = subprocess.run(
        [h2load, "-n", str(requests), *args, url],
        capture_output=True, text=True, timeout=STREAM_TIMEOUT, check=False,
    ).stdout  # fmt: skip
    elapsed = time.perf_counter() - started
    done = re.search(r"(\d+) succeeded", out)
    data = re.search(r"\((\d+)\) data", out)
    if not (
        done and data and int(done.group(1)) == requests and int(data.group(1)) == requests * body
    ):
        raise RuntimeError(f"{server}: h2load did not get every body whole:\n{out[-600:]}")
    return elapsed


def _measure(name: str, n: int, count: int) -> Measure:
    with _server(name) as (port, pid):
        _check(_stream(port, 10)[1], 10, name)  # warm-up: imports, first connection
        # Memory first, while the process is fresh: after a burst, freed memory that the
        # allocator keeps would hide what new streams cost.
        per_stream = _idle(name, port, pid, count)
        _settle(pid)  # closing the idle streams is not the bursts' CPU
        cpu_before = _cpu_seconds(pid)
        elapsed = 0.0
        for _ in range(STREAMS):
            seconds, raw = _stream(port, n)
            elapsed += seconds
            _check(raw, n, name)
        cpu = _cpu_seconds(pid) - cpu_before
        h2: list[float] = []
        if name in H2C_SERVERS:
            _h2load(port, 10, ["-c", "1"], 1, name)  # warm-up
            for args, requests in ((["-c", "1"], STREAMS), (["-c", "10", "-m", "10"], H2_LOAD)):
                before = _cpu_seconds(pid)
                seconds = _h2load(port, n, args, requests, name)
                tokens = requests * n
                h2 += [tokens / seconds, (_cpu_seconds(pid) - before) / tokens * 1e6]
    tokens = STREAMS * n
    return Measure(name, tokens / elapsed, cpu / tokens * 1e6, per_stream, *h2)


def run(
    rounds: int = 3,
    count: int = DEFAULT_COUNT,
    tokens: int = TOKENS,
    servers: tuple[str, ...] = SERVERS,
    report: Reporter = silent,
) -> list[Measure]:
    """Every measure of every round; ``report`` gets a step per server and round."""
    if not 1 <= tokens <= MAX_N:
        raise ValueError(f"tokens must be in 1..{MAX_N}, not {tokens}")
    raise_fd_limit(2 * count + 256)  # inherited by the server processes
    out: list[Measure] = []
    with report(rounds * len(servers), "bench servers") as step:
        for r in range(rounds):
            shift = r % len(servers)
            for name in servers[shift:] + servers[:shift]:
                step(f"round {r + 1} of {rounds}, {name}")
                out.append(_measure(name, tokens, count))
    return out


def summarize(measures: list[Measure]) -> list[dict[str, float | str]]:
    """A row per server: medians, min and max over rounds, and the lab's ratios."""
    names = list(dict.fromkeys(m.server for m in measures))
    rows: list[dict[str, float | str]] = []
    for name in names:
        mine = [m for m in measures if m.server == name]
        row: dict[str, float | str] = {"server": name, "rounds": float(len(mine))}
        for key in _KEYS:
            values = [float(getattr(m, key)) for m in mine]
            row[key] = statistics.median(values)
            row[f"{key}_min"] = min(values)
            row[f"{key}_max"] = max(values)
        rows.append(row)
    lab = next((r for r in rows if r["server"] == LAB), None)
    for row in rows:
        if lab is None:
            break
        for key in _KEYS:
            higher_is_better = "tokens_per_s" in key
            value, labs = float(row[key]), float(lab[key])
            ok = value > 0 and labs > 0
            ratio = (labs / value if higher_is_better else value / labs) if ok else float("nan")
            row[f"lab_ratio_{key}"] = ratio
    return rows


_KEYS: Final = (
    "tokens_per_s", "cpu_us_per_token", "rss_kib_per_stream", "h2_tokens_per_s",
    "h2_cpu_us_per_token", "h2_load_tokens_per_s", "h2_load_cpu_us_per_token",
)  # fmt: skip


def table(rows: list[dict[str, float | str]]) -> str:
    """Medians [min-max] and, after each, the lab's ratio (above 1: the lab does better:
    more tokens/s, less CPU per token, less memory per idle stream); then the h2c rows."""
    lines = [
        f"{'HTTP/1.1':<21}{'tokens/s':>10} {'[min-max]':<19}{'lab×':>6}"
        f"{'CPU µs/token':>14} {'[min-max]':<13}{'lab×':>6}"
        f"{'KiB/idle SSE':>14} {'[min-max]':<13}{'lab×':>6}"
    ]
    for row in rows:
        lines.append(
            f"{row['server']!s:<21}{_cell(row, 'tokens_per_s', 0, 10, 19)}"
            f"{_cell(row, 'cpu_us_per_token', 1, 14, 13)}"
            f"{_cell(row, 'rss_kib_per_stream', 1, 14, 13)}"
        )
    lines += [
        "",
        f"{'h2c':<21}{'1 stream tok/s':>14} {'[min-max]':<19}{'lab×':>6}"
        f"{'CPU µs/token':>14} {'[min-max]':<13}{'lab×':>6}"
        f"{'10×10 tok/s':>14} {'[min-max]':<19}{'lab×':>6}"
        f"{'CPU µs/token':>14} {'[min-max]':<13}{'lab×':>6}",
    ]
    for row in rows:
        if math.isnan(float(row["h2_tokens_per_s"])):
            continue
        lines.append(
            f"{row['server']!s:<21}{_cell(row, 'h2_tokens_per_s', 0, 14, 19)}"
            f"{_cell(row, 'h2_cpu_us_per_token', 1, 14, 13)}"
            f"{_cell(row, 'h2_load_tokens_per_s', 0, 14, 19)}"
            f"{_cell(row, 'h2_load_cpu_us_per_token', 1, 14, 13)}"
        )
    return "\n".join(lines)


def _cell(row: dict[str, float | str], key: str, digits: int, width: int, spread: int) -> str:
    lo, hi = float(row[f"{key}_min"]), float(row[f"{key}_max"])
    ratio = float(row.get(f"lab_ratio_{key}", float("nan")))
    shown = f"[{lo:,.{digits}f}-{hi:,.{digits}f}]"
    # No ratio when either side measured 0: below one clock tick of CPU time in a short run.
    ratio_text = f"{ratio:>6.2f}" if not math.isnan(ratio) else f"{'—':>6}"
    return f"{float(row[key]):>{width},.{digits}f} {shown:<{spread}}{ratio_text}"
