"""Progress of long work, on stderr: a bar on a terminal, one plain line per step elsewhere.

One small API for every command that runs many steps (``lab capture``, ``lab tour``, each
``lab bench``, and any later one, such as a comparison, a proxy matrix or a fuzzing run)::

    with progress(len(names), "capture") as step:
        for name in names:
            step(name)  # step `name` starts now; the ones before it are done
            ...

On a terminal (stderr is one, ``TERM`` is not dumb, ``CI`` is not set) a ``rich.progress``
bar shows what is running, how many steps are done of how many, the time spent and the
time left. In a pipe or a CI log each step is one line, ``[3/30] capture h2-multiplex``,
written when the step starts, so that a log shows what was running when something hung.
Nothing goes to stdout, which stays the command's result.

Code that may run without a command line (a notebook, a test) takes a :class:`Reporter`
and defaults to :func:`silent`; the command passes :func:`progress`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Final, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["Reporter", "Step", "in_ci", "progress", "silent"]

# A step starts: the argument says what it is ("h2-multiplex", "round 2 of 5, tracing on").
Step = Callable[[str], None]

# Redraws of the bar per second. Each redraw takes the interpreter lock from the work being
# shown, which a benchmark measures; two a second keep the times on the bar current.
BAR_REFRESH_PER_SECOND: Final = 2.0
# The time left is the remaining steps at the speed of the steps done in this window: ten
# minutes covers the whole of every command here, so the estimate averages all the steps.
SPEED_WINDOW_SECONDS: Final = 600.0


class Reporter(Protocol):
    """:func:`progress` or :func:`silent`: what a long-running function is given."""

    def __call__(self, total: int, what: str) -> AbstractContextManager[Step]: ...


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this runs in a CI job: CI set to anything but empty, ``0`` or ``false``
    (GitHub Actions, GitLab CI and others set ``CI=true``)."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false")


@contextmanager
def silent(total: int, what: str) -> Iterator[Step]:
    """No report at all: the default of functions that a command may call."""

    def step(label: str) -> None:
        return None

    yield step


@contextmanager
def progress(
    total: int, what: str, *, console: Console | None = None, bar: bool | None = None
) -> Iterator[Step]:
    """Report ``total`` steps of ``what`` (a verb or a command: "capture", "bench sse").

    ``console`` is where the report goes (stderr unless given); ``bar`` forces the bar on
    or off (by default: a bar if ``console`` is a terminal that is not dumb, outside CI).
    A step beyond ``total`` raises the total rather than overflowing the bar.
    """
    out = console if console is not None else Console(stderr=True)
    if bar is None:
        bar = out.is_terminal and not out.is_dumb_terminal and not in_ci()
    if bar:
        with _bar(out, total, what) as step:
            yield step
    else:
        yield _lines(out, total, what)


def _lines(out: Console, total: int, what: str) -> Step:
    started = 0

    def step(label: str) -> None:
        nonlocal started
        started += 1
        # Written as it is, not through rich: no markup, no wrapping, one line per step.
        out.file.write(f"[{started}/{max(total, started)}] {what} {label}\n")
        out.file.flush()

    return step


@contextmanager
def _bar(out: Console, total: int, what: str) -> Iterator[Step]:
    shown = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=out,
        refresh_per_second=BAR_REFRESH_PER_SECOND,
        speed_estimate_period=SPEED_WINDOW_SECONDS,
        # stdout is the result, printed by the command itself: never taken over by the bar.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = shown.add_task(what, total=total)
    started = 0

    def step(label: str) -> None:
        nonlocal started
        started += 1
        shown.update(
            task,
            completed=started - 1,
            total=max(total, started),
            description=f"{what} {label}",
        )
        shown.refresh()

    with shown:
        yield step
        shown.update(task, completed=max(total, started), description=f"{what}: done")
