"""/mcp over HTTP/2: the same handler, so the same exchange, with streams multiplexed on one
connection, and RST_STREAM as the client closing a 2026-07-28 response stream."""

from __future__ import annotations

import json
from typing import Any

import h2.errors
import trio

from lab.apps import app
from lab.apps.mcp import McpEndpoint
from lab.apps.tokens import tokens_for
from lab.server import Server
from lab.wire.sse import parse
from tests.mcp.helpers import (
    CLIENT_INFO,
    app_for,
    modern_headers,
    modern_meta,
    rpc,
    stream_call,
)
from tests.server.h2client import H2Client, H2Response
from tests.server.helpers import WAIT, lab_server, run

POST_HEADERS = [
    ("accept", "application/json, text/event-stream"),
    ("content-type", "application/json"),
]


class McpH2Client(H2Client):
    """The tests' h2 client, with an :authority that names the server (the Host check)."""

    async def request(
        self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> int:  # fmt: skip
        sid = self.conn.get_next_available_stream_id()
        port = self.stream.socket.getpeername()[1]
        fields = [(":method", method), (":path", path), (":scheme", "http"),
                  (":authority", f"127.0.0.1:{port}"), *(headers or [])]  # fmt: skip
        self.conn.send_headers(sid, fields, end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.responses[sid] = H2Response(sid)
        await self.flush()
        return sid

    async def post(self, body: bytes, headers: list[tuple[str, str]]) -> H2Response:
        sid = await self.request("POST", "/mcp", [*POST_HEADERS, *headers], body)
        (response,) = await self.until_done(sid)
        return response

    async def until_events(self, sid: int, count: int) -> list[Any]:
        with trio.fail_after(WAIT):
            while len(parse(self.responses[sid].body)) < count:
                await self.pump()
        return parse(self.responses[sid].body)


async def _connect(server: Server) -> McpH2Client:
    client = await McpH2Client.connect(server)
    assert isinstance(client, McpH2Client)
    return client


def _messages(response: H2Response) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in parse(response.body) if e.data]


def test_a_2025_11_25_session_over_http2() -> None:
    async def main() -> None:
        async with lab_server(app) as server:
            client = await _connect(server)
            params = {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            }
            init = await client.post(rpc("initialize", params), [])
            assert init.status == 200
            session = init.headers["mcp-session-id"]
            headers = [("mcp-session-id", session), ("mcp-protocol-version", "2025-11-25")]
            done = await client.post(rpc("notifications/initialized", id=None), headers)
            assert (done.status, done.body) == (202, b"")
            # The GET stream and a call's stream, side by side on one connection.
            get = await client.request("GET", "/mcp", [POST_HEADERS[0], *headers])
            await client.until_events(get, 1)
            call = await client.request("POST", "/mcp", [*POST_HEADERS, *headers], stream_call(4))
            (answer,) = await client.until_done(call)
            assert answer.headers["content-type"] == "text/event-stream"
            events = parse(answer.body)
            assert [e.last_event_id for e in events] == [f"1-{i}" for i in range(6)]
            *progress, result = _messages(answer)
            assert [m["params"]["message"] for m in progress] == tokens_for("hi", 4)
            assert result["result"]["content"][0]["text"] == "".join(tokens_for("hi", 4))
            logs = await client.until_events(get, 3)
            assert [json.loads(e.data)["params"]["data"]["event"] for e in logs[1:3]] == [
                "started", "finished",
            ]  # fmt: skip
            missing = await client.post(rpc("ping"), [("mcp-protocol-version", "2025-11-25")])
            assert missing.status == 400
            deleted = await client.request("DELETE", "/mcp", headers)
            (gone,) = await client.until_done(deleted)
            assert gone.status == 204
            (get_response,) = await client.until_done(get)  # the session's end ends it
            assert get_response.ended
            assert (await client.post(rpc("ping"), headers)).status == 404

    run(main)


def test_2026_07_28_over_http2_and_rst_stream_cancels_the_call() -> None:
    endpoint = McpEndpoint()

    async def main() -> None:
        async with lab_server(app_for(endpoint)) as server:
            client = await _connect(server)
            discover = await client.post(
                rpc("server/discover", {"_meta": modern_meta()}), modern_headers("server/discover")
            )
            assert json.loads(discover.body)["result"]["supportedVersions"][0] == "2026-07-28"
            get = await client.request("GET", "/mcp", [("mcp-protocol-version", "2026-07-28")])
            (refused,) = await client.until_done(get)
            assert (refused.status, refused.headers["allow"]) == (405, "POST")
            meta = modern_meta(progressToken=1)
            body = rpc("tools/call", {"name": "stream_tokens", "arguments": {"n": 100,
                       "interval_ms": 50}, "_meta": meta})  # fmt: skip
            headers = [*POST_HEADERS, *modern_headers("tools/call", "stream_tokens")]
            sid = await client.request("POST", "/mcp", headers, body)
            await client.until_events(sid, 2)
            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            await client.flush()
            with trio.fail_after(WAIT):
                await endpoint.stats.wait_until(lambda stats: stats.calls_running == 0)
            assert endpoint.stats.calls_cancelled == 1

    run(main)
