"""Placing the units of a body's own format (SSE lines, WebSocket frames) on the wire,
under the framing.

A body reaches the lab in pieces at known wire offsets: chunk data in HTTP/1.1, DATA frame
payloads in HTTP/2, slices of a Content-Length body. The body's own decoder (the SSE
decoder; a WebSocket decoder for the data of an RFC 8441 extended CONNECT stream) counts
offsets within the body. :class:`BodyContent` feeds the one to the other and turns each
unit it completes into a :class:`~lab.wire.segment.Nested` segment placed at the unit's
wire range.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from lab.wire.errors import ProtocolError
from lab.wire.segment import Nested, Segment

__all__ = ["BodyContent", "BodyDecoder"]


class BodyDecoder(Protocol):
    """What :class:`BodyContent` runs: any incremental decoder of the lab's kind. ``feed``
    returns the units the bytes completed, ``eof`` those the end completes; both raise
    :class:`~lab.wire.errors.ProtocolError` (with the units completed before the bad
    byte in ``segments``) on input the format forbids."""

    def feed(self, data: bytes) -> list[Segment]: ...
    def eof(self) -> list[Segment]: ...


class BodyContent:
    """Runs a body format's decoder over the body bytes and places its units on the wire.

    Body data arrives in pieces (chunk data, DATA frame payloads, or slices of a
    Content-Length body) at known wire offsets; the inner decoder counts offsets within
    the body. ``_pieces`` maps one to the other for the bytes not yet covered by an
    emitted unit, so it stays as small as the inner decoder's own buffer (an incomplete
    line, an incomplete frame).

    A unit the decoder returns already nested (a field of a WebSocket frame, after the
    frame) is placed by its own range and keeps its own unit: one level of nesting.
    """

    def __init__(self, decoder: BodyDecoder) -> None:
        self.decoder = decoder
        self.body_offset = 0  # body bytes fed so far
        self._pieces: deque[tuple[int, int, bytes]] = deque()  # (body start, wire start, data)
        self.failed: str | None = None

    def _wire(self, body_pos: int) -> int:
        for body_start, wire_start, data in self._pieces:
            if body_start <= body_pos < body_start + len(data):
                return wire_start + body_pos - body_start
        _, last_wire, last_data = self._pieces[-1]
        return last_wire + len(last_data)  # one past the end of what is known

    def _bytes(self, start: int, end: int) -> bytes:
        out = bytearray()
        for body_start, _, data in self._pieces:
            lo, hi = max(start, body_start), min(end, body_start + len(data))
            if lo < hi:
                out += data[lo - body_start : hi - body_start]
        return bytes(out)

    def _place(self, units: list[Segment]) -> list[Segment]:
        out: list[Segment] = []
        for unit in units:
            start = self._wire(unit.start)
            end = self._wire(unit.end - 1) + 1 if unit.end > unit.start else start
            inner = unit.unit if isinstance(unit, Nested) else unit
            out.append(Nested(start, end, inner, self._bytes(unit.start, unit.end)))
        if units:
            covered = max(unit.end for unit in units)
            while self._pieces and self._pieces[0][0] + len(self._pieces[0][2]) <= covered:
                self._pieces.popleft()
        return out

    def feed(self, wire_start: int, data: bytes) -> list[Segment]:
        if self.failed or not data:
            return []
        self._pieces.append((self.body_offset, wire_start, data))
        self.body_offset += len(data)
        try:
            return self._place(self.decoder.feed(data))
        except ProtocolError as exc:
            # The body's own format is broken; the HTTP framing around it is not.
            self.failed = str(exc)
            return self._place(exc.segments)

    def end(self) -> list[Segment]:
        if self.failed or not self._pieces:
            return []
        try:
            return self._place(self.decoder.eof())
        except ProtocolError as exc:  # the body ended inside a unit (a frame cut short)
            self.failed = str(exc)
            return self._place(exc.segments)
