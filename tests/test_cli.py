"""The command line, run as a user runs it: a subprocess of `python -m lab`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lab.capture.fileformat import load
from lab.scenarios import SCENARIOS
from lab.server.limits import Limits

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


def test_capture_keeps_golden_files_that_only_differ_by_noise_and_says_so(
    tmp_path: Path,
) -> None:
    first = lab("capture", "chunked", "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert f"wrote {tmp_path}/chunked.trace and {tmp_path}/chunked.pcapng" in first.stdout
    trace = tmp_path / "chunked.trace"
    before = trace.read_bytes()
    os.utime(trace, ns=(0, 0))  # so that any rewrite shows
    out = lab("capture", "chunked", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (
        f"{trace} kept: same bytes as this run apart from times, ports, dates, session ids "
        "and read boundaries, so `lab show` shows the earlier run; --force writes this run"
    ) in out.stdout
    assert "wrote" not in out.stdout
    assert trace.read_bytes() == before
    assert trace.stat().st_mtime_ns == 0


def test_capture_force_writes_this_run(tmp_path: Path) -> None:
    assert lab("capture", "chunked", "--out", str(tmp_path)).returncode == 0
    trace = tmp_path / "chunked.trace"
    os.utime(trace, ns=(0, 0))
    out = lab("capture", "chunked", "--force", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"wrote {trace} and {tmp_path}/chunked.pcapng" in out.stdout
    assert "kept" not in out.stdout
    assert trace.stat().st_mtime_ns != 0
    assert load(trace).name == "chunked"


def test_capture_of_several_counts_the_kept_ones(tmp_path: Path) -> None:
    assert lab("capture", "chunked", "--out", str(tmp_path)).returncode == 0
    out = lab("capture", "chunked", "fixed-length", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "1 written, 1 kept as they were (--force writes them all)" in out.stdout
    assert out.stderr.splitlines() == ["[1/2] capture chunked", "[2/2] capture fixed-length"]


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


GOLDEN_TRACE = Path(__file__).resolve().parent.parent / "captures" / "token-stream.trace"
ESCAPE = "\x1b["


def test_show_colour_always_keeps_colours_in_a_pipe_and_never_has_none() -> None:
    always = lab("show", str(GOLDEN_TRACE), "--color", "always")
    assert always.returncode == 0, always.stderr
    assert re.search(r"\x1b\[[0-9;]*3\dm", always.stdout)  # a foreground colour
    never = lab("show", str(GOLDEN_TRACE), "--color", "never")
    assert never.returncode == 0, never.stderr
    assert "\x1b" not in never.stdout
    assert "chunk size 0x" in never.stdout
    auto = lab("show", str(GOLDEN_TRACE))  # a pipe: no colour unless asked
    assert "\x1b" not in auto.stdout
    # The same text, but for the escape sequences.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", always.stdout)
    assert plain == never.stdout


def test_show_colour_always_wins_over_no_color() -> None:
    import subprocess as sp

    env = {"COLUMNS": "160", "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "TERM": "dumb"}
    args = [sys.executable, "-m", "lab", "show", str(GOLDEN_TRACE), "--color", "always"]
    done = sp.run(args, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\x1b\[[0-9;]*3\dm", done.stdout)


def test_show_and_tour_document_colour_in_their_help() -> None:
    for command in ("show", "tour"):
        out = lab(command, "--help")
        assert out.returncode == 0
        text = " ".join(out.stdout.split())  # as argparse wrapped it or not
        assert "--color {auto,always,never}" in text
        assert "always (also into a pipe or file, e.g. `| less -R`)" in text


def test_notebooks_help_names_jupyterlab() -> None:
    out = lab("notebooks", "--help")
    assert out.returncode == 0, out.stderr
    assert "JupyterLab" in out.stdout
    assert "usage: lab notebooks" in out.stdout
    listed = lab("--help")
    assert "open the lessons in JupyterLab on 127.0.0.1" in listed.stdout


def test_other_commands_still_refuse_unknown_options() -> None:
    out = lab("show", str(GOLDEN_TRACE), "--bogus")
    assert out.returncode == 2
    assert "unrecognized arguments: --bogus" in out.stderr


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
    assert out.stderr.splitlines() == [
        "[1/2] bench chunked 16 B chunks",
        "[2/2] bench chunked 4096 B chunks",
    ]


def test_bench_stream_reports_tracing_off_and_on() -> None:
    out = lab("bench", "stream", "--rounds", "1")
    assert out.returncode == 0, out.stderr
    assert re.search(r"tracing off\s+[\d,]+\s+[\d.]+", out.stdout)
    assert re.search(r"tracing on\s+[\d,]+\s+[\d.]+\s+[\d.]+", out.stdout)
    assert out.stderr.splitlines() == [
        "[1/3] bench stream start both servers, warm up",
        "[2/3] bench stream round 1 of 1, tracing off",
        "[3/3] bench stream round 1 of 1, tracing on",
    ]


def test_bench_idle_measures_memory_per_stream() -> None:
    out = lab("bench", "idle", "--count", "50")
    assert out.returncode == 0, out.stderr
    assert re.search(r"idle SSE streams open\s+50\b", out.stdout)
    assert re.search(r"RSS per idle one\s+-?[\d.]+ KiB", out.stdout)
    assert re.search(r"live 200-token stream, beside them\s+[\d.]+ ms", out.stdout)
    steps = out.stderr.splitlines()
    assert steps[0] == "[1/12] bench idle sse start the server, a live stream alone"
    assert steps[1] == "[2/12] bench idle sse open idle SSE streams 1-5 of 50"
    assert steps[10] == "[11/12] bench idle sse open idle SSE streams 46-50 of 50"
    assert steps[11] == "[12/12] bench idle sse a live stream beside 50 idle SSE streams"
    assert len(steps) == 12


def test_bench_idle_opens_more_h2c_connections_than_one_address_may_flood_with() -> None:
    # 1,200 connections send 2,400 control frames from 127.0.0.1 as they open: more than
    # the server's default per-address budget allows in a second.
    count = 1200
    assert 2 * count > Limits().h2_control_frames_per_address_per_second
    out = lab("bench", "idle", "--kind", "h2c", "--count", str(count))
    assert out.returncode == 0, out.stderr
    assert re.search(rf"idle HTTP/2 connections open\s+{count:,}\b", out.stdout)
    assert re.search(r"RSS per idle one\s+-?[\d.]+ KiB", out.stdout)


def test_bench_sse_reports_both_parsers() -> None:
    out = lab("bench", "sse", "--seconds", "0.05")
    assert out.returncode == 0, out.stderr
    assert re.search(r"token \(32 B data\)\s+lab\s+[\d,]+", out.stdout)
    assert re.search(r"httpx-sse\s+[\d,]+", out.stdout)
    assert out.stderr.splitlines() == [
        "[1/3] bench sse token (32 B data)",
        "[2/3] bench sse 4 KiB data",
        "[3/3] bench sse multi-line",
    ]


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


def test_serve_logs_each_request_and_serves_the_live_viewer(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--port", "0", "--trace-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            match = re.search(r"http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
            assert match
            url = match.group(0)
            printed = [proc.stdout.readline() for _ in range(3)]
            assert f"live wire viewer: {url}/lab/\n" in printed, printed
            tokens = httpx.get(f"{url}/tokens?n=3&interval_ms=0", timeout=10)
            page = httpx.get(f"{url}/lab/", timeout=10)
            assert page.status_code == 200
            assert "EventSource" in page.text
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert re.search(
        r"^\d\d:\d\d:\d\d connection 1 http/1\.1 GET /tokens\?n=3&interval_ms=0 -> 200, "
        rf"{len(tokens.content)} body bytes in \d+\.\d{{3}} s$",
        log, re.MULTILINE,
    ), log  # fmt: skip
    viewer_line = r"^\d\d:\d\d:\d\d connection 2 http/1\.1 GET /lab/ -> 200, "
    assert re.search(viewer_line, log, re.MULTILINE), log
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-c", 1)[1] for n in names] == [
        "00001-GET-tokens-n-3-interval_ms-0.pcapng", "00001-GET-tokens-n-3-interval_ms-0.trace",
        "00002-GET-lab.pcapng", "00002-GET-lab.trace",
    ]  # fmt: skip
