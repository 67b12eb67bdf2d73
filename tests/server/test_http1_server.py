"""The HTTP/1.1 server through real loopback sockets, driven by an h11 client or raw bytes."""

from __future__ import annotations

import hashlib
import json

import h11
import pytest
import trio

from lab.apps import HTTPError, Request, ResponseStream
from lab.apps.tokens import tokens_for
from lab.server import Limits
from tests.server.helpers import H11Client, connect, exchange_raw, lab_server, read_all, run


def test_tokens_one_chunk_per_token() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H11Client.connect(server)
            await client.get("/tokens?n=5&interval_ms=0&prompt=x")
            head, data, _ = await client.response()
            assert head.status_code == 200
            assert head.reason == b"OK"
            assert (b"transfer-encoding", b"chunked") in head.headers
            # h11 marks each chunk's first and last piece: one chunk per token.
            chunks = []
            for piece in data:
                if piece.chunk_start:
                    chunks.append(b"")
                chunks[-1] += piece.data
            expected = [t.encode() for t in tokens_for("x", 5)] + [b"\n[DONE]\n"]
            assert chunks == expected
            # And on the wire, literally: each token's size line in hex.
            for token in expected:
                assert b"%x\r\n%s\r\n" % (len(token), token) in client.raw
            assert client.raw.endswith(b"0\r\n\r\n")

    run(main)


def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async def main() -> None:
        async with lab_server() as server:
            request = (
                b"GET /tokens?n=2&interval_ms=30 HTTP/1.1\r\nhost: a\r\n\r\n"
                b"GET /fixed?size=3 HTTP/1.1\r\nhost: a\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
            )
            raw = await exchange_raw(server, request)
            first = raw.index(b"HTTP/1.1 200 OK")
            second = raw.index(b"content-length: 3", first)
            third = raw.index(b"HTTP/1.1 404 Not Found", second)
            assert raw.index(b"0\r\n\r\n", first) < second < third
            assert raw.count(b"HTTP/1.1 ") == 3

    run(main)


def test_content_length_with_transfer_encoding_is_rejected_and_closed() -> None:
    async def main() -> None:
        async with lab_server() as server:
            raw = await exchange_raw(
                server,
                b"POST /chat HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n"
                b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                b"GET /fixed HTTP/1.1\r\nhost: a\r\n\r\n",
            )
            assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"connection: close" in raw.lower()
            assert raw.count(b"HTTP/1.1") == 1  # the smuggled request was not answered

    run(main)


def test_head_has_no_content_and_a_later_error_reply_has_its_own() -> None:
    # RFC 9110 §9.3.2: the HEAD response has GET's Content-Length and no content; the 400
    # for the unreadable request after it on the connection carries its whole body
    # (found by lab fuzz server: the 400's body was dropped as if it answered a HEAD).
    async def main() -> None:
        async with lab_server() as server:
            raw = await exchange_raw(
                server, b"HEAD /fixed?size=5 HTTP/1.1\r\nhost: a\r\n\r\nGARBAGE\r\n\r\n"
            )
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="HEAD", target="/fixed?size=5", headers=[("host", "a")]))
        client.send(h11.EndOfMessage())
        client.receive_data(raw)
        head = client.next_event()
        assert isinstance(head, h11.Response)
        assert head.status_code == 200
        assert dict(head.headers)[b"content-length"] == b"5"
        assert isinstance(client.next_event(), h11.EndOfMessage)  # no content
        rest = raw[raw.index(b"HTTP/1.1 400") :]
        head_end = rest.index(b"\r\n\r\n") + 4
        length = int(rest.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert len(rest) - head_end == length

    run(main)


def test_h11_alone_keeps_a_cl_te_connection_open() -> None:
    # Why the check above is needed: h11 0.16 accepts the request and stays usable.
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert isinstance(conn.next_event(), h11.Request)
    assert conn.their_state is h11.SEND_BODY


@pytest.mark.parametrize("split", [False, True])
def test_complete_oversized_head_gets_431(split: bool) -> None:
    # h11 only limits incomplete heads; a 20 KiB head arriving in one read passes h11.
    async def main() -> None:
        async with lab_server() as server:
            head = b"GET / HTTP/1.1\r\nhost: a\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n"
            if split:
                head = head[:-4]  # incomplete: h11's own limit answers
            raw = await exchange_raw(server, head)
            assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")

    run(main)


def test_head_just_under_the_limit_is_served() -> None:
    async def main() -> None:
        limits = Limits(max_head_size=4096)
        async with lab_server(limits=limits) as server:
            base = b"GET /fixed?size=1 HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx: "
            pad = 4096 - len(base) - 4
            raw = await exchange_raw(server, base + b"a" * pad + b"\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 200 OK")
            raw = await exchange_raw(server, base + b"a" * (pad + 1) + b"\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 431 ")

    run(main)


def test_body_over_limit_gets_413() -> None:
    async def main() -> None:
        async with lab_server(limits=Limits(max_body_size=100)) as server:
            body = b"{" + b" " * 200 + b"}"
            raw = await exchange_raw(
                server,
                b"POST /chat HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body),
            )
            assert raw.startswith(b"HTTP/1.1 413 ")

    run(main)


def test_garbage_gets_400_with_reason() -> None:
    async def main() -> None:
        async with lab_server() as server:
            raw = await exchange_raw(server, b"HELLO\x00 WORLD\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"bad request" in raw

    run(main)


def test_slow_head_gets_408_after_head_timeout() -> None:
    async def main() -> None:
        async with lab_server(limits=Limits(head_timeout=5)) as server:
            stream = await connect(server)
            start = trio.current_time()
            await stream.send_all(b"GET / HTTP/1.1\r\n")
            raw = await read_all(stream)
            assert raw.startswith(b"HTTP/1.1 408 Request Timeout")
            assert trio.current_time() - start == pytest.approx(5, abs=0.5)

    run(main, autojump=True)


def test_dribbled_head_still_bounded_by_one_deadline() -> None:
    # A byte every 3 s never trips a per-read timeout of 5 s; the head deadline still holds.
    async def main() -> None:
        async with lab_server(limits=Limits(head_timeout=5)) as server:
            stream = await connect(server)
            start = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def dribble() -> None:
                    for byte in b"GET / HTTP/1.1\r\nhost: a\r\n":
                        try:
                            await stream.send_all(bytes([byte]))
                        except trio.BrokenResourceError:
                            return
                        await trio.sleep(3)

                nursery.start_soon(dribble)
                raw = await read_all(stream)
                nursery.cancel_scope.cancel()
            assert raw.startswith(b"HTTP/1.1 408 ")
            assert trio.current_time() - start < 9

    run(main, autojump=True)


def test_idle_keep_alive_connection_is_closed_after_idle_timeout() -> None:
    async def main() -> None:
        async with lab_server(limits=Limits(idle_timeout=7)) as server:
            client = await H11Client.connect(server)
            await client.get("/fixed?size=1")
            await client.response()
            start = trio.current_time()
            rest = await read_all(client.stream)
            assert rest == b""  # closed without a response
            assert trio.current_time() - start == pytest.approx(7, abs=1)

    run(main, autojump=True)


def test_expect_100_continue() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H11Client.connect(server)
            body = json.dumps({"n": 1, "interval_ms": 0}).encode()
            await client.send(
                h11.Request(
                    method="POST",
                    target="/chat",
                    headers=[
                        ("host", "a"),
                        ("expect", "100-continue"),
                        ("content-length", str(len(body))),
                    ],
                )
            )
            interim = await client.next_event()
            assert isinstance(interim, h11.InformationalResponse)
            assert interim.status_code == 100
            await client.send(h11.Data(data=body), h11.EndOfMessage())
            head, _, _ = await client.response()
            assert head.status_code == 200

    run(main)


def test_client_disconnect_cancels_the_handler() -> None:
    cancelled = trio.Event()
    sent: list[int] = []

    async def endless(request: Request, response: ResponseStream) -> None:
        await response.start(200, [("content-type", "text/plain")])
        try:
            for i in range(1_000_000):
                sent.append(i)
                await response.send(b"tick\n")
                await trio.sleep(0.01)
        except trio.Cancelled:
            cancelled.set()
            raise

    async def main() -> None:
        async with lab_server(app=endless) as server:
            client = await H11Client.connect(server)
            await client.get("/")
            assert isinstance(await client.next_event(), h11.Response)
            assert isinstance(await client.next_event(), h11.Data)
            await client.stream.aclose()
            with trio.fail_after(5):
                await cancelled.wait()
                await server.wait_no_connections()
            count = len(sent)
            await trio.sleep(0.1)
            assert len(sent) == count  # nothing is generated for nobody

    run(main)


def test_handler_error_before_start_is_500_after_start_cuts_the_body() -> None:
    async def broken(request: Request, response: ResponseStream) -> None:
        if request.path == "/early":
            raise ValueError("boom")
        await response.start(200, [("content-type", "text/plain")])
        await response.send(b"partial")
        raise ValueError("boom later")

    async def main() -> None:
        async with lab_server(app=broken) as server:
            raw = await exchange_raw(
                server, b"GET /early HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
            )
            assert raw.startswith(b"HTTP/1.1 500 ")
            raw = await exchange_raw(server, b"GET /late HTTP/1.1\r\nhost: a\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 200 ")
            assert b"7\r\npartial\r\n" in raw
            assert not raw.endswith(b"0\r\n\r\n")  # no last-chunk: visibly incomplete

    run(main)


def test_http_error_statuses_and_allow_header() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H11Client.connect(server)
            await client.send(
                h11.Request(method="DELETE", target="/tokens", headers=[("host", "a")]),
                h11.EndOfMessage(),
            )
            head, _, _ = await client.response()
            assert head.status_code == 405
            assert (b"allow", b"GET") in head.headers
            await client.get("/tokens?n=abc")
            head, data, _ = await client.response()
            assert head.status_code == 400
            assert b"n='abc'" in b"".join(d.data for d in data)
            await client.get("/tokens?n=100000000")
            head, _, _ = await client.response()
            assert head.status_code == 400

    run(main)


async def _post_chat(
    server_port: int, accept: str | None, payload: object
) -> tuple[h11.Response, bytes, list[h11.Data]]:
    client = H11Client(await trio.open_tcp_stream("127.0.0.1", server_port))
    body = json.dumps(payload).encode()
    headers = [
        ("host", "a"),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
    ]
    if accept is not None:
        headers.append(("accept", accept))
    await client.send(
        h11.Request(method="POST", target="/chat", headers=headers),
        h11.Data(data=body),
        h11.EndOfMessage(),
    )
    head, data, _ = await client.response()
    await client.stream.aclose()
    return head, b"".join(d.data for d in data), data


def test_chat_framings_follow_accept() -> None:
    payload = {"prompt": "p", "n": 4, "interval_ms": 0}
    words = tokens_for("p", 4)

    async def main() -> None:
        async with lab_server() as server:
            head, body, _ = await _post_chat(server.port, "application/x-ndjson", payload)
            assert (b"content-type", b"application/x-ndjson") in head.headers
            lines = [json.loads(line) for line in body.splitlines()]
            assert [x["token"] for x in lines[:-1]] == words
            assert lines[-1] == {"done": True}

            head, body, _ = await _post_chat(server.port, "application/json", payload)
            assert (b"content-length", str(len(body)).encode()) in head.headers
            assert json.loads(body)["tokens"] == words

            head, body, _ = await _post_chat(
                server.port, "text/*;q=0.5, application/json;q=0.1", payload
            )
            assert body == "".join(words).encode() + b"\n[DONE]\n"

            head, body, _ = await _post_chat(server.port, "image/png", payload)
            assert head.status_code == 406

            head, body, _ = await _post_chat(server.port, None, {"n": "four"})
            assert head.status_code == 400

    run(main)


def test_trailers_carry_count_and_checksum_of_the_body() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H11Client.connect(server)
            await client.get("/trailers?n=5&interval_ms=0", [("te", "trailers")])
            head, data, end = await client.response()
            body = b"".join(d.data for d in data)
            trailers = dict(end.headers)
            assert trailers[b"x-token-count"] == b"5"
            assert trailers[b"x-body-sha256"] == hashlib.sha256(body).hexdigest().encode()
            assert (b"trailer", b"x-token-count, x-body-sha256") in head.headers

    run(main)


def test_shutdown_closes_idle_and_lets_streams_finish() -> None:
    async def main() -> None:
        async with lab_server() as server:
            idle = await H11Client.connect(server)
            await idle.get("/fixed?size=1")
            await idle.response()
            busy = await H11Client.connect(server)
            await busy.get("/tokens?n=5&interval_ms=50")
            assert isinstance(await busy.next_event(), h11.Response)
            server.shutdown()
            assert await read_all(idle.stream) == b""  # idle: closed at once
            pieces = []
            while isinstance(event := await busy.next_event(), h11.Data):
                pieces.append(event)
            assert isinstance(event, h11.EndOfMessage)  # the stream ran to its end
            assert await read_all(busy.stream) == b""
            with pytest.raises(OSError, match="connect"):
                await trio.open_tcp_stream("127.0.0.1", server.port)

    run(main)


def test_http_error_from_a_handler_keeps_the_connection() -> None:
    async def teapot(request: Request, response: ResponseStream) -> None:
        raise HTTPError(418, "short and stout\n")

    async def main() -> None:
        async with lab_server(app=teapot) as server:
            client = await H11Client.connect(server)
            await client.get("/")
            head, _, _ = await client.response()
            assert head.status_code == 418
            await client.get("/")
            head, _, _ = await client.response()
            assert head.status_code == 418

    run(main)
