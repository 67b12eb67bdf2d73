"""The trace data model: what one or more connections really sent and received.

A :class:`Trace` holds one :class:`ConnectionTrace` per TCP connection, each an ordered list
of :class:`Record`. One ``send``/``recv`` record is exactly one ``send_all()`` /
``receive_some()`` call on the tapped stream: neither a TCP segment nor a protocol unit
(the annotated view regroups bytes by protocol unit). Times are seconds on one monotonic
axis that starts at the trace's first ``connect``.

The records of one connection (the record kinds, :class:`Record`, :class:`ConnectionTrace`)
are defined in :mod:`lab.capture.records` and importable from here. The file format lives
in :mod:`lab.capture.fileformat`; this module is only the model, and :meth:`Trace.save`
writes through :mod:`lab.capture.filewriter`, which sits below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.capture.filewriter import trace_text
from lab.capture.records import (
    CLOSE,
    CONNECT,
    EOF,
    RECORD_KINDS,
    RECV,
    RESET,
    SEND,
    SHUTDOWN,
    ConnectionTrace,
    Record,
    Side,
)

__all__ = [
    "CLOSE",
    "CONNECT",
    "EOF",
    "RECORD_KINDS",
    "RECV",
    "RESET",
    "SEND",
    "SHUTDOWN",
    "ConnectionTrace",
    "Record",
    "Side",
    "Trace",
]


@dataclass(slots=True)
class Trace:
    name: str
    description: str = ""
    connections: list[ConnectionTrace] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            trace_text(self.name, self.description, self.connections), encoding="utf-8"
        )
