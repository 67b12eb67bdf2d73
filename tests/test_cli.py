"""The command line, run as a user runs it: a subprocess of `python -m lab`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lab.capture.fileformat import load
from lab.scenarios import SCENARIOS

# Bound on any one CLI run.
CLI_TIMEOUT = 120


def lab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=cwd, check=False,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip


def test_scenarios_lists_every_scenario() -> None:
    out = lab("scenarios")
    assert out.returncode == 0
    for s in SCENARIOS:
        assert re.search(rf"^{re.escape(s.name)}\s+\S", out.stdout, re.MULTILINE)


def test_capture_writes_a_trace_and_a_pcapng_and_prints_the_view(tmp_path: Path) -> None:
    out = lab("capture", "token-stream", "trailers", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    for name in ("token-stream", "trailers"):
        trace = load(tmp_path / f"{name}.trace")
        assert trace.name == name
        assert (tmp_path / f"{name}.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert "chunk size 0x" in out.stdout
    assert "trailer field x-token-count: 4" in out.stdout


def test_capture_keeps_golden_files_that_only_differ_by_noise(tmp_path: Path) -> None:
    assert lab("capture", "chunked", "--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "chunked.trace").read_bytes()
    out = lab("capture", "chunked", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "same bytes as before; kept as it is" in out.stdout
    assert (tmp_path / "chunked.trace").read_bytes() == before


def test_capture_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    out = lab("capture", "no-such-thing", "--out", str(tmp_path))
    assert out.returncode != 0
    assert "no scenario 'no-such-thing'" in out.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("view", ["annotated", "hex", "timeline", "sequence"])
def test_show_renders_each_view_of_a_golden_capture(view: str) -> None:
    golden = Path(__file__).resolve().parent.parent / "captures" / "token-stream.trace"
    out = lab("show", str(golden), "--view", view)
    assert out.returncode == 0, out.stderr
    expected = {
        "annotated": "chunk size 0x",
        "hex": "0d 0a",
        "timeline": "first byte at",
        "sequence": "last chunk",
    }[view]
    assert expected in out.stdout


def test_tour_runs_every_scenario_and_ends_with_the_summary() -> None:
    out = lab("tour")
    assert out.returncode == 0, out.stderr
    for s in SCENARIOS:
        assert s.name in out.stdout
    assert "summary (all figures read off this run's traces)" in out.stdout
    tail = out.stdout[out.stdout.index("summary (all figures") :]
    # One summary row per scenario, with its byte counts.
    for s in SCENARIOS:
        assert re.search(rf"{re.escape(s.name)}\s*│\s*\d+\s*│\s*\d+\s*│\s*\d+\s*│", tail), s.name


def test_bench_chunked_reports_both_decoders() -> None:
    out = lab("bench", "chunked", "--seconds", "0.05")
    assert out.returncode == 0, out.stderr
    assert re.search(r"16 B chunks\s+lab\s+[\d,]+\s+[\d.]+\s+[\d.]+", out.stdout)
    assert re.search(r"4096 B chunks\s+h11\s+[\d,]+", out.stdout)


def test_bench_stream_reports_tracing_off_and_on() -> None:
    out = lab("bench", "stream", "--rounds", "1")
    assert out.returncode == 0, out.stderr
    assert re.search(r"tracing off\s+[\d,]+\s+[\d.]+", out.stdout)
    assert re.search(r"tracing on\s+[\d,]+\s+[\d.]+\s+[\d.]+", out.stdout)


def test_bench_idle_measures_memory_per_stream() -> None:
    out = lab("bench", "idle", "--count", "50")
    assert out.returncode == 0, out.stderr
    assert re.search(r"idle SSE streams open\s+50\b", out.stdout)
    assert re.search(r"RSS per idle one\s+-?[\d.]+ KiB", out.stdout)
    assert re.search(r"live 200-token stream, beside them\s+[\d.]+ ms", out.stdout)


def test_bench_sse_reports_both_parsers() -> None:
    out = lab("bench", "sse", "--seconds", "0.05")
    assert out.returncode == 0, out.stderr
    assert re.search(r"token \(32 B data\)\s+lab\s+[\d,]+", out.stdout)
    assert re.search(r"httpx-sse\s+[\d,]+", out.stdout)


def test_serve_answers_writes_traces_and_stops_on_sigint(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--port", "0", "--trace-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
            assert match, first
            url = match.group(0)
            response = httpx.get(f"{url}/tokens?n=3&interval_ms=0", timeout=10)
            assert response.status_code == 200
            assert response.text.endswith("[DONE]\n")
            assert "/tokens" in httpx.get(url, timeout=10).text
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    traces = sorted(tmp_path.glob("*.trace"))
    assert len(traces) == 2  # one per connection
    first_conn = load(traces[0]).connections[0]
    assert first_conn.side == "server"
    assert first_conn.received().startswith(b"GET /tokens?n=3&interval_ms=0 HTTP/1.1\r\n")
    assert b"0\r\n\r\n" in first_conn.sent()


def test_serve_names_a_bad_limit_and_the_known_ones() -> None:
    import subprocess
    import sys

    for bad, says in (
        ("nothing=1", "expected NAME=VALUE with NAME one of body_timeout,"),
        ("head_timeout=soon", "head_timeout takes a float"),
        ("max_body_size=-5", "must not be negative"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "lab", "serve", "--port", "0", "--limit", bad],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2
        assert says in done.stderr
        assert done.stderr.startswith(f"lab serve: --limit '{bad}'")
