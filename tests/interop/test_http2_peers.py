"""Real HTTP/2 peers agree with the lab: nghttp, curl, h2load, httpx, tshark.

Each server runs in a background thread (blocking tools talk to it from the test's
thread). Where a peer prints the frames it saw, the lab's own view of the same bytes is
the server-side trace of that connection (``trace_dir``), read back and annotated with the
lab's frame decoder: what the server sent is what the peer received, frame for frame.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest
import trio

from lab.apps.tokens import DONE, tokens_for
from lab.capture.annotate import AnnotatedConnection, Unparsed, annotate
from lab.capture.fileformat import load
from lab.capture.store import write_capture
from lab.capture.trace import RECV, SEND
from lab.notebook import ServerHandle
from lab.scenarios import get, run_scenario
from lab.server import Server
from lab.server.tls import TLSConfig, make_tls
from lab.wire.h2frames import Frame, FrameType, HeadersFrame, Representation
from tests.serverthread import server_in_thread
from tests.tools import require_tool

pytestmark = pytest.mark.interop

# Bound on every external tool run (and curl's own --max-time).
TOOL_TIMEOUT: Final = 60
# Bound on waiting for the server to start, and for its connections to close.
SERVER_WAIT: Final = 10.0


# -- a lab server in a thread ------------------------------------------------------------


@dataclass(eq=False)
class LabServer:
    handle: ServerHandle
    trace_dir: Path | None

    @property
    def server(self) -> Server:
        return self.handle.server

    @property
    def url(self) -> str:
        return self.handle.url

    def traces(self) -> list[Path]:
        """The server's traces, once every connection has closed (bounded wait)."""
        self.handle.wait_no_connections(SERVER_WAIT)
        assert self.trace_dir is not None
        return sorted(self.trace_dir.glob("*.trace"))


@contextmanager
def running_server(
    *, trace_dir: Path | None = None, tls: TLSConfig | None = None
) -> Iterator[LabServer]:
    """The lab's default app on 127.0.0.1, a free port, in a thread of its own."""
    with server_in_thread(trace_dir=trace_dir, tls=tls) as handle:
        yield LabServer(handle, trace_dir)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    with running_server(trace_dir=tmp_path / "traces") as server:
        yield server


def _stream_name(prefix: str) -> str:
    # /events keeps a log per stream name in the process: a fresh name per test.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, check=True, timeout=TOOL_TIMEOUT)


# -- nghttp -v: frame by frame -------------------------------------------------------------

# [  0.002] recv DATA frame <length=6, flags=0x00, stream_id=1>
_NGHTTP_FRAME: Final = re.compile(
    r"^\[\s*[\d.]+\] (send|recv) (\w+) frame "
    r"<length=(\d+), flags=0x([0-9a-f]+), stream_id=(\d+)>$"
)

FrameKey = tuple[str, int, int, int]  # type name, length, flags, stream id


def _nghttp_frames(output: str) -> dict[str, list[FrameKey]]:
    """nghttp's frame lines, per direction as nghttp says it: "send" and "recv"."""
    out: dict[str, list[FrameKey]] = {"send": [], "recv": []}
    for line in output.splitlines():
        match = _NGHTTP_FRAME.match(line)
        if match:
            way, name, length, flags, sid = match.groups()
            out[way].append((name, int(length), int(flags, 16), int(sid)))
    return out


def _key(frame: Frame) -> FrameKey:
    return (frame.type_name, frame.length, frame.flags, frame.stream_id)


def _frames(conn: AnnotatedConnection, *, from_client: bool) -> list[tuple[int, Frame]]:
    """One direction's frames, each with the index of the record that completed it."""
    return [
        (a.record, a.segment)
        for a in conn.items
        if a.from_client == from_client and isinstance(a.segment, Frame)
    ]


@pytest.mark.parametrize(
    ("target", "options"),
    [
        ("/tokens?n=5&interval_ms=10", ()),
        ("/events?n=3&interval_ms=10", ()),
        # nghttp's SETTINGS raise the HPACK table it decodes with to 64 KiB, as browsers'
        # do: the server's first field block starts with a table size update to 65,536.
        ("/tokens?n=5&interval_ms=10", ("--header-table-size=65536",)),
    ],
    ids=["tokens", "events", "tokens-64k-hpack-table"],
)
def test_nghttp_sees_the_frames_the_lab_annotates(
    lab: LabServer, target: str, options: tuple[str, ...]
) -> None:
    nghttp = require_tool("nghttp", "nghttp2-client")
    if target.startswith("/events"):
        target += f"&stream={_stream_name('nghttp')}"
    # -n: discard the body; --no-dep: no PRIORITY frames, the request on stream 1.
    result = subprocess.run(
        [nghttp, "-v", "--no-dep", "-n", *options, f"{lab.url}{target}"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT, text=True,
    )  # fmt: skip
    seen = _nghttp_frames(result.stdout)

    (path,) = lab.traces()
    trace = load(path)
    (conn,) = annotate(trace)
    assert conn.conn.side == "server"
    assert conn.conn.protocol == "h2c"
    assert [a.segment for a in conn.items if isinstance(a.segment, Unparsed)] == []
    received = _frames(conn, from_client=True)
    sent = _frames(conn, from_client=False)

    # Everything nghttp sent, the server read: same frames, same order.
    assert seen["send"] == [_key(f) for _, f in received]
    assert seen["send"][-1][0] == "GOAWAY"
    # Everything nghttp read, the server sent, in order. nghttp leaves right after its
    # GOAWAY; the server's answer to it (its own GOAWAY) is written after it arrived and
    # nghttp never reads it. Nothing else may be missing.
    assert seen["recv"] == [_key(f) for _, f in sent[: len(seen["recv"])]]
    client_goaway_record = received[-1][0]
    unread = sent[len(seen["recv"]) :]
    assert all(record > client_goaway_record for record, _ in unread)
    assert [f.type_name for _, f in unread] in ([], ["GOAWAY"])
    if options:
        first_block = next(f.block for _, f in sent if isinstance(f, HeadersFrame) and f.block)
        size_update = first_block.representations[0]
        assert size_update.representation is Representation.SIZE_UPDATE
        assert size_update.new_max_size == 65536

    # The exchange itself: one stream, its response ended by END_STREAM.
    data = [k for k in seen["recv"] if k[0] == "DATA"]
    assert {k[3] for k in data} == {1}
    assert data[-1][1:3] == (0, 0x1)  # an empty DATA frame carrying END_STREAM
    assert any(k[0] == "HEADERS" and k[3] == 1 for k in seen["recv"])
    if target.startswith("/tokens"):
        assert len(data) == 5 + 2  # a frame per token, [DONE], the END_STREAM frame
    else:
        assert len(data) == 1 + 3 + 1  # retry, three events, the END_STREAM frame
    print(
        f"\nnghttp {target}: sent {len(seen['send'])} frames, received {len(seen['recv'])}; "
        f"the server sent {len(sent)} ({len(unread)} after nghttp left)"
    )


# -- curl --http2-prior-knowledge ----------------------------------------------------------


def _curl(curl: str, url: str, *args: str, http2: bool) -> tuple[bytes, str]:
    """The body curl printed, and the HTTP version it says it used."""
    version = "--http2-prior-knowledge" if http2 else "--http1.1"
    out = _run(
        [curl, "-sS", "-N", "--max-time", str(TOOL_TIMEOUT), version,
         "-w", "\n%{http_version}", *args, url]
    ).stdout  # fmt: skip
    body, _, said = out.rpartition(b"\n")
    return body, said.decode()


def test_curl_h2c_gets_the_same_bodies_as_http1(lab: LabServer) -> None:
    curl = require_tool("curl", "curl")
    chat = json.dumps({"prompt": "curl-h2", "n": 4, "interval_ms": 5})
    cases: dict[str, tuple[str, ...]] = {
        "/tokens?n=5&interval_ms=5&prompt=curl-h2": (),
        f"/events?n=3&interval_ms=5&stream={_stream_name('curl-h2')}": (),
        "/chat#sse": ("--json", chat, "-H", "accept: text/event-stream"),
        "/chat#ndjson": ("--json", chat, "-H", "accept: application/x-ndjson"),
    }
    for target, args in cases.items():
        url = lab.url + target.partition("#")[0]
        h2_body, h2_version = _curl(curl, url, *args, http2=True)
        h1_body, h1_version = _curl(curl, url, *args, http2=False)
        assert (h2_version, h1_version) == ("2", "1.1"), target
        assert h2_body == h1_body, target
        assert h2_body, target
    tokens, _ = _curl(curl, lab.url + "/tokens?n=5&interval_ms=0&prompt=curl-h2", http2=True)
    assert tokens.decode() == "".join(tokens_for("curl-h2", 5)) + f"\n{DONE}\n"
    ndjson, _ = _curl(curl, lab.url + "/chat", *cases["/chat#ndjson"], http2=True)
    lines = [json.loads(line) for line in ndjson.splitlines()]
    assert [x.get("token") for x in lines[:-1]] == tokens_for("curl-h2", 4)
    assert lines[-1] == {"done": True}


def test_head_gets_the_get_headers_and_no_content(lab: LabServer) -> None:
    # RFC 9110 §9.3.2, over HTTP/1.1 and h2c: the same Content-Length as GET, no content,
    # and the connection goes on (curl sends a GET after the HEAD on it).
    curl = require_tool("curl", "curl")
    for http2 in (False, True):
        out = subprocess.run(
            [curl, "-sS", *(["--http2-prior-knowledge"] if http2 else []), "-I",
             f"{lab.url}/fixed?size=9", "--next", "-o", "/dev/null",
             "-w", "%{http_code} %{size_download} %{num_connects}", f"{lab.url}/fixed?size=9"],
            capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        head, _, after = out.stdout.rpartition("\n")
        assert re.search(r"^HTTP/[\d.]+ 200", head, re.M), head
        assert re.search(r"^content-length: 9\r?$", head, re.I | re.M), head
        assert after == "200 9 0"  # the GET after it, on the same connection


# -- h2load: many streams on a few connections ------------------------------------------------

_H2LOAD_REQUESTS: Final = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2LOAD_STATUS: Final = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@pytest.mark.parametrize("target", ["/fixed?size=100", "/tokens?n=3&interval_ms=0"])
def test_h2load_smoke(lab: LabServer, target: str) -> None:
    h2load = require_tool("h2load", "nghttp2-client")
    # 200 requests on 4 connections, 10 streams at once on each.
    out = _run([h2load, "-n", "200", "-c", "4", "-m", "10", f"{lab.url}{target}"]).stdout.decode()
    requests = _H2LOAD_REQUESTS.search(out)
    status = _H2LOAD_STATUS.search(out)
    assert requests, out
    assert status, out
    assert requests.groups() == ("200", "200", "200", "200", "0", "0", "0"), out
    assert status.groups() == ("200", "0", "0", "0"), out
    assert "Application protocol: h2c" in out
    assert lab.server.accepted == 4
    print(f"\nh2load {target}: " + next(x for x in out.splitlines() if x.startswith("finished")))


# -- httpx with HTTP/2 ------------------------------------------------------------------------


def test_httpx_h2c_prior_knowledge_streams_tokens(lab: LabServer) -> None:
    with (
        httpx.Client(base_url=lab.url, http1=False, http2=True, timeout=10) as client,
        client.stream("GET", "/tokens?n=6&interval_ms=5&prompt=httpx-h2") as response,
    ):
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert "transfer-encoding" not in response.headers  # no chunked coding in h2
        text = "".join(response.iter_text())
    assert text == "".join(tokens_for("httpx-h2", 6)) + f"\n{DONE}\n"
    (path,) = lab.traces()
    assert load(path).connections[0].protocol == "h2c"


def test_httpx_h2_over_tls_by_alpn(tmp_path: Path) -> None:
    tls = make_tls()
    context = ssl.create_default_context(cadata=tls.ca_pem.decode("ascii"))
    with running_server(trace_dir=tmp_path, tls=tls) as lab:
        assert lab.url.startswith("https://")
        with (
            httpx.Client(base_url=lab.url, verify=context, http2=True, timeout=10) as client,
            client.stream("GET", "/tokens?n=4&interval_ms=5&prompt=alpn") as response,
        ):
            assert response.http_version == "HTTP/2"
            text = "".join(response.iter_text())
        assert text == "".join(tokens_for("alpn", 4)) + f"\n{DONE}\n"
        (path,) = lab.traces()
    conn = load(path).connections[0]
    assert (conn.protocol, conn.tls) == ("h2", True)


# -- tshark on the lab's pcapng ---------------------------------------------------------------

# tshark 4.0's HTTP/2 fields (`tshark -G fields`): http2.streamid, http2.type,
# http2.length, http2.flags. A packet carrying several frames lists each field's values
# comma-separated, in frame order.
_TSHARK_FIELDS: Final = ("tcp.stream", "tcp.srcport", "http2.streamid", "http2.type",
                         "http2.length", "http2.flags")  # fmt: skip

# (tcp.stream, from the client, stream id, type, length, flags)
WireFrame = tuple[int, bool, int, int, int, int]


def _tshark_frames(tshark: str, pcap: Path, port: int) -> list[WireFrame]:
    """Every HTTP/2 frame tshark dissects, in wire order (``port``: the server's)."""
    fields = [arg for name in _TSHARK_FIELDS for arg in ("-e", name)]
    out = subprocess.run(
        [tshark, "-r", str(pcap), "-d", f"tcp.port=={port},http2", "-T", "fields", *fields],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT, text=True,
    ).stdout  # fmt: skip
    frames = []
    for line in out.splitlines():
        tcp_stream, src_port, *columns = line.split("\t")
        if not columns[0]:
            continue  # a packet with no HTTP/2 frame (handshake, ACK, the preface alone)
        values = [column.split(",") for column in columns]
        assert len({len(v) for v in values}) == 1, line
        from_client = int(src_port) != port
        for sid, ftype, length, flags in zip(*values, strict=True):
            frames.append(
                (int(tcp_stream), from_client, int(sid), int(ftype), int(length), int(flags, 16))
            )
    return frames


@pytest.mark.parametrize("name", ["h2-multiplex", "h2-flow-control"])
def test_tshark_reads_the_same_frames_as_the_annotation(tmp_path: Path, name: str) -> None:
    tshark = require_tool("tshark", "tshark")
    trace = trio.run(run_scenario, get(name))
    _, pcap = write_capture(trace, tmp_path)
    port = trace.connections[0].server[1]
    tshark_frames = _tshark_frames(tshark, pcap, port)
    lab_frames = [
        (ac.index, a.from_client, f.stream_id, f.type, f.length, f.flags)
        for ac in annotate(trace)
        for a in ac.items
        if isinstance(f := a.segment, Frame)
    ]
    assert tshark_frames == lab_frames
    # Both directions are there, and the scenario's point shows in them.
    assert {f[1] for f in lab_frames} == {True, False}
    data_streams = {f[2] for f in lab_frames if f[3] == FrameType.DATA}
    if name == "h2-multiplex":
        assert data_streams == {1, 3}
    else:
        assert any(f[3] == FrameType.WINDOW_UPDATE and f[1] for f in lab_frames)
    records = sum(1 for r in trace.connections[0].records if r.kind in (SEND, RECV))
    print(f"\ntshark {name}: {len(tshark_frames)} frames in {records} send/recv records")
