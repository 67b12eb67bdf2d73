"""Annotated segments: what every lab codec returns.

A :class:`Segment` names one contiguous byte range of a stream (``start`` inclusive, ``end``
exclusive, absolute offsets from the first byte fed to the decoder), what kind of protocol
unit it is, and what it means in words. Codecs subclass it with the decoded fields of their
units (a chunk size, a header field, a frame); views only need the three base attributes
and :meth:`Segment.note`, and :attr:`Segment.binary` says whether to show the bytes as hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Nested", "Segment"]


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int

    # A short, stable, lower-case name ("chunk-size", "chunk-data", "header-field", ...);
    # views pick a colour per kind and tests match on it.
    kind: ClassVar[str] = "segment"
    # The unit is octets of a binary protocol (an HTTP/2 frame, an HPACK representation):
    # views show its bytes as hex. Otherwise they are text (an HTTP/1.1 head, an SSE line)
    # or content (a body), which views show as text when it is text and as hex when not.
    binary: ClassVar[bool] = False

    @property
    def nbytes(self) -> int:
        """How many bytes of the stream this segment covers (``end - start``).

        Neither ``length`` nor ``size``: an HTTP/2 frame has a Length field (its payload
        size, RFC 9113 §4.1) and a chunk has a size, and segments keep those names.
        """
        return self.end - self.start

    def note(self) -> str:
        """One line saying what these bytes mean."""
        return self.kind


@dataclass(frozen=True, slots=True)
class Nested(Segment):
    """A unit of a format carried inside another's payload (an SSE line in chunk data).

    ``start``/``end`` place it on the wire: its first byte and one past its last. When it
    straddles framing (an SSE line split over two chunks) that range includes the framing
    bytes in between, so ``data`` holds the unit's own bytes. ``unit`` is the inner
    decoder's segment, whose offsets count within the carried body (for a field of an
    HTTP/2 frame, the carrier is the stream itself, so they are wire offsets too).
    """

    unit: Segment
    data: bytes
    kind: ClassVar[str] = "nested"

    def note(self) -> str:
        return self.unit.note()
