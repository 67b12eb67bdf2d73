"""lab.wire.http1.MessageDecoder: heads, body framing, pipelining, errors; at every split."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.wire.chunked import ChunkData, LastChunk, TrailerField
from lab.wire.errors import ProtocolError
from lab.wire.http1 import (
    BodyData,
    EmptyLine,
    HeadEnd,
    HeaderField,
    HTTP1Error,
    MessageDecoder,
    RequestLine,
    StatusLine,
)
from lab.wire.segment import Nested, Segment
from lab.wire.sse import Dispatch


def _merged(segs: list[Segment]) -> list[tuple[str, int, int, object]]:
    """Segments as comparable tuples, with adjacent data pieces joined (their split
    depends on how the input was fed)."""
    out: list[tuple[str, int, int, object]] = []
    for s in segs:
        if (
            isinstance(s, ChunkData | BodyData)
            and out
            and out[-1][0] == s.kind
            and out[-1][2] == s.start
        ):
            kind, start, _, data = out[-1]
            assert isinstance(data, bytes)
            out[-1] = (kind, start, s.end, data + s.data)
        else:
            value = s.data if isinstance(s, ChunkData | BodyData) else s.note()
            out.append((s.kind, s.start, s.end, value))
    return out


def decode(
    role: str, data: bytes, splits: list[int] | None = None, methods: tuple[str, ...] = ()
) -> list[Segment]:
    d = MessageDecoder(role)  # type: ignore[arg-type]
    for m in methods:
        d.expect(m)
    cuts = sorted(set(splits or [])) if splits is not None else [len(data)]
    out: list[Segment] = []
    prev = 0
    for cut in [*cuts, len(data)]:
        out += d.feed(data[prev:cut])
        prev = cut
    out += d.eof()
    return out


REQUESTS = (
    b"GET /tokens?n=2 HTTP/1.1\r\nHost: a\r\n\r\n"
    b"POST /chat HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    b"\r\n"  # an empty line before the next request: ignored
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nX: y\r\n\r\n"
)
RESPONSES = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nover\r\n0\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # answer to HEAD: no body
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"
)
METHODS = ("GET", "HEAD", "GET", "GET")


def test_requests_pipelined_with_every_framing() -> None:
    segs = decode("request", REQUESTS)
    kinds = [s.kind for s in segs]
    assert kinds.count("request-line") == 3
    lines = [s for s in segs if isinstance(s, RequestLine)]
    assert [(r.method, r.target) for r in lines] == [
        ("GET", "/tokens?n=2"),
        ("POST", "/chat"),
        ("POST", "/up"),
    ]
    assert [s.data for s in segs if isinstance(s, BodyData)] == [b"hello"]
    assert any(isinstance(s, EmptyLine) for s in segs)
    assert [s.data for s in segs if isinstance(s, ChunkData)] == [b"abc"]
    assert [(s.name, s.value) for s in segs if isinstance(s, TrailerField)] == [(b"X", b"y")]
    # Every byte is in exactly one segment, in order.
    assert segs[0].start == 0
    assert segs[-1].end == len(REQUESTS)
    assert all(a.end == b.start for a, b in pairwise(segs))


def test_responses_follow_the_methods_and_statuses() -> None:
    segs = decode("response", RESPONSES, methods=METHODS)
    statuses = [s.status for s in segs if isinstance(s, StatusLine)]
    assert statuses == [100, 200, 200, 204, 200]
    ends = [s.framing for s in segs if isinstance(s, HeadEnd)]
    assert ends[0].startswith("absent (interim")
    assert "chunked" in ends[1]
    assert ends[2] == "absent (200 to HEAD)"
    assert ends[3] == "absent (204 to GET)"
    assert "until the connection closes" in ends[4]
    assert [s.data for s in segs if isinstance(s, BodyData)] == [b"until close"]
    assert any(isinstance(s, LastChunk) for s in segs)
    assert all(a.end == b.start for a, b in pairwise(segs))


def test_header_fields_keep_names_and_trim_values() -> None:
    segs = decode("request", b"GET / HTTP/1.1\r\nX-A:  spaced \t\r\nx-b:\r\n\r\n")
    fields = [(s.name, s.value) for s in segs if isinstance(s, HeaderField)]
    assert fields == [("X-A", "spaced"), ("x-b", "")]


def test_lone_lf_head_lines_are_accepted() -> None:
    # RFC 9112 §2.2: a recipient MAY take a lone LF as a line end in the head.
    segs = decode("request", b"GET / HTTP/1.1\nHost: a\n\n")
    assert [s.kind for s in segs] == ["request-line", "header-field", "head-end"]


@pytest.mark.parametrize(
    ("role", "data", "offset", "words"),
    [
        ("request", b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 16, "malformed header field"),
        ("request", b"GET / HTTP/1.1\r\nX : y\r\n\r\n", 16, "malformed header field"),
        ("request", b"GET /\r\n\r\n", 0, "malformed request line"),
        ("request", b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 20, "bare CR"),
        ("response", b"HTTP/1.1 2x0 OK\r\n\r\n", 0, "malformed status line"),
        (
            "response",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            0,
            "invalid Content-Length",
        ),
        # Digits that are not ASCII (found by lab fuzz http1): refused, not a crash.
        (
            "response",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\xb92\r\n\r\n",
            0,
            "invalid Content-Length",
        ),
        (
            "request",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            0,
            "does not end in chunked",
        ),
        (
            "response",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            40,
            "ended inside a message",
        ),
        (
            "response",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxxx__1a\r\n",
            53,
            "CRLF",
        ),
    ],
)
def test_errors_name_the_offset(role: str, data: bytes, offset: int, words: str) -> None:
    for splits in (None, list(range(len(data)))):
        with pytest.raises(ProtocolError) as info:
            decode(role, data, splits)
        assert info.value.offset == offset
        assert words in str(info.value)


def test_an_error_keeps_what_the_feed_completed() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n"
    with pytest.raises(ProtocolError) as info:
        MessageDecoder("response").feed(data)
    kinds = [s.kind for s in info.value.segments]
    assert kinds == [
        "status-line",
        "header-field",
        "head-end",
        "chunk-size",
        "chunk-data",
        "chunk-crlf",
    ]


def test_head_limit_bounds_the_buffer() -> None:
    d = MessageDecoder("request")
    line = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    for _ in range(250):
        d.feed(line)  # 250 KB of head: still under the limit, kept
    with pytest.raises(HTTP1Error, match="head longer than"):
        d.feed(line * 10)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_split_gives_the_same_segments(data: st.DataObject) -> None:
    role, stream, methods = data.draw(
        st.sampled_from([("request", REQUESTS, ()), ("response", RESPONSES, METHODS)])
    )
    splits = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert _merged(decode(role, stream, splits, methods)) == _merged(
        decode(role, stream, None, methods)
    )


def test_byte_by_byte_gives_the_same_segments() -> None:
    for role, stream, methods in (("request", REQUESTS, ()), ("response", RESPONSES, METHODS)):
        one_by_one = decode(role, stream, list(range(len(stream))), methods)
        assert _merged(one_by_one) == _merged(decode(role, stream, None, methods))


# -- the nested layer: a body's own format placed on the wire --------------------------

SSE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5\r\nid: 1\r\n"  # an SSE line split over two chunks
    b"9\r\n\ndata: x\n\r\n"
    b"1\r\n\n\r\n"  # the blank line that dispatches, in a chunk of its own
    b"0\r\n\r\n"
)


def _nested(segs: list[Segment]) -> list[Nested]:
    return [s for s in segs if isinstance(s, Nested)]


def test_sse_lines_are_placed_on_the_wire_across_chunks() -> None:
    segs = decode("response", SSE_RESPONSE)
    nested = _nested(segs)
    assert [n.unit.kind for n in nested] == ["sse-field", "sse-field", "sse-dispatch"]
    # "id: 1\n": its first byte in the first chunk, its LF in the second; the range spans
    # the chunk framing between, the data is the line's own bytes.
    first = nested[0]
    assert first.data == b"id: 1\n"
    assert SSE_RESPONSE[first.start : first.start + 5] == b"id: 1"
    assert SSE_RESPONSE[first.end - 1 : first.end] == b"\n"
    assert b"\r\n9\r\n" in SSE_RESPONSE[first.start : first.end]
    dispatch = nested[2].unit
    assert isinstance(dispatch, Dispatch)
    assert dispatch.event is not None
    assert (dispatch.event.data, dispatch.event.last_event_id) == ("x", "1")
    # The framing layer still tiles the bytes on its own.
    framing = [s for s in segs if not isinstance(s, Nested)]
    assert all(a.end == b.start for a, b in pairwise(framing))


def test_the_nested_layer_is_the_same_at_every_split() -> None:
    whole = [
        (n.start, n.end, n.data, n.unit.kind) for n in _nested(decode("response", SSE_RESPONSE))
    ]
    for cut in range(1, len(SSE_RESPONSE)):
        split = decode("response", SSE_RESPONSE, [cut])
        assert [(n.start, n.end, n.data, n.unit.kind) for n in _nested(split)] == whole, cut
    one_by_one = decode("response", SSE_RESPONSE, list(range(len(SSE_RESPONSE))))
    assert [(n.start, n.end, n.data, n.unit.kind) for n in _nested(one_by_one)] == whole


def test_sse_in_a_content_length_body_and_an_unterminated_event() -> None:
    body = b": hi\nevent: progress\ndata: 1\n\ndata: lost"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    data = head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    nested = _nested(decode("response", data))
    kinds = [n.unit.kind for n in nested]
    assert kinds == ["sse-comment", "sse-field", "sse-field", "sse-dispatch", "sse-incomplete"]
    assert nested[-1].data == b"data: lost"  # no blank line after it: discarded, but shown


def test_other_bodies_get_no_nested_layer() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n\r\ndata: x\n\nhello"
    )
    assert _nested(decode("response", data)) == []
