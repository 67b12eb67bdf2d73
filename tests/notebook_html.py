"""The text a reader sees in an HTML output: what a browser shows of it, as a string.

Used to check that a notebook's ``text/html`` output shows the same view as its
``text/plain`` twin, and that a page nbconvert made holds the views' bytes.
"""

from __future__ import annotations

from html.parser import HTMLParser

from rich.jupyter import JUPYTER_HTML_FORMAT

__all__ = ["RICH_HTML_PREFIX", "RICH_HTML_SUFFIX", "html_text", "view_text"]

# Every view lab.notebook.show displays is rich's Jupyter HTML format: this, the view's
# code, and the suffix.
RICH_HTML_PREFIX, _, RICH_HTML_SUFFIX = JUPYTER_HTML_FORMAT.partition("{code}")


class _Text(HTMLParser):
    # Character data only; with convert_charrefs (the default) entities such as &lt;
    # and &#x27; are already decoded in it.
    _SKIP = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """``html`` with its tags removed and its entities decoded (script and style dropped)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def view_text(html: str) -> str:
    """The text a view's ``text/html`` shows: what is inside its ``<pre>``, as text."""
    assert html.startswith(RICH_HTML_PREFIX), html[:200]
    assert html.endswith(RICH_HTML_SUFFIX), html[-200:]
    return html_text(html[len(RICH_HTML_PREFIX) : len(html) - len(RICH_HTML_SUFFIX)])
