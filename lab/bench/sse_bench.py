"""The lab's SSE decoder against httpx-sse's parser, on the same bytes, in one run.

Both sides decode the same event stream, fed in 64 KiB reads as a socket would deliver it:
the lab's :class:`~lab.wire.sse.SSEDecoder` producing annotated segments (a segment per
line, an :class:`~lab.wire.sse.Event` per blank line), and httpx-sse's parser the way its
``EventSource`` drives it (an incremental UTF-8 decoder, as httpx's ``iter_text`` uses, then
its line splitter, then its event decoder), counting the events. Three streams:

- **token**: one 32-byte JSON token per event, ``data: {"token": "..."}`` - a streamed
  chat reply, where the cost per event is everything;
- **4 KiB**: one 4 KiB data line per event - bulk;
- **multi-line**: ``event:``, ``id:`` and four data lines per event - a pretty-printed
  JSON message with its type and id.

httpx-sse is optional (a test dependency); without it only the lab rows are measured. Runs
of the two decoders alternate, so a noisy machine slows both alike; compare the ratio, not
the absolute numbers. ``python -m lab.bench.sse_bench`` prints a table.
"""

from __future__ import annotations

import codecs
import importlib
import time
from collections.abc import Callable
from typing import Any, Final

from lab.progress import Reporter, progress, silent
from lab.wire.sse import Dispatch, SSEDecoder, encode_event

__all__ = ["run", "table"]

# A socket read of 64 KiB is what trio's default receive_some(…) size and most servers use.
RECV_SIZE: Final = 64 * 1024
# Streams of about 2 MiB: big enough that set-up costs vanish, small enough for a quick run.
STREAM_SIZE: Final = 2 * 1024 * 1024

Row = dict[str, float | int | str]


def _token_event(i: int) -> bytes:
    token = f"tok{i:010d}"  # 13 characters: the JSON below is exactly 32 bytes
    return encode_event(f'{{"token": "{token}"}}')


def _bulk_event(i: int) -> bytes:
    return encode_event(f"{i:08d}" * 512)


def _multi_line_event(i: int) -> bytes:
    body = f'{{\n "token": "tok{i:010d}",\n "index": {i}\n}}'
    return encode_event(body, event="delta", id=str(i))


CASES: Final[tuple[tuple[str, Callable[[int], bytes]], ...]] = (
    ("token (32 B data)", _token_event),
    ("4 KiB data", _bulk_event),
    ("multi-line", _multi_line_event),
)


def _stream(make: Callable[[int], bytes]) -> tuple[bytes, int]:
    events: list[bytes] = []
    size = 0
    while size < STREAM_SIZE:
        event = make(len(events))
        events.append(event)
        size += len(event)
    return b"".join(events), len(events)


def _reads(stream: bytes) -> list[bytes]:
    return [stream[i : i + RECV_SIZE] for i in range(0, len(stream), RECV_SIZE)]


def _lab(reads: list[bytes]) -> int:
    decoder = SSEDecoder()
    events = 0
    for read in reads:
        for segment in decoder.feed(read):
            if type(segment) is Dispatch and segment.event is not None:
                events += 1
    decoder.eof()
    return events


def _httpx_sse_parser() -> Callable[[list[bytes]], int] | None:
    """httpx-sse's own line splitter and event decoder, fed as ``EventSource`` feeds them;
    None if httpx-sse is not installed."""
    try:
        # Imported by name: httpx-sse is optional, and not a dependency type checking sees.
        decoders: Any = importlib.import_module("httpx_sse._decoders")
    except ImportError:
        return None

    def parse(reads: list[bytes]) -> int:
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        lines = decoders.SSELineDecoder()
        decoder = decoders.SSEDecoder()
        events = 0
        for read in reads:
            for line in lines.decode(text.decode(read)):
                if decoder.decode(line) is not None:
                    events += 1
        for line in lines.decode(text.decode(b"", final=True)) + lines.flush():
            if decoder.decode(line) is not None:
                events += 1
        return events

    return parse


def _time(fn: Callable[[list[bytes]], int], reads: list[bytes]) -> float:
    start = time.perf_counter()
    fn(reads)
    return time.perf_counter() - start


def run(seconds: float = 1.0, report: Reporter = silent) -> list[Row]:
    """Measure each stream for about ``2 * seconds``; one dict per (case, decoder).

    Each dict has ``case``, ``decoder`` ("lab" or "httpx-sse"), ``events_per_s``,
    ``mb_per_s`` (megabytes of event stream per second), ``best_s`` (fastest pass) and, for
    the lab rows when httpx-sse is there, ``ratio`` (lab / httpx-sse throughput).
    ``report`` gets a step per stream.
    """
    reference = _httpx_sse_parser()
    decoders: dict[str, Callable[[list[bytes]], int]] = {"lab": _lab}
    if reference is not None:
        decoders["httpx-sse"] = reference
    rows: list[Row] = []
    with report(len(CASES), "bench sse") as step:
        for case, make in CASES:
            step(case)
            stream, count = _stream(make)
            reads = _reads(stream)
            # Both must see every event, or the comparison means nothing.
            for fn in decoders.values():
                assert fn(reads) == count
            best = dict.fromkeys(decoders, float("inf"))
            deadline = time.perf_counter() + 2 * seconds
            while True:
                for name, fn in decoders.items():
                    best[name] = min(best[name], _time(fn, reads))
                if time.perf_counter() >= deadline:
                    break
            for name in decoders:
                row: Row = {
                    "case": case,
                    "decoder": name,
                    "events_per_s": count / best[name],
                    "mb_per_s": len(stream) / best[name] / 1e6,
                    "best_s": best[name],
                }
                if name == "lab" and reference is not None:
                    row["ratio"] = best["httpx-sse"] / best["lab"]
                rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'case':<19}{'decoder':<11}{'events/s':>12}{'MB/s':>9}{'lab/httpx-sse':>15}"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(
            f"{row['case']!s:<19}{row['decoder']!s:<11}{row['events_per_s']:>12,.0f}"
            f"{row['mb_per_s']:>9.1f}{ratio:>15}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
