"""What a request carries about its connection, and the server-owned nursery for app work
that outlives a request (``request.background``): it survives the client, and shutdown
cancels it within the grace."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from lab.apps.interface import Request, ResponseStream, send_text
from lab.server import Limits, Server, serve_tcp
from tests.server.peers import PROTOCOLS, connect, exchange, server_for


async def _where(request: Request, response: ResponseStream) -> None:
    await send_text(response, 200, json.dumps({"local": request.local, "peer": request.peer}))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_carries_both_ends_of_its_connection(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol, _where) as server:
            conn = await connect(server, protocol)
            status, body = await exchange(conn, protocol, "GET", "/")
            host, port = conn.sock.socket.getsockname()[:2]
        assert status == 200
        assert json.loads(body) == {"local": f"127.0.0.1:{server.port}", "peer": f"{host}:{port}"}

    trio.run(main)


class _Work:
    """An app that starts background work and answers at once; it records what became
    of the work."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()
        self.finished = trio.Event()

    async def app(self, request: Request, response: ResponseStream) -> None:
        seconds = float(request.query.get("seconds", "inf"))

        async def work() -> None:
            self.started.set()
            try:
                await trio.sleep(seconds)
            except trio.Cancelled:
                self.cancelled.set()
                raise
            self.finished.set()

        request.background.start_soon(work, name="test work")
        await send_text(response, 200, "started\n")


GRACE = Limits().shutdown_grace + Limits().close_timeout


@pytest.mark.parametrize("protocol", ["http/1.1", "h2c"])
def test_background_work_outlives_its_client_and_shutdown_cancels_it(protocol: str) -> None:
    work = _Work()

    async def main() -> None:
        # A server that never lets go fails the test instead of hanging it.
        with trio.fail_after(GRACE + 120):
            await serve_and_shut_down()

    async def serve_and_shut_down() -> None:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(serve_tcp, work.app, 0)
            conn = await connect(server, protocol)
            status, _ = await exchange(conn, protocol, "GET", "/")
            assert status == 200
            await conn.reset()  # the client leaves at once
            await server.wait_no_connections()
            await trio.sleep(60)  # long after the client: the work still runs
            assert work.started.is_set()
            assert not work.cancelled.is_set()
            assert server.stats()["background_tasks"] == 1
            begun = trio.current_time()
            server.shutdown()
        # serve_tcp returned: shutdown ended the work it owned, within the grace.
        assert work.cancelled.is_set()
        assert trio.current_time() - begun <= GRACE
        assert server.stats()["background_tasks"] == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_background_work_that_ends_is_counted_out_and_a_failure_stays_there() -> None:
    work = _Work()
    failures = 0

    async def failing_app(request: Request, response: ResponseStream) -> None:
        async def fail() -> None:
            nonlocal failures
            failures += 1
            raise KeyError("app bug in background work")

        request.background.start_soon(fail, name="failing work")
        await work.app(request, response)

    async def main() -> None:
        async with server_for("http/1.1", failing_app) as server:
            conn = await connect(server, "http/1.1")
            status, _ = await exchange(conn, "http/1.1", "GET", "/?seconds=5")
            assert status == 200
            await work.finished.wait()
            assert failures == 1
            assert server.stats()["background_tasks"] == 0
            assert server.background.started == 2
            # The server still serves.
            status, _ = await exchange(conn, "http/1.1", "GET", "/?seconds=0")
            assert status == 200

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_request_made_outside_a_server_refuses_background_work() -> None:
    from lab.apps import make_request

    request = make_request("GET", "/", [], b"", "http/1.1")

    async def nothing() -> None:
        pass

    with pytest.raises(RuntimeError, match="no server to run 'x'"):
        request.background.start_soon(nothing, name="x")
