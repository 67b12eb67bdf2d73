"""``lab fuzz CODEC``: a run with a progress line and a summary, and ``--replay``.

The summary goes to stdout, one line (``fuzz chunked: 41,230 execs in 10.0 s (4,123/s),
corpus 812, cov 1342, 0 failures``), then a paragraph per failure with its reproducer; the
progress line (executions, executions per second, corpus, coverage, failures) goes to
stderr through :mod:`lab.progress`, a bar on a terminal and a line a second in a pipe.
The exit status is 0 when every input passed, 1 when something failed.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from rich.console import Console

from lab.decode import CODECS, render_decoded
from lab.fuzz.checks import Target, check
from lab.fuzz.engine import TICK_SECONDS, Settings, Stats, run_builtin, write_findings
from lab.fuzz.libfuzzer import available, run_atheris
from lab.fuzz.mutate import MAX_INPUT_SIZE
from lab.fuzz.server import fuzz_server, replay_server, write_server_findings
from lab.progress import Reporter

__all__ = [
    "DEFAULT_SECONDS",
    "ENGINES",
    "RUNS_TIME_CAP",
    "EngineMissing",
    "add_arguments",
    "fuzz_codec",
    "replay",
    "run",
    "summary",
]

ENGINES: Final = ("auto", "atheris", "builtin")
# A run without --seconds: long enough for the coverage to level off on these codecs,
# short enough to wait for.
DEFAULT_SECONDS: Final = 30.0
# A run bounded by --runs alone still stops after this long.
RUNS_TIME_CAP: Final = 3600.0
_ENGINE_WORDS: Final = {
    "atheris": "libFuzzer through atheris, coverage-guided",
    "builtin": "built-in mutations, guided by the units decoded",
}


class EngineMissing(RuntimeError):
    """``--engine atheris`` where atheris is not installed."""


def _engine(asked: str) -> str:
    if asked == "builtin" or (asked == "auto" and not available()):
        return "builtin"
    if not available():
        raise EngineMissing(
            "atheris is not installed: pip install -e '.[fuzz]' (Linux x86_64), or --engine builtin"
        )
    return "atheris"


def summary(name: str, stats: Stats) -> str:
    coverage = (
        f"cov {stats.coverage}" if stats.coverage is not None else (f"features {stats.features}")
    )
    return (
        f"fuzz {name}: {stats.execs:,} execs in {stats.elapsed:.1f} s ({stats.rate:,.0f}/s), "
        f"corpus {stats.corpus}, {coverage}, {len(stats.failures)} failures"
    )


def _targets() -> dict[str, Target]:
    # The references (httpx-sse among them) are imported when a codec is fuzzed.
    from lab.fuzz.targets import TARGETS  # noqa: PLC0415

    return TARGETS


def fuzz_codec(
    name: str, settings: Settings, engine: str, report: Reporter, console: Console
) -> int:
    """Run the fuzzer of codec ``name``; print the summary and the failures; 0 if none."""
    target = _targets()[name]
    chosen = _engine(engine)
    references = ", ".join(r.name for r in target.references)
    bound = f"{settings.seconds:g} s" + (f" or {settings.runs:,} runs" if settings.runs else "")
    console.print(
        f"fuzzing {name} ({target.codec.what}) against {references}: "
        f"{_ENGINE_WORDS[chosen]}, {bound}, seed {settings.seed}",
        soft_wrap=True,
    )
    run = run_atheris if chosen == "atheris" else run_builtin
    with report(max(1, math.ceil(settings.seconds / TICK_SECONDS)), f"fuzz {name}") as step:
        stats = run(target, settings, lambda s: step(s.line()))
    findings = write_findings(target, stats, settings.out)
    console.print(summary(name, stats), soft_wrap=True)
    for finding in findings:
        first, *_ = finding.failure.detail.splitlines() or [""]
        console.print(f"FAILED {finding.failure.check}: {first}", soft_wrap=True, markup=False)
        console.print(
            f"  reproducer: {finding.input_path} ({len(finding.data)} bytes, shrunk from "
            f"{finding.original_size}); what differed: {finding.text_path}",
            soft_wrap=True, markup=False,
        )  # fmt: skip
        console.print(f"  replay: lab fuzz {name} --replay {finding.input_path}", markup=False)
    return 1 if findings else 0


def replay(name: str, path: Path, console: Console) -> int:
    """Run every check on the input in ``path``: its annotated view, then what differs;
    1 if it still fails."""
    data = path.read_bytes()[:MAX_INPUT_SIZE]
    target = _targets()[name]
    failure, decoded = check(target, data)
    console.print(f"{path}: {len(data)} bytes through {name}", soft_wrap=True, markup=False)
    if decoded is not None:
        render_decoded(decoded, data, console)
    if failure is None:
        references = ", ".join(r.name for r in target.references)
        console.print(
            f"passes: every invariant holds; no difference from {references} but the "
            "documented ones",
            soft_wrap=True,
        )
        return 0
    console.print(f"FAILED {failure.check}:", style="bold red")
    console.print(failure.detail, soft_wrap=True, markup=False)
    return 1


def fuzz_the_server(settings: Settings, report: Reporter, console: Console) -> int:
    """``lab fuzz server``: cases against a lab server process; 0 if it stayed healthy."""
    console.print(
        "fuzzing a `lab serve` process with generated and mutated HTTP/1.1 and h2c "
        f"requests: {settings.seconds:g} s"
        + (f" or {settings.runs:,} cases" if settings.runs else "")
        + f", seed {settings.seed}",
        soft_wrap=True,
    )
    with report(max(1, math.ceil(settings.seconds / TICK_SECONDS)), "fuzz server") as step:
        stats = fuzz_server(settings, lambda s: step(s.line()))
    console.print(
        f"fuzz server: {stats.cases:,} cases in {stats.elapsed:.1f} s ({stats.rate:,.1f}/s), "
        f"{stats.leak_checks} leak checks, {len(stats.failures)} failures",
        soft_wrap=True,
    )
    for failure, path in write_server_findings(stats, settings.out):
        console.print(f"FAILED {failure.check}: {failure.detail}", soft_wrap=True, markup=False)
        console.print(f"  case: {path}; replay: lab fuzz server --replay {path}", markup=False)
    return 1 if stats.failures else 0


def replay_the_server(path: Path, console: Console) -> int:
    case = path.read_bytes()
    console.print(f"{path}: {len(case)} bytes on one connection to a fresh `lab serve`",
                  soft_wrap=True, markup=False)  # fmt: skip
    outcome, leak = replay_server(case)
    console.print(
        f"the server sent {len(outcome.answer)} bytes and the connection ended: {outcome.ending}",
        markup=False,
    )
    problems = [str(outcome.failure)] if outcome.failure is not None else []
    problems += [f"leak: {leak}"] if leak is not None else []
    if not problems:
        console.print("passes: the server answered validly and kept nothing open")
        return 0
    for problem in problems:
        console.print(f"FAILED {problem}", soft_wrap=True, markup=False)
    return 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lab fuzz``."""
    p.add_argument("codec", choices=[*CODECS, "server"], help="what to fuzz")
    p.add_argument("--seconds", type=_positive(float), default=None,
                   help=f"how long (default {DEFAULT_SECONDS:g}, or up to "
                   f"{RUNS_TIME_CAP:g} with --runs)")  # fmt: skip
    p.add_argument(
        "--runs",
        type=_positive(int),
        default=None,
        help="stop after this many inputs (cases, for server)",
    )
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: random)")
    p.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                   help="a codec's inputs: read from DIR, every new one kept there")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("fuzz-findings"), metavar="DIR",
                   help="where failing inputs are written (.bin and .txt)")  # fmt: skip
    p.add_argument("--replay", type=Path, default=None, metavar="FILE",
                   help="run one saved input again: its view, what differs; exit 1 if "
                   "it still fails")  # fmt: skip
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="atheris (coverage-guided; default if installed) or builtin")  # fmt: skip


def run(args: argparse.Namespace, console: Console, report: Reporter) -> int:
    """``lab fuzz`` as the command line runs it."""
    if args.replay is not None:
        if args.codec == "server":
            return replay_the_server(args.replay, console)
        try:
            return replay(args.codec, args.replay, console)
        except ModuleNotFoundError as exc:
            print(f"lab fuzz: {exc.name} is needed: pip install -e '.[fuzz]'", file=sys.stderr)
            return 2
    seconds = (
        args.seconds
        if args.seconds is not None
        else (DEFAULT_SECONDS if args.runs is None else RUNS_TIME_CAP)
    )
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    settings = Settings(seconds, args.runs, seed, args.corpus, args.out)
    if args.codec == "server":
        return fuzz_the_server(settings, report, console)
    try:
        return fuzz_codec(args.codec, settings, args.engine, report, console)
    except EngineMissing as exc:
        print(f"lab fuzz: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        print(f"lab fuzz: {exc.name} is needed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    return parse
