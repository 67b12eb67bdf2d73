"""The lab's chunked decoder against h11, on the same bytes, in one run.

Both sides decode the same chunked body, fed in 64 KiB reads as a socket would deliver it:
the lab's :class:`~lab.wire.chunked.ChunkedDecoder` producing annotated segments, and an
h11 server ``Connection`` that has received a ``POST`` head with ``Transfer-Encoding:
chunked``, counting its ``Data`` events. Two bodies: 16-byte chunks (one token per chunk,
the streaming-chat case, where per-chunk overhead is everything) and 4 KiB chunks (bulk).

Runs of the two decoders alternate, so a noisy machine slows both alike; compare the
ratio, not the absolute numbers. ``python -m lab.bench.chunked_bench`` prints a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import h11

from lab.progress import Reporter, progress, silent
from lab.wire.chunked import ChunkData, ChunkedDecoder, encode

__all__ = ["run"]

# A socket read of 64 KiB is what trio's default receive_some(…) size and most servers use.
RECV_SIZE = 64 * 1024
# Bodies of about 2 MiB: big enough that set-up costs vanish, small enough for a quick run.
BODY_DATA_SIZE = 2 * 1024 * 1024
CHUNK_SIZES = (16, 4096)

_HEAD = b"POST / HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n"


def _body(chunk_size: int) -> tuple[bytes, int]:
    count = BODY_DATA_SIZE // chunk_size
    piece = bytes(range(256)) * (chunk_size // 256 + 1)
    return encode([piece[:chunk_size]] * count), count


def _reads(body: bytes) -> list[bytes]:
    return [body[i : i + RECV_SIZE] for i in range(0, len(body), RECV_SIZE)]


def _lab(reads: list[bytes]) -> int:
    decoder = ChunkedDecoder()
    chunks = 0
    for read in reads:
        for segment in decoder.feed(read):
            if type(segment) is ChunkData:
                chunks += 1
    assert decoder.done
    return chunks


def _h11(reads: list[bytes]) -> int:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(_HEAD)
    assert isinstance(conn.next_event(), h11.Request)
    chunks = 0
    for read in reads:
        conn.receive_data(read)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
            if type(event) is h11.Data:
                chunks += 1
            elif type(event) is h11.EndOfMessage:
                break
    assert conn.their_state is h11.DONE
    return chunks


def _time(fn: Callable[[list[bytes]], int], reads: list[bytes]) -> float:
    start = time.perf_counter()
    fn(reads)
    return time.perf_counter() - start


def run(
    seconds_per_case: float = 1.0, report: Reporter = silent
) -> list[dict[str, float | int | str]]:
    """Measure both decoders on each chunk size; one dict per (case, decoder).

    Each dict has ``case``, ``decoder`` ("lab" or "h11"), ``chunks_per_s``, ``mb_per_s``
    (megabytes of chunked body per second), ``best_s`` (fastest pass) and, for the lab rows,
    ``ratio`` (lab / h11 throughput). ``report`` gets a step per chunk size.
    """
    rows: list[dict[str, float | int | str]] = []
    with report(len(CHUNK_SIZES), "bench chunked") as step:
        for chunk_size in CHUNK_SIZES:
            step(f"{chunk_size} B chunks")
            body, count = _body(chunk_size)
            reads = _reads(body)
            # Both must see every chunk, or the comparison means nothing. h11 may split a
            # chunk at a read boundary into two Data events, so it can count a few more.
            assert _lab(reads) >= count
            assert _h11(reads) >= count
            best = {"lab": float("inf"), "h11": float("inf")}
            deadline = time.perf_counter() + 2 * seconds_per_case
            while True:
                best["lab"] = min(best["lab"], _time(_lab, reads))
                best["h11"] = min(best["h11"], _time(_h11, reads))
                if time.perf_counter() >= deadline:
                    break
            for name in ("lab", "h11"):
                row: dict[str, float | int | str] = {
                    "case": f"{chunk_size} B chunks",
                    "decoder": name,
                    "chunks_per_s": count / best[name],
                    "mb_per_s": len(body) / best[name] / 1e6,
                    "best_s": best[name],
                }
                if name == "lab":
                    row["ratio"] = best["h11"] / best["lab"]
                rows.append(row)
    return rows


def table(rows: list[dict[str, float | int | str]]) -> str:
    lines = [f"{'case':<16}{'decoder':<9}{'chunks/s':>12}{'MB/s':>10}{'lab/h11':>9}"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(
            f"{row['case']!s:<16}{row['decoder']!s:<9}{row['chunks_per_s']:>12,.0f}"
            f"{row['mb_per_s']:>10.1f}{ratio:>9}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
