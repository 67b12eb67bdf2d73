"""The lab's one error tree for bad wire input.

Every codec in :mod:`lab.wire` raises only :class:`ProtocolError` (or a subclass) on input it
refuses, and the error always names the absolute byte offset, counted from the first byte
ever fed to that decoder, where the input stopped being acceptable. ``status_hint`` is the
HTTP status a server would answer with if this input came from a client (the h11 idea).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.wire.segment import Segment

__all__ = ["ProtocolError"]


class ProtocolError(Exception):
    """Input that breaks the protocol, at byte ``offset`` of the decoder's input.

    ``segments`` holds what the failing ``feed`` call had already completed before the bad
    byte, so that a viewer can show everything up to the failure and nothing is lost.
    """

    def __init__(
        self,
        message: str,
        offset: int,
        *,
        status_hint: int = 400,
        segments: Sequence[Segment] = (),
    ) -> None:
        super().__init__(message, offset)
        self.message = message
        self.offset = offset
        self.status_hint = status_hint
        self.segments: list[Segment] = list(segments)

    def __str__(self) -> str:
        return f"{self.message} (at byte offset {self.offset})"
