"""One client, one token stream over HTTP/1.1: chunks per second, tracing off and on.

The server runs as users run it (``python -m lab serve`` in its own process, so it has a
core of its own); the client is a plain blocking socket in this process that reads until
the last-chunk, so the client costs as little as possible. Rounds alternate between a
server without tracing and one with ``--trace-dir`` so that both see the same machine
load, and the best round of each is kept. Only ratios measured side by side in one run
mean anything on a shared machine.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from lab.apps.params import MAX_N
from lab.progress import Reporter, progress, silent

__all__ = ["run", "table"]

# Tokens per measured response: the most /tokens gives, so that set-up is noise.
TOKENS: Final = MAX_N
# Bound on starting a server, and on one response.
START_TIMEOUT: Final = 30.0
RESPONSE_TIMEOUT: Final = 120.0
_END: Final = b"\r\n0\r\n\r\n"


@contextmanager
def _server(*extra: str) -> Iterator[int]:
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
            yield int(match.group(1))
        finally:
            proc.terminate()
            proc.wait(START_TIMEOUT)


def _one_stream(port: int, n: int) -> tuple[float, int]:
    """Seconds from sending the request to reading the last-chunk, and bytes read."""
    request = f"GET /tokens?n={n}&interval_ms=0 HTTP/1.1\r\nhost: bench\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=RESPONSE_TIMEOUT) as sock:
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


def run(
    rounds: int = 3, n: int = TOKENS, report: Reporter = silent
) -> list[dict[str, float | str]]:
    """Best of ``rounds`` for each configuration; the traced row carries the ratio.
    ``report`` gets a step for the start and one per measured stream."""
    best = {"tracing off": float("inf"), "tracing on": float("inf")}
    size = 0
    with report(1 + 2 * rounds, "bench stream") as step:
        step("start both servers, warm up")
        with (
            tempfile.TemporaryDirectory() as traces,
            _server() as plain,
            _server("--trace-dir", traces) as traced,
        ):
            for port in (plain, traced):
                _one_stream(port, 10)  # warm up: imports, first connection
            for r in range(rounds):
                for name, port in (("tracing off", plain), ("tracing on", traced)):
                    step(f"round {r + 1} of {rounds}, {name}")
                    elapsed, size = _one_stream(port, n)
                    best[name] = min(best[name], elapsed)
    rows: list[dict[str, float | str]] = []
    for name, elapsed in best.items():
        row: dict[str, float | str] = {
            "config": name,
            "chunks_per_s": (n + 1) / elapsed,  # the tokens and [DONE]
            "mb_per_s": size / elapsed / 1e6,
        }
        if name == "tracing on":
            row["ratio"] = best["tracing off"] / elapsed
        rows.append(row)
    return rows


def table(rows: list[dict[str, float | str]]) -> str:
    lines = [f"{'server':<14}{'chunks/s':>12}{'MB/s':>8}{'on/off':>8}"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(
            f"{row['config']!s:<14}{row['chunks_per_s']:>12,.0f}{row['mb_per_s']:>8.2f}{ratio:>8}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
