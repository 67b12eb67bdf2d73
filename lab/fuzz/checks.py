"""What every codec must do with any input, whatever its reference says.

:func:`check` runs one input through a :class:`Target`: the codec's own invariants first,
then the comparison with its reference library. The invariants, the same for every codec:

1. **Only the documented errors.** On bad input the decoder raises one of its codec's
   :attr:`~lab.decode.Codec.errors` (subclasses of :class:`~lab.wire.errors.ProtocolError`);
   any other exception is a crash.
2. **Any split gives the same segments.** The input is decoded whole, then in other reads:
   byte by byte when it is short, and at a few places picked from the input's own CRC (so a
   replay cuts it the same way). The segments (pieces of chunk data joined), the nested
   units, the error, its offset and message, and the bytes left over must all be equal.
3. **Every byte in exactly one top-level segment.** The segments that are not nested tile
   the input from its first byte, each at least one byte long, up to the end of the input
   (less the bytes after the end of a chunked body), or up to the error.
4. **Errors at a sane offset.** An error names an offset within the input (0 to its
   length), not before the end of the segments already returned (unless the codec says
   errors of that kind may: :attr:`~lab.decode.Codec.late_errors`). Nested units lie within
   the input too.

A failure is a :class:`Failure`: which check, and what differed, in words. Its
:attr:`Failure.signature` (the words with numbers taken out) tells two failures of the same
bug apart from two different bugs, so that a run keeps one reproducer per bug.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from lab.decode import Codec, Decoded, decode
from lab.wire.segment import Nested, Segment

__all__ = [
    "BYTEWISE_MAX",
    "Failure",
    "Reference",
    "Target",
    "check",
    "crash",
    "cuts_for",
    "features",
    "shape",
]

# Inputs up to this long are also fed one byte per read: every boundary at once. Longer
# ones get RANDOM_CUTS cuts instead; byte by byte would cost a call per byte per execution.
BYTEWISE_MAX: Final = 64
RANDOM_CUTS: Final = 8
# Where a message starts to quote the input or show a value: what it says comes before.
_SHOWN: Final = re.compile(r"['\"\[(]")


@dataclass(frozen=True, slots=True)
class Failure:
    """One check that did not hold: ``check`` names it (``split``, ``tiling``, ``crash``,
    or the reference's name), ``detail`` says what differed; ``key``, when given, is what
    tells this bug from others (else the detail's words up to its first colon)."""

    check: str
    detail: str
    key: str = ""

    @property
    def signature(self) -> str:
        """The check and what went wrong, without numbers or the bytes quoted: the same
        bug found with other bytes has the same signature, and a shrunk input must keep
        it."""
        what = self.key or self.detail.split(":", 1)[0]
        return f"{self.check}: {_plain(what)[:160]}"

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


# A comparison with a reference library: the input and what the lab's codec made of it
# (decoded whole), and the difference in words, or None when they agree or differ only as
# documented.
Compare = Callable[[bytes, Decoded], str | None]


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference implementation: its name and version as the differences were measured
    (``h11 0.16.0``), and how to compare with it."""

    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class Target:
    """A codec under fuzzing: the :class:`~lab.decode.Codec`, its references, the seed
    inputs, tokens for the mutator (a dictionary, in libFuzzer's words), and the modules
    whose coverage guides the search (the codec's and its references')."""

    codec: Codec
    references: tuple[Reference, ...]
    seeds: Callable[[], list[bytes]]
    tokens: tuple[bytes, ...]
    modules: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.codec.name


def _plain(text: str) -> str:
    """``text`` up to the first thing it quotes or shows (a quote, a bracket: the bytes,
    a segment's fields), its numbers each made ``#``."""
    return re.sub(r"[0-9]+", "#", _SHOWN.split(text, maxsplit=1)[0])


def cuts_for(data: bytes) -> list[list[int]]:
    """The other reads ``data`` is decoded in, a function of its bytes alone."""
    n = len(data)
    if n < 2:
        return []
    out: list[list[int]] = []
    if n <= BYTEWISE_MAX:
        out.append(list(range(1, n)))
    rng = random.Random(zlib.crc32(data))
    out.append(sorted(rng.sample(range(1, n), min(n - 1, RANDOM_CUTS))))
    return out


def _join(segments: Sequence[Segment], kinds: frozenset[str]) -> list[Segment]:
    """Adjacent pieces of one unit handed out as they arrived (chunk data) made one."""
    out: list[Segment] = []
    for seg in segments:
        prev = out[-1] if out else None
        if (
            prev is not None
            and seg.kind in kinds
            and type(prev) is type(seg)
            and prev.end == seg.start
        ):
            joined = prev.data + seg.data  # type: ignore[attr-defined]
            out[-1] = dataclasses.replace(prev, end=seg.end, data=joined)  # type: ignore[call-arg]
        else:
            out.append(seg)
    return out


def shape(decoded: Decoded) -> tuple[object, ...]:
    """What two runs over the same bytes must agree on, however the bytes were read."""
    error = decoded.error
    return (
        _join(decoded.top, decoded.codec.split_kinds),
        [s for s in decoded.segments if isinstance(s, Nested)],
        None if error is None else (type(error).__name__, error.offset, error.message),
        decoded.at_eof,
        decoded.unused,
    )


def _first_difference(a: tuple[object, ...], b: tuple[object, ...]) -> str:
    names = ("segments", "nested units", "error", "end of input", "bytes after the end")
    for name, x, y in zip(names, a, b, strict=True):
        if x == y:
            continue
        if isinstance(x, list) and isinstance(y, list):
            for i, (p, q) in enumerate(zip(x, y, strict=False)):
                if p != q:
                    return f"{name} differ at #{i}: whole {p!r} / split {q!r}"
            return f"{name}: whole has {len(x)}, split has {len(y)}"
        return f"{name}: whole {x!r} / split {y!r}"
    return "same"  # pragma: no cover - only called when the shapes differ


def _tiling(decoded: Decoded) -> str | None:
    at = 0
    for seg in decoded.top:
        if seg.start != at:
            return f"{seg.kind} [{seg.start}, {seg.end}) starts at {seg.start}, not at {at}"
        if seg.end <= seg.start:
            return f"{seg.kind} [{seg.start}, {seg.end}) is empty"
        at = seg.end
    size, error = decoded.size, decoded.error
    for seg in decoded.segments:
        if isinstance(seg, Nested) and not 0 <= seg.start <= seg.end <= size:
            return f"nested {seg.unit.kind} [{seg.start}, {seg.end}) outside the input"
    if error is None:
        if at != size - decoded.unused:
            return f"segments end at {at} of {size} bytes ({decoded.unused} after the end)"
        return None
    if not 0 <= error.offset <= size:
        return f"error offset {error.offset} outside the input of {size} bytes: {error}"
    if error.offset < at and not isinstance(error, decoded.codec.late_errors):
        return f"error offset {error.offset} inside segments that end at {at}: {error}"
    return None


def crash(exc: BaseException) -> Failure:
    """An exception no codec may raise, with where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return Failure("crash", f"{type(exc).__name__}: {exc}{where}", type(exc).__name__ + where)


def check(target: Target, data: bytes) -> tuple[Failure | None, Decoded | None]:
    """Every invariant, then every reference, on ``data``: the first failure (None if
    all hold) and the whole-input decoding (None if it crashed)."""
    codec = target.codec
    try:
        whole = decode(codec, data)
    except Exception as exc:
        return crash(exc), None
    if whole.error is not None and not isinstance(whole.error, codec.errors):
        return Failure("errors", f"undocumented {type(whole.error).__name__}: {whole.error}"), whole
    tiling = _tiling(whole)
    if tiling is not None:
        return Failure("tiling", tiling), whole
    expected = shape(whole)
    for cuts in cuts_for(data):
        try:
            split = decode(codec, data, cuts)
        except Exception as exc:
            return crash(exc), whole
        got = shape(split)
        if got != expected:
            where = "byte by byte" if len(cuts) == len(data) - 1 else f"cut at {cuts}"
            return Failure("split", f"{_first_difference(expected, got)} ({where})"), whole
    for reference in target.references:
        try:
            difference = reference.compare(data, whole)
        except Exception as exc:
            return crash(exc), whole
        if difference is not None:
            return Failure(reference.name, difference), whole
    return None, whole


def _bucket(value: object) -> str:
    """A field's value as one of a few classes: enough to tell an empty value from a
    short and a long one, 0 from 1 from many, without a feature per value."""
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return "0" if value == 0 else "1" if value == 1 else "<256" if value < 256 else "big"
    if isinstance(value, str | bytes | tuple | list):
        return "empty" if not value else "one" if len(value) == 1 else "some"
    return type(value).__name__


# Fields whose words are one of a few outcomes (what an SSE field did, how a body is
# framed): their text is the feature, numbers and quotes taken out.
_OUTCOME_FIELDS: Final = frozenset({"effect", "framing", "representation", "problem"})


def _unit_features(unit: Segment) -> list[str]:
    name = type(unit).__name__
    out = [name]
    for f in dataclasses.fields(unit):
        if f.name in ("start", "end"):
            continue
        value = getattr(unit, f.name)
        if f.name in _OUTCOME_FIELDS and isinstance(value, str):
            out.append(f"{name}.{f.name}={_plain(value)[:60]}")
        else:
            out.append(f"{name}.{f.name}={_bucket(value)}")
    return out


def features(decoded: Decoded | None) -> set[str]:
    """What this input made the codec do, in its own terms: each kind of unit with the
    classes of its fields' values (empty, one, some; 0, 1, small, big; the words of an
    outcome), which kind follows which, the error's words (numbers and quotes taken out),
    how the input ended. The built-in engine keeps an input that shows a feature no
    earlier input did."""
    if decoded is None:
        return {"crash"}
    units = [s.unit if isinstance(s, Nested) else s for s in decoded.segments]
    out = {f"pair {a.kind} {b.kind}" for a, b in itertools.pairwise(units)}
    out.update(f for unit in units for f in _unit_features(unit))
    if decoded.error is not None:
        out.add("error " + _plain(decoded.error.message)[:120])
    out.add(f"eof {decoded.at_eof} unused {bool(decoded.unused)}")
    return out
