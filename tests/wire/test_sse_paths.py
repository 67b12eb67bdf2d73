"""lab.wire.sse: the fast path against the careful one.

A read that cannot break a limit has its LF-only or CRLF-only lines interpreted in one
loop (``SSEDecoder._lines_fast``) that builds segments through mutable twins of the
segment classes. Every other line goes through ``SSEDecoder._line``, one line at a time,
as §9.2.6 words it. The tests here run the same bytes through both, the careful one by
replacing the loop with a plain ``_line`` per line, and require the very same segments
(types included), errors, last event ID and reconnection time, whole, split anywhere and
byte by byte, and the events of the executable transcription of §9.2.6 in test_sse.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.bench.sse_bench import CASES, RECV_SIZE
from lab.wire.segment import Segment
from lab.wire.sse import Dispatch, Event, Field, SSEDecoder

from .test_sse import (
    Outcome,
    bytewise,
    check_tiling,
    cuts_for,
    lab_outcome,
    noise,
    same_result,
    whatwg_reference,
)


def _careful_lines(
    self: SSEDecoder, lines: list[bytes], here: int, eol: int, out: list[Segment]
) -> int:
    """What the fast loop must be equivalent to: each line through _line."""
    for line in lines:
        self._line(line, here, eol, out)
        here += len(line) + eol
    return here


@contextlib.contextmanager
def careful() -> Iterator[None]:
    with mock.patch.object(SSEDecoder, "_lines_fast", _careful_lines):
        yield


@contextlib.contextmanager
def counting_fast_lines() -> Iterator[list[int]]:
    """Counts the lines the fast loop is given."""
    counts: list[int] = []
    fast = SSEDecoder._lines_fast

    def spy(self: SSEDecoder, lines: list[bytes], here: int, eol: int, out: list[Segment]) -> int:
        counts.append(len(lines))
        return fast(self, lines, here, eol, out)

    with mock.patch.object(SSEDecoder, "_lines_fast", spy):
        yield counts


def check_paths_agree(stream: bytes, cuts: Sequence[int]) -> None:
    """Fast and careful, whole and split, agree on everything; the segments tile the
    stream, are the real classes, and give §9.2.6's events."""
    fast_whole = lab_outcome(stream)
    fast_split = lab_outcome(stream, cuts)
    with careful():
        careful_whole = lab_outcome(stream)
        careful_split = lab_outcome(stream, cuts)
    for outcome in (fast_split, careful_whole, careful_split):
        same_result(fast_whole, outcome)
    check_tiling(stream, fast_whole)
    check_real_classes(fast_whole)
    assert fast_whole.status == "ok"  # the default limits are far away
    events = (fast_whole.events, fast_whole.last_event_id, fast_whole.retry)
    assert events == whatwg_reference(stream)


def check_real_classes(outcome: Outcome) -> None:
    """The twins the fast loop builds with never escape: each segment is of its class."""
    for seg in outcome.segments:
        assert type(seg).__name__ in {"BOM", "Comment", "Field", "Dispatch", "Incomplete"}
        assert type(seg).__module__ == "lab.wire.sse_segments"
        if type(seg) is Dispatch and seg.event is not None:
            assert type(seg.event) is Event


# Lines made to reach every branch of the fast loop and every way out of it: data, event
# and id with and without their space (and with two), without a ':', with NUL, in the wrong
# case, as a prefix of another name; comments, retry, unknown fields; a BOM in the middle.
NAMES = st.sampled_from(
    [
        b"data: ", b"data: ", b"data:", b"data:  ", b"data", b"event: ", b"event:",
        b"event", b"id: ", b"id:", b"id", b"retry: ", b"retry:", b": ", b":", b"Data: ",
        b"EVENT: ", b"eventx: ", b"ids: ", b"datas: ", b"x", b"", b"\xef\xbb\xbfdata: ",
    ]
)  # fmt: skip
VALUES = st.lists(
    st.sampled_from(
        [b"x", b"hello", b"1000", b"\x00", b"\xff", b"\xc3\xa9", b"\xe2\x82", b" ", b":", b"\t"]
    ),
    max_size=3,
).map(b"".join)
ENDINGS = st.sampled_from([b"\n", b"\n", b"\n\n", b"\r\n", b"\r\n\r\n", b"\r"])
LF_ENDINGS = st.sampled_from([b"\n", b"\n", b"\n\n"])


def _lines(endings: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    line = st.tuples(NAMES, VALUES, endings).map(b"".join)
    return st.lists(line, max_size=30).map(b"".join)


streams = st.one_of(
    _lines(LF_ENDINGS),  # one path per read: the LF loop
    _lines(st.sampled_from([b"\r\n", b"\r\n\r\n"])),  # the CRLF loop
    _lines(ENDINGS),  # mixed: mostly the careful scan
    st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf"]), _lines(LF_ENDINGS)).map(b"".join),
    noise,
)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fast_and_careful_paths_agree_at_any_split(draw: st.DataObject) -> None:
    stream = draw.draw(streams, label="stream")
    check_paths_agree(stream, cuts_for(draw, stream))


@settings(max_examples=60, deadline=None)
@given(_lines(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\n\r\n"])))
def test_fast_and_careful_paths_agree_byte_by_byte(stream: bytes) -> None:
    check_paths_agree(stream, bytewise(stream))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_paths_agree_near_the_limits(draw: st.DataObject) -> None:
    """Small limits: reads longer than a line may be take the careful path, shorter ones
    the fast path; where the limits are broken, the error and the segments before it are
    the same either way."""
    stream = draw.draw(_lines(ENDINGS), label="stream")
    cuts = cuts_for(draw, stream)
    if draw.draw(st.booleans(), label="a read per line"):
        # Each line a read of its own: the data buffer fills up over many fast reads.
        cuts += [i + 1 for i, byte in enumerate(stream) if byte == 0x0A]
    limits = {
        "max_line_size": draw.draw(st.integers(4, 40), label="max_line_size"),
        "max_data_size": draw.draw(st.integers(4, 40), label="max_data_size"),
    }
    fast = lab_outcome(stream, cuts, **limits)  # type: ignore[arg-type]
    whole = lab_outcome(stream, **limits)  # type: ignore[arg-type]
    with careful():
        slow = lab_outcome(stream, cuts, **limits)  # type: ignore[arg-type]
    same_result(fast, slow)
    same_result(fast, whole)
    check_tiling(stream, fast)
    check_real_classes(fast)


@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize(("case", "make"), CASES, ids=[case for case, _ in CASES])
def test_the_benchmark_streams_take_the_fast_path_and_agree(
    case: str, make: object, line_ending: bytes
) -> None:
    events = [make(i) for i in range(300)]  # type: ignore[operator]
    stream = b"".join(events).replace(b"\n", line_ending)
    cuts = list(range(RECV_SIZE // 8, len(stream), RECV_SIZE // 8))
    with counting_fast_lines() as counts:
        fast = lab_outcome(stream, cuts)
    # Long lines with CRLF are found with bytes.find by the careful scan: no fast loop.
    long_crlf = line_ending == b"\r\n" and case == "4 KiB data"
    assert (sum(counts) == 0) if long_crlf else (sum(counts) > len(events)), counts
    with careful():
        slow = lab_outcome(stream, cuts)
    same_result(fast, slow)
    check_real_classes(fast)
    assert len(fast.events) == 300


def test_the_data_buffer_fills_up_over_fast_reads() -> None:
    """Three reads small enough for the room left take the fast path and fill 12 of the
    20 bytes of the data buffer (three values of 3 bytes and their LFs); the fourth line
    needs 9 and fails at its ninth byte past the value's start."""
    reads = [b"data: abc\n", b"data:abc\n", b"data:  ab\n", b"data: abcdefgh\n", b"\n"]
    stream = b"".join(reads)
    cuts = [10, 19, 29, 44]
    with counting_fast_lines() as counts:
        fast = lab_outcome(stream, cuts, max_data_size=20)
    assert counts == [1, 1, 1]  # the fourth read is longer than the room left: careful
    with careful():
        slow = lab_outcome(stream, cuts, max_data_size=20)
    same_result(fast, slow)
    assert (fast.status, fast.error_offset) == ("error", 29 + 6 + 8)
    assert [s.value for s in fast.segments if isinstance(s, Field)] == ["abc", "abc", " ab"]


def test_fast_segments_are_the_real_frozen_classes() -> None:
    with counting_fast_lines() as counts:
        segments = SSEDecoder().feed(b"event: e\nid: 7\ndata: x\n\n")
    assert counts == [4]
    assert [type(s) for s in segments] == [Field, Field, Field, Dispatch]
    assert segments == [
        Field(0, 9, "event", "e", "event type set", 5, 7, 8),
        Field(9, 15, "id", "7", "last event ID set", 11, 13, 14),
        Field(15, 23, "data", "x", "appended to data", 19, 21, 22),
        Dispatch(23, 24, Event("e", "x", "7"), "7"),
    ]
    for seg in segments:
        with pytest.raises(AttributeError):
            seg.start = 1  # type: ignore[misc]
        assert hash(seg) == hash(type(seg)(*(getattr(seg, s) for s in _fields(seg))))


def _fields(seg: Segment) -> list[str]:
    return ["start", "end", *type(seg).__slots__]
