"""The WebSocket opening handshake on the lab's server: HTTP/1.1 Upgrade (RFC 6455 §4) and
HTTP/2 extended CONNECT (RFC 8441), checked with a raw client (tests.server.wsclient).

A good handshake is answered 101 with the right Sec-WebSocket-Accept (§4.2.2), or 200 on
an h2 stream that stays open (RFC 8441 §5); a bad one gets a plain HTTP answer: 400, or 426
with Sec-WebSocket-Version: 13 when only the version is wrong (§4.2.2 item 4, §4.4), and
the connection goes on. A request that does not ask for a WebSocket gets an ordinary
response; an ordinary endpoint answers a WebSocket request as any other.
"""

from __future__ import annotations

import base64

import pytest
import trio

from lab.apps import Request, ResponseStream
from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.server import Server
from lab.wire.websocket import accept_key
from tests.server.helpers import run
from tests.server.peers import PROTOCOLS, connect, exchange, is_h2, server_for
from tests.server.wsclient import Refused, WSClient

TOKENS = "/ws/tokens?n=3&interval_ms=0&prompt=hi"
EXPECTED = [*tokens_for("hi", 3), "[DONE]"]
H1_PROTOCOLS = [p for p in PROTOCOLS if not is_h2(p)]
H2_PROTOCOLS = [p for p in PROTOCOLS if is_h2(p)]


class Recorder:
    """The lab's app, noting what each request said it was."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    async def __call__(self, request: Request, response: ResponseStream) -> None:
        self.seen.append((request.protocol, request.method, request.path, request.upgrade))
        await lab_app(request, response)


async def _refused(
    server: Server, protocol: str, target: str, headers: list[tuple[str, str]]
) -> Refused:
    with pytest.raises(Refused) as refused:
        await WSClient.open(server, protocol, target, headers)
    return refused.value


async def _closed_cleanly(ws: WSClient, server: Server, skipped: int = 0) -> None:
    messages, close = await ws.until_close()
    assert [m.data for m in messages] == EXPECTED[skipped:]
    assert close is not None
    assert close.code == 1000
    await ws.send_close(1000)
    assert await ws.until_end() == []
    await ws.conn.close()
    with trio.fail_after(5):
        await server.wait_no_connections()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_good_handshake_opens_a_websocket(protocol: str) -> None:
    recorder = Recorder()

    async def main() -> None:
        async with server_for(protocol, recorder) as server:
            ws = await WSClient.open(server, protocol, TOKENS)
            await _closed_cleanly(ws, server)

    run(main)
    method = "CONNECT" if is_h2(protocol) else "GET"
    version = "h2" if is_h2(protocol) else "http/1.1"
    assert recorder.seen == [(version, method, "/ws/tokens", "websocket")]


@pytest.mark.parametrize("protocol", H1_PROTOCOLS)
def test_the_101_carries_the_accept_value_of_the_key(protocol: str) -> None:
    key = base64.b64encode(b"the sample nonce").decode()

    async def main() -> None:
        async with server_for(protocol) as server:
            conn = await connect(server, protocol)
            from tests.server.wsclient import h1_request

            await conn.send(h1_request(TOKENS, key))
            head = bytearray()
            with trio.fail_after(5):
                while b"\r\n\r\n" not in head:
                    head += await conn.stream.receive_some(65536)
            await conn.close()
            lines = bytes(head).split(b"\r\n\r\n")[0].decode().split("\r\n")
            assert lines[0] == "HTTP/1.1 101 Switching Protocols"
            fields = [tuple(line.split(": ", 1)) for line in lines[1:]]
            assert ("Sec-WebSocket-Accept".lower(), accept_key(key)) in [
                (k.lower(), v) for k, v in fields
            ]
            assert ("upgrade", "websocket") in [(k.lower(), v) for k, v in fields]

    run(main)


# (the header the client changes, its value ("" drops it), the status, what the body says)
BAD_H1 = [
    ("sec-websocket-key", "not base64!", 400, "is not base64"),
    ("sec-websocket-key", base64.b64encode(b"8 octets").decode(), 400, "decodes to 8 octets"),
    ("sec-websocket-key", "", 400, "0 Sec-WebSocket-Key fields"),
    ("connection", "keep-alive", 400, "Connection does not include the token 'Upgrade'"),
    ("sec-websocket-version", "8", 426, "Sec-WebSocket-Version must be 13"),
    ("sec-websocket-version", "", 426, "Sec-WebSocket-Version must be 13"),
]


@pytest.mark.parametrize("protocol", H1_PROTOCOLS)
@pytest.mark.parametrize(("name", "value", "status", "why"), BAD_H1)
def test_a_bad_handshake_gets_400_or_426_and_the_connection_goes_on(
    protocol: str, name: str, value: str, status: int, why: str
) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            refused = await _refused(server, protocol, TOKENS, [(name, value)])
            assert refused.status == status
            assert why in refused.body.decode()
            assert refused.headers["sec-websocket-version"] == "13"
            if status == 426:
                assert refused.headers["upgrade"] == "websocket"
            # Not a switch: the same connection serves the next request.
            assert refused.client is not None
            again = await exchange(refused.client.conn, protocol, "GET", "/fixed?size=9")
            assert again == (200, b"streamlab")

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_upgrade_is_an_ordinary_request_answered_426(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            conn = await connect(server, protocol)
            status, body = await exchange(conn, protocol, "GET", TOKENS)
            assert status == 426
            assert b"is a WebSocket endpoint" in body
            if not is_h2(protocol):  # keep-alive: the same connection answers again
                assert (await exchange(conn, protocol, "GET", "/fixed?size=9"))[0] == 200
            await conn.close()

    run(main)


@pytest.mark.parametrize("protocol", H1_PROTOCOLS)
def test_a_missing_upgrade_header_is_not_a_websocket_request(protocol: str) -> None:
    recorder = Recorder()

    async def main() -> None:
        async with server_for(protocol, recorder) as server:
            refused = await _refused(server, protocol, TOKENS, [("upgrade", "")])
            assert refused.status == 426
            assert refused.headers["upgrade"] == "websocket"

    run(main)
    assert recorder.seen == [("http/1.1", "GET", "/ws/tokens", "")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_websocket_request_to_an_ordinary_endpoint_gets_its_ordinary_answer(
    protocol: str,
) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            refused = await _refused(server, protocol, "/tokens?n=3&prompt=hi", [])
            if is_h2(protocol):
                # /tokens is GET only: an extended CONNECT gets 405, with Allow.
                assert (refused.status, refused.headers["allow"]) == (405, "GET")
            else:
                assert refused.status == 200
                assert refused.body.decode() == "".join(tokens_for("hi", 3)) + "\n[DONE]\n"
            nowhere = await _refused(server, protocol, "/nowhere", [])
            assert nowhere.status == 404

    run(main)


@pytest.mark.parametrize("protocol", H2_PROTOCOLS)
def test_h2_server_advertises_extended_connect(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, TOKENS)
            # RFC 8441 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL (0x8) = 1.
            assert ws.settings[0x8] == 1
            assert ws.h2 is not None
            assert ws.h2.remote_settings.enable_connect_protocol == 1
            await _closed_cleanly(ws, server)

    run(main)


@pytest.mark.parametrize("protocol", H2_PROTOCOLS)
def test_h2_refusals_are_answered_then_the_stream_is_reset(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            version = await _refused(server, protocol, TOKENS, [("sec-websocket-version", "8")])
            assert version.status == 426
            assert version.headers["sec-websocket-version"] == "13"
            assert b"this server speaks 13" in version.body
            other = await _refused(server, protocol, TOKENS, [(":protocol", "connect-udp")])
            assert other.status == 426  # not a WebSocket request: /ws/tokens says so
            # The client's side is still open: RST_STREAM(NO_ERROR) asks it to stop
            # sending (RFC 9113 §8.1).
            assert (version.reset, other.reset) == (0, 0)

    run(main)


@pytest.mark.parametrize("protocol", H2_PROTOCOLS)
def test_h2_websocket_and_other_streams_share_the_connection(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, "/ws/tokens?n=3&interval_ms=200&prompt=hi")
            assert ws.h2 is not None
            # An ordinary request on the same connection while the WebSocket is open:
            # answered while the WebSocket's tokens (200 ms apart) are still coming.
            sid = ws.h2.get_next_available_stream_id()
            request = [(":method", "GET"), (":path", "/fixed?size=9"), (":scheme", "http"),
                       (":authority", "x")]  # fmt: skip
            ws.h2.send_headers(sid, request, end_stream=True)
            await ws.conn.send(ws.h2.data_to_send())
            taken = 0
            while sid not in ws.others:
                assert await ws.next_frame() is not None
                taken += 1
            assert ws.others[sid] == (200, b"streamlab")
            assert taken < len(EXPECTED)
            await _closed_cleanly(ws, server, skipped=taken)

    run(main)
