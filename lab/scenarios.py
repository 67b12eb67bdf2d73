"""Named, reproducible experiments: a lab server, a client script, and the trace it leaves.

Each scenario runs against a lab server on 127.0.0.1 (started for it, port 0 unless one is
given) and returns the client's trace. ``lab capture`` writes these traces to
``captures/``; ``lab tour`` runs them all in order with the story of each.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h2.settings
import trio

from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.client.http1 import ClientConnection, Response, open_connection
from lab.client.http2 import open_h2_connection
from lab.client.sse import event_source
from lab.server import Server, serve_tcp
from lab.wire.sse import Dispatch, Event, SSEDecoder

__all__ = ["SCENARIOS", "Scenario", "get", "run_scenario", "run_scenarios"]

ScenarioFn = Callable[[Server, Recorder], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str  # one line, for `lab scenarios`
    story: str  # what to look at, for `lab tour`
    script: ScenarioFn


async def _fixed(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/fixed?size=64")


async def _chunked(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/tokens?n=5&interval_ms=0&prompt=fixed")


async def _token_stream(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/tokens?n=6&interval_ms=40&prompt=stream")


async def _ndjson_chat(server: Server, rec: Recorder) -> None:
    body = json.dumps({"prompt": "chat", "n": 4, "interval_ms": 20}).encode()
    headers = [("content-type", "application/json"), ("accept", "application/x-ndjson")]
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("POST", "/chat", headers, body)


async def _trailers(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/trailers?n=4&interval_ms=10&prompt=sum", [("te", "trailers")])


async def _keep_alive(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/fixed?size=16")
        await conn.request("GET", "/tokens?n=3&interval_ms=10&prompt=again")


async def _pipelined(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        host = f"{server.host}:{server.port}"
        # Both requests in one write, before any response: HTTP/1.1 pipelining.
        await conn.send_raw(
            f"GET /tokens?n=3&interval_ms=20&prompt=first HTTP/1.1\r\nhost: {host}\r\n\r\n"
            f"GET /fixed?size=8 HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode()
        )
        await conn.read_until_close()


async def _client_abort(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.send_request("GET", "/tokens?n=50&interval_ms=50&prompt=abort")
        # Three pieces of body, then hang up: the server must cancel the generator.
        await conn.read_response(stop_after_pieces=3)
    # The server notices the EOF and cancels the handler; wait for it so the capture's
    # story ("the server stopped") is true when the scenario returns.
    with trio.fail_after(5):
        await server.wait_no_connections()


async def _cl_te_rejected(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        host = f"{server.host}:{server.port}"
        await conn.send_raw(
            f"POST /chat HTTP/1.1\r\nhost: {host}\r\ncontent-length: 4\r\n"
            "transfer-encoding: chunked\r\n\r\n0\r\n\r\n".encode()
        )
        await conn.read_until_close()


async def _sse(server: Server, rec: Recorder, target: str, **kw: Any) -> None:
    await event_source(server.host, server.port, target, recorder=rec, **kw)


async def _sse_events(server: Server, rec: Recorder) -> None:
    # The client hangs up after three events; the fourth would come 100 ms later.
    await _sse(server, rec, "/events?n=10&interval_ms=100&stream=basic", max_events=3)


async def _sse_multiline(server: Server, rec: Recorder) -> None:
    target = "/events?n=10&interval_ms=100&stream=lines&multiline=1"
    await _sse(server, rec, target, max_events=2)


async def _sse_heartbeat(server: Server, rec: Recorder) -> None:
    # Heartbeats 80 and 160 ms after event 1, event 2 at 200 ms; the client hangs up
    # after event 2, long before event 3 (and its heartbeats) would come.
    target = "/events?n=3&interval_ms=200&heartbeat_ms=80&stream=quiet"
    await _sse(server, rec, target, max_events=2)


async def _sse_reconnect(server: Server, rec: Recorder) -> None:
    # Two events per response, four in all: three connections, the last one answered 204.
    await _sse(server, rec, "/events?n=2&total=4&interval_ms=10&retry_ms=50&stream=resume")


async def _sse_chat(server: Server, rec: Recorder) -> None:
    body = json.dumps({"prompt": "sse", "n": 4, "interval_ms": 20}).encode()
    await _sse(
        server, rec, "/chat", method="POST", body=body,
        headers=[("content-type", "application/json")],
        until=lambda event: event.data == "[DONE]",
    )  # fmt: skip


async def _sse_progress(server: Server, rec: Recorder) -> None:
    await _sse(server, rec, "/progress?n=4&interval_ms=20", until=lambda e: e.type == "result")


async def _sse_error(server: Server, rec: Recorder) -> None:
    target = "/progress?n=5&interval_ms=20&fail_at=3"
    await _sse(server, rec, target, until=lambda e: e.type == "error")


async def _h2_tokens(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        await conn.finish(await conn.request("GET", "/tokens?n=5&interval_ms=30&prompt=h2"))
        await conn.close()


async def _h2_multiplex(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        first = await conn.request("GET", "/tokens?n=4&interval_ms=60&prompt=first")
        # Start the second stream half an interval later, so frames alternate clearly.
        await conn.pump_until(lambda: bool(conn.responses[first].frames))
        await trio.sleep(0.03)
        second = await conn.request("GET", "/tokens?n=4&interval_ms=60&prompt=second")
        await conn.finish(first, second)
        await conn.close()


async def _h2_flow_control(server: Server, rec: Recorder) -> None:
    # A 16-byte stream window: the server may send 16 bytes, then must wait.
    settings: dict[int, int] = {int(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE): 16}
    async with open_h2_connection(
        server.host, server.port, recorder=rec, settings=settings
    ) as conn:
        conn.auto_window = False
        sid = await conn.request("GET", "/fixed?size=40")
        response = conn.responses[sid]
        while not response.ended:
            await conn.pump()
            if not response.ended and response.body and len(response.body) % 16 == 0:
                # The window is used up: give back what was read (h2 sends the
                # WINDOW_UPDATE for it).
                conn.conn.acknowledge_received_data(16, sid)
                await conn.flush()
        await conn.close()


async def _h2_reset(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        sid = await conn.request("GET", "/tokens?n=50&interval_ms=50&prompt=reset")
        # The headers and three tokens, then RST_STREAM(CANCEL): the server stops.
        await conn.pump_until(lambda: len(conn.responses[sid].frames) >= 3)
        await conn.reset(sid)
        await conn.ping()  # a round trip, so the capture shows nothing more came
        await conn.close()


async def _h2_settings_ping(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        await conn.ping(b"lab-ping")
        await conn.close()


async def _h2_goaway(server: Server, rec: Recorder) -> None:
    # Its own server, to shut it down mid-stream: GOAWAY names the last stream it will
    # still answer, and that stream runs to its end.
    async with trio.open_nursery() as nursery:
        own = await nursery.start(_serve_for_scenarios)
        async with open_h2_connection(own.host, own.port, recorder=rec) as conn:
            sid = await conn.request("GET", "/tokens?n=4&interval_ms=40&prompt=bye")
            await conn.pump_until(lambda: bool(conn.responses[sid].frames))
            own.shutdown()
            with trio.fail_after(10):
                while not conn.closed:
                    await conn.pump(answer=False)


async def _h2_sse(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        await conn.finish(await conn.request("GET", "/events?n=3&interval_ms=20&stream=h2"))
        await conn.close()


# -- MCP Streamable HTTP (/mcp) -----------------------------------------------------------

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


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "fixed-length", "GET /fixed: the whole body at once, framed by Content-Length",
        "The non-streaming baseline. The response head says Content-Length: 64, and the "
        "body is exactly that many bytes with nothing around it: the client knows where "
        "the body ends before it reads it, so the server had to have all of it first.",
        _fixed,
    ),
    Scenario(
        "chunked", "GET /tokens with no delay: the same kind of body in chunked coding",
        "No Content-Length: Transfer-Encoding: chunked instead. Each token is a chunk: a "
        "size line in hex, CRLF, the data, CRLF. The 0-size last-chunk and an empty line "
        "end the body. The server could start before it knew the length.",
        _chunked,
    ),
    Scenario(
        "token-stream", "GET /tokens with 40 ms between tokens: chunks arriving over time",
        "The same framing with a pause between tokens, as a model would produce them. "
        "Watch the timestamps: each chunk crosses the socket on its own, roughly one "
        "interval after the previous one.",
        _token_stream,
    ),
    Scenario(
        "ndjson-chat", "POST /chat with Accept: application/x-ndjson: one JSON line per chunk",
        "A JSON request body (Content-Length) and a streamed reply where every chunk is one "
        "newline-terminated JSON object: the framing many AI APIs use besides SSE.",
        _ndjson_chat,
    ),
    Scenario(
        "trailers", "GET /trailers: fields sent after the body (count and SHA-256)",
        "The head announces Trailer: x-token-count, x-body-sha256. After the last-chunk "
        "come two field lines, then the empty line: values the server only knew once the "
        "body was sent.",
        _trailers,
    ),
    Scenario(
        "keep-alive", "two requests, one after the other, on one connection",
        "One TCP connection (one connect, one close) carries two request/response pairs. "
        "The second request goes out only after the first response's end was read.",
        _keep_alive,
    ),
    Scenario(
        "pipelined", "two requests in one write before any response; answered in order",
        "Both requests leave in one send. The server answers the first (a slow stream) "
        "completely before the second: HTTP/1.1 responses come back in request order, "
        "so a slow response holds up every one behind it (head-of-line blocking).",
        _pipelined,
    ),
    Scenario(
        "client-abort", "the client hangs up after three chunks of a long stream",
        "The client closes the connection mid-response. The server notices the close and "
        "cancels the token generator: no more chunks are produced for nobody. The "
        "response has no last-chunk, so it is visibly incomplete.",
        _client_abort,
    ),
    Scenario(
        "cl-te-rejected", "Content-Length and Transfer-Encoding together: 400 and close",
        "A request carrying both Content-Length and Transfer-Encoding is the shape of a "
        "request-smuggling attack (RFC 9112 §6.1). h11 alone would accept it and keep the "
        "connection; the lab's server answers 400 and closes.",
        _cl_te_rejected,
    ),
    Scenario(
        "sse-events", "GET /events: Server-Sent Events with id and retry fields",
        "Content-Type: text/event-stream, and inside the chunked body a text protocol of its "
        "own: a retry field, then events made of 'id:' and 'data:' lines, each event ended "
        "by an empty line. The chunk framing and the SSE lines are both shown.",
        _sse_events,
    ),
    Scenario(
        "sse-multiline", "an event whose data spans several data: lines",
        "Each data: line appends its value and a newline to the event's data; the final "
        "newline is removed at dispatch. One JSON document, indented, takes several lines.",
        _sse_multiline,
    ),
    Scenario(
        "sse-heartbeat", "comment lines as heartbeats while no event is ready",
        "Lines starting with ':' are comments: the browser ignores them, but they keep bytes "
        "flowing so that proxies and load balancers do not drop an idle stream.",
        _sse_heartbeat,
    ),
    Scenario(
        "sse-reconnect", "the server ends the stream; the client reconnects with Last-Event-ID",
        "Three connections in one trace. The first response carries events 1-2 and ends; "
        "after the retry delay the client reconnects sending Last-Event-ID: 2 and gets 3-4; "
        "the third request (Last-Event-ID: 4) is answered 204 No Content, which tells an "
        "EventSource to stop reconnecting.",
        _sse_reconnect,
    ),
    Scenario(
        "sse-chat", "POST /chat with Accept: text/event-stream: the AI chat pattern",
        "What most AI chat front ends do: POST the prompt, read the reply as SSE over fetch. "
        "One data: JSON line per token, and data: [DONE] last.",
        _sse_chat,
    ),
    Scenario(
        "sse-progress", "named progress events, then a result event",
        "The event: field names the event type (the listener a browser calls); without it "
        "the type is 'message'.",
        _sse_progress,
    ),
    Scenario(
        "sse-error", "an error event in the middle of a stream, then the end",
        "Step 3 fails: the server sends an event named error with the details and ends the "
        "response. The client stops on it instead of reconnecting.",
        _sse_error,
    ),
    Scenario(
        "h2-token-stream", "HTTP/2: one token stream: HEADERS, a DATA frame per token, END_STREAM",
        "After the connection preface and the SETTINGS exchange, the request is one HEADERS "
        "frame on stream 1 (HPACK-compressed), the reply a HEADERS frame, one DATA frame per "
        "token and an empty DATA frame carrying END_STREAM. No chunk sizes: every frame has "
        "a 9-byte header with its length.",
        _h2_tokens,
    ),
    Scenario(
        "h2-multiplex", "HTTP/2: two token streams interleaved on one connection",
        "Streams 1 and 3 share one TCP connection; their DATA frames alternate as tokens "
        "become ready. With HTTP/1.1 the second response would wait for the first.",
        _h2_multiplex,
    ),
    Scenario(
        "h2-flow-control", "HTTP/2: a 16-byte window; the server pauses for WINDOW_UPDATE",
        "The client's SETTINGS give each stream a 16-byte window. The server sends 16 bytes of "
        "DATA and must stop until the client's WINDOW_UPDATE frames give credit back.",
        _h2_flow_control,
    ),
    Scenario(
        "h2-reset", "HTTP/2: the client resets its stream mid-reply; the server stops",
        "RST_STREAM(CANCEL) ends one stream without closing the connection. The server "
        "cancels the token generator; a PING round trip afterwards shows no DATA followed.",
        _h2_reset,
    ),
    Scenario(
        "h2-settings-ping", "HTTP/2: the SETTINGS exchange and a PING round trip",
        "Each side sends SETTINGS and acknowledges the other's with an empty SETTINGS ACK; "
        "PING carries 8 opaque bytes and comes back with the ACK flag.",
        _h2_settings_ping,
    ),
    Scenario(
        "h2-goaway", "HTTP/2: the server shuts down mid-stream with GOAWAY",
        "GOAWAY(NO_ERROR) with last-stream-id 1: no new streams, but stream 1 is still "
        "answered to its END_STREAM before the connection closes.",
        _h2_goaway,
    ),
    Scenario(
        "h2-sse", "HTTP/2: Server-Sent Events in DATA frames",
        "The same event stream as over HTTP/1.1, now one DATA frame per event on stream 1: no "
        "chunked coding, the frame header gives the length.",
        _h2_sse,
    ),
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


async def _serve_for_scenarios(*, task_status: trio.TaskStatus[Server]) -> None:
    await serve_tcp(date_source=_scenario_date, task_status=task_status)


def get(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    known = ", ".join(s.name for s in SCENARIOS)
    raise KeyError(f"no scenario {name!r}; known: {known}")


# Scenario servers send this Date instead of the clock's, so that captures reproduce byte
# for byte: in HTTP/1.1 a date could be normalised afterwards, but in HTTP/2 it is inside
# HPACK-compressed (Huffman-coded) header blocks. `lab serve` uses the real clock.
SCENARIO_DATE = b"Thu, 01 Jan 1970 00:00:00 GMT"


def _scenario_date() -> bytes:
    return SCENARIO_DATE


async def run_scenario(scenario: Scenario, server: Server | None = None) -> Trace:
    """Run one scenario and return the client's trace (starts a server if not given)."""
    trace = Trace(name=scenario.name, description=scenario.summary)
    rec = Recorder(trace)
    if server is not None:
        await scenario.script(server, rec)
        return trace
    async with trio.open_nursery() as nursery:
        own = await nursery.start(_serve_for_scenarios)
        await scenario.script(own, rec)
        own.shutdown()
    return trace


async def run_scenarios(names: list[str]) -> list[Trace]:
    """Run scenarios in order against one lab server."""
    chosen = [get(n) for n in names]
    traces = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(_serve_for_scenarios)
        for scenario in chosen:
            traces.append(await run_scenario(scenario, server))
        server.shutdown()
    return traces
