"""Real captures: dumpcap records loopback traffic between real clients (curl, nghttp,
the websockets library) and a lab server, and `lab show` reads the file.

The capture is checked against the lab server's own record of the same connections (its
``trace_dir``, taken at the server's socket): connection by connection, matched by the
client's port, the bytes each way are the same. So reassembly from packets (RFC 9293
sequence numbers, whatever segments the kernel made) gives what the socket saw. And
`lab show FILE` as a subprocess shows the units a person looks for: chunk sizes, SSE
lines, HTTP/2 frames, WebSocket after its 101, TLS with the ClientHello's names.

dumpcap needs to capture on ``lo`` (root, or CAP_NET_RAW and CAP_NET_ADMIN on the
binary). When it cannot, the test fails and says why; it never skips.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect

from lab.apps.tokens import tokens_for
from lab.capture.fileformat import load
from lab.capture.pcapread import read_capture
from lab.capture.pcapread_file import read_frames
from lab.capture.pcapread_records import StreamBreak
from lab.capture.trace import CONNECT, ConnectionTrace
from lab.server.tls import make_tls
from tests.serverthread import server_in_thread
from tests.tools import require_tool

pytestmark = pytest.mark.interop

# Bound on every client run, and on one `lab show`.
TOOL_TIMEOUT: Final = 60
# Bound on dumpcap starting to capture, and on a packet reaching its output: it prints
# "Capturing on" before the capture is live (the first packets after it can be missed),
# and libpcap hands packets over in blocks, at the latest after a block timeout.
CAPTURE_WAIT: Final = 15.0
# Bound on dumpcap writing its last packets and exiting after SIGINT.
CAPTURE_STOP_TIMEOUT: Final = 15.0
# Bound on the server's connections closing (and their traces being written).
SERVER_WAIT: Final = 10.0
# How often a canary connection is made while waiting for dumpcap.
CANARY_INTERVAL: Final = 0.1


def _why_not(interface: str, stderr: str) -> str:
    return (
        f"dumpcap could not capture on {interface}: {stderr.strip()!r}. It needs "
        "root, or the capabilities on the binary (Debian package wireshark-common: "
        "dpkg-reconfigure wireshark-common, or setcap cap_net_raw,cap_net_admin+eip "
        "/usr/bin/dumpcap)"
    )


class _Canary:
    """Marker connections on a port of their own, also in the capture filter: a unique
    token in a packet, found in dumpcap's output, says that every packet before it is
    there too (the kernel hands packets over in order)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(SERVER_WAIT)
        self.port = self.listener.getsockname()[1]
        self.count = 0

    def send(self) -> bytes:
        self.count += 1
        token = f"canary-{uuid.uuid4().hex}-{self.count}".encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=SERVER_WAIT) as c:
            peer, _ = self.listener.accept()
            with peer:
                peer.settimeout(SERVER_WAIT)
                c.sendall(token)
                peer.recv(len(token))
        return token


@contextmanager
def dumpcap(
    path: Path, port: int, *, interface: str = "lo", pcap: bool = False, linktype: str = ""
) -> Iterator[int]:
    """Capture TCP on ``port`` (and on the canary port, yielded) into ``path`` while the
    block runs: dumpcap is capturing before the block starts, and every packet of the
    block is in the file. dumpcap writes to a pipe (``-w -``), which it flushes packet by
    packet, so the test sees when a packet is in; the file is its output, byte for byte."""
    exe = require_tool("dumpcap", "wireshark-common")
    canary = _Canary()
    args = [exe, "-i", interface, "-f", f"tcp port {port} or tcp port {canary.port}",
            "-w", "-", "-q", *(["-P"] if pcap else []),
            *(["-y", linktype] if linktype else [])]  # fmt: skip
    output = bytearray()
    with (
        canary.listener,
        subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc,
    ):
        assert proc.stdout is not None
        assert proc.stderr is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, output), daemon=True)
        pump.start()
        try:
            # Live: canaries until one of them is in the output.
            tokens = []
            deadline = time.monotonic() + CAPTURE_WAIT
            while not any(t in output for t in tokens):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                tokens.append(canary.send())
                time.sleep(CANARY_INTERVAL)
            if not any(t in output for t in tokens):
                _stop(proc, pump)
                pytest.fail(_why_not(interface, proc.stderr.read().decode(errors="replace")))
            yield canary.port
            # Complete: one more canary, and wait for it.
            last = canary.send()
            deadline = time.monotonic() + CAPTURE_WAIT
            while last not in output and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(CANARY_INTERVAL / 10)
            assert last in output, f"dumpcap wrote no packet for {CAPTURE_WAIT} s"
        finally:
            _stop(proc, pump)
        stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, _why_not(interface, stderr)
    path.write_bytes(bytes(output))


def _pump(stream: IO[bytes], into: bytearray) -> None:
    while chunk := os.read(stream.fileno(), 65536):
        into += chunk


def _stop(proc: subprocess.Popen[bytes], pump: threading.Thread) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(CAPTURE_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(CAPTURE_STOP_TIMEOUT)
        pytest.fail(f"dumpcap did not stop within {CAPTURE_STOP_TIMEOUT} s of SIGINT")
    pump.join(CAPTURE_STOP_TIMEOUT)
    assert not pump.is_alive(), "dumpcap's output did not end"


def lab_show(path: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "lab", "show", str(path), "--color", "never", *args],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    return out.stdout


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, check=True, timeout=TOOL_TIMEOUT)


def captured(path: Path, canary: int) -> list[ConnectionTrace]:
    """The capture's connections to the lab server (the canaries left out)."""
    return [c for c in read_capture(path).connections if c.server[1] != canary]


def assert_same_bytes(capture: list[ConnectionTrace], trace_dir: Path) -> None:
    """Each captured connection carries exactly the bytes the server's socket saw."""
    server_side = {}
    for path in trace_dir.glob("*.trace"):
        for conn in load(path).connections:
            server_side[conn.client[1]] = conn
    assert sorted(c.client[1] for c in capture) == sorted(server_side)
    for conn in capture:
        theirs = server_side[conn.client[1]]
        assert conn.client_to_server() == theirs.client_to_server()
        assert conn.server_to_client() == theirs.server_to_client()
        assert conn.records[0].kind == CONNECT  # the SYN was captured
        assert not [r for r in conn.records if isinstance(r, StreamBreak)]


def _chunk_lines(tokens: list[str]) -> list[str]:
    sizes = [len(t.encode()) for t in tokens]
    return [f"chunk size 0x{n:x} = {n} bytes" for n in sizes]


# -- HTTP/1.1: curl, chunked and SSE ---------------------------------------------------


@pytest.mark.parametrize(
    ("interface", "pcap", "linktype", "expected"),
    [
        ("lo", False, "", 1),  # pcapng, Ethernet (Linux loopback has zero MAC addresses)
        ("lo", True, "", 1),  # pcap, Ethernet
        ("any", False, "LINUX_SLL2", 276),  # pcapng, Linux cooked capture v2
        ("any", False, "LINUX_SLL", 113),  # pcapng, Linux cooked capture v1
    ],
    ids=["lo-pcapng", "lo-pcap", "any-sll2", "any-sll"],
)
def test_curl_chunked_and_sse(
    tmp_path: Path, interface: str, pcap: bool, linktype: str, expected: int
) -> None:
    curl = require_tool("curl", "curl")
    trace_dir = tmp_path / "traces"
    capture = tmp_path / ("curl.pcap" if pcap else "curl.pcapng")
    with (
        server_in_thread(trace_dir=trace_dir) as server,
        dumpcap(capture, server.port, interface=interface, pcap=pcap, linktype=linktype) as canary,
    ):
        tokens = run(curl, "-sS", "-N", f"{server.url}/tokens?n=4&interval_ms=5&prompt=cap")
        events = run(curl, "-sS", "-N", f"{server.url}/events?n=3&stream=cap-{interface}")
        server.wait_no_connections(SERVER_WAIT)
    with capture.open("rb") as f:
        assert {frame.linktype for frame in read_frames(f)} == {expected}
    assert tokens.stdout == "".join(tokens_for("cap", 4)).encode() + b"\n[DONE]\n"
    assert b"id: 3" in events.stdout

    conns = captured(capture, canary)
    assert [c.protocol for c in conns] == ["http/1.1", "http/1.1"]
    assert_same_bytes(conns, trace_dir)

    shown = lab_show(capture)
    assert "GET /tokens?n=4&interval_ms=5&prompt=cap HTTP/1.1" in shown
    for line in _chunk_lines([*tokens_for("cap", 4), "\n[DONE]\n"]):
        assert line in shown
    assert "last chunk (size 0): the data is complete" in shown
    assert "content-type: text/event-stream" in shown
    assert "field 'id' = '3': last event ID set" in shown  # an SSE line inside a chunk
    assert "blank line: dispatch a 'message' event" in shown


# -- HTTP/2 cleartext: nghttp and curl ---------------------------------------------------


def test_h2c_nghttp_and_curl(tmp_path: Path) -> None:
    nghttp = require_tool("nghttp", "nghttp2-client")
    curl = require_tool("curl", "curl")
    trace_dir = tmp_path / "traces"
    capture = tmp_path / "h2c.pcapng"
    with (
        server_in_thread(trace_dir=trace_dir) as server,
        dumpcap(capture, server.port) as canary,
    ):
        run(nghttp, "-v", f"{server.url}/tokens?n=3&interval_ms=5&prompt=ng")
        url = f"{server.url}/tokens?n=2&interval_ms=0&prompt=cu"
        out = run(curl, "-sS", "--http2-prior-knowledge", url)
        server.wait_no_connections(SERVER_WAIT)
    assert out.stdout == "".join(tokens_for("cu", 2)).encode() + b"\n[DONE]\n"

    conns = captured(capture, canary)
    assert [c.protocol for c in conns] == ["h2c", "h2c"]
    assert_same_bytes(conns, trace_dir)

    shown = lab_show(capture, "--view", "sequence")
    assert "client connection preface (RFC 9113 §3.4)" in shown
    assert "GET /tokens?n=3&interval_ms=5&prompt=ng" in shown
    # nghttp's first request is on stream 13 (after its PRIORITY frames), curl's on 1.
    for token in tokens_for("ng", 3):
        assert f'DATA stream 13: {len(token.encode())} B  "{token}"' in shown
    for token in tokens_for("cu", 2):
        assert f'DATA stream 1: {len(token.encode())} B  "{token}"' in shown
    assert "GOAWAY" in shown


# -- WebSocket: the websockets library ---------------------------------------------------


def test_websocket_after_the_101(tmp_path: Path) -> None:
    trace_dir = tmp_path / "traces"
    capture = tmp_path / "ws.pcapng"
    with (
        server_in_thread(trace_dir=trace_dir) as server,
        dumpcap(capture, server.port) as canary,
    ):
        url = f"ws://127.0.0.1:{server.port}/ws/tokens?n=3&interval_ms=0&prompt=ws"
        messages = []
        with websocket_connect(url, open_timeout=TOOL_TIMEOUT) as ws:
            try:
                while True:  # until the server closes
                    messages.append(str(ws.recv(timeout=TOOL_TIMEOUT)))
            except ConnectionClosed:
                pass
        server.wait_no_connections(SERVER_WAIT)
    assert "".join(messages).startswith("".join(tokens_for("ws", 3)))

    (conn,) = captured(capture, canary)
    assert conn.protocol == "http/1.1+websocket"
    assert_same_bytes([conn], trace_dir)
    shown = lab_show(capture)
    assert "http/1.1+websocket" in shown
    assert "status line: HTTP/1.1 101 'Switching Protocols'" in shown
    assert "header field Upgrade: websocket" in shown


# -- TLS: curl over HTTPS ----------------------------------------------------------------


def test_tls_is_opaque_with_sni_and_alpn(tmp_path: Path) -> None:
    curl = require_tool("curl", "curl")
    tls = make_tls()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls.ca_pem)
    capture = tmp_path / "tls.pcapng"
    with server_in_thread(tls=tls) as server, dumpcap(capture, server.port) as canary:
        host = f"localhost:{server.port}"
        url = f"https://{host}/tokens?n=2&interval_ms=0&prompt=tls"
        out = run(curl, "-sS", "--cacert", str(ca), "--resolve", f"{host}:127.0.0.1", url)
        server.wait_no_connections(SERVER_WAIT)
    assert out.stdout == "".join(tokens_for("tls", 2)).encode() + b"\n[DONE]\n"

    (conn,) = captured(capture, canary)
    assert conn.protocol == "tls"
    shown = lab_show(capture)
    assert "ClientHello (SNI localhost, ALPN h2, http/1.1)" in shown
    assert "ServerHello (TLS 1.3)" in shown
    assert "application_data" in shown
    assert "encrypted (opaque without the session keys)" in shown
    assert "GET /tokens" not in shown  # the request is inside the encryption
