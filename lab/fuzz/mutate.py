"""Byte mutations and a minimiser: the built-in engine's half of fuzzing, and everyone's
shrinking.

:class:`Mutator` makes a new input from one of the corpus: a few edits in a row, each one
of flipping a bit, setting a byte to a boundary value (0, 0x7f, 0x80, 0xff, CR, LF, ...),
inserting or deleting a run of bytes, repeating a slice, inserting one of the codec's
tokens (``\\r\\n``, ``data:``, a frame header), replacing a decimal or hex number with
another, or splicing in a piece of another corpus input. The edits are the usual ones of
mutation fuzzers (AFL's and libFuzzer's havoc stages); the tokens make random edits land on
the codec's grammar often enough to go deep. Everything is drawn from one
:class:`random.Random`, so a run is repeatable from its seed.

:func:`minimise` shrinks a failing input while it still fails the same way: it deletes
halves, quarters, ... down to single bytes, then tries plainer bytes in place of the rest,
and stops after :data:`MINIMISE_TRIES` attempts or :data:`MINIMISE_SECONDS`.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["MAX_INPUT_SIZE", "MINIMISE_SECONDS", "MINIMISE_TRIES", "Mutator", "minimise"]

# The longest input made: longer than any unit the limits let through in one piece that
# matters (a 1 KiB chunk extension, a frame header and its small payload), short enough
# that every execution stays in the tens of microseconds. libFuzzer's -max_len is the same.
MAX_INPUT_SIZE: Final = 4096
# Edits applied to make one new input (1 to this many): a few together reach states one
# edit cannot, more make mostly noise.
MAX_EDITS: Final = 4
# The longest run inserted or deleted in one edit.
MAX_RUN: Final = 32
# Bounds on shrinking one failing input: each attempt is one run of every check.
MINIMISE_TRIES: Final = 4000
MINIMISE_SECONDS: Final = 10.0

_BOUNDARY: Final = (0x00, 0x01, 0x09, 0x0A, 0x0D, 0x20, 0x22, 0x3A, 0x3B, 0x7F, 0x80, 0xFF)
_NUMBER: Final = re.compile(rb"[0-9a-fA-F]+")
_NUMBERS: Final = (b"0", b"1", b"7", b"10", b"ff", b"100", b"4000", b"ffff", b"ffffffff", b"-1")


class Mutator:
    """New inputs from old ones; ``tokens`` are the codec's words."""

    def __init__(self, rng: random.Random, tokens: Sequence[bytes]) -> None:
        self.rng = rng
        self.tokens = list(tokens) or [b"\r\n"]

    def mutate(self, data: bytes, corpus: Sequence[bytes]) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, MAX_EDITS)):
            self._edit(out, corpus)
        del out[MAX_INPUT_SIZE:]
        return bytes(out)

    def _edit(self, out: bytearray, corpus: Sequence[bytes]) -> None:
        rng = self.rng
        at = rng.randint(0, len(out))
        how = rng.randrange(9)
        if how == 0 and out:  # flip a bit
            i = min(at, len(out) - 1)
            out[i] ^= 1 << rng.randrange(8)
        elif how == 1 and out:  # a boundary byte
            out[min(at, len(out) - 1)] = rng.choice(_BOUNDARY)
        elif how == 2:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, MAX_RUN))
        elif how == 3 and out:  # delete a run
            del out[at : at + rng.randint(1, MAX_RUN)]
        elif how == 4 and out:  # repeat a slice
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, MAX_RUN)]
            out[at:at] = piece * rng.randint(1, 4)
        elif how in (5, 6):  # a token of the codec's grammar, inserted or overwriting
            token = rng.choice(self.tokens)
            out[at : at + (len(token) if how == 6 else 0)] = token
        elif how == 7:  # another number where a number was
            numbers = list(_NUMBER.finditer(out))
            if numbers:
                m = rng.choice(numbers)
                out[m.start() : m.end()] = rng.choice(_NUMBERS)
            else:
                out[at:at] = rng.choice(_NUMBERS)
        elif corpus:  # splice: a piece of another input
            other = rng.choice(corpus)
            if other:
                start = rng.randrange(len(other))
                out[at:] = other[start : start + rng.randint(1, 4 * MAX_RUN)] + out[at:]
        else:
            out[at:at] = rng.choice(self.tokens)


def minimise(
    data: bytes,
    still_fails: Callable[[bytes], bool],
    *,
    tries: int = MINIMISE_TRIES,
    seconds: float = MINIMISE_SECONDS,
) -> bytes:
    """The shortest, plainest input found that ``still_fails``; ``data`` itself if none."""
    deadline = time.monotonic() + seconds
    budget = [tries]

    def attempt(candidate: bytes) -> bool:
        if budget[0] <= 0 or time.monotonic() > deadline:
            return False
        budget[0] -= 1
        return still_fails(candidate)

    best = data
    size = max(1, len(best) // 2)
    while size >= 1 and budget[0] > 0:
        i = 0
        shrunk = False
        while i < len(best):
            candidate = best[:i] + best[i + size :]
            if candidate != best and attempt(candidate):
                best = candidate
                shrunk = True
            else:
                i += size
        if not shrunk:
            size //= 2
    # Plainer bytes where any byte would do: the ones left matter, the rest read as 'a'.
    for i in range(len(best)):
        if best[i] != 0x61:
            candidate = best[:i] + b"a" + best[i + 1 :]
            if attempt(candidate):
                best = candidate
    return best
