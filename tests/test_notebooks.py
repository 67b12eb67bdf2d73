"""Every notebook runs top to bottom in a fresh kernel, and its .ipynb twin is in sync.

The notebooks' source of truth is the jupytext percent ``.py`` file; the ``.ipynb`` beside
it is generated (``jupytext --to ipynb notebooks/NAME.py``) and committed without outputs.
Each notebook is executed from its ``.py``, converted in memory, by nbclient in a new
kernel that runs on this interpreter (see :func:`kernel_on_this_python`).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.notebook_html import RICH_HTML_PREFIX, html_text, view_text

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

pytestmark = pytest.mark.interop

NOTEBOOK_DIR: Final = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS: Final = sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))
# A whole notebook: each one is meant to run in a few seconds; starting the kernel and
# importing matplotlib take most of that on a slow machine, so allow ten times as much.
NOTEBOOK_TIMEOUT: Final = 120
# One cell: none waits on anything but loopback sockets and short token streams.
CELL_TIMEOUT: Final = 60
# The kernel name the notebooks' metadata asks for.
KERNEL_NAME: Final = "python3"

# Text each notebook's outputs must contain: proof that the interesting cells did their
# job, not only that nothing raised.
EXPECTED_OUTPUT: Final = {
    "01_request_response_vs_streaming": [
        "HTTP/1.1 200",  # a status line, printed for each reply
        "content-length: ",
        "transfer-encoding: chunked",
        "last chunk (size 0)",  # the annotated view of the streamed reply
        "TTFB ms",
    ],
    "02_chunked_coding_byte_by_byte": [
        "by hand, lab.wire.chunked and h11 agree",
        "the body's SHA-256, computed here, matches the trailer",
        "ChunkedError at byte offset 6:",  # 3\r\nxxx__ : the first '_'
        "ChunkedError at byte offset 1:",  # 5\n : the lone LF
        "lone LF in the chunk-size line",
        "mean gap",  # the timeline view of the token stream
    ],
    "03_sse_on_the_wire": [
        "fed one byte at a time, the decoder dispatches the same events: True",
        "comment ' heartbeat': ignored",  # the SSE layer nested in the annotated view
        "last-event-id: 3",  # the lab client's reconnect, in its trace
        "the lab client stopped: status 204",
        "Chromium 1",  # the browser's version: it really ran
        "in the 1000 ms after the 204, further requests: 0",
        "6 in the lab client; all the same: True",  # Chromium = decoder = lab client
        "MessageEvent  error     data {",  # a named error event, not a connection error
        "the tokens are the lab's reply for this prompt: True",  # fetch + ReadableStream
    ],
    "04_streaming_an_ai_reply": [
        "NDJSON (POST /chat)",
        "B/token",  # the table of bytes and times per framing
        "TTFT ms",
        "field 'data' = ",  # the SSE layer the annotator found in the chunk data
        "its words are the reply's tokens without their spaces: True",  # the /events note
    ],
    "05_http2_frames_and_hpack": [
        "they are RFC 9113's preface: True",
        "by hand, lab.wire.h2frames and hyperframe agree on all of them: True",
        "literal with incremental indexing, name static",  # the HPACK table per field
        "= H 1, ",  # a Huffman-coded value of the server's, read by hand
        "hpack's encoder gives the server's bytes: True",
        "request  header block: first",  # first vs second request on the connection
        "last one END_STREAM: True",
        "client connection preface (RFC 9113 §3.4)",  # the annotated view
        "indexed (dynamic ",
    ],
    "06_multiplexing_flow_control_cancellation": [
        "interleaved: True",
        "HTTP/1.1 pipelined: the second reply started after the first had ended: True",
        "HTTP/2 multiplexed: the second reply started after the first had ended: False",
        "bytes that arrived during each 25 ms wait at window 0: [0, 0]",
        "every DATA frame fit in the window it was sent into: True",
        "after the PING ACK, DATA frames on the cancelled stream: 0",
        "stream 3 completed: True",  # the stream beside the cancelled one
        "RST_STREAM stream 5: REFUSED_STREAM (0x7)",
        "on the same connection: status 200",  # the refused request, retried
    ],
    "07_mcp_streamable_http": [
        "HTTP/1.1 202 Accepted",  # notifications/initialized
        "characters, all visible ASCII (0x21-0x7E): True",  # the session id
        "(the one assigned)",  # the session id, sent back on a later request
        "priming event: an id and empty data",
        "last chunk: the response, and the stream, end",
        "the result text is the progress messages joined: True",
        "resuming request:   GET /mcp with last-event-id: ",
        "events the cut connection had come again: none",
        "= the replay, byte for byte: True",
        "message cut short",  # the sequence view of the cut connection
        "*events with an id",  # the side-by-side table: a row that differs
        "the tool's output is the same under both revisions: True",
        "then ping with the same id: 404 Not Found",
    ],
    "08_choosing_a_transport": [
        "every transport delivered the reply's tokens, in order: True",
        "transport   tokens  requests  connections",  # lab compare's table
        "wire_per_token_byte",
        "heads B/token",  # where the bytes go, per token
        "ws text ",  # the sequence view of the WebSocket over HTTP/1.1
        "KiB per idle client",
        "as test_browser_connections.py asserts: ",  # the cited cap, read from the test
        "the lab server's SETTINGS_MAX_CONCURRENT_STREAMS: ",  # from the h2c trace
        "tabs that get a stream over HTTP/1.1 with SSE or long polling: ",
        "transports that delivered every token: ",
    ],
    "09_what_a_proxy_does_to_your_stream": [
        "proxies: nginx/",  # the real proxies' versions: they ran
        "tapped at the relay): POST /chat HTTP/1.0",  # nginx's default upstream request
        "claim: nginx with proxy_pass alone holds a token stream until it has ended",
        "  -> verdict: ",
        "NOT complete: no end of the body",  # the quiet stream cut by proxy_read_timeout
        "['last-event-id: 1']",  # the EventSource resuming after the cut
        "[doubled]",  # the course-notes block's second Content-Type
        "claims checked in this run",
        "every content type streamed, one token per read: ",
    ],
}

# Text of the lab's views (lab.notebook.show) that the HTML page nbconvert makes of the run
# must show, by notebook: it is in no cell's source, so only a view that rendered has it.
EXPECTED_IN_PAGE: Final = {
    "01_request_response_vs_streaming": [
        "status line: HTTP/1.1 200",
        "chunk size 0x",
        "last chunk (size 0): the data is complete",
    ],
}


@pytest.fixture(scope="session")
def kernel_on_this_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A ``python3`` kernelspec whose kernel runs on ``sys.executable`` (the venv's).

    Whatever kernelspecs the machine or the user have installed, ``JUPYTER_PATH`` comes
    first in Jupyter's search path, so the kernel is this interpreter, with the lab
    installed, and nothing needs setting up by hand.
    """
    data_dir = tmp_path_factory.mktemp("jupyter-data")
    spec_dir = data_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python 3 ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(data_dir))
        yield


def _cell_sources(path: Path) -> list[tuple[str, str]]:
    notebook = jupytext.read(path)
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def _output_text(notebook: object) -> str:
    """Every piece of text the executed notebook shows: streams and text/plain results."""
    parts = []
    for cell in notebook.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def _rich_outputs(notebook: object) -> Iterator[dict[str, str]]:
    """The MIME bundle of every output that shows HTML."""
    for cell in notebook.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            if output.output_type in ("execute_result", "display_data") and (
                "text/html" in output.data
            ):
                yield output.data


def _check_html_outputs(path: Path, notebook: object) -> list[str]:
    """Every HTML output shows something, and each of the lab's views (lab.notebook.show)
    shows in HTML the text its text/plain holds; the views' text/plain, returned."""
    views = []
    for data in _rich_outputs(notebook):
        html = data["text/html"]
        assert html_text(html).strip(), f"{path.name}: an HTML output shows nothing: {html!r}"
        if html.startswith(RICH_HTML_PREFIX):
            assert view_text(html) == data["text/plain"], (
                f"{path.name}: a view's HTML and text differ"
            )
            views.append(data["text/plain"])
    # show(...), not plt.show()
    if re.search(r"(?<![.\w])show\(", path.read_text(encoding="utf-8")):
        assert views, f"{path.name}: show() was called but no view was displayed"
    return views


def _check_html_page(path: Path, notebook: object, views: list[str]) -> None:
    """nbconvert's HTML page of the run holds each view's text (as a browser shows it)."""
    page, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    shown = html_text(page)
    for view in views:
        # A view's longest line: bytes and their meaning, not a line any code cell has.
        line = max((line.strip() for line in view.splitlines()), key=len)
        assert line in shown, f"{path.name}: the HTML page lacks the view line {line!r}"
    for expected in EXPECTED_IN_PAGE.get(path.stem, []):
        assert expected in shown, f"{path.name}: no {expected!r} in the HTML page"


def _browser_cell() -> str:
    """The source of notebook 03's cell that starts Chromium."""
    notebook = jupytext.read(NOTEBOOK_DIR / "03_sse_on_the_wire.py")
    (source,) = [c.source for c in notebook.cells if "chromium = Chromium()" in c.source]
    return source


def test_the_browser_cell_names_the_chromium_package() -> None:
    # As if there were no chromium on this machine: shutil.which finds nothing.
    cell_globals = {"shutil": types.SimpleNamespace(which=lambda *args, **kwargs: None)}
    with pytest.raises(RuntimeError, match=r"apt-get install chromium"):
        exec(_browser_cell(), cell_globals)


def test_the_browser_cell_names_the_playwright_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chromium is there, playwright is not (None in sys.modules fails its import).
    monkeypatch.setitem(sys.modules, "playwright", None)
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    cell_globals = {"shutil": types.SimpleNamespace(which=lambda *args, **kwargs: "/chromium")}
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[test\]'"):
        exec(_browser_cell(), cell_globals)


def test_every_notebook_is_checked() -> None:
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"
    assert {p.stem for p in NOTEBOOKS} == set(EXPECTED_OUTPUT)
    assert set(EXPECTED_IN_PAGE) <= set(EXPECTED_OUTPUT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync(path: Path) -> None:
    twin = path.with_suffix(".ipynb")
    assert twin.exists(), f"run: jupytext --to ipynb {path.relative_to(NOTEBOOK_DIR.parent)}"
    assert _cell_sources(twin) == _cell_sources(path), (
        f"{twin.name} differs from {path.name}: regenerate it with jupytext --to ipynb"
    )
    for cell in jupytext.read(twin).cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{twin.name} is committed with outputs"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, kernel_on_this_python: None) -> None:
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's cwd
    )
    # A loop of its own, closed at the end: nbclient installs SIGINT/SIGTERM handlers on
    # the loop it runs on and leaves them there if the kernel fails to start, and a
    # leftover handler makes every later trio.run in this process warn (an error here).
    # Closing the loop removes them. Raises CellExecutionError if a cell fails.
    asyncio.run(client.async_execute())
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
    text = _output_text(notebook)
    for expected in EXPECTED_OUTPUT[path.stem]:
        assert expected in text, f"{path.name}: no {expected!r} in the outputs"
    views = _check_html_outputs(path, notebook)
    _check_html_page(path, notebook, views)
