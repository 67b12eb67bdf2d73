"""The lab's WebSocket server against real peers: the ``websockets`` library's client
(asyncio; HTTP/1.1, plain and TLS) and headless Chromium's ``WebSocket`` (ws:// over
HTTP/1.1, wss:// over HTTPS).

What Chromium does over HTTPS was measured, not assumed: once a page is loaded over h2
from a server whose SETTINGS carried ENABLE_CONNECT_PROTOCOL = 1, Chromium 156 opens the
page's ``new WebSocket("wss://...")`` as an RFC 8441 extended CONNECT stream on that same
connection (``:method CONNECT``, ``:protocol websocket``, ``sec-websocket-version: 13``):
the server accepts one connection in all, and the handler sees ``request.protocol ==
"h2"``. The tests below assert exactly that, from the server's side (the requests its app
saw, its count of connections, the HEADERS frame in the connection's trace).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from lab.apps import Request, ResponseStream
from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.notebook import ServerHandle
from lab.server.tls import TLSConfig, make_tls
from lab.wire.h2frames import HeadersFrame, SettingsFrame
from tests.interop.browser import CHROMIUM_ARGS, LAUNCH_TIMEOUT_MS, open_page
from tests.serverthread import server_in_thread
from tests.tools import require_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.interop

# Every wait on a peer: the streams here take well under a second.
WAIT: Final = 15.0
TOKENS: Final = "/ws/tokens?n=6&interval_ms=10&prompt=peer"
EXPECTED: Final = [*tokens_for("peer", 6), "[DONE]"]
LONG: Final = "/ws/tokens?n=1000&interval_ms=20&prompt=long"


@dataclass
class Recorder:
    """The lab's app, noting each request as the handler saw it (from the server thread;
    list.append is atomic)."""

    seen: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def __call__(self, request: Request, response: ResponseStream) -> None:
        self.seen.append((request.protocol, request.method, request.path, request.upgrade))
        await lab_app(request, response)

    def websockets(self) -> list[tuple[str, str, str, str]]:
        return [s for s in self.seen if s[2].startswith("/ws/")]


def ws_url(handle: ServerHandle, target: str) -> str:
    return handle.url.replace("http", "ws", 1) + target


def client_context(tls: TLSConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=tls.ca_pem.decode("ascii"))


# -- the websockets library ----------------------------------------------------------------


def run_websockets(handle: ServerHandle, tls: TLSConfig | None, body: Any) -> Any:
    """``body(ws)`` on a websockets client connected to ``/ws/...`` (asyncio, bounded)."""
    from websockets.asyncio.client import connect

    async def main() -> Any:
        ssl_context = client_context(tls) if tls is not None else None
        async with asyncio.timeout(WAIT):
            async with connect(ws_url(handle, body.target), ssl=ssl_context) as ws:
                return await body(ws)

    return asyncio.run(main())


@pytest.fixture(params=["http/1.1", "tls+http/1.1"])
def lab(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[ServerHandle, TLSConfig | None, Recorder]]:
    tls = make_tls() if request.param.startswith("tls") else None
    recorder = Recorder()
    with server_in_thread(app=recorder, tls=tls) as handle:
        yield handle, tls, recorder


def test_websockets_client_gets_the_token_stream(lab: Any) -> None:
    handle, tls, recorder = lab

    async def body(ws: Any) -> tuple[list[str], int | None]:
        messages = [message async for message in ws]  # ends at a normal close
        return messages, ws.close_code

    body.target = TOKENS  # type: ignore[attr-defined]
    messages, code = run_websockets(handle, tls, body)
    assert (messages, code) == (EXPECTED, 1000)
    assert recorder.websockets() == [("http/1.1", "GET", "/ws/tokens", "websocket")]


def test_websockets_client_stops_the_stream(lab: Any) -> None:
    handle, tls, _ = lab

    async def body(ws: Any) -> tuple[list[str], int | None, str | None]:
        first = [await ws.recv(), await ws.recv()]
        await ws.send("stop")
        rest = [message async for message in ws]
        return first + rest, ws.close_code, ws.close_reason

    body.target = LONG  # type: ignore[attr-defined]
    messages, code, reason = run_websockets(handle, tls, body)
    assert messages == tokens_for("long", len(messages))
    assert (code, reason) == (1000, f"stopped after {len(messages)} of 1000 tokens")


def test_websockets_client_ping_is_answered(lab: Any) -> None:
    handle, tls, _ = lab

    async def body(ws: Any) -> float:
        await ws.recv()
        pong = await ws.ping(b"lab")
        latency = await pong  # resolved by the server's Pong with the same data
        await ws.close()
        return float(latency)

    body.target = LONG  # type: ignore[attr-defined]
    assert run_websockets(handle, tls, body) >= 0


def test_websockets_client_closes_first_and_the_server_echoes(lab: Any) -> None:
    handle, tls, _ = lab

    async def body(ws: Any) -> tuple[int, str, int, bool]:
        await ws.recv()
        await ws.close(4001, "enough")
        received = ws.protocol.close_rcvd
        # The server answered with a Close of the same code (RFC 6455 §5.5.1), then
        # closed the TCP connection itself (§7.1.1): the client did not have to.
        return received.code, received.reason, ws.close_code, ws.protocol.close_rcvd_then_sent

    body.target = LONG  # type: ignore[attr-defined]
    code, reason, close_code, answered = run_websockets(handle, tls, body)
    assert (code, reason, close_code, answered) == (4001, "", 4001, False)


# -- headless Chromium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, accepting the lab's throwaway certificate (see
    tests/interop/test_browser_connections.py for why the flag and not playwright's)."""
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


# A WebSocket in the page: every message, then the close event. ``stop_after``: send
# "stop" after that many messages; ``close_after``: close with 4000 after that many.
_PAGE_WEBSOCKET: Final = """
async ({url, stopAfter, closeAfter}) => await new Promise((resolve) => {
  const ws = new WebSocket(url);
  const got = [];
  ws.onmessage = (e) => {
    got.push(e.data);
    if (got.length === stopAfter) ws.send("stop");
    if (got.length === closeAfter) ws.close(4000, "page is done");
  };
  ws.onclose = (e) => resolve({got, code: e.code, reason: e.reason, wasClean: e.wasClean});
})
"""


@dataclass
class PageRun:
    got: list[str]
    code: int
    reason: str
    was_clean: bool
    seen: list[tuple[str, str, str, str]]
    accepted: int
    trace_dir: Path


def page_websocket(
    browser: Browser, tmp_path: Path, tls: TLSConfig | None, target: str,
    *, stop_after: int = 0, close_after: int = 0,
) -> PageRun:  # fmt: skip
    """Load ``/`` from a lab server, then open ``target`` as a WebSocket from the page."""
    recorder = Recorder()
    with server_in_thread(app=recorder, tls=tls, trace_dir=tmp_path) as handle:
        with open_page(browser) as page:
            page.goto(handle.url + "/")
            result = page.evaluate(
                _PAGE_WEBSOCKET,
                {"url": ws_url(handle, target), "stopAfter": stop_after, "closeAfter": close_after},
            )
        handle.wait_no_connections(WAIT)
        accepted = handle.call(lambda: handle.server.accepted)
    return PageRun(
        result["got"], result["code"], result["reason"], result["wasClean"],
        recorder.websockets(), accepted, tmp_path,
    )  # fmt: skip


def test_chromium_websocket_over_http1(browser: Browser, tmp_path: Path) -> None:
    run = page_websocket(browser, tmp_path, None, TOKENS)
    assert (run.got, run.code, run.reason, run.was_clean) == (EXPECTED, 1000, "", True)
    # ws:// from an http:// page: an HTTP/1.1 Upgrade (RFC 6455 §4), on a connection of
    # its own beside the page's (Chromium does not reuse a keep-alive connection for it).
    assert run.seen == [("http/1.1", "GET", "/ws/tokens", "websocket")]
    assert run.accepted == 2


def test_chromium_websocket_over_https_uses_rfc_8441(browser: Browser, tmp_path: Path) -> None:
    run = page_websocket(browser, tmp_path, make_tls(), TOKENS)
    assert (run.got, run.code, run.reason, run.was_clean) == (EXPECTED, 1000, "", True)
    # The evidence, from the server's side: the handler saw an HTTP/2 extended CONNECT...
    assert run.seen == [("h2", "CONNECT", "/ws/tokens", "websocket")]
    # ... on the page's own connection: one accepted in all.
    assert run.accepted == 1
    (conn,) = [c for p in sorted(run.trace_dir.glob("*.trace")) for c in annotate(load(p))]
    assert (conn.conn.protocol, conn.conn.tls) == ("h2", True)
    settings = [s for s in conn.segments(from_client=False) if isinstance(s, SettingsFrame)]
    assert any(
        (setting.name, setting.value) == ("ENABLE_CONNECT_PROTOCOL", 1)
        for frame in settings
        for setting in frame.settings
    )
    connects = [
        dict(seg.block.headers)
        for seg in conn.segments(from_client=True)
        if isinstance(seg, HeadersFrame) and seg.block is not None
        and dict(seg.block.headers).get(b":method") == b"CONNECT"
    ]  # fmt: skip
    assert len(connects) == 1
    assert connects[0][b":protocol"] == b"websocket"
    assert connects[0][b":path"] == TOKENS.encode()
    assert connects[0][b":scheme"] == b"https"
    assert connects[0][b"sec-websocket-version"] == b"13"


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_chromium_stops_the_stream(browser: Browser, tmp_path: Path, secure: bool) -> None:
    run = page_websocket(browser, tmp_path, make_tls() if secure else None, LONG, stop_after=2)
    assert run.got == tokens_for("long", len(run.got))
    assert (run.code, run.was_clean) == (1000, True)
    assert run.reason == f"stopped after {len(run.got)} of 1000 tokens"


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_chromium_closes_first_and_the_server_echoes(
    browser: Browser, tmp_path: Path, secure: bool
) -> None:
    run = page_websocket(browser, tmp_path, make_tls() if secure else None, LONG, close_after=2)
    assert run.got[:2] == tokens_for("long", 2)
    # The close event carries the code of the server's answering Close: the same.
    assert (run.code, run.was_clean) == (4000, True)
