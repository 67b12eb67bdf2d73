"""Real nginx and HAProxy between the lab's client and server: `lab proxy --matrix --json`
run as a user runs it, every verdict checked against the traces it saved.

The matrix runs once for the module. Each test reads the JSON rows the command printed and
the .trace files it wrote, and measures the claim from the trace's two legs itself
(lab.proxy.legs): when the upstream handed each token to the proxy, when the client's read
that completed it returned, what framed it on each leg, how each leg ended.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from lab.capture.fileformat import load
from lab.capture.trace import EOF, Trace
from lab.proxy.experiments import (
    ABORT_TOKENS,
    EXPERIMENTS,
    IDLE_TIMEOUT,
    QUIET_GAP_MS,
    TOKEN_INTERVAL_MS,
    TOKENS,
)
from lab.proxy.legs import CLIENT, UPSTREAM, Arrival, Leg, arrivals, legs, pairs
from lab.proxy.probes import ProbeOutcome
from lab.proxy.verdicts import Row, measure
from tests.tools import require_tool

pytestmark = pytest.mark.interop

# The whole matrix takes about half a minute; ten times that covers a loaded CI machine.
MATRIX_TIMEOUT: Final = 300
TIMEOUT_S: Final = float(IDLE_TIMEOUT.removesuffix("s"))
# Both proxies arm a timer from a clock cached at the top of their event loop, which can be
# a few milliseconds old: a cut may come that much before the timeout on the lab's clock.
TIMER_SLACK: Final = 0.05
INTERVAL_S: Final = TOKEN_INTERVAL_MS / 1000
# The rows give milliseconds to one decimal.
MS_ROUNDING: Final = 0.1 + 1e-9
# Fields measured from the trace alone (the resume probe's event list comes from the client).
TRACE_FIELDS: Final = (
    "status", "tokens_sent", "ttft_ms", "upstream_ttft_ms", "max_tokens_per_read",
    "client_reads", "complete", "upstream_complete", "quiet_survived",
    "abort_reached_upstream", "abort_ms", "tokens_after_abort", "client_bytes",
    "upstream_bytes", "client_frames", "upstream_frames", "upstream_writes",
    "duplicated_headers",
)  # fmt: skip


@dataclass
class Matrix:
    rows: dict[tuple[str, str], dict[str, Any]]
    out: Path
    stderr: str

    def row(self, config: str, probe: str) -> dict[str, Any]:
        return self.rows[(config, probe)]

    def trace(self, config: str, probe: str) -> Trace:
        return load(self.row(config, probe)["trace"])

    def exchange(self, config: str, probe: str) -> tuple[Leg, Leg, list[Arrival]]:
        ((client, upstream), *_) = pairs(self.trace(config, probe))
        assert client is not None
        assert upstream is not None
        return client, upstream, arrivals(client, upstream)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    require_tool("nginx", "nginx")
    require_tool("haproxy", "haproxy")
    out = tmp_path_factory.mktemp("proxy-runs")
    done = subprocess.run(
        [sys.executable, "-m", "lab", "proxy", "--matrix", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=MATRIX_TIMEOUT, check=False,
        env={**os.environ, "COLUMNS": "160", "CI": "true"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {(r["configuration"], r["probe"]): r for r in json.loads(done.stdout)}
    return Matrix(rows, out, done.stderr)


def _tokens(found: list[Arrival]) -> list[Arrival]:
    return [a for a in found if not a.unit.final]


def _held_to_the_end(found: list[Arrival]) -> bool:
    """No token reached the client before the upstream had sent the last one."""
    tokens = _tokens(found)
    last_sent = max(a.upstream_t for a in tokens if a.upstream_t is not None)
    return all(a.client_t is not None and a.client_t >= last_sent for a in tokens)


def _streamed(found: list[Arrival]) -> bool:
    """Most tokens reached the client before the upstream sent the next one: at least half
    of them, where a proxy that holds the stream lets none through early. (Not all: the
    client, the relay and the server share one process, and a stall of the machine makes
    a few tokens late without any proxy holding them.)"""
    tokens = _tokens(found)
    early = sum(
        1
        for a, b in itertools.pairwise(tokens)
        if a.client_t is not None and b.upstream_t is not None and a.client_t < b.upstream_t
    )
    return len(tokens) >= TOKENS and early >= len(tokens) // 2


def test_every_probe_ran_and_saved_a_two_leg_trace_the_rows_agree_with(matrix: Matrix) -> None:
    expected = {(c.name, p.label) for e in EXPERIMENTS for c in e.configurations for p in c.probes}
    assert set(matrix.rows) == expected
    for (config, probe), row in matrix.rows.items():
        trace_path = Path(row["trace"])
        assert trace_path.parent == matrix.out
        assert trace_path.with_suffix(".pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
        trace = load(trace_path)
        sides = {leg.leg for leg in legs(trace)}
        assert sides == {CLIENT, UPSTREAM}, (config, probe)
        again = Row(**{**row, "note": ""})
        measure(again, trace, ProbeOutcome(events=[], stopped=""))
        for name in TRACE_FIELDS:
            ours, theirs = asdict(again)[name], row[name]
            if isinstance(ours, float) and isinstance(theirs, float):
                # The file keeps times to the microsecond, which can move a value rounded
                # to 0.1 ms by one step.
                assert abs(ours - theirs) <= MS_ROUNDING, (config, probe, name)
            else:
                assert ours == theirs, (config, probe, name)
    for config, probe in expected:  # one progress line per probe, on stderr
        assert re.search(rf"^\[\d+/{len(expected)}\] proxy {config} {probe}$", matrix.stderr, re.M)


def test_default_nginx_holds_text_and_ndjson_until_the_upstream_has_finished(
    matrix: Matrix,
) -> None:
    for probe in ("text", "ndjson"):
        client, upstream, found = matrix.exchange("nginx-default", probe)
        assert len(_tokens(found)) == TOKENS
        assert _held_to_the_end(found), probe
        # The upstream request was HTTP/1.0 (nginx's default), its body ran until close.
        assert upstream.request.endswith("HTTP/1.0")
        assert upstream.framing == "close"
        assert client.framing == "chunked"
        assert client.complete


def test_x_accel_buffering_no_streams_and_ignoring_it_holds_again(matrix: Matrix) -> None:
    client, upstream, found = matrix.exchange("nginx-default", "sse")
    assert upstream.header("x-accel-buffering") == "no"
    assert _streamed(found)
    _, _, ignored = matrix.exchange("nginx-ignore-accel", "sse")
    assert _held_to_the_end(ignored)
    # nginx takes the header for itself: the client never sees it.
    assert client.header("x-accel-buffering") is None


def test_buffering_off_streams_every_type_over_an_http10_upstream(matrix: Matrix) -> None:
    for probe in ("text", "ndjson", "sse"):
        client, upstream, found = matrix.exchange("nginx-buffering-off", probe)
        assert _streamed(found), probe
        assert upstream.request.endswith("HTTP/1.0")
        # Re-framed: nothing on the upstream leg, one chunk per token to the client.
        assert upstream.frames == []
        assert len(client.frames) >= TOKENS


def test_http11_upstream_is_chunked_and_this_nginx_streams_it_with_buffering_on(
    matrix: Matrix,
) -> None:
    client, upstream, found = matrix.exchange("nginx-http11", "text")
    assert upstream.request.endswith("HTTP/1.1")
    assert upstream.framing == "chunked"
    # nginx still asks the upstream to close (its default proxy_set_header Connection close).
    assert b"\r\nConnection: close\r\n" in upstream.conn.client_to_server()
    assert _streamed(found)
    assert client.complete


def test_gzip_compresses_the_client_leg_only_and_still_streams(matrix: Matrix) -> None:
    for probe in ("text", "ndjson", "sse"):
        client, upstream, found = matrix.exchange("nginx-gzip", probe)
        assert client.header("content-encoding") == "gzip"
        assert upstream.header("content-encoding") is None
        assert client.body == upstream.body  # decoded read by read, the same bytes
        assert _streamed(found), probe


def test_a_quiet_stream_is_cut_at_the_read_timeout_with_no_last_chunk(matrix: Matrix) -> None:
    client, upstream, found = matrix.exchange("nginx-read-timeout", "quiet")
    assert not client.complete
    assert [a.client_t is not None for a in _tokens(found)] == [True]
    last_data = upstream.pieces[-1][0]
    cut_upstream = upstream.peer_end()
    cut_client = client.peer_end()
    assert cut_upstream is not None
    assert cut_client is not None
    assert cut_client[1] == EOF  # the proxy's FIN, where a last chunk should have been
    # The timer ran from the last read: it fired after the timeout, before the second
    # event (QUIET_GAP_MS after the first) would have come.
    assert TIMEOUT_S - TIMER_SLACK <= cut_upstream[0] - last_data < QUIET_GAP_MS / 1000


def test_heartbeats_keep_a_stream_longer_than_the_read_timeout_alive(matrix: Matrix) -> None:
    client, _, found = matrix.exchange("nginx-read-timeout", "heartbeat")
    assert client.complete
    events = _tokens(found)
    assert all(a.client_t is not None for a in events)
    assert client.request_t is not None
    lasted = max(a.client_t for a in events if a.client_t is not None) - client.request_t
    assert lasted > TIMEOUT_S  # longer than the timeout, so it is not a whole-response one
    assert b": heartbeat" in client.body


def test_an_eventsource_resumes_after_each_cut_with_last_event_id(matrix: Matrix) -> None:
    row = matrix.row("nginx-read-timeout", "resume")
    assert row["resumed"] is True
    exchanges = pairs(matrix.trace("nginx-read-timeout", "resume"))
    clients = [c for c, _ in exchanges if c is not None]
    assert len(clients) >= 3
    sent_ids = [c.conn.client_to_server().split(b"last-event-id: ")[1:] for c in clients]
    assert sent_ids[0] == []  # the first connection had no id to send
    previous = [_event_ids(c) for c in clients]
    for k in range(1, len(clients)):
        assert sent_ids[k][0].split(b"\r\n")[0].decode() == previous[k - 1][-1]
    assert any(not c.complete for c in clients[:-1])  # a cut came before each resume


def _event_ids(leg: Leg) -> list[str]:
    """The ids of the events in one client leg's body."""
    return re.findall(r"^id: (\d+)$", leg.body.decode(), re.M) or [""]


@pytest.mark.parametrize(
    ("config", "http2", "reached"),
    [
        ("nginx-abort", False, True),
        ("nginx-abort", True, True),
        ("nginx-abort-ignore", False, False),
        ("nginx-abort-ignore", True, False),
        ("nginx-abort-unbuffered", False, True),
        ("nginx-abort-unbuffered", True, True),
        ("nginx-abort-unbuffered-ignore", False, True),
        ("nginx-abort-unbuffered-ignore", True, True),
    ],
)
def test_a_client_abort_reaches_the_upstream_unless_nginx_is_told_to_ignore_it(
    matrix: Matrix, config: str, http2: bool, reached: bool
) -> None:
    probe = "abort-h2" if http2 else "abort-h1"
    row = matrix.row(config, probe)
    client, upstream, found = matrix.exchange(config, probe)
    assert client.conn.protocol == ("h2c" if http2 else "http/1.1")
    if http2:
        assert client.reset_by_client  # RST_STREAM from the client, connection kept
    assert row["abort_reached_upstream"] is reached
    sent_upstream = sum(1 for a in _tokens(found) if a.upstream_t is not None)
    if reached:
        assert not upstream.complete
        assert sent_upstream < ABORT_TOKENS
    else:
        assert upstream.complete  # the upstream ran to its end for nobody
        assert sent_upstream == ABORT_TOKENS


def test_http2_to_nginx_carries_the_upstream_chunks_as_data_frames(matrix: Matrix) -> None:
    client, upstream, found = matrix.exchange("nginx-h2-streaming", "h2-text")
    assert client.conn.protocol == "h2c"
    assert client.framing == "h2"
    assert upstream.framing == "chunked"
    assert _streamed(found)

    def bounds(sizes: list[int]) -> set[int]:
        total, out = 0, set()
        for size in sizes:
            total += size
            out.add(total)
        return out

    # Every DATA frame ends where an upstream chunk ended: frames never split a chunk.
    assert bounds([n for n in client.frames if n]) <= bounds(upstream.frames)
    _, _, held = matrix.exchange("nginx-h2", "h2-text")
    assert _held_to_the_end(held)
    buffered, _, _ = matrix.exchange("nginx-h2", "h2-text")
    assert len([n for n in buffered.frames if n]) == 1  # the whole body in one DATA frame


def test_the_course_notes_block_doubles_content_type_and_cache_control(matrix: Matrix) -> None:
    for probe in ("text", "ndjson", "sse"):
        client, upstream, found = matrix.exchange("nginx-course-notes", probe)
        assert _streamed(found)
        counts, up_counts = client.header_counts(), upstream.header_counts()
        assert (counts["content-type"], up_counts["content-type"]) == (2, 1), probe
        assert (counts["cache-control"], up_counts["cache-control"]) == (2, 1), probe
        # proxy_set_header Connection '' removes the field from the upstream request.
        head = upstream.conn.client_to_server().split(b"\r\n\r\n")[0].lower()
        assert b"\r\nconnection:" not in head
        assert upstream.request.endswith("HTTP/1.1")
    client, _, _ = matrix.exchange("nginx-course-notes", "text")
    types = [v for k, v in client.headers if k.lower() == "content-type"]
    assert types == ["text/plain; charset=utf-8", "text/event-stream"]


def test_haproxy_holds_the_start_of_a_stream_unless_told_not_to_delay(matrix: Matrix) -> None:
    row = matrix.row("haproxy-default", "text")
    _, _, found = matrix.exchange("haproxy-default", "text")
    first = _tokens(found)[0]
    assert first.client_t is not None
    assert first.upstream_t is not None
    assert first.client_t - first.upstream_t > INTERVAL_S  # held past the next token
    assert row["max_tokens_per_read"] > 1
    for config, probe in (("haproxy-no-delay", "text"), ("haproxy-h2", "h2-text")):
        _, _, streamed = matrix.exchange(config, probe)
        assert _streamed(streamed), config


def test_haproxy_timeout_server_cuts_a_quiet_stream_and_timeout_tunnel_does_not_help(
    matrix: Matrix,
) -> None:
    for config in ("haproxy-timeout-server", "haproxy-timeout-tunnel"):
        client, upstream, _ = matrix.exchange(config, "quiet")
        assert not client.complete, config
        cut = upstream.peer_end()
        assert cut is not None
        quiet_for = cut[0] - upstream.pieces[-1][0]
        assert TIMEOUT_S - TIMER_SLACK <= quiet_for < QUIET_GAP_MS / 1000
    beat, _, _ = matrix.exchange("haproxy-timeout-server", "heartbeat")
    assert beat.complete
