"""Writing the trace of a connection whose records were spilled
(:class:`~lab.capture.spill.SpilledRecords`): the same ``.trace`` and ``.pcapng`` that
:func:`lab.capture.store.write_capture` writes, without holding the records all at once.

Both files are written as the records are read back from the spill file:

- the ``.trace`` a batch of records at a time (:data:`TRACE_BATCH_BYTES`), the same text
  :func:`~lab.capture.filewriter.trace_text` gives, so that every reader of the format
  (``lab.capture.load``, ``lab show``) reads it as before;
- the ``.pcapng`` a packet at a time, each packet's comment the notes of the protocol
  units its record carried (:mod:`lab.capture.annotate`). A record's notes are known only
  once the units it carries are complete, and a unit may span many records (a long body),
  so the records wait in a window (:data:`NOTE_WINDOW_BYTES`, :data:`NOTE_WINDOW_RECORDS`)
  until then. A unit still open when its first record leaves the window is noted on the
  records still in it, not on those that left: for a connection that fits in the window,
  which is every short one, the packets are byte for byte those of ``write_capture``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from lab.capture.annotate import Annotated, ConnectionAnnotator
from lab.capture.filewriter import connection_line, header_lines, record_lines
from lab.capture.pcapng import write_pcapng_connection
from lab.capture.records import RECV, SEND, ConnectionTrace, Record
from lab.capture.spill import SpilledRecords
from lab.capture.trace import Trace
from lab.wire.h2fields import FrameField
from lab.wire.segment import Nested
from lab.wire.websocket_fields import FrameField as WebSocketField

__all__ = ["NOTE_WINDOW_BYTES", "NOTE_WINDOW_RECORDS", "TRACE_BATCH_BYTES", "write_spilled"]

# Record bytes formatted into .trace text before it is written: the text is ~5 times the
# bytes, so about 1.3 MiB of text at once, one write() per batch.
TRACE_BATCH_BYTES: Final = 256 * 1024
# The records that wait for their notes: a unit that spans less than this (every HTTP/1.1
# head, every chunk, an HTTP/2 frame of the default 16 KiB, RFC 9113 §4.2) is noted on
# every record it spans. Each waiting record holds its notes too (a record of a burst of
# tokens carries ~100 chunks, ~8 KiB of notes), so 1 MiB and 1,024 records keep the
# writer at ~10 MiB however long the connection was.
NOTE_WINDOW_BYTES: Final = 1024 * 1024
NOTE_WINDOW_RECORDS: Final = 1024

_DATA_KINDS: Final = (SEND, RECV)


def write_spilled(trace: Trace, spill: SpilledRecords, out: Path) -> tuple[Path, Path]:
    """Write ``NAME.trace`` and ``NAME.pcapng`` for ``trace``, whose one connection is
    ``spill.conn``, its records those of ``spill`` (read back twice, never held whole)."""
    (conn,) = trace.connections
    if conn is not spill.conn:
        raise ValueError("the spilled records are not this trace's connection")
    out.mkdir(parents=True, exist_ok=True)
    trace_path = out / f"{trace.name}.trace"
    pcap_path = out / f"{trace.name}.pcapng"
    totals = _write_trace(trace_path, trace, spill.records())
    window = _NoteWindow(conn, spill.records(), totals)
    with pcap_path.open("wb") as f:
        write_pcapng_connection(
            f, trace.name, trace.description, conn, window, annotations=window.comment
        )
    return trace_path, pcap_path


def _write_trace(path: Path, trace: Trace, records: Iterable[Record]) -> tuple[int, int]:
    """Write the .trace; the bytes the client and the server sent, as annotation needs."""
    conn = trace.connections[0]
    offsets = {SEND: 0, RECV: 0}
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join([*header_lines(trace.name, trace.description), "", ""]))
        f.write(connection_line(0, conn) + "\n")
        batch: list[Record] = []
        held = 0
        for record in records:
            batch.append(record)
            held += len(record.data)
            if held >= TRACE_BATCH_BYTES:
                _write_records(f, batch, offsets)
                batch, held = [], 0
        _write_records(f, batch, offsets)
    sent, received = offsets[SEND], offsets[RECV]
    return (received, sent) if conn.side == "server" else (sent, received)


def _write_records(f: object, batch: list[Record], offsets: dict[str, int]) -> None:
    lines: list[str] = []
    record_lines(0, batch, offsets, lines)
    if lines:
        lines.append("")
        f.write("\n".join(lines))  # type: ignore[attr-defined]


class _NoteWindow:
    """The records, each handed on once its notes are known (or it must leave the window),
    its notes then at :meth:`comment`. Iterating it drives the annotator."""

    def __init__(
        self, conn: ConnectionTrace, records: Iterable[Record], totals: tuple[int, int]
    ) -> None:
        self.conn = conn
        self.records = records
        self.totals = totals
        # Records read and not yet handed on: (index, record), and their bytes.
        self.waiting: deque[tuple[int, Record]] = deque()
        self.waiting_bytes = 0
        # Per direction (True: from the client), where each data record starts in that
        # direction's stream and where the stream is now.
        self.spans = {True: _Spans(), False: _Spans()}
        self.offset = {True: 0, False: 0}
        self.notes: dict[int, list[str]] = {}
        self.handed: tuple[int, list[str]] = (-1, [])

    def comment(self, conn_index: int, record_index: int) -> str | None:
        index, notes = self.handed
        if record_index != index or not notes:
            return None
        return "; ".join(notes)

    def __iter__(self) -> Iterator[Record]:
        annotator = ConnectionAnnotator(self.conn, self.totals)
        for i, record in enumerate(self.records):
            self._read(i, record)
            for item in annotator.feed(i, record):
                self._note(item)
            # The newest record stays: the units it completed are noted, not those it
            # starts (it is handed on only at the end, or when the next one comes).
            while len(self.waiting) > 1 and (
                self.waiting_bytes > NOTE_WINDOW_BYTES or len(self.waiting) > NOTE_WINDOW_RECORDS
            ):
                yield self._hand_on()
        for item in annotator.finish():
            self._note(item)
        while self.waiting:
            yield self._hand_on()

    def _read(self, i: int, record: Record) -> None:
        self.waiting.append((i, record))
        self.waiting_bytes += len(record.data)
        if record.kind in _DATA_KINDS:
            from_client = self.conn.is_from_client(record)
            self.spans[from_client].add(i, self.offset[from_client])
            self.offset[from_client] += len(record.data)

    def _note(self, item: Annotated) -> None:
        seg = item.segment
        if isinstance(seg, Nested) and isinstance(seg.unit, FrameField | WebSocketField):
            return  # as AnnotatedConnection.record_notes: the frame's own note says it
        spans = self.spans[item.from_client]
        lo, starts = spans.head, spans.starts
        if lo == len(starts):
            return
        if seg.end < starts[lo] or (seg.end == starts[lo] and seg.start < seg.end and lo):
            return  # it ended in records that were handed on already
        # As AnnotatedConnection.record_notes, within the window.
        first = max(bisect_right(starts, seg.start, lo) - 1, lo)
        last = max(bisect_left(starts, seg.end, lo) - 1, first)
        note = seg.note()
        for k in range(first, min(last + 1, len(starts))):
            self.notes.setdefault(spans.index[k], []).append(note)

    def _hand_on(self) -> Record:
        i, record = self.waiting.popleft()
        self.waiting_bytes -= len(record.data)
        if record.kind in _DATA_KINDS:
            self.spans[self.conn.is_from_client(record)].drop()
        self.handed = (i, self.notes.pop(i, []))
        return record


class _Spans:
    """One direction's waiting data records, oldest first from ``head``: their indexes
    and where each starts in the direction's stream (lists, so that bisect can search)."""

    __slots__ = ("head", "index", "starts")

    def __init__(self) -> None:
        self.index: list[int] = []
        self.starts: list[int] = []
        self.head = 0

    def add(self, index: int, start: int) -> None:
        self.index.append(index)
        self.starts.append(start)

    def drop(self) -> None:
        """The oldest was handed on."""
        self.head += 1
        if self.head >= 1024 and 2 * self.head >= len(self.starts):
            del self.index[: self.head], self.starts[: self.head]
            self.head = 0
