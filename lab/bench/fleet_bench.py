"""Many paced token streams at once: what ``lab serve`` delivers, at what CPU and lateness.

``lab bench fleet`` starts ``lab serve`` in its own process
(:class:`~lab.attacks.process.LabProcess`) and opens ``streams`` concurrent SSE streams,
``GET /events?interval_ms=...``, each paced by the server at ``rate`` tokens per second
(the interval is a whole number of milliseconds: 1000 / rate, rounded). The streams are
read by separate client processes (:mod:`lab.bench.fleet_client`, one per core by default,
each one epoll loop over raw sockets), so the reading is spread over the box and kept
cheap beside the server's work.

Once every stream is open and a warm-up has passed, a window of ``seconds`` is measured:

- tokens received in the window, and the aggregate rate they make, against the target
  ``streams × 1000 / interval``;
- the server's CPU over the window (utime + stime of its process, from
  ``/proc/PID/stat``), per token received and as a fraction of one core;
- each token's lateness (see :mod:`lab.bench.fleet_client`: arrival minus the stream's
  ideal schedule, since the events carry no server time): p50, p99, max;
- the gap between consecutive tokens of a stream, p50 and p99: the pace as delivered;
- the server's time waiting for a free core and the whole box's busy CPU over the window:
  on a shared box, a server short of CPU is slow for a reason that is not its own;
- the server's resident memory before the streams and with them open, and its peak;
- each client process's CPU over the window: a client near a full core may itself be
  what holds tokens back, and the table says whether the clients kept up.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from lab.attacks.process import LabProcess, raise_fd_limit
from lab.bench.fleet_client import events_target
from lab.progress import Reporter, Step, progress, silent

__all__ = ["ROWS", "as_json", "percentile", "run", "table"]

DEFAULT_STREAMS: Final = 2000
DEFAULT_RATE: Final = 25.0
DEFAULT_SECONDS: Final = 10.0
# Bounds: opening every stream (thousands of connects on a loaded box); a client's end
# after the window (closing its streams and writing its result).
OPEN_TIMEOUT: Final = 120.0
FINISH_TIMEOUT: Final = 60.0
# Between the last stream opened and the window: the first tokens of the last streams
# and the connects' own work are out of the way by then.
WARMUP_SECONDS: Final = 1.0
# Tokens each stream asks for beyond the window: the open phase and the warm-up come
# first, and a server behind its pace needs longer. The endpoint's own bound is 10,000.
SPARE_SECONDS: Final = 60.0
MAX_TOKENS_PER_STREAM: Final = 10_000
# A client process that used more than this fraction of one core over the window was
# busy enough to be reading late: the lateness and the rate are then partly its own.
CLIENT_BUSY_LIMIT: Final = 0.8
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_KIB: Final = os.sysconf("SC_PAGE_SIZE") // 1024


def _cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def _run_delay(pid: int) -> float:
    """Seconds the server's main thread has waited on a run queue for a CPU (the second
    field of /proc/PID/schedstat, in ns): time it was ready to run and another process
    had the core."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def _box_busy() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole box, all cores, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / CLK_TCK, sum(ticks) / CLK_TCK


def _status_kib(pid: int, name: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {name} in /proc/{pid}/status")
    return int(match.group(1))


def _shares(total: int, parts: int) -> list[int]:
    return [total * (i + 1) // parts - total * i // parts for i in range(parts)]


def percentile(values: list[int], p: float) -> int:
    """Nearest-rank percentile of sorted ``values`` (``p`` in 0..100)."""
    if not values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


def _await_open(clients: list[subprocess.Popen[str]], deadline: float) -> int:
    opened = 0
    for proc in clients:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("open "):
            raise RuntimeError(f"a client did not open its streams in time: {line!r}")
        opened += int(line.split()[1])
    return opened


def run(
    streams: int = DEFAULT_STREAMS,
    rate: float = DEFAULT_RATE,
    seconds: float = DEFAULT_SECONDS,
    clients: int | None = None,
    report: Reporter = silent,
) -> dict[str, Any]:
    """Run the fleet; the measures as a dict (see :func:`table`). ``clients``: client
    processes (default: one per core, at most one per stream). ``report`` gets a step for
    the start, the opening of the streams, the window and the clients' results."""
    with report(4, "bench fleet") as step:
        return _run(streams, rate, seconds, clients or os.cpu_count() or 1, step)


def _run(streams: int, rate: float, seconds: float, nclients: int, step: Step) -> dict[str, Any]:
    if streams < 1 or rate <= 0 or seconds <= 0:
        raise ValueError("streams, rate and seconds must be positive")
    interval_ms = max(1, round(1000 / rate))
    nclients = min(nclients, streams)
    n = min(MAX_TOKENS_PER_STREAM, math.ceil((seconds + SPARE_SECONDS) * 1000 / interval_ms))
    raise_fd_limit(streams + 1024)  # this process and its clients; the server raises its own
    step("start the server")
    with LabProcess() as lab, tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        rss_before = _status_kib(lab.pid, "VmRSS")
        outs = [str(Path(tmp) / f"client-{i}.json") for i in range(nclients)]
        procs: list[subprocess.Popen[str]] = []
        try:
            step(f"open {streams} streams from {nclients} client processes")
            for share, out in zip(_shares(streams, nclients), outs, strict=True):
                cmd = [sys.executable, "-m", "lab.bench.fleet_client",
                       str(lab.port), str(share), str(n), str(interval_ms), out]  # fmt: skip
                procs.append(
                    subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                )
            opened = _await_open(procs, time.monotonic() + OPEN_TIMEOUT)
            t0 = time.monotonic() + WARMUP_SECONDS
            t1 = t0 + seconds
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(f"{t0!r} {t1!r}\n")
                proc.stdin.flush()
            step(f"measure {seconds:g} s")
            time.sleep(max(0.0, t0 - time.monotonic()))
            cpu0, wait0, box0 = _cpu_seconds(lab.pid), _run_delay(lab.pid), _box_busy()
            start = time.monotonic()
            time.sleep(max(0.0, t1 - time.monotonic()))
            cpu1, wait1, box1 = _cpu_seconds(lab.pid), _run_delay(lab.pid), _box_busy()
            end = time.monotonic()
            rss_open = _status_kib(lab.pid, "VmRSS")
            rss_peak = _status_kib(lab.pid, "VmHWM")
            step("collect the clients' results")
            deadline = time.monotonic() + FINISH_TIMEOUT
            for proc in procs:
                if proc.wait(max(0.1, deadline - time.monotonic())) != 0:
                    raise RuntimeError(f"client process {proc.pid} failed: {proc.returncode}")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        results = [json.loads(Path(out).read_text()) for out in outs]
        server_pid = lab.pid
    window = end - start
    lateness = sorted(v for r in results for v in r["lateness_us"])
    gaps = sorted(v for r in results for v in r["gap_us"])
    tokens = sum(int(r["window_tokens"]) for r in results)
    target = streams * 1000 / interval_ms
    client_cpu = [float(r["cpu_seconds"]) / window for r in results]
    return {
        "streams": streams,
        "streams_open": opened,
        "streams_ended_early": sum(int(r["ended_early"]) for r in results),
        "errors": [e for r in results for e in r["errors"]],
        "interval_ms": interval_ms,
        "target_tokens_per_s": target,
        "window_s": window,
        "tokens": tokens,
        "tokens_per_s": tokens / window,
        "of_target": tokens / window / target,
        "server_cpu_us_per_token": (cpu1 - cpu0) / tokens * 1e6 if tokens else 0.0,
        "server_cpu_cores": (cpu1 - cpu0) / window,
        "lateness_p50_ms": percentile(lateness, 50) / 1000,
        "lateness_p99_ms": percentile(lateness, 99) / 1000,
        "lateness_max_ms": (lateness[-1] if lateness else 0) / 1000,
        "server_waiting_for_cpu": (wait1 - wait0) / window,
        "box_busy_cores": (box1[0] - box0[0]) / window,
        "box_cores": (box1[1] - box0[1]) / window,
        "gap_p50_ms": percentile(gaps, 50) / 1000,
        "gap_p99_ms": percentile(gaps, 99) / 1000,
        "server_rss_before_mib": rss_before / 1024,
        "server_rss_open_mib": rss_open / 1024,
        "server_rss_peak_mib": rss_peak / 1024,
        "client_processes": nclients,
        "client_cpu_cores_max": max(client_cpu),
        "clients_kept_up": max(client_cpu) < CLIENT_BUSY_LIMIT
        and all(r["finished"] for r in results),
        "server_pid": server_pid,
        "client_pids": [p.pid for p in procs],
        "target": events_target(n, interval_ms),
    }


ROWS: Final = (
    ("streams open", "streams_open", "{:,.0f}"),
    ("streams ended early", "streams_ended_early", "{:,.0f}"),
    ("pace per stream", "interval_ms", "1 token / {:,.0f} ms"),
    ("target", "target_tokens_per_s", "{:,.0f} tokens/s"),
    ("window", "window_s", "{:,.2f} s"),
    ("tokens received in the window", "tokens", "{:,.0f}"),
    ("achieved", "tokens_per_s", "{:,.0f} tokens/s"),
    ("achieved / target", "of_target", "{:.1%}"),
    ("server CPU per token", "server_cpu_us_per_token", "{:,.1f} µs"),
    ("server CPU", "server_cpu_cores", "{:.2f} of one core"),
    ("server waiting for a free core", "server_waiting_for_cpu", "{:.0%} of the window"),
    ("box CPU busy, every process", "box_busy_cores", "{:.2f} cores"),
    ("box cores", "box_cores", "{:.1f}"),
    ("token lateness p50", "lateness_p50_ms", "{:,.1f} ms"),
    ("token lateness p99", "lateness_p99_ms", "{:,.1f} ms"),
    ("token lateness max", "lateness_max_ms", "{:,.1f} ms"),
    ("gap between a stream's tokens p50", "gap_p50_ms", "{:,.1f} ms"),
    ("gap between a stream's tokens p99", "gap_p99_ms", "{:,.1f} ms"),
    ("server RSS before the streams", "server_rss_before_mib", "{:,.1f} MiB"),
    ("server RSS with them open", "server_rss_open_mib", "{:,.1f} MiB"),
    ("server RSS peak", "server_rss_peak_mib", "{:,.1f} MiB"),
    ("client processes", "client_processes", "{:,.0f}"),
    ("client CPU, busiest process", "client_cpu_cores_max", "{:.2f} of one core"),
    ("clients kept up", "clients_kept_up", "{}"),
)


def _shown(value: Any, fmt: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def table(result: dict[str, Any]) -> str:
    """One row per measure of :data:`ROWS`, then a note if the clients were busy, then
    the streams' first errors."""
    lines = [f"{label:<36}{_shown(result[key], fmt):>22}" for label, key, fmt in ROWS]
    if not result["clients_kept_up"]:
        lines.append(
            f"(a client process used over {CLIENT_BUSY_LIMIT:.0%} of a core: the rate and "
            "lateness are partly the clients')"
        )
    lines += [f"error: {e}" for e in result["errors"]]
    return "\n".join(lines)


def as_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    print(table(run(report=progress)))
