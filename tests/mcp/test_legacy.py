"""/mcp, revision 2025-11-25, through real sockets with the lab's own HTTP/1.1 client:
every status the transport answers with, sessions, the GET stream, resumption, cancellation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from lab.apps import app
from lab.apps.mcp import McpEndpoint, McpLimits
from lab.apps.mcp.transport import parse_host
from lab.apps.tokens import tokens_for
from lab.server import Server
from lab.wire.sse import parse
from tests.mcp.helpers import (
    ACCEPT,
    CLIENT_INFO,
    JSON_TYPE,
    app_for,
    body_json,
    initialize,
    legacy_headers,
    open_stream,
    post,
    request,
    rpc,
    stream_call,
)
from tests.server.helpers import WAIT, lab_server, run


def _lab(fn: Any, endpoint: McpEndpoint | None = None, *, autojump: bool = False) -> None:
    """Run ``fn(server)`` against a lab server: the router's /mcp, or ``endpoint``."""

    async def main() -> None:
        async with lab_server(app if endpoint is None else app_for(endpoint)) as server:
            await fn(server)

    run(main, autojump=autojump)


def _rpc_error(response: Any) -> dict[str, Any]:
    body = body_json(response)
    assert "result" not in body
    return body["error"]  # type: ignore[no-any-return]


# -- initialize and the session id ------------------------------------------------------


def test_initialize_assigns_a_session_and_negotiates_the_version() -> None:
    async def check(server: Server) -> None:
        for asked, got in [("2025-11-25", "2025-11-25"), ("2025-03-26", "2025-03-26"),
                           ("2024-11-05", "2025-11-25"), ("1999-01-01", "2025-11-25")]:  # fmt: skip
            params = {"protocolVersion": asked, "capabilities": {}, "clientInfo": CLIENT_INFO}
            response = await post(server.port, rpc("initialize", params, "init"))
            assert response.status == 200
            body = body_json(response)
            assert body["id"] == "init"
            assert body["result"]["protocolVersion"] == got
            assert body["result"]["capabilities"] == {
                "tools": {"listChanged": False},
                "logging": {},
            }
            assert body["result"]["serverInfo"]["name"] == "streamlab"
            session = response.header("mcp-session-id")
            assert session is not None
            assert len(session) == 32
            assert all(0x21 <= ord(c) <= 0x7E for c in session)

    _lab(check)


def test_notifications_and_responses_get_202_and_no_body() -> None:
    async def check(server: Server) -> None:
        session = await initialize(server.port)
        headers = legacy_headers(session)
        for body in (
            rpc("notifications/initialized", id=None),
            rpc("notifications/whatever", {"x": 1}, id=None),
            b'{"jsonrpc":"2.0","id":99,"result":{}}',
        ):
            response = await post(server.port, body, headers)
            assert (response.status, response.body) == (202, b"")
            assert response.header("content-type") is None

    _lab(check)


def test_requests_need_the_session_id_and_an_unknown_one_is_404() -> None:
    async def check(server: Server) -> None:
        missing = await post(
            server.port, rpc("tools/list"), [("mcp-protocol-version", "2025-11-25")]
        )
        assert missing.status == 400
        assert "Mcp-Session-Id" in _rpc_error(missing)["message"]
        unknown = await post(server.port, rpc("tools/list"), legacy_headers("no-such-session"))
        assert unknown.status == 404
        get = await request(server.port, "GET", [ACCEPT, *legacy_headers("nope")])
        assert get.status == 404

    _lab(check)


def test_delete_ends_the_session_and_then_it_is_404() -> None:
    async def check(server: Server) -> None:
        session = await initialize(server.port)
        headers = legacy_headers(session)
        assert (await post(server.port, rpc("ping"), headers)).status == 200
        deleted = await request(server.port, "DELETE", headers)
        assert (deleted.status, deleted.body) == (204, b"")
        assert (await post(server.port, rpc("ping"), headers)).status == 404
        assert (await request(server.port, "DELETE", headers)).status == 404

    _lab(check)


def test_the_protocol_version_header_is_checked_after_initialize() -> None:
    async def check(server: Server) -> None:
        session = await initialize(server.port)
        bad = await post(server.port, rpc("ping"), legacy_headers(session, "2024-13-99"))
        assert bad.status == 400
        assert _rpc_error(bad)["data"]["requested"] == "2024-13-99"
        # Absent: the server assumes 2025-03-26, which it supports.
        ok = await post(server.port, rpc("ping"), [("mcp-session-id", session)])
        assert (ok.status, body_json(ok)["result"]) == (200, {})

    _lab(check)


# -- what a POST must look like ---------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 406),
        (("accept", "application/json"), 406),
        (("accept", "text/event-stream"), 406),
        (("accept", "*/*"), 406),
        (("accept", "application/json, text/event-stream;q=0"), 406),
        (("accept", "text/event-stream; q=0.5, Application/JSON"), 200),
    ],
)
def test_accept_must_list_json_and_sse(accept: tuple[str, str] | None, status: int) -> None:
    async def check(server: Server) -> None:
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO}
        response = await post(server.port, rpc("initialize", params), accept=accept)
        assert response.status == status

    _lab(check)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_typed_is_415(content_type: str | None) -> None:
    async def check(server: Server) -> None:
        header = ("content-type", content_type) if content_type else None
        response = await post(server.port, rpc("ping"), content_type=header)
        assert response.status == 415

    _lab(check)


def test_malformed_json_is_a_parse_error_without_an_id() -> None:
    async def check(server: Server) -> None:
        response = await post(server.port, b'{"jsonrpc": "2.0", "id": 1, "method": ')
        assert response.status == 400
        assert body_json(response) == {
            "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error: JSONDecodeError"},
        }  # fmt: skip
        batch = await post(server.port, b"[" + rpc("ping") + b"]")
        assert (batch.status, _rpc_error(batch)["code"]) == (400, -32600)

    _lab(check)


def test_a_message_over_the_mcp_size_limit_is_413() -> None:
    async def check(server: Server) -> None:
        session = await initialize(server.port)
        big = rpc("tools/call", {"name": "fail", "arguments": {"message": "x" * 2000}})
        response = await post(server.port, big, legacy_headers(session))
        assert response.status == 413
        small = rpc("tools/call", {"name": "fail", "arguments": {"message": "x"}})
        assert (await post(server.port, small, legacy_headers(session))).status == 200

    _lab(check, McpEndpoint(McpLimits(max_message_size=1024)))


# -- Origin and Host --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://evil.example", 403),
        ("null", 403),
        ("http://127.0.0.1.evil.example", 403),
        ("http://localhost:3000", 200),
        ("https://127.0.0.1", 200),
        ("http://[::1]:8080", 200),
        ("http://[::1", 403),
        ("http://localhost:port", 403),
        ("file://localhost", 403),
        ("http://[::1]evil.example", 403),
        ("http://evil.example@localhost", 403),
        ("http://localhost@evil.example", 403),
        ("http://localhost/path", 403),
        ("HTTP://LOCALHOST", 200),
    ],
)
def test_a_browser_origin_must_be_local(origin: str, status: int) -> None:
    async def check(server: Server) -> None:
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO}
        response = await post(server.port, rpc("initialize", params), [("origin", origin)])
        assert response.status == status
        if status == 403:
            assert "id" not in body_json(response)

    _lab(check)


# Host values (RFC 9110 §7.2: uri-host [":" port]; RFC 3986 §3.2.2-3.2.3). 200: a loopback
# name or address of this machine, or an allowed host; 421: well formed, another host;
# 400: not a Host value at all (RFC 9112 §3.2).
HOSTS = [
    ("localhost", 200), ("LocalHost:8080", 200), ("localhost:", 200), ("127.0.0.1", 200),
    ("127.0.0.1:1", 200), ("[::1]", 200), ("[::1]:9", 200), ("[0:0:0:0:0:0:0:1]:80", 200),
    ("lab.internal:8080", 200), ("LAB.internal:8080", 200),
    ("evil.example", 421), ("evil.example:80", 421), ("lab.internal", 421),
    ("lab.internal:8081", 421), ("127.0.0.2", 421), ("127.1", 421), ("127.000.000.001", 421),
    ("localhost.", 421), ("[::2]", 421), ("[::ffff:127.0.0.1]", 421), ("", 421),
    ("[::1]anything", 400), ("[::1]:80x", 400), ("[::1]:8080:1", 400), ("[::1", 400),
    ("::1", 400), ("[::1%25lo]", 400), ("[v1.loopback]", 400), ("[localhost]", 400),
    ("localhost:80:80", 400), ("localhost:-1", 400), ("localhost:http", 400),
    ("evil.example@localhost", 400), ("localhost@evil.example", 400), ("localhost/x", 400),
    ("local host", 400),
]  # fmt: skip


async def _raw_initialize(port: int, host_lines: str) -> bytes:
    """POST initialize with exactly these Host field lines (the lab's client writes its
    own Host); the whole reply."""
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO}
    body = rpc("initialize", params)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = (
        f"POST /mcp HTTP/1.1\r\n{host_lines}content-type: application/json\r\n"
        f"accept: application/json, text/event-stream\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    await stream.send_all(head.encode() + body)
    data = b""
    with trio.fail_after(WAIT):
        while chunk := await stream.receive_some(65536):
            data += chunk
    await stream.aclose()
    return data


@pytest.mark.parametrize(("host", "status"), HOSTS)
def test_the_host_must_name_this_server(host: str, status: int) -> None:
    async def check(server: Server) -> None:
        data = await _raw_initialize(server.port, f"host: {host}\r\n")
        assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:80]
        if status != 200:
            assert b'"code":-32600' in data
            assert b'"id"' not in data  # refused before the message is looked at

    _lab(check, McpEndpoint(allowed_hosts=frozenset({"lab.internal:8080"})))


def test_a_request_with_two_host_fields_is_400() -> None:
    async def check(server: Server) -> None:
        for lines in ("host: localhost\r\nhost: evil.example\r\n",
                      "host: localhost\r\nhost: localhost\r\n"):  # fmt: skip
            data = await _raw_initialize(server.port, lines)
            assert data.startswith(b"HTTP/1.1 400 "), data[:80]

    _lab(check)


def test_a_host_parses_to_a_normalised_name_and_port() -> None:
    assert parse_host("[0:0::1]:8080") == ("[::1]", "8080")
    assert parse_host("LOCALHOST") == ("localhost", None)
    assert parse_host("localhost:") == ("localhost", "")
    assert parse_host("a%41b:1") == ("a%41b", "1")
    for bad in ("[::1]x", "[::1]:1:", "[]", "[::1]]", "a:b", "a b", "a:1 ", "\u00e9"):
        assert parse_host(bad) is None, bad


# -- tools ------------------------------------------------------------------------------


def test_quick_requests_are_answered_with_json() -> None:
    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        listed = body_json(await post(server.port, rpc("tools/list", {}, 2), headers))
        assert [t["name"] for t in listed["result"]["tools"]] == ["stream_tokens", "fail"]
        assert all(t["inputSchema"]["type"] == "object" for t in listed["result"]["tools"])
        failed = body_json(await post(server.port, rpc("tools/call", {"name": "fail"}, 3), headers))
        assert failed["result"] == {
            "content": [{"type": "text", "text": "fail: this tool always fails"}], "isError": True,
        }  # fmt: skip
        unknown = body_json(
            await post(server.port, rpc("tools/call", {"name": "nope"}, 4), headers)
        )
        assert unknown["error"]["code"] == -32602
        bad_args = rpc("tools/call", {"name": "stream_tokens", "arguments": {"n": 0}}, 5)
        async with open_stream(server.port, "POST", headers, bad_args) as stream:
            await stream.read()
        assert stream.messages()[-1]["result"]["isError"] is True
        missing = body_json(await post(server.port, rpc("resources/list", {}, 6), headers))
        assert missing["error"]["code"] == -32601
        level = body_json(
            await post(server.port, rpc("logging/setLevel", {"level": "loud"}, 7), headers)
        )
        assert level["error"]["code"] == -32602

    _lab(check)


def test_the_streaming_tool_answers_with_sse_progress_then_its_result() -> None:
    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "POST", headers, stream_call(5, id=7)) as stream:
            assert stream.response.status == 200
            assert stream.response.header("content-type") == "text/event-stream"
            assert stream.response.header("x-accel-buffering") == "no"
            await stream.read()
        assert stream.ended
        # The priming event first: an id, the reconnection time and empty data.
        assert stream.response.body.startswith(b"id: 1-0\nretry: 1000\ndata:\n\n")
        assert stream.decoder.retry == 1000
        assert [e.last_event_id for e in stream.events] == [f"1-{i}" for i in range(7)]
        *progress, result = stream.messages()
        words = tokens_for("hi", 5)
        assert [m["params"] for m in progress] == [
            {"progressToken": "p-7", "progress": i, "total": 5, "message": w}
            for i, w in enumerate(words, 1)
        ]
        assert result == {"jsonrpc": "2.0", "id": 7, "result": {
            "content": [{"type": "text", "text": "".join(words)}], "isError": False}}  # fmt: skip

    _lab(check)


def test_the_get_stream_carries_log_messages_at_the_chosen_level() -> None:
    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "GET", headers) as get:
            assert get.response.header("content-type") == "text/event-stream"
            await get.read(lambda events: len(events) >= 1)
            assert get.events[0].last_event_id == "0-0"  # priming: nothing sent yet
            async with open_stream(server.port, "POST", headers, stream_call(2)) as call:
                await call.read()
            await get.read(lambda events: len(events) >= 3)
            started, finished = (json.loads(e.data) for e in get.events[1:3])
            assert started["method"] == "notifications/message"
            assert started["params"]["level"] == "info"
            assert (started["params"]["data"]["event"], finished["params"]["data"]["event"]) == (
                "started", "finished",
            )  # fmt: skip
            assert [e.last_event_id for e in get.events[1:3]] == ["0-1", "0-2"]
            # Only one GET stream at a time.
            assert (await request(server.port, "GET", [ACCEPT, *headers])).status == 409
            level = await post(server.port, rpc("logging/setLevel", {"level": "error"}, 2), headers)
            assert body_json(level)["result"] == {}
            async with open_stream(server.port, "POST", headers, stream_call(2, id=3)) as call:
                await call.read()
            fail = await post(server.port, rpc("tools/call", {"name": "fail"}, 4), headers)
            assert body_json(fail)["result"]["isError"] is True
            await get.read(lambda events: len(events) >= 4)
            error = json.loads(get.events[3].data)["params"]
            assert (error["level"], error["data"]["tool"]) == ("error", "fail")
        no_sse = await request(server.port, "GET", [("accept", "application/json"), *headers])
        assert no_sse.status == 406

    _lab(check)


# -- resumption -------------------------------------------------------------------------


def test_resumption_replays_only_the_stream_that_was_cut() -> None:
    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "GET", headers) as get:
            await get.read(lambda events: len(events) >= 1)
            # Stream 1 is cut after its priming event and two progress events.
            async with open_stream(server.port, "POST", headers, stream_call(6, 20, "a", 1)) as cut:
                await cut.read(lambda events: len(events) >= 3)
            assert [e.last_event_id for e in cut.events] == ["1-0", "1-1", "1-2"]
            # Stream 2 runs whole meanwhile; the GET stream gets log messages.
            async with open_stream(
                server.port, "POST", headers, stream_call(3, 0, "b", 2)
            ) as other:
                await other.read()
            await get.read(lambda events: len(events) >= 3)
        resume = [*headers, ("last-event-id", "1-2")]
        async with open_stream(server.port, "GET", resume) as resumed:
            await resumed.read()
        assert resumed.ended
        ids = [e.last_event_id for e in resumed.events]
        assert ids == ["1-2", "1-3", "1-4", "1-5", "1-6", "1-7"]  # priming, then the rest
        *progress, result = resumed.messages()
        assert [m["params"]["progress"] for m in progress] == [3, 4, 5, 6]
        assert result["id"] == 1
        assert result["result"]["content"][0]["text"] == "".join(tokens_for("a", 6))
        # Replayed events are byte for byte those of the first connection.
        again = [*headers, ("last-event-id", "1-0")]
        async with open_stream(server.port, "GET", again) as replay:
            await replay.read()
        assert replay.response.body.endswith(resumed.response.body.split(b"\n\n", 1)[1])
        assert parse(cut.response.body)[1].data == replay.events[1].data

    _lab(check)


def test_resumption_from_an_id_this_session_never_issued() -> None:
    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        for last, status in [("garbage", 400), ("7-1", 410), ("0-5", 400)]:
            response = await request(
                server.port, "GET", [ACCEPT, *headers, ("last-event-id", last)]
            )
            assert response.status == status, last

    _lab(check)


def test_a_resumed_stream_replays_what_the_store_kept_and_says_what_is_gone() -> None:
    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "POST", headers, stream_call(10)) as first:
            await first.read()
        async with open_stream(server.port, "GET", [*headers, ("last-event-id", "1-2")]) as again:
            await again.read()
        assert b": events 1-3..1-6 are no longer stored\n" in again.response.body
        assert [e.last_event_id for e in again.events[1:]] == [f"1-{i}" for i in range(7, 12)]

    _lab(check, McpEndpoint(McpLimits(events_per_stream=5)))


# -- cancellation -----------------------------------------------------------------------


def test_notifications_cancelled_stops_the_call_and_its_stream() -> None:
    endpoint = McpEndpoint()

    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "POST", headers, stream_call(50, 100, id="c")) as call:
            await call.read(lambda events: len(events) >= 3)
            cancel = rpc("notifications/cancelled", {"requestId": "c", "reason": "test"}, id=None)
            assert (await post(server.port, cancel, headers)).status == 202
            await call.read()
        assert call.ended  # the stream ends, without a response (cancellation.mdx)
        assert all("method" in m for m in call.messages())
        assert len(call.messages()) < 10
        assert endpoint.stats.calls_cancelled == 1
        assert endpoint.stats.calls_running == 0
        # A cancel for a call that is not running is ignored.
        late = rpc("notifications/cancelled", {"requestId": "c"}, id=None)
        assert (await post(server.port, late, headers)).status == 202

    _lab(check, endpoint)


def test_a_dropped_connection_does_not_cancel_the_call() -> None:
    endpoint = McpEndpoint()

    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "POST", headers, stream_call(4, 20)) as call:
            await call.read(lambda events: len(events) >= 2)
        with trio.fail_after(WAIT):
            await endpoint.stats.wait_until(lambda stats: stats.calls_running == 0)
        assert endpoint.stats.calls_cancelled == 0
        async with open_stream(server.port, "GET", [*headers, ("last-event-id", "1-1")]) as rest:
            await rest.read()
        assert [m.get("params", {}).get("progress") for m in rest.messages()] == [2, 3, 4, None]
        assert rest.messages()[-1]["result"]["isError"] is False

    _lab(check, endpoint)


def test_deleting_the_session_cancels_its_calls() -> None:
    endpoint = McpEndpoint()

    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "POST", headers, stream_call(50, 100)) as call:
            await call.read(lambda events: len(events) >= 2)
            assert (await request(server.port, "DELETE", headers)).status == 204
            await call.read()
        assert call.ended
        assert endpoint.stats.calls_cancelled == 1

    _lab(check, endpoint)


# -- limits -----------------------------------------------------------------------------


def test_calls_in_flight_per_session_are_bounded() -> None:
    endpoint = McpEndpoint(McpLimits(max_calls_per_session=1))

    async def check(server: Server) -> None:
        headers = legacy_headers(await initialize(server.port))
        async with open_stream(server.port, "POST", headers, stream_call(50, 100, id=1)) as call:
            await call.read(lambda events: len(events) >= 2)
            again = await post(server.port, stream_call(2, id=1), headers)
            assert (again.status, body_json(again)["error"]["code"]) == (400, -32600)
            more = await post(server.port, stream_call(2, id=2), headers)
            assert (more.status, body_json(more)["id"]) == (429, 2)
            # RFC 6585 §4: how long to wait before trying again (RFC 9110 §10.2.3).
            assert more.header("retry-after") == "1"
            quick = await post(server.port, rpc("tools/list", {}, 3), headers)
            assert quick.status == 200

    _lab(check, endpoint)


def test_other_methods_are_405_and_the_router_serves_mcp() -> None:
    async def check(server: Server) -> None:
        put = await request(server.port, "PUT")
        assert (put.status, put.header("allow")) == (405, "POST, GET, DELETE")
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO}
        ok = await post(server.port, rpc("initialize", params))
        assert ok.status == 200
        assert JSON_TYPE[1] == ok.header("content-type")

    _lab(check)
