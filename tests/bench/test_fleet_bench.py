"""``lab bench fleet`` run as a user runs it, small: 20 streams at 10 tokens/s for 2 s.

The checks are on structure, not speed: every row of the table is printed, the JSON has
every field, the tokens received are more than half of what the pace asks for (a server
that paced nothing, or clients that read nothing, fail that by far; a loaded box does
not), lateness is never negative and its percentiles are ordered, and neither the server
nor any client process outlives the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.bench.fleet_bench import ROWS, percentile

# Bound on one run of the command: the server's start, the opens, a 1 s warm-up, the 2 s
# window and the clients' end, on a loaded box.
CLI_TIMEOUT = 120
STREAMS, RATE, SECONDS = 20, 10, 2
ARGS = ("--streams", str(STREAMS), "--rate", str(RATE), "--seconds", str(SECONDS))


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "bench", "fleet", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )  # fmt: skip


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # the command's own child, not reaped by anyone now


def check(result: dict[str, Any]) -> None:
    assert result["streams_open"] == STREAMS
    assert result["interval_ms"] == 1000 // RATE
    assert result["target_tokens_per_s"] == STREAMS * RATE
    assert result["tokens"] > STREAMS * RATE * result["window_s"] / 2
    assert 0 <= result["lateness_p50_ms"] <= result["lateness_p99_ms"]
    assert result["lateness_p99_ms"] <= result["lateness_max_ms"]
    # The server sleeps one interval after each token: a stream's typical gap is about
    # the interval, far above half of it (tokens read in bursts would show far below).
    assert 1000 / RATE / 2 < result["gap_p50_ms"] <= result["gap_p99_ms"]
    assert result["server_waiting_for_cpu"] >= 0
    assert result["server_cpu_cores"] > 0
    assert 0 < result["box_busy_cores"] <= result["box_cores"]
    assert result["server_cpu_us_per_token"] > 0
    assert 0 < result["server_rss_before_mib"] <= result["server_rss_peak_mib"]
    assert result["client_processes"] >= 1
    assert len(result["client_pids"]) == result["client_processes"]
    assert gone(result["server_pid"])
    assert all(gone(pid) for pid in result["client_pids"])


def test_fleet_prints_every_row_and_leaves_no_process() -> None:
    out = lab(*ARGS)
    assert out.returncode == 0, out.stderr
    for label, _, _ in ROWS:
        assert label in out.stdout
    assert f"{STREAMS} SSE streams of /events?" in out.stdout
    tokens = next(line for line in out.stdout.splitlines() if line.startswith("tokens received"))
    assert int(tokens.split()[-1].replace(",", "")) > STREAMS * RATE * SECONDS / 2


def test_fleet_json_has_every_field() -> None:
    out = lab(*ARGS, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {key for _, key, _ in ROWS} <= result.keys()
    check(result)


def test_fleet_refuses_a_rate_of_zero() -> None:
    out = lab("--rate", "0")
    assert out.returncode == 2
    assert "must be positive" in out.stderr


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([], 50) == 0
