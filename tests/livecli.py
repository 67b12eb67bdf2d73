"""A ``python -m lab`` command running in its own process, its output read as it comes.

For commands that keep running (``lab tap``) or whose point is when they print
(``lab probe`` showing a chunk before the stream ends)::

    with LabProcess("tap", "--listen", "0", "--to", target) as tap:
        url = tap.wait_for(r"listening on (http://\\S+)").group(1)
        ...
        out = tap.stop()      # SIGINT, then the exit status, stdout and stderr

Every wait is bounded; whatever is left running at the end is killed (by its pid).
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = ["ENV", "LINE_WAIT", "STOP_WAIT", "LabProcess", "Stopped"]

# Any one wait for a line: the lab prints within milliseconds of the event; the rest is
# slack for a loaded machine (two cores shared with other test runs).
LINE_WAIT: Final = 20.0
# How long a stopped command may take to write its files and exit.
STOP_WAIT: Final = 30.0
ENV: Final = {"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


class Stopped:
    """What a finished command left: its exit status and everything it printed."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class LabProcess:
    """``python -m lab ARGS`` with stdout read line by line on a thread of its own."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=ENV,
        )  # fmt: skip
        self.lines: list[str] = []  # every stdout line so far
        self._err: str | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, within: float = LINE_WAIT) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; fails the test if none
        comes within ``within`` seconds or the command ends first."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {within} s; so far:\n"
                    + "\n".join(self.lines)
                ) from None
            if line is None:
                self._queue.put(None)  # stays at the end for the next reader
                raise AssertionError(
                    f"the command ended before a line matching {pattern!r}:\n"
                    + "\n".join(self.lines)
                    + f"\nstderr: {self._stderr()}"
                )
            self.lines.append(line)
            if match := compiled.search(line):
                return match

    def finish(self, within: float = STOP_WAIT) -> Stopped:
        """Wait for the command to end by itself; what it printed."""
        self.proc.wait(timeout=within)
        return self._stopped()

    def stop(self, sig: int = signal.SIGINT, within: float = STOP_WAIT) -> Stopped:
        """Send ``sig`` and wait for the command to end; what it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish(within)

    def _stopped(self) -> Stopped:
        self._reader.join(STOP_WAIT)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return Stopped(self.proc.returncode, "\n".join(self.lines), self._stderr())

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        if self._err is None:
            self._err = self.proc.stderr.read()
        return self._err

    def __enter__(self) -> LabProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # this process only, by its pid
            self.proc.wait(timeout=STOP_WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
