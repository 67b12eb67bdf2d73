"""What one idle SSE stream costs the server: resident memory per open /events stream.

The server runs as users run it (``python -m lab serve`` in its own process). This process
opens ``count`` connections, each a ``GET /events`` whose next event is far away, and
reads each response up to its first event, so that every stream is really open: its
handler, its sender task, its queue, its h11 state. The server's RSS (from
``/proc/PID/status``) before and after, divided by ``count``, is the cost of one idle
stream. While they are open, one more client reads a live stream, to show that the idle
ones do not hold it up.
"""

from __future__ import annotations

import itertools
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from lab.progress import Reporter, Step, progress, silent

__all__ = ["run", "table"]

DEFAULT_COUNT: Final = 2000
# Bounds on start-up and on every socket operation of the bench.
START_TIMEOUT: Final = 30.0
SOCKET_TIMEOUT: Final = 30.0
# The idle streams: one event, then nothing for ten minutes (the longest interval and
# heartbeat the endpoint accepts), so no byte moves while memory is measured.
IDLE_TARGET: Final = "/events?n=2&interval_ms=600000&heartbeat_ms=600000&stream=idle"
LIVE_TARGET: Final = "/tokens?n=200&interval_ms=0"
# Opening thousands of streams is the long part of the bench: reported in this many steps,
# so that a log gets a line per tenth of them rather than one per stream.
OPEN_STEPS: Final = 10


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError("no VmRSS in /proc/PID/status")
    return int(match.group(1))


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise RuntimeError(f"{need} file descriptors needed; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


# An idle HTTP/2 connection: the client preface and an empty SETTINGS frame, then nothing;
# the server's SETTINGS (and its ACK of ours) are read so the connection is fully up.
H2_HELLO: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_ACK: Final = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def _open_idle_h2(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.sendall(H2_HELLO)
    seen = b""
    while _SETTINGS_ACK not in seen:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"server closed an idle HTTP/2 connection: {seen[:100]!r}")
        seen += data
    sock.sendall(_SETTINGS_ACK)
    return sock


def _open_idle(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.sendall(f"GET {IDLE_TARGET} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
    seen = b""
    while b"id: 1\n" not in seen:  # the head, the retry field and the first event
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"server closed an idle stream early: {seen[:200]!r}")
        seen += data
        if not seen.startswith(b"HTTP/1.1 200 "[: len(seen)]):
            raise RuntimeError(f"expected a 200 stream, got {seen[:200]!r}")
    return sock


def _live_stream(port: int) -> float:
    """Seconds to read a whole live token stream."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        start = time.perf_counter()
        sock.sendall(f"GET {LIVE_TARGET} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
        tail = b""
        while not tail.endswith(b"\r\n0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("live stream cut short")
            tail = (tail + data)[-16:]
        return time.perf_counter() - start


def _parts(count: int) -> list[range]:
    """``range(count)`` cut into at most OPEN_STEPS runs of near-equal length."""
    steps = min(OPEN_STEPS, count)
    edges = [count * i // steps for i in range(steps + 1)]
    return [range(a, b) for a, b in itertools.pairwise(edges)]


def run(
    count: int = DEFAULT_COUNT, kind: str = "sse", report: Reporter = silent
) -> list[dict[str, float | str]]:
    """``kind``: "sse" (idle /events streams over HTTP/1.1) or "h2c" (idle HTTP/2
    connections with no stream). ``report`` gets a step for the start, for each tenth of
    the streams opened, and for the live stream beside them."""
    parts = _parts(count)
    with report(2 + len(parts), f"bench idle {kind}") as step:
        return _run(count, kind, parts, step)


def _run(count: int, kind: str, parts: list[range], step: Step) -> list[dict[str, float | str]]:
    opener = {"sse": _open_idle, "h2c": _open_idle_h2}[kind]
    what = {"sse": "idle SSE streams", "h2c": "idle HTTP/2 connections"}[kind]
    _raise_fd_limit(2 * count + 256)  # inherited by the server process
    command = [sys.executable, "-m", "lab", "serve", "--port", "0"]
    if kind == "h2c":
        # Every connection comes from 127.0.0.1 and sends two control frames (SETTINGS,
        # its ACK) as it opens, thousands a second: over the per-address budget that is
        # there against floods (Limits.h2_control_frames_per_address_per_second), which
        # would close them. The bench measures memory, so it raises that budget.
        command += ["--limit", f"h2_control_frames_per_address_per_second={4 * count + 100}"]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        socks: list[socket.socket] = []
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not match:
                raise RuntimeError(f"lab serve did not start: {line!r}")
            port = int(match.group(1))
            step("start the server, a live stream alone")
            alone = min(_live_stream(port) for _ in range(3))
            socks.append(opener(port))  # warm-up: first-use allocations
            before = _rss_kib(proc.pid)
            for part in parts:
                step(f"open {what} {part.start + 1}-{part.stop} of {count}")
                socks += [opener(port) for _ in part]
            after = _rss_kib(proc.pid)
            step(f"a live stream beside {count} {what}")
            beside = min(_live_stream(port) for _ in range(3))
        finally:
            for sock in socks:
                sock.close()
            proc.terminate()
            proc.wait(START_TIMEOUT)
    return [
        {"measure": f"{what} open", "value": float(count), "unit": ""},
        {"measure": "server RSS before", "value": before / 1024, "unit": "MiB"},
        {"measure": "server RSS with them open", "value": after / 1024, "unit": "MiB"},
        {"measure": "RSS per idle one", "value": (after - before) / count, "unit": "KiB"},
        {"measure": "live 200-token stream, alone", "value": alone * 1000, "unit": "ms"},
        {"measure": "live 200-token stream, beside them", "value": beside * 1000, "unit": "ms"},
    ]


def table(rows: list[dict[str, float | str]]) -> str:
    lines = []
    for row in rows:
        value = row["value"]
        assert isinstance(value, float)
        shown = f"{value:,.0f}" if row["unit"] == "" else f"{value:,.1f} {row['unit']}"
        lines.append(f"{row['measure']:<36}{shown:>14}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
