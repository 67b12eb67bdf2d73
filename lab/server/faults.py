"""Fault boundaries: what escapes one connection or one stream stays there.

Every connection, and every HTTP/2 stream inside one, runs behind a boundary. An
exception that reaches it is a bug or a case the server did not foresee; the boundary
logs it once (one line naming the connection and stream at WARNING, the traceback at
DEBUG), and the caller ends that connection or stream the way its protocol says: a 500
if nothing of the response was sent yet, otherwise a cut response, RST_STREAM or GOAWAY
with INTERNAL_ERROR (RFC 9113 §7). The server and every other connection go on.

trio reports exceptions from inside a nursery as an exception group (strict exception
groups), so ``except SomeError`` around code that opens a nursery never matches what a
task raised. :func:`contains` and :func:`split_errors` look inside groups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Fault", "boundary", "contains", "first_of", "leaves", "split_errors"]

log = logging.getLogger("lab.server")

_E = TypeVar("_E", bound=BaseException)


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``exc``, groups flattened (``exc`` itself if not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def contains(
    exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> bool:
    """True if ``exc``, or any exception inside it when it is a group, is one of ``kinds``."""
    return any(isinstance(leaf, kinds) for leaf in leaves(exc))


def first_of(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in ``exc`` (flattening groups), or None."""
    for leaf in leaves(exc):
        if isinstance(leaf, kind):
            return leaf
    return None


def split_errors(exc: BaseException) -> tuple[Exception | None, BaseException | None]:
    """``exc`` as (its ordinary errors, what must keep propagating).

    The second part holds cancellation, KeyboardInterrupt and SystemExit: a boundary never
    swallows those, they belong to whoever cancelled or to the process.
    """
    if isinstance(exc, BaseExceptionGroup):
        errors, rest = exc.split(Exception)
        return errors, rest
    if isinstance(exc, Exception):
        return exc, None
    return None, exc


@dataclass(slots=True)
class Fault:
    """What a boundary caught: ``error`` is None while nothing escaped."""

    where: str
    error: Exception | None = None

    def __bool__(self) -> bool:
        return self.error is not None


@contextmanager
def boundary(where: str) -> Iterator[Fault]:
    """Catch and log every ordinary exception leaving the block; the caller then ends
    what ``where`` names. Cancellation and interpreter exits pass through untouched."""
    fault = Fault(where)
    try:
        yield fault
    except BaseException as exc:
        errors, rest = split_errors(exc)
        if errors is not None:
            fault.error = errors
            first = next(iter(leaves(errors)))
            log.warning("%s: internal error, ended: %r", where, first)
            log.debug("%s: traceback", where, exc_info=errors)
        if rest is not None:
            if rest is exc:
                raise
            raise rest from None
