"""Headless Chromium's connection limits, measured: ten EventSources over HTTP/2 and HTTP/1.1.

One lab page (``/pages/many.html``) opens ten long-lived EventSources to ``/events``.
Over HTTPS the browser negotiates h2 by ALPN and multiplexes all ten on one TCP
connection; over plain http:// it speaks HTTP/1.1, opens at most six connections to the
host (Chromium's per-host cap; the README's table "What h11, h2 and browsers do"), and the
other four EventSources wait in CONNECTING until a response ends and frees a connection.
The page reports what the browser saw (readyState, when each source opened and got its
first message); the server reports what crossed its sockets (connections open and
accepted, and per-connection traces read back with the lab's decoders). ``pytest -s``
prints the numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlencode

import pytest

from lab.capture.annotate import AnnotatedConnection, Unparsed, annotate
from lab.capture.fileformat import load
from lab.notebook import ServerHandle
from lab.server import Server
from lab.server.tls import TLSConfig, make_tls
from lab.wire.h2frames import HeadersFrame
from lab.wire.http1 import RequestLine
from tests.interop.browser import CHROMIUM_ARGS, LAUNCH_TIMEOUT_MS, WAIT_MS, open_page
from tests.serverthread import server_in_thread
from tests.tools import require_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.interop

SOURCES: Final = 10
# Chromium's limit of HTTP/1.1 connections per host (its socket pool's per-group cap).
HTTP1_PER_HOST: Final = 6
# Each response: the retry field and event 1 at once, then events 2 and 3, INTERVAL_MS
# apart; so the first responses stream for 2 * INTERVAL_MS (6 s). Long enough that the
# measurements below fall well inside that, on a slow machine too; short enough that
# the whole test, both protocols, stays under about 15 s.
EVENTS: Final = 3
INTERVAL_MS: Final = 3000
STREAMING_MS: Final = (EVENTS - 1) * INTERVAL_MS
# No reconnect while the test runs: an EventSource whose response ended stays CONNECTING
# for a minute instead of queueing a new request behind the waiting ones.
RETRY_MS: Final = 60_000
# After six sources opened over HTTP/1.1, how long the test watches for a seventh (none
# may come before a response ends, STREAMING_MS later). Not a wait for readiness: the
# claim is that nothing happens, so it is given time to.
QUIET_MS: Final = 1000
# Bound on waiting for the server to start, and for its connections to close.
SERVER_WAIT: Final = 10.0

# What each EventSource opens; the page puts the source's index in place of {i}.
SRC: Final = f"/events?n={EVENTS}&interval_ms={INTERVAL_MS}&retry_ms={RETRY_MS}&stream=many-{{i}}"
READY_STATES: Final = "window.labSources.map(s => s.readyState)"
FIRST_EVENTS: Final = "window.lab.sources.filter(s => s.firstEvent !== null).length"
ENDED: Final = "window.lab.sources.filter(s => s.errors > 0).length"


# -- a lab server in a thread ------------------------------------------------------------


@dataclass(eq=False)
class LabServer:
    handle: ServerHandle
    trace_dir: Path

    @property
    def server(self) -> Server:
        return self.handle.server

    @property
    def url(self) -> str:
        return self.handle.url

    def connections(self) -> tuple[int, int]:
        """(open now, accepted so far), read in the server's own thread."""

        def count() -> tuple[int, int]:
            return len(self.server.connections), self.server.accepted

        return self.handle.call(count)

    def connection_traces(self) -> list[AnnotatedConnection]:
        """One per connection, annotated, once every connection has closed (bounded wait)."""
        self.handle.wait_no_connections(SERVER_WAIT)
        paths = sorted(self.trace_dir.glob("*.trace"))
        return [ac for p in paths for ac in annotate(load(p))]


@contextmanager
def running_server(trace_dir: Path, tls: TLSConfig | None = None) -> Iterator[LabServer]:
    with server_in_thread(trace_dir=trace_dir, tls=tls) as handle:
        yield LabServer(handle, trace_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, accepting the lab's throwaway certificate.

    ``--ignore-certificate-errors`` rather than playwright's ``ignore_https_errors``: with
    the latter Chromium first refuses the certificate (the server sees a handshake end in
    "certificate unknown") and then connects again, an extra connection to count.
    """
    executable = require_tool("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright not found: install the project with its dev extras")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"],
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _page_path() -> str:
    query = urlencode({"count": str(SOURCES), "src": SRC}, quote_via=quote)
    return f"/pages/many.html?{query}"


def _page_url(lab: LabServer) -> str:
    return lab.url + _page_path()


def _targets() -> list[str]:
    return [SRC.replace("{i}", str(i)) for i in range(SOURCES)]


def _report(protocol: str, states: list[int], connections: tuple[int, int], page: Page) -> None:
    sources = page.evaluate("window.lab.sources")
    opened = [s["opened"] for s in sources]
    first = [s["firstEvent"] for s in sources]
    print(
        f"\n{protocol}: {states.count(1)} of {SOURCES} EventSources OPEN, "
        f"{states.count(0)} CONNECTING; server connections open {connections[0]}, "
        f"accepted {connections[1]}"
        f"\n{protocol}: opened at (ms) {opened}"
        f"\n{protocol}: first event at (ms) {first}"
    )


def test_h2_multiplexes_ten_eventsources_on_one_connection(
    browser: Browser, tmp_path: Path
) -> None:
    with running_server(tmp_path, make_tls()) as lab:
        assert lab.url.startswith("https://")
        with open_page(browser) as page:
            page.goto(_page_url(lab))
            page.wait_for_function(f"{FIRST_EVENTS} === {SOURCES}", timeout=WAIT_MS)
            states = page.evaluate(READY_STATES)
            connections = lab.connections()
            _report("h2", states, connections, page)
            events = page.evaluate("window.lab.sources.map(s => s.events)")
        assert states == [1] * SOURCES
        assert connections == (1, 1)
        # Still inside the first responses: every source is on its first stream.
        assert all(n < EVENTS for n in events)
        (conn,) = lab.connection_traces()

    # The one connection: TLS, h2 by ALPN, the page and all ten streams on it. The lab's
    # decoders read all of it, both ways (Chromium's SETTINGS raise the HPACK table to
    # 64 KiB, and the server's first response starts with a table size update to that).
    assert (conn.conn.protocol, conn.conn.tls) == ("h2", True)
    assert [a.segment for a in conn.items if isinstance(a.segment, Unparsed)] == []
    paths = [
        dict(seg.block.headers)[b":path"].decode()
        for seg in conn.segments(from_client=True)
        if isinstance(seg, HeadersFrame) and seg.block is not None
    ]
    assert paths[0] == _page_path()
    assert sorted(paths[1:]) == sorted(_targets())


def test_http1_opens_six_connections_and_the_rest_wait(browser: Browser, tmp_path: Path) -> None:
    with running_server(tmp_path) as lab:
        assert lab.url.startswith("http://")
        with open_page(browser) as page:
            page.goto(_page_url(lab))
            page.wait_for_function(f"{FIRST_EVENTS} >= {HTTP1_PER_HOST}")
            page.wait_for_timeout(QUIET_MS)
            states = page.evaluate(READY_STATES)
            connections = lab.connections()
            events = page.evaluate("window.lab.sources.map(s => s.events)")
            _report("HTTP/1.1, first responses streaming", states, connections, page)
            # The other four get a connection when a first response ends. Wait for all
            # six ends too (each an error event, then CONNECTING for RETRY_MS), so that
            # exactly the four later responses are streaming when the page closes.
            page.wait_for_function(
                f"{FIRST_EVENTS} === {SOURCES} && {ENDED} === {HTTP1_PER_HOST}",
                timeout=STREAMING_MS + WAIT_MS,
            )
            later_states = page.evaluate(READY_STATES)
            later = lab.connections()
            _report("HTTP/1.1, after the first responses ended", later_states, later, page)
            sources = page.evaluate("window.lab.sources")

        assert sorted(states) == [0] * (SOURCES - HTTP1_PER_HOST) + [1] * HTTP1_PER_HOST
        assert connections == (HTTP1_PER_HOST, HTTP1_PER_HOST)
        # Sampled while the first responses were still streaming.
        assert all(n < EVENTS for n in events)
        # The first six ended and wait to reconnect; the four that waited are open now, on
        # freed keep-alive connections: no new one.
        assert later_states == [1 - state for state in states]
        assert later == (HTTP1_PER_HOST, HTTP1_PER_HOST)
        traces = lab.connection_traces()

    early = [s["firstEvent"] for s, state in zip(sources, states, strict=True) if state == 1]
    late = [s["firstEvent"] for s, state in zip(sources, states, strict=True) if state == 0]
    # Causal, not a speed claim: a waiting source is answered only after some first
    # response ended, and each of those ran STREAMING_MS after its first event (a few ms
    # of delivery are allowed for).
    assert min(late) >= min(early) + STREAMING_MS - 500
    assert len(traces) == HTTP1_PER_HOST
    assert {c.conn.protocol for c in traces} == {"http/1.1"}
    # The lab's decoders read every byte; the only marks are of the four responses the
    # closing page cut short, each an empty Unparsed at its end.
    cut = [(a.from_client, a.segment) for c in traces for a in c.items
           if isinstance(a.segment, Unparsed)]  # fmt: skip
    assert len(cut) == SOURCES - HTTP1_PER_HOST
    assert all(not from_client and seg.nbytes == 0 for from_client, seg in cut)
    targets = [
        seg.target
        for c in traces
        for seg in c.segments(from_client=True)
        if isinstance(seg, RequestLine)
    ]
    assert len(targets) == 1 + SOURCES
    assert targets.count(_page_path()) == 1
    assert sorted(t for t in targets if t != _page_path()) == sorted(_targets())
