"""``trace_dir``: one .trace and one .pcapng per connection, named by time and first request,
never over an earlier file; and the one log line the server writes per request."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from lab.apps import app as lab_app
from lab.apps.tokens import DONE, tokens_for
from lab.capture import load
from lab.capture.names import TARGET_CHARS, claim_stem, connection_stem
from lab.server import Limits, Server
from tests.server.h2client import H2Client
from tests.server.helpers import WAIT, H11Client, read_all, run

# pcapng's Section Header Block type: every pcapng file starts with it.
PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")
NAME = re.compile(r"(\d{8}T\d{6}\.\d{3}Z)-c(\d{5})-(.+)")


@asynccontextmanager
async def traced_server(
    directory: Path, wall_clock: Callable[[], float] | None = None, limits: Limits | None = None
) -> AsyncIterator[Server]:
    """A lab server writing traces to ``directory``; on exit, every trace is written."""
    server = Server(lab_app, trace_dir=directory, wall_clock=wall_clock or time.time, limits=limits)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            with trio.fail_after(WAIT):
                await server.wait_no_connections()
            nursery.cancel_scope.cancel()


async def _get(server: Server, target: str) -> bytes:
    """GET ``target`` on a connection of its own, closed once the response is in."""
    client = await H11Client.connect(server)
    await client.get(target)
    _, data, _ = await client.response()
    await client.stream.aclose()
    return b"".join(d.data for d in data)


def _stems(directory: Path, suffix: str) -> list[str]:
    return sorted(p.stem for p in directory.glob(f"*{suffix}"))


def test_each_connection_gets_a_trace_and_a_pcapng_named_by_time_and_first_request(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with traced_server(tmp_path) as server:
            await _get(server, "/tokens?n=3&interval_ms=0")
            await _get(server, "/fixed?size=10")

    run(main)
    traces = _stems(tmp_path, ".trace")
    assert traces == _stems(tmp_path, ".pcapng")
    assert len(traces) == 2
    first, second = (NAME.fullmatch(stem) for stem in traces)
    assert first is not None, traces
    assert second is not None, traces
    assert (first[2], first[3]) == ("00001", "GET-tokens-n-3-interval_ms-0")
    assert (second[2], second[3]) == ("00002", "GET-fixed-size-10")
    assert first[1] <= second[1]  # the time it was accepted comes first: ls sorts by it
    conn = load(tmp_path / f"{traces[0]}.trace").connections[0]
    assert conn.received().startswith(b"GET /tokens?n=3&interval_ms=0 HTTP/1.1\r\n")
    assert conn.sent().endswith(b"0\r\n\r\n")
    pcapng = (tmp_path / f"{traces[0]}.pcapng").read_bytes()
    assert pcapng.startswith(PCAPNG_MAGIC)
    assert b"chunk size 0x" in pcapng  # the annotation rides along as packet comments
    assert b"GET /tokens?n=3&interval_ms=0 HTTP/1.1" in pcapng


def test_a_second_run_into_the_same_directory_overwrites_nothing(tmp_path: Path) -> None:
    # Both runs accept their connection at the same (fixed) time and number it 1: the
    # names collide, which is what must not lose the first run's files.
    def clock() -> float:
        return 1_796_535_012.345

    async def one_run() -> None:
        async with traced_server(tmp_path, clock) as server:
            await _get(server, "/tokens?n=2&interval_ms=0")

    run(one_run)
    (stem,) = _stems(tmp_path, ".trace")
    assert stem == "20261206T053012.345Z-c00001-GET-tokens-n-2-interval_ms-0"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    run(one_run)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == [f"{stem}-2.pcapng", f"{stem}-2.trace"]


def test_a_connection_without_a_request_says_so(tmp_path: Path) -> None:
    async def main() -> None:
        async with traced_server(tmp_path) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.aclose()

    run(main)
    (stem,) = _stems(tmp_path, ".trace")
    assert stem.endswith("-c00001-no-request")


def test_the_name_keeps_only_safe_characters_and_a_bounded_target(tmp_path: Path) -> None:
    odd = "/../../etc/passwd?x=" + 'ä/\\:*?"<>| ' * 20
    stem = connection_stem(7, "GET", odd, 0.0)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", stem), stem
    assert stem.startswith("19700101T000000.000Z-c00007-GET-")
    assert len(stem.split("-GET-", 1)[1]) <= TARGET_CHARS
    # Claiming twice in one directory gives two names.
    assert claim_stem(tmp_path, stem) == stem
    assert claim_stem(tmp_path, stem) == f"{stem}-2"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lab.server"]


def test_every_request_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lab.server")
    bodies: dict[str, int] = {}

    async def main() -> None:
        server = Server(lab_app)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            h1 = await H11Client.connect(server)
            for target in ("/tokens?n=4&interval_ms=0", "/nowhere"):
                await h1.get(target)
                _, data, _ = await h1.response()
                bodies[f"h1 {target}"] = sum(len(d.data) for d in data)
            h2 = await H2Client.connect(server)
            response = await h2.get("/tokens?n=3&interval_ms=0")
            bodies["h2 /tokens"] = len(response.body)
            assert response.body.endswith(f"\n{DONE}\n".encode())
            nursery.cancel_scope.cancel()

    run(main)
    lines = _lines(caplog)
    tokens_body = "".join(tokens_for("hello", 4)) + f"\n{DONE}\n"
    assert bodies["h1 /tokens?n=4&interval_ms=0"] == len(tokens_body.encode())
    expected = [
        rf"connection 1 http/1\.1 GET /tokens\?n=4&interval_ms=0 -> 200, "
        rf"{bodies['h1 /tokens?n=4&interval_ms=0']} body bytes in \d+\.\d{{3}} s",
        rf"connection 1 http/1\.1 GET /nowhere -> 404, {bodies['h1 /nowhere']} body bytes in "
        r"\d+\.\d{3} s",
        rf"connection 2 h2c stream 1 GET /tokens\?n=3&interval_ms=0 -> 200, "
        rf"{bodies['h2 /tokens']} body bytes in \d+\.\d{{3}} s",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_a_response_cut_short_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lab.server")

    async def main() -> None:
        server = Server(lab_app)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            client = await H11Client.connect(server)
            await client.get("/tokens?n=50&interval_ms=1000")
            await client.next_event()  # the response head: the stream is running
            await client.stream.aclose()  # the client leaves mid-stream
            with trio.fail_after(WAIT):
                await server.wait_no_connections()
            nursery.cancel_scope.cancel()

    run(main, autojump=True)
    (line,) = _lines(caplog)
    assert re.fullmatch(
        r"connection 1 http/1\.1 GET /tokens\?n=50&interval_ms=1000 -> 200, \d+ body bytes "
        r"in \d+\.\d{3} s \(cut short\)",
        line,
    ), line


def test_a_refused_request_logs_its_status_and_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lab.server")
    limits = Limits(max_head_size=1024)

    async def main() -> bytes:
        server = Server(lab_app, limits=limits)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(
                b"GET / HTTP/1.1\r\nhost: lab\r\nx-big: " + b"a" * 2000 + b"\r\n\r\n"
            )
            reply = await read_all(stream)
            await stream.aclose()
            nursery.cancel_scope.cancel()
        return reply

    reply = run(main)
    assert reply.startswith(b"HTTP/1.1 431 ")
    (line,) = _lines(caplog)
    assert re.fullmatch(r"connection 1 http/1\.1 \(request refused\) -> 431: .*limit is 1024", line)
