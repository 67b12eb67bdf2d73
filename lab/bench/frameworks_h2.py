"""The h2c rows of the frameworks table (:mod:`lab.bench.frameworks`): ``/tokens`` over
HTTP/2 with prior knowledge, for the servers that speak it (the lab's and hypercorn).

A row counts DATA frames as the HTTP/1.1 rows count chunks. The client leaves a stream
by RST_STREAM (CANCEL) after its first DATA frame while the connection stays open: the
server has to tie the reset to the generator behind the stream, as there is no closed
socket to notice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

import trio

from lab.attacks.process import LabProcess, Snapshot
from lab.client.http1 import fetch
from lab.client.http2 import fetch_h2, open_h2_connection

__all__ = ["H2C_PEERS", "H2Probe", "abort_h2", "probe_h2"]

# The peers that speak h2c with prior knowledge (uvicorn, Werkzeug, Node's http module
# and the trio + h11 baseline do not).
H2C_PEERS: Final = ("starlette-hypercorn",)
POLL: Final = 0.05


class H2Probe(NamedTuple):
    status: int
    sizes: list[int]  # DATA frame payload sizes, empty frames left out
    body: bytes
    ended: bool
    content_type: str
    noted: list[str]  # headers of note, "name: value"


async def _probe(port: int, target: str) -> H2Probe:
    response, _ = await fetch_h2("127.0.0.1", port, "GET", target, name="h2c")
    noted = [
        f"{h}: {response.header(h)}"
        for h in ("cache-control", "x-accel-buffering")
        if response.header(h)
    ]
    return H2Probe(
        status=response.status,
        sizes=[len(data) for _, data in response.frames if data],
        body=response.body,
        ended=response.ended,
        content_type=response.header("content-type") or "",
        noted=noted,
    )


def probe_h2(port: int, target: str) -> H2Probe:
    """One request over h2c: what came back, frame by frame."""
    return trio.run(_probe, port, target)


async def _peer_counts(port: int) -> dict[str, int]:
    exchange = await fetch("127.0.0.1", port, "GET", "/stats", name="stats")
    return {k: int(v) for k, v in json.loads(exchange.response.body).items()}


async def _abort(
    port: int, target: str, settled: Callable[[], Awaitable[str | None]], wait: float
) -> str:
    async with open_h2_connection("127.0.0.1", port) as conn:
        await settled()  # the first look: the connection open, no stream yet
        sid = await conn.request("GET", target)
        await conn.pump_until(lambda: bool(conn.responses[sid].frames))
        await conn.reset(sid)
        left = time.monotonic()
        for _ in range(int(wait / POLL)):
            if (said := await settled()) is not None:
                return f"{said} within {(time.monotonic() - left) * 1000:.0f} ms"
            await trio.sleep(POLL)
        return ""


def abort_h2(
    port: int, target: str, lab: LabProcess | None, wait: float, n: int
) -> tuple[str, bool]:
    """RST_STREAM after the first DATA frame; what the server did within ``wait``."""
    if lab is not None:
        baseline: list[Snapshot] = []

        async def lab_settled() -> str | None:
            now = await trio.to_thread.run_sync(lab.snapshot)
            if not baseline:
                baseline.append(now)
                return None
            return "handler gone" if now.tasks <= baseline[0].tasks else None

        said = trio.run(_abort, port, target, lab_settled, wait)
        return (said, True) if said else (f"handler still there after {wait:.0f} s", False)

    before = trio.run(_peer_counts, port)
    made: list[int] = [0]

    async def peer_settled() -> str | None:
        now = await _peer_counts(port)
        made[0] = now["produced"] - before["produced"]
        if now["closed"] > before["closed"]:
            return f"closed, {made[0]} of {n} tokens made,"
        return None

    said = trio.run(_abort, port, target, peer_settled, wait)
    if said:
        return said, True
    return f"still running after {wait:.0f} s, {made[0]} of {n} tokens made", False
