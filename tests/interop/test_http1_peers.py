"""Real peers agree with the lab about the same bytes: curl, httpx, tshark."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from lab.apps.tokens import tokens_for
from lab.capture.annotate import annotate
from lab.capture.store import write_capture
from lab.scenarios import get, run_scenario
from lab.server import Server
from lab.wire.chunked import ChunkSize, LastChunk
from tests.serverthread import server_in_thread
from tests.tools import require_tool

pytestmark = pytest.mark.interop

# Bound on every external tool run.
TOOL_TIMEOUT = 60


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A lab server in a background thread, so that blocking peers can talk to it."""
    with server_in_thread() as handle:
        yield handle.server


def test_curl_raw_shows_the_labs_chunk_framing(server: Server) -> None:
    curl = require_tool("curl", "curl")
    out = subprocess.run(
        [curl, "-sS", "-N", "--raw", f"{server.url}/tokens?n=4&interval_ms=5&prompt=curl"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT,
    ).stdout  # fmt: skip
    expected = b"".join(
        b"%x\r\n%s\r\n" % (len(t), t)
        for t in [w.encode() for w in tokens_for("curl", 4)] + [b"\n[DONE]\n"]
    )
    assert out == expected + b"0\r\n\r\n"


def test_curl_verbose_sees_the_status_line_and_chunked_header(server: Server) -> None:
    curl = require_tool("curl", "curl")
    result = subprocess.run(
        [curl, "-sS", "-v", "-N", f"{server.url}/tokens?n=2&interval_ms=0&prompt=v"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT,
    )  # fmt: skip
    assert b"< HTTP/1.1 200 OK" in result.stderr
    assert b"< Transfer-Encoding: chunked" in result.stderr
    assert result.stdout == "".join(tokens_for("v", 2)).encode() + b"\n[DONE]\n"


def test_curl_posts_chat_and_reads_ndjson(server: Server) -> None:
    curl = require_tool("curl", "curl")
    out = subprocess.run(
        [curl, "-sS", "-N", "-H", "accept: application/x-ndjson", "--json",
         json.dumps({"prompt": "q", "n": 3, "interval_ms": 0}), f"{server.url}/chat"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT,
    ).stdout  # fmt: skip
    # curl --json would send "Accept: application/json"; -H replaces it.
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x.get("token") for x in lines[:-1]] == tokens_for("q", 3)
    assert lines[-1] == {"done": True}


def test_httpx_streaming_receives_the_same_tokens(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        with client.stream("GET", "/tokens?n=6&interval_ms=5&prompt=httpx") as response:
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked"
            text = "".join(response.iter_text())
        assert text == "".join(tokens_for("httpx", 6)) + "\n[DONE]\n"
        reply = client.post(
            "/chat", json={"prompt": "httpx", "n": 3, "interval_ms": 0},
            headers={"accept": "application/json"},
        )  # fmt: skip
        assert reply.json()["tokens"] == tokens_for("httpx", 3)


def test_httpx_sees_trailers_absent_but_body_intact(server: Server) -> None:
    # httpx does not expose trailers; the body around them must still be right.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get("/trailers?n=3&interval_ms=0&prompt=t")
        assert response.text == "".join(tokens_for("t", 3))


def test_tshark_reads_the_same_chunk_sizes_as_the_annotation(tmp_path: Path) -> None:
    tshark = require_tool("tshark", "tshark")
    trace = trio.run(run_scenario, get("token-stream"))
    _, pcap = write_capture(trace, tmp_path)
    port = trace.connections[0].server[1]
    out = subprocess.run(
        [tshark, "-r", str(pcap), "-d", f"tcp.port=={port},http", "-Y", "http.response",
         "-T", "fields", "-e", "http.chunk_size", "-e", "http.response.code"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT, text=True,
    ).stdout  # fmt: skip
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    sizes_field, code = lines[0].split("\t")
    tshark_sizes = [int(s) for s in sizes_field.split(",")]
    # tshark lists the last-chunk as a chunk of size 0; so does the lab's annotation.
    lab_sizes = [
        a.segment.size if isinstance(a.segment, ChunkSize) else 0
        for ac in annotate(trace)
        for a in ac.items
        if isinstance(a.segment, ChunkSize | LastChunk)
    ]
    assert code == "200"
    assert tshark_sizes == lab_sizes
    assert len(lab_sizes) == 8  # 6 tokens, [DONE], the last-chunk
