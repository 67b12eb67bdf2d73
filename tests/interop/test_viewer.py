"""The live wire viewer in headless Chromium: a token stream shows up on the page as it runs.

The page (``/lab/``) is opened first; then another client (httpx, HTTP/1.1 or h2c) asks
for ``/tokens?n=5&interval_ms=100``. The server's app holds that response after its first
token until the test lets it go (tests.server.viewerclient.held_tokens), so when the page
shows the first chunk (or DATA frame) the stream is provably still running: the page is
live, not a replay of a finished connection. Then the rest arrives, and the page shows
every token as the user saw it, the last chunk (or END_STREAM), and links a ``.trace``
that Chromium downloads and the lab reads back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import pytest
import trio

from lab.apps.tokens import DONE, tokens_for
from lab.capture import annotate, load
from lab.notebook import ServerHandle
from lab.wire.chunked import ChunkData
from lab.wire.h2frames import DataFrame
from tests.interop.browser import WAIT_MS, launch_chromium, open_page
from tests.server.viewerclient import held_tokens
from tests.serverthread import server_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.interop

TARGET: Final = "/tokens?n=5&interval_ms=100"
SECTION: Final = f'section.conn[data-target="{TARGET}"]'
# The client's bound on the whole response (the test holds it open for a moment).
CLIENT_TIMEOUT: Final = WAIT_MS / 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


def _fetch(url: str, protocol: str, result: dict[str, object]) -> None:
    """GET ``url`` the way another user of the app would (runs in its own thread)."""
    h2 = protocol == "h2c"
    try:
        with (
            httpx.Client(http1=not h2, http2=h2, timeout=CLIENT_TIMEOUT) as client,
            client.stream("GET", url) as response,
        ):
            result["version"] = response.http_version
            result["body"] = response.read().decode()
    except Exception as exc:  # reported by the test's own thread
        result["error"] = exc


# What marks, per protocol, the first piece of the body and the end of it on the page.
FIRST: Final = {
    "http/1.1": f'{SECTION} li.seg[data-kind="chunk-size"]',
    "h2c": f'{SECTION} li.seg[data-type="DATA"][data-sid="1"]',
}
LAST: Final = {
    "http/1.1": f'{SECTION} li.seg[data-kind="last-chunk"]',
    "h2c": f'{SECTION} li.seg[data-type="DATA"][data-sid="1"][data-flags~="END_STREAM"]',
}


@pytest.mark.parametrize("protocol", ["http/1.1", "h2c"])
def test_the_page_shows_a_token_stream_while_it_runs(
    browser: Browser, protocol: str, tmp_path: Path
) -> None:
    gate = trio.Event()
    result: dict[str, object] = {}
    with (
        server_in_thread(app=held_tokens(gate), viewer=True) as handle,
        open_page(browser) as page,
    ):
        page.goto(f"{handle.url}/lab/")
        page.wait_for_function("window.labViewer.open && window.labViewer.hellos > 0")
        fetcher = threading.Thread(target=_fetch, args=(handle.url + TARGET, protocol, result))
        fetcher.start()
        try:
            page.wait_for_selector(FIRST[protocol], state="attached")
            # The server holds the second token: the stream runs, its first piece is shown.
            assert page.locator(LAST[protocol]).count() == 0
            assert "body" not in result
        finally:
            handle.call(gate.set)
            fetcher.join(CLIENT_TIMEOUT)
        assert not fetcher.is_alive()
        assert "error" not in result, result
        page.wait_for_selector(LAST[protocol], state="attached")
        body = result["body"]
        assert body == "".join(tokens_for("hello", 5)) + f"\n{DONE}\n"
        assert result["version"] == ("HTTP/2" if protocol == "h2c" else "HTTP/1.1")
        # What the user saw, as the page shows it.
        shown = page.locator(f'{SECTION} div.stream[data-sid="1"] pre.text').text_content()
        assert shown == body
        pieces = page.locator(FIRST[protocol]).count()
        if protocol == "h2c":
            assert pieces == 5 + 2  # one DATA frame per token, [DONE], the empty END_STREAM
            note = page.locator(FIRST[protocol]).first.text_content() or ""
            assert "DATA stream 1" in note
        else:
            assert pieces == 5 + 1  # one chunk per token, and [DONE]
        # Only the token stream is there: the viewer's own page and feed are not.
        targets = page.eval_on_selector_all("section.conn", "s => s.map(e => e.dataset.target)")
        assert targets == [TARGET]
        # The page links the connection's trace; Chromium downloads it, the lab reads it.
        with page.expect_download() as download:
            page.click(f'{SECTION} h2 a[href$=".trace"]')
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name.endswith(".trace")
        assert "GET-tokens-n-5-interval_ms-100" in saved.name
        (annotated,) = annotate(load(saved))
        assert annotated.conn.protocol == protocol
        carried = b"".join(
            seg.data
            for seg in annotated.segments(from_client=False)
            if isinstance(seg, ChunkData | DataFrame)
        )
        assert carried == body.encode()


def _published(handle: ServerHandle, target: str) -> tuple[str, int]:
    """Once the feed has published the close of the connection that asked for ``target``:
    the id of its newest event, and how many records that connection kept."""

    async def wait() -> tuple[str, int]:
        feed = handle.server.feed
        assert feed is not None
        with trio.fail_after(CLIENT_TIMEOUT):
            while True:
                done = [c for c in feed.connections() if c.target == target and c.close_told]
                if done:
                    return f"{feed.epoch}-{feed.last_seq}", len(done[0].conn.records)
                await feed.wait_beyond(feed.last_seq)

    return handle.call_async(wait)


def test_pause_holds_the_feed_and_step_shows_one_record_at_a_time(browser: Browser) -> None:
    target = "/tokens?n=3&interval_ms=0"
    section = f'section.conn[data-target="{target}"]'
    with server_in_thread(viewer=True) as handle, open_page(browser) as page:
        page.goto(f"{handle.url}/lab/")
        page.wait_for_function("window.labViewer.open && window.labViewer.hellos > 0")
        page.click("#pause")
        response = httpx.get(handle.url + target, timeout=CLIENT_TIMEOUT)
        assert response.status_code == 200
        last_id, records = _published(handle, target)
        page.wait_for_function(f"window.labViewer.lastId === {last_id!r}")
        # Everything about the stream has arrived, and none of it is shown.
        assert page.locator("section.conn").count() == 0
        held = page.evaluate("window.labViewer.queued")
        assert held >= records + 2  # its conn event, one row per record, its close
        rows = page.locator(f'{section} div.row:not([data-kind="end"])')
        page.click("#step")
        assert rows.count() == 1
        assert (
            page.locator(f'{section} div.row[data-i="0"]').get_attribute("data-kind") == "connect"
        )
        page.click("#step")
        assert rows.count() == 2
        assert page.locator(f'{section} div.row[data-i="1"]').get_attribute("data-dir") == "c2s"
        page.click("#pause")  # resume: the rest at once
        assert rows.count() == records
        assert page.evaluate("window.labViewer.queued") == 0
        shown = page.locator(f'{section} div.stream[data-sid="1"] pre.text').text_content()
        assert shown == response.text
