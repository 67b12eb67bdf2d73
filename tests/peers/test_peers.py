"""Each peer of lab.peers, in its own process: the exact token stream as text and as SSE,
counted by its own /stats, and a generator that is closed once the client leaves.

And the frameworks table (lab.bench.frameworks): a row per server and endpoint, every
value read from the client's traces.
"""

from __future__ import annotations

import json
import time
from typing import Final

import pytest
import trio

from lab.bench import frameworks
from lab.bench.frameworks_h2 import H2C_PEERS
from lab.client.http1 import fetch, open_connection
from lab.peers.launcher import PEERS, start

pytestmark = pytest.mark.interop

N: Final = 300
# Bound on waiting for a peer to notice a client that left: each peer has noticed by its
# next write at the latest, and writes come every 20 ms.
LEAVE_WAIT: Final = 10.0


def _get(port: int, target: str) -> tuple[bytes, bool, list[tuple[str, str]]]:
    exchange = trio.run(lambda: fetch("127.0.0.1", port, "GET", target))
    r = exchange.response
    return r.body, r.complete, r.headers


def _stats(port: int) -> dict[str, int]:
    return dict(json.loads(_get(port, "/stats")[0]))


async def _leave(port: int, target: str) -> None:
    async with open_connection("127.0.0.1", port) as conn:
        await conn.send_request("GET", target)
        response = await conn.read_response(stop_after_pieces=1)
        assert not response.complete


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_serves_the_exact_tokens_and_closes_the_generator_when_the_client_leaves(
    name: str,
) -> None:
    with start(name) as peer:
        body, complete, _ = _get(peer.port, f"/tokens?n={N}&interval_ms=0&prompt=hi")
        assert complete
        assert frameworks.exact_tokens("text", body, N)
        body, complete, headers = _get(peer.port, f"/sse?n={N}&interval_ms=0&prompt=hi")
        assert complete
        assert dict(headers)["content-type"].startswith("text/event-stream")
        assert frameworks.exact_tokens("sse", body, N)
        assert _stats(peer.port) == {"started": 2, "finished": 2, "closed": 0, "produced": 2 * N}

        trio.run(_leave, peer.port, "/tokens?n=1000&interval_ms=20&prompt=abort")
        deadline = time.monotonic() + LEAVE_WAIT
        while (stats := _stats(peer.port))["closed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats["closed"] == 1
        assert stats["started"] == 3
        assert stats["finished"] == 2
        assert stats["produced"] < 2 * N + 1000  # it stopped making tokens


def test_the_exact_check_refuses_a_missing_or_extra_token() -> None:
    good = frameworks.exact_tokens
    body = b"as time reply while over\n[DONE]\n"
    assert good("text", body, 5)
    assert not good("text", body, 4)
    assert not good("text", body.replace(b" over", b""), 5)
    assert good("sse", b"data: as\r\n\r\ndata:  time\r\n\r\ndata: [DONE]\r\n\r\n", 2)
    assert not good("sse", b"data: as\n\ndata: time\n\ndata: [DONE]\n\n", 2)


def test_the_frameworks_table_has_a_row_per_server_and_endpoint_from_the_traces() -> None:
    rows = frameworks.probe_all()
    assert [(r.framework, r.endpoint) for r in rows] == [
        (name, endpoint)
        for name in [frameworks.LAB, *PEERS]
        for endpoint in ("text", "sse", "h2c")
        if endpoint != "h2c" or name in (frameworks.LAB, *H2C_PEERS)
    ]
    for row in rows:
        assert row.exact, row
        assert row.chunks >= 1
        assert row.framing in ("chunked", "length", "close", "DATA")
        if row.framing in ("chunked", "DATA"):
            assert 1 <= row.min_chunk <= row.max_chunk
        assert row.closed_early is not None
        assert row.abort
    lab = [r for r in rows if r.framework == frameworks.LAB]
    assert [r.framing for r in lab] == ["chunked", "chunked", "DATA"]
    # The lab's server writes one chunk (or DATA frame) per token and one for the end.
    assert all(r.chunks == frameworks.PROBE_N + 1 for r in lab)
    assert all(r.tokens_per_chunk == 1 for r in lab)
    assert all(r.closed_early for r in lab)
    assert {r.line_end for r in rows if r.endpoint == "sse"} <= {"LF", "CRLF"}
    assert {r.line_end for r in rows if r.endpoint != "sse"} == {"-"}
    sse = next(r for r in lab if r.endpoint == "sse")
    assert "x-accel-buffering: no" in sse.headers
    shown = frameworks.table(rows)
    assert len(shown.splitlines()) == 1 + len(rows)
    markdown = frameworks.table(rows, markdown=True)
    assert len(markdown.splitlines()) == 2 + len(rows)
