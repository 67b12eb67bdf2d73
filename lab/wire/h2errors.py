"""The error the HTTP/2 frame codec raises: :class:`H2FrameError`, a
:class:`~lab.wire.errors.ProtocolError` that also carries the RFC 9113 §7 error code a
receiving endpoint would send in its GOAWAY (§5.4.1). HPACK's own subclass,
:class:`~lab.wire.hpack.HPACKError`, is in :mod:`lab.wire.hpack`.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.wire.errors import ProtocolError
from lab.wire.h2constants import ErrorCode, error_name
from lab.wire.segment import Segment

__all__ = ["H2FrameError"]


class H2FrameError(ProtocolError):
    """Input the frame decoder refuses, at byte ``offset``.

    ``error_code`` is the RFC 9113 §7 code a receiving endpoint would put in its GOAWAY
    (PROTOCOL_ERROR, FRAME_SIZE_ERROR, ...). ``segments`` (from :class:`ProtocolError`) holds
    what the failing :meth:`~lab.wire.h2decoder.FrameDecoder.feed` call had already
    completed.
    """

    def __init__(
        self,
        message: str,
        offset: int,
        *,
        error_code: int = ErrorCode.PROTOCOL_ERROR,
        status_hint: int = 400,
        segments: Sequence[Segment] = (),
    ) -> None:
        super().__init__(message, offset, status_hint=status_hint, segments=segments)
        self.error_code = int(error_code)

    @property
    def error_name(self) -> str:
        return error_name(self.error_code)


def _frame_error(text: str, offset: int, code: ErrorCode) -> H2FrameError:
    return H2FrameError(f"{text}: {code.name}", offset, error_code=code)
