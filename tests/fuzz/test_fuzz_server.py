"""``lab fuzz server``: a real ``lab serve`` process under generated and mutated requests
stays alive, answers validly and keeps nothing open; and the judge of each case fails a
server that answers badly. Marked ``fuzz``.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.fuzz.server import CASE_TIMEOUT_SECONDS, run_case

pytestmark = pytest.mark.fuzz

# Seconds of fuzzing, and the bound on one command (the server's start, the last leak
# check's settling).
SECONDS = 6
CLI_TIMEOUT = 120
ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
SUMMARY = re.compile(
    r"^fuzz server: (?P<cases>[\d,]+) cases in [\d.]+ s \([\d.,]+/s\), "
    r"(?P<checks>\d+) leak checks, (?P<failures>\d+) failures$",
    re.MULTILINE,
)


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip


def test_the_server_survives_and_keeps_nothing_open(tmp_path: Path) -> None:
    out = lab("fuzz", "server", "--seconds", str(SECONDS), "--seed", "1", "--out", str(tmp_path))
    found = SUMMARY.search(out.stdout)
    assert found is not None, out.stdout + out.stderr
    assert out.returncode == 0, out.stdout
    assert int(found["failures"]) == 0
    assert int(found["cases"].replace(",", "")) > 0
    assert int(found["checks"]) >= 1  # at least the one at the end
    assert not list(tmp_path.iterdir())


def test_replay_of_a_case(tmp_path: Path) -> None:
    case = tmp_path / "server-case.bin"
    case.write_bytes(b"GET /tokens?n=2&interval_ms=0 HTTP/1.1\r\nhost: x\r\n\r\n")
    out = lab("fuzz", "server", "--replay", str(case))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passes" in out.stdout
    assert "connection ended: closed" in out.stdout


@contextlib.contextmanager
def bad_server(answer: bytes, *, close: bool = True) -> Iterator[int]:
    """A server on 127.0.0.1 that reads a request, sends ``answer`` and closes (or keeps
    the connection open)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
            if not close:
                stop.wait(CASE_TIMEOUT_SECONDS + 5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(CASE_TIMEOUT_SECONDS + 10)
        listener.close()


REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", "not a valid HTTP/1.1 response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a valid"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line"),
    ],
)
def test_the_judge_fails_an_invalid_answer(answer: bytes, words: str) -> None:
    with bad_server(answer) as port:
        outcome = run_case(port, REQUEST, random.Random(0))
    assert outcome.ending == "closed"
    assert outcome.failure is not None
    assert words in outcome.failure.detail


def test_the_judge_passes_a_valid_answer_and_fails_silence() -> None:
    with bad_server(b"HTTP/1.1 204 No Content\r\n\r\n") as port:
        assert run_case(port, REQUEST, random.Random(0)).failure is None
    with bad_server(b"", close=False) as port:
        outcome = run_case(port, REQUEST, random.Random(0))
    assert outcome.ending == "timeout"
    assert outcome.failure is not None
    assert "no answer and no close" in outcome.failure.detail


def test_the_judge_knows_a_head_before_a_request_the_decoder_refuses() -> None:
    # A HEAD answered without content, then a request whose chunked body is bad: the
    # judge must know the first was HEAD although the request decoder fails later on.
    from lab.fuzz.server import _valid_h1

    case = (
        b"HEAD /x HTTP/1.1\r\nhost: a\r\n\r\n"
        b"PUT /tokens HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nab: \r\n0\r\n\r\n"
    )
    answer = (
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 38\r\n\r\n"
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad"
    )
    assert _valid_h1(case, answer, closed=True) is None
    # Without the HEAD the same answer is invalid: 38 bytes of content are missing.
    assert _valid_h1(case.replace(b"HEAD", b"GET", 1), answer, closed=True) is not None
