"""One clock per trace: the views put every connection on the trace's time axis, so a
reconnect's delay shows; ``clock="connection"`` counts each from its own start. On the
golden sse-reconnect trace, where the client reconnects after the server's retry time."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from lab.capture.fileformat import load
from lab.capture.trace import CONNECT, Trace
from lab.capture.views import (
    CLOCKS,
    VIEWS,
    data_arrivals,
    plot_timeline,
    render,
    render_annotated,
    render_hex,
    render_sequence,
    render_timeline,
)
from tests.capture.test_views import shown

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"


@pytest.fixture(scope="module")
def reconnect() -> Trace:
    return load(CAPTURES / "sse-reconnect.trace")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def section(plain: str, index: int) -> str:
    """The part of a view about connection ``index``."""
    start = plain.index(f"connection {index}  ")
    end = plain.find(f"connection {index + 1}  ", start)
    return plain[start : end if end >= 0 else None]


def starts(trace: Trace) -> tuple[float, float, float]:
    """(trace origin, connection 1's first record, connection 0's last), from the trace."""
    first, second = trace.connections[0], trace.connections[1]
    origin = min(c.records[0].t for c in trace.connections)
    return origin, second.records[0].t, first.records[-1].t


def test_the_trace_has_a_reconnect_after_a_gap(reconnect: Trace) -> None:
    _origin, second_start, first_end = starts(reconnect)
    assert len(reconnect.connections) >= 2
    assert second_start > first_end  # the client waited before reconnecting


@pytest.mark.parametrize("render_fn", [render_annotated, render_sequence, render_hex])
def test_second_connection_starts_at_its_offset_on_the_trace_clock(
    reconnect: Trace, render_fn: object
) -> None:
    origin, second_start, first_end = starts(reconnect)
    plain = shown(render_fn, reconnect, width=200).plain  # type: ignore[arg-type]
    second = section(plain, 1)
    gap = second_start - first_end
    assert (
        f"started at {ms(second_start - origin)} ms on the trace's clock,"
        f" {ms(gap)} ms after connection 0's last record" in second
    )
    assert "times are ms since the trace's first record" in second
    # The connect row, the first of connection 1, is at that time, not at 0.
    connect = next(line for line in second.splitlines() if "connect: TCP connection" in line)
    assert re.search(rf"(^|\+)\s*{re.escape(ms(second_start - origin))}\b", connect.strip())
    assert float(ms(second_start - origin)) > float(ms(first_end - origin))
    # Every time shown for connection 1 is on the trace's clock: after connection 0 ended.
    times = [float(t) for t in re.findall(r"^\s*\+?(\d+\.\d{3})\b", second, re.MULTILINE)]
    assert times
    assert min(times) >= float(ms(second_start - origin))


def test_the_request_with_last_event_id_is_after_the_gap(reconnect: Trace) -> None:
    origin, _second_start, first_end = starts(reconnect)
    plain = shown(render_sequence, reconnect, width=200).plain
    lines = section(plain, 1).splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("│   last-event-id: "))
    arrow = lines[at - 1] if "GET " in lines[at - 1] else lines[at - 2]
    assert "GET /events" in arrow
    assert float(arrow.split()[0]) > float(ms(first_end - origin))


def test_timeline_rows_are_on_the_trace_clock(reconnect: Trace) -> None:
    origin, _, _ = starts(reconnect)
    plain = shown(render_timeline, reconnect, width=200).plain
    arrivals = [a for a in data_arrivals(reconnect) if a[0] == 1]
    assert arrivals
    rows = [line for line in section(plain, 1).splitlines() if "█" in line]
    assert [row.split()[0] for row in rows] == [ms(t - origin) for _, t, _, _ in arrivals]


def test_connection_clock_counts_from_each_connection_s_start(reconnect: Trace) -> None:
    origin, second_start, _ = starts(reconnect)
    out = Console(record=True, width=200, file=io.StringIO(), highlight=False)
    render(reconnect, "annotated", out, clock="connection")
    second = section(out.export_text(), 1)
    # The heading still says when it started on the trace's clock.
    assert f"started at {ms(second_start - origin)} ms on the trace's clock" in second
    assert "times are ms since this connection's start" in second
    connect = next(line for line in second.splitlines() if "connect: TCP connection" in line)
    assert connect.split()[0] == "0.000"
    plain = shown(
        lambda t, c: render_timeline(t, c, clock="connection"), reconnect, width=200
    ).plain
    first_piece = next(line for line in section(plain, 1).splitlines() if "█" in line)
    (_, t, _, _) = next(a for a in data_arrivals(reconnect) if a[0] == 1)
    assert first_piece.split()[0] == ms(t - second_start)


@pytest.mark.parametrize("view", VIEWS)
def test_an_unknown_clock_is_refused(reconnect: Trace, view: str) -> None:
    out = Console(file=io.StringIO())
    with pytest.raises(ValueError, match="unknown clock 'wall'"):
        render(reconnect, view, out, clock="wall")
    assert CLOCKS == ("trace", "connection")


def test_plot_timeline_puts_connections_on_the_trace_clock(reconnect: Trace) -> None:
    origin, second_start, _ = starts(reconnect)
    lines = plot_timeline(reconnect).axes[0].get_lines()
    xs = np.asarray(lines[1].get_xdata(), dtype=float)
    assert xs[0] == pytest.approx((second_start - origin) * 1000)
    lines = plot_timeline(reconnect, clock="connection").axes[0].get_lines()
    assert np.asarray(lines[1].get_xdata(), dtype=float)[0] == 0.0
    assert plot_timeline(reconnect, clock="connection").axes[0].get_xlabel() == (
        "time since connect (ms)"
    )


def test_a_connect_record_opens_every_connection(reconnect: Trace) -> None:
    # What the tests above lean on: the first record of a connection is its connect.
    assert all(c.records[0].kind == CONNECT for c in reconnect.connections)


# Bound on the one CLI run below: it loads a small trace and prints one view.
CLI_TIMEOUT = 60


def test_lab_show_prints_the_trace_clock_by_default(reconnect: Trace) -> None:
    origin, second_start, first_end = starts(reconnect)
    out = subprocess.run(
        [sys.executable, "-m", "lab", "show", str(CAPTURES / "sse-reconnect.trace"),
         "--view", "sequence"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    second = section(out.stdout, 1)
    assert f"started at {ms(second_start - origin)} ms on the trace's clock" in second
    connect = next(line for line in second.splitlines() if "connect: TCP connection" in line)
    assert connect.split()[0] == ms(second_start - origin)
    assert float(connect.split()[0]) > float(ms(first_end - origin))


def test_lab_show_clock_connection_counts_each_connection_from_zero() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lab", "show", str(CAPTURES / "sse-reconnect.trace"),
         "--view", "sequence", "--clock", "connection"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    second = section(out.stdout, 1)
    connect = next(line for line in second.splitlines() if "connect: TCP connection" in line)
    assert float(connect.split()[0]) == 0
    assert "times are ms since this connection's start" in second
