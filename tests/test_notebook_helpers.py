"""lab.notebook: a background lab server that re-running a cell does not duplicate."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
import trio
from rich.console import JUPYTER_DEFAULT_COLUMNS

from lab.capture.views import VIEWS
from lab.client import Exchange, fetch
from lab.notebook import _bundle, run, show, start_server, stop_all, stop_server
from tests.notebook_html import RICH_HTML_PREFIX, html_text, view_text


@pytest.fixture(autouse=True)
def _no_server_left() -> Iterator[None]:
    yield
    stop_all()


def test_start_twice_gives_the_running_server() -> None:
    first = start_server("twice")
    second = start_server("twice")
    assert second is first
    assert first.running
    assert first.host == "127.0.0.1"
    assert first.port > 0
    assert first.url == f"http://127.0.0.1:{first.port}"


def test_names_are_separate_servers() -> None:
    a = start_server("a")
    b = start_server("b")
    assert a is not b
    assert a.port != b.port


def test_same_name_other_arguments_is_refused() -> None:
    start_server("args")
    with pytest.raises(ValueError, match="already running"):
        start_server("args", trace_dir=None, port=0, host="localhost")


def test_a_request_through_the_lab_client() -> None:
    srv = start_server("client")
    exchange = run(fetch, srv.host, srv.port, "GET", "/tokens?n=3&interval_ms=0", name="t")
    assert exchange.response.status == 200
    assert exchange.response.complete
    assert exchange.response.body.endswith(b"[DONE]\n")
    assert exchange.trace.name == "t"


def test_stop_closes_the_port() -> None:
    srv = start_server("stop")
    with socket.create_connection((srv.host, srv.port), timeout=5):
        pass  # listening
    assert stop_server("stop") is True
    assert not srv.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((srv.host, srv.port), timeout=5)
    assert stop_server("stop") is False  # already gone


def test_stop_with_an_idle_keep_alive_connection() -> None:
    # A client that keeps its connection open must not hold the server up: shutdown
    # closes idle connections at once instead of waiting out the grace.
    srv = start_server("idle")
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(f"GET /fixed?size=3 HTTP/1.1\r\nHost: {srv.host}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        stop_server("idle")
        assert not srv.running


def test_start_again_after_stop() -> None:
    first = start_server("again")
    stop_server("again")
    second = start_server("again")
    assert second is not first
    assert second.running


def test_a_server_that_cannot_start_raises() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="failed to start") as info:
            start_server("clash", port=port)
    assert isinstance(info.value.__cause__, OSError)
    assert stop_server("clash") is False


def test_run_returns_the_result() -> None:
    async def add(a: int, b: int) -> int:
        await trio.lowlevel.checkpoint()
        return a + b

    assert run(add, 2, 3) == 5


def test_run_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.notebook.RUN_TIMEOUT", 0.01)
    with pytest.raises(trio.TooSlowError):
        run(trio.sleep_forever)


def test_show_prints_outside_jupyter(capsys: pytest.CaptureFixture[str]) -> None:
    srv = start_server("show")
    exchange = run(fetch, srv.host, srv.port, "GET", "/fixed?size=5", name="five")
    show(exchange.trace, width=120)
    out = capsys.readouterr().out
    assert "trace five" in out
    assert "status line: HTTP/1.1 200" in out
    show(exchange.trace, "timeline", width=120)
    assert "1 piece, 5 bytes" in capsys.readouterr().out


def _chunked_exchange(name: str) -> Exchange:
    srv = start_server(name)
    return run(fetch, srv.host, srv.port, "GET", "/tokens?n=3&interval_ms=0", name=name)


@pytest.mark.parametrize("view", VIEWS)
def test_show_bundle_html_shows_the_view(view: str) -> None:
    # What a notebook front end renders is the text/html: it must show the same view as
    # the text/plain beside it (rich's first export clears its record unless told not to).
    exchange = _chunked_exchange("bundle")
    bundle = _bundle(exchange.trace, view, 120)
    assert set(bundle) == {"text/plain", "text/html"}
    plain, html = bundle["text/plain"], bundle["text/html"]
    assert plain.strip(), f"{view}: empty text/plain"
    assert html.startswith(RICH_HTML_PREFIX)
    assert html_text(html).strip(), f"{view}: the text/html shows nothing"
    assert view_text(html) == plain


def test_show_bundle_holds_the_bytes() -> None:
    exchange = _chunked_exchange("bytes")
    shown = html_text(_bundle(exchange.trace, "annotated", 120)["text/html"])
    assert "GET /tokens?n=3&interval_ms=0 HTTP/1.1" in shown  # the request line
    assert "status line: HTTP/1.1 200" in shown
    # Each chunk's size line as sent (hex digits, CRLF: RFC 9112 §7.1) and what it means;
    # the sizes add up to the body the client decoded.
    sizes = re.findall(r"^.*  ([0-9a-f]+)\\r\\n +chunk size 0x\1 = (\d+) bytes", shown, re.M)
    assert len(sizes) > 1, shown
    assert sum(int(n) for _, n in sizes) == len(exchange.response.body)
    assert all(int(h, 16) == int(n) for h, n in sizes)
    assert "0\\r\\n" in shown
    assert "last chunk (size 0)" in shown


def test_show_in_jupyter_displays_the_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # show() as a kernel runs it: rich finds Jupyter, and IPython's display gets one raw
    # bundle.
    display = pytest.importorskip("IPython.display")
    shown: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr("rich.console._is_jupyter", lambda: True)
    monkeypatch.setattr(display, "display", lambda obj, **kw: shown.append((obj, kw)))
    exchange = _chunked_exchange("jupyter")
    show(exchange.trace, "sequence")
    assert len(shown) == 1
    bundle, kwargs = shown[0]
    assert kwargs == {"raw": True}
    assert bundle == _bundle(exchange.trace, "sequence", JUPYTER_DEFAULT_COLUMNS)


def test_show_passes_the_clock_to_the_view() -> None:
    # A trace of two connections, shown on each clock: the view says which it is on.
    srv = start_server("clock")
    first = run(fetch, srv.host, srv.port, "GET", "/tokens?n=2&interval_ms=0", name="a")
    second = run(fetch, srv.host, srv.port, "GET", "/tokens?n=2&interval_ms=0", name="b")
    both = first.trace
    both.connections.extend(second.trace.connections)
    on_trace = _bundle(both, "sequence", 160)["text/plain"]
    on_own = _bundle(both, "sequence", 160, "connection")["text/plain"]
    assert "times are ms since this connection's start" in on_own
    assert on_trace != on_own
