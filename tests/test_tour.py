"""`lab tour`: the table of contents, running only the scenarios named, the pause between
scenarios (only with someone at a terminal), and what to try next. The terminal cases run
the command on a pseudo-terminal, as a user's shell would."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rich.console import Console

from lab.cli import build_parser
from lab.scenarios import SCENARIOS, get
from lab.scenarios.http1 import HTTP1_SCENARIOS
from lab.scenarios.http2 import HTTP2_SCENARIOS
from lab.scenarios.mcp import MCP_SCENARIOS
from lab.scenarios.polling import POLLING_SCENARIOS
from lab.scenarios.sse import SSE_SCENARIOS
from lab.scenarios.websocket import WEBSOCKET_SCENARIOS
from lab.tour import choose, go_on, interactive, next_steps, run_tour
from tests.serverthread import server_in_thread
from tests.test_cli import CLI_TIMEOUT, lab

ROOT = Path(__file__).resolve().parent.parent
# The first words of each scenario's story: shown once the scenario is.
STORY_START = 40
STORIES = {s.name: s.story[:STORY_START] for s in SCENARIOS}
assert len(set(STORIES.values())) == len(STORIES), "stories must start differently"
# A heading of a scenario in the tour: "12. sse-heartbeat · Server-Sent Events ...".
HEADING = re.compile(r"(\d+)\. (\S+) · ")


def test_list_is_the_table_of_contents_by_chapter() -> None:
    out = lab("tour", "--list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    chapters = {"http1": HTTP1_SCENARIOS, "sse": SSE_SCENARIOS}
    chapters |= {"http2": HTTP2_SCENARIOS, "mcp": MCP_SCENARIOS}
    chapters |= {"websocket": WEBSOCKET_SCENARIOS, "polling": POLLING_SCENARIOS}
    for number, s in enumerate(SCENARIOS, 1):
        pattern = rf"\s*{number}\s+{re.escape(s.name)}\s+{re.escape(s.summary)}"
        at = [i for i, line in enumerate(lines) if re.fullmatch(pattern, line)]
        assert len(at) == 1, s.name
        # Under the heading of its protocol's chapter.
        heading = next(line for line in reversed(lines[: at[0]]) if "(lab tour " in line)
        key = re.search(r"\(lab tour (\w+)\)", heading)
        assert key, heading
        assert s in chapters[key.group(1)], (s.name, heading)
    assert "[1/" not in out.stderr  # nothing ran


def test_tour_runs_only_the_named_scenarios_and_ends_with_what_to_try_next() -> None:
    out = lab("tour", "token-stream", "sse-events")
    assert out.returncode == 0, out.stderr
    assert [m.group(2) for m in HEADING.finditer(out.stdout)] == ["token-stream", "sse-events"]
    for name, story in STORIES.items():
        assert (story in out.stdout) == (name in ("token-stream", "sse-events")), name
    summary = out.stdout[out.stdout.index("summary (all figures") :]
    rows = re.findall(r"^│ (\S+)\s*│", summary, re.MULTILINE)
    assert rows == ["token-stream", "sse-events"]
    assert out.stderr.splitlines() == ["[1/2] run token-stream", "[2/2] run sse-events"]
    # The last section: commands, the next scenario and the golden capture of the last.
    after = summary[summary.index("what to try next") :]
    assert "lab tour sse-multiline" in after
    assert "lab tour --list" in after
    assert "lab show captures/sse-events.trace --view sequence" in after
    assert "lab show captures/sse-events.trace --color always | less -R" in after
    assert "lab serve" in after
    assert "lab notebooks" in after


def test_tour_takes_numbers_and_chapters() -> None:
    assert [s.name for s in choose(["1", "sse-events", "1"])] == ["fixed-length", "sse-events"]
    assert choose(["mcp"]) == list(MCP_SCENARIOS)
    assert choose([]) == list(SCENARIOS)


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("sse-evnts", "no scenario 'sse-evnts' (did you mean sse-events"),
        ("999", "no scenario '999'"),
    ],
)
def test_an_unknown_name_fails_with_exit_2_and_says_how_to_see_the_names(
    word: str, says: str
) -> None:
    out = lab("tour", "token-stream", word)
    assert out.returncode == 2
    assert out.stderr.startswith(f"lab tour: {says}")
    assert "`lab tour --list` shows every scenario" in out.stderr
    assert out.stdout == ""  # nothing ran


def test_next_steps_are_commands_the_lab_takes_on_files_that_exist() -> None:
    parser = build_parser()
    for scenario in (SCENARIOS[0], get("sse-events"), SCENARIOS[-1]):
        commands = [c for _, steps in next_steps(scenario, cwd=ROOT) for c, _ in steps]
        lab_commands = [c for c in commands if c.startswith("lab ")]
        assert len(lab_commands) >= 6
        for command in lab_commands:
            argv = shlex.split(command.split("|")[0])[1:]
            args = parser.parse_args(argv)  # exits (fails the test) on a wrong command
            if args.command == "show":
                assert (ROOT / args.file).is_file(), command
    # The last scenario has no next one; the others name the one after them.
    assert not any(c.startswith(f"lab tour {SCENARIOS[0].name}") for c in commands)
    first = [c for _, steps in next_steps(SCENARIOS[0], cwd=ROOT) for c, _ in steps]
    assert f"lab tour {SCENARIOS[1].name}" in first


@pytest.mark.interop
def test_the_curl_lines_of_next_steps_stream_from_a_lab_server() -> None:
    curls = [c for _, steps in next_steps(SCENARIOS[0], cwd=ROOT) for c, _ in steps if "curl" in c]
    assert len(curls) == 3
    with server_in_thread() as server:
        for line in curls:
            argv = shlex.split(line.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"))
            done = subprocess.run(
                [*argv, "--silent", "--show-error", "--fail", "--max-time", "30"],
                capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
            )  # fmt: skip
            assert done.returncode == 0, (line, done.stderr)
            assert "[DONE]" in done.stdout or "id: 3" in done.stdout, line
    # The lines name the port `lab serve` listens on by default.
    assert build_parser().parse_args(["serve"]).port == 8080


# -- the pause, in-process -----------------------------------------------------------


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_only_two_terminals_outside_ci_are_interactive() -> None:
    tty, pipe = _Stream(True), _Stream(False)
    assert interactive(tty, tty, {})
    assert not interactive(pipe, tty, {})
    assert not interactive(tty, pipe, {})
    assert not interactive(tty, tty, {"CI": "true"})
    assert interactive(tty, tty, {"CI": "false"})


def test_go_on_asks_and_honours_q() -> None:
    asked: list[str] = []

    def answer(text: str) -> str:
        def read(prompt: str) -> str:
            asked.append(prompt)
            return text

        return read

    assert go_on(answer(""), "chunked")
    assert asked == ["press Enter for the next scenario (chunked), q to stop: "]
    assert not go_on(answer("q"), "chunked")
    assert not go_on(answer(" Q \n"), "chunked")

    def end_of_input(prompt: str) -> str:
        raise EOFError

    assert not go_on(end_of_input, "chunked")


def _tour(answers: list[str] | None) -> tuple[str, list[str]]:
    """Tour two scenarios into a string; ``answers`` for each pause (None: no pausing, and
    any read fails the test)."""
    asked: list[str] = []

    def read(prompt: str) -> str:
        assert answers is not None, "read while not interactive"
        asked.append(prompt)
        return answers.pop(0)

    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    chosen = [get("fixed-length"), get("chunked")]
    run_tour(console, chosen, pause=answers is not None, read=read)
    return out.getvalue(), asked


def test_interactive_tour_waits_between_scenarios_and_stops_on_q() -> None:
    text, asked = _tour(["q"])
    assert len(asked) == 1  # once, before the second scenario
    assert "(chunked)" in asked[0]
    assert STORIES["fixed-length"] in text
    assert STORIES["chunked"] not in text
    assert "tour stopped after 1 of 2 scenarios" in text
    assert "what to try next" in text
    assert "lab tour chunked" in text  # where to pick up

    text, asked = _tour([""])
    assert len(asked) == 1
    assert STORIES["chunked"] in text


def test_a_tour_that_is_not_interactive_never_reads() -> None:
    text, _ = _tour(None)
    assert STORIES["fixed-length"] in text
    assert STORIES["chunked"] in text


# -- the pause, on a pseudo-terminal ------------------------------------------------------

# Bound on one tour on a pseudo-terminal, and on each wait for its output.
PTY_TIMEOUT = 120
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _terminal() -> tuple[int, int]:
    master, slave = pty.openpty()
    # 50 rows of 160 columns, so that rich has a width (a fresh pty has none).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    return master, slave


def _read_until(master: int, proc: subprocess.Popen[bytes], until: str | None) -> str:
    """What the terminal shows, until ``until`` appears (None: until the process ends)."""
    seen = b""
    deadline = time.monotonic() + PTY_TIMEOUT
    while time.monotonic() < deadline:
        if until is not None and until in ANSI.sub("", seen.decode(errors="replace")):
            break
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every process let go of the terminal
            break
        if not data:
            break
        seen += data
    else:
        raise AssertionError(f"waited {PTY_TIMEOUT} s for {until!r}; saw {seen[-500:]!r}")
    return ANSI.sub("", seen.decode(errors="replace"))


def _env(**extra: str) -> dict[str, str]:
    base = {"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "TERM": "xterm"}
    return base | extra


def _start(
    args: list[str], *, stdin: int, stdout: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lab", "tour", *args],
        stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stdin_tty", "stdout_tty", "ci"),
    [(False, True, ""), (True, False, ""), (True, True, "true")],
    ids=["stdin-a-pipe", "stdout-a-pipe", "ci"],
)
def test_the_tour_never_waits_without_someone_at_a_terminal(
    stdin_tty: bool, stdout_tty: bool, ci: str
) -> None:
    master, slave = _terminal()
    env = _env(CI=ci) if ci else _env()
    proc = _start(
        ["fixed-length", "chunked"],
        stdin=slave if stdin_tty else subprocess.PIPE,  # a pipe never written to
        stdout=slave if stdout_tty else subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    try:
        if stdout_tty:
            shown = _read_until(master, proc, None)
        else:  # stdin is the terminal, so communicate leaves it alone
            shown = proc.communicate(timeout=PTY_TIMEOUT)[0].decode()
        assert proc.wait(timeout=PTY_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=PTY_TIMEOUT)
        os.close(master)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert "press Enter" not in shown
    assert STORIES["chunked"] in shown
    assert "what to try next" in shown


@pytest.mark.parametrize("answer", ["q", ""])
def test_at_a_terminal_the_tour_waits_for_enter_and_q_stops_it(answer: str) -> None:
    master, slave = _terminal()
    proc = _start(["fixed-length", "chunked"], stdin=slave, stdout=slave, env=_env())
    os.close(slave)
    try:
        before = _read_until(master, proc, "press Enter for the next scenario (chunked)")
        assert STORIES["fixed-length"] in before
        assert STORIES["chunked"] not in before
        assert proc.poll() is None  # waiting for the answer
        os.write(master, f"{answer}\n".encode())
        after = _read_until(master, proc, None)
        assert proc.wait(timeout=PTY_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=PTY_TIMEOUT)
        os.close(master)
        assert proc.stderr is not None
        proc.stderr.close()
    assert (STORIES["chunked"] in after) == (answer == "")
    assert ("tour stopped after 1 of 2 scenarios" in after) == (answer == "q")
    assert "what to try next" in after


def test_no_pause_runs_straight_through_at_a_terminal() -> None:
    master, slave = _terminal()
    proc = _start(["fixed-length", "chunked", "--no-pause"], stdin=slave, stdout=slave, env=_env())
    os.close(slave)
    try:
        shown = _read_until(master, proc, None)
        assert proc.wait(timeout=PTY_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=PTY_TIMEOUT)
        os.close(master)
        assert proc.stderr is not None
        proc.stderr.close()
    assert "press Enter" not in shown
    assert STORIES["chunked"] in shown
