"""Each client transport receives exactly the deterministic tokens, on one trace's clock.

The HTTP transports read a lab server in this process. The WebSocket client is also read
against wsproto's server side (an independent peer, from the test extra), so that it is
tested whether or not the lab server serves /ws/tokens yet; against a server without the
endpoint its run says "not served" and carries no tokens.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from lab.apps import app as lab_app
from lab.apps.interface import HTTPError, ResponseStream
from lab.apps.interface import Request as AppRequest
from lab.apps.tokens import tokens_for
from lab.capture.tap import Recorder
from lab.capture.trace import RECV, Trace
from lab.client import transports as t
from lab.client.transports_ws import ws_h1, ws_h2
from lab.server import serve_tcp
from tests.server.helpers import WAIT

Transport = Callable[[str, int, t.StreamSpec, Recorder], Awaitable[t.TransportRun]]
HTTP_TRANSPORTS: dict[str, Transport] = {
    "short-poll": t.short_poll,
    "long-poll": t.long_poll,
    "chunked": t.chunked,
    "ndjson": t.ndjson,
    "sse-get": t.sse_get,
    "sse-post": t.sse_post,
    "sse-h2": t.sse_h2,
}
N = 6


async def _read(fn: Transport, port: int, stream: str) -> t.TransportRun:
    spec = t.StreamSpec(prompt="transports", n=N, interval_ms=10, stream=stream, poll_interval_ms=4)
    recorder = Recorder(Trace(name=stream), t0=trio.current_time(), clock=trio.current_time)
    with trio.fail_after(WAIT):
        return await fn("127.0.0.1", port, spec, recorder)


def _check_tokens(run: t.TransportRun) -> None:
    assert run.served, run.note
    assert [r.token for r in run.tokens] == tokens_for("transports", N)
    assert [r.index for r in run.tokens] == list(range(N))
    times = [r.t for r in run.tokens]
    assert times == sorted(times)
    assert times[0] > 0  # after the client began: time 0 of the trace
    # Decoded from bytes read: the first token no earlier than the first read.
    recvs = [rec.t for c in run.trace.connections for rec in c.records if rec.kind == RECV]
    assert recvs
    assert min(recvs) <= times[0]


@pytest.mark.parametrize("name", list(HTTP_TRANSPORTS))
def test_each_http_transport_receives_exactly_the_tokens(name: str) -> None:
    async def main() -> t.TransportRun:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_tcp, lab_app, 0)
            run = await _read(HTTP_TRANSPORTS[name], server.port, f"test-{name}")
            nursery.cancel_scope.cancel()
        return run

    run = trio.run(main)
    assert run.name == name
    _check_tokens(run)
    assert len(run.trace.connections) == 1  # keep-alive: polls too use one connection


@pytest.mark.parametrize("fn", [ws_h1, ws_h2])
def test_websocket_against_the_lab_server_is_read_or_says_not_served(fn: Transport) -> None:
    async def main() -> t.TransportRun:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_tcp, lab_app, 0)
            run = await _read(fn, server.port, "test-ws")
            nursery.cancel_scope.cancel()
        return run

    run = trio.run(main)
    if run.served:
        _check_tokens(run)
    else:
        assert run.note.startswith("not served: ")
        assert run.tokens == []
        assert run.trace.connections  # the refused handshake is in the trace


async def _no_endpoints(request: AppRequest, response: ResponseStream) -> None:
    raise HTTPError(404, f"no endpoint at {request.path}\n")


@pytest.mark.parametrize("fn", [ws_h1, ws_h2])
def test_websocket_on_a_server_without_the_endpoint_is_not_served(fn: Transport) -> None:
    async def main() -> t.TransportRun:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_tcp, _no_endpoints, 0)
            run = await _read(fn, server.port, "test-ws-404")
            nursery.cancel_scope.cancel()
        return run

    run = trio.run(main)
    assert not run.served
    assert run.tokens == []
    # Either the 404 itself, or (HTTP/2) the server never offered extended CONNECT.
    assert "404" in run.note or "SETTINGS_ENABLE_CONNECT_PROTOCOL" in run.note
    received = b"".join(c.server_to_client() for c in run.trace.connections)
    assert received  # what the server said is in the trace


async def _wsproto_tokens(stream: trio.SocketStream) -> None:
    """RFC 6455 by wsproto: each token as {"index", "token"}, then [DONE]; answers Close."""
    ws = WSConnection(ConnectionType.SERVER)
    with trio.fail_after(WAIT):
        while data := await stream.receive_some(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    query = parse_qs(urlsplit(event.target).query)
                    words = tokens_for(query["prompt"][0], int(query["n"][0]))
                    await stream.send_all(ws.send(AcceptConnection()))
                    for i, token in enumerate(words):
                        message = json.dumps({"index": i, "token": token})
                        await stream.send_all(ws.send(TextMessage(data=message)))
                    await stream.send_all(ws.send(TextMessage(data="[DONE]")))
                elif isinstance(event, CloseConnection):
                    await stream.send_all(ws.send(event.response()))
                    await stream.aclose()
                    return


def test_websocket_over_http1_reads_a_wsproto_server() -> None:
    async def main() -> t.TransportRun:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, _wsproto_tokens, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            run = await _read(ws_h1, port, "test-wsproto")
            nursery.cancel_scope.cancel()
        return run

    run = trio.run(main)
    _check_tokens(run)
    (conn,) = run.trace.connections
    head = conn.server_to_client().split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 101 ")
    # The client ended with a masked Close 1000 (0x88, MASK bit, 2-byte code + 4-byte key).
    assert conn.client_to_server()[-8:-6] == b"\x88\x82"


async def _endless(request: AppRequest, response: ResponseStream) -> None:
    await response.start(200, [("content-type", "text/plain")])
    # As good as endless: 16 MiB, far past the budget the test gives the client.
    for _ in range(16 * 1024):
        await response.send(b"x" * 1024)


@pytest.mark.parametrize("fn", [t.chunked, t.sse_h2])
def test_a_reply_that_never_ends_is_cut_off_by_the_byte_budget(
    fn: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(t, "MAX_RUN_BYTES", 64 * 1024)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_tcp, _endless, 0)
            with pytest.raises(t.TransportError, match="bytes read"):
                await _read(fn, server.port, "endless")
            nursery.cancel_scope.cancel()

    trio.run(main)
