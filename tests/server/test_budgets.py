"""Budgets that no client may exhaust, and the one-timeout rule for a dribbled preface."""

from __future__ import annotations

import json

import trio

from lab.server import Limits
from tests.server.helpers import connect, exchange_raw, lab_server, read_all, run
from tests.server.peers import fetch


def test_request_bodies_over_the_server_budget_get_503_with_retry_after() -> None:
    limits = Limits(max_buffered_bodies=1000)
    body = b'{"prompt": "' + b"x" * 1200 + b'"}'
    request = (
        b"POST /chat HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )

    async def main() -> None:
        async with lab_server(limits=limits) as server:
            raw = await exchange_raw(server, request)
            assert raw.startswith(b"HTTP/1.1 503 ")
            assert b"\r\nretry-after: 1\r\n" in raw
            assert server.bodies.used == 0
            assert server.bodies.refused == 1
            # A body within the budget is served, and returned to it afterwards.
            small = b'{"prompt": "ok", "n": 1, "interval_ms": 0}'
            raw = await exchange_raw(
                server,
                b"POST /chat HTTP/1.1\r\nhost: a\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n" % len(small) + small,
            )
            assert raw.startswith(b"HTTP/1.1 200 ")
            assert server.bodies.used == 0

    run(main)


def test_a_dribbled_h2_preface_gets_one_head_timeout_and_no_http1_reply() -> None:
    limits = Limits(head_timeout=4.0)  # two of them still fit in read_all's wait

    async def main() -> None:
        async with lab_server(limits=limits) as server:
            stream = await connect(server)
            started = trio.current_time()
            for byte in b"PRI * HTTP/2.0\r\n":
                await stream.send_all(bytes([byte]))
            assert await read_all(stream) == b""  # closed, with no HTTP/1.1 400 or 408
            # One head timeout (on the jumping clock), not the sniff's and then HTTP/1.1's.
            assert trio.current_time() - started < 1.5 * limits.head_timeout

    run(main, autojump=True)


def test_a_dribbled_http1_head_gets_one_head_timeout_counted_from_the_first_byte() -> None:
    limits = Limits(head_timeout=4.0)  # two of them still fit in read_all's wait

    async def main() -> None:
        async with lab_server(limits=limits) as server:
            stream = await connect(server)
            started = trio.current_time()
            await stream.send_all(b"P")  # as an HTTP/2 preface or a POST would start
            raw = await read_all(stream)
            assert raw.startswith(b"HTTP/1.1 408 ")
            assert trio.current_time() - started < 1.5 * limits.head_timeout

    run(main, autojump=True)


def test_stats_reports_connections_and_tasks_returning_to_baseline() -> None:
    async def main() -> None:
        async with lab_server() as server:
            status, body = await fetch(server, "http/1.1", "/stats")
            assert status == 200
            (mine,) = json.loads(body)["servers"]
            assert mine["url"] == server.url
            assert mine["connections"] == 1  # the request asking
            baseline = mine["tasks"]
            streams = [await connect(server) for _ in range(5)]
            for stream in streams:
                await stream.send_all(
                    b"GET /events?n=2&interval_ms=600000 HTTP/1.1\r\nhost: a\r\n\r\n"
                )
                await stream.receive_some(65536)
            (busy,) = json.loads((await fetch(server, "http/1.1", "/stats"))[1])["servers"]
            assert busy["connections"] == 6
            assert busy["tasks"] > baseline
            for stream in streams:
                await stream.aclose()
            with trio.fail_after(5):
                await server.wait_connections(at_most=0)
            (after,) = json.loads((await fetch(server, "http/1.1", "/stats"))[1])["servers"]
            assert after["tasks"] == baseline
            assert after["buffered_body_bytes"] == 0

    run(main)
