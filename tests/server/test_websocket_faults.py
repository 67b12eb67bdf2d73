"""Every WebSocket is a fault boundary: a client may leave at any byte, or stop reading, and
a fault inside one WebSocket ends that one only. Over HTTP/1.1, h2c and both over TLS.

After each test, with every wait bounded: a bystander WebSocket that ran across it got
its whole stream, every connection closed, the server runs as many tasks as before, logged
no internal error, and still serves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
import trio
import trio.testing

from lab.apps import Request, ResponseStream
from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.server import Limits, Server
from lab.server import websocket as server_websocket
from lab.wire.websocket import close, make_key, ping, random_mask_key, text
from tests.server.helpers import run
from tests.server.peers import PROTOCOLS, connect, fetch, is_h2, server_for
from tests.server.wsclient import WSClient, connect_headers, h1_request, h2_client

BYSTANDER_TOKENS: Final = 30
TARGET: Final = "/ws/tokens?n=5&interval_ms=1&prompt=cut"


def client_bytes(protocol: str) -> bytes:
    """Everything a client of ``TARGET`` sends, up to its Close, as one string of bytes:
    the handshake, a Ping, ``stop``, a Close."""
    frames = (
        ping(b"hi", mask_key=random_mask_key())
        + text("stop", mask_key=random_mask_key())
        + close(1000, mask_key=random_mask_key())
    )
    if not is_h2(protocol):
        return h1_request(TARGET, make_key()) + frames
    conn = h2_client()
    conn.send_headers(1, connect_headers(protocol, TARGET))
    conn.send_data(1, frames)
    return conn.data_to_send()


@asynccontextmanager
async def bystander(server: Server, protocol: str) -> AsyncIterator[None]:
    """A WebSocket token stream running across the block; whole after it."""
    target = f"/ws/tokens?n={BYSTANDER_TOKENS}&interval_ms=10&prompt=bystander"
    ws = await WSClient.open(server, protocol, target)
    got: list[object] = []

    async def read() -> None:
        got.extend(await ws.until_close())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        yield
    messages, close_message = got
    assert isinstance(messages, list)
    assert [m.data for m in messages] == [*tokens_for("bystander", BYSTANDER_TOKENS), "[DONE]"]
    assert getattr(close_message, "code", None) == 1000
    await ws.send_close(1000)
    await ws.until_end()
    await ws.conn.close()


async def settled_tasks(server: Server) -> int:
    """How many tasks the server runs once every task waits."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.005)
    tasks = server.stats()["tasks"]
    assert isinstance(tasks, int)
    return tasks


async def all_clear(server: Server, tasks: int, protocol: str) -> None:
    with trio.fail_after(5):
        await server.wait_no_connections()
    with trio.move_on_after(5):
        # A task's end has no event to wait for: let every task run until all wait.
        while server.stats()["tasks"] != tasks:
            await trio.testing.wait_all_tasks_blocked(cushion=0.005)
    assert server.stats()["tasks"] == tasks
    status, body = await fetch(server, protocol, "/fixed?size=9")
    assert (status, body) == (200, b"streamlab")


def no_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_that_leaves_at_any_byte(protocol: str, caplog: pytest.LogCaptureFixture) -> None:
    data = client_bytes(protocol)

    async def main() -> None:
        async with server_for(protocol) as server:
            tasks = await settled_tasks(server)
            async with bystander(server, protocol):
                for cut in range(1, len(data) + 1):
                    conn = await connect(server, protocol)
                    await conn.send(data[:cut])
                    # Orderly close and reset, by turns.
                    await (conn.reset() if cut % 2 else conn.close())
            await all_clear(server, tasks, protocol)

    with caplog.at_level(logging.INFO, "lab.server"):
        run(main)
    no_internal_errors(caplog)
    # The whole exchange, and every cut inside the frames after the handshake, reached
    # a WebSocket: the server saw each one end (a Close, or the peer leaving).
    ended = [r for r in caplog.records if "WebSocket closed" in r.getMessage()]
    assert ended


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("leave", ["close", "reset"])
def test_a_client_that_leaves_mid_stream(
    protocol: str, leave: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            tasks = await settled_tasks(server)
            async with bystander(server, protocol):
                for frames in range(4):
                    ws = await WSClient.open(server, protocol, "/ws/tokens?n=1000&interval_ms=1")
                    for _ in range(frames):
                        await ws.next_frame()
                    await (ws.conn.reset() if leave == "reset" else ws.conn.close())
            await all_clear(server, tasks, protocol)

    with caplog.at_level(logging.INFO, "lab.server"):
        run(main)
    no_internal_errors(caplog)
    # The server noticed each one: its WebSocket ended without a closing handshake.
    left = [r for r in caplog.records if "WebSocket closed (abort)" in r.getMessage()]
    assert len(left) == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_that_stops_reading_is_cut_after_the_send_timeout(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits(send_timeout=5.0)

    async def flood(request: Request, response: ResponseStream) -> None:
        if request.path != "/ws/flood":
            await lab_app(request, response)
            return
        ws = await response.accept_websocket()
        while True:
            await ws.send_bytes(bytes(64 * 1024))

    async def main() -> None:
        async with server_for(protocol, flood, limits) as server:
            tasks = await settled_tasks(server)
            # Messages as fast as the server can send them, never read: the socket's
            # buffers (or the h2 window) fill, then the send waits, then it is given up.
            ws = await WSClient.open(server, protocol, "/ws/flood")
            # The server gives up on it (then an h2 connection idles out): bounded.
            with trio.fail_after(120):
                await server.wait_no_connections()
            gave_up = ("client too slow", "no flow-control window")
            assert any(g in r.getMessage() for r in caplog.records for g in gave_up)
            await ws.conn.close()
            await all_clear(server, tasks, protocol)

    with caplog.at_level(logging.INFO, "lab.server"):
        run(main, autojump=True)
    no_internal_errors(caplog)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_fault_inside_one_websocket_ends_that_one_only(
    protocol: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = server_websocket.ServerWebSocket._frame

    async def broken(self: server_websocket.ServerWebSocket, frame: object) -> bool:
        if getattr(frame, "data", b"") == b"boom":
            raise RuntimeError("a bug in the reader")
        return await real(self, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(server_websocket.ServerWebSocket, "_frame", broken)

    async def main() -> None:
        async with server_for(protocol) as server:
            tasks = await settled_tasks(server)
            async with bystander(server, protocol):
                ws = await WSClient.open(server, protocol, "/ws/tokens?n=1000&interval_ms=5")
                await ws.next_frame()
                await ws.send_text("boom")
                messages, close_message = await ws.until_close()
                # Cut off: no Close frame; over h2 RST_STREAM(CANCEL), the connection
                # goes on.
                assert close_message is None
                assert all(m.type == "text" for m in messages)
                if is_h2(protocol):
                    assert ws.reset == 0x8
                    assert ws.goaway == []
                await ws.conn.close()
            await all_clear(server, tasks, protocol)

    with caplog.at_level(logging.INFO, "lab.server"):
        run(main)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "internal error, ended: RuntimeError('a bug in the reader')" in warnings[0]
