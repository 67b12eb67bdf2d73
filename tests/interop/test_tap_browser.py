"""Headless Chromium through ``lab tap --tls`` to the lab's server: the browser's HTTPS,
decrypted.

Chromium speaks HTTP/2 only over TLS, choosing it by ALPN (RFC 7301, RFC 9113 §3.2). The
tap terminates TLS with a certificate from the CA it made for the run (the browser is told
to accept it: playwright's ``ignore_https_errors``), records the decrypted bytes, and
forwards them to the plaintext lab server as h2c with prior knowledge. The page opens an
EventSource (WHATWG HTML §9.2) that gets three events, reconnects once with
Last-Event-ID and is told to stop with a 204. The test checks what the browser saw
(``nextHopProtocol`` h2, the events), the tap's log lines, and the trace: HTTP/2 frames,
above TLS, with the page's and the EventSource's requests in HEADERS frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from urllib.parse import quote

import pytest

from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.capture.trace import Trace
from lab.wire.h2frames import HeadersFrame
from tests.interop.browser import WAIT_MS, launch_chromium
from tests.livecli import LabProcess
from tests.serverthread import server_in_thread

pytestmark = pytest.mark.interop

# The EventSource's stream: three events at once, then the end; its reconnect (after
# RETRY_MS) is answered 204, which closes it for good.
EVENTS: Final = 3
RETRY_MS: Final = 100


def _requests(trace: Trace) -> list[dict[str, str]]:
    """The fields of every request in the trace's HEADERS frames, in order."""
    requests = []
    for ac in annotate(trace):
        for seg in ac.segments(from_client=True):
            if isinstance(seg, HeadersFrame) and seg.block is not None:
                requests.append({k.decode(): v.decode() for k, v in seg.block.headers})
    return requests


def test_chromium_through_the_tls_tap_speaks_h2_and_is_recorded(tmp_path: Path) -> None:
    src = f"/events?n={EVENTS}&total={EVENTS}&retry_ms={RETRY_MS}&interval_ms=0"
    page_path = f"/pages/eventsource.html?src={quote(src, safe='')}"
    with server_in_thread() as server, LabProcess(
        "tap", "--listen", "0", "--to", f"127.0.0.1:{server.port}", "--tls",
        "--out", str(tmp_path),
    ) as tap:  # fmt: skip
        url = tap.wait_for(r"listening on (https://127\.0\.0\.1:\d+)").group(1)
        with launch_chromium() as browser:
            context = browser.new_context(ignore_https_errors=True)
            try:
                context.set_default_timeout(WAIT_MS)
                page = context.new_page()
                page.goto(f"{url}{page_path}")
                page.wait_for_function("window.lab.closed")
                protocol = page.evaluate(
                    "performance.getEntriesByType('navigation')[0].nextHopProtocol"
                )
                lab = page.evaluate("window.lab")
            finally:
                context.close()
        page_line = tap.wait_for(r"c\d+ h2 s\d+ GET /pages/eventsource\.html\S* → 200 ")
        tap.wait_for(r"c\d+ h2 s\d+ GET /events\S* → 200 \d+ B [\d.]+ ms$")
        tap.wait_for(r"c\d+ h2 s\d+ GET /events\S* → 204 ")
        stopped = tap.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert protocol == "h2"  # ALPN chose HTTP/2, as the browser reports it
    assert [e["lastEventId"] for e in lab["events"]] == [str(i) for i in range(1, EVENTS + 1)]
    assert "/pages/eventsource.html" in page_line.group(0)
    traces = [load(p) for p in sorted(tmp_path.glob("*.trace"))]
    h2 = [t for t in traces if t.connections[0].protocol == "h2"]
    assert h2, [t.description for t in traces]
    assert all(t.connections[0].tls and "ALPN h2" in t.description for t in h2)
    assert all(
        t.connections[0].client_to_server().startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        for t in h2
    )
    requests = [r for t in h2 for r in _requests(t)]
    assert page_path in [r[":path"] for r in requests]
    streams = [r for r in requests if r[":path"] == src]
    # The first request, then the reconnect with the last event id (an HPACK field).
    assert [r.get("last-event-id") for r in streams] == [None, str(EVENTS)]
    assert all(r[":scheme"] == "https" for r in requests)
