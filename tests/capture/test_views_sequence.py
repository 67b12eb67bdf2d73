"""What the sequence and timeline views must never hide, on the golden traces of the MCP,
SSE and HTTP/2 scenarios: the method, path and status; the header fields a scenario is
about; what each JSON-RPC message is; which HTTP/2 stream a piece of data belongs to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.capture.trace import Trace
from lab.capture.views import (
    KEPT_FIELDS,
    MIN_LANE_WIDTH,
    data_arrivals,
    render_sequence,
    render_timeline,
)
from lab.wire.h2frames import DataFrame, HeadersFrame
from lab.wire.http1 import BodyData, HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested
from tests.capture.test_views import shown

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"
ARROW_TEXT = re.compile(r"[─▶◀]")


def golden(name: str) -> Trace:
    return load(CAPTURES / f"{name}.trace")


def arrows(plain: str) -> list[str]:
    """Each arrow's words: its line and the lines below it that carry on its words, the
    arrow, rules and lifelines taken out, whitespace collapsed."""
    out: list[str] = []
    for line in plain.splitlines():
        if "│" not in line:
            continue
        inside = line[line.index("│") + 1 : line.rindex("│")]
        words = " ".join(ARROW_TEXT.sub(" ", inside).split())
        if line[:10].strip():  # a time: a new arrow
            out.append(words)
        elif out:
            out[-1] += " " + words
    return out


def sequence(trace: Trace, width: int = 160) -> list[str]:
    return arrows(shown(render_sequence, trace, width=width).plain)


# -- method, path and status ----------------------------------------------------------


@pytest.mark.parametrize("width", [160, MIN_LANE_WIDTH + 14])
@pytest.mark.parametrize("name", ["sse-reconnect", "mcp-tool-stream", "mcp-resume", "trailers"])
def test_start_lines_are_never_cut(name: str, width: int) -> None:
    trace = golden(name)
    words = " ".join(sequence(trace, width))
    for ac in annotate(trace):
        for seg in ac.segments(from_client=True) + ac.segments(from_client=False):
            if isinstance(seg, RequestLine):
                start = f"{seg.method} {seg.target} {seg.version}"
            elif isinstance(seg, StatusLine):
                start = f"{seg.version} {seg.status} {seg.reason}".rstrip()
            else:
                continue
            # A narrow lane wraps a long target onto the next line; nothing of it is lost.
            assert start.replace(" ", "") in words.replace(" ", ""), (name, width, start)


def test_h2_heads_show_method_path_and_status() -> None:
    trace = golden("h2-multiplex")
    words = sequence(trace)
    (ac,) = annotate(trace)
    for from_client in (True, False):
        for frame in ac.segments(from_client=from_client):
            if not isinstance(frame, HeadersFrame) or frame.block is None:
                continue
            fields = dict(frame.block.headers)
            if from_client:
                what = f"{fields[b':method'].decode()} {fields[b':path'].decode()}"
            else:
                what = f"status {fields[b':status'].decode()}"
            assert any(f"HEADERS stream {frame.stream_id}" in w and what in w for w in words)


# -- the fields a scenario is about -----------------------------------------------------


def test_last_event_id_is_shown_on_the_reconnect() -> None:
    trace = golden("sse-reconnect")
    words = sequence(trace)
    resumed = [
        f"{seg.name}: {seg.value}"
        for ac in annotate(trace)
        for seg in ac.segments(from_client=True)
        if isinstance(seg, HeaderField) and seg.name.lower() == "last-event-id"
    ]
    assert resumed  # the client sent it when it reconnected
    for field in resumed:
        assert sum(field in w and w.startswith("GET /events") for w in words) >= 1


@pytest.mark.parametrize("name", ["mcp-initialize", "mcp-tool-stream", "mcp-resume"])
def test_kept_fields_are_all_shown_and_the_rest_counted(name: str) -> None:
    trace = golden(name)
    # Every head, in the order the bytes moved: its start line and its fields.
    heads: list[tuple[str, list[HeaderField]]] = []
    for ac in annotate(trace):
        for item in ac.items:
            seg = item.segment
            if isinstance(seg, RequestLine):
                heads.append((f"{seg.method} {seg.target} {seg.version}", []))
            elif isinstance(seg, StatusLine):
                heads.append((f"{seg.version} {seg.status} {seg.reason}", []))
            elif isinstance(seg, HeaderField):
                heads[-1][1].append(seg)
    shown_heads = [
        w for w in sequence(trace) if re.match(r"(POST|GET|DELETE) /|HTTP/1\.1 \d{3}", w)
    ]
    assert len(shown_heads) == len(heads)
    for (start, fields), words in zip(heads, shown_heads, strict=True):
        assert words.startswith(start)
        types = [f.value for f in fields if f.name.lower() == "content-type"]
        event_stream = any(t.startswith("text/event-stream") for t in types)
        kept = [
            f
            for f in fields
            if f.name.lower() in KEPT_FIELDS or (event_stream and f.name.lower() == "cache-control")
        ]
        for f in kept:
            assert f"{f.name}: {f.value}" in words
        folded = len(fields) - len(kept)
        if folded:
            # Counted, or at least begun: the count is the one part that may be cut.
            count = f"+ {folded} header field{'s' if folded > 1 else ''}"
            assert count in words or re.search(r"\+ \d* ?[a-z ]*…", words), (count, words)
        else:
            assert "header field" not in words


def test_mcp_session_and_version_are_never_folded() -> None:
    trace = golden("mcp-initialize")
    words = sequence(trace)
    (ac,) = annotate(trace)
    session = next(
        seg.value
        for seg in ac.segments(from_client=False)
        if isinstance(seg, HeaderField) and seg.name.lower() == "mcp-session-id"
    )
    assert any(w.startswith("HTTP/1.1 200") and f"mcp-session-id: {session}" in w for w in words)
    later = [w for w in words if w.startswith("POST /mcp")][1:]
    assert later
    for w in later:
        assert f"mcp-session-id: {session}" in w
        assert "mcp-protocol-version: " in w
        assert "accept: application/json, text/event-stream" in w


# -- JSON-RPC messages -----------------------------------------------------------------


def requests(trace: Trace) -> dict[object, str]:
    """Every JSON-RPC request the client sent in a body, id -> method, from the bytes."""
    out: dict[object, str] = {}
    for ac in annotate(trace):
        for seg in ac.segments(from_client=True):
            if isinstance(seg, BodyData):
                message = json.loads(seg.data)
                if "id" in message and "method" in message:
                    out[message["id"]] = message["method"]
    return out


def events(trace: Trace) -> list[dict[str, object]]:
    """The JSON-RPC messages of every SSE event the server sent, in order."""
    out = []
    for ac in annotate(trace):
        for seg in ac.segments(from_client=False, nested=True):
            event = getattr(seg.unit, "event", None) if isinstance(seg, Nested) else None
            if event is not None and event.data:
                out.append(json.loads(event.data))
    return out


@pytest.mark.parametrize("name", ["mcp-tool-stream", "mcp-resume"])
def test_json_rpc_messages_say_method_id_and_kind(name: str) -> None:
    trace = golden(name)
    words = sequence(trace)
    asked = requests(trace)
    assert asked
    for id_, method in asked.items():
        assert any(w.startswith("body ") and f"{method} id={id_}" in w for w in words)
    answers = [m for m in events(trace) if "result" in m or "error" in m]
    notes = [m for m in events(trace) if "method" in m and "id" not in m]
    assert answers
    assert notes
    for m in answers:
        kind = "result" if "result" in m else "error"
        # A response names no method: the view finds it by id, across connections.
        expected = f"{kind} id={m['id']} ({asked[m['id']]})"
        assert any(w.startswith("SSE message") and expected in w for w in words), expected
    for m in notes:
        assert any(w.startswith("SSE message") and f" {m['method']} " in f"{w} " for w in words)


def test_json_rpc_bodies_of_plain_json_responses() -> None:
    trace = golden("mcp-initialize")
    words = sequence(trace)
    for id_, method in requests(trace).items():
        assert any(w.startswith("body ") and f"result id={id_} ({method})" in w for w in words)
    assert any(w.startswith("body ") and "notifications/initialized" in w for w in words)


# -- HTTP/2 streams in the timeline ------------------------------------------------------


def test_timeline_says_which_stream_each_piece_belongs_to() -> None:
    trace = golden("h2-multiplex")
    plain = shown(render_timeline, trace, width=200).plain
    (ac,) = annotate(trace)
    data = [f for f in ac.segments(from_client=False) if isinstance(f, DataFrame) and f.data]
    streams = [f.stream_id for f in data]
    assert len(set(streams)) == 2  # two streams...
    assert streams != sorted(streams)  # ...interleaved
    header = next(line for line in plain.splitlines() if line.lstrip().startswith("ms "))
    assert header.split()[:4] == ["ms", "gap", "ms", "stream"]
    rows = [line for line in plain.splitlines() if "█" in line]
    assert len(rows) == len(data) == len(data_arrivals(trace))
    for i, (line, frame) in enumerate(zip(rows, data, strict=True)):
        cells = line.split()
        stream = cells[1] if i == 0 else cells[2]  # the first row has no gap
        assert stream == str(frame.stream_id)
    for stream_id in set(streams):
        mine = [f for f in data if f.stream_id == stream_id]
        total = sum(len(f.data) for f in mine)
        assert f"stream {stream_id}: {len(mine)} pieces, {total} bytes;" in plain


def test_timeline_of_http1_has_no_stream_column() -> None:
    plain = shown(render_timeline, golden("token-stream"), width=200).plain
    header = next(line for line in plain.splitlines() if line.lstrip().startswith("ms "))
    assert "stream" not in header


def test_sse_events_over_h2_name_their_stream() -> None:
    trace = golden("h2-sse")
    words = sequence(trace)
    (ac,) = annotate(trace)
    (stream_id,) = {f.stream_id for f in ac.segments(from_client=False) if isinstance(f, DataFrame)}
    sse = [w for w in words if w.startswith("SSE ")]
    assert sse
    assert all(f" on stream {stream_id}" in w for w in sse)
