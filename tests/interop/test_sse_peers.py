"""Real SSE peers agree with the lab: headless Chromium (EventSource, fetch), httpx-sse, curl.

Each test runs a lab server in a background thread, with two ways to see what it got:
the app is wrapped to record every request as it arrives (for live counts), and the
server writes a trace per connection (``trace_dir``), whose bytes the lab's own decoders
read once the connections have closed. So the browser's view is checked against the
bytes that really crossed the socket, not against what the server meant to send.
"""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import httpx
import pytest
import trio
from httpx_sse import connect_sse

from lab.apps import Request, ResponseStream, app
from lab.apps.tokens import DONE, tokens_for
from lab.capture import Trace, annotate, load
from lab.client.sse import event_source
from lab.notebook import ServerHandle
from lab.server import Server
from lab.wire.http1 import HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested
from lab.wire.sse import Dispatch, Event, parse
from tests.interop.browser import WAIT_MS, launch_chromium, open_page
from tests.serverthread import server_in_thread
from tests.tools import require_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.interop

# Bound on every external tool run, and curl's own --max-time.
TOOL_TIMEOUT = 60
# The reconnection time the /events tests ask for (retry:), in ms: short, so that the
# browser's reconnects take a fraction of a second.
RETRY_MS = 100
# After the 204 the EventSource must stay closed. A reconnect would come one reconnection
# time later; ten of them pass with no request before the test believes it.
QUIET_MS = 10 * RETRY_MS


# -- a lab server in a thread, recording what it receives --------------------------------


@dataclass(eq=False)
class LabServer:
    """A running lab server, the requests its app saw, and the dir of its traces."""

    handle: ServerHandle
    trace_dir: Path
    requests: list[Request] = field(default_factory=list)  # appended by the server thread

    @property
    def server(self) -> Server:
        return self.handle.server

    @property
    def url(self) -> str:
        return self.handle.url

    def requests_to(self, path: str, needle: str = "") -> list[Request]:
        return [r for r in list(self.requests) if r.path == path and needle in r.target]

    def wait_idle(self) -> None:
        """Wait (bounded) until every connection has closed and its trace is written."""
        self.handle.wait_no_connections(WAIT_MS / 1000)

    def exchanges(self) -> list[Exchange]:
        """Every request/response the traces hold, in connection order."""
        self.wait_idle()
        paths = sorted(self.trace_dir.glob("*.trace"))
        return [x for number, p in enumerate(paths) for x in _exchanges(number, load(p))]


@dataclass
class Exchange:
    """One request and its response, read by the lab's decoders from a server trace."""

    connection: int
    method: str = ""
    target: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    events: list[Event] = field(default_factory=list)  # SSE events in the response body


def _exchanges(number: int, trace: Trace) -> list[Exchange]:
    (conn,) = annotate(trace)
    requests: list[Exchange] = []
    responses: list[Exchange] = []
    for item in conn.items:
        seg = item.segment
        if isinstance(seg, RequestLine):
            requests.append(Exchange(number, seg.method, seg.target))
        elif isinstance(seg, HeaderField) and item.from_client and requests:
            requests[-1].headers[seg.name.lower()] = seg.value
        elif isinstance(seg, StatusLine):
            responses.append(Exchange(number, status=seg.status))
        elif isinstance(seg, Nested) and isinstance(seg.unit, Dispatch) and seg.unit.event:
            responses[-1].events.append(seg.unit.event)
    for request, response in zip(requests, responses, strict=False):
        request.status = response.status
        request.events = response.events
    return requests


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    """A lab server of its own for each test, so that counts and traces are the test's."""
    seen: list[Request] = []

    async def recording_app(request: Request, response: ResponseStream) -> None:
        seen.append(request)
        await app(request, response)

    with server_in_thread(app=recording_app, trace_dir=tmp_path) as handle:
        yield LabServer(handle, tmp_path, seen)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser) as new_page:
        yield new_page


def _page_url(lab: LabServer, name: str, **query: str) -> str:
    return f"{lab.url}/pages/{name}?{urlencode(query, quote_via=quote)}"


def _stream_name(prefix: str) -> str:
    # /events keeps a log per stream name in the process: a fresh name per test.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- the pages themselves -----------------------------------------------------------------


def test_pages_are_served_whole_and_unknown_pages_are_404(lab: LabServer) -> None:
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        for name in ("eventsource.html", "fetchstream.html"):
            response = client.get(f"/pages/{name}")
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert int(response.headers["content-length"]) == len(response.content)
            assert "<script>" in response.text
            assert "://" not in response.text  # nothing loaded from anywhere else
        assert client.get("/pages/nope.html").status_code == 404
        assert client.post("/pages/eventsource.html").status_code == 405


# -- native EventSource in headless Chromium ----------------------------------------------


def test_eventsource_resumes_with_last_event_id_and_stops_at_204(
    lab: LabServer, browser: Browser, tmp_path: Path
) -> None:
    stream = _stream_name("es")
    src = f"/events?n=3&total=6&interval_ms=20&retry_ms={RETRY_MS}&stream={stream}"
    # A page of its own (not the fixture): closing it closes the browser's connections,
    # and only then are the server's traces written.
    with open_page(browser) as page:
        page.goto(_page_url(lab, "eventsource.html", src=src))
        page.wait_for_function("window.lab.closed")
        requests = len(lab.requests_to("/events", stream))
        connections = lab.server.accepted
        # Not a wait for readiness: the claim is that nothing comes, so give it time to.
        page.wait_for_timeout(QUIET_MS)
        seen = page.evaluate("window.lab")
        assert page.evaluate("window.labSource.readyState") == 2  # CLOSED
        shot = page.screenshot(path=tmp_path / "eventsource.png")
    assert len(lab.requests_to("/events", stream)) == requests == 3
    assert lab.server.accepted == connections

    # What the browser dispatched: six events in order, each with its id.
    assert [(e["type"], e["lastEventId"]) for e in seen["events"]] == [
        ("message", str(i)) for i in range(1, 7)
    ]
    assert [json.loads(e["data"])["seq"] for e in seen["events"]] == list(range(1, 7))
    assert {json.loads(e["data"])["stream"] for e in seen["events"]} == {stream}
    assert all(e["readyState"] == 1 for e in seen["events"])
    # Two responses of events, each ended by the server (error, CONNECTING: it reconnects),
    # then the 204 (error, CLOSED: it gave up).
    assert [(s["what"], s["readyState"]) for s in seen["states"]] == [
        ("created", 0), ("open", 1), ("error", 0), ("open", 1), ("error", 0), ("error", 2),
    ]  # fmt: skip
    assert (seen["opens"], seen["errors"], seen["closed"]) == (2, 3, True)

    # What the server received and sent, read back from its traces with the lab's decoders.
    exchanges = [x for x in lab.exchanges() if x.target == src]
    assert [(x.headers.get("last-event-id"), x.status) for x in exchanges] == [
        (None, 200), ("3", 200), ("6", 204),
    ]  # fmt: skip
    assert all(x.headers["accept"] == "text/event-stream" for x in exchanges)
    assert [len(x.events) for x in exchanges] == [3, 3, 0]
    decoded = [(e.type, e.data, e.last_event_id) for x in exchanges for e in x.events]
    assert decoded == [(e["type"], e["data"], e["lastEventId"]) for e in seen["events"]]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "eventsource.png").stat().st_size > 0


def test_eventsource_named_events_reach_their_listeners(lab: LabServer, page: Page) -> None:
    # /progress ends after `result`, and the browser would reconnect (in about 3 s) and
    # start over; so once the end is seen (an error event), the page closes its source.
    page.goto(_page_url(lab, "eventsource.html", src="/progress?n=3&interval_ms=5"))
    page.wait_for_function("window.lab.events.length >= 4 && window.lab.errors >= 1")
    page.evaluate("window.labSource.close()")
    seen = page.evaluate("window.lab")
    assert [e["type"] for e in seen["events"]] == ["progress"] * 3 + ["result"]
    assert [json.loads(e["data"])["step"] for e in seen["events"][:3]] == [1, 2, 3]
    assert json.loads(seen["events"][3]["data"]) == {
        "steps": 3,
        "words": tokens_for("progress", 3),
    }
    assert [(s["what"], s["readyState"]) for s in seen["states"]] == [
        ("created", 0), ("open", 1), ("error", 0),
    ]  # fmt: skip


def test_eventsource_tells_a_named_error_event_from_a_connection_error(
    lab: LabServer, page: Page
) -> None:
    page.goto(_page_url(lab, "eventsource.html", src="/progress?n=3&interval_ms=5&fail_at=2"))
    # The server sends `event: error` at step 2 and ends the stream; the end is the
    # EventSource's own error event (no data), after which it would reconnect.
    page.wait_for_function("window.lab.events.length >= 2 && window.lab.errors >= 1")
    page.evaluate("window.labSource.close()")
    seen = page.evaluate("window.lab")
    assert [e["type"] for e in seen["events"]] == ["progress", "error"]
    assert json.loads(seen["events"][1]["data"])["step"] == 2
    assert seen["states"][-1]["what"] == "error"
    assert seen["states"][-1]["readyState"] == 0  # CONNECTING: not a server event


# -- fetch() and a ReadableStream reader ----------------------------------------------------


def test_fetch_reads_post_chat_as_sse_as_it_arrives(lab: LabServer, page: Page) -> None:
    prompt, n = "browser", 5
    page.goto(_page_url(lab, "fetchstream.html", prompt=prompt, n=str(n), interval_ms="40"))
    page.wait_for_function("window.lab.done")
    seen = page.evaluate("window.lab")
    assert seen["error"] is None
    assert (seen["status"], seen["contentType"]) == (200, "text/event-stream")
    events = parse(seen["text"].encode("utf-8"))
    assert [json.loads(e.data)["token"] for e in events[:-1]] == tokens_for(prompt, n)
    assert [json.loads(e.data)["index"] for e in events[:-1]] == list(range(n))
    assert events[-1].data == DONE
    assert seen["data"] == [e.data for e in events]  # the page's own reading agrees
    assert "".join(c["text"] for c in seen["chunks"]) == seen["text"]
    # The reply came over time, not at once: several reads, later ones later.
    assert len(seen["chunks"]) > 1
    assert seen["chunks"][-1]["t"] > seen["chunks"][0]["t"]
    (request,) = lab.requests_to("/chat")
    assert request.method == "POST"
    assert request.header("accept") == "text/event-stream"
    assert json.loads(request.body) == {"prompt": prompt, "n": n, "interval_ms": 40}


# -- httpx-sse ------------------------------------------------------------------------------


def test_httpx_sse_reads_events_like_the_labs_decoder(lab: LabServer) -> None:
    target = f"/events?n=4&interval_ms=5&stream={_stream_name('httpx')}"
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        raw = client.get(target).content
        with connect_sse(client, "GET", target) as source:
            assert source.response.headers["content-type"] == "text/event-stream"
            received = list(source.iter_sse())
    lab_events = parse(raw)
    assert [e.last_event_id for e in lab_events] == ["1", "2", "3", "4"]
    # httpx-sse also yields the `retry: 1000` block, which a browser does not dispatch
    # (no data); see "Where httpx-sse 0.4.3 differs" in lab.wire.sse.
    first, *rest = received
    assert (first.data, first.id, first.retry) == ("", "", 1000)
    assert [(e.event, e.data, e.id) for e in rest] == [
        (e.type, e.data, e.last_event_id) for e in lab_events
    ]


def test_httpx_sse_reads_post_chat(lab: LabServer) -> None:
    body = {"prompt": "httpx-sse", "n": 4, "interval_ms": 5}
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        with connect_sse(client, "POST", "/chat", json=body) as source:
            data = [e.data for e in source.iter_sse()]
        raw = client.post("/chat", json=body, headers={"accept": "text/event-stream"}).content
    assert data == [e.data for e in parse(raw)]
    assert [json.loads(d)["token"] for d in data[:-1]] == tokens_for("httpx-sse", 4)
    assert data[-1] == DONE


# -- curl -N ----------------------------------------------------------------------------


def test_curl_prints_the_event_stream_the_lab_client_reads(lab: LabServer) -> None:
    curl = require_tool("curl", "curl")
    target = f"/events?n=3&interval_ms=10&stream={_stream_name('curl')}"
    out = subprocess.run(
        [curl, "-sS", "-N", "--max-time", str(TOOL_TIMEOUT), f"{lab.url}{target}"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT + 5,
    ).stdout  # fmt: skip
    # The lab's EventSource-style client, one connection (the same bytes: no Last-Event-ID,
    # so the stream starts over, and its events depend only on the stream name and id).
    read = functools.partial(event_source, max_connections=1)
    result = trio.run(read, lab.server.host, lab.server.port, target)
    (response,) = result.responses
    assert response.complete
    assert out == response.body
    assert out.startswith(b"retry: 1000\n\n")
    assert parse(out) == result.events
    assert [e.last_event_id for e in result.events] == ["1", "2", "3"]
