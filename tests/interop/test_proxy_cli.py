"""`lab proxy` run as a user runs it, with real proxies: the two-leg view and the table on
stdout agree with the traces it saved, `lab show` reads them, `--json` prints only JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from lab.capture.fileformat import load
from lab.proxy.legs import pairs
from lab.proxy.probes import ProbeOutcome
from lab.proxy.verdicts import Row, measure
from tests.tools import require_tool

pytestmark = pytest.mark.interop

# One experiment takes a few seconds; a minute covers a loaded machine.
CLI_TIMEOUT: Final = 60


def lab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=cwd, check=False,
        env={**os.environ, "COLUMNS": "160", "CI": "true"},
    )  # fmt: skip


def test_the_two_leg_view_and_the_table_show_what_the_traces_hold(tmp_path: Path) -> None:
    require_tool("nginx", "nginx")
    out = lab("proxy", "--experiment", "nginx-default", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    for probe in ("text", "ndjson", "sse"):
        trace = load(tmp_path / f"nginx-default-{probe}.trace")
        row = Row("", "", "", "", [], "", probe, "stream", "", "", "")
        measure(row, trace, ProbeOutcome())
        found = re.search(
            rf"^\s*nginx-default\s+{probe}\s+\S+\s+\S+\s+(\d+)\s+(\d+)/(\d+)\s",
            out.stdout,
            re.M,
        )
        assert found, out.stdout
        assert int(found[1]) == row.max_tokens_per_read
        assert (int(found[2]), int(found[3])) == (row.tokens_received, row.tokens_sent)
        ((client, upstream),) = pairs(trace)
        assert client is not None
        assert upstream is not None
        assert f"client leg (connection {client.index}, client ↔ proxy" in out.stdout
        assert f"upstream leg (connection {upstream.index}, proxy ↔ lab server" in out.stdout
    assert "held ms" in out.stdout
    assert f"3 traces (.trace and .pcapng) in {tmp_path}/" in out.stdout
    shown = lab("show", str(tmp_path / "nginx-default-text.trace"))
    assert shown.returncode == 0, shown.stderr
    assert "tapped at the client" in shown.stdout
    assert "tapped at the server" in shown.stdout
    assert "POST /chat HTTP/1.0" in shown.stdout  # nginx's request on the upstream leg


def test_json_alone_on_stdout_and_traces_in_a_new_directory_here(tmp_path: Path) -> None:
    require_tool("haproxy", "haproxy")
    out = lab("proxy", "--experiment", "haproxy-h2", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert (row["configuration"], row["probe"], row["client_protocol"]) == (
        "haproxy-h2", "h2-text", "h2c",
    )  # fmt: skip
    (made,) = tmp_path.iterdir()
    assert re.fullmatch(r"proxy-runs-\d{8}-\d{6}", made.name)
    assert Path(row["trace"]) == Path(made.name) / "haproxy-h2-h2-text.trace"
    assert load(tmp_path / row["trace"]).connections
    assert f"1 traces (.trace and .pcapng) in {made.name}/" in out.stderr
