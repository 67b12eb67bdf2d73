"""``lab fuzz server``: generated and mutated requests against ``lab serve`` in its own
process, and after every one, the server's health.

Each case is one connection. Half the cases are generated: HTTP/1.1 requests to the lab's
endpoints (every method, bounded query parameters, ``Content-Length`` and chunked bodies,
``Expect``, ``Connection``, ``Last-Event-ID``, up to three pipelined), or an h2c connection
(the preface, SETTINGS, HEADERS with an HPACK block, DATA, and PING, WINDOW_UPDATE,
RST_STREAM, PRIORITY frames among them). The other half are earlier cases mutated by
:class:`~lab.fuzz.mutate.Mutator`. A case is sent in one to three writes; then this side
shuts its write half and reads until the server closes, at most
:data:`CASE_TIMEOUT_SECONDS`.

After every case:

- the server process is **alive** (:class:`~lab.attacks.process.LabProcess`);
- what it sent is a **valid response or a clean close**: for HTTP/1.1, a sequence of
  responses :class:`~lab.wire.http1.MessageDecoder` reads without an error (the last may be
  cut short when the server stops a response because the client has gone: the bytes before
  the close must be a valid beginning); for h2c, frames :class:`~lab.wire.h2frames.
  FrameDecoder` reads in strict mode, with their HPACK blocks, ending on a frame boundary;
  or nothing and a close. A connection reset, or nothing at all and no close, fails.

Every :data:`CHECK_EVERY` cases and at the end, once the server has had
:data:`SETTLE_SECONDS` to close what it closes on its own, it must have **no more open
connections or tasks** (``GET /stats``) and no more file descriptors than before the first
case. The server runs with short timeouts (:data:`SERVER_LIMITS`) so that it settles fast.

A failing case is written to the output directory as ``server-HASH.bin`` and ``.txt``;
``lab fuzz server --replay FILE`` starts a server and runs it again. Cases are not shrunk:
each attempt would cost a connection and up to a timeout.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import hpack

from lab.attacks.process import LabProcess, Snapshot
from lab.fuzz.checks import Failure
from lab.fuzz.engine import MAX_FINDINGS, TICK_SECONDS, Settings
from lab.fuzz.mutate import Mutator
from lab.wire import h2frames as h2f
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import FrameDecoder
from lab.wire.http1 import MessageDecoder, RequestLine

__all__ = ["SERVER_LIMITS", "ServerStats", "fuzz_server", "replay_server", "run_case"]

# The server's limits while fuzzed: the default mechanisms with short waits, so that a
# case's connection is gone within seconds and the leak check need not wait long.
SERVER_LIMITS: Final = (
    "head_timeout=1", "body_timeout=1", "send_timeout=2", "idle_timeout=2",
    "linger_timeout=0.5", "close_timeout=0.5", "shutdown_grace=1",
)  # fmt: skip
# How long one case may take after its last byte is sent, until the server closes.
# Longer than every timeout above: a server that has not closed by then never will.
CASE_TIMEOUT_SECONDS: Final = 5.0
# Bytes of one answer kept and checked (a response beyond it is still read and dropped).
KEEP_BYTES: Final = 1024 * 1024
# Cases between two leak checks, and how long the server may take to settle for one.
CHECK_EVERY: Final = 50
SETTLE_SECONDS: Final = 10.0
# Cases kept to mutate.
MAX_CASES_KEPT: Final = 500

_TARGETS: Final = (
    "/", "/fixed?size=64", "/fixed?size=0", "/tokens?n=3&interval_ms=0",
    "/tokens?n=2&interval_ms=0&prompt=fuzz", "/events?n=2&interval_ms=0",
    "/events?n=1&interval_ms=0&retry_ms=10&multiline=1", "/progress?n=2&interval_ms=0",
    "/progress?n=3&interval_ms=0&fail_at=2", "/trailers?n=2", "/stats", "/no-such-path",
    "/tokens?n=x", "/fixed?size=-1", "*", "http://127.0.0.1/fixed?size=1", "/%00", "/chat",
    "/mcp",
)  # fmt: skip
_METHODS: Final = ("GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW")
_HEADERS: Final = (
    ("accept", "text/event-stream"), ("accept", "application/x-ndjson"),
    ("accept", "application/json"), ("connection", "close"), ("connection", "keep-alive"),
    ("expect", "100-continue"), ("last-event-id", "1"), ("content-type", "application/json"),
    ("user-agent", "lab-fuzz"), ("x-padding", "x" * 100),
)  # fmt: skip
_BODIES: Final = (b"", b'{"prompt": "hi", "n": 2, "interval_ms": 0}', b"{", b"x" * 300)
_TOKENS: Final = (
    b"\r\n", b"\r\n\r\n", b" ", b":", b"HTTP/1.1", b"Content-Length: ", b"0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n", b"\x00", b"\xff", h2f.PREFACE, h2f.settings(),
    h2f.ping(), h2f.window_update(1, 1), h2f.rst_stream(1, 8), b"\x00\x00\x00\x01",
)  # fmt: skip


def _h1_case(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.randint(1, 3)):
        method, target = rng.choice(_METHODS), rng.choice(_TARGETS)
        if target in ("/chat", "/mcp"):
            method = "POST"
        body = rng.choice(_BODIES) if method in ("POST", "PUT") else b""
        lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in rng.sample(_HEADERS, rng.randint(0, 3))]
        if body and rng.random() < 0.5:
            lines.append("transfer-encoding: chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif body:
            lines.append(f"content-length: {len(body)}")
        out += ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return out


def _h2_case(rng: random.Random) -> bytes:
    encoder = hpack.Encoder()
    out = h2f.PREFACE + h2f.settings()
    for n in range(rng.randint(1, 3)):
        stream = 1 + 2 * n
        method = rng.choice(("GET", "GET", "POST", "HEAD"))
        path = rng.choice(_TARGETS[:12])
        fields = [(":method", method), (":path", path), (":scheme", "http"),
                  (":authority", "127.0.0.1")]  # fmt: skip
        fields += rng.sample(_HEADERS[:3], rng.randint(0, 1))
        body = rng.choice(_BODIES[1:]) if method == "POST" else b""
        out += h2f.headers(stream, encoder.encode(fields), end_stream=not body)
        if body:
            out += h2f.data(stream, body, end_stream=True)
        extra = rng.choice(
            [b"", h2f.ping(), h2f.window_update(0, 1000), h2f.window_update(stream, 1),
             h2f.rst_stream(stream, 8), h2f.priority(stream, 0, 16), h2f.settings(ack=True)]
        )  # fmt: skip
        out += extra
    return out


@dataclass(slots=True)
class Outcome:
    """What one case got: the server's bytes, how the connection ended ("closed",
    "reset", "timeout"), and the failure if any."""

    answer: bytes
    ending: str
    failure: Failure | None


def _valid_h1(case: bytes, answer: bytes, closed: bool) -> str | None:
    methods = MessageDecoder("request")
    responses = MessageDecoder("response")
    # Line by line: a feed that raises returns nothing, and the methods of the requests
    # before the bad byte are needed (a HEAD's response has no content).
    try:
        for piece in case.splitlines(keepends=True):
            for seg in methods.feed(piece):
                if isinstance(seg, RequestLine):
                    responses.expect(seg.method)
    except Exception:  # a mutated request, or one the decoder chokes on (`lab fuzz
        pass  # http1` is where that is found): its methods up to the bad byte
    try:
        responses.feed(answer)
        if closed:
            responses.eof()
    except ProtocolError as exc:
        if closed and exc.message.startswith("connection ended inside a message"):
            return None  # the server stopped a response because the client had gone
        return f"not a valid HTTP/1.1 response: {exc}"
    except Exception as exc:  # the answer could not be judged
        return f"the lab's HTTP/1.1 decoder failed on the answer: {exc!r}"
    return None


def _valid_h2(answer: bytes, closed: bool) -> str | None:
    frames = FrameDecoder(decode_headers=True, strict=True)
    try:
        frames.feed(answer)
        if closed:
            frames.eof()
    except ProtocolError as exc:
        return f"not valid HTTP/2 frames: {exc}"
    return None


def run_case(port: int, case: bytes, rng: random.Random) -> Outcome:
    """Send ``case`` on a new connection in one to three writes, shut the write half, read
    until the server closes (or the case timeout); judge what came back."""
    answer = bytearray()
    ending = "timeout"
    cuts = sorted(rng.sample(range(1, len(case)), min(len(case) - 1, rng.randint(0, 2))))
    bounds = [0, *cuts, len(case)]
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT_SECONDS) as sock:
        try:
            for a, b in itertools.pairwise(bounds):
                sock.sendall(case[a:b])
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed (or reset) early: what it said is still to be read
        deadline = time.monotonic() + CASE_TIMEOUT_SECONDS
        try:
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    ending = "closed"
                    break
                answer += data[: max(0, KEEP_BYTES - len(answer))]
        except TimeoutError:
            ending = "timeout"
        except OSError:  # ECONNRESET, or ENOTCONN after a reset during the send
            ending = "reset"
    closed = ending == "closed"
    # The server speaks h2c after the whole preface, HTTP/1.1 otherwise (a case that starts
    # like the preface and strays from it gets an HTTP/1.1 answer).
    h2 = case.startswith(h2f.PREFACE) and not answer.startswith(b"HTTP/")
    problem = _valid_h2(bytes(answer), closed) if h2 else _valid_h1(case, bytes(answer), closed)
    if problem is None and ending == "reset":
        problem = "the server reset the connection"
    if problem is None and ending == "timeout" and not answer:
        problem = f"no answer and no close within {CASE_TIMEOUT_SECONDS:g} s of the request"
    failure = Failure("server", problem) if problem is not None else None
    return Outcome(bytes(answer), ending, failure)


@dataclass(slots=True)
class ServerStats:
    cases: int = 0
    elapsed: float = 0.0
    leak_checks: int = 0
    failures: dict[str, tuple[Failure, bytes]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.cases / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.cases:,} cases, {self.rate:,.1f}/s, {self.leak_checks} leak checks, "
            f"{len(self.failures)} failures"
        )

    def keep(self, failure: Failure, case: bytes) -> None:
        if failure.signature not in self.failures and len(self.failures) < MAX_FINDINGS:
            self.failures[failure.signature] = (failure, case)


def _leaks(lab: LabProcess, baseline: Snapshot) -> str | None:
    now = lab.settle(baseline, SETTLE_SECONDS)
    if now.connections > baseline.connections or now.tasks > baseline.tasks:
        return (
            f"{now.connections} connections and {now.tasks} tasks still open "
            f"{SETTLE_SECONDS:g} s after the cases (before them: {baseline.connections} and "
            f"{baseline.tasks})"
        )
    if now.fds > baseline.fds:
        return f"{now.fds} file descriptors open after the cases (before them: {baseline.fds})"
    return None


def fuzz_server(settings: Settings, tick: Callable[[ServerStats], None]) -> ServerStats:
    """Cases against a fresh ``lab serve`` until ``seconds`` or ``runs`` cases."""
    stats = ServerStats()
    rng = random.Random(settings.seed)
    mutator = Mutator(rng, _TOKENS)
    kept: list[bytes] = []
    started = time.monotonic()
    next_tick = started + TICK_SECONDS
    with LabProcess(limits=list(SERVER_LIMITS)) as lab:
        baseline = lab.snapshot()
        while stats.cases != settings.runs and time.monotonic() < started + settings.seconds:
            if kept and rng.random() < 0.5:
                case = mutator.mutate(rng.choice(kept), kept) or b"\r\n"
            else:
                case = _h2_case(rng) if rng.random() < 0.3 else _h1_case(rng)
                if len(kept) < MAX_CASES_KEPT:
                    kept.append(case)
            outcome = run_case(lab.port, case, rng)
            stats.cases += 1
            if not lab.alive():
                stats.keep(Failure("server", "the server process died"), case)
                break
            if outcome.failure is not None:
                stats.keep(outcome.failure, case)
            if stats.cases % CHECK_EVERY == 0:
                _check_leaks(lab, baseline, stats, case)
            if (now := time.monotonic()) >= next_tick:
                stats.elapsed = now - started
                tick(stats)
                next_tick = now + TICK_SECONDS
        if lab.alive():
            _check_leaks(lab, baseline, stats, kept[-1] if kept else b"")
    stats.elapsed = time.monotonic() - started
    return stats


def _check_leaks(lab: LabProcess, baseline: Snapshot, stats: ServerStats, case: bytes) -> None:
    stats.leak_checks += 1
    leak = _leaks(lab, baseline)
    if leak is not None:
        stats.keep(Failure("leak", f"after {stats.cases} cases: {leak}"), case)


def write_server_findings(stats: ServerStats, out: Path) -> list[tuple[Failure, Path]]:
    found = []
    for failure, case in stats.failures.values():
        out.mkdir(parents=True, exist_ok=True)
        name = f"server-{hashlib.sha1(case).hexdigest()[:12]}"
        path = out / f"{name}.bin"
        path.write_bytes(case)
        (out / f"{name}.txt").write_text(
            f"lab fuzz server: the {failure.check} check failed\n\n{failure.detail}\n\n"
            f"case: {len(case)} bytes on one connection, in {path.name}\n"
            f"as escaped bytes: {case!r}\n\nreplay:  lab fuzz server --replay {path}\n"
        )
        found.append((failure, path))
    return found


def replay_server(case: bytes) -> tuple[Outcome, str | None]:
    """One case against a fresh server: its outcome, and a leak if it left one."""
    with LabProcess(limits=list(SERVER_LIMITS)) as lab:
        baseline = lab.snapshot()
        outcome = run_case(lab.port, case, random.Random(0))
        if not lab.alive():
            return Outcome(outcome.answer, outcome.ending, Failure("server", "it died")), None
        return outcome, _leaks(lab, baseline)
