"""``lab probe`` as a user runs it (a subprocess): against the lab's own server over
HTTP/1.1, h2c and TLS with ALPN, as an EventSource that reconnects, against a gated
server written here (the first chunk shows before the stream ends), and its one-line
errors. Each test reads what the probe printed, its exit status, and the files it saved
(loaded back with lab.capture.load)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest

from lab.apps.tokens import tokens_for
from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.capture.trace import ConnectionTrace, Trace
from lab.server.tls import make_tls
from lab.wire.chunked import ChunkData
from lab.wire.h2frames import DataFrame
from lab.wire.http1 import HeaderField, RequestLine
from tests.livecli import ENV, LINE_WAIT, LabProcess
from tests.serverthread import server_in_thread

# Bound on one probe run: each of these takes well under a second when it works.
CLI_TIMEOUT: Final = 60
PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"  # a pcapng Section Header Block
# The reconnection time the SSE test asks for: short, so that the test is quick, and long
# enough to tell from no wait at all.
RETRY_MS: Final = 100


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "probe", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip


def saved(out: Path) -> Trace:
    """The one trace the probe saved in ``out``, with its pcapng beside it."""
    (trace_path,) = out.glob("probe-*.trace")
    assert trace_path.with_suffix(".pcapng").read_bytes()[:4] == PCAPNG_MAGIC
    return load(trace_path)


def body_h1(conn: ConnectionTrace) -> bytes:
    (ac,) = annotate(Trace("x", connections=[conn]))
    return b"".join(s.data for s in ac.segments(from_client=False) if isinstance(s, ChunkData))


def request_fields(conn: ConnectionTrace) -> tuple[RequestLine, list[tuple[str, str]]]:
    (ac,) = annotate(Trace("x", connections=[conn]))
    segs = ac.segments(from_client=True)
    line = next(s for s in segs if isinstance(s, RequestLine))
    return line, [(s.name.lower(), s.value) for s in segs if isinstance(s, HeaderField)]


def one_line_error(out: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert out.returncode == status, (out.returncode, lines[0])
    return lines[0]


def test_http1_shows_each_unit_and_saves_the_trace(tmp_path: Path) -> None:
    with server_in_thread() as server:
        target = "/tokens?n=3&interval_ms=0&prompt=probe"
        out = probe(f"{server.url}{target}", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"request line: method GET, target {target}, HTTP/1.1" in out.stdout
    assert "chunk size 0x" in out.stdout
    assert "last chunk (size 0): the data is complete" in out.stdout
    assert "* response: http/1.1 200 OK" in out.stdout
    trace = saved(tmp_path)
    assert f"{trace.name}.trace" in out.stdout  # the saved line names the file
    assert "127.0.0.1" in trace.name
    (conn,) = trace.connections
    assert (conn.side, conn.protocol, conn.tls) == ("client", "http/1.1", False)
    assert conn.client_to_server().startswith(f"GET {target} HTTP/1.1\r\n".encode())
    expected = "".join(tokens_for("probe", 3)) + "\n[DONE]\n"
    assert body_h1(conn) == expected.encode()


def test_h2c_by_prior_knowledge(tmp_path: Path) -> None:
    with server_in_thread() as server:
        out = probe("--http2", f"{server.url}/tokens?n=2&interval_ms=0&prompt=h2", "--out",
                    str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "client connection preface (RFC 9113 §3.4)" in out.stdout
    assert "HEADERS stream 1 [END_STREAM, END_HEADERS]" in out.stdout
    assert ":path: /tokens?n=2&interval_ms=0&prompt=h2" in out.stdout  # an HPACK field
    assert "GOAWAY stream 0 (connection)" in out.stdout
    assert "* response: h2c 200" in out.stdout
    (conn,) = saved(tmp_path).connections
    assert conn.protocol == "h2c"
    (ac,) = annotate(Trace("x", connections=[conn]))
    data = b"".join(s.data for s in ac.segments(from_client=False) if isinstance(s, DataFrame))
    assert data == ("".join(tokens_for("h2", 2)) + "\n[DONE]\n").encode()


def test_https_negotiates_h2_by_alpn_and_checks_the_certificate(tmp_path: Path) -> None:
    tls = make_tls()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls.ca_pem)
    with server_in_thread(tls=tls) as server:
        url = f"{server.url}/fixed?size=5"
        trusted = probe("--cacert", str(ca), url, "--out", str(tmp_path / "trusted"))
        refused = probe(url, "--out", str(tmp_path / "refused"))  # the system's CAs only
        insecure = probe("-k", url, "--out", str(tmp_path / "insecure"))
    assert trusted.returncode == 0, trusted.stderr
    assert "* TLS: TLSv1.3, ALPN protocol chosen by the server: h2" in trusted.stdout
    assert "above TLS: the decrypted bytes" in trusted.stdout
    assert "* response: h2 200" in trusted.stdout
    (conn,) = saved(tmp_path / "trusted").connections
    assert (conn.protocol, conn.tls) == ("h2", True)
    assert conn.client_to_server().startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    one_line_error(refused, 1, "lab probe: TLS handshake with", "certificate verify failed")
    assert not list((tmp_path / "refused").glob("*.trace"))  # nothing was recorded
    assert insecure.returncode == 0, insecure.stderr
    assert "ALPN protocol chosen by the server: h2" in insecure.stdout


def test_sse_reconnects_with_last_event_id_until_the_server_says_204(tmp_path: Path) -> None:
    with server_in_thread() as server:
        # Two events per response, four in all, then 204: two reconnects.
        url = f"{server.url}/events?n=2&total=4&retry_ms={RETRY_MS}&interval_ms=0"
        out = probe("--sse", url, "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "* reconnecting after 100 ms, Last-Event-ID: 2" in out.stdout
    assert "* reconnecting after 100 ms, Last-Event-ID: 4" in out.stdout
    assert (
        "* EventSource: 4 events over 3 connections; stopped: status 204: the server told "
        "the EventSource to stop; no reconnect"
    ) in out.stdout
    trace = saved(tmp_path)
    assert len(trace.connections) == 3  # one trace, one clock, every connection
    sent = [dict(request_fields(c)[1]) for c in trace.connections]
    assert [f.get("last-event-id") for f in sent] == [None, "2", "4"]
    assert all(f["accept"] == "text/event-stream" for f in sent)
    assert trace.connections[2].server_to_client().startswith(b"HTTP/1.1 204 ")
    # The reconnects waited the retry time, on the trace's one clock (which the file keeps
    # to the microsecond).
    starts = [c.records[0].t for c in trace.connections]
    ends = [c.records[-1].t for c in trace.connections]
    for gap in (starts[1] - ends[0], starts[2] - ends[1]):
        assert gap >= RETRY_MS / 1000 - 1e-6


def test_sse_over_h2c_reconnects_on_new_connections(tmp_path: Path) -> None:
    with server_in_thread() as server:
        url = f"{server.url}/events?n=2&total=4&retry_ms={RETRY_MS}&interval_ms=0"
        out = probe("--sse", "--http2", url, "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    # The Last-Event-ID field, as an HPACK field of the reconnect's HEADERS frame.
    assert "last-event-id: 2 — literal" in out.stdout
    assert "last-event-id: 4 — literal" in out.stdout
    assert "* response: h2c 204" in out.stdout
    assert "EventSource: 4 events over 3 connections; stopped: status 204" in out.stdout
    assert [c.protocol for c in saved(tmp_path).connections] == ["h2c", "h2c", "h2c"]


def test_method_headers_and_body_are_sent_as_given(tmp_path: Path) -> None:
    body = json.dumps({"prompt": "post", "n": 2, "interval_ms": 0})
    with server_in_thread() as server:
        out = probe("-X", "POST", "-H", "Content-Type: application/json", "-H",
                    "Accept: application/x-ndjson", "-H", "User-Agent: probe-test/1",
                    "-d", body, f"{server.url}/chat", "--out", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    (conn,) = saved(tmp_path).connections
    line, fields = request_fields(conn)
    assert (line.method, line.target) == ("POST", "/chat")
    assert [v for k, v in fields if k == "user-agent"] == ["probe-test/1"]  # replaced
    assert [v for k, v in fields if k == "content-type"] == ["application/json"]
    assert ("content-length", str(len(body))) in fields
    assert conn.client_to_server().endswith(b"\r\n\r\n" + body.encode())
    assert "application/x-ndjson" in out.stdout  # the response's Content-Type, shown


@contextmanager
def gated_server(gate: threading.Event) -> Iterator[int]:
    """A server written here: answers one request with a chunked head and a first chunk,
    then holds the stream open until ``gate`` is set (bounded), then ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(LINE_WAIT)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
                         b"content-type: text/plain\r\n\r\n6\r\nfirst\n\r\n")  # fmt: skip
            # Not set within the bound: the probe never showed the first chunk.
            last = b"second\n" if gate.wait(LINE_WAIT + 5) else b"late!!\n"
            conn.sendall(b"7\r\n" + last + b"\r\n0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        gate.set()
        thread.join(LINE_WAIT + 10)
        listener.close()


def test_the_first_chunk_shows_before_the_stream_ends(tmp_path: Path) -> None:
    gate = threading.Event()
    with gated_server(gate) as port, LabProcess(
        "probe", f"http://127.0.0.1:{port}/held", "--out", str(tmp_path)
    ) as run:  # fmt: skip
        run.wait_for(r"\[\d+, \d+\)  first\\n  6 bytes of chunk data")
        assert run.proc.poll() is None  # still running: the stream is held open
        gate.set()
        finished = run.finish()
    assert finished.returncode == 0, finished.stderr
    assert "second\\n  7 bytes of chunk data" in finished.stdout
    assert "* response: http/1.1 200 OK, 13 B of body, complete" in finished.stdout


def test_errors_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]  # nobody listens there once it is closed
    out = tmp_path / "out"
    # RFC 6761 §6.4: .invalid never resolves.
    one_line_error(probe("http://no-such-host.invalid/", "--out", str(out)), 1,
                   "lab probe: cannot resolve no-such-host.invalid")  # fmt: skip
    one_line_error(probe(f"http://127.0.0.1:{closed_port}/", "--out", str(out)), 1,
                   f"lab probe: cannot connect to 127.0.0.1:{closed_port}",
                   "connection refused")  # fmt: skip
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        slow = probe(f"http://127.0.0.1:{port}/", "--max-time", "1", "--out", str(out))
    one_line_error(slow, 1, "lab probe: stopped after 1 s (--max-time)")
    one_line_error(probe("ftp://example.com/"), 2, "http:// or https://")
    one_line_error(probe("http://x/", "-H", "no colon"), 2, "expected 'Name: value'")
    one_line_error(probe("https://x/", "--cacert", str(tmp_path / "none.pem")), 1,
                   "cannot use", "none.pem")  # fmt: skip


@pytest.mark.parametrize("view", ["sequence", "hex"])
def test_another_view_is_shown_at_the_end(tmp_path: Path, view: str) -> None:
    with server_in_thread() as server:
        out = probe("--view", view, f"{server.url}/fixed?size=3", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "request line: method GET" not in out.stdout  # no live rows
    assert "* response: http/1.1 200 OK" in out.stdout
    assert "trace probe-" in out.stdout  # the view's title, after the summary
