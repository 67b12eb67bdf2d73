"""The tour (``lab tour``): the scenarios in chapters, chosen by name, number or chapter,
run against one lab server with progress on stderr, each shown with its story and its
annotated bytes, a pause between them in a terminal, the summary table, and what to try
next. Also the scenario runner with a progress step that ``lab capture`` uses.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import trio
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lab.capture.annotate import annotate
from lab.capture.trace import Trace
from lab.capture.views import data_arrivals, render
from lab.progress import Reporter, in_ci, silent
from lab.scenarios import SCENARIOS, Scenario
from lab.scenarios.http1 import HTTP1_SCENARIOS
from lab.scenarios.http2 import HTTP2_SCENARIOS
from lab.scenarios.mcp import MCP_SCENARIOS
from lab.scenarios.polling import POLLING_SCENARIOS
from lab.scenarios.runner import run_scenario, serve_for_scenarios
from lab.scenarios.sse import SSE_SCENARIOS
from lab.scenarios.websocket import WEBSOCKET_SCENARIOS
from lab.wire.h2frames import HeadersFrame

__all__ = [
    "CHAPTERS",
    "PROMPT",
    "SUMMARY_TITLE",
    "Chapter",
    "UnknownScenario",
    "choose",
    "contents",
    "go_on",
    "interactive",
    "next_steps",
    "run_tour",
    "run_with_progress",
    "summary_row",
]

# Where `lab capture --all --out captures` keeps the golden captures: the repository's
# captures/ directory, beside the lab package (an editable install, as dev.py makes).
GOLDEN: Final = Path(__file__).resolve().parent.parent / "captures"
SUMMARY_TITLE: Final = "summary (all figures read off this run's traces)"
PROMPT: Final = "press Enter for the next scenario ({name}), q to stop: "
# The port `lab serve` listens on unless told otherwise (its --port default).
SERVE_URL: Final = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class Chapter:
    key: str  # `lab tour KEY` runs the whole chapter
    title: str
    scenarios: tuple[Scenario, ...]


def _chapters() -> tuple[Chapter, ...]:
    known = (
        Chapter("http1", "HTTP/1.1: Content-Length, chunked coding, connections", HTTP1_SCENARIOS),
        Chapter("sse", "Server-Sent Events over HTTP/1.1", SSE_SCENARIOS),
        Chapter("http2", "HTTP/2: frames, streams, flow control", HTTP2_SCENARIOS),
        Chapter("mcp", "MCP Streamable HTTP", MCP_SCENARIOS),
        Chapter("websocket", "WebSocket over HTTP/1.1 and HTTP/2", WEBSOCKET_SCENARIOS),
        Chapter("polling", "Polling and long polling", POLLING_SCENARIOS),
    )
    registered = {s.name for s in SCENARIOS}
    chapters = [
        Chapter(c.key, c.title, tuple(s for s in c.scenarios if s.name in registered))
        for c in known
    ]
    placed = {s.name for c in chapters for s in c.scenarios}
    rest = tuple(s for s in SCENARIOS if s.name not in placed)
    if rest:  # a scenario registered outside these modules still gets a place
        chapters.append(Chapter("other", "other scenarios", rest))
    return tuple(c for c in chapters if c.scenarios)


# The table of contents: each scenario of SCENARIOS in exactly one chapter.
CHAPTERS: Final = _chapters()
_NUMBER: Final = {s.name: n for n, s in enumerate(SCENARIOS, 1)}
_CHAPTER_OF: Final = {s.name: c for c in CHAPTERS for s in c.scenarios}


class UnknownScenario(ValueError):
    """A word of ``lab tour WORD...`` that names no scenario, number or chapter."""


def choose(words: Sequence[str]) -> list[Scenario]:
    """The scenarios that ``words`` name (scenario names, numbers from ``lab tour --list``,
    chapter keys), in the order given, each once; every scenario when ``words`` is empty."""
    if not words:
        return list(SCENARIOS)
    chosen: dict[str, Scenario] = {}
    for word in words:
        for scenario in _lookup(word):
            chosen.setdefault(scenario.name, scenario)
    return list(chosen.values())


def _lookup(word: str) -> tuple[Scenario, ...]:
    if word.isdigit() and 1 <= int(word) <= len(SCENARIOS):
        return (SCENARIOS[int(word) - 1],)
    for chapter in CHAPTERS:
        if word == chapter.key:
            return chapter.scenarios
    for scenario in SCENARIOS:
        if word == scenario.name:
            return (scenario,)
    words = [s.name for s in SCENARIOS] + [c.key for c in CHAPTERS]
    close = difflib.get_close_matches(word, words, n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UnknownScenario(
        f"no scenario {word!r}{hint}; `lab tour --list` shows every scenario by number "
        "and name, in chapters"
    )


def contents(console: Console) -> None:
    """``lab tour --list``: one line per scenario (number, name, summary) under its chapter."""
    console.print(
        f"streamlab tour: {len(SCENARIOS)} scenarios in {len(CHAPTERS)} chapters. "
        "`lab tour WORD...` runs only those named (a name, a number or a chapter).",
        soft_wrap=True,
    )
    width = max(len(s.name) for s in SCENARIOS)
    digits = len(str(len(SCENARIOS)))
    for chapter in CHAPTERS:
        console.print()
        console.print(Text(f"{chapter.title}  (lab tour {chapter.key})", style="bold"))
        for s in chapter.scenarios:
            line = f"  {_NUMBER[s.name]:>{digits}}  {s.name:<{width}}  {s.summary}"
            console.print(Text(line), soft_wrap=True)


# -- pausing ---------------------------------------------------------------------------


class _Stream(Protocol):
    def isatty(self) -> bool: ...


def interactive(stdin: _Stream, stdout: _Stream, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether someone is at a terminal to press Enter: stdin and stdout both terminals,
    and not a CI job (which may give a job a pseudo-terminal with no one at it)."""
    return stdin.isatty() and stdout.isatty() and not in_ci(environ)


def go_on(read: Callable[[str], str], next_name: str) -> bool:
    """Ask whether to show the next scenario; False on q, end of input or Control-C."""
    try:
        answer = read(PROMPT.format(name=next_name))
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() not in ("q", "quit")


# -- running and showing ---------------------------------------------------------------


async def run_with_progress(
    chosen: Sequence[Scenario], report: Reporter = silent, what: str = "run"
) -> list[Trace]:
    """Run scenarios in order against one lab server, a progress step per scenario."""
    traces = []
    with report(len(chosen), what) as step:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_for_scenarios)
            for scenario in chosen:
                step(scenario.name)
                traces.append(await run_scenario(scenario, server))
            server.shutdown()
    return traces


def summary_row(trace: Trace) -> tuple[str, ...]:
    """Figures for the tour's summary table, all read off the trace."""
    up = sum(len(c.client_to_server()) for c in trace.connections)
    down = sum(len(c.server_to_client()) for c in trace.connections)
    requests = sum(
        1
        for ac in annotate(trace)
        for a in ac.items
        # An HTTP/1.1 request line, or the HEADERS frame that opens an HTTP/2 stream.
        if a.segment.kind == "request-line"
        or (a.from_client and isinstance(a.segment, HeadersFrame))
    )
    arrivals = data_arrivals(trace)
    if arrivals:
        first, last = arrivals[0][1], arrivals[-1][1]
        times = f"{first * 1000:.1f} / {last * 1000:.1f}"
    else:
        times = "-"
    return (
        trace.name,
        str(len(trace.connections)),
        str(requests),
        str(up),
        str(down),
        str(len(arrivals)),
        times,
    )


def _summary(traces: Sequence[Trace]) -> Table:
    table = Table(title=SUMMARY_TITLE)
    for column in (
        "scenario", "conns", "requests", "bytes C→S", "bytes S→C",
        "body pieces", "first / last body byte, ms",
    ):  # fmt: skip
        table.add_column(column, no_wrap=True)
    for trace in traces:
        table.add_row(*summary_row(trace))
    return table


def run_tour(
    console: Console,
    chosen: Sequence[Scenario],
    *,
    pause: bool,
    read: Callable[[str], str] | None = None,
    report: Reporter = silent,
) -> int:
    """Run ``chosen``, show each, then the summary and what to try next; the number shown.

    With ``pause``, ``read`` is asked before each scenario after the first (see
    :func:`go_on`); without, it is never called. By default it prints the prompt on
    ``console`` (``input()`` would print it on stderr) and reads a line of stdin.
    """
    if read is None:

        def read(prompt: str) -> str:
            return console.input(prompt, markup=False)

    console.rule("[bold]streamlab tour: streaming HTTP on the wire")
    console.print(
        "Each scenario below ran just now against a lab server on 127.0.0.1. Every row is "
        "a byte range that really crossed the socket, with its time (ms since connect), "
        "its direction (C→S client to server, S→C back) and what it means."
    )
    console.print(
        f"{len(chosen)} of {len(SCENARIOS)} scenarios; `lab tour --list` shows them all."
        + (" Enter shows the next one, q stops." if pause and len(chosen) > 1 else "")
    )
    traces = trio.run(run_with_progress, chosen, report, "run")
    shown: list[Trace] = []
    for k, (scenario, trace) in enumerate(zip(chosen, traces, strict=True)):
        if k and pause and not go_on(read, scenario.name):
            console.print(f"tour stopped after {k} of {len(chosen)} scenarios")
            break
        chapter = _CHAPTER_OF[scenario.name]
        console.rule(
            f"[bold]{_NUMBER[scenario.name]}. {escape(scenario.name)}[/] · {escape(chapter.title)}"
        )
        console.print(escape(scenario.story), style="italic")
        render(trace, "annotated", console)
        shown.append(trace)
    console.rule()
    console.print(_summary(shown))
    last = chosen[len(shown) - 1]
    console.rule("[bold]what to try next")
    for heading, steps in next_steps(last):
        console.print(Text(heading, style="underline"))
        width = max(len(command) for command, _ in steps)
        for command, what in steps:
            line = Text(f"  {command:<{width}}", style="bold")
            line.append(f"  # {what}", style="dim")
            console.print(line, soft_wrap=True)
    return len(shown)


def _shown_path(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


Steps = list[tuple[str, str]]


def next_steps(last: Scenario, cwd: Path | None = None) -> list[tuple[str, Steps]]:
    """Commands to try after the tour stopped at ``last``, each with what it does, under a
    heading per kind of thing to do."""
    here = Path.cwd() if cwd is None else cwd
    chapter = _CHAPTER_OF[last.name]
    tour: Steps = []
    number = _NUMBER[last.name]
    if number < len(SCENARIOS):
        following = SCENARIOS[number]
        tour.append((f"lab tour {following.name}", f"the next scenario: {following.summary}"))
    tour += [
        ("lab tour --list", "every scenario by number and name, in chapters"),
        (f"lab tour {chapter.key}", f"the whole chapter: {chapter.title}"),
    ]
    golden = GOLDEN / f"{last.name}.trace"
    own = f"lab capture {last.name} --out my-captures"
    if golden.exists():
        trace = _shown_path(golden, here)
        bytes_: Steps = []
        what = f"the golden capture of {last.name}"
    else:
        trace = f"my-captures/{last.name}.trace"
        bytes_ = [(own, f"a capture of {last.name}: .trace and .pcapng")]
        what = f"that capture of {last.name}"
    bytes_ += [
        (f"lab show {trace} --view sequence", f"{what} as a sequence diagram"),
        (f"lab show {trace} --view timeline", "when each byte arrived"),
        (f"lab show {trace} --color always | less -R", "page through it, in colour"),
    ]
    if golden.exists():
        bytes_.append((own, "a run of your own: .trace and .pcapng (Wireshark opens it)"))
    server: Steps = [
        ("lab serve", "the lab's server on 127.0.0.1:8080; then, in another terminal:"),
        (f"curl -N '{SERVE_URL}/tokens?n=5&interval_ms=300'", "a chunked token stream"),
        (f"curl -N '{SERVE_URL}/events?n=3&interval_ms=500'", "Server-Sent Events"),
        (
            f"curl -N --http2-prior-knowledge '{SERVE_URL}/tokens?n=5&interval_ms=300'",
            "the same tokens in HTTP/2 DATA frames",
        ),
    ]
    more: Steps = [
        ("lab notebooks", "the lessons in JupyterLab (python3 dev.py notebooks installs it)"),
        ("lab bench chunked", "the lab's chunked decoder against h11, side by side"),
    ]
    return [
        ("the tour", tour),
        ("the bytes", bytes_),
        ("a server of your own", server),
        ("more", more),
    ]
