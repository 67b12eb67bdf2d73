"""An MCP client made of the lab's own raw HTTP/1.1 client and SSE decoder, for tests.

Deliberately thin: each helper sends exactly the headers a test names, so that every
status the transport can answer with is reachable.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from lab.apps import Request, ResponseStream
from lab.apps.mcp import McpEndpoint
from lab.client.http1 import ClientConnection, Response, fetch, open_connection
from lab.wire.sse import Dispatch, Event, SSEDecoder
from tests.server.helpers import WAIT

HOST = "127.0.0.1"
ACCEPT = ("accept", "application/json, text/event-stream")
JSON_TYPE = ("content-type", "application/json")
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
CLIENT_INFO = {"name": "lab-tests", "version": "0"}


def app_for(endpoint: McpEndpoint) -> Callable[[Request, ResponseStream], Any]:
    """An app serving ``endpoint`` at /mcp (and nothing else)."""

    async def app(request: Request, response: ResponseStream) -> None:
        if request.path != "/mcp":
            await response.start(404, [("content-length", "0")])
            await response.end()
            return
        await endpoint(request, response)

    return app


def rpc(method: str, params: dict[str, Any] | None = None, id: int | str | None = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


def modern_meta(**extra: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        **extra,
    }


def modern_headers(method: str, name: str | None = None) -> list[tuple[str, str]]:
    headers = [("mcp-protocol-version", MODERN), ("mcp-method", method)]
    if name is not None:
        headers.append(("mcp-name", name))
    return headers


def legacy_headers(session: str, version: str = LEGACY) -> list[tuple[str, str]]:
    return [("mcp-session-id", session), ("mcp-protocol-version", version)]


def body_json(response: Response) -> Any:
    assert response.header("content-type") == "application/json", response.headers
    return json.loads(response.body)


async def post(
    port: int, body: bytes, headers: list[tuple[str, str]] | None = None, *,
    accept: tuple[str, str] | None = ACCEPT, content_type: tuple[str, str] | None = JSON_TYPE,
) -> Response:  # fmt: skip
    """One POST /mcp on a new connection, read whole."""
    fields = [h for h in (accept, content_type) if h is not None]
    with trio.fail_after(WAIT):
        exchange = await fetch(
            HOST, port, "POST", "/mcp", headers=[*fields, *(headers or [])], body=body
        )
    return exchange.response


async def request(port: int, method: str, headers: list[tuple[str, str]] | None = None) -> Response:
    with trio.fail_after(WAIT):
        exchange = await fetch(HOST, port, method, "/mcp", headers=headers or [])
    return exchange.response


async def initialize(port: int, version: str = LEGACY) -> str:
    """A new session, initialized; its id."""
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO}
    response = await post(port, rpc("initialize", params))
    assert response.status == 200, response.body
    session = response.header("mcp-session-id")
    assert session is not None
    done = await post(port, rpc("notifications/initialized", id=None), legacy_headers(session))
    assert done.status == 202
    return session


async def establish(port: int, version: str = LEGACY) -> str:
    """A new session, initialized and then used once (a ping): established, in the terms
    of lab.apps.mcp.session, so the short timeout for new sessions no longer applies."""
    session = await initialize(port, version)
    ping = await post(port, rpc("ping", id="established"), legacy_headers(session, version))
    assert ping.status == 200
    return session


def stream_call(n: int, interval_ms: int = 0, prompt: str = "hi", id: int | str = 1) -> bytes:
    params = {
        "name": "stream_tokens",
        "arguments": {"prompt": prompt, "n": n, "interval_ms": interval_ms},
        "_meta": {"progressToken": f"p-{id}"},
    }
    return rpc("tools/call", params, id)


@dataclass
class Stream:
    """An SSE response being read: its head, and the events so far."""

    conn: ClientConnection
    response: Response
    events: list[Event] = field(default_factory=list)
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    ended: bool = False  # the response ended properly (last chunk)

    async def read(self, until: Callable[[list[Event]], bool] | None = None) -> list[Event]:
        """Read until ``until(events)`` holds, or the response ends."""

        def on_piece(data: bytes) -> bool:
            for seg in self.decoder.feed(data):
                if isinstance(seg, Dispatch) and seg.event is not None:
                    self.events.append(seg.event)
            return until is not None and until(self.events)

        if until is not None and until(self.events):
            return self.events
        with trio.fail_after(WAIT):
            await self.conn.read_body(self.response, on_piece)
        self.ended = self.response.complete
        return self.events

    def messages(self) -> list[dict[str, Any]]:
        """The JSON-RPC messages (events with data; the priming event has none)."""
        return [json.loads(e.data) for e in self.events if e.data]


@asynccontextmanager
async def open_stream(
    port: int, method: str, headers: list[tuple[str, str]], body: bytes = b""
) -> AsyncIterator[Stream]:
    """Send a request and read its head; the connection closes when the block ends."""
    async with open_connection(HOST, port) as conn:
        fields = [ACCEPT, *headers] if method == "GET" else [ACCEPT, JSON_TYPE, *headers]
        with trio.fail_after(WAIT):
            await conn.send_request(method, "/mcp", fields, body)
            head = await conn.read_head()
        yield Stream(conn, head)
