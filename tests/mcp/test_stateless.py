"""/mcp, revision 2026-07-28 (stateless), through real sockets with the lab's own client:
server/discover, the per-request ``_meta`` envelope and its mirrored headers, 405 for GET
and DELETE, SSE without ids, and closing the stream as the cancellation signal.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio

from lab.apps import app
from lab.apps.mcp import McpEndpoint
from lab.apps.tokens import tokens_for
from lab.server import Server
from tests.mcp.helpers import (
    ACCEPT,
    MODERN,
    app_for,
    body_json,
    modern_headers,
    modern_meta,
    open_stream,
    post,
    request,
    rpc,
)
from tests.server.helpers import WAIT, lab_server, run

SERVER_META = {
    "io.modelcontextprotocol/serverInfo": {
        "name": "streamlab", "title": "streamlab MCP endpoint", "version": "0.1.0",
    }
}  # fmt: skip


def _lab(fn: Any, endpoint: McpEndpoint | None = None) -> None:
    async def main() -> None:
        async with lab_server(app if endpoint is None else app_for(endpoint)) as server:
            await fn(server)

    run(main)


def _call(name: str, arguments: dict[str, Any], id: int = 1, **meta: Any) -> bytes:
    return rpc(
        "tools/call", {"name": name, "arguments": arguments, "_meta": modern_meta(**meta)}, id
    )


def test_server_discover_names_versions_capabilities_and_identity() -> None:
    async def check(server: Server) -> None:
        response = await post(
            server.port, rpc("server/discover", {"_meta": modern_meta()}, "d"),
            modern_headers("server/discover"),
        )  # fmt: skip
        assert response.status == 200
        assert response.header("mcp-session-id") is None
        result = body_json(response)["result"]
        assert result["resultType"] == "complete"
        assert result["supportedVersions"] == [
            "2026-07-28",
            "2025-11-25",
            "2025-06-18",
            "2025-03-26",
        ]
        assert result["capabilities"]["tools"] == {"listChanged": False}
        assert (result["ttlMs"], result["cacheScope"]) == (60_000, "public")
        assert result["_meta"] == SERVER_META

    _lab(check)


def test_tools_list_is_cacheable_and_complete() -> None:
    async def check(server: Server) -> None:
        body = rpc("tools/list", {"_meta": modern_meta()}, 2)
        result = body_json(await post(server.port, body, modern_headers("tools/list")))["result"]
        assert [t["name"] for t in result["tools"]] == ["stream_tokens", "fail"]
        assert (result["resultType"], result["ttlMs"], result["cacheScope"]) == (
            "complete", 60_000, "public",
        )  # fmt: skip

    _lab(check)


@pytest.mark.parametrize(
    "headers",
    [
        [("mcp-protocol-version", MODERN)],
        [("mcp-protocol-version", "2026-07-28"), ("mcp-session-id", "abc")],
        [],
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405(method: str, headers: list[tuple[str, str]]) -> None:
    async def check(server: Server) -> None:
        response = await request(server.port, method, [ACCEPT, *headers])
        assert (response.status, response.header("allow")) == (405, "POST")
        assert body_json(response)["error"]["code"] == -32600

    _lab(check)


@pytest.mark.parametrize(
    ("headers", "wrong"),
    [
        (modern_headers("tools/list", "stream_tokens")[1:], "MCP-Protocol-Version"),
        ([("mcp-protocol-version", "2025-11-25"), ("mcp-method", "tools/call"),
          ("mcp-name", "fail")], "MCP-Protocol-Version"),
        (modern_headers("tools/list", "fail"), "Mcp-Method"),
        (modern_headers("tools/call"), "Mcp-Name"),
        (modern_headers("tools/call", "stream_tokens"), "Mcp-Name"),
        ([*modern_headers("tools/call", "fail"), ("mcp-method", "tools/list")], "mcp-method"),
    ],
)  # fmt: skip
def test_headers_must_mirror_the_body(headers: list[tuple[str, str]], wrong: str) -> None:
    async def check(server: Server) -> None:
        response = await post(server.port, _call("fail", {}, 5), headers)
        assert response.status == 400
        body = body_json(response)
        assert body["id"] == 5
        assert body["error"]["code"] == -32020
        assert wrong in body["error"]["message"]

    _lab(check)


def test_a_base64_encoded_name_matches_its_decoded_value() -> None:
    async def check(server: Server) -> None:
        encoded = "=?base64?" + base64.b64encode(b"fail").decode() + "?="
        response = await post(server.port, _call("fail", {}), modern_headers("tools/call", encoded))
        assert response.status == 200
        assert body_json(response)["result"]["isError"] is True

    _lab(check)


def test_an_unsupported_version_names_the_supported_ones() -> None:
    async def check(server: Server) -> None:
        meta = modern_meta(**{"io.modelcontextprotocol/protocolVersion": "2099-01-01"})
        body = rpc("tools/list", {"_meta": meta}, 3)
        headers = [("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")]
        response = await post(server.port, body, headers)
        assert response.status == 400
        error = body_json(response)["error"]
        assert error["code"] == -32022
        assert error["data"] == {
            "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
            "requested": "2099-01-01",
        }

    _lab(check)


def test_the_envelope_is_required_and_checked() -> None:
    async def check(server: Server) -> None:
        no_caps = {"io.modelcontextprotocol/protocolVersion": MODERN}
        response = await post(
            server.port, rpc("tools/list", {"_meta": no_caps}), modern_headers("tools/list")
        )
        assert (response.status, body_json(response)["error"]["code"]) == (400, -32602)
        bare = await post(server.port, rpc("tools/list"), modern_headers("tools/list"))
        assert (bare.status, body_json(bare)["error"]["code"]) == (400, -32602)
        loud = rpc(
            "tools/list", {"_meta": modern_meta(**{"io.modelcontextprotocol/logLevel": "x"})}
        )
        response = await post(server.port, loud, modern_headers("tools/list"))
        assert (response.status, body_json(response)["error"]["code"]) == (400, -32602)

    _lab(check)


def test_removed_and_unknown_methods_are_404() -> None:
    async def check(server: Server) -> None:
        for method in ("ping", "logging/setLevel", "resources/list"):
            body = rpc(method, {"_meta": modern_meta()}, 4)
            response = await post(server.port, body, modern_headers(method))
            assert response.status == 404, method
            assert body_json(response)["error"]["code"] == -32601

    _lab(check)


def test_initialize_under_a_modern_header_is_a_removed_method() -> None:
    # The official conformance suite's server-stateless scenario sends exactly this. It
    # used to get 400/-32600 ("2026-07-28 clients send no responses") and no session.
    endpoint = McpEndpoint()

    async def check(server: Server) -> None:
        params = {
            "protocolVersion": MODERN, "capabilities": {}, "clientInfo": {"name": "t"},
            "_meta": modern_meta(),
        }  # fmt: skip
        body = rpc("initialize", params, 5)
        response = await post(server.port, body, modern_headers("initialize"))
        assert response.status == 404
        assert response.header("mcp-session-id") is None
        error = body_json(response)
        assert (error["id"], error["error"]["code"]) == (5, -32601)
        # Without the modern header, initialize is still the 2025-11-25 handshake, even
        # from a client that puts a 2026-07-28 envelope in _meta.
        legacy = await post(server.port, rpc("initialize", params, 6))
        assert legacy.status == 200
        assert legacy.header("mcp-session-id") is not None
        assert len(endpoint.sessions) == 1

    _lab(check, endpoint)


def test_session_ids_are_ignored_and_notifications_get_202() -> None:
    async def check(server: Server) -> None:
        headers = [*modern_headers("tools/list"), ("mcp-session-id", "stale")]
        response = await post(server.port, rpc("tools/list", {"_meta": modern_meta()}), headers)
        assert response.status == 200
        assert response.header("mcp-session-id") is None
        note = rpc("notifications/cancelled", {"requestId": 1}, id=None)
        response = await post(server.port, note, [("mcp-protocol-version", MODERN)])
        assert (response.status, response.body) == (202, b"")
        reply = b'{"jsonrpc":"2.0","id":1,"result":{}}'
        response = await post(server.port, reply, [("mcp-protocol-version", MODERN)])
        assert response.status == 400

    _lab(check)


def test_the_streaming_tool_sends_progress_and_requested_logs_without_event_ids() -> None:
    async def check(server: Server) -> None:
        meta = {"progressToken": "t", "io.modelcontextprotocol/logLevel": "info"}
        body = _call("stream_tokens", {"prompt": "new", "n": 3, "interval_ms": 0}, 8, **meta)
        headers = modern_headers("tools/call", "stream_tokens")
        async with open_stream(server.port, "POST", headers, body) as stream:
            assert stream.response.header("content-type") == "text/event-stream"
            assert stream.response.header("x-accel-buffering") == "no"
            await stream.read()
        assert stream.ended
        assert b"id:" not in stream.response.body  # no resumption in 2026-07-28
        assert all(e.data for e in stream.events)  # so no priming event either
        messages = stream.messages()
        assert [m.get("method") for m in messages] == [
            "notifications/message",
            *["notifications/progress"] * 3,
            "notifications/message",
            None,
        ]
        words = tokens_for("new", 3)
        assert [m["params"]["message"] for m in messages[1:4]] == words
        assert messages[-1]["result"] == {
            "resultType": "complete", "content": [{"type": "text", "text": "".join(words)}],
            "isError": False, "_meta": SERVER_META,
        }  # fmt: skip
        # Without logLevel in _meta, no notifications/message at all.
        quiet = _call("stream_tokens", {"n": 2, "interval_ms": 0}, 9, progressToken=1)
        async with open_stream(server.port, "POST", headers, quiet) as stream:
            await stream.read()
        assert [m.get("method") for m in stream.messages()] == [
            "notifications/progress",
            "notifications/progress",
            None,
        ]

    _lab(check)


def test_closing_the_stream_cancels_the_call() -> None:
    endpoint = McpEndpoint()

    async def check(server: Server) -> None:
        body = _call("stream_tokens", {"n": 100, "interval_ms": 50}, 1, progressToken=1)
        headers = modern_headers("tools/call", "stream_tokens")
        async with open_stream(server.port, "POST", headers, body) as stream:
            await stream.read(lambda events: len(events) >= 2)
            assert endpoint.stats.calls_running == 1
        with trio.fail_after(WAIT):
            await endpoint.stats.wait_until(lambda stats: stats.calls_running == 0)
        assert (endpoint.stats.calls_started, endpoint.stats.calls_cancelled) == (1, 1)

    _lab(check, endpoint)


def test_a_modern_tool_error_and_an_unknown_tool() -> None:
    async def check(server: Server) -> None:
        failed = await post(
            server.port, _call("fail", {"message": "m"}), modern_headers("tools/call", "fail")
        )
        assert failed.status == 200
        assert body_json(failed)["result"] == {
            "resultType": "complete", "content": [{"type": "text", "text": "fail: m"}],
            "isError": True, "_meta": SERVER_META,
        }  # fmt: skip
        # tools.mdx §"Error Handling": protocol errors, as JSON-RPC errors. The transport
        # gives 400 only to envelope errors; this answers a well-formed request: 200.
        unknown = await post(server.port, _call("nope", {}), modern_headers("tools/call", "nope"))
        assert (unknown.status, body_json(unknown)["error"]["code"]) == (200, -32602)
        assert json.loads(unknown.body)["id"] == 1
        assert "Unknown tool" in body_json(unknown)["error"]["message"]
        not_an_object = rpc(
            "tools/call", {"name": "fail", "arguments": [1], "_meta": modern_meta()}, 2
        )
        bad = await post(server.port, not_an_object, modern_headers("tools/call", "fail"))
        assert (bad.status, body_json(bad)["id"], body_json(bad)["error"]["code"]) == (
            200, 2, -32602,
        )  # fmt: skip
        # Out-of-range arguments are a tool execution error: a result, also 200.
        low = await post(
            server.port, _call("stream_tokens", {"n": 0}, 3),
            modern_headers("tools/call", "stream_tokens"),
        )  # fmt: skip
        assert low.status == 200

    _lab(check)
