"""The coverage-guided engine: libFuzzer, through atheris, in a child process.

atheris (Google's libFuzzer for Python) instruments Python bytecode so that libFuzzer sees
which branches each input took, and keeps the inputs that reach new ones: coverage-guided
fuzzing, the way C parsers are fuzzed. Only the codec's modules and its reference's are
instrumented (:attr:`~lab.fuzz.checks.Target.modules`): coverage of the rest (the checks,
Python's own library) would only slow it down.

libFuzzer owns the process it runs in (it exits when it is done), so the run happens in a
child made with :func:`os.fork`: the child has everything this process has (including a
decoder a test replaced), instruments it and runs ``atheris.Fuzz()``. The child reports on
two pipes: libFuzzer's own log (``cov:`` and ``corp:`` give the coverage and the corpus
size) and a line of JSON per second from the test function itself (executions, and each
first failure of a kind, with its input). The test function stops the child itself when
the time or the run count is up, so libFuzzer's own ``-max_total_time`` is only a
backstop, and this process kills a child that outlives it by :data:`KILL_GRACE_SECONDS`.

Inputs start from the seeds (and a ``--corpus`` directory, which also gets every input
libFuzzer finds new coverage with); the target's tokens become libFuzzer's dictionary. An
input that makes the child crash outright (an interpreter abort, a hang past
:data:`SLOW_INPUT_SECONDS`, memory past :data:`RSS_LIMIT_MB`) is written by libFuzzer to
an artifact and reported as a failure of its own.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import math
import os
import re
import selectors
import signal
import sys
import tempfile
import time
import types
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from lab.fuzz.checks import Failure, Target, check
from lab.fuzz.engine import TICK_SECONDS, Settings, Stats, load_corpus, save_input
from lab.fuzz.mutate import MAX_INPUT_SIZE

__all__ = ["available", "run_atheris"]

# One input may run this long before libFuzzer calls it a hang (an execution takes
# microseconds; ten seconds is a loop that does not end).
SLOW_INPUT_SECONDS: Final = 10
# The child's memory, at most: the decoders hold at most a few frames or lines, so more is
# a leak or a buffer without a bound.
RSS_LIMIT_MB: Final = 2048
# Past its deadline, the child gets this long to stop on its own (instrumenting the code
# and running the seeds come first), then it is killed.
KILL_GRACE_SECONDS: Final = 30.0
# libFuzzer log lines kept, to say why a child died.
LOG_LINES: Final = 20

_STATS: Final = re.compile(rb"cov: (\d+) .*?corp: (\d+)")


def available() -> bool:
    """Whether atheris can be imported here."""
    return importlib.util.find_spec("atheris") is not None


def _dictionary(tokens: tuple[bytes, ...]) -> str:
    """The tokens in libFuzzer's dictionary format: one quoted string a line, \\xNN escapes."""
    lines = []
    for token in tokens:
        escaped = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}"
                          for b in token)  # fmt: skip
        lines.append(f'"{escaped}"')
    return "\n".join(lines) + "\n"


def _instrument(atheris: Any, prefixes: tuple[str, ...]) -> None:
    """atheris coverage for every function of the modules named by ``prefixes``."""
    for obj in gc.get_objects():
        if (
            isinstance(obj, types.FunctionType)
            and isinstance(getattr(obj, "__module__", None), str)
            and obj.__module__.startswith(prefixes)
        ):
            with contextlib.suppress(Exception):
                atheris.instrument_func(obj)


def _child(target: Target, settings: Settings, dirs: list[str], work: Path, report: int) -> None:
    """In the child: run libFuzzer until the deadline or the run count; never returns."""
    atheris = importlib.import_module("atheris")
    _instrument(atheris, target.modules)
    started = time.monotonic()
    deadline = started + settings.seconds
    runs = settings.runs if settings.runs is not None else -1
    state = {"execs": 0, "next": started + TICK_SECONDS, "failing": 0}
    kept: set[str] = set()

    def send(message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            os.write(report, (json.dumps(message) + "\n").encode())

    def one(data: bytes) -> None:
        failure, _ = check(target, data)
        state["execs"] += 1
        if failure is not None:
            state["failing"] += 1
            if failure.signature not in kept:
                kept.add(failure.signature)
                send({"check": failure.check, "detail": failure.detail, "input": data.hex()})
        now = time.monotonic()
        if now >= state["next"] or now >= deadline or state["execs"] == runs:
            state["next"] = now + TICK_SECONDS
            send({"execs": state["execs"], "failing": state["failing"], "elapsed": now - started})
            if now >= deadline or state["execs"] == runs:
                os._exit(0)

    args = [
        "lab-fuzz", f"-seed={settings.seed or 1}", f"-max_len={MAX_INPUT_SIZE}",
        f"-timeout={SLOW_INPUT_SECONDS}", f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_total_time={math.ceil(settings.seconds) + 1}", f"-dict={work / 'tokens.dict'}",
        f"-artifact_prefix={work / 'artifacts'}/", "-print_final_stats=0", *dirs,
    ]  # fmt: skip
    atheris.Setup(args, one)
    atheris.Fuzz()
    os._exit(0)


def _start(target: Target, settings: Settings, dirs: list[str], work: Path) -> tuple[int, int, int]:
    """Fork the child; (its pid, the read end of its log, the read end of its reports)."""
    log_r, log_w = os.pipe()
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, measured by what it reports
        try:
            os.close(log_r)
            os.close(report_r)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(log_w, 2)
            _child(target, settings, dirs, work, report_w)
        finally:
            os._exit(3)
    os.close(log_w)
    os.close(report_w)
    return pid, log_r, report_r


def run_atheris(target: Target, settings: Settings, tick: Callable[[Stats], None]) -> Stats:
    """Fuzz ``target`` with libFuzzer for ``settings.seconds`` or ``settings.runs``."""
    stats = Stats("atheris")
    with tempfile.TemporaryDirectory(prefix="lab-fuzz-") as tmp:
        work = Path(tmp)
        (work / "artifacts").mkdir()
        (work / "tokens.dict").write_text(_dictionary(target.tokens))
        corpus = settings.corpus if settings.corpus is not None else work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        (work / "seeds").mkdir()
        for data in target.seeds():
            save_input(work / "seeds", data)
        dirs = [str(corpus), str(work / "seeds")]
        started = time.monotonic()
        pid, log_r, report_r = _start(target, settings, dirs, work)
        log = _follow(pid, log_r, report_r, stats, settings, started, tick)
        stats.elapsed = time.monotonic() - started
        stats.corpus = max(stats.corpus, len(load_corpus(corpus)))
        _artifacts(work / "artifacts", log, stats)
    return stats


def _follow(  # noqa: PLR0917 - the child's pipes and the run's state, all needed
    pid: int, log_r: int, report_r: int, stats: Stats, settings: Settings,
    started: float, tick: Callable[[Stats], None],
) -> deque[str]:  # fmt: skip
    """Read the child's two pipes until it exits (or kill it past its time)."""
    log: deque[str] = deque(maxlen=LOG_LINES)
    buffers = {log_r: b"", report_r: b""}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    hard_deadline = started + settings.seconds + KILL_GRACE_SECONDS
    next_tick = started + TICK_SECONDS
    try:
        while selector.get_map():
            for key, _ in selector.select(timeout=TICK_SECONDS / 4):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    continue
                *lines, buffers[fd] = (buffers[fd] + chunk).split(b"\n")
                for line in lines:
                    _take(line, fd == report_r, stats, log)
            now = time.monotonic()
            if now >= next_tick:
                stats.elapsed = now - started
                tick(stats)
                next_tick = now + TICK_SECONDS
            if now > hard_deadline:
                os.kill(pid, signal.SIGKILL)
                log.append(f"killed after {now - started:.0f} s")
                break
    finally:
        selector.close()
        os.close(log_r)
        os.close(report_r)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGKILL):
        log.append(f"the fuzzing process exited with {os.waitstatus_to_exitcode(status)}")
    return log


def _take(line: bytes, report: bool, stats: Stats, log: deque[str]) -> None:
    if not report:
        log.append(line.decode("utf-8", "replace"))
        found = _STATS.search(line)
        if found is not None:
            stats.coverage, stats.corpus = int(found.group(1)), int(found.group(2))
        return
    message = json.loads(line)
    if "input" in message:
        stats.keep(Failure(message["check"], message["detail"]), bytes.fromhex(message["input"]))
        stats.failing_execs -= 1  # counted by the child's own tally
    else:
        stats.execs = int(message["execs"])
        stats.failing_execs = int(message["failing"])


def _artifacts(directory: Path, log: deque[str], stats: Stats) -> None:
    """An input that took the whole child down (a crash, a hang, memory): a failure."""
    for path in sorted(directory.iterdir()):
        kind = path.name.split("-")[0]  # crash-, timeout-, oom-, slow-unit-
        words = " / ".join(line for line in log if "ERROR" in line or "ALARM" in line)
        detail = f"libFuzzer {kind}: {words or 'the process died'}"
        stats.keep(Failure(kind, detail), path.read_bytes()[:MAX_INPUT_SIZE])
