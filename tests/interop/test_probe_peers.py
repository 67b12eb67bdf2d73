"""``lab probe`` and ``lab tap`` with a server the lab did not write: uvicorn serving a small
Starlette app (written here) in its own process on 127.0.0.1 (both come with the ``peers``
extra, which the ``test`` extra includes).

- the probe prints a streamed response's first chunk while the server still holds the
  stream open (the app waits for a file the test creates only once it has seen that line);
- the probe's EventSource reconnects with Last-Event-ID and stops at the app's 204;
- through the tap, curl, httpx and a raw socket get what they would have got directly,
  and the tap's trace holds exactly the bytes each side sent.
"""

from __future__ import annotations

import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.capture.trace import ConnectionTrace, Trace
from lab.wire.chunked import ChunkData
from tests.livecli import ENV, LINE_WAIT, STOP_WAIT, LabProcess
from tests.tools import require_tool

pytestmark = pytest.mark.interop

# Bound on uvicorn starting, and on one client run.
START_WAIT: Final = 30.0
CLIENT_TIMEOUT: Final = 30.0
# How long the app holds /held open waiting for the gate file: longer than the test's
# wait for the first chunk's line, so that a probe that printed nothing live fails there.
HOLD_SECONDS: Final = LINE_WAIT + 10

APP: Final = '''
"""A streaming app for lab's interop tests: uvicorn + Starlette, on 127.0.0.1, any port."""
import asyncio
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

GATE = Path(sys.argv[1])
HOLD = float(sys.argv[2])
POLL = 0.02  # seconds between looks at the gate file


async def held(request):
    async def body():
        yield b"first\\n"
        for _ in range(int(HOLD / POLL)):
            if GATE.exists():
                break
            await asyncio.sleep(POLL)
        yield b"second\\n" if GATE.exists() else b"late!!\\n"
    return StreamingResponse(body(), media_type="text/plain")


async def events(request):
    if request.headers.get("last-event-id") == "2":
        return Response(status_code=204)  # the EventSource's "stop"
    async def body():
        yield b"retry: 50\\n\\n"
        yield b"id: 1\\ndata: one\\n\\n"
        yield b"id: 2\\ndata: two\\n\\n"
    return StreamingResponse(body(), media_type="text/event-stream")


async def plain(request):
    return PlainTextResponse("plain text from starlette\\n")


app = Starlette(routes=[Route("/held", held), Route("/events", events), Route("/plain", plain)])
sock = socket.create_server(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
'''


@pytest.fixture
def starlette(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """uvicorn serving the app above in its own process; its port and the gate file."""
    app, gate = tmp_path / "app.py", tmp_path / "gate"
    app.write_text(APP)
    with subprocess.Popen(
        [sys.executable, str(app), str(gate), str(HOLD_SECONDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            first: queue.Queue[str] = queue.Queue()
            assert proc.stdout is not None
            stdout = proc.stdout
            threading.Thread(target=lambda: first.put(stdout.readline()), daemon=True).start()
            try:
                line = first.get(timeout=START_WAIT)
            except queue.Empty:
                pytest.fail(f"uvicorn did not start within {START_WAIT} s")
            assert line.strip().isdigit(), (line, proc.stderr.read() if proc.stderr else "")
            yield int(line), gate
        finally:
            proc.terminate()  # this process, by its pid
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_WAIT)


def test_probe_shows_the_first_chunk_while_the_stream_is_held(
    starlette: tuple[int, Path], tmp_path: Path
) -> None:
    port, gate = starlette
    with LabProcess("probe", f"http://127.0.0.1:{port}/held", "--out", str(tmp_path)) as run:
        run.wait_for(r"first\\n  6 bytes of chunk data")
        assert run.proc.poll() is None  # the stream is still open
        gate.touch()  # now the app may finish the stream
        finished = run.finish()
    assert finished.returncode == 0, finished.stderr
    assert "second\\n  7 bytes of chunk data" in finished.stdout
    assert "header field server: uvicorn" in finished.stdout
    (trace_path,) = tmp_path.glob("probe-*.trace")
    (conn,) = load(trace_path).connections
    assert _chunked_body(conn) == b"first\nsecond\n"


def test_probe_sse_reconnects_to_starlette(starlette: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = starlette
    out = subprocess.run(
        [sys.executable, "-m", "lab", "probe", "--sse", f"http://127.0.0.1:{port}/events",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "* reconnecting after 50 ms, Last-Event-ID: 2" in out.stdout
    assert "EventSource: 2 events over 2 connections; stopped: status 204" in out.stdout
    (trace_path,) = tmp_path.glob("probe-*.trace")
    second = load(trace_path).connections[1]
    assert b"\r\nlast-event-id: 2\r\n" in second.client_to_server()
    assert second.server_to_client().startswith(b"HTTP/1.1 204 ")


def _chunked_body(conn: ConnectionTrace) -> bytes:
    (ac,) = annotate(Trace("x", connections=[conn]))
    return b"".join(s.data for s in ac.segments(from_client=False) if isinstance(s, ChunkData))


def _traces(directory: Path) -> list[ConnectionTrace]:
    return [load(p).connections[0] for p in sorted(directory.glob("*.trace"))]


def test_clients_through_the_tap_to_uvicorn(starlette: tuple[int, Path], tmp_path: Path) -> None:
    curl = require_tool("curl", "curl")
    port, gate = starlette
    gate.touch()  # /held streams straight through
    # Pipelined (RFC 9112 §9.3.2): the answer to HEAD has a Content-Length and no body
    # (RFC 9110 §9.3.2), so the tap's log must know the method to find the next response.
    request = (
        b"HEAD /plain HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        b"GET /plain HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    with LabProcess("tap", "--listen", "0", "--to", f"127.0.0.1:{port}",
                    "--out", str(tmp_path)) as tap:  # fmt: skip
        tap_port = int(tap.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        url = f"http://127.0.0.1:{tap_port}"
        # 1. curl, the response as it came (-i --raw keeps the head and the chunked coding)
        by_curl = subprocess.run(
            [curl, "-sS", "-i", "--raw", f"{url}/held"],
            capture_output=True, check=True, timeout=CLIENT_TIMEOUT, env=ENV,
        ).stdout  # fmt: skip
        curl_line = tap.wait_for(r"c1 http/1\.1 GET /held → 200 (\d+) B [\d.]+ ms$")
        tap.wait_for(r"c1 closed")
        # 2. httpx
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            by_httpx = client.get(f"{url}/held")
        tap.wait_for(r"c2 http/1\.1 GET /held → 200 \d+ B [\d.]+ ms$")
        tap.wait_for(r"c2 closed")
        # 3. a raw socket: exactly these bytes out, everything until the close back
        with socket.create_connection(("127.0.0.1", tap_port), timeout=LINE_WAIT) as sock:
            sock.sendall(request)
            by_socket = b""
            while data := sock.recv(65536):
                by_socket += data
        head = tap.wait_for(r"c3 http/1\.1 HEAD /plain → 200 (\d+) B [\d.]+ ms$")
        get = tap.wait_for(r"c3 http/1\.1 GET /plain → 200 (\d+) B [\d.]+ ms$")
        tap.wait_for(r"c3 closed")
        stopped = tap.stop()
    assert stopped.returncode == 0, stopped.stderr
    curl_conn, httpx_conn, socket_conn = _traces(tmp_path)
    assert curl_conn.server_to_client() == by_curl
    assert int(curl_line.group(1)) == len(by_curl)
    assert re.search(rb"\r\nserver: uvicorn\r\n", by_curl)
    assert by_httpx.content == b"first\nsecond\n" == _chunked_body(httpx_conn)
    assert b"\r\nUser-Agent: python-httpx/" in httpx_conn.client_to_server()
    assert socket_conn.client_to_server() == request
    assert socket_conn.server_to_client() == by_socket
    assert by_socket.endswith(b"plain text from starlette\n")
    head_size, get_size = int(head.group(1)), int(get.group(1))
    assert head_size + get_size == len(by_socket)  # the log's sizes tile the answers
    assert by_socket[:head_size].endswith(b"\r\n\r\n")  # HEAD: a head and nothing more
    assert by_socket[head_size:].startswith(b"HTTP/1.1 200 ")


def test_probe_http2_to_an_http1_only_server_is_one_line(
    starlette: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = starlette
    out = subprocess.run(
        [sys.executable, "-m", "lab", "probe", "--http2", f"http://127.0.0.1:{port}/plain",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "lab probe: the server closed during the HTTP/2 handshake (an HTTP/1.1-only server "
        "does that to --http2's prior knowledge)"
    ]
    (trace_path,) = tmp_path.glob("probe-*.trace")  # what was said is saved all the same
    (conn,) = load(trace_path).connections
    assert conn.client_to_server().startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert conn.server_to_client().startswith(b"HTTP/1.1 ")


def test_tls_tap_without_h2_in_front_of_uvicorn(
    starlette: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = starlette
    ca = tmp_path / "ca.pem"
    with LabProcess("tap", "--listen", "0", "--to", f"127.0.0.1:{port}", "--tls", "--no-h2",
                    "--ca-out", str(ca), "--out", str(tmp_path)) as tap:  # fmt: skip
        url = tap.wait_for(r"listening on (https://127\.0\.0\.1:\d+) \(TLS, ALPN http/1\.1\)")
        context = ssl.create_default_context(cafile=str(ca))
        # The client offers h2 as well; the tap's ALPN picks http/1.1, which uvicorn speaks.
        with httpx.Client(verify=context, http2=True, timeout=CLIENT_TIMEOUT) as client:
            response = client.get(f"{url.group(1)}/plain")
        tap.wait_for(r"c1 http/1\.1 GET /plain → 200 \d+ B [\d.]+ ms$")
        tap.wait_for(r"c1 closed")
        # lab probe over TLS, where ALPN chooses http/1.1
        probed = subprocess.run(
            [sys.executable, "-m", "lab", "probe", "--cacert", str(ca), f"{url.group(1)}/plain",
             "--out", str(tmp_path / "probe")],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, env=ENV,
        )  # fmt: skip
        tap.wait_for(r"c2 http/1\.1 GET /plain → 200 \d+ B [\d.]+ ms$")
        assert tap.stop().returncode == 0
    assert probed.returncode == 0, probed.stderr
    assert "* TLS: TLSv1.3, ALPN protocol chosen by the server: http/1.1" in probed.stdout
    assert "* response: http/1.1 200 OK, 26 B of body, complete" in probed.stdout
    assert (response.http_version, response.text) == ("HTTP/1.1", "plain text from starlette\n")
    trace = load(sorted(tmp_path.glob("*.trace"))[0])  # the tap's first connection: httpx
    (conn,) = trace.connections
    assert (conn.protocol, conn.tls) == ("http/1.1", True)
    assert "ALPN http/1.1" in trace.description
    assert conn.server_to_client().endswith(b"plain text from starlette\n")
