"""Server-Sent Events scenarios over HTTP/1.1: events with ids, multi-line data,
heartbeats, reconnection with Last-Event-ID, the AI chat pattern, named and error events.
"""

from __future__ import annotations

import json
from typing import Any

from lab.capture.tap import Recorder
from lab.client.sse import event_source
from lab.scenarios.runner import Scenario
from lab.server import Server

__all__ = ["SSE_SCENARIOS"]


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


SSE_SCENARIOS: tuple[Scenario, ...] = (
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
)  # fmt: skip
