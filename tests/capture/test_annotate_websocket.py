"""WebSocket in the annotation and the views: frames after a 101 in both directions of an
HTTP/1.1 connection (RFC 6455 §4), frames inside the DATA frames of an RFC 8441 stream,
the sequence view naming messages, and what the polling scenarios' captures show.

The golden captures are the scenarios' (``captures/ws-*.trace``, ``captures/poll-*``);
the live cases run the lab's server on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trio
from rich.console import Console

from lab.apps.tokens import DONE, token_at, tokens_for
from lab.capture.annotate import AnnotatedConnection, Unparsed, annotate, annotate_connection
from lab.capture.fileformat import load
from lab.capture.tap import Recorder
from lab.capture.trace import CONNECT, EOF, RECV, SEND, ConnectionTrace, Record, Trace
from lab.capture.views import render
from lab.client.http2 import H2Response, open_h2_connection
from lab.scenarios.runner import serve_for_scenarios
from lab.wire.h2frames import DataFrame
from lab.wire.http1 import BodyData, HeadEnd, MessageDecoder, RequestLine, StatusLine
from lab.wire.segment import Nested
from lab.wire.websocket import (
    PayloadField,
    WebSocketDecoder,
    WebSocketFrame,
    accept_key,
    close,
    frame_bytes,
    make_key,
    request_headers,
    response_headers,
    text,
)

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"
WIDTH = 150
TIMEOUT = 10


def golden(name: str) -> Trace:
    return load(CAPTURES / f"{name}.trace")


def shown(trace: Trace, view: str) -> str:
    console = Console(width=WIDTH, record=True, file=io.StringIO())
    render(trace, view, console)
    return console.export_text()


def ws_frames(ac: AnnotatedConnection, *, from_client: bool) -> list[WebSocketFrame]:
    """One direction's WebSocket frames, at the top (HTTP/1.1) or nested (HTTP/2)."""
    out = []
    for seg in ac.segments(from_client=from_client, nested=True):
        unit = seg.unit if isinstance(seg, Nested) else seg
        if isinstance(unit, WebSocketFrame):
            out.append(unit)
    return out


def query(target: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}


def requested(ac: AnnotatedConnection) -> dict[str, str]:
    (line,) = [s for s in ac.segments(from_client=True) if isinstance(s, RequestLine)]
    return query(line.target)


# -- HTTP/1.1: after the 101, frames both ways --------------------------------------------


def test_http1_both_directions_switch_to_frames_where_the_heads_end() -> None:
    (ac,) = annotate(golden("ws-h1-tokens"))
    up = ac.segments(from_client=True)
    down = ac.segments(from_client=False)
    request_end = next(s for s in up if isinstance(s, HeadEnd))
    status = next(s for s in down if isinstance(s, StatusLine))
    response_end = next(s for s in down if isinstance(s, HeadEnd))
    assert status.status == 101
    assert "WebSocket frames" in response_end.note()
    assert "asks to switch to websocket" in request_end.note()
    # Everything after each head is WebSocket frames, from the first byte after it.
    after_up = up[up.index(request_end) + 1 :]
    after_down = down[down.index(response_end) + 1 :]
    assert after_up
    assert all(isinstance(s, WebSocketFrame) for s in after_up)
    assert after_down
    assert all(isinstance(s, WebSocketFrame) for s in after_down)
    assert after_up[0].start == request_end.end
    assert after_down[0].start == response_end.end
    # A client masks every frame, a server none (RFC 6455 §5.1).
    assert all(f.masked for f in ws_frames(ac, from_client=True))
    assert not any(f.masked for f in ws_frames(ac, from_client=False))
    # The messages are the reply the request asked for, then [DONE], then the closes.
    ask = requested(ac)
    tokens = tokens_for(ask["prompt"], int(ask["n"]))
    messages = [f.message for f in ws_frames(ac, from_client=False) if f.message]
    assert [m.data for m in messages if m.type == "text"] == [*tokens, DONE]
    assert [(m.type, m.code) for m in messages][-1] == ("close", 1000)
    (client_close,) = [f.message for f in ws_frames(ac, from_client=True) if f.message]
    assert (client_close.type, client_close.code) == ("close", 1000)


def test_the_fields_of_each_frame_are_nested_under_it() -> None:
    (ac,) = annotate(golden("ws-ping"))
    items = ac.segments(from_client=True, nested=True)
    frames = [s for s in items if isinstance(s, WebSocketFrame)]
    assert frames
    for frame in frames:
        at = items.index(frame)
        fields = []
        for seg in items[at + 1 :]:
            if not isinstance(seg, Nested):
                break
            fields.append(seg)
        # The fields cover the frame's bytes from its first to its last.
        assert fields[0].start == frame.start
        assert fields[-1].end == frame.end
        payload = [f.unit for f in fields if isinstance(f.unit, PayloadField)]
        if frame.opcode != 0x8:
            assert [p.data for p in payload] == [frame.data]  # unmasked


def test_sequence_view_names_each_websocket_message() -> None:
    trace = golden("ws-h1-tokens")
    (ac,) = annotate(trace)
    ask = requested(ac)
    out = shown(trace, "sequence")
    for token in [*tokens_for(ask["prompt"], int(ask["n"])), DONE]:
        # An arrow from the server: ◀─── ws text "token" │
        assert re.search(rf'◀─+ ws text "{re.escape(token)}" │', out), token
    assert re.search(r"◀─+ ws close 1000 │", out)
    assert re.search(r"│ ws close 1000 ─+▶", out)
    assert "101 Switching Protocols" in out
    assert "Unparsed" not in out
    assert "not parsed" not in out


def test_sequence_view_of_stop_ping_and_close() -> None:
    stop = shown(golden("ws-stop"), "sequence")
    assert re.search(r'│ ws text "stop" ─+▶', stop)
    (ac,) = annotate(golden("ws-stop"))
    sent = [f.message for f in ws_frames(ac, from_client=False) if f.message]
    tokens = [m for m in sent if m.type == "text"]
    n = int(requested(ac)["n"])
    assert 0 < len(tokens) < n
    assert DONE not in [m.data for m in tokens]
    assert f"reason 'stopped after {len(tokens)} of {n} tokens'" in stop

    ping = shown(golden("ws-ping"), "sequence")
    at_ping = re.search(r'│ ws ping "lab-ping" ─+▶', ping)
    at_pong = re.search(r'◀─+ ws pong "lab-ping" │', ping)
    assert at_ping
    assert at_pong
    assert at_ping.start() < at_pong.start()

    closing = shown(golden("ws-close"), "sequence")
    client = re.search(r"│ ws close 1000  reason 'enough' ─+▶", closing)
    server = re.search(r"◀─+ ws close 1000 │", closing)
    assert client
    assert server
    assert client.start() < server.start()


def test_timeline_counts_data_frames_not_control_frames() -> None:
    trace = golden("ws-h1-tokens")
    (ac,) = annotate(trace)
    ask = requested(ac)
    out = shown(trace, "timeline")
    pieces = [*tokens_for(ask["prompt"], int(ask["n"])), DONE]
    total = sum(len(p.encode()) for p in pieces)
    assert f"{len(pieces)} pieces, {total} bytes" in out


def _upgrade_request(key: str) -> bytes:
    fields = "".join(f"{k}: {v}\r\n" for k, v in request_headers("127.0.0.1:8080", key))
    return f"GET /ws HTTP/1.1\r\n{fields}\r\n".encode()


def _switching(key: str) -> bytes:
    fields = "".join(f"{k}: {v}\r\n" for k, v in response_headers(key))
    return f"HTTP/1.1 101 Switching Protocols\r\n{fields}\r\n".encode()


def _conn(*records: Record) -> ConnectionTrace:
    conn = ConnectionTrace(side="client", local=("127.0.0.1", 1), peer=("127.0.0.1", 2))
    conn.records += [Record(0.0, CONNECT), *records]
    return conn


def test_a_frame_sent_before_the_101_is_held_then_read_as_a_frame() -> None:
    # A client that does not wait for the 101 (RFC 6455 §4.1 says it must): its frame is
    # held until the answer, then decoded, stamped with the record that answered.
    key = make_key(bytes(16))
    hello = text("early", mask_key=b"\x01\x02\x03\x04")
    ac = annotate_connection(
        _conn(
            Record(0.1, SEND, _upgrade_request(key) + hello),
            Record(0.2, RECV, _switching(key) + text("hi")),
            Record(0.3, EOF),
        )
    )
    (frame,) = ws_frames(ac, from_client=True)
    assert frame.message is not None
    assert frame.message.data == "early"
    (item,) = [a for a in ac.items if a.segment is frame]
    assert item.t == 0.2  # completed by the answer, not by the bytes
    assert accept_key(key) in shown(Trace("early", "", [ac.conn]), "annotated")
    assert not [a for a in ac.items if isinstance(a.segment, Unparsed)]


def test_paired_decoders_hold_until_the_answer_and_unpaired_ones_read_on() -> None:
    key = make_key(bytes(16))
    second = b"GET /next HTTP/1.1\r\nhost: a\r\n\r\n"
    alone = MessageDecoder("request")
    lines = [s for s in alone.feed(_upgrade_request(key) + second) if isinstance(s, RequestLine)]
    assert [s.target for s in lines] == ["/ws", "/next"]  # as before pairing existed
    requests = MessageDecoder("request")
    responses = MessageDecoder("response", requests=requests)
    lines = [s for s in requests.feed(_upgrade_request(key) + second) if isinstance(s, RequestLine)]
    assert [s.target for s in lines] == ["/ws"]
    assert requests.awaiting_answer == "websocket"
    responses.feed(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    assert requests.awaiting_answer is None
    assert requests.protocol is None
    assert [s.target for s in requests.feed(b"") if isinstance(s, RequestLine)] == ["/next"]
    with pytest.raises(ValueError, match="pairs a response decoder"):
        MessageDecoder("request", requests=MessageDecoder("request"))


def test_an_upgrade_never_answered_is_http_at_the_end() -> None:
    key = make_key(bytes(16))
    second = b"GET /next HTTP/1.1\r\nhost: a\r\n\r\n"
    ac = annotate_connection(_conn(Record(0.1, SEND, _upgrade_request(key) + second)))
    targets = [s.target for s in ac.segments(from_client=True) if isinstance(s, RequestLine)]
    assert targets == ["/ws", "/next"]
    assert not ws_frames(ac, from_client=True)


def test_an_upgrade_the_server_declines_stays_http_live() -> None:
    # The lab's server ignores Upgrade on an endpoint that is not a WebSocket (RFC 9110
    # §7.8: a server may) and answers 200; the next request on the connection is HTTP.
    key = make_key()

    async def run() -> Trace:
        rec = Recorder(Trace(name="declined"))
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_for_scenarios)
            with trio.fail_after(TIMEOUT):
                stream = rec.tap(await trio.open_tcp_stream(server.host, server.port), "client")
                head = _upgrade_request(key).replace(b"/ws", b"/fixed?size=3", 1)
                await stream.send_all(head)
                got = b""
                while not got.endswith(b"\r\n\r\nstr"):
                    got += await stream.receive_some(65536)
                await stream.send_all(
                    b"GET /fixed?size=4 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
                )
                while await stream.receive_some(65536):
                    pass
                await stream.aclose()
            server.shutdown()
        return rec.trace

    (ac,) = annotate(trio.run(run))
    targets = [s.target for s in ac.segments(from_client=True) if isinstance(s, RequestLine)]
    assert targets == ["/fixed?size=3", "/fixed?size=4"]
    bodies = [s.data for s in ac.segments(from_client=False) if isinstance(s, BodyData)]
    assert bodies == [b"str", b"stre"]
    assert not ws_frames(ac, from_client=True)
    assert not ws_frames(ac, from_client=False)


# -- HTTP/2: frames in the DATA frames of an extended CONNECT -----------------------------


def _data_payloads(ac: AnnotatedConnection, *, from_client: bool, sid: int) -> list[range]:
    """The wire ranges of the data of ``sid``'s DATA frames."""
    out = []
    for seg in ac.segments(from_client=from_client):
        if isinstance(seg, DataFrame) and seg.stream_id == sid and seg.data:
            start = seg.end - (seg.pad_length or 0) - len(seg.data)
            out.append(range(start, start + len(seg.data)))
    return out


def test_h2_websocket_frames_are_placed_in_their_data_frames() -> None:
    trace = golden("ws-h2-tokens")
    (ac,) = annotate(trace)
    for from_client in (True, False):
        payloads = _data_payloads(ac, from_client=from_client, sid=1)
        nested = [
            s
            for s in ac.segments(from_client=from_client, nested=True)
            if isinstance(s, Nested) and isinstance(s.unit, WebSocketFrame)
        ]
        assert nested
        for seg in nested:
            assert isinstance(seg.unit, WebSocketFrame)
            assert seg.data == frame_bytes(seg.unit)  # its own bytes, as on the wire
            assert any(seg.start in r for r in payloads)
            assert any(seg.end - 1 in r for r in payloads)
    ask = query(re.search(r"CONNECT (\S+)", shown(trace, "sequence"))[1])  # type: ignore[index]
    out = shown(trace, "sequence")
    for token in [*tokens_for(ask["prompt"], int(ask["n"])), DONE]:
        assert re.search(rf'◀─+ ws text "{re.escape(token)}" on stream 1 │', out), token
    assert re.search(r"│ ws close 1000 on stream 1 ─+▶", out)


def test_a_websocket_frame_split_over_two_data_frames_live() -> None:
    # The client sends `stop` as one WebSocket frame in two DATA frames; the lab's server
    # reads it whole (it stops), and the annotation places the frame across both, the
    # second DATA frame's 9-byte header inside its range.
    n = 5
    mask_key = b"\x0a\x0b\x0c\x0d"
    frame = text("stop", mask_key=mask_key)

    async def run() -> Trace:
        rec = Recorder(Trace(name="split"))
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_for_scenarios)
            async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
                sid = conn.conn.get_next_available_stream_id()
                conn.conn.send_headers(
                    sid,
                    [
                        (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                        (":path", f"/ws/tokens?n={n}&interval_ms=100&prompt=split"),
                        (":authority", f"{server.host}:{server.port}"),
                        ("sec-websocket-version", "13"),
                    ],
                )  # fmt: skip
                response = conn.responses[sid] = H2Response(sid)
                await conn.flush()
                await conn.pump_until(lambda: bool(response.frames))
                for piece in (frame[:3], frame[3:]):
                    conn.conn.send_data(sid, piece)
                    await conn.flush()
                reader = WebSocketDecoder("client", fields=False)
                closed: list[str] = []
                with trio.fail_after(TIMEOUT):
                    seen = 0
                    while not closed:
                        for _, data in response.frames[seen:]:
                            for f in reader.feed(data):
                                if isinstance(f, WebSocketFrame) and f.opcode == 0x8:
                                    assert f.message is not None
                                    closed.append(f.message.reason)
                        seen = len(response.frames)
                        if not closed:
                            await conn.pump()
                conn.conn.send_data(sid, close(1000, mask_key=mask_key))
                await conn.flush()
                await conn.close()
            server.shutdown()
        assert closed == [f"stopped after 1 of {n} tokens"]  # the server read `stop`
        return rec.trace

    trace = trio.run(run)
    (ac,) = annotate(trace)
    payloads = _data_payloads(ac, from_client=True, sid=1)
    stop = [
        s
        for s in ac.segments(from_client=True, nested=True)
        if isinstance(s, Nested) and isinstance(s.unit, WebSocketFrame) and s.unit.opcode == 0x1
    ]
    (seg,) = stop
    assert isinstance(seg.unit, WebSocketFrame)
    assert seg.unit.message is not None
    assert seg.unit.message.data == "stop"
    assert seg.data == frame
    first = next(r for r in payloads if seg.start in r)
    last = next(r for r in payloads if seg.end - 1 in r)
    assert first != last
    assert seg.nbytes == len(frame) + 9
    # The annotated view shows the frame's row at that wire range, masked key and all.
    out = shown(trace, "annotated")
    assert f"[{seg.start}, {seg.end})" in out
    assert f"Masking-key {mask_key.hex()}" in out


# -- what the polling captures show ---------------------------------------------------------


def _answers(ac: AnnotatedConnection) -> list[dict[str, object]]:
    return [json.loads(s.data) for s in ac.segments(from_client=False) if isinstance(s, BodyData)]


def _requests(ac: AnnotatedConnection) -> list[tuple[str, dict[str, str]]]:
    out = []
    for s in ac.segments(from_client=True):
        if isinstance(s, RequestLine):
            out.append((urlsplit(s.target).path, query(s.target)))
    return out


def test_short_polling_answers_at_once_with_what_is_new() -> None:
    (ac,) = annotate(golden("poll-short"))
    requests = _requests(ac)
    answers = _answers(ac)
    ask = requests[0][1]
    n = int(ask["n"])
    assert {path for path, _ in requests} == {"/poll"}
    assert len(requests) == len(answers)
    # Each request carries the cursor the previous answer gave; together the answers hold
    # every token once, in order, and some hold none (polls that found nothing new).
    cursors = [int(q["cursor"]) for _, q in requests]
    assert cursors == [0, *(int(a["cursor"]) for a in answers[:-1])]  # type: ignore[call-overload]
    tokens = [t for a in answers for t in a["tokens"]]  # type: ignore[attr-defined]
    assert tokens == [token_at(ask["prompt"], i) for i in range(n)]
    assert any(not a["tokens"] for a in answers)
    assert answers[-1]["done"] is True
    assert len(requests) > n


def test_long_polling_holds_each_request_until_a_token() -> None:
    trace = golden("poll-long")
    (ac,) = annotate(trace)
    requests = _requests(ac)
    answers = _answers(ac)
    ask = requests[0][1]
    n, interval = int(ask["n"]), int(ask["interval_ms"]) / 1000
    assert {path for path, _ in requests} == {"/longpoll"}
    assert len(requests) == len(answers) == n  # one request per token, none empty
    assert [a["tokens"] for a in answers] == [[token_at(ask["prompt"], i)] for i in range(n)]
    # Requests after the first are held about an interval: from the request's record to
    # the answer's, on the trace's clock.
    sent = [a.t for a in ac.items if a.from_client and isinstance(a.segment, RequestLine)]
    answered = [a.t for a in ac.items if not a.from_client and isinstance(a.segment, StatusLine)]
    held = [b - s for s, b in zip(sent, answered, strict=True)]
    assert held[0] < interval / 2
    assert all(interval / 2 < h < interval * 2 for h in held[1:]), held
