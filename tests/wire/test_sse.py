"""lab.wire.sse: a vector for every rule of WHATWG's algorithm, every split, round trips,
an executable transcription of the spec, and httpx-sse side by side.

The heavy hypothesis and differential runs are in test_sse_fuzz.py (marked ``fuzz``); the
generators and helpers they share live here. httpx-sse is a test-only dependency: the tests
that need it are skipped when it is not installed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TypedDict, Unpack

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment
from lab.wire.sse import (
    BOM,
    MAX_DATA_SIZE,
    MAX_LINE_SIZE,
    Comment,
    Dispatch,
    Event,
    Field,
    Incomplete,
    SSEDecoder,
    SSEError,
    encode_comment,
    encode_event,
    parse,
)

# ------------------------------------------------------------------------------- helpers


class Limits(TypedDict, total=False):
    max_line_size: int
    max_data_size: int


@dataclass
class Outcome:
    """What the decoder made of a stream: "ok" or "error", and the details."""

    status: str
    segments: list[Segment] = field(default_factory=list)
    last_event_id: str = ""
    retry: int | None = None
    error_offset: int | None = None
    message: str = ""

    @property
    def events(self) -> list[Event]:
        return events_of(self.segments)


def events_of(segments: Sequence[Segment]) -> list[Event]:
    return [s.event for s in segments if isinstance(s, Dispatch) and s.event is not None]


def pieces(stream: bytes, cuts: Sequence[int] = ()) -> list[bytes]:
    """``stream`` cut at the given indexes (any order, repeats and 0 allowed); no empty
    pieces."""
    bounds = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def bytewise(stream: bytes) -> list[int]:
    return list(range(1, len(stream)))


def lab_outcome(
    stream: bytes, cuts: Sequence[int] = (), *, offset: int = 0, **limits: Unpack[Limits]
) -> Outcome:
    """Feed ``stream`` in pieces, then eof(); the segments, or the error with the segments
    before it. Any exception other than SSEError propagates: that is a bug."""
    decoder = SSEDecoder(offset, **limits)
    segments: list[Segment] = []
    try:
        for piece in pieces(stream, cuts):
            segments += decoder.feed(piece)
        segments += decoder.eof()
    except SSEError as exc:
        segments += exc.segments
        return Outcome("error", segments, error_offset=exc.offset, message=exc.message)
    return Outcome("ok", segments, decoder.last_event_id, decoder.retry)


def same_result(a: Outcome, b: Outcome) -> None:
    """Two runs of the decoder over the same bytes agree on everything."""
    assert (a.status, a.error_offset, a.message) == (b.status, b.error_offset, b.message)
    assert a.segments == b.segments
    assert (a.last_event_id, a.retry) == (b.last_event_id, b.retry)


def check_tiling(stream: bytes, outcome: Outcome, offset: int = 0) -> None:
    """Every byte taken is in exactly one segment, in order, and each segment's bytes are
    the kind of thing it claims to be."""
    at = offset
    for seg in outcome.segments:
        assert seg.start == at, (seg, at)
        assert seg.end > seg.start, seg
        raw = stream[seg.start - offset : seg.end - offset]
        if isinstance(seg, BOM):
            assert (seg.start, raw) == (offset, b"\xef\xbb\xbf")
        elif isinstance(seg, Incomplete):
            assert b"\r" not in raw
            assert b"\n" not in raw
            assert seg.end == offset + len(stream)
        else:
            content = raw.removesuffix(b"\n").removesuffix(b"\r")
            assert raw != content, f"{seg} does not end with its line ending"
            assert b"\r" not in content
            assert b"\n" not in content
            if isinstance(seg, Dispatch):
                assert content == b""
            elif isinstance(seg, Comment):
                assert content[:1] == b":"
            else:
                assert isinstance(seg, Field)
                assert content
                assert seg.start <= seg.name_end <= seg.value_start <= seg.value_end
                assert seg.value_end == seg.start + len(content)
        at = seg.end
    if outcome.status == "ok":
        assert at == offset + len(stream)
    else:
        assert outcome.error_offset is not None
        assert at <= outcome.error_offset


# ----------------------------------------------------------------- an executable spec


def whatwg_reference(stream: bytes) -> tuple[list[Event], str, int | None]:
    """§9.2.6 transcribed as plainly as possible, on text rather than bytes, to check the
    decoder against: (events, last event ID string, reconnection time).

    Python's ``utf-8-sig`` codec is the Encoding Standard's UTF-8 decode (one leading BOM
    dropped, U+FFFD for errors, the same number of them); the stream is decoded whole and
    then split into lines, where the decoder splits bytes first and decodes each line.
    """
    text = stream.decode("utf-8-sig", "replace")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # not followed by a line ending: not a line
    data_buffer = event_type = last_id_buffer = last_id = ""
    retry: int | None = None
    events = []
    for line in lines:
        if line == "":
            last_id = last_id_buffer
            if data_buffer == "":
                event_type = ""
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            events.append(Event(event_type or "message", data_buffer, last_id))
            data_buffer = event_type = ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                last_id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events, last_id, retry


def check_against_reference(stream: bytes, cuts: Sequence[int]) -> None:
    outcome = lab_outcome(stream, cuts)
    assert outcome.status == "ok"
    check_tiling(stream, outcome)
    assert (outcome.events, outcome.last_event_id, outcome.retry) == whatwg_reference(stream)


# ------------------------------------------------------------------------------ httpx-sse


def httpx_sse_module() -> ModuleType:
    module: ModuleType = pytest.importorskip("httpx_sse")
    return module


def httpx_sse_events(
    stream: bytes, cuts: Sequence[int] = (), content_type: str = "text/event-stream"
) -> list[tuple[str, str, str, int | None]]:
    """What httpx-sse's EventSource yields for ``stream`` as the body of a response, read
    in the same pieces: (event, data, id, retry) per event."""
    httpx_sse = httpx_sse_module()
    import httpx

    response = httpx.Response(
        200, headers={"content-type": content_type}, content=iter(pieces(stream, cuts))
    )
    return [(e.event, e.data, e.id, e.retry) for e in httpx_sse.EventSource(response).iter_sse()]


def as_httpx_sse(events: Sequence[Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.data, e.last_event_id) for e in events]


# ------------------------------------------------------------------------------- vectors

# A unit is the raw bytes of one segment and how to build the expected segment from its
# start offset.
Unit = tuple[bytes, Callable[[int], Segment]]


def line_parts(raw: bytes) -> tuple[bytes, int]:
    """(content, length of the line ending) of a raw line."""
    for ending in (b"\r\n", b"\n", b"\r"):
        if raw.endswith(ending):
            return raw[: -len(ending)], len(ending)
    raise AssertionError(f"{raw!r} has no line ending")


def fld(raw: bytes, name: str, value: str, effect: str) -> Unit:
    """A Field; the name / value offsets are worked out from the raw line."""
    content, _ = line_parts(raw)
    colon = content.find(b":")
    if colon < 0:
        name_end = value_start = len(content)
    else:
        name_end = colon
        value_start = colon + 1 + (content[colon + 1 : colon + 2] == b" ")
    return raw, lambda s: Field(
        s, s + len(raw), name, value, effect, s + name_end, s + value_start, s + len(content)
    )


def data(raw: bytes, value: str) -> Unit:
    return fld(raw, "data", value, "appended to data")


def blank(raw: bytes, event: Event | None, last_event_id: str = "") -> Unit:
    return raw, lambda s: Dispatch(s, s + len(raw), event, last_event_id)


def comment(raw: bytes, text: str) -> Unit:
    return raw, lambda s: Comment(s, s + len(raw), text)


def partial(raw: bytes, text: str) -> Unit:
    return raw, lambda s: Incomplete(s, s + len(raw), text)


def bom() -> Unit:
    return b"\xef\xbb\xbf", lambda s: BOM(s, s + 3)


def ev(data: str, type: str = "message", last_event_id: str = "") -> Event:
    return Event(type, data, last_event_id)


def vector(*units: Unit) -> tuple[bytes, list[Segment]]:
    stream = b""
    expected = []
    for raw, make in units:
        expected.append(make(len(stream)))
        stream += raw
    return stream, expected


UNKNOWN = "ignored: unknown field"

VALID: dict[str, tuple[bytes, list[Segment]]] = {
    # --- one event, spelled out with explicit offsets
    "one event": (
        b"data: hello\n\n",
        [
            Field(0, 12, "data", "hello", "appended to data", 4, 6, 11),
            Dispatch(12, 13, Event("message", "hello", ""), ""),
        ],
    ),
    "nothing at all": (b"", []),
    # --- lines: CRLF, LF, or CR not followed by LF; the ending is part of the segment
    "CRLF": vector(data(b"data: a\r\n", "a"), blank(b"\r\n", ev("a"))),
    "CR": vector(data(b"data: a\r", "a"), blank(b"\r", ev("a"))),
    "mixed line endings": vector(
        data(b"data: a\r", "a"),
        data(b"data: b\r\n", "b"),
        data(b"data: c\n", "c"),
        blank(b"\r\n", ev("a\nb\nc")),
        data(b"data: d\n", "d"),
        blank(b"\r", ev("d")),
    ),
    # CR CR LF: the first CR ends the data line (an LF does not follow it), then CRLF is a
    # blank line.
    "CR CR LF": vector(data(b"data: a\r", "a"), blank(b"\r\n", ev("a"))),
    # LF CR LF: the CR is followed by LF, so "\r\n" is one blank line, not two.
    "LF then CRLF": vector(data(b"data: a\n", "a"), blank(b"\r\n", ev("a")), blank(b"\n", None)),
    # A CR at the very end is a whole line ending: the blank line dispatches at eof().
    "CR at the end of the stream": vector(data(b"data: a\n", "a"), blank(b"\r", ev("a"))),
    # Only CR and LF end lines: VT, FF, NEL, U+2028 and U+2029 are data.
    "other line breaks are data": vector(
        data(
            b"data: a\x0bb\x0cc\xc2\x85d\xe2\x80\xa8e\xe2\x80\xa9f\n",
            "a\x0bb\x0cc\x85d\u2028e\u2029f",
        ),
        blank(b"\n", ev("a\x0bb\x0cc\x85d\u2028e\u2029f")),
    ),
    # --- comments: a line starting with ':' is ignored, and does not end the event
    "comments": vector(
        comment(b": keep-alive\n", " keep-alive"),
        comment(b":\n", ""),
        data(b"data: a\n", "a"),
        comment(b":: x: y\r\n", ": x: y"),
        data(b"data: b\n", "b"),
        blank(b"\n", ev("a\nb")),
    ),
    "a comment alone dispatches nothing": vector(comment(b":\n", ""), blank(b"\n", None)),
    # --- field parsing: name before the first ':', one leading space removed
    "one leading space removed, not two": vector(
        data(b"data:  two spaces\n", " two spaces"), blank(b"\n", ev(" two spaces"))
    ),
    "no space after the colon": vector(data(b"data:tight\n", "tight"), blank(b"\n", ev("tight"))),
    "a tab is not a space": vector(data(b"data:\tx\n", "\tx"), blank(b"\n", ev("\tx"))),
    "trailing whitespace is kept": vector(data(b"data: x \t\n", "x \t"), blank(b"\n", ev("x \t"))),
    "only the first colon separates": vector(
        data(b"data: a: b:c\n", "a: b:c"), blank(b"\n", ev("a: b:c"))
    ),
    "a space before the colon belongs to the name": vector(
        fld(b"data : x\n", "data ", "x", UNKNOWN), blank(b"\n", None)
    ),
    # No colon: the whole line is the field name, the value is empty.
    "field without a colon": vector(data(b"data\n", ""), blank(b"\n", ev(""))),
    "no colon, unknown name": vector(fld(b"hello world\n", "hello world", "", UNKNOWN)),
    # --- data: append the value and LF; dispatch removes one trailing LF
    "multi-line data": vector(
        data(b"data: a\n", "a"),
        data(b"data: b\n", "b"),
        data(b"data: c\n", "c"),
        blank(b"\n", ev("a\nb\nc")),
    ),
    # The buffer is "\n" after one empty data line: not empty, so an event with data "".
    "empty data is dispatched": vector(data(b"data:\n", ""), blank(b"\n", ev(""))),
    "two empty data lines": vector(
        data(b"data:\n", ""), data(b"data\n", ""), blank(b"\n", ev("\n"))
    ),
    # Buffer "a\n\n": only the last LF goes.
    "trailing LF removed once": vector(
        data(b"data: a\n", "a"), data(b"data:\n", ""), blank(b"\n", ev("a\n"))
    ),
    "leading empty data line": vector(
        data(b"data:\n", ""), data(b"data: a\n", "a"), blank(b"\n", ev("\na"))
    ),
    "NUL in data is kept": vector(data(b"data: a\x00b\n", "a\x00b"), blank(b"\n", ev("a\x00b"))),
    # --- event: sets the type; default "message"; reset after each dispatch
    "event type": vector(
        fld(b"event: add\n", "event", "add", "event type set"),
        data(b"data: 73857293\n", "73857293"),
        blank(b"\n", ev("73857293", "add")),
        data(b"data: 2\n", "2"),
        blank(b"\n", ev("2")),
    ),
    "last event type wins": vector(
        fld(b"event: a\n", "event", "a", "event type set"),
        fld(b"event: b\n", "event", "b", "event type set"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x", "b")),
    ),
    "empty event type means message": vector(
        fld(b"event: a\n", "event", "a", "event type set"),
        fld(b"event:\n", "event", "", "event type set"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x")),
    ),
    "event type keeps spaces and NUL": vector(
        fld(b"event:  a\x00b \n", "event", " a\x00b ", "event type set"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x", " a\x00b ")),
    ),
    # Step b empties the type buffer too, so the type does not leak into the next event.
    "type reset by a blank line that dispatches nothing": vector(
        fld(b"event: add\n", "event", "add", "event type set"),
        blank(b"\n", None),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x")),
    ),
    # --- id: the last event ID buffer, applied at every blank line, never reset by one
    "id persists across events": vector(
        fld(b"id: 1\n", "id", "1", "last event ID set"),
        data(b"data: a\n", "a"),
        blank(b"\n", ev("a", last_event_id="1"), "1"),
        data(b"data: b\n", "b"),
        blank(b"\n", ev("b", last_event_id="1"), "1"),
    ),
    "id after the data of its event": vector(
        data(b"data: a\n", "a"),
        fld(b"id: 5\n", "id", "5", "last event ID set"),
        blank(b"\n", ev("a", last_event_id="5"), "5"),
    ),
    "id applies when nothing is dispatched": vector(
        fld(b"id: 7\n", "id", "7", "last event ID set"),
        blank(b"\n", None, "7"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x", last_event_id="7"), "7"),
    ),
    "empty id resets": vector(
        fld(b"id: 1\n", "id", "1", "last event ID set"),
        data(b"data: a\n", "a"),
        blank(b"\n", ev("a", last_event_id="1"), "1"),
        fld(b"id\n", "id", "", "last event ID reset"),
        data(b"data: b\n", "b"),
        blank(b"\n", ev("b")),
        fld(b"id: 2\n", "id", "2", "last event ID set"),
        fld(b"id:\n", "id", "", "last event ID reset"),
        data(b"data: c\n", "c"),
        blank(b"\n", ev("c")),
    ),
    "id with NUL is ignored": vector(
        fld(b"id: 1\n", "id", "1", "last event ID set"),
        fld(b"id: 2\x003\n", "id", "2\x003", "ignored: id contains NUL"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x", last_event_id="1"), "1"),
    ),
    "id keeps spaces after the first": vector(
        fld(b"id:  a b \n", "id", " a b ", "last event ID set"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x", last_event_id=" a b "), " a b "),
    ),
    # --- retry: ASCII digits only (more in test_retry_values)
    "retry": vector(
        fld(b"retry: 3000\n", "retry", "3000", "reconnection time set to 3000 ms"),
        fld(b"retry: 1e3\n", "retry", "1e3", "ignored: retry is not all ASCII digits"),
        fld(b"retry:\n", "retry", "", "ignored: retry is empty"),
        data(b"data: x\n", "x"),
        blank(b"\n", ev("x")),
    ),
    # --- anything else is ignored; names are case-sensitive
    "unknown fields are ignored": vector(
        fld(b"foo: bar\n", "foo", "bar", UNKNOWN),
        data(b"data: x\n", "x"),
        fld(b"da-ta: y\n", "da-ta", "y", UNKNOWN),
        fld(b"data_: y\n", "data_", "y", UNKNOWN),
        blank(b"\n", ev("x")),
    ),
    "field names are case-sensitive": vector(
        fld(b"Data: x\n", "Data", "x", UNKNOWN),
        fld(b"DATA: x\n", "DATA", "x", UNKNOWN),
        fld(b"Event: e\n", "Event", "e", UNKNOWN),
        fld(b"ID: 1\n", "ID", "1", UNKNOWN),
        fld(b"Retry: 5\n", "Retry", "5", UNKNOWN),
        blank(b"\n", None),
    ),
    "a space-only line is a field": vector(fld(b" \n", " ", "", UNKNOWN), blank(b"\n", None)),
    # --- dispatch: an empty data buffer dispatches nothing
    "blank lines alone": vector(blank(b"\n", None), blank(b"\r\n", None), blank(b"\r", None)),
    "two blank lines after an event": vector(
        data(b"data: a\n", "a"), blank(b"\n", ev("a")), blank(b"\n", None)
    ),
    "event and retry alone dispatch nothing": vector(
        fld(b"event: x\n", "event", "x", "event type set"),
        fld(b"retry: 5\n", "retry", "5", "reconnection time set to 5 ms"),
        blank(b"\n", None),
    ),
    # --- the end of the stream: an event without its blank line is discarded
    "unterminated event": vector(data(b"data: a\n", "a")),
    "unterminated event after a complete one": vector(
        data(b"data: a\n", "a"), blank(b"\n", ev("a")), data(b"data: b\n", "b")
    ),
    "partial line at the end": vector(
        data(b"data: a\n", "a"), blank(b"\n", ev("a")), partial(b"data: b", "data: b")
    ),
    # "id: 9" never became a line: it is not processed at all.
    "partial id line at the end": vector(partial(b"id: 9", "id: 9")),
    # --- the BOM: one, at the very start, dropped
    "BOM": vector(bom(), data(b"data: x\n", "x"), blank(b"\n", ev("x"))),
    "BOM then a blank line": vector(bom(), blank(b"\n", None)),
    "BOM alone": vector(bom()),
    "a second BOM is part of the first field name": vector(
        bom(), fld(b"\xef\xbb\xbfdata: x\n", "\ufeffdata", "x", UNKNOWN), blank(b"\n", None)
    ),
    "a BOM later in the stream is text": vector(
        data(b"data: a\n", "a"),
        blank(b"\n", ev("a")),
        fld(b"\xef\xbb\xbfdata: b\n", "\ufeffdata", "b", UNKNOWN),
        blank(b"\n", None),
    ),
    "two bytes of a BOM are not a BOM": vector(
        fld(b"\xef\xbbdata: x\n", "\ufffddata", "x", UNKNOWN), blank(b"\n", None)
    ),
    "part of a BOM at the end": vector(partial(b"\xef\xbb", "\ufffd")),
    "a BOM in a value is kept": vector(
        data(b"data: \xef\xbb\xbfx\n", "\ufeffx"), blank(b"\n", ev("\ufeffx"))
    ),
    # --- UTF-8: decoded per line, U+FFFD for anything that is not UTF-8
    "UTF-8": vector(
        data("data: café ☕ 🙂\n".encode(), "café ☕ 🙂"),
        blank(b"\n", ev("café ☕ 🙂")),
    ),
    # One U+FFFD per maximal subpart (Encoding Standard): a truncated sequence is one, a
    # surrogate or an overlong form is one per byte.
    "invalid UTF-8": vector(
        data(b"data: \xff\xfe\n", "\ufffd\ufffd"),
        data(b"data: \xe2\x82\n", "\ufffd"),
        data(b"data: \xe2\x82x\n", "\ufffdx"),
        data(b"data: \xed\xa0\x80\n", "\ufffd\ufffd\ufffd"),
        data(b"data: \xc0\xaf\n", "\ufffd\ufffd"),
        data(b"data: \xf0\x9f\x99\n", "\ufffd"),
        data(b"data: \xf4\x90\x80\x80\n", "\ufffd\ufffd\ufffd\ufffd"),
        blank(b"\n", ev("\n".join(
            ["\ufffd" * 2, "\ufffd", "\ufffdx", "\ufffd" * 3, "\ufffd" * 2, "\ufffd", "\ufffd" * 4]
        ))),
    ),
    "invalid UTF-8 in a name": vector(
        fld(b"\xffdata: x\n", "\ufffddata", "x", UNKNOWN),
        comment(b":\x80\n", "\ufffd"),
        partial(b"\xe2\x82", "\ufffd"),
    ),
    # An invalid byte never swallows the line ending or the colon.
    "a truncated character before the colon": vector(
        fld(b"id\xe2: 1\n", "id\ufffd", "1", UNKNOWN), blank(b"\n", None)
    ),
}  # fmt: skip

# Streams that break a limit: decoded with these small limits so that every split of
# them stays quick. (stream, error offset, message, segments before the error).
LIMITS: Limits = {"max_line_size": 16, "max_data_size": 24}

TOO_LONG_LINE = "line longer than 16 bytes (MAX_LINE_SIZE)"
TOO_MUCH_DATA = "event data longer than 24 bytes (MAX_DATA_SIZE)"

INVALID: dict[str, tuple[bytes, int, str, list[Segment]]] = {
    "line over the limit": (b"data: 0123456789a\n\n", 16, TOO_LONG_LINE, []),
    "line over the limit, no line ending yet": (b"x" * 17, 16, TOO_LONG_LINE, []),
    "comment over the limit": (b":" + b"c" * 16 + b"\r\n", 16, TOO_LONG_LINE, []),
    "line over the limit ending in CR": (b"data: 0123456789a\r", 16, TOO_LONG_LINE, []),
    "long line after an event": (
        b"data: a\n\n" + b"x" * 40 + b"\n",
        9 + 16,
        TOO_LONG_LINE,
        vector(data(b"data: a\n", "a"), blank(b"\n", ev("a")))[1],
    ),
    # The data buffer: 11 + 11 bytes, then "ab" + LF would make 25: the LF does not fit.
    "data buffer over the limit at the line ending": (
        b"data: 0123456789\ndata: 0123456789\ndata: ab\n\n",
        34 + 8,
        TOO_MUCH_DATA,
        vector(*[data(b"data: 0123456789\n", "0123456789")] * 2)[1],
    ),
    "data buffer over the limit inside a value": (
        b"data: 0123456789\ndata: 0123456789\ndata: abcd\n\n",
        34 + 8,
        TOO_MUCH_DATA,
        vector(*[data(b"data: 0123456789\n", "0123456789")] * 2)[1],
    ),
    "data buffer over the limit, CR at the end": (
        b"data: 0123456789\rdata: 0123456789\rdata: abcd\r",
        34 + 8,
        TOO_MUCH_DATA,
        vector(*[data(b"data: 0123456789\r", "0123456789")] * 2)[1],
    ),
}  # fmt: skip

# Within the limits: the same decoder settings as INVALID, streams that just fit.
AT_THE_LIMITS = {
    "line exactly at the limit": vector(data(b"data: 0123456789\n", "0123456789")),
    "CRLF after a line at the limit": vector(data(b"data: 0123456789\r\n", "0123456789")),
    "data buffer exactly full": vector(
        data(b"data: 0123456789\n", "0123456789"),
        data(b"data: 0123456789\n", "0123456789"),
        data(b"data: a\n", "a"),
        blank(b"\n", ev("0123456789\n0123456789\na")),
    ),
    "data buffer emptied by each dispatch": vector(
        data(b"data: 0123456789\n", "0123456789"),
        data(b"data: 0123456789\n", "0123456789"),
        blank(b"\n", ev("0123456789\n0123456789")),
        data(b"data: 0123456789\n", "0123456789"),
        data(b"data: 0123456789\n", "0123456789"),
        blank(b"\n", ev("0123456789\n0123456789")),
    ),
    # Comments and other fields do not fill the data buffer.
    "only data counts": vector(
        fld(b"event: 012345678\n", "event", "012345678", "event type set"),
        comment(b":0123456789abcde\n", "0123456789abcde"),
        data(b"data: 0123456789\n", "0123456789"),
        data(b"data: 0123456789\n", "0123456789"),
        blank(b"\n", ev("0123456789\n0123456789", "012345678")),
    ),
}

ALL_STREAMS: list[tuple[bytes, Limits]] = (
    [(stream, Limits()) for stream, _ in VALID.values()]
    + [(stream, LIMITS) for stream, *_ in INVALID.values()]
    + [(stream, LIMITS) for stream, _ in AT_THE_LIMITS.values()]
)


# --------------------------------------------------------------------- vectors, every split


@pytest.mark.parametrize(("stream", "expected"), VALID.values(), ids=VALID.keys())
def test_vector_whole(stream: bytes, expected: list[Segment]) -> None:
    decoder = SSEDecoder()
    segments = decoder.feed(stream)
    segments += decoder.eof()
    assert segments == expected
    assert decoder.offset == len(stream)
    assert decoder.buffered == 0
    check_tiling(stream, lab_outcome(stream))
    assert parse(stream) == events_of(expected)
    for seg in segments:
        assert repr(seg)  # every slot is set, however the segment was built
        assert seg.note()


@pytest.mark.parametrize(("stream", "expected"), VALID.values(), ids=VALID.keys())
def test_vector_byte_by_byte(stream: bytes, expected: list[Segment]) -> None:
    outcome = lab_outcome(stream, bytewise(stream))
    assert outcome.status == "ok"
    assert outcome.segments == expected
    same_result(lab_outcome(stream), outcome)


@pytest.mark.parametrize(("stream", "expected"), VALID.values(), ids=VALID.keys())
def test_vector_against_the_executable_spec(stream: bytes, expected: list[Segment]) -> None:
    events, last_event_id, retry = whatwg_reference(stream)
    outcome = lab_outcome(stream)
    assert events == events_of(expected)
    assert (outcome.last_event_id, outcome.retry) == (last_event_id, retry)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_STREAMS), st.lists(st.integers(0, 20_000), max_size=8))
def test_any_split_of_any_vector(case: tuple[bytes, Limits], cuts: list[int]) -> None:
    """Whole input and input cut anywhere give the same segments, or the same error."""
    stream, limits = case
    whole = lab_outcome(stream, **limits)
    split = lab_outcome(stream, [c % (len(stream) + 1) for c in cuts], **limits)
    same_result(whole, split)
    check_tiling(stream, split)


@pytest.mark.parametrize(("stream", "expected"), AT_THE_LIMITS.values(), ids=AT_THE_LIMITS.keys())
def test_at_the_limits(stream: bytes, expected: list[Segment]) -> None:
    for cuts in ([], bytewise(stream)):
        outcome = lab_outcome(stream, cuts, **LIMITS)
        assert outcome.status == "ok"
        assert outcome.segments == expected


@pytest.mark.parametrize(
    ("stream", "offset", "message", "before"), INVALID.values(), ids=INVALID.keys()
)
def test_over_the_limits(stream: bytes, offset: int, message: str, before: list[Segment]) -> None:
    """Refused at the first byte past the limit, with the segments before it, however the
    stream is split; and everything before that byte is accepted."""
    for cuts in ([], bytewise(stream)):
        outcome = lab_outcome(stream, cuts, **LIMITS)
        assert outcome.status == "error"
        assert (outcome.error_offset, outcome.message) == (offset, message)
        assert outcome.segments == before
    assert lab_outcome(stream[:offset], **LIMITS).status == "ok"


# ------------------------------------------------------------------------ decoder state


RETRY_VALUES = {
    b"1000": 1000,
    b"0": 0,
    b"007": 7,
    b"99999999999999999999999": 99999999999999999999999,  # no upper bound in the spec
    b"1e3": None,
    b" 1000": None,  # "retry:  1000": the value keeps its second space
    b"1000 ": None,
    b"-1": None,
    b"+5": None,
    b"1_000": None,
    b"1.5": None,
    b"0x10": None,
    "١٢".encode(): None,  # Arabic-Indic digits: digits, but not ASCII digits
    "１２".encode(): None,  # fullwidth digits
    b"": None,
}


@pytest.mark.parametrize(("value", "expected"), RETRY_VALUES.items(), ids=repr)
def test_retry_values(value: bytes, expected: int | None) -> None:
    for stream in (b"retry: " + value + b"\n", b"retry: " + value + b"\r\n"):
        decoder = SSEDecoder()
        [seg] = decoder.feed(stream)
        assert isinstance(seg, Field)
        assert decoder.retry == expected
        if expected is None:
            assert seg.effect.startswith("ignored: retry is")
        else:
            assert seg.effect == f"reconnection time set to {expected} ms"
        assert whatwg_reference(stream)[2] == expected


def test_retry_without_colon_is_ignored_and_keeps_the_old_value() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 5\nretry\nretry: x\n\n")
    assert decoder.retry == 5


def test_last_event_id_is_the_event_sources() -> None:
    """last_event_id is what a reconnection would send: the ``id`` of the last event that
    got its blank line, not one still waiting for it."""
    decoder = SSEDecoder()
    assert decoder.last_event_id == ""
    decoder.feed(b"id: 1\n")
    assert decoder.last_event_id == ""  # only in the buffer so far
    decoder.feed(b"\n")
    assert decoder.last_event_id == "1"  # applied, though nothing was dispatched
    decoder.feed(b"id: 2\ndata: x\n")
    assert decoder.eof() == []
    assert decoder.last_event_id == "1"  # the unterminated event's id was never applied


def test_a_reconnection_starts_from_the_previous_last_event_id() -> None:
    decoder = SSEDecoder(last_event_id="41")
    assert decoder.last_event_id == "41"
    assert decoder.feed(b"data: x\n") != []
    assert decoder.eof() == []
    assert decoder.last_event_id == "41"  # nothing dispatched: still the old one
    decoder = SSEDecoder(last_event_id="41")
    segments = decoder.feed(b"data: a\n\nid\ndata: b\n\n")
    assert events_of(segments) == [ev("a", last_event_id="41"), ev("b")]


def test_unterminated_event_is_discarded_not_carried_over() -> None:
    assert parse(b"data: a\n") == []
    assert parse(b"data: a\n\ndata: b\ndata: c") == [ev("a")]
    assert parse(b"event: x\ndata: a") == []


# ------------------------------------------------------------------- how lines are held


def test_a_cr_at_the_end_of_a_read_waits_for_the_next_byte() -> None:
    """CR or CRLF? The line is held until the next byte says; then its segment covers the
    whole line ending, exactly as if the stream had come in one piece."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.buffered == 8
    assert decoder.feed(b"\n") == [Field(0, 9, "data", "a", "appended to data", 4, 6, 7)]
    assert decoder.buffered == 0
    assert decoder.feed(b"\r") == []
    # Not an LF: the CR was the whole line ending; 'x' starts the next line.
    assert decoder.feed(b"x") == [Dispatch(9, 10, ev("a"), "")]
    assert decoder.buffered == 1
    assert decoder.feed(b"\r") == []
    assert decoder.eof() == [Field(10, 12, "x", "", UNKNOWN, 11, 11, 11)]


def test_a_cr_only_stream_dispatches_when_the_next_byte_arrives() -> None:
    """The cost of holding a final CR: on a stream whose lines end in bare CRs, an event
    whose last CR ends a read comes out with the next read (or at eof). A browser would
    dispatch it at once; the events are the same."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\r\r") == [Field(0, 8, "data", "1", "appended to data", 4, 6, 7)]
    assert decoder.feed(b"data: 2\r\r") == [
        Dispatch(8, 9, ev("1"), ""),
        Field(9, 17, "data", "2", "appended to data", 13, 15, 16),
    ]
    assert decoder.eof() == [Dispatch(17, 18, ev("2"), "")]


def test_a_character_split_across_reads() -> None:
    stream = "data: 🙂\n\n".encode()
    for cut in range(1, len(stream)):
        assert lab_outcome(stream, [cut]).events == [ev("🙂")]


def test_bom_split_across_reads() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb") == []
    assert decoder.buffered == 2
    assert decoder.feed(b"\xbfd") == [BOM(0, 3)]
    assert decoder.feed(b"ata: x\n\n") == [
        Field(3, 11, "data", "x", "appended to data", 7, 9, 10),
        Dispatch(11, 12, ev("x"), ""),
    ]


def test_no_rescanning_a_line_that_trickles_in() -> None:
    """A long line fed one byte at a time is held once, not rescanned from its start:
    time linear in its length (checked by the buffer, which only ever grows by one)."""
    decoder = SSEDecoder(max_line_size=2000)
    decoder.feed(b"data: ")
    for i in range(1994):
        assert decoder.feed(b"x") == []
        assert decoder.buffered == 7 + i
    [field_seg, dispatch] = decoder.feed(b"\n\n")
    assert isinstance(field_seg, Field)
    assert dispatch == Dispatch(2001, 2002, ev("x" * 1994), "")


def test_offsets_start_where_the_stream_starts() -> None:
    """A stream that starts at byte 1000 of a body: segments and errors say so."""
    stream, expected = VALID["mixed line endings"]
    outcome = lab_outcome(stream, offset=1000)
    assert [(s.start - 1000, s.end - 1000) for s in outcome.segments] == [
        (s.start, s.end) for s in expected
    ]
    check_tiling(stream, outcome, 1000)
    stream, offset, _, _ = INVALID["long line after an event"]
    for cuts in ([], bytewise(stream)):
        assert lab_outcome(stream, cuts, offset=1000, **LIMITS).error_offset == 1000 + offset
    assert SSEDecoder(7).feed(b"\xef\xbb\xbf") == [BOM(7, 10)]


def test_feed_accepts_bytearray_and_memoryview_and_ignores_empty_feeds() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(bytearray(b"data: x\n")) == [  # type: ignore[arg-type]
        Field(0, 8, "data", "x", "appended to data", 4, 6, 7)
    ]
    assert decoder.feed(memoryview(b"\n")) == [Dispatch(8, 9, ev("x"), "")]  # type: ignore[arg-type]
    assert decoder.feed(b"") == []


def test_eof_twice_and_feed_after_eof() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: x")
    assert decoder.eof() == [Incomplete(0, 7, "data: x")]
    assert decoder.eof() == []
    with pytest.raises(RuntimeError, match="already ended"):
        decoder.feed(b"\n\n")


def test_a_failed_decoder_refuses_more_input() -> None:
    decoder = SSEDecoder(max_line_size=4)
    with pytest.raises(SSEError) as info:
        decoder.feed(b"data: x\n")
    assert isinstance(info.value, ProtocolError)
    assert info.value.offset == 4
    with pytest.raises(SSEError, match="already failed") as again:
        decoder.feed(b"\n")
    assert again.value.offset == 4
    with pytest.raises(SSEError, match="already failed"):
        decoder.eof()


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEDecoder(max_line_size=0)
    with pytest.raises(ValueError, match="positive"):
        SSEDecoder(max_data_size=0)


# ---------------------------------------------------------------- the default limits


def reads(stream: bytes, size: int = 64 * 1024) -> list[int]:
    return list(range(size, len(stream), size))


def test_a_line_of_max_line_size_is_accepted() -> None:
    value = b"x" * (MAX_LINE_SIZE - len(b"data: "))
    stream = b"data: " + value + b"\r\n\r\n"
    for cuts in ([], reads(stream), [len(stream) - 3]):  # the last: CR held at the limit
        outcome = lab_outcome(stream, cuts)
        assert outcome.status == "ok"
        assert outcome.events == [ev(value.decode())]


def test_a_line_one_byte_longer_is_refused_as_it_arrives() -> None:
    stream = b"data: " + b"x" * (MAX_LINE_SIZE - 5) + b"\n\n"
    for cuts in ([], reads(stream)):
        outcome = lab_outcome(stream, cuts)
        assert (outcome.status, outcome.error_offset) == ("error", MAX_LINE_SIZE)
    decoder = SSEDecoder()
    read = pieces(stream, reads(stream))
    for piece in read[:-1]:
        decoder.feed(piece)
        assert decoder.buffered <= MAX_LINE_SIZE
    with pytest.raises(SSEError, match="MAX_LINE_SIZE"):
        decoder.feed(read[-1])


def test_a_stream_without_line_ends_is_refused_at_the_limit() -> None:
    decoder = SSEDecoder()
    chunk = b"y" * 65536
    while decoder.offset + len(chunk) <= MAX_LINE_SIZE:
        assert decoder.feed(chunk) == []
        assert decoder.buffered == decoder.offset
    with pytest.raises(SSEError, match="MAX_LINE_SIZE") as info:
        decoder.feed(chunk)
    assert info.value.offset == MAX_LINE_SIZE


def test_an_event_of_max_data_size_is_accepted_and_one_more_byte_refused() -> None:
    """Two maximal data lines fill the data buffer exactly; one more byte of data (in
    yet another line) is refused at that byte."""
    value = b"z" * (MAX_LINE_SIZE - len(b"data: "))
    line = b"data: " + value + b"\n"  # adds len(value) + 1 to the buffer
    assert 2 * (len(value) + 1) <= MAX_DATA_SIZE
    filler = MAX_DATA_SIZE - 2 * (len(value) + 1) - 1  # a third line that just fits
    third = b"data: " + b"z" * filler + b"\n"
    outcome = lab_outcome(line + line + third + b"\n", reads(line * 3))
    assert outcome.status == "ok"
    assert len(outcome.events[0].data) == MAX_DATA_SIZE - 1  # minus the final LF
    third = b"data: " + b"z" * (filler + 1) + b"\n"
    outcome = lab_outcome(line + line + third + b"\n")
    assert outcome.status == "error"
    # The value fits; the LF it appends does not: refused at the line ending.
    assert outcome.error_offset == 2 * len(line) + len(third) - 1


# ---------------------------------------------------------------------- notes and kinds


def test_notes() -> None:
    assert BOM(0, 3).note() == "byte order mark (U+FEFF): dropped by UTF-8 decode"
    assert Comment(0, 4, " hi").note() == "comment ' hi': ignored"
    assert Field(0, 8, "data", "x", "appended to data", 4, 6, 7).note() == (
        "field 'data' = 'x': appended to data"
    )
    assert Field(0, 8, "Data", "x", UNKNOWN, 4, 6, 7).note() == (
        "field 'Data' = 'x': ignored: unknown field (names are case-sensitive: this is not 'data')"
    )
    assert Field(0, 9, "id", "", "last event ID reset", 2, 3, 3).note().endswith("reset")
    long_value = "v" * 100
    assert Field(0, 107, "data", long_value, "appended to data", 4, 6, 106).note() == (
        f"field 'data' = {'v' * 60!r}...: appended to data"
    )
    assert Dispatch(0, 1, ev("hello", "token", "41"), "41").note() == (
        "blank line: dispatch a 'token' event, 5 characters of data; last event ID '41'"
    )
    assert Dispatch(0, 1, ev(""), "").note() == (
        "blank line: dispatch a 'message' event, 0 characters of data; last event ID ''"
    )
    assert Dispatch(0, 1, None, "7").note() == (
        "blank line: nothing dispatched (the data buffer is empty); last event ID '7'"
    )
    assert Incomplete(0, 7, "data: x").note() == (
        "'data: x' discarded at end of stream: no line ending after it"
    )
    kinds: list[type[Segment]] = [BOM, Comment, Field, Dispatch, Incomplete]
    assert [k.kind for k in kinds] == [
        "sse-bom",
        "sse-comment",
        "sse-field",
        "sse-dispatch",
        "sse-incomplete",
    ]


def test_segments_and_events_are_frozen_and_slotted() -> None:
    decoder = SSEDecoder()
    segments = decoder.feed(b"data: x\n\n")
    assert segments == [
        Field(0, 8, "data", "x", "appended to data", 4, 6, 7),
        Dispatch(8, 9, Event("message", "x", ""), ""),
    ]
    for obj, attribute in [(segments[0], "value"), (segments[1], "start"), (ev("x"), "data")]:
        assert not hasattr(obj, "__dict__")
        with pytest.raises(AttributeError):
            setattr(obj, attribute, "changed")
    # Built by the decoder's fast path or by __init__, they hash and compare alike.
    assert hash(segments[1]) == hash(Dispatch(8, 9, Event("message", "x", ""), ""))
    assert len({ev("a"), Event("message", "a", "")}) == 1


# ------------------------------------------------------------------------- the encoder


def test_encode_event_exact_bytes() -> None:
    assert encode_event("hello") == b"data: hello\n\n"
    assert encode_event() == b"data:\n\n"
    assert encode_event("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert encode_event("\n") == b"data:\ndata:\n\n"
    assert encode_event("  x") == b"data:   x\n\n"
    assert encode_event("x", event="add", id="41", retry=3000) == (
        b"event: add\nid: 41\nretry: 3000\ndata: x\n\n"
    )
    assert encode_event("x", event="", id="") == b"event:\nid:\ndata: x\n\n"
    assert encode_event("x", id="1", line_ending="\r\n") == b"id: 1\r\ndata: x\r\n\r\n"
    assert encode_event("a\nb", line_ending="\r") == b"data: a\rdata: b\r\r"
    assert encode_event("café") == "data: café\n\n".encode()


def test_encode_event_empty_data_is_dispatched() -> None:
    """data="" writes one empty data line, so a browser dispatches an event with data ""
    (the MCP priming event: an id and empty data)."""
    assert parse(encode_event(id="prime-1")) == [ev("", last_event_id="prime-1")]


def test_encode_comment() -> None:
    assert encode_comment() == b":\n"
    assert encode_comment(" ping") == b": ping\n"
    assert encode_comment("x", line_ending="\r\n") == b":x\r\n"
    [seg] = SSEDecoder().feed(encode_comment(" ping"))
    assert seg == Comment(0, 7, " ping")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: encode_event("x", event="a\nb"), ValueError, "CR or LF"),
        (lambda: encode_event("x", event="a\r"), ValueError, "CR or LF"),
        (lambda: encode_event("x", id="1\r\n"), ValueError, "CR or LF"),
        (lambda: encode_event("x", id="1\x002"), ValueError, "NUL"),
        (lambda: encode_event("x", retry=-1), ValueError, "negative"),
        (lambda: encode_event("x", retry=True), TypeError, "int"),
        (lambda: encode_event("x", retry=1.5), TypeError, "int"),  # type: ignore[arg-type]
        (lambda: encode_event("x", line_ending="\n\n"), ValueError, "line_ending"),
        (lambda: encode_event("\ud800"), ValueError, "surrogate"),
        (lambda: encode_comment("a\nb"), ValueError, "CR or LF"),
        (lambda: encode_comment("a\rb"), ValueError, "CR or LF"),
        (lambda: encode_comment("x", line_ending=""), ValueError, "line_ending"),
    ],
)
def test_encoder_refuses_what_would_not_survive(
    call: Callable[[], bytes], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------------------- generators

# Text without CR, LF (and NUL, for ids): what event types and ids can carry.
line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
id_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=12)
# Data: anything, with line breaks and leading spaces made likely.
data_text = st.lists(
    st.one_of(st.text(max_size=8), st.sampled_from(["\n", "\r\n", "\r", " ", "  ", ":"])),
    max_size=6,
).map("".join)
LINE_ENDINGS = ["\n", "\r\n", "\r"]


@dataclass(frozen=True)
class Encoded:
    """One event as encode_event() is asked to write it."""

    data: str
    event: str | None
    id: str | None
    retry: int | None
    comment: str | None  # a comment written before it


encoded_events = st.builds(
    Encoded,
    data_text,
    st.none() | line_text,
    st.none() | id_text,
    st.none() | st.integers(0, 10**12),
    st.none() | line_text,
)


def encode_all(items: Sequence[Encoded], line_ending: str) -> bytes:
    out = b""
    for item in items:
        if item.comment is not None:
            out += encode_comment(item.comment, line_ending=line_ending)
        out += encode_event(
            item.data, event=item.event, id=item.id, retry=item.retry, line_ending=line_ending
        )
    return out


def expected_events(items: Sequence[Encoded]) -> tuple[list[Event], int | None]:
    """What must come back: every event dispatched (data always has a line), line breaks
    in data as LF, type "message" for None or "", the last id carried over."""
    events = []
    last_id = ""
    retry = None
    for item in items:
        if item.id is not None:
            last_id = item.id
        if item.retry is not None:
            retry = item.retry
        data = re.sub(r"\r\n|\r", "\n", item.data)
        events.append(Event(item.event or "message", data, last_id))
    return events, retry


def check_round_trip(items: Sequence[Encoded], line_ending: str, cuts: Sequence[int]) -> None:
    stream = encode_all(items, line_ending)
    outcome = lab_outcome(stream, cuts)
    assert outcome.status == "ok"
    events, retry = expected_events(items)
    assert outcome.events == events
    assert outcome.retry == retry
    assert outcome.last_event_id == (events[-1].last_event_id if events else "")
    assert not [s for s in outcome.segments if isinstance(s, Incomplete)]


# Bytes that make random input look like an event stream often enough to reach every rule.
LEXICON = st.sampled_from(
    [
        b"data", b"data", b"event", b"id", b"retry", b"Data", b":", b":", b" ", b"  ",
        b"\n", b"\n", b"\n", b"\r", b"\r\n", b"\r\n", b"\xef\xbb\xbf", b"\xef\xbb", b"\x00",
        b"\xff", b"\xe2\x82", b"\xc3\xa9", b"1000", b"1e3", b"-1", b"x", b"message", b"\t",
    ]
)  # fmt: skip
noise = st.one_of(st.binary(max_size=60), st.lists(LEXICON, max_size=40).map(b"".join))


def cuts_for(draw: st.DataObject, stream: bytes) -> list[int]:
    return draw.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")


def check_invariant(stream: bytes, cuts: Sequence[int], **limits: Unpack[Limits]) -> None:
    """Arbitrary bytes: segments or SSEError, nothing else; the same under any split; the
    segments tile the input; the events are the executable spec's."""
    whole = lab_outcome(stream, **limits)
    split = lab_outcome(stream, cuts, **limits)
    same_result(whole, split)
    check_tiling(stream, split)
    if whole.status == "ok":
        assert (whole.events, whole.last_event_id, whole.retry) == whatwg_reference(stream)


# Field values and comment text: any bytes but CR and LF (invalid UTF-8 included).
values = st.binary(max_size=8).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def agreeable_streams(draw: st.DrawFn) -> bytes:
    """Event streams on which WHATWG and httpx-sse must agree: every event has a data line
    (difference 1), retry values are ASCII digits or letters (difference 2), no leading BOM
    (difference 3). Anything else goes: comments, unknown and case-changed names, ids with
    NUL, missing spaces, invalid UTF-8, every line ending, a partial line at the end."""
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        lines: list[bytes] = []
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["event", "id", "retry", "comment", "other"]))
            if kind == "retry":
                value = draw(st.sampled_from([b"0", b"15", b"3000", b"", b"x", b"1e3"]))
            elif kind == "id":
                value = draw(st.sampled_from([b"", b"7", b"a b", b"1\x002", b"\xff"]))
            else:
                value = draw(values)
            if kind == "comment":
                lines.append(b":" + value)
            elif kind == "other":
                lines.append(
                    draw(st.sampled_from([b"Data", b"foo", b"ID", b"data "])) + b":" + value
                )
            else:
                lines.append(kind.encode() + draw(st.sampled_from([b":", b": "])) + value)
        for _ in range(draw(st.integers(1, 3))):
            value = draw(values)
            line = draw(st.sampled_from([b"data", b"data:" + value, b"data: " + value]))
            lines.insert(draw(st.integers(0, len(lines))), line)
        lines.append(b"")
        for line in lines:
            out += line + draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    out += draw(st.sampled_from([b"", b"data: unterminated\n", b"data: partial"]))
    return out


def check_against_httpx_sse(stream: bytes, cuts: Sequence[int]) -> None:
    ours = lab_outcome(stream, cuts)
    assert ours.status == "ok"
    theirs = httpx_sse_events(stream, cuts)
    assert [t[:3] for t in theirs] == as_httpx_sse(ours.events)


# --------------------------------------------------------------------- generated, quick runs


@settings(max_examples=100, deadline=None)
@given(st.lists(encoded_events, max_size=5), st.sampled_from(LINE_ENDINGS), st.data())
def test_round_trip(items: list[Encoded], line_ending: str, draw: st.DataObject) -> None:
    stream = encode_all(items, line_ending)
    check_round_trip(items, line_ending, cuts_for(draw, stream))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_arbitrary_bytes_give_segments_or_sse_error(draw: st.DataObject) -> None:
    stream = draw.draw(noise)
    check_invariant(stream, cuts_for(draw, stream))
    check_invariant(stream, cuts_for(draw, stream), max_line_size=8, max_data_size=12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_generated_streams_against_httpx_sse(draw: st.DataObject) -> None:
    httpx_sse_module()
    stream = draw.draw(agreeable_streams())
    check_against_reference(stream, cuts_for(draw, stream))
    check_against_httpx_sse(stream, cuts_for(draw, stream))


# ---------------------------------------------- httpx-sse 0.4.3: the documented differences


# (stream, what WHATWG dispatches, what httpx-sse yields as (event, data, id)): one group
# per numbered point in the module docstring's "Where httpx-sse 0.4.3 differs".
DIFFERENCES: dict[str, tuple[bytes, list[Event], list[tuple[str, str, str]]]] = {
    "1 event type alone": (b"event: x\n\n", [], [("x", "", "")]),
    "1 id alone": (b"id: 1\n\n", [], [("message", "", "1")]),
    "1 retry alone": (b"retry: 5\n\n", [], [("message", "", "")]),
    "1 blank lines after an id": (
        b"id: 1\ndata: a\n\n\n\n",
        [ev("a", last_event_id="1")],
        [("message", "a", "1"), ("message", "", "1"), ("message", "", "1")],
    ),
    "3 leading BOM": (b"\xef\xbb\xbfdata: x\n\n", [ev("x")], []),
}


@pytest.mark.parametrize(
    ("stream", "whatwg", "httpx_sse"), DIFFERENCES.values(), ids=DIFFERENCES.keys()
)
def test_documented_difference_from_httpx_sse(
    stream: bytes, whatwg: list[Event], httpx_sse: list[tuple[str, str, str]]
) -> None:
    assert parse(stream) == whatwg
    assert whatwg_reference(stream)[0] == whatwg
    assert [t[:3] for t in httpx_sse_events(stream)] == httpx_sse


# Difference 2: retry values int() takes and WHATWG does not.
@pytest.mark.parametrize("value", [" 1000", "+5", "-1", "1_000", "١٢", "1000 "])
def test_httpx_sse_retry_goes_through_int(value: str) -> None:
    stream = f"retry: {value}\ndata: x\n\n".encode()
    [(_, _, _, retry)] = httpx_sse_events(stream)
    assert retry == int(value)
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert decoder.retry is None


def test_httpx_sse_obeys_the_charset_parameter() -> None:
    """Difference 4: WHATWG decodes UTF-8 whatever the Content-Type says."""
    stream = "data: é\n\n".encode()
    assert parse(stream) == [ev("é")]
    assert httpx_sse_events(stream, content_type="text/event-stream; charset=latin-1") == [
        ("message", "Ã©", "", None)
    ]
    assert httpx_sse_events(stream) == [("message", "é", "", None)]


def test_httpx_sse_agrees_on_the_hard_line_ending_cases() -> None:
    """Where they agree, and it is not obvious: a CR split from its LF by a read, a CR at
    the very end, characters split across reads, invalid UTF-8."""
    for stream in (
        b"data: a\r\ndata: b\r\r\n",
        b"data: a\n\r",
        "data: 🙂\xff\n\n".encode("utf-8", "surrogateescape"),
        b"data: \xe2\x82\ndata:\xed\xa0\x80\n\n",
    ):
        for cuts in ([], bytewise(stream)):
            check_against_httpx_sse(stream, cuts)
