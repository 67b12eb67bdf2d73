"""Reassemble one direction of a captured TCP connection into the bytes its reader got.

TCP (RFC 9293) numbers every byte: sequence numbers count modulo 2**32 from the initial
sequence number (ISN) of the SYN, and the SYN and the FIN each take one number (§3.4). A
receiver hands the bytes to the application in sequence order, whatever order the
segments came in, and a segment whose bytes it already has adds nothing: "only the new
parts are processed" (§3.10.7.4). :func:`reassemble` does the same with the segments of
one direction, in capture order:

- **out of order**: a segment ahead of the next expected byte waits; it is delivered when
  the segments before it have come, at the frame that completed them;
- **retransmission**: bytes that were already delivered are compared with the earlier
  copy and dropped when equal (a keep-alive probe, one old byte at ``SND.NXT - 1``,
  §3.8.4, is dropped whatever its value);
- **conflict**: an earlier and a later copy of the same sequence numbers with different
  bytes. Which the receiver kept cannot be told from the capture (the copy the capture
  saw first may have been lost after the capture point), so this direction is not read
  past that point, and the trace says why;
- **gap**: sequence numbers no captured segment carried (the capture dropped packets,
  started late, or cut packets to a snapshot length). Bytes are never invented and the
  two sides of a gap are never joined silently: the delivery list holds a break that says
  how many bytes are missing where, and the bytes after it follow.

The result is a list of :class:`Delivery`: data, a FIN, or a break, each at the frame that
made it happen, in frame order. Only :data:`MAX_STREAM_BYTES` of sequence space are read
per direction.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from lab.capture.pcapread_packet import TCPSegment

__all__ = ["MAX_STREAM_BYTES", "Delivery", "Reassembled", "StreamTooLong", "reassemble"]

# Bytes of one direction read from a capture: each direction is held in memory, then
# annotated and rendered unit by unit, which is for conversations of kilobytes to
# megabytes (the lab's streams), not for a bulk download. A segment reaching past this
# (or a sequence number that far from the start: a corrupt or unrelated segment) stops
# the read with a hint to cut the capture down.
MAX_STREAM_BYTES: Final = 64 * 1024 * 1024

_MOD: Final = 1 << 32


class StreamTooLong(ValueError):
    """A direction reaches past :data:`MAX_STREAM_BYTES`."""


@dataclass(frozen=True, slots=True)
class Delivery:
    number: int  # the frame at which it happened (a later one than its segment's if it
    time_ns: int  # waited for an earlier one)
    data: bytes = b""
    fin: bool = False
    problem: str = ""  # set for a break: why the bytes after it are not read as one stream


@dataclass(slots=True)
class Reassembled:
    deliveries: list[Delivery] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the breaks' reasons, in order
    retransmissions: int = 0  # segments whose bytes had all been delivered already
    out_of_order: int = 0  # segments that came before a segment they follow
    keepalives: int = 0
    ignored: int = 0  # segments after a conflict, past the FIN, or before the ISN


def _signed(value: int) -> int:
    """A difference of sequence numbers as a signed 32-bit value (RFC 9293 §3.4)."""
    return (value + (1 << 31)) % _MOD - (1 << 31)


def _data_seq(seg: TCPSegment) -> int:
    return (seg.seq + 1) % _MOD if seg.syn else seg.seq  # the SYN takes one number


@dataclass(order=True, slots=True)
class _Piece:
    offset: int
    order: int  # arrival order, so that equal offsets keep it
    data: bytes = field(compare=False)
    number: int = field(compare=False)
    time_ns: int = field(compare=False)


class _Assembler:
    def __init__(self, base: int, label: str) -> None:
        self.base = base  # sequence number of stream offset 0
        self.label = label
        self.out = Reassembled()
        self.start = 0  # stream offset of stream[0] (moves past a gap)
        self.stream = bytearray()  # the bytes delivered since the last gap
        # Per data delivery: (stream offset, frame its segment came in, index in deliveries).
        self.origins: list[tuple[int, int, int]] = []
        self.pending: list[_Piece] = []  # a heap: segments waiting for earlier bytes
        self.arrivals = 0
        self.last = (0, 0)  # (frame, time) of the latest delivery
        self.fin_at: int | None = None  # stream offset of the FIN, once seen
        self.fin_frame = (0, 0)
        self.fin_done = False
        self.broken = False

    @property
    def next(self) -> int:
        return self.start + len(self.stream)

    def seq(self, offset: int) -> int:
        return (self.base + offset) % _MOD

    # -- one segment ---------------------------------------------------------------

    def segment(self, seg: TCPSegment) -> None:
        offset = _signed(_data_seq(seg) - self.base)
        at = (seg.number, seg.time_ns)
        if offset + seg.length > MAX_STREAM_BYTES:
            raise StreamTooLong(
                f"frame {seg.number}: the {self.label} stream reaches byte "
                f"{offset + seg.length}, past the limit of {MAX_STREAM_BYTES} bytes per "
                "direction (MAX_STREAM_BYTES)"
            )
        if seg.fin and self.fin_at is None:
            self.fin_at, self.fin_frame = offset + seg.length, at
        if self.broken:
            self.out.ignored += 1
            return
        if seg.payload:
            self._data(offset, seg.payload, seg.length, at)
        self._try_fin(at)

    def _data(self, offset: int, data: bytes, length: int, at: tuple[int, int]) -> None:
        if length == 1 and offset == self.next - 1 and not self.pending:
            self.out.keepalives += 1  # RFC 9293 §3.8.4: may carry one garbage octet
            return
        if offset < 0 or (self.fin_at is not None and offset + len(data) > self.fin_at):
            self.out.ignored += 1  # before the ISN, or past the FIN: not stream bytes
            cut = max(0, -offset)
            end = len(data) if self.fin_at is None else max(cut, self.fin_at - offset)
            data, offset = data[cut:end], offset + cut
            if not data:
                return
        if offset > self.next:
            self.out.out_of_order += 1
            self.arrivals += 1
            heapq.heappush(self.pending, _Piece(offset, self.arrivals, data, *at))
            return
        if not self._take(offset, data, at, at):
            return
        self._drain(at)

    def _take(self, offset: int, data: bytes, at: tuple[int, int], copy: tuple[int, int]) -> bool:
        """Deliver the new part of ``data`` (at stream ``offset``, not after the next
        byte), checking the part already delivered; False if that part differs."""
        old_end = min(offset + len(data), self.next)
        if offset < old_end:
            lo = max(offset, self.start)  # bytes before a gap cannot be compared
            if (
                self.stream[lo - self.start : old_end - self.start]
                != data[lo - offset : old_end - offset]
            ):
                self._conflict(lo, old_end, data[lo - offset : old_end - offset], copy)
                return False
        new = data[max(0, self.next - offset) :]
        if not new:
            self.out.retransmissions += 1
            return True
        self.origins.append((self.next, copy[0], len(self.out.deliveries)))
        self.stream += new
        self._deliver(Delivery(max(at, self.last)[0], max(at, self.last)[1], bytes(new)))
        return True

    def _drain(self, at: tuple[int, int]) -> None:
        """Deliver the waiting segments that the next byte has reached, at frame ``at``."""
        while self.pending and self.pending[0].offset <= self.next and not self.broken:
            piece = heapq.heappop(self.pending)
            if not self._take(piece.offset, piece.data, at, (piece.number, piece.time_ns)):
                return

    def _try_fin(self, at: tuple[int, int]) -> None:
        if self.fin_at is not None and not self.fin_done and self.next == self.fin_at:
            self.fin_done = True
            when = max(at, self.fin_frame, self.last)
            self._deliver(Delivery(when[0], when[1], fin=True))

    def _deliver(self, delivery: Delivery) -> None:
        self.last = (delivery.number, delivery.time_ns)
        self.out.deliveries.append(delivery)

    # -- what cannot be read --------------------------------------------------------

    def _conflict(self, lo: int, hi: int, later: bytes, copy: tuple[int, int]) -> None:
        earlier = self.stream[lo - self.start : hi - self.start]
        first = next(i for i, (a, b) in enumerate(zip(earlier, later, strict=True)) if a != b)
        cut = lo + first  # the first byte the two copies disagree on
        offset, before, index = self.origins[bisect.bisect_right(self.origins, (cut, _MOD, 0)) - 1]
        problem = (
            f"conflicting retransmission: frame {copy[0]} carries bytes {lo}-{hi - 1} of the "
            f"{self.label} stream (sequence numbers {self.seq(lo)}-{self.seq(hi - 1)}) again, "
            f"but byte {cut} differs from the copy in frame {before} "
            f"({earlier[first]:#04x}, now {later[first]:#04x}); which copy the receiver "
            "kept cannot be told from the capture: the first copy from there on is shown, "
            "not decoded, and nothing later in this direction is read"
        )
        self.broken = True
        self.out.problems.append(problem)
        # The break goes where the copies start to differ: the delivery holding that byte
        # is split there, so the bytes both copies agree on are read, the others not.
        held = self.out.deliveries[index]
        pieces = [
            Delivery(held.number, held.time_ns, held.data[: cut - offset]),
            Delivery(held.number, held.time_ns, problem=problem),
            Delivery(held.number, held.time_ns, held.data[cut - offset :]),
        ]
        self.out.deliveries[index : index + 1] = [p for p in pieces if p.data or p.problem]

    def _break(self, problem: str, at: tuple[int, int]) -> None:
        self.out.problems.append(problem)
        self._deliver(Delivery(at[0], at[1], problem=problem))

    def finish(self) -> Reassembled:
        """Close the gaps left at the end of the capture, each as a break."""
        self.out.out_of_order -= len(self.pending)  # never put in order: after a gap
        while not self.broken:
            if self.pending:
                piece = self.pending[0]
                gap_end, at = piece.offset, (piece.number, piece.time_ns)
            elif self.fin_at is not None and not self.fin_done and self.fin_at > self.next:
                gap_end, at = self.fin_at, self.fin_frame
            else:
                break
            size = gap_end - self.next
            where = ", just before the FIN" if not self.pending else ""
            self._break(
                f"gap in the capture: {size} bytes of the {self.label} stream were never "
                f"captured (stream bytes {self.next}-{gap_end - 1}, sequence numbers "
                f"{self.seq(self.next)}-{self.seq(gap_end - 1)}{where}); nothing is made up "
                "for them: the bytes after the gap are shown, not decoded",
                max(at, self.last),
            )
            self.start, self.stream = gap_end, bytearray()
            self._drain(max(at, self.last))
            self._try_fin(max(at, self.last))
        if self.fin_at is not None and not self.fin_done:
            self.fin_done = True  # after a conflict: the FIN still closed the stream
            when = max(self.fin_frame, self.last)
            self._deliver(Delivery(when[0], when[1], fin=True))
        return self.out


def reassemble(segments: Sequence[TCPSegment], isn: int | None, label: str) -> Reassembled:
    """The deliveries of one direction, from its segments in capture order.

    ``isn`` is the sequence number of its SYN when the capture has it; without it the
    stream starts at the lowest sequence number captured (the capture began after the
    handshake). ``label`` names the direction in messages ("client→server").
    """
    if isn is not None:
        base = (isn + 1) % _MOD
    else:
        starts = [_data_seq(s) for s in segments if s.length or s.fin]
        if not starts:
            return Reassembled()
        base = (starts[0] + min(_signed(s - starts[0]) for s in starts)) % _MOD
    assembler = _Assembler(base, label)
    for seg in segments:
        assembler.segment(seg)
    return assembler.finish()
