"""One load-generating process of ``lab bench fleet``: many paced SSE streams, read raw.

Run as ``python -m lab.bench.fleet_client PORT STREAMS N INTERVAL_MS OUT``. It opens
``STREAMS`` connections to ``GET /events?n=N&interval_ms=INTERVAL_MS``, each over
HTTP/1.1 on a plain socket, and reads them all from one ``epoll`` loop (no task per
stream, no HTTP library: a token is found by its ``"seq": K`` in the data, wherever the
chunked framing or a ``recv`` cut falls). It then:

1. prints ``open K`` on stdout once its streams are open (K: how many opened);
2. reads ``T0 T1`` (``time.monotonic`` values: the clock is the system's, shared by every
   process on the box) on stdin: the measured window;
3. counts the tokens that arrive in the window and each one's lateness, its own CPU time
   over the window, closes every stream after ``T1`` and writes its result as JSON to
   ``OUT``.

Lateness: the server stamps no time on an event, so a token's production time is
estimated from the stream's pace: stream origin + (seq - 1) × interval, where the origin
is the earliest arrival consistent with that pace (the minimum over the stream's tokens
of arrival - (seq - 1) × interval; in practice its first token's arrival). Lateness is
then ``arrival - estimate`` (never negative): how far behind the ideal schedule each
token came, whether the server, the network or this reader held it up. The endpoint
sleeps one interval after sending each token, so even an idle server drifts behind the
schedule by its timer's overshoot and its own work per token, a little more with every
token; the gap between consecutive tokens of a stream shows that pace as it was.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Final

__all__ = ["events_target", "main"]

# Bounds on the client: connecting and sending one request; the whole run after the
# streams are open (the window is at most this long, plus the parent's own margins).
SOCKET_TIMEOUT: Final = 30.0
RUN_TIMEOUT: Final = 600.0
# The longest the loop sleeps in epoll: short, so that T0 and T1 are noticed within 50 ms.
POLL_SECONDS: Final = 0.05
# Streams opened between two drains of the ones already open, so that the first streams'
# tokens are read as they come rather than piling up while the rest connect.
OPEN_BATCH: Final = 50
# Bytes kept of an unparsed tail: longer than any `"seq": K,` (K has at most 16 digits).
TAIL: Final = 32
# The first few errors are reported as they are; the rest only counted.
MAX_ERRORS: Final = 5
SEQ: Final = re.compile(rb'"seq": (\d+),')


def events_target(n: int, interval_ms: int) -> str:
    """The request of every stream: no heartbeat within the run (its longest interval), so
    that every event is a token; one shared stream name (its resume log stays one log)."""
    return f"/events?n={n}&interval_ms={interval_ms}&heartbeat_ms=600000&stream=fleet"


@dataclass(slots=True)
class Stream:
    sock: socket.socket
    buf: bytes = b""
    head_ok: bool = False
    origin: float = float("inf")  # earliest arrival - (seq - 1) * interval
    window: list[tuple[int, float]] = field(default_factory=list)  # (seq, arrival) in window
    tokens: int = 0


@dataclass(slots=True)
class Fleet:
    interval: float
    sel: selectors.EpollSelector
    t0: float = float("inf")
    t1: float = float("inf")
    ended_early: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, stream: Stream, why: str) -> None:
        self.ended_early += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(why)
        self.sel.unregister(stream.sock)
        stream.sock.close()

    def read(self, stream: Stream, now: float) -> None:
        try:
            data = stream.sock.recv(262_144)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(stream, f"recv: {exc}")
            return
        if not data:
            self.fail(stream, "the server closed the stream")
            return
        buf = stream.buf + data
        if not stream.head_ok:
            if not buf.startswith(b"HTTP/1.1 200 "[: len(buf)]):
                self.fail(stream, f"not a 200 stream: {buf[:80]!r}")
                return
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                stream.buf = buf
                return
            stream.head_ok = True
            buf = buf[end + 4 :]
        last = 0
        for match in SEQ.finditer(buf):
            seq = int(match.group(1))
            last = match.end()
            stream.tokens += 1
            stream.origin = min(stream.origin, now - (seq - 1) * self.interval)
            if self.t0 <= now <= self.t1:
                stream.window.append((seq, now))
        stream.buf = buf[max(last, len(buf) - TAIL) :]


def _open(port: int, target: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.sendall(f"GET {target} HTTP/1.1\r\nhost: fleet\r\n\r\n".encode())
    sock.setblocking(False)
    return sock


def _poll(fleet: Fleet, timeout: float, control: list[str]) -> None:
    for key, _ in fleet.sel.select(timeout):
        if key.data is None:  # stdin: the window
            line = os.read(key.fd, 4096).decode()
            control.append(line)
            if not line:
                fleet.sel.unregister(key.fd)
        else:
            fleet.read(key.data, time.monotonic())


def main(argv: list[str]) -> int:
    port, count, n, interval_ms = (int(a) for a in argv[:4])
    out = argv[4]
    fleet = Fleet(interval=interval_ms / 1000, sel=selectors.EpollSelector())
    streams: list[Stream] = []
    control: list[str] = []
    target = events_target(n, interval_ms)
    for start in range(0, count, OPEN_BATCH):
        for _ in range(min(OPEN_BATCH, count - start)):
            try:
                stream = Stream(_open(port, target))
            except OSError as exc:
                fleet.ended_early += 1
                if len(fleet.errors) < MAX_ERRORS:
                    fleet.errors.append(f"connect: {exc}")
                continue
            streams.append(stream)
            fleet.sel.register(stream.sock, selectors.EVENT_READ, stream)
        _poll(fleet, 0, control)
    print(f"open {len(streams)}", flush=True)
    fleet.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    deadline = time.monotonic() + RUN_TIMEOUT
    cpu0 = cpu1 = None
    while (now := time.monotonic()) < deadline:
        if fleet.t0 == float("inf") and control and "\n" in "".join(control):
            t0, t1 = "".join(control).split()[:2]
            fleet.t0, fleet.t1 = float(t0), float(t1)
        if cpu0 is None and now >= fleet.t0:
            cpu0 = os.times()
        if now > fleet.t1:
            cpu1 = os.times()
            break
        if fleet.t0 == float("inf") and control and control[-1] == "":
            break  # stdin closed before any window: the parent is gone
        _poll(fleet, POLL_SECONDS, control)
    for stream in streams:
        stream.sock.close()
    cpu = 0.0
    if cpu0 is not None and cpu1 is not None:
        cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    lateness_us = [
        round((arrival - (s.origin + (seq - 1) * fleet.interval)) * 1e6)
        for s in streams
        for seq, arrival in s.window
    ]
    # Gap between a token and the one before it on the same stream, both in the window:
    # the pace as it was, apart from the drift that lateness adds up.
    gap_us = [
        round((b[1] - a[1]) * 1e6)
        for s in streams
        for a, b in zip(s.window, s.window[1:], strict=False)
        if b[0] == a[0] + 1
    ]
    result = {
        "opened": len(streams),
        "window_tokens": len(lateness_us),
        "tokens": sum(s.tokens for s in streams),
        "lateness_us": lateness_us,
        "gap_us": gap_us,
        "cpu_seconds": cpu,
        "ended_early": fleet.ended_early,
        "errors": fleet.errors,
        "finished": cpu1 is not None,
    }
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
