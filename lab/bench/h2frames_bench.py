"""The lab's HTTP/2 frame decoder against hyperframe, on the same bytes, in one run.

Both sides decode the same server-to-client byte stream, fed in 64 KiB reads as a socket
would deliver it: the lab's :class:`~lab.wire.h2frames.FrameDecoder` producing annotated
frames, and hyperframe driven the way h2's ``FrameBuffer`` drives it (append the read to a
buffer; while a whole frame is there, ``Frame.parse_frame_header`` on its 9 octets,
``parse_body`` on its payload, delete it from the buffer), counting frames. Three streams:

- **32 B DATA**: one 32-byte token per DATA frame, a streamed chat reply, where the cost
  per frame is everything;
- **16 KiB DATA**: full-size DATA frames (the default SETTINGS_MAX_FRAME_SIZE), bulk;
- **mix**: a response's worth of control frames between the tokens: per stream a HEADERS
  frame, twenty 32-byte DATA frames, a WINDOW_UPDATE, and a SETTINGS and a PING now and
  then.

Field blocks are not decoded on either side (hyperframe does not do HPACK; the lab's
``decode_headers`` is off), so both do framing and per-type fields only. Runs of the two
decoders alternate, so a noisy machine slows both alike; compare the ratio, not the absolute
numbers. ``python -m lab.bench.h2frames_bench`` prints a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import hpack
from hyperframe.frame import Frame as HyperFrame

from lab.progress import Reporter, progress, silent
from lab.wire import h2frames
from lab.wire.h2frames import Frame, FrameDecoder

__all__ = ["run", "table"]

# A socket read of 64 KiB is what trio's default receive_some(…) size and most servers use.
RECV_SIZE: Final = 64 * 1024
# Streams of about 2 MiB: big enough that set-up costs vanish, small enough for a quick run.
STREAM_SIZE: Final = 2 * 1024 * 1024

Row = dict[str, float | int | str]

# The field block of a streaming response, ``:status: 200`` and ``content-type:
# text/event-stream``, as the first block of a connection (hpack's encoder, Huffman on).
_BLOCK: Final = hpack.Encoder().encode([(":status", "200"), ("content-type", "text/event-stream")])


def _token(i: int) -> bytes:
    return f'{{"token": "tok{i:010d}"}}'.encode()  # exactly 32 bytes


def _small_data(i: int) -> bytes:
    return h2frames.data(1, _token(i))


def _bulk_data(i: int) -> bytes:
    return h2frames.data(1, bytes([i & 0xFF]) * 16384)


def _mix(i: int) -> bytes:
    stream = 2 * i + 1
    frames = [h2frames.headers(stream, _BLOCK)]
    frames += [h2frames.data(stream, _token(i * 20 + k)) for k in range(20)]
    frames.append(h2frames.window_update(0, 20 * 32))
    if i % 8 == 0:
        frames.append(h2frames.settings({h2frames.SettingId.INITIAL_WINDOW_SIZE: 1 << 20}))
        frames.append(h2frames.ping(i.to_bytes(8, "big")))
    frames.append(h2frames.data(stream, b"", end_stream=True))
    return b"".join(frames)


CASES: Final[tuple[tuple[str, Callable[[int], bytes]], ...]] = (
    ("32 B DATA", _small_data),
    ("16 KiB DATA", _bulk_data),
    ("mix", _mix),
)


def _stream(make: Callable[[int], bytes]) -> tuple[bytes, int]:
    """About STREAM_SIZE bytes of ``make(0) + make(1) + ...``, and how many frames."""
    parts: list[bytes] = []
    size = 0
    while size < STREAM_SIZE:
        part = make(len(parts))
        parts.append(part)
        size += len(part)
    stream = b"".join(parts)
    return stream, len(h2frames.parse(stream))


def _reads(stream: bytes) -> list[bytes]:
    return [stream[i : i + RECV_SIZE] for i in range(0, len(stream), RECV_SIZE)]


def _lab(reads: list[bytes]) -> int:
    decoder = FrameDecoder()
    frames = 0
    for read in reads:
        for segment in decoder.feed(read):
            if isinstance(segment, Frame):
                frames += 1
    decoder.eof()
    return frames


def _hyperframe(reads: list[bytes]) -> int:
    """hyperframe as h2's FrameBuffer uses it (h2/frame_buffer.py), minus the CONTINUATION
    bookkeeping, which no frame here needs."""
    buffer = bytearray()
    frames = 0
    parse_header = HyperFrame.parse_frame_header
    for read in reads:
        buffer += read
        while len(buffer) >= 9:
            frame, length = parse_header(memoryview(buffer[:9]))
            if len(buffer) < length + 9:
                break
            frame.parse_body(memoryview(buffer[9 : 9 + length]))
            del buffer[: 9 + length]
            frames += 1
    assert not buffer
    return frames


DECODERS: Final[dict[str, Callable[[list[bytes]], int]]] = {
    "lab": _lab,
    "hyperframe": _hyperframe,
}


def _time(fn: Callable[[list[bytes]], int], reads: list[bytes]) -> float:
    start = time.perf_counter()
    fn(reads)
    return time.perf_counter() - start


def run(seconds: float = 1.0, report: Reporter = silent) -> list[Row]:
    """Measure each stream for about ``2 * seconds``; one dict per (case, decoder).

    Each dict has ``case``, ``decoder`` ("lab" or "hyperframe"), ``frames_per_s``,
    ``mb_per_s`` (megabytes of stream per second), ``best_s`` (fastest pass) and, for the
    lab rows, ``ratio`` (lab / hyperframe throughput). ``report`` gets a step per stream.
    """
    rows: list[Row] = []
    with report(len(CASES), "bench h2frames") as step:
        for case, make in CASES:
            step(case)
            stream, count = _stream(make)
            reads = _reads(stream)
            # Both must see every frame, or the comparison means nothing.
            for fn in DECODERS.values():
                assert fn(reads) == count
            best = dict.fromkeys(DECODERS, float("inf"))
            deadline = time.perf_counter() + 2 * seconds
            while True:
                for name, fn in DECODERS.items():
                    best[name] = min(best[name], _time(fn, reads))
                if time.perf_counter() >= deadline:
                    break
            for name in DECODERS:
                row: Row = {
                    "case": case,
                    "decoder": name,
                    "frames_per_s": count / best[name],
                    "mb_per_s": len(stream) / best[name] / 1e6,
                    "best_s": best[name],
                }
                if name == "lab":
                    row["ratio"] = best["hyperframe"] / best["lab"]
                rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'case':<14}{'decoder':<12}{'frames/s':>12}{'MB/s':>9}{'lab/hyperframe':>16}"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(
            f"{row['case']!s:<14}{row['decoder']!s:<12}{row['frames_per_s']:>12,.0f}"
            f"{row['mb_per_s']:>9.1f}{ratio:>16}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
