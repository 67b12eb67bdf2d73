"""Headless Chromium for interop tests, driven through playwright's sync API.

The browser is the system's Chromium (Debian package ``chromium``, /usr/bin/chromium),
never one that playwright downloads: ``playwright install`` needs the network, and the
point of these tests is a browser no one here built. Playwright talks to it over the
DevTools protocol, so the playwright release should be the one made for this Chromium's
major version (playwright 1.64 for Chromium 156).

Use the sync API from the test's own thread, with the lab server in a thread of its own::

    with launch_chromium() as browser, open_page(browser) as page:
        page.goto(f"{server.url}/pages/eventsource.html?src=...")
        page.wait_for_function("window.lab.closed", timeout=WAIT_MS)

Everything is closed on the way out (page, context, browser, the playwright driver), so
nothing is left for a ResourceWarning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import pytest

from tests.tools import require_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["CHROMIUM_ARGS", "LAUNCH_TIMEOUT_MS", "WAIT_MS", "launch_chromium", "open_page"]

# Flags on top of playwright's own (it adds --headless, and a fresh, empty
# --user-data-dir in the temp directory that it deletes at close; it refuses one in
# args). Together they make Chromium start as root in a container and open no connection
# but the page's own: anything else it tries is refused by a closed network, noisily.
CHROMIUM_ARGS: Final = (
    "--no-sandbox",  # the sandbox cannot start as root
    "--disable-gpu",  # no GPU in a container
    "--disable-quic",  # HTTP over TCP only: the lab speaks HTTP/1.1 and h2c
    "--no-first-run",
    "--disable-background-networking",  # no calls to Google's services at start
    "--disable-component-update",
    "--disable-sync",
)
# Starting Chromium takes about a second here; a loaded CI machine may take many more.
LAUNCH_TIMEOUT_MS: Final = 60_000
# Any one wait on the page (navigation, a condition in window.lab): the lab's streams
# take well under a second; the rest is slack for a slow machine.
WAIT_MS: Final = 15_000


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """The system's Chromium, headless, through playwright; closed on exit.

    Fails the test (never skips it) when Chromium or playwright is missing.
    """
    executable = require_tool("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright not found: install the project with its dev extras")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Browser) -> Iterator[Page]:
    """A page in a new browser context (its own cookies, cache and connections)."""
    context = browser.new_context()
    try:
        context.set_default_timeout(WAIT_MS)
        yield context.new_page()
    finally:
        context.close()
