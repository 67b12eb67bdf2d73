"""A fuzzing run of one codec: inputs in, checks run, failures kept, shrunk and written.

Two engines make the inputs (:func:`run` picks one):

- ``atheris`` (:mod:`lab.fuzz.libfuzzer`): libFuzzer through atheris, coverage-guided on the
  codec's and its reference's Python code. The default when atheris is installed (the
  ``fuzz`` extra).
- ``builtin``: :class:`~lab.fuzz.mutate.Mutator` edits over a corpus, in this process,
  guided by what the codec did (:func:`~lab.fuzz.checks.features`: the kinds of units
  seen, which follows which, the errors). No dependency; repeatable from ``--seed``.

Either way every input goes through :func:`~lab.fuzz.checks.check`. The first input that
fails a given way (one per :attr:`~lab.fuzz.checks.Failure.signature`, at most
:data:`MAX_FINDINGS`) is kept; at the end each is shrunk (:func:`~lab.fuzz.mutate.minimise`)
while it still fails the same way, and written to the output directory as two files:
``CODEC-HASH.bin``, the input's bytes, and ``CODEC-HASH.txt``, what differed and how to
replay it (``lab fuzz CODEC --replay CODEC-HASH.bin``).

A corpus directory (``--corpus``) is read at the start and gets every input that did
something new, one file each, named by the SHA-1 of its bytes as libFuzzer names them, so
the two engines share corpora.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lab.fuzz.checks import Failure, Target, check, features
from lab.fuzz.mutate import MAX_INPUT_SIZE, Mutator, minimise

__all__ = [
    "MAX_FINDINGS",
    "TICK_SECONDS",
    "Finding",
    "Settings",
    "Stats",
    "load_corpus",
    "run_builtin",
    "save_input",
    "write_findings",
]

# Distinct failures kept per run: past a handful, one broken rule is failing many ways and
# the first reproducers say what to fix.
MAX_FINDINGS: Final = 10
# Inputs read from a corpus directory, at most: a corpus grown over days stays loadable in
# seconds.
MAX_CORPUS_FILES: Final = 20_000
# Inputs the built-in engine keeps in memory; past it nothing new is added.
MAX_CORPUS_SIZE: Final = 20_000
# How often the progress line is redrawn (and a pipe gets a line).
TICK_SECONDS: Final = 1.0
# Shrinking each kept failure, at most (MINIMISE_SECONDS in lab.fuzz.mutate is the bound
# on one; this keeps ten findings from adding minutes to a run).
MINIMISE_EACH_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Settings:
    """One run: stop after ``seconds`` or ``runs`` executions, whichever comes first."""

    seconds: float
    runs: int | None
    seed: int
    corpus: Path | None
    out: Path


@dataclass(slots=True)
class Stats:
    """Where a run is: executions, corpus size, coverage (libFuzzer's counters; None for
    the built-in engine, which counts its features instead), the failures kept."""

    engine: str
    execs: int = 0
    corpus: int = 0
    coverage: int | None = None
    features: int = 0
    elapsed: float = 0.0
    failing_execs: int = 0
    failures: dict[str, tuple[Failure, bytes]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.execs / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        cov = f"cov {self.coverage}" if self.coverage is not None else f"features {self.features}"
        return (
            f"{self.execs:,} execs, {self.rate:,.0f}/s, corpus {self.corpus}, {cov}, "
            f"{len(self.failures)} failures"
        )

    def keep(self, failure: Failure, data: bytes) -> None:
        self.failing_execs += 1
        key = failure.signature
        if key not in self.failures and len(self.failures) < MAX_FINDINGS:
            self.failures[key] = (failure, data)


@dataclass(frozen=True, slots=True)
class Finding:
    """A failure written out: the shrunk input's file and the description's."""

    failure: Failure
    data: bytes
    original_size: int
    input_path: Path
    text_path: Path


def load_corpus(directory: Path | None) -> list[bytes]:
    """The inputs in ``directory`` (none if it does not exist yet), each cut at the input
    size limit."""
    if directory is None or not directory.is_dir():
        return []
    files = sorted(p for p in directory.iterdir() if p.is_file())[:MAX_CORPUS_FILES]
    return [p.read_bytes()[:MAX_INPUT_SIZE] for p in files]


def save_input(directory: Path, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / hashlib.sha1(data).hexdigest()
    if not path.exists():
        path.write_bytes(data)
    return path


def run_builtin(target: Target, settings: Settings, tick: Callable[[Stats], None]) -> Stats:
    """The built-in engine: mutate, check, keep what does something new, until ``seconds``
    or ``runs``."""
    stats = Stats("builtin")
    rng = random.Random(settings.seed)
    mutator = Mutator(rng, target.tokens)
    seen: set[str] = set()
    corpus: list[bytes] = []
    started = time.monotonic()
    deadline = started + settings.seconds
    next_tick = started + TICK_SECONDS
    runs = settings.runs if settings.runs is not None else -1
    queue = [*load_corpus(settings.corpus), *target.seeds()]

    while stats.execs != runs:
        now = time.monotonic()
        if now >= deadline:
            break
        if queue:
            data, fresh = queue.pop(), False
        else:
            data, fresh = mutator.mutate(rng.choice(corpus) if corpus else b"", corpus), True
        failure, decoded = check(target, data)
        stats.execs += 1
        if failure is not None:
            stats.keep(failure, data)
        new = features(decoded) - seen
        if new or not fresh:
            seen |= new
            if len(corpus) < MAX_CORPUS_SIZE:
                corpus.append(data)
                if fresh and settings.corpus is not None:
                    save_input(settings.corpus, data)
        if now >= next_tick:
            stats.elapsed, stats.corpus, stats.features = now - started, len(corpus), len(seen)
            tick(stats)
            next_tick = now + TICK_SECONDS
    stats.elapsed = time.monotonic() - started
    stats.corpus, stats.features = len(corpus), len(seen)
    return stats


def write_findings(target: Target, stats: Stats, out: Path) -> list[Finding]:
    """Shrink each kept failure while it fails the same way, and write it to ``out``."""
    found: list[Finding] = []
    for signature, (failure, data) in stats.failures.items():

        def same(candidate: bytes, signature: str = signature) -> bool:
            again, _ = check(target, candidate)
            return again is not None and again.signature == signature

        small = minimise(data, same, seconds=MINIMISE_EACH_SECONDS)
        final, _ = check(target, small)
        if final is not None:
            failure = final  # noqa: PLW2901 - the shrunk input's own words
        out.mkdir(parents=True, exist_ok=True)
        name = f"{target.name}-{hashlib.sha1(small).hexdigest()[:12]}"
        input_path, text_path = out / f"{name}.bin", out / f"{name}.txt"
        input_path.write_bytes(small)
        text_path.write_text(describe(target.name, failure, small, len(data), input_path))
        found.append(Finding(failure, small, len(data), input_path, text_path))
    return found


def describe(codec: str, failure: Failure, data: bytes, original: int, path: Path) -> str:
    """The text written beside a reproducer."""
    shrunk = f" (shrunk from {original})" if original != len(data) else ""
    return (
        f"lab fuzz {codec}: the {failure.check} check failed\n"
        f"\n{failure.detail}\n\n"
        f"input: {len(data)} bytes{shrunk}, in {path.name}\n"
        f"as escaped bytes: {data!r}\n"
        f"as hex: {data.hex(' ')}\n\n"
        f"replay:  lab fuzz {codec} --replay {path}\n"
        f"view:    lab decode {codec} {path}\n"
    )
