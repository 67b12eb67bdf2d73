"""The client that is not attacking: does it still get served, and how fast?

A bystander runs in a thread of its own with blocking sockets (so that the attacker's
event loop does not delay it), beside an attack:

- one long token stream, opened before the attack starts, that must arrive whole;
- short requests on new connections, one after another, each timed from sending the
  request to its first response byte (the delay a user would feel).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from lab.apps.tokens import DONE, tokens_for
from lab.wire.chunked import ChunkData, ChunkDataEnd, ChunkedDecoder
from lab.wire.errors import ProtocolError

__all__ = ["Bystander", "BystanderReport"]

# The long stream: long enough to span an attack's busiest part.
STREAM_TOKENS: Final = 100
STREAM_INTERVAL_MS: Final = 20
PROMPT: Final = "bystander"
# A short request's whole wait, and the pause between two of them.
SOCKET_TIMEOUT: Final = 30.0
PROBE_PAUSE: Final = 0.02
PROBE: Final = (
    b"GET /tokens?n=3&interval_ms=0 HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
)


@dataclass
class BystanderReport:
    stream_complete: bool
    stream_error: str
    first_byte_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Per token of the long stream: how much longer than STREAM_INTERVAL_MS after the
    # token before it it arrived (a stall of the server shows here; the server's timer
    # drift over the stream does not).
    lateness_ms: list[float] = field(default_factory=list)

    def worst_lateness_ms(self) -> float:
        return max(self.lateness_ms) if self.lateness_ms else float("nan")

    def median_ms(self) -> float:
        return statistics.median(self.first_byte_ms) if self.first_byte_ms else float("nan")

    def p99_ms(self) -> float:
        if not self.first_byte_ms:
            return float("nan")
        ordered = sorted(self.first_byte_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def expected_stream() -> bytes:
    return ("".join(tokens_for(PROMPT, STREAM_TOKENS)) + f"\n{DONE}\n").encode()


class Bystander:
    """``with Bystander(port) as b: <attack>``; then ``b.report``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.report = BystanderReport(stream_complete=False, stream_error="not run")
        self._stream_sock: socket.socket | None = None

    def __enter__(self) -> Bystander:
        # The stream is open (its head read) before the attack begins.
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT)
        target = f"/tokens?n={STREAM_TOKENS}&interval_ms={STREAM_INTERVAL_MS}&prompt={PROMPT}"
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".encode()
        )
        self._stream_sock = sock
        self._threads = [
            threading.Thread(target=self._stream, daemon=True),
            threading.Thread(target=self._probe, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT * 2)

    def _stream(self) -> None:
        """Read the long stream with the lab's own chunked decoder, timing each chunk."""
        assert self._stream_sock is not None
        head: bytes | None = b""
        decoder = ChunkedDecoder()
        body = bytearray()
        chunks = 0
        previous = 0.0
        try:
            with self._stream_sock as sock:
                while data := sock.recv(65536):
                    now = time.perf_counter()
                    if head is not None:  # the response head, then the body
                        head += data
                        if b"\r\n\r\n" not in head:
                            continue
                        data, head = head.partition(b"\r\n\r\n")[2], None
                    for segment in decoder.feed(data):
                        if isinstance(segment, ChunkData):
                            body += segment.data
                        elif isinstance(segment, ChunkDataEnd):  # a chunk is whole
                            if 0 < chunks < STREAM_TOKENS:  # tokens, not [DONE]
                                gap = (now - previous) * 1000 - STREAM_INTERVAL_MS
                                self.report.lateness_ms.append(max(0.0, gap))
                            previous = now
                            chunks += 1
            self.report.stream_complete = decoder.done and body == expected_stream()
            self.report.stream_error = "" if self.report.stream_complete else f"got {body[-60:]!r}"
        except (OSError, ProtocolError) as exc:
            self.report.stream_error = repr(exc)

    def _probe(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT
                ) as s:
                    start = time.perf_counter()
                    s.sendall(PROBE)
                    first = s.recv(65536)
                    took = (time.perf_counter() - start) * 1000
                    rest = first
                    while data := s.recv(65536):
                        rest += data
                if not first.startswith(b"HTTP/1.1 200 ") or not rest.endswith(b"0\r\n\r\n"):
                    self.report.failures.append(f"probe got {rest[:60]!r}")
                else:
                    self.report.first_byte_ms.append(took)
            except OSError as exc:
                self.report.failures.append(repr(exc))
            self._stop.wait(PROBE_PAUSE)


def unloaded(port: int, seconds: float = 1.0) -> BystanderReport:
    """The bystander with no attack, for the same server: the reference delays."""
    with Bystander(port) as bystander:
        time.sleep(seconds)
    return bystander.report
