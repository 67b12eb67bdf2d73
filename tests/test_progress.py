"""lab.progress: a bar on a terminal, one line per step in a pipe or a CI log, on stderr;
and the commands that use it (`lab capture`), run as a user runs them."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from lab.progress import in_ci, progress, silent
from lab.scenarios import SCENARIOS
from tests.test_cli import lab


def _console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120), out


def _three_steps(console: Console) -> None:
    with progress(3, "capture", console=console) as step:
        for label in ("alpha", "beta", "gamma"):
            step(label)


def test_a_terminal_gets_a_bar_with_what_runs_and_how_far(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    console, out = _console(terminal=True)
    _three_steps(console)
    drawn = out.getvalue()
    assert "\x1b[" in drawn  # drawn with control sequences, redrawn in place
    assert "━" in drawn  # the bar itself
    # What is running and how many are done when it started, then the end.
    assert re.search(r"capture gamma.*2/3", drawn)
    assert re.search(r"capture: done.*3/3", drawn)
    assert "left" in drawn  # the time-left column
    assert "[1/3]" not in drawn  # not the plain lines


def test_a_pipe_gets_one_plain_line_per_step() -> None:
    console, out = _console(terminal=False)
    _three_steps(console)
    assert out.getvalue() == "[1/3] capture alpha\n[2/3] capture beta\n[3/3] capture gamma\n"


def test_a_ci_log_gets_plain_lines_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    console, out = _console(terminal=True)
    _three_steps(console)
    assert out.getvalue().splitlines() == [
        "[1/3] capture alpha",
        "[2/3] capture beta",
        "[3/3] capture gamma",
    ]


def test_ci_means_set_and_not_false() -> None:
    assert in_ci({"CI": "true"})
    assert in_ci({"CI": "1"})
    assert not in_ci({})
    assert not in_ci({"CI": ""})
    assert not in_ci({"CI": "false"})


def test_a_step_past_the_total_raises_the_total() -> None:
    console, out = _console(terminal=False)
    with progress(1, "bench", console=console) as step:
        step("one")
        step("two")
    assert out.getvalue().splitlines() == ["[1/1] bench one", "[2/2] bench two"]


def test_silent_reports_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with silent(2, "capture") as step:
        step("a")
        step("b")
    assert capsys.readouterr() == ("", "")


def test_capture_all_in_a_pipe_prints_a_line_per_scenario_on_stderr(tmp_path: Path) -> None:
    out = lab("capture", "--all", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    n = len(SCENARIOS)
    expected = [f"[{k}/{n}] capture {s.name}" for k, s in enumerate(SCENARIOS, 1)]
    assert [line for line in out.stderr.splitlines() if line.startswith("[")] == expected
    assert "[1/" not in out.stdout  # stdout stays the result
