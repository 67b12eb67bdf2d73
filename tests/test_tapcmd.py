"""``lab tap`` as a user runs it (a subprocess between a client and the lab's server): curl
and httpx through it over HTTP/1.1, h2c and TLS (ALPN h2 and http/1.1), each connection's
trace compared byte for byte with what the client received and with the server's own
trace of the same connection; the request log lines; a clean stop that writes the traces
of connections still open; a target that is down; its command-line errors."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx
import pytest

from lab.apps.tokens import tokens_for
from lab.capture.fileformat import load
from lab.capture.trace import ConnectionTrace
from lab.notebook import ServerHandle
from tests.livecli import ENV, LINE_WAIT, LabProcess
from tests.serverthread import server_in_thread
from tests.tools import require_tool

# Bound on one client run through the tap, and on a server writing its trace file after
# the connection closed.
CLIENT_TIMEOUT: Final = 30.0
FILE_WAIT: Final = 10.0


@contextmanager
def running_tap(server: ServerHandle, out: Path, *extra: str) -> Iterator[tuple[LabProcess, str]]:
    """``lab tap`` in front of ``server``; the tap and its URL."""
    with LabProcess(
        "tap", "--listen", "0", "--to", f"127.0.0.1:{server.port}", "--out", str(out), *extra
    ) as tap:  # fmt: skip
        url = tap.wait_for(r"listening on (https?://127\.0\.0\.1:\d+)").group(1)
        yield tap, url


def only_trace(directory: Path, within: float = FILE_WAIT) -> ConnectionTrace:
    """The one connection of the one trace in ``directory`` (waiting for it to appear)."""
    deadline = time.monotonic() + within
    while not (found := [p for p in directory.glob("*.trace") if p.stat().st_size]):
        assert time.monotonic() < deadline, f"no trace in {directory} within {within} s"
        time.sleep(0.05)
    (path,) = found
    assert path.with_suffix(".pcapng").exists()
    (conn,) = load(path).connections
    return conn


def same_bytes(tapped: ConnectionTrace, server_side: ConnectionTrace) -> None:
    """The tap recorded exactly what the server's own tap did, both ways."""
    assert tapped.client_to_server() == server_side.client_to_server()
    assert tapped.server_to_client() == server_side.server_to_client()
    assert tapped.server_to_client()  # not two empty recordings


@pytest.mark.interop
def test_curl_through_the_tap(tmp_path: Path) -> None:
    curl = require_tool("curl", "curl")
    with server_in_thread(trace_dir=tmp_path / "server") as server:
        with running_tap(server, tmp_path / "taps") as (tap, url):
            target = "/tokens?n=3&interval_ms=0&prompt=tap"
            # -i --raw: curl writes the response as it came, head and chunked framing.
            got = subprocess.run(
                [curl, "-sS", "-i", "--raw", f"{url}{target}"],
                capture_output=True, check=True, timeout=CLIENT_TIMEOUT, env=ENV,
            ).stdout  # fmt: skip
            logged = tap.wait_for(rf"c1 http/1\.1 GET {re.escape(target)} → 200 (\d+) B [\d.]+ ms$")
            tap.wait_for(r"c1 closed: 1 request, \d+ B in, \d+ B out → .*\.trace, .*\.pcapng")
            stopped = tap.stop()
        server_side = only_trace(tmp_path / "server")
    assert stopped.returncode == 0, stopped.stderr
    assert "lab tap: stopped after 1 connection; 1 trace written" in stopped.stdout
    conn = only_trace(tmp_path / "taps")
    assert (conn.side, conn.protocol, conn.tls) == ("server", "http/1.1", False)
    assert conn.server_to_client() == got  # what curl received, byte for byte
    assert conn.client_to_server().startswith(f"GET {target} HTTP/1.1\r\n".encode())
    assert int(logged.group(1)) == len(got)  # the log's bytes: the whole response
    same_bytes(conn, server_side)


def test_httpx_h2c_through_the_tap(tmp_path: Path) -> None:
    with server_in_thread(trace_dir=tmp_path / "server") as server:
        with running_tap(server, tmp_path / "taps") as (tap, url):
            target = "/tokens?n=4&interval_ms=0&prompt=h2c"
            # http1=False: HTTP/2 with prior knowledge on http:// (RFC 9113 §3.3).
            with httpx.Client(http1=False, http2=True, timeout=CLIENT_TIMEOUT) as client:
                response = client.get(f"{url}{target}")
            tap.wait_for(rf"c1 h2c s1 GET {re.escape(target)} → 200 \d+ B [\d.]+ ms$")
            tap.wait_for(r"c1 closed: 1 request")
            assert tap.stop().returncode == 0
        server_side = only_trace(tmp_path / "server")
    assert response.http_version == "HTTP/2"
    assert response.text == "".join(tokens_for("h2c", 4)) + "\n[DONE]\n"
    conn = only_trace(tmp_path / "taps")
    assert conn.protocol == "h2c"  # told by the client's first bytes
    same_bytes(conn, server_side)


def test_tls_is_terminated_with_alpn_h2_and_http1(tmp_path: Path) -> None:
    ca = tmp_path / "tap-ca.pem"
    tls_tap = ("--tls", "--ca-out", str(ca))
    with (
        server_in_thread(trace_dir=tmp_path / "server") as server,
        running_tap(server, tmp_path / "taps", *tls_tap) as (tap, url),
    ):
        tap.wait_for(rf"the CA certificate of this run is in {re.escape(str(ca))}")
        assert url.startswith("https://")
        context = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=context, http2=True, timeout=CLIENT_TIMEOUT) as client:
            h2 = client.get(f"{url}/fixed?size=6")
        tap.wait_for(r"c1 h2 s1 GET /fixed\?size=6 → 200 \d+ B [\d.]+ ms$")
        tap.wait_for(r"c1 closed: 1 request")
        with httpx.Client(verify=context, http2=False, timeout=CLIENT_TIMEOUT) as client:
            h1 = client.get(f"{url}/fixed?size=4")
        tap.wait_for(r"c2 http/1\.1 GET /fixed\?size=4 → 200 \d+ B [\d.]+ ms$")
        tap.wait_for(r"c2 closed: 1 request")
        # Plain HTTP to the TLS port: no handshake, nothing recorded, one line logged.
        host, port = url.removeprefix("https://").split(":")
        with socket.create_connection((host, int(port)), timeout=LINE_WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: tap\r\n\r\n")
            while sock.recv(4096):  # perhaps a TLS alert, then the close
                pass
        tap.wait_for(r"c3 from 127\.0\.0\.1:\d+: TLS handshake failed: \S")
        assert tap.stop().returncode == 0
    assert (h2.http_version, h2.text) == ("HTTP/2", "stream")
    assert (h1.http_version, h1.text) == ("HTTP/1.1", "stre")
    traces = sorted((tmp_path / "taps").glob("*.trace"))
    assert len(traces) == 2
    server_traces = sorted((tmp_path / "server").glob("*.trace"))
    # Each server-side trace by how its client began: "PRI" (the h2 preface) or "GET".
    by_start = {load(p).connections[0].client_to_server()[:3]: load(p) for p in server_traces}
    for path, protocol in zip(traces, ("h2", "http/1.1"), strict=True):
        trace = load(path)
        (conn,) = trace.connections
        assert (conn.protocol, conn.tls) == (protocol, True)
        assert f"ALPN {protocol}" in trace.description
        # The decrypted bytes the tap recorded are the plaintext the server got (h2c for
        # an h2 client), and the other way round.
        (server_side,) = by_start[conn.client_to_server()[:3]].connections
        same_bytes(conn, server_side)


def test_stopping_the_tap_writes_the_connections_still_open(tmp_path: Path) -> None:
    with server_in_thread() as server, running_tap(server, tmp_path / "taps") as (tap, url):
        port = int(url.rsplit(":", 1)[1])
        request = b"GET /tokens?n=3&interval_ms=5000 HTTP/1.1\r\nhost: tap\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=LINE_WAIT) as sock:
            sock.sendall(request)
            received = b""
            while b"\r\n\r\n" not in received:  # the head: the stream is under way
                received += sock.recv(4096)
            stopped = tap.stop(signal.SIGTERM)
    assert stopped.returncode == 0, stopped.stderr
    assert re.search(r"c1 http/1\.1 GET /tokens\?n=3&interval_ms=5000 → 200 \d+ B "
                     r"[\d.]+ ms \(cut short\)", stopped.stdout), stopped.stdout  # fmt: skip
    assert "lab tap: stopped after 1 connection; 1 trace written" in stopped.stdout
    conn = only_trace(tmp_path / "taps")
    assert conn.client_to_server() == request
    assert conn.server_to_client().startswith(received[:17])  # HTTP/1.1 200 OK\r\n


def test_a_target_that_is_down_is_logged_and_recorded(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    with LabProcess("tap", "--listen", "0", "--to", f"127.0.0.1:{closed_port}",
                    "--out", str(tmp_path)) as tap:  # fmt: skip
        port = int(tap.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=LINE_WAIT) as sock:
            assert sock.recv(1) == b""  # closed by the tap
        tap.wait_for(r"c1 closed: 0 requests, 0 B in, 0 B out; cannot connect to the target")
        assert tap.stop().returncode == 0
    conn = only_trace(tmp_path)
    assert [r.kind for r in conn.records] == ["connect", "close"]


def test_command_line_errors(tmp_path: Path) -> None:
    def tap(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab", "tap", *args], capture_output=True, text=True,
            timeout=CLIENT_TIMEOUT, check=False, env=ENV,
        )  # fmt: skip

    bad = tap("--listen", "0", "--to", "no-port-here", "--out", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "lab tap: argument --to: expected HOST:PORT, got 'no-port-here' (see lab tap --help)"
    ]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = tap("--listen", str(port), "--to", "127.0.0.1:1", "--out", str(tmp_path))
    assert busy.returncode == 1, busy.stderr
    assert busy.stderr.splitlines() == [
        f"lab tap: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_the_log_follows_pipelined_requests_and_an_upgrade(tmp_path: Path) -> None:
    # Two requests in one send (HTTP/1.1 pipelining, RFC 9112 §9.3.2), answered in order,
    # each framed by its Content-Length; then a WebSocket upgrade: 101, after which the
    # connection is not HTTP/1.1 any more. (HEAD, whose answer has a Content-Length and no
    # body, is in tests/interop/test_probe_peers.py: the lab's server does not serve it.)
    pipelined = (
        b"GET /fixed?size=3 HTTP/1.1\r\nhost: tap\r\n\r\n"
        b"GET /fixed?size=5 HTTP/1.1\r\nhost: tap\r\n\r\n"
    )
    upgrade = (
        b"GET /ws/tokens?n=1&interval_ms=0 HTTP/1.1\r\nhost: tap\r\nupgrade: websocket\r\n"
        b"connection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"sec-websocket-version: 13\r\n\r\n"
    )
    with server_in_thread() as server, running_tap(server, tmp_path / "taps") as (tap, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=LINE_WAIT) as sock:
            sock.sendall(pipelined)
            first = tap.wait_for(r"c1 http/1\.1 GET /fixed\?size=3 → 200 (\d+) B [\d.]+ ms$")
            second = tap.wait_for(r"c1 http/1\.1 GET /fixed\?size=5 → 200 (\d+) B [\d.]+ ms$")
            sock.sendall(upgrade)
            ws = tap.wait_for(
                r"c1 http/1\.1 GET /ws/tokens\?n=1&interval_ms=0 → 101 (\d+) B [\d.]+ ms "
                r"\(upgraded\)$"
            )
        tap.wait_for(r"c1 closed: 3 requests")
        assert tap.stop().returncode == 0
    answers = only_trace(tmp_path / "taps").server_to_client()
    # The log's sizes tile the responses: two heads with their bodies, the 101's head.
    sizes = [int(m.group(1)) for m in (first, second, ws)]
    assert answers[: sizes[0]].startswith(b"HTTP/1.1 200 ")
    assert answers[: sizes[0]].endswith(b"\r\n\r\nstr")
    rest = answers[sizes[0] :]
    assert rest[: sizes[1]].startswith(b"HTTP/1.1 200 ")
    assert rest[: sizes[1]].endswith(b"\r\n\r\nstrea")
    rest = rest[sizes[1] :]
    assert rest.startswith(b"HTTP/1.1 101 ")
    assert rest[: sizes[2]].endswith(b"\r\n\r\n")
    assert b"\r\n\r\n" not in rest[: sizes[2] - 4]  # one head, no more
