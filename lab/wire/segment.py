"""Annotated segments: what every lab codec returns.

A :class:`Segment` names one contiguous byte range of a stream (``start`` inclusive, ``end``
exclusive, absolute offsets from the first byte fed to the decoder), what kind of protocol
unit it is, and what it means in words. Codecs subclass it with the decoded fields of their
units (a chunk size, a header field, a frame); views only need the three base attributes
and :meth:`Segment.note`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Segment"]


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int

    # A short, stable, lower-case name ("chunk-size", "chunk-data", "header-field", ...);
    # views pick a colour per kind and tests match on it.
    kind: ClassVar[str] = "segment"

    @property
    def length(self) -> int:
        return self.end - self.start

    def note(self) -> str:
        """One line saying what these bytes mean."""
        return self.kind
