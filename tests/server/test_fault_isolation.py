"""No request ends the server: each class of fault, over HTTP/1.1, h2c and both over TLS.

Every test runs a lab server inside the test's own trio.run: an exception escaping one
connection would end the server's nursery, and with it the test. Each test then asks a
bystander -- a stream that was already running when the fault happened, and a new
connection afterwards -- to prove the server and its other connections went on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import h2.errors
import pytest
import trio
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from lab.apps import Request, ResponseStream
from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.server import Limits, Server
from tests.server.h2raw import split_frames
from tests.server.helpers import run
from tests.server.peers import (
    PROTOCOLS,
    Conn,
    connect,
    exchange,
    fetch,
    is_h2,
    request_bytes,
    server_for,
)

# How often each racy case is repeated: the original failure (an error reply written to
# a client that had just left) showed within a few tries.
TRIES = 15
BYSTANDER_TOKENS = 30


async def app_with_failures(request: Request, response: ResponseStream) -> None:
    """The lab's app, plus /boom, whose handler fails before it starts a response."""
    if request.path == "/boom":
        raise RuntimeError("a handler bug")
    await lab_app(request, response)


# (status the request gets, method, target): every error reply the lab writes.
ERROR_REPLIES = [
    (404, "GET", "/nowhere"),
    (405, "DELETE", "/tokens"),
    (400, "GET", "/tokens?n=abc"),
    (400, "GET", "http://[::1/x"),  # a target urlsplit rejects
    (500, "GET", "/boom"),
]


@asynccontextmanager
async def bystander(server: Server, protocol: str) -> AsyncIterator[None]:
    """A token stream running across the block; it must arrive whole after it."""
    conn = await connect(server, protocol)
    target = f"/tokens?n={BYSTANDER_TOKENS}&interval_ms=10&prompt=bystander"
    got: list[tuple[int, bytes]] = []

    async def read() -> None:
        got.append(await exchange(conn, protocol, "GET", target))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        yield
    await conn.close()
    expected = "".join(tokens_for("bystander", BYSTANDER_TOKENS)) + "\n[DONE]\n"
    assert got == [(200, expected.encode())]


async def still_serves(server: Server, protocol: str) -> None:
    status, body = await fetch(server, protocol, "/fixed?size=9")
    assert (status, body) == (200, b"streamlab")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("leave", ["close", "reset"])
@pytest.mark.parametrize(("status", "method", "target"), ERROR_REPLIES)
def test_an_error_reply_to_a_client_that_left(
    protocol: str, leave: str, status: int, method: str, target: str
) -> None:
    async def main() -> None:
        async with server_for(protocol, app_with_failures) as server:
            # Answered as expected while the client stays ...
            assert (await fetch(server, protocol, target, method))[0] == status
            async with bystander(server, protocol):
                for _ in range(TRIES):
                    # ... and the server does not care once the client is gone.
                    conn = await connect(server, protocol)
                    await conn.send(request_bytes(protocol, method, target))
                    await (conn.reset() if leave == "reset" else conn.close())
            with trio.fail_after(5):
                await server.wait_no_connections()
            await still_serves(server, protocol)

    run(main)


@pytest.mark.parametrize("protocol", ["h2c", "tls+h2"])
@pytest.mark.parametrize(("status", "method", "target"), ERROR_REPLIES)
def test_an_error_reply_to_a_stream_the_client_reset(
    protocol: str, status: int, method: str, target: str
) -> None:
    async def main() -> None:
        async with server_for(protocol, app_with_failures) as server:
            async with bystander(server, protocol):
                conn = await connect(server, protocol)
                # HEADERS and RST_STREAM in one write: the handler fails before it ever
                # waits, and its error reply meets a stream that is already closed.
                first = request_bytes(protocol, method, target, reset_stream=True)
                again = _h2_more_requests(request_bytes(protocol, "GET", "/fixed?size=2"), 2)
                await conn.send(first + again[0])
                # The same connection answers the next stream.
                frames = await _frames_until(conn, _stream_3_ended)
                assert not any(isinstance(f, GoAwayFrame) for f in frames)
                await conn.close()
            await still_serves(server, protocol)

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_error_replies_to_a_client_that_stopped_reading(protocol: str) -> None:
    limits = Limits(send_timeout=0.3, max_pipelined_bytes=1 << 20)

    async def main() -> None:
        async with server_for(protocol, app_with_failures, limits) as server:
            async with bystander(server, protocol):
                conn = await connect(server, protocol)
                # Far more error replies than the socket buffers hold, never read.
                # A 404 names the path: 500 bytes of it make each reply over 500 bytes.
                one = request_bytes(protocol, "GET", "/nowhere-" + "x" * 500)
                if is_h2(protocol):
                    many = one + b"".join(_h2_more_requests(one, count=3000))
                else:
                    many = one * 3000
                # The server may give up, and reset, before all of it is sent.
                with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
                    await conn.send(many)
                # The server gives up on this client after its send timeout; only the
                # bystander's connection is left (the test client has not closed yet).
                with trio.fail_after(10):
                    await server.wait_connections(at_most=1)
                await conn.close()
            await still_serves(server, protocol)

    run(main)


def _h2_more_requests(first: bytes, count: int) -> list[bytes]:
    """HEADERS frames for streams 3, 5, ... re-using the first request's header block."""
    frames = first[24:]  # after the preface
    # The first frame is the client's SETTINGS, then HEADERS for stream 1.
    settings_len = int.from_bytes(frames[:3], "big")
    headers = frames[9 + settings_len :]
    length = int.from_bytes(headers[:3], "big")
    block = headers[9 : 9 + length]
    out = []
    for i in range(1, count):
        sid = 1 + 2 * i
        out.append(length.to_bytes(3, "big") + headers[3:5] + sid.to_bytes(4, "big") + block)
    return out


@pytest.mark.parametrize("protocol", ["h2c", "tls+h2"])
def test_header_bytes_that_are_not_utf8(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            async with bystander(server, protocol):
                from tests.server.peers import h2_client

                client = h2_client()
                client.send_headers(
                    1,
                    [(b":method", b"GET"), (b":path", b"/fixed?size=2"), (b":scheme", b"http"),
                     (b":authority", b"127.0.0.1"), (b"x-latin", b"caf\xe9 \xff")],
                    end_stream=True,
                )  # fmt: skip
                conn = await connect(server, protocol)
                await conn.send(client.data_to_send())
                events = []
                with trio.fail_after(5):
                    while not any(isinstance(e, h2.events.StreamEnded) for e in events):
                        data = await conn.stream.receive_some(65536)
                        assert data
                        events += client.receive_data(data)
                response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
                assert dict(response.headers or [])[b":status"] == b"200"
                await conn.close()
            await still_serves(server, protocol)

    run(main)


@pytest.mark.parametrize("protocol", ["http/1.1", "tls+http/1.1"])
def test_an_internal_error_on_an_http1_connection_is_a_500_and_a_close(
    protocol: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lab.server import http1

    real = http1._H1Connection.respond

    async def broken(self: http1._H1Connection, request: object, body: bytes) -> None:
        if b"/inject" in request.target:  # type: ignore[attr-defined]
            raise KeyError("server bug")
        await real(self, request, body)  # type: ignore[arg-type]

    monkeypatch.setattr(http1._H1Connection, "respond", broken)

    async def main() -> None:
        async with server_for(protocol) as server:
            async with bystander(server, protocol):
                conn = await connect(server, protocol)
                await conn.send(request_bytes(protocol, "GET", "/inject"))
                raw = await conn.read_until_close()
                assert raw.startswith(b"HTTP/1.1 500 ")
                assert b"connection: close" in raw
            await still_serves(server, protocol)

    with caplog.at_level(logging.WARNING, logger="lab.server"):
        run(main)
    lines = [r for r in caplog.records if "server bug" in r.getMessage()]
    assert len(lines) == 1  # logged once, naming the connection
    assert "connection " in lines[0].getMessage()
    assert lines[0].exc_info is None  # the traceback is for DEBUG


@pytest.mark.parametrize("protocol", ["h2c", "tls+h2"])
def test_an_internal_error_on_an_h2_stream_resets_that_stream_only(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.server import http2

    real = http2.send_text

    async def broken(response: ResponseStream, status: int, text: str, *a: object) -> None:
        if status == 404:
            raise KeyError("server bug")
        await real(response, status, text, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(http2, "send_text", broken)

    async def main() -> None:
        async with server_for(protocol) as server:
            conn = await connect(server, protocol)
            first = request_bytes(protocol, "GET", "/nowhere")
            await conn.send(first + _h2_more_requests(
                request_bytes(protocol, "GET", "/fixed?size=2"), 2)[0])  # fmt: skip
            # The streams are independent: stream 1's reset may come before or after
            # stream 3's end, so read until both are in.
            frames = await _frames_until_all(
                conn,
                lambda fs: (
                    any(_stream_3_ended(f) for f in fs)
                    and any(isinstance(f, RstStreamFrame) for f in fs)
                ),
            )
            resets = [f for f in frames if isinstance(f, RstStreamFrame)]
            assert [(f.stream_id, f.error_code) for f in resets] == [
                (1, h2.errors.ErrorCodes.INTERNAL_ERROR)
            ]
            assert not any(isinstance(f, GoAwayFrame) for f in frames)
            data = [f for f in frames if f.stream_id == 3 and "END_STREAM" in f.flags]
            assert data  # the other stream on the same connection was answered
            await conn.close()
            await still_serves(server, protocol)

    run(main)


@pytest.mark.parametrize("protocol", ["h2c", "tls+h2"])
def test_an_internal_error_on_an_h2_connection_is_goaway_internal_error(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.server import http2

    real = http2._H2Connection._new_stream

    def broken(self: http2._H2Connection, event: h2.events.RequestReceived) -> None:
        if any(b"/inject" in v for _, v in event.headers or []):
            raise KeyError("server bug")
        real(self, event)

    monkeypatch.setattr(http2._H2Connection, "_new_stream", broken)

    async def main() -> None:
        async with server_for(protocol) as server:
            async with bystander(server, protocol):
                conn = await connect(server, protocol)
                await conn.send(request_bytes(protocol, "GET", "/inject"))
                frames = split_frames(await conn.read_until_close(), whole=False)
                goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
                assert [g.error_code for g in goaways] == [h2.errors.ErrorCodes.INTERNAL_ERROR]
            await still_serves(server, protocol)

    run(main)


# Over TLS with ALPN h2 the listener does not sniff; the h2 barrier test covers it.
@pytest.mark.parametrize("protocol", ["http/1.1", "h2c", "tls+http/1.1"])
def test_whatever_escapes_a_protocol_ends_only_that_connection(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.server import listener

    real = listener.sniff
    calls = 0

    async def broken(*args: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:  # the bystander's connection is the first
            raise KeyError("listener bug")
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(listener, "sniff", broken)

    async def main() -> None:
        async with server_for(protocol) as server:
            async with bystander(server, protocol):
                conn = await connect(server, protocol)
                await conn.send(request_bytes(protocol, "GET", "/fixed?size=2"))
                assert await conn.read_until_close() == b""
            await still_serves(server, protocol)

    run(main)


async def _frames_until(conn: Conn, done: Callable[[Frame], bool]) -> list[Frame]:
    """Read until a frame satisfies ``done``; every whole frame read."""
    return await _frames_until_all(conn, lambda frames: any(done(f) for f in frames))


async def _frames_until_all(conn: Conn, done: Callable[[list[Frame]], bool]) -> list[Frame]:
    """Read until the whole frames read so far satisfy ``done``; those frames."""
    raw = b""
    frames: list[Frame] = []
    with trio.fail_after(5):
        while not done(frames):
            data = await conn.stream.receive_some(65536)
            assert data, "closed early"
            raw += data
            frames = split_frames(raw, whole=False)
    return frames


def _stream_3_ended(frame: Frame) -> bool:
    return frame.stream_id == 3 and "END_STREAM" in frame.flags
