"""Reading the two legs back out of a trace: messages by content type, gzip undone, a
close-delimited body told from a cut one, and a real client → relay → lab server run in
which both legs carry the same messages."""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import trio

from lab.apps import app
from lab.apps.tokens import tokens_for
from lab.capture.relay import Relay
from lab.capture.tap import Recorder
from lab.capture.trace import CONNECT, EOF, RECV, SEND, SHUTDOWN, ConnectionTrace, Record, Trace
from lab.client.http1 import open_connection
from lab.proxy.legs import CLIENT, UPSTREAM, arrivals, pairs, read_leg, units
from lab.proxy.plot import plot_legs, write_plots
from lab.proxy.probes import ProbeOutcome
from lab.proxy.verdicts import Row, measure
from lab.server import serve_tcp

WAIT = 10  # seconds: a generous bound on one loopback exchange, never reached when it works


def test_text_units_are_the_tokens_then_the_end_marker() -> None:
    words = tokens_for("units", 5)
    body = "".join(words).encode() + b"\n[DONE]\n"
    found = units("text/plain; charset=utf-8", body)
    assert [u.text for u in found] == [*words, "\n[DONE]\n"]
    assert [u.final for u in found] == [False] * 5 + [True]
    assert found[-1].end == len(body)


def test_ndjson_units_are_lines_and_a_cut_line_is_none() -> None:
    lines = [json.dumps({"index": i, "token": f" t{i}"}) + "\n" for i in range(3)]
    body = "".join(lines).encode() + b'{"done": true}\n{"index": 3'
    found = units("application/x-ndjson", body)
    assert [u.text for u in found] == [" t0", " t1", " t2", '{"done": true}']
    assert [u.final for u in found] == [False, False, False, True]


def test_sse_units_are_dispatched_events_not_comments_or_retry_blocks() -> None:
    body = (
        b"retry: 100\n\n: heartbeat\n\n"
        b'id: 1\ndata: {"seq": 1, "word": "hi"}\n\n'
        b'data: {"token": " there"}\n\ndata: [DONE]\n\n'
    )
    found = units("text/event-stream", body)
    assert [(u.text, u.final) for u in found] == [
        ("hi", False),
        (" there", False),
        ("[DONE]", True),
    ]
    assert body[found[0].start : found[0].end].startswith(b"id: 1")


def _gzip_pieces(parts: list[bytes]) -> list[bytes]:
    z = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    out = [z.compress(p) + z.flush(zlib.Z_SYNC_FLUSH) for p in parts]
    out[-1] += z.flush()
    return out


def test_a_gzip_body_is_decoded_read_by_read() -> None:
    parts = [b"one", b" two", b" three"]
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    records = [Record(0.0, CONNECT), Record(0.001, SEND, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")]
    records.append(Record(0.002, RECV, head))
    for i, piece in enumerate(_gzip_pieces(parts)):
        records.append(Record(0.01 * (i + 1), RECV, b"%x\r\n%s\r\n" % (len(piece), piece)))
    records.append(Record(0.05, RECV, b"0\r\n\r\n"))
    conn = ConnectionTrace("client", ("127.0.0.1", 1), ("127.0.0.1", 2), records=records)
    leg = read_leg(conn, 0)
    assert leg.body == b"".join(parts)
    assert [size for _, _, size in leg.pieces] == [3, 7, 13]
    assert leg.complete
    assert leg.framing == "chunked"
    assert leg.request_t == 0.001


def _relayed(events: list[str]) -> ConnectionTrace:
    """An upstream leg of an HTTP/1.0 exchange (close-delimited body), ending as told."""
    records = [
        Record(0.0, CONNECT),
        Record(0.001, RECV, b"GET /tokens HTTP/1.0\r\nHost: x\r\n\r\n"),
        Record(0.002, SEND, b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello"),
    ]
    records += [Record(0.01 * (i + 1), kind) for i, kind in enumerate(events)]
    return ConnectionTrace("server", ("127.0.0.1", 1), ("127.0.0.1", 2), records=records)


def test_a_close_delimited_body_is_complete_only_if_the_server_ended_it() -> None:
    finished = read_leg(_relayed([SHUTDOWN, EOF]), 0)
    assert finished.framing == "close"
    assert finished.complete
    cut = read_leg(_relayed([EOF, SHUTDOWN]), 0)  # the proxy left first
    assert not cut.complete
    assert cut.body == finished.body == b"hello"
    assert cut.peer_end() == (0.01, EOF)


def _through_relay(n: int, interval_ms: int) -> Trace:
    """One /tokens exchange: client → recording relay → lab server, on one recorder."""

    async def main() -> Trace:
        recorder = Recorder(Trace("no proxy"))
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(functools.partial(serve_tcp, app, 0))
                relay = Relay(("127.0.0.1", server.port), recorder)
                await nursery.start(relay.serve)
                async with open_connection("127.0.0.1", relay.port, recorder=recorder) as conn:
                    await conn.send_request("GET", f"/tokens?n={n}&interval_ms={interval_ms}")
                    response = await conn.read_response()
                    assert response.complete
                assert await relay.wait_idle(WAIT)
                nursery.cancel_scope.cancel()
        return recorder.trace

    return trio.run(main)


def test_client_relay_server_both_legs_carry_every_token() -> None:
    n, interval_ms = 6, 20
    trace = _through_relay(n, interval_ms)
    ((client, upstream),) = pairs(trace)
    assert client is not None
    assert upstream is not None
    assert (client.leg, upstream.leg) == (CLIENT, UPSTREAM)
    assert client.body == upstream.body == "".join(tokens_for("hello", n)).encode() + b"\n[DONE]\n"
    # Without a proxy, the relay passes each chunk on as it is: the same framing both ways.
    assert client.frames == upstream.frames
    assert len(client.frames) == n + 1
    found = arrivals(client, upstream)
    assert [a.unit.text for a in found] == [*tokens_for("hello", n), "\n[DONE]\n"]
    assert all(a.upstream_t is not None and a.client_t is not None for a in found)
    row = Row("e", "none", "none", "none", [], "http/1.1", "p", "stream", "GET /tokens", "", "t")
    measure(row, trace, ProbeOutcome())
    assert (row.tokens_sent, row.tokens_received, row.complete) == (n, n, True)
    assert row.client_reads >= 2  # the tokens were not all in one read: nothing held them
    assert row.upstream_bytes == row.client_bytes  # the relay changes no byte


def test_the_plot_of_both_legs_counts_every_message_on_each(tmp_path: Path) -> None:
    n = 4
    trace = _through_relay(n, 10)
    found = arrivals(*pairs(trace)[0])
    fig = plot_legs(trace)
    ((ax,),) = [fig.axes]
    lines = {line.get_label(): line for line in ax.get_lines()}
    sent = lines[f"exchange 1: upstream sent ({n + 1})"]
    got = lines[f"exchange 1: client got ({n + 1})"]
    for line, times in ((sent, [a.upstream_t for a in found]), (got, [a.client_t for a in found])):
        xs, ys = (list(v) for v in line.get_data())
        assert ys == list(range(1, n + 2))  # one step per message, the end marker last
        assert xs == sorted(xs)
        assert len({round(x, 6) for x in xs}) == len(set(times))  # a point per message time
    (png,) = write_plots([trace], tmp_path)
    assert png == tmp_path / f"{trace.name}.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
