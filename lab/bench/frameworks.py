"""What real frameworks put on the wire for a token stream: ``lab bench frameworks``.

Each peer (:mod:`lab.peers`) and the lab's own server, each in its own process, is asked
for the same stream by the lab's raw client (:func:`lab.client.http1.fetch`), and every
value of the table is read from the client's trace: the framing the server chose, the
chunks it wrote (how many, their sizes, tokens per chunk: does it flush per token?),
its headers of note, and whether the tokens arrived exactly.

Then the client leaves after the first token of a long stream, and the peer's ``/stats``
says whether the generator behind the stream was closed, how soon, and how many tokens
it made meanwhile (the lab's server is asked the same through its own ``/stats``: its
connection and task counts back to where they were).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Final

import trio

from lab.apps.tokens import DONE, tokens_for
from lab.attacks.process import LabProcess
from lab.bench.frameworks_h2 import H2C_PEERS, abort_h2, probe_h2
from lab.capture.trace import RECV, Trace
from lab.client.http1 import Response, fetch, open_connection
from lab.peers.launcher import PEERS, start
from lab.progress import Reporter, silent
from lab.wire.chunked import ChunkedDecoder, ChunkSize

__all__ = ["ABORT_WAIT", "LAB", "Row", "probe_all", "table"]

LAB: Final = "lab"
# The probe stream: few tokens, a short pause between them so that no two writes meet in
# one socket read by accident of timing.
PROBE_N: Final = 20
PROBE_INTERVAL_MS: Final = 10
# The stream the client leaves: long enough (200 x 50 ms = 10 s) that a server still
# producing it is plainly so after ABORT_WAIT.
ABORT_N: Final = 200
ABORT_INTERVAL_MS: Final = 50
ABORT_WAIT: Final = 3.0
POLL: Final = 0.05
PROMPT: Final = "hi"
NOTE_HEADERS: Final = ("cache-control", "x-accel-buffering", "connection")


@dataclass(slots=True)
class Row:
    framework: str
    endpoint: str  # "text", "sse", or "h2c" (text over HTTP/2, prior knowledge)
    content_type: str
    framing: str  # chunked / length / close, or DATA (HTTP/2 frames)
    chunks: int  # chunks of the chunked coding, or non-empty DATA frames
    min_chunk: int
    max_chunk: int
    tokens_per_chunk: float  # writes (tokens and the end marker) per chunk of the wire
    exact: bool  # the tokens arrived exactly, in order, with the end marker
    headers: str
    line_end: str = "-"  # SSE rows: what ends the lines of an event, LF or CRLF
    abort: str = ""
    closed_early: bool | None = None  # None: not measured


def _received(trace: Trace) -> bytes:
    (conn,) = trace.connections
    return b"".join(r.data for r in conn.records if r.kind == RECV)


def _chunk_sizes(raw: bytes) -> list[int]:
    _, _, body = raw.partition(b"\r\n\r\n")
    segments = ChunkedDecoder().feed(body)
    return [s.size for s in segments if isinstance(s, ChunkSize) and s.size]


def _framing(response: Response) -> str:
    if (response.header("transfer-encoding") or "").lower().endswith("chunked"):
        return "chunked"
    return "length" if response.header("content-length") is not None else "close"


def _sse_data(body: str) -> list[str]:
    out = []
    for line in re.split(r"\r\n|\r|\n", body):
        if line.startswith("data:"):
            value = line[5:]
            out.append(value[1:] if value.startswith(" ") else value)
    return out


def exact_tokens(endpoint: str, body: bytes, n: int, prompt: str = PROMPT) -> bool:
    """Whether ``body`` is exactly the ``n`` tokens for ``prompt`` and the end marker."""
    tokens = tokens_for(prompt, n)
    if endpoint == "text":
        return body == ("".join(tokens) + f"\n{DONE}\n").encode()
    data = _sse_data(body.decode("utf-8", "replace"))
    if data and data[0].startswith("{"):  # the lab's /sse/tokens: {"token": ...}
        data = [json.loads(d)["token"] if d.startswith("{") else d for d in data]
    return data == [*tokens, DONE]


def _target(framework: str, endpoint: str, n: int, interval_ms: int) -> str:
    path = {"text": "/tokens", "sse": "/sse", "h2c": "/tokens"}[endpoint]
    if framework == LAB and endpoint == "sse":
        path = "/sse/tokens"
    return f"{path}?n={n}&interval_ms={interval_ms}&prompt={PROMPT}"


def _probe(framework: str, endpoint: str, port: int) -> Row:
    target = _target(framework, endpoint, PROBE_N, PROBE_INTERVAL_MS)
    exchange = trio.run(lambda: fetch("127.0.0.1", port, "GET", target, name=framework))
    response = exchange.response
    sizes = _chunk_sizes(_received(exchange.trace)) if _framing(response) == "chunked" else []
    chunks = len(sizes) if sizes else len(response.pieces)
    noted = [f"{h}: {response.header(h)}" for h in NOTE_HEADERS if response.header(h)]
    line_end = "-"
    if endpoint == "sse":
        line_end = "CRLF" if b"\r\n" in response.body else "LF"
    return Row(
        line_end=line_end,
        framework=framework,
        endpoint=endpoint,
        content_type=response.header("content-type") or "",
        framing=_framing(response),
        chunks=chunks,
        min_chunk=min(sizes, default=0),
        max_chunk=max(sizes, default=0),
        tokens_per_chunk=(PROBE_N + 1) / max(chunks, 1),
        exact=response.complete and exact_tokens(endpoint, response.body, PROBE_N),
        headers="; ".join(noted) or "-",
    )


def _probe_h2c(framework: str, port: int, lab: LabProcess | None) -> Row:
    target = _target(framework, "h2c", PROBE_N, PROBE_INTERVAL_MS)
    got = probe_h2(port, target)
    sizes = got.sizes
    row = Row(
        framework=framework,
        endpoint="h2c",
        content_type=got.content_type,
        framing="DATA",
        chunks=len(sizes),
        min_chunk=min(sizes, default=0),
        max_chunk=max(sizes, default=0),
        tokens_per_chunk=(PROBE_N + 1) / max(len(sizes), 1),
        exact=got.status == 200 and got.ended and exact_tokens("text", got.body, PROBE_N),
        headers="; ".join(got.noted) or "-",
    )
    long = _target(framework, "h2c", ABORT_N, ABORT_INTERVAL_MS)
    said, row.closed_early = abort_h2(port, long, lab, ABORT_WAIT, ABORT_N)
    row.abort = f"RST_STREAM: {said}"
    return row


async def _leave_after_first_token(port: int, target: str) -> None:
    async with open_connection("127.0.0.1", port) as conn:
        await conn.send_request("GET", target)
        await conn.read_response(stop_after_pieces=1)


def _peer_stats(port: int) -> dict[str, int]:
    exchange = trio.run(lambda: fetch("127.0.0.1", port, "GET", "/stats", name="stats"))
    return {k: int(v) for k, v in json.loads(exchange.response.body).items()}


def _abort_peer(framework: str, endpoint: str, port: int) -> tuple[str, bool]:
    before = _peer_stats(port)
    target = _target(framework, endpoint, ABORT_N, ABORT_INTERVAL_MS)
    trio.run(_leave_after_first_token, port, target)
    left = time.monotonic()
    now = before
    for _ in range(int(ABORT_WAIT / POLL)):
        now = _peer_stats(port)
        if now["closed"] > before["closed"] or now["finished"] > before["finished"]:
            break
        time.sleep(POLL)
    made = now["produced"] - before["produced"]
    if now["closed"] > before["closed"]:
        waited = (time.monotonic() - left) * 1000
        return f"closed within {waited:.0f} ms, {made} of {ABORT_N} tokens made", True
    return f"still running after {ABORT_WAIT:.0f} s, {made} of {ABORT_N} tokens made", False


def _abort_lab(endpoint: str, lab: LabProcess) -> tuple[str, bool]:
    baseline = lab.snapshot()
    trio.run(_leave_after_first_token, lab.port, _target(LAB, endpoint, ABORT_N, ABORT_INTERVAL_MS))
    left = time.monotonic()
    now = lab.settle(baseline, ABORT_WAIT)
    waited = (time.monotonic() - left) * 1000
    if now.connections <= baseline.connections and now.tasks <= baseline.tasks:
        return f"handler and connection gone within {waited:.0f} ms", True
    return f"still {now.tasks - baseline.tasks} tasks after {ABORT_WAIT:.0f} s", False


@contextmanager
def _lab() -> Iterator[LabProcess]:
    with LabProcess() as lab:
        yield lab


def probe_all(frameworks: list[str] | None = None, report: Reporter = silent) -> list[Row]:
    """A row per framework and endpoint (text, SSE), the lab's server first."""
    names = frameworks or [LAB, *PEERS]
    rows: list[Row] = []
    with report(len(names), "bench frameworks") as step:
        for name in names:
            step(name)
            server: AbstractContextManager[object] = _lab() if name == LAB else start(name)
            with server as running:
                for endpoint in ("text", "sse"):
                    if isinstance(running, LabProcess):
                        row = _probe(name, endpoint, running.port)
                        row.abort, row.closed_early = _abort_lab(endpoint, running)
                    else:
                        port: int = running.port  # type: ignore[attr-defined]
                        row = _probe(name, endpoint, port)
                        row.abort, row.closed_early = _abort_peer(name, endpoint, port)
                    rows.append(row)
                if name == LAB or name in H2C_PEERS:
                    lab = running if isinstance(running, LabProcess) else None
                    rows.append(_probe_h2c(name, running.port, lab))  # type: ignore[attr-defined]
    return rows


def _cells(row: Row) -> list[str]:
    size = f"{row.min_chunk}-{row.max_chunk}" if row.max_chunk else "-"
    return [
        row.framework,
        row.endpoint,
        row.content_type,
        row.framing,
        str(row.chunks),
        size,
        f"{row.tokens_per_chunk:.2f}",
        "yes" if row.exact else "NO",
        row.line_end,
        row.headers,
        row.abort,
    ]


HEADINGS: Final = [
    "framework", "endpoint", "content-type", "framing", "chunks", "bytes", "writes/chunk",
    "exact", "SSE lines", "headers of note", f"client leaves after 1 of {ABORT_N} tokens",
]  # fmt: skip


def table(
    rows: list[Row], *, markdown: bool = False, each: Callable[[Row], list[str]] = _cells
) -> str:
    cells = [HEADINGS, *(each(r) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "---|" * len(HEADINGS))
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADINGS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells
    )
