"""An SSE client with EventSource semantics, built on the raw client and the lab's decoder.

What it does is what the WHATWG EventSource does (HTML §9.2.2-9.2.4), so that the lab can
show a browser's behaviour byte by byte:

- each connection sends ``Accept: text/event-stream`` and ``Cache-Control: no-cache`` and,
  once an event carried an id, ``Last-Event-ID``;
- a status other than 200, or a Content-Type other than ``text/event-stream``, *fails* the
  connection: no reconnect (204 No Content is the server's conventional "stop");
- when the body ends, or the connection breaks, it *reconnects* after the reconnection
  time, which the stream's ``retry:`` field may change;
- the last event ID and the reconnection time live across connections.

Beyond EventSource (the ``@microsoft/fetch-event-source`` pattern): any method, a body and
extra headers, e.g. ``POST /chat`` with ``Accept: text/event-stream``.

Every connection it makes goes into one trace, on one time axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.client.http1 import Response, open_connection
from lab.wire.sse import Dispatch, Event, SSEDecoder

__all__ = [
    "DEFAULT_RECONNECTION_MS",
    "MAX_CONNECTIONS",
    "EventSourceResult",
    "event_source",
]

# The reconnection time before any retry: field; browsers use a few seconds (Chromium 3 s).
DEFAULT_RECONNECTION_MS: Final = 3000
# Connections one run may make, so that a server that always ends the stream cannot keep
# the client reconnecting for ever.
MAX_CONNECTIONS: Final = 20


@dataclass(slots=True)
class EventSourceResult:
    events: list[Event] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)  # one per connection, in order
    stopped: str = ""  # why it stopped, in words
    last_event_id: str = ""
    reconnection_ms: int = DEFAULT_RECONNECTION_MS
    trace: Trace = field(default_factory=lambda: Trace(name="sse"))


def _is_event_stream(response: Response) -> bool:
    content_type = response.header("content-type") or ""
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


async def event_source(
    host: str,
    port: int,
    target: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    max_events: int | None = None,
    until: Callable[[Event], bool] | None = None,
    max_connections: int = MAX_CONNECTIONS,
    last_event_id: str = "",
    reconnection_ms: int = DEFAULT_RECONNECTION_MS,
    on_event: Callable[[Event], None] | None = None,
    name: str = "sse",
    recorder: Recorder | None = None,
) -> EventSourceResult:
    """Read events the way EventSource does; return the events and the trace.

    It stops when the server stops it (a non-200 status, a wrong Content-Type), when
    ``max_events`` arrived (it hangs up at once), when ``max_connections`` were used, or
    after the response in which ``until(event)`` was true has ended (a chat client's
    ``data == "[DONE]"``: read to the end, do not reconnect)."""
    if recorder is None:
        recorder = Recorder(Trace(name=name, description=f"{method} {target} as an EventSource"))
    result = EventSourceResult(
        last_event_id=last_event_id, reconnection_ms=reconnection_ms, trace=recorder.trace
    )
    done: list[bool] = []  # max_events reached: hang up at once
    finished: list[bool] = []  # until() was met: read the response out, do not reconnect
    for attempt in range(max_connections):
        if attempt:
            await trio.sleep(result.reconnection_ms / 1000)
        fields = [("accept", "text/event-stream"), ("cache-control", "no-cache"), *headers]
        if result.last_event_id:
            fields.append(("last-event-id", result.last_event_id))
        # The last event ID lives across connections, as in a browser.
        decoder = SSEDecoder(last_event_id=result.last_event_id)

        def on_piece(data: bytes, decoder: SSEDecoder = decoder) -> bool:
            for seg in decoder.feed(data):
                if isinstance(seg, Dispatch) and seg.event is not None:
                    result.events.append(seg.event)
                    if on_event is not None:
                        on_event(seg.event)
                    if until is not None and until(seg.event):
                        finished.append(True)  # read this response out, then stop
                    if max_events is not None and len(result.events) >= max_events:
                        done.append(True)
                        return True
            return False

        try:
            async with open_connection(host, port, recorder=recorder) as conn:
                await conn.send_request(method, target, fields, body)
                response = await conn.read_head()
                result.responses.append(response)
                if response.status != 200:
                    result.stopped = f"status {response.status}: the connection fails, no retry"
                    return result
                if not _is_event_stream(response):
                    ctype = response.header("content-type")
                    result.stopped = f"Content-Type {ctype!r}: the connection fails, no retry"
                    return result
                await conn.read_body(response, on_piece)
        except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError) as exc:
            # A network error: EventSource reconnects after the reconnection time.
            result.stopped = f"network error: {exc}"
        finally:
            result.last_event_id = decoder.last_event_id
            if decoder.retry is not None:
                result.reconnection_ms = decoder.retry
        if done:
            result.stopped = f"{max_events} events received; the client hung up"
            return result
        if finished:
            result.stopped = "an event met the caller's condition; no reconnect"
            return result
        result.stopped = "the stream ended; reconnecting"
    result.stopped = f"gave up after {max_connections} connections"
    return result
