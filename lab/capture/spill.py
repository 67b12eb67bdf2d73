"""A connection's records with a bound on what is held in memory: the rest waits on disk.

A server that traces every connection (``lab serve --trace-dir``) writes each trace when
its connection closes, but a connection may live for hours (an SSE stream) and send
thousands of records a second. :class:`SpilledRecords` keeps the newest records in
``conn.records`` and, once they hold ``limit`` bytes (each record counted with
:data:`RECORD_OVERHEAD` on top of its data), appends them to a temporary file and empties
the list::

    spill = SpilledRecords(conn, directory, limit=64 * 1024)
    stream = TappedStream(socket_stream, conn, clock, sink=spill.add)
    ...
    for record in spill.records():  # every record, in order: the file's, then the list's
        ...
    spill.close()

The temporary file is made with :func:`tempfile.TemporaryFile` in ``directory`` (the
trace directory, so that the records stay on the disk that will hold their trace): it
has no name, so a server that dies leaves nothing half-written behind, and it is opened
only by the first flush, so that a quiet connection (an idle SSE stream) costs no file
descriptor.

The file holds the records as they are, each a fixed header (:data:`_HEADER`: time, kind,
length) and its bytes, not yet as ``.trace`` text: formatting a hexdump costs about as
much as serving the bytes did, so it is done when the trace is written, off the event
loop, as it was when traces were kept whole.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from lab.capture.records import RECORD_KINDS, ConnectionTrace, Record

__all__ = ["RECORD_OVERHEAD", "SpilledRecords"]

# What one held record costs beyond its data, in bytes: the Record (a slotted dataclass
# of three fields, 56), the float of its time (24), the header of its bytes object (33)
# and its slot in the list (8): ~121, measured with tracemalloc at 122 beyond the data.
# 145 errs high, so that the limit holds whatever the allocator rounds up to.
RECORD_OVERHEAD: Final = 145
# time (seconds on the trace's axis), kind (index in RECORD_KINDS), data length.
_HEADER: Final = struct.Struct("<dBI")
# Bytes read from the file at once when the records are read back.
_READ_SIZE: Final = 256 * 1024
_KIND_INDEX: Final = {kind: i for i, kind in enumerate(RECORD_KINDS)}


class SpilledRecords:
    """``conn``'s records: at most ``limit`` bytes of them in ``conn.records``, the older
    ones in a temporary file in ``directory``.

    :meth:`add` is the tap's sink. ``held`` is what the list holds now, counted as the
    limit counts it; ``peak`` the most it ever held after a record was added; ``spilled``
    the number of records in the file.
    """

    __slots__ = ("_file", "conn", "directory", "held", "limit", "peak", "spilled")

    def __init__(self, conn: ConnectionTrace, directory: Path, *, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        self.conn = conn
        self.directory = directory
        self.limit = limit
        self.held = sum(len(r.data) + RECORD_OVERHEAD for r in conn.records)
        self.peak = self.held
        self.spilled = 0
        self._file: IO[bytes] | None = None

    def add(self, record: Record) -> None:
        """Append ``record``; past the limit, move every held record to the file."""
        self.conn.records.append(record)
        self.held += len(record.data) + RECORD_OVERHEAD
        if self.held >= self.limit:
            self.flush()
        elif self.held > self.peak:
            self.peak = self.held

    def flush(self) -> None:
        """Move the held records to the file (one write) and empty the list."""
        records = self.conn.records
        if not records:
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 - closed by close()
        pack = _HEADER.pack
        index = _KIND_INDEX
        parts: list[bytes] = []
        for record in records:
            parts.append(pack(record.t, index[record.kind], len(record.data)))
            parts.append(record.data)
        self._file.write(b"".join(parts))
        self.spilled += len(records)
        records.clear()
        self.held = 0

    def records(self) -> Iterator[Record]:
        """Every record so far, in order, read back from the file as it goes."""
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            yield from _read(self._file, self.spilled)
            self._file.seek(0, 2)  # later flushes append
        yield from list(self.conn.records)

    def close(self) -> None:
        """Remove the file (its records are gone; the list keeps what it holds)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __len__(self) -> int:
        return self.spilled + len(self.conn.records)


def _read(f: IO[bytes], count: int) -> Iterator[Record]:
    kinds = RECORD_KINDS
    size = _HEADER.size
    unpack = _HEADER.unpack_from
    buffer = b""
    at = 0
    for _ in range(count):
        if len(buffer) - at < size:
            buffer, at = buffer[at:] + _more(f, size - (len(buffer) - at)), 0
        t, kind, length = unpack(buffer, at)
        at += size
        if len(buffer) - at < length:
            buffer, at = buffer[at:] + _more(f, length - (len(buffer) - at)), 0
        yield Record(t, kinds[kind], buffer[at : at + length])
        at += length


def _more(f: IO[bytes], need: int) -> bytes:
    """At least ``need`` more bytes of the file (a read of a large record takes it whole)."""
    data = f.read(max(need, _READ_SIZE))
    if len(data) < need:
        raise ValueError("the spilled records end early (the file was truncated)")
    return data
