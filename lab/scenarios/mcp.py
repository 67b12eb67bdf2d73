"""MCP Streamable HTTP scenarios (/mcp): the 2025-11-25 handshake, a tool call streamed
as SSE, the session's GET stream, resumption, DELETE, a refused Origin, and the stateless
2026-07-28 revision.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import trio

from lab.capture.tap import Recorder
from lab.client.http1 import ClientConnection, Response, open_connection
from lab.client.sse import event_source
from lab.scenarios.runner import Scenario
from lab.server import Server
from lab.wire.sse import Dispatch, Event, SSEDecoder

__all__ = ["MCP_SCENARIOS"]

# Every POST to /mcp carries one JSON-RPC message and lists both answers it can take.
_MCP_POST = (
    ("accept", "application/json, text/event-stream"),
    ("content-type", "application/json"),
)
_MCP_CLIENT = {"name": "streamlab-client", "version": "0.1"}
_MCP_LEGACY = "2025-11-25"
_MCP_MODERN = "2026-07-28"
# The tool call that mcp-tool-stream and mcp-stateless both make: four tokens 40 ms apart.
_MCP_CALL = {"prompt": "mcp", "n": 4, "interval_ms": 40}


def _rpc(method: str, params: dict[str, Any] | None = None, id: int | None = None) -> bytes:
    """One JSON-RPC message: a request with an ``id``, a notification without."""
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if id is not None:
        message["id"] = id
    message["method"] = method
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


def _stream_tokens(id: int, arguments: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """tools/call of stream_tokens, asking for progress (``_meta.progressToken``)."""
    progress = {**meta, "progressToken": f"progress-{id}"}
    params = {"name": "stream_tokens", "arguments": arguments, "_meta": progress}
    return _rpc("tools/call", params, id)


async def _mcp_initialize(conn: ClientConnection) -> list[tuple[str, str]]:
    """initialize, then notifications/initialized: the headers later requests carry."""
    params = {"protocolVersion": _MCP_LEGACY, "capabilities": {}, "clientInfo": _MCP_CLIENT}
    reply = await conn.request("POST", "/mcp", _MCP_POST, _rpc("initialize", params, 1))
    session = reply.header("mcp-session-id")
    if reply.status != 200 or session is None:
        raise RuntimeError(f"initialize got {reply.status} and no session: {reply.body[:200]!r}")
    headers = [("mcp-session-id", session), ("mcp-protocol-version", _MCP_LEGACY)]
    await conn.request("POST", "/mcp", [*_MCP_POST, *headers], _rpc("notifications/initialized"))
    return headers


async def _mcp_session(server: Server) -> list[tuple[str, str]]:
    """A session opened on a connection of its own, left out of the scenario's trace (the
    handshake is scenario mcp-initialize's)."""
    async with open_connection(server.host, server.port) as conn:
        return await _mcp_initialize(conn)


async def _read_events(
    conn: ClientConnection, response: Response, stop_after: int | None = None
) -> list[Event]:
    """Read an SSE body to its end, or until ``stop_after`` events have arrived."""
    decoder = SSEDecoder()
    events: list[Event] = []

    def on_piece(data: bytes) -> bool:
        for seg in decoder.feed(data):
            if isinstance(seg, Dispatch) and seg.event is not None:
                events.append(seg.event)
        return stop_after is not None and len(events) >= stop_after

    await conn.read_body(response, on_piece)
    return events


async def _mcp_handshake(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        headers = await _mcp_initialize(conn)
        await conn.request("POST", "/mcp", [*_MCP_POST, *headers], _rpc("tools/list", {}, 2))


async def _mcp_tool_stream(server: Server, rec: Recorder) -> None:
    headers = await _mcp_session(server)
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        call = _stream_tokens(2, _MCP_CALL, {})
        await conn.send_request("POST", "/mcp", [*_MCP_POST, *headers], call)
        await _read_events(conn, await conn.read_head())


async def _mcp_get_stream(server: Server, rec: Recorder) -> None:
    headers = await _mcp_session(server)
    primed = trio.Event()
    async with trio.open_nursery() as nursery:
        # The session's GET stream, read like an EventSource: the priming event, then the
        # log message; the client hangs up after it (the stream has no end of its own).
        nursery.start_soon(functools.partial(
            event_source, server.host, server.port, "/mcp", headers=headers, max_events=2,
            max_connections=1, on_event=lambda _: primed.set(), recorder=rec,
        ))  # fmt: skip
        # A GET stream carries what is sent after it opened: wait for the priming event.
        await primed.wait()
        async with open_connection(server.host, server.port, recorder=rec) as conn:
            post = [*_MCP_POST, *headers]
            level = _rpc("logging/setLevel", {"level": "warning"}, 2)
            await conn.request("POST", "/mcp", post, level)
            fail = _rpc("tools/call", {"name": "fail", "arguments": {"message": "on purpose"}}, 3)
            await conn.request("POST", "/mcp", post, fail)


async def _mcp_resume(server: Server, rec: Recorder) -> None:
    headers = await _mcp_session(server)
    post = [*_MCP_POST, *headers]
    # Tokens 100 ms apart: the client hangs up after the priming event and two progress
    # notifications, 100 ms before the third would come.
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        slow = _stream_tokens(2, {"prompt": "resume", "n": 6, "interval_ms": 100}, {})
        await conn.send_request("POST", "/mcp", post, slow)
        seen = await _read_events(conn, await conn.read_head(), stop_after=3)
    # Another call, whole, on stream 2, while the first one runs on.
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        quick = _stream_tokens(3, {"prompt": "other", "n": 2, "interval_ms": 0}, {})
        await conn.send_request("POST", "/mcp", post, quick)
        await _read_events(conn, await conn.read_head())
    # Resume the cut stream the EventSource way: GET with Last-Event-ID, read to the end.
    await event_source(
        server.host, server.port, "/mcp", headers=headers, max_connections=1,
        last_event_id=seen[-1].last_event_id, recorder=rec,
    )  # fmt: skip


async def _mcp_delete_session(server: Server, rec: Recorder) -> None:
    headers = await _mcp_session(server)
    async with open_connection(server.host, server.port, recorder=rec) as get:
        await get.send_request("GET", "/mcp", [("accept", "text/event-stream"), *headers])
        stream = await get.read_head()
        await _read_events(get, stream, stop_after=1)  # the priming event
        async with open_connection(server.host, server.port, recorder=rec) as conn:
            await conn.request("DELETE", "/mcp", headers)
            await _read_events(get, stream)  # the GET stream ends with the session
            await conn.request("POST", "/mcp", [*_MCP_POST, *headers], _rpc("tools/list", {}, 2))


async def _mcp_forbidden_origin(server: Server, rec: Recorder) -> None:
    params = {"protocolVersion": _MCP_LEGACY, "capabilities": {}, "clientInfo": _MCP_CLIENT}
    headers = [*_MCP_POST, ("origin", "http://evil.example")]
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("POST", "/mcp", headers, _rpc("initialize", params, 1))


async def _mcp_stateless(server: Server, rec: Recorder) -> None:
    # 2026-07-28: the revision, the client's capabilities and identity in every request.
    meta = {
        "io.modelcontextprotocol/protocolVersion": _MCP_MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": _MCP_CLIENT,
    }
    post = [*_MCP_POST, ("mcp-protocol-version", _MCP_MODERN)]
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        discover = _rpc("server/discover", {"_meta": meta}, 1)
        await conn.request("POST", "/mcp", [*post, ("mcp-method", "server/discover")], discover)
        call = [*post, ("mcp-method", "tools/call"), ("mcp-name", "stream_tokens")]
        await conn.send_request("POST", "/mcp", call, _stream_tokens(2, _MCP_CALL, meta))
        await _read_events(conn, await conn.read_head())


MCP_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "mcp-initialize",
        "MCP 2025-11-25: initialize, notifications/initialized (202), tools/list as JSON",
        "Three POSTs to /mcp on one connection, each one JSON-RPC message, each with an Accept "
        "that lists application/json and text/event-stream. The initialize reply is one JSON "
        "body, and its head carries Mcp-Session-Id: the session. Every later request sends "
        "that id back, with MCP-Protocol-Version: 2025-11-25. notifications/initialized has "
        "no id, so nothing answers it: 202 Accepted, no body. tools/list (id 2) gets its "
        "result as JSON, with the same id. The id is random: golden comparisons replace it "
        "with asterisks of the same length.",
        _mcp_handshake,
    ),
    Scenario(
        "mcp-tool-stream", "MCP 2025-11-25: a tool call answered as SSE: priming, progress, result",
        "The session was opened beforehand on a connection this trace leaves out (see "
        "mcp-initialize); its id is on the request. The call asks for progress "
        "(_meta.progressToken), so the reply is text/event-stream instead of JSON. First the "
        "priming event: id 1-0, retry: 1000 and empty data, an id to resume from before "
        "anything happened. Then one notifications/progress per token, ids 1-1 to 1-4 (the "
        "stream's number, then the event's place in it), the JSON-RPC response with the "
        "request's id as 1-5, and the last chunk: the stream ends after the response.",
        _mcp_tool_stream,
    ),
    Scenario(
        "mcp-get-stream", "MCP 2025-11-25: the session's GET stream carries a log message",
        "Two connections. The first is GET /mcp with Accept: text/event-stream: the "
        "session's own stream, numbered 0, which opens with the priming event 0-0 and waits. "
        "On the second, the client sets the log level (logging/setLevel: warning, answered "
        "{}) and calls the tool fail: its JSON result says isError: true. The error the tool "
        "logged is not in that reply: it comes on the GET stream as notifications/message, "
        "event 0-1. The client hangs up then; a GET stream has no end of its own.",
        _mcp_get_stream,
    ),
    Scenario(
        "mcp-resume", "MCP 2025-11-25: a cut tool-call stream resumed with GET and Last-Event-ID",
        "Three connections. The first POSTs a slow stream_tokens call (100 ms per token) and "
        "hangs up after events 1-0, 1-1 and 1-2: that response has no last chunk. The call "
        "runs on (in 2025-11-25 a dropped connection is not a cancellation), and a second "
        "call runs whole on stream 2. Then GET /mcp with Last-Event-ID: 1-2: a priming event "
        "1-2, then the rest of stream 1 only, 1-3 to 1-6 and the response as 1-7, and the "
        "last chunk. Nothing of stream 2 is replayed.",
        _mcp_resume,
    ),
    Scenario(
        "mcp-delete-session", "MCP 2025-11-25: DELETE ends the session; the id then gets 404",
        "The session's GET stream is open (priming event 0-0) when the client sends DELETE "
        "/mcp with the session id: 204 No Content, and the GET response ends with its last "
        "chunk, since the session's streams end with it. A POST with the same id afterwards "
        "gets 404 Not Found and a JSON-RPC error: the client's cue to initialize again.",
        _mcp_delete_session,
    ),
    Scenario(
        "mcp-forbidden-origin", "MCP: a request with a foreign Origin is refused with 403",
        "An initialize carrying Origin: http://evil.example, which is what a browser adds when "
        "a page of that site calls a server on this machine (the DNS-rebinding attack). The "
        "transport says the server must check Origin: 403 Forbidden, a JSON-RPC error without "
        "an id, and no Mcp-Session-Id. Without Origin (not a browser) or with a local one, the "
        "same request is served.",
        _mcp_forbidden_origin,
    ),
    Scenario(
        "mcp-stateless", "MCP 2026-07-28: server/discover, then the same tool call, stateless",
        "No initialize and no session id. Each request names the revision twice: the "
        "MCP-Protocol-Version header and params._meta, which also carries the client's "
        "capabilities and identity; Mcp-Method (and Mcp-Name for tools/call) mirror the body "
        "so that a proxy can route without reading JSON. server/discover lists the supported "
        "versions. The tool call is mcp-tool-stream's, and the progress notifications are the "
        "same, but there is no priming event and no id: line (resumption was removed), and the "
        "result carries resultType and the server's identity in _meta.",
        _mcp_stateless,
    ),
)  # fmt: skip
