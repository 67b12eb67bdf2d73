"""The endpoint table and the app that dispatches on it.

The table is data: ``GET /`` renders it, ``lab serve`` prints it, and 404 / 405 come from
it, so the three can never disagree. An endpoint with ``subtree`` also answers every path
under its own (``/lab`` serves ``/lab/``, ``/lab/events``, ``/lab/connections/...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.apps.endpoints import chat, fixed, tokens, trailers
from lab.apps.interface import Handler, HTTPError, Request, ResponseStream, send_text
from lab.apps.mcp import endpoint as mcp_endpoint
from lab.apps.pages import page
from lab.apps.poll import longpoll, poll, sse_tokens
from lab.apps.sse import events, progress
from lab.apps.stats import stats
from lab.apps.viewer import viewer
from lab.apps.ws import ws_tokens

__all__ = ["ENDPOINTS", "Endpoint", "app", "index_text"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    methods: tuple[str, ...]
    path: str
    handler: Handler
    example: str  # a target that shows the endpoint off
    summary: str
    subtree: bool = False  # also every path under path + "/"

    def serves(self, path: str) -> bool:
        return path == self.path or (self.subtree and path.startswith(self.path + "/"))


async def _index(request: Request, response: ResponseStream) -> None:
    await send_text(response, 200, index_text())


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(("GET",), "/", _index, "/", "this index"),
    Endpoint(
        ("GET",), "/fixed", fixed, "/fixed?size=64",
        "non-streaming baseline: the whole body with Content-Length",
    ),
    Endpoint(
        ("GET",), "/tokens", tokens, "/tokens?n=8&interval_ms=25&prompt=hi",
        "text/plain token stream, one token per chunk / DATA frame, then [DONE]",
    ),
    Endpoint(
        ("POST",), "/chat", chat, "/chat",
        "JSON {prompt, n, interval_ms}; framed by Accept: text/plain, "
        "text/event-stream, application/x-ndjson or application/json",
    ),
    Endpoint(
        ("GET",), "/events", events,
        "/events?n=5&total=0&interval_ms=25&retry_ms=1000&heartbeat_ms=15000&stream=default"
        "&multiline=0",
        "SSE: numbered events with id and retry, heartbeats, resume after Last-Event-ID; "
        "ends after n events; 204 once all `total` were sent",
    ),
    Endpoint(
        ("GET",), "/progress", progress, "/progress?n=5&interval_ms=25&fail_at=0",
        "SSE: named progress events, then a result event (or an error event at fail_at)",
    ),
    Endpoint(
        ("GET", "CONNECT"), "/ws/tokens", ws_tokens, "/ws/tokens?n=8&interval_ms=25&prompt=hi",
        "WebSocket (HTTP/1.1 Upgrade, or HTTP/2 extended CONNECT): one text message per "
        "token, then [DONE], then close 1000; a text message 'stop' ends it early",
    ),
    Endpoint(
        ("GET",), "/trailers", trailers, "/trailers?n=4",
        "token stream followed by trailer fields (count, SHA-256 of the body)",
    ),
    Endpoint(
        ("GET",), "/poll", poll, "/poll?stream=s1&cursor=0&n=8&interval_ms=25&prompt=hi",
        "short polling, JSON: the tokens of stream s1 produced since cursor, next cursor, done",
    ),
    Endpoint(
        ("GET",), "/longpoll", longpoll,
        "/longpoll?stream=s1&cursor=0&timeout_ms=20000&n=8&interval_ms=25&prompt=hi",
        "long polling, JSON: as /poll, held until a token past cursor exists or timeout_ms",
    ),
    Endpoint(
        ("GET",), "/sse/tokens", sse_tokens, "/sse/tokens?n=8&interval_ms=25&prompt=hi",
        "SSE by GET (EventSource): the token stream framed as POST /chat's text/event-stream",
    ),
    Endpoint(
        ("GET",), "/pages/eventsource.html", page,
        "/pages/eventsource.html?src=%2Fevents%3Fn%3D3",
        "HTML page: the browser's EventSource on ?src=, what it dispatched in window.lab",
    ),
    Endpoint(
        ("GET",), "/pages/fetchstream.html", page,
        "/pages/fetchstream.html?prompt=hi&n=5&interval_ms=25",
        "HTML page: fetch() POST /chat as SSE, read with a ReadableStream reader",
    ),
    Endpoint(
        ("GET",), "/pages/many.html", page,
        "/pages/many.html?count=10&src=%2Fevents%3Fn%3D3%26stream%3Dmany-%7Bi%7D",
        "HTML page: count EventSources at once; when each opened and got its first event",
    ),
    Endpoint(
        ("GET",), "/stats", stats, "/stats",
        "JSON: open connections, tasks and buffered bytes of the servers in this process",
    ),
    Endpoint(
        ("POST", "GET", "DELETE"), "/mcp", mcp_endpoint, "/mcp",
        "MCP Streamable HTTP, revisions 2025-11-25 (sessions, resumable SSE) and "
        "2026-07-28 (stateless); tools stream_tokens and fail",
    ),
    Endpoint(
        ("GET",), "/lab", viewer, "/lab/",
        "live wire viewer (when the server keeps a live feed): every connection's bytes "
        "and what they mean, as they happen; /lab/events is its SSE feed",
        subtree=True,
    ),
)  # fmt: skip


def index_text() -> str:
    lines = ["streamlab endpoints (identical over HTTP/1.1 and HTTP/2):", ""]
    for ep in ENDPOINTS:
        lines.append(f"  {'|'.join(ep.methods):<5} {ep.example:<40} {ep.summary}")
    return "\n".join(lines) + "\n"


async def app(request: Request, response: ResponseStream) -> None:
    """Dispatch on path, then method: 404 for an unknown path, 405 with Allow otherwise."""
    for ep in ENDPOINTS:
        if ep.serves(request.path):
            # HEAD is GET without the content (RFC 9110 §9.3.2): the server drops it.
            head = request.method == "HEAD" and "GET" in ep.methods
            if request.method not in ep.methods and not head:
                raise HTTPError(
                    405,
                    f"{request.path} allows {', '.join(ep.methods)}\n",
                    [("allow", ", ".join(ep.methods))],
                )
            await ep.handler(request, response)
            return
    raise HTTPError(404, f"no endpoint at {request.path}; GET / lists them\n")
