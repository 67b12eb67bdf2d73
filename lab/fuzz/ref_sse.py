"""The SSE codec against WHATWG HTML §9.2.6 read as plainly as possible, and httpx-sse 0.4.3.

**whatwg**: :func:`whatwg` is the interpretation algorithm of §9.2.6 written out on text,
the way the standard words it (decode the whole stream with UTF-8 decode, split it into
lines, process each line and field, dispatch on a blank line, discard what is pending at
the end), with none of the decoder's machinery: no buffers across reads, no segments. The
events dispatched, the last event ID string and the reconnection time must be the ones the
decoder's segments report. The decoder is checked with small limits too, which must hold
the same way at any split (:data:`SMALL_LIMITS`).

**httpx-sse**: the stream is the body of an ``httpx.Response`` with ``Content-Type:
text/event-stream``, read by ``httpx_sse.EventSource``. What it yields is not WHATWG's
events: :mod:`lab.wire.sse`'s docstring lists how httpx-sse 0.4.3 differs. So the expected
answer is computed from the decoder's own lines with those differences applied (point 1:
a blank line yields an event when the event type, data, ID or retry was set; point 2:
retry goes through ``int()``; point 3: a leading BOM stays on the first line; point 4 does
not arise, the charset is not given) and compared with httpx-sse's: event type, data, ID
and retry of every event. The decoder's line splitting and field parsing are thereby
checked against httpx-sse's, and anything that differs beyond the four points fails.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import Final

import httpx
import httpx_sse

from lab.decode import Decoded
from lab.wire.segment import Segment
from lab.wire.sse import BOM, Comment, Dispatch, Event, Field, SSEDecoder, SSEError

__all__ = ["SMALL_LIMITS", "compare_httpx_sse", "compare_small_limits", "compare_whatwg", "whatwg"]

# Limits small enough that a fuzzer's inputs cross them: a line of 8 bytes, 12 bytes of
# data in one event (the numbers the unit tests use).
SMALL_LINE: Final = 8
SMALL_DATA: Final = 12
SMALL_LIMITS: Final = f"max_line_size={SMALL_LINE}, max_data_size={SMALL_DATA}"
_RETRY_SET: Final = re.compile(r"reconnection time set to (\d+) ms")


def whatwg(stream: bytes) -> tuple[list[Event], str, int | None]:
    """§9.2.6 on text: (events dispatched, last event ID string, reconnection time)."""
    # UTF-8 decode: one leading BOM dropped, U+FFFD for what is not UTF-8 ("utf-8-sig").
    text = stream.decode("utf-8-sig", "replace")
    *lines, _partial = re.split(r"\r\n|\r|\n", text)  # the last piece has no line end
    data = event_type = id_buffer = last_event_id = ""
    retry: int | None = None
    events: list[Event] = []
    for line in lines:
        if not line:  # dispatch the event
            last_event_id = id_buffer
            if data:
                events.append(Event(event_type or "message", data.removesuffix("\n"), id_buffer))
            data = event_type = ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        value = value.removeprefix(" ") if colon else ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return events, last_event_id, retry


def _lab_state(segments: list[Segment]) -> tuple[list[Event], str, int | None]:
    events = [s.event for s in segments if isinstance(s, Dispatch) and s.event is not None]
    dispatches = [s for s in segments if isinstance(s, Dispatch)]
    retry = None
    for s in segments:
        if isinstance(s, Field) and (m := _RETRY_SET.fullmatch(s.effect)):
            retry = int(m.group(1))
    return events, dispatches[-1].last_event_id if dispatches else "", retry


def compare_whatwg(data: bytes, decoded: Decoded) -> str | None:
    if decoded.error is not None:
        return None  # only a limit: the invariants checked its offset
    ours, theirs = _lab_state(decoded.segments), whatwg(data)
    for what, a, b in zip(("events", "last event ID", "retry"), ours, theirs, strict=True):
        if a != b:
            return f"{what} differ: lab {a!r} / §9.2.6 {b!r}"
    return None


def _small(data: bytes, cuts: list[int]) -> tuple[list[Segment], tuple[int, str] | None]:
    decoder = SSEDecoder(max_line_size=SMALL_LINE, max_data_size=SMALL_DATA)
    out: list[Segment] = []
    bounds = [0, *cuts, len(data)]
    try:
        for a, b in itertools.pairwise(bounds):
            if b > a:
                out += decoder.feed(data[a:b])
        out += decoder.eof()
    except SSEError as exc:
        return out + exc.segments, (exc.offset, exc.message)
    return out, None


def compare_small_limits(data: bytes, decoded: Decoded) -> str | None:
    whole = _small(data, [])
    split = _small(data, list(range(1, len(data))))
    if whole != split:
        return f"with {SMALL_LIMITS}: whole {whole[1]} / byte by byte {split[1]}"
    segments, error = whole
    at = 0
    for seg in segments:
        if seg.start != at:
            return f"with {SMALL_LIMITS}: {seg.kind} starts at {seg.start}, not {at}"
        at = seg.end
    if error is not None and not at <= error[0] <= len(data):
        return f"with {SMALL_LIMITS}: error offset {error[0]} outside [{at}, {len(data)}]"
    return None


def _httpx_sse(stream: bytes) -> list[tuple[str, str, str, int | None]]:
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter([stream])
    )
    return [(e.event, e.data, e.id, e.retry) for e in httpx_sse.EventSource(response).iter_sse()]


def _expected_httpx_sse(segments: list[Segment]) -> list[tuple[str, str, str, int | None]]:
    """What httpx-sse yields, worked out from the decoder's lines and the four points."""
    event, data, last_id = "", list[str](), ""
    retry: int | None = None
    out: list[tuple[str, str, str, int | None]] = []
    bom = any(isinstance(s, BOM) for s in segments)
    first = True
    for seg in segments:
        if isinstance(seg, BOM):
            continue
        prefix = "\ufeff" if bom and first else ""  # point 3: the BOM stays on line one
        first = False
        if isinstance(seg, Dispatch) and not prefix:
            if event or data or last_id or retry is not None:  # point 1
                out.append((event or "message", "\n".join(data), last_id, retry))
            event, data, retry = "", [], None
            continue
        if isinstance(seg, Comment) and not prefix:
            continue
        if isinstance(seg, Field):
            name, value = prefix + seg.name, seg.value
        elif isinstance(seg, Comment):
            name, value = prefix, seg.text.removeprefix(" ")
        else:
            continue  # a BOM-prefixed blank line is a field named U+FEFF; a partial line
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry":
            with contextlib.suppress(ValueError):
                retry = int(value)  # point 2
    return out


def compare_httpx_sse(data: bytes, decoded: Decoded) -> str | None:
    if decoded.error is not None:
        return None
    ours, theirs = _expected_httpx_sse(decoded.segments), _httpx_sse(data)
    if ours != theirs:
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            if a != b:
                return f"event {i + 1} differs: lab {a!r} / httpx-sse {b!r}"
        return f"lab {len(ours)} events / httpx-sse {len(theirs)}: {ours[-3:]!r} {theirs[-3:]!r}"
    return None
