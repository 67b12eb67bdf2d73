"""``lab bench servers`` and ``lab bench frameworks`` as a user runs them: a subprocess,
the table on stdout, one progress line per step on stderr.

Only the structure is asserted (a row per server, numbers in every cell, the lab's own
ratio 1.00): the numbers themselves depend on the machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from lab.bench import servers_bench
from lab.bench.frameworks_h2 import H2C_PEERS
from lab.peers.launcher import PEERS

pytestmark = pytest.mark.interop

# Bound on one run: six servers started, 2,000 tokens and 50 idle streams each.
RUN_TIMEOUT: Final = 240
_NUMBER: Final = r"[\d,]+(?:\.\d+)?"


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip


def test_bench_servers_prints_a_row_per_server_with_the_labs_ratios() -> None:
    out = _lab("bench", "servers", "--rounds", "1", "--count", "50", "--tokens", "2000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "/tokens?n=2000&interval_ms=0" in lines[0]
    assert "50 idle SSE streams" in lines[0]
    gap = lines.index("")
    rows = {line.split()[0]: line for line in lines[2:gap]}
    assert list(rows) == list(servers_bench.SERVERS)
    # A ratio is "—" when a side used less than one clock tick of CPU in this short run.
    cell = rf"({_NUMBER}) \[{_NUMBER}-{_NUMBER}\]\s+({_NUMBER}|—)"
    for name, line in rows.items():
        match = re.fullmatch(rf"{re.escape(name)}\s+{cell}\s+{cell}\s+{cell}", line)
        assert match, line
        tokens_per_s, ratio = (float(match.group(i).replace(",", "")) for i in (1, 2))
        assert tokens_per_s > 0
        assert ratio > 0
        if name == servers_bench.LAB:
            assert match.group(2) == "1.00"
            assert all(match.group(i) in ("1.00", "—") for i in (4, 6))
    # The h2c table: the servers that speak it, one stream and 10 × 10, each body checked.
    assert lines[gap + 1].split()[0] == "h2c"
    h2_rows = {line.split()[0]: line for line in lines[gap + 2 :]}
    assert list(h2_rows) == list(servers_bench.H2C_SERVERS)
    for name, line in h2_rows.items():
        match = re.fullmatch(rf"{re.escape(name)}\s+{cell}\s+{cell}\s+{cell}\s+{cell}", line)
        assert match, line
        assert float(match.group(1).replace(",", "")) > 0
        assert float(match.group(5).replace(",", "")) > 0
    steps = [s for s in out.stderr.splitlines() if "bench servers" in s]
    assert len(steps) == len(servers_bench.SERVERS)


def test_bench_servers_refuses_more_tokens_than_the_lab_serves() -> None:
    out = _lab("bench", "servers", "--tokens", str(servers_bench.TOKENS + 1))
    assert out.returncode == 2
    assert "--tokens is at most" in out.stderr


def test_bench_frameworks_prints_a_markdown_row_per_server_and_endpoint() -> None:
    out = _lab("bench", "frameworks", "--markdown")
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")][1:]
    names = [(r.split("|")[1].strip(), r.split("|")[2].strip()) for r in rows]
    assert names == [
        (n, e)
        for n in ["lab", *PEERS]
        for e in ("text", "sse", "h2c")
        if e != "h2c" or n in ("lab", *H2C_PEERS)
    ]
    assert all(r.split("|")[8].strip() == "yes" for r in rows)  # the tokens, exactly
