"""The one record a connection read from a packet capture has that the lab's own traces do
not: :class:`StreamBreak`, the point where one direction stops being one stream of bytes.

A capture can miss segments (a gap) or hold two different copies of the same sequence
numbers (a conflicting retransmission); :mod:`lab.capture.pcapread_tcp` finds both. The
bytes on either side of such a point are not joined as if nothing were between them:
the record marks the place, and :func:`lab.capture.annotate.annotate_connection` shows
that direction's bytes from there on as one unparsed segment carrying the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.capture.records import Record

__all__ = ["StreamBreak"]


@dataclass(frozen=True, slots=True)
class StreamBreak(Record):
    """A break in one direction's bytes: ``kind`` is SEND or RECV (which direction, as for
    data), ``data`` is empty, and ``reason`` says what is missing or refused, and where."""

    reason: str = ""
