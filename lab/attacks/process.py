"""``lab serve`` in a process of its own, watched from outside: RSS, its peak, file
descriptors, and what ``GET /stats`` says about connections and tasks.

The attacks run against a real server process so that what they measure is what a user
running ``lab serve`` would see: the process lives or dies, its memory, its sockets.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

__all__ = ["LabProcess", "Snapshot"]

# Bounds on starting the server and on one stats request.
START_TIMEOUT: Final = 30.0
STATS_TIMEOUT: Final = 10.0
# How long the server may take to get back to its baseline after an attack: its longest
# timeout under the attack limits plus the lingering close, with room for a loaded box.
SETTLE_TIMEOUT: Final = 30.0
# File descriptors the server process may open (inherited from this one): 10,000 idle
# connections and the rest.
FD_LIMIT: Final = 16_384


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The server process at one moment."""

    rss_kib: int
    peak_rss_kib: int  # VmHWM: the most it has held since it started
    fds: int
    connections: int
    tasks: int
    buffered_body_bytes: int


def _status_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1))


def raise_fd_limit(need: int = FD_LIMIT) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise RuntimeError(f"{need} file descriptors needed; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class LabProcess:
    """``with LabProcess(limits=[...]) as lab: ...`` — a running ``lab serve``."""

    def __init__(self, limits: list[str] | None = None) -> None:
        self.limits = limits or []
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> LabProcess:
        raise_fd_limit()
        cmd = [sys.executable, "-m", "lab", "serve", "--port", "0"]
        for item in self.limits:
            cmd += ["--limit", item]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            self.__exit__(None, None, None)
            raise RuntimeError(f"lab serve did not start: {line!r}")
        self.port = int(match.group(1))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stats(self) -> dict[str, Any]:
        """The server's own report (``GET /stats``), over a connection of its own."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=STATS_TIMEOUT) as s:
            s.sendall(b"GET /stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            raw = b""
            while data := s.recv(65536):
                raw += data
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"/stats answered {head[:60]!r}")
        (server,) = json.loads(body)["servers"]
        return dict(server)

    def snapshot(self) -> Snapshot:
        report = self.stats()
        return Snapshot(
            rss_kib=_status_kib(self.pid, "VmRSS"),
            peak_rss_kib=_status_kib(self.pid, "VmHWM"),
            fds=len(os.listdir(f"/proc/{self.pid}/fd")),
            # Minus the connection asking, and its task.
            connections=int(report["connections"]) - 1,
            tasks=int(report["tasks"]),
            buffered_body_bytes=int(report["buffered_body_bytes"]),
        )

    def settle(self, baseline: Snapshot, timeout: float = SETTLE_TIMEOUT) -> Snapshot:
        """Wait until connections, tasks and fds are back to ``baseline``; the snapshot
        then, or the last one seen when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.snapshot()
            back = (
                now.connections <= baseline.connections
                and now.tasks <= baseline.tasks
                and now.fds <= baseline.fds
            )
            if back or time.monotonic() > deadline:
                return now
            time.sleep(0.1)
