"""annotate(): every byte of every scenario lands in exactly one segment, in order."""

from __future__ import annotations

from itertools import pairwise

import pytest
import trio

from lab.capture.annotate import Unparsed, annotate, annotate_connection
from lab.capture.trace import CONNECT, EOF, RECV, SEND, ConnectionTrace, Record, Trace
from lab.scenarios import SCENARIOS, run_scenarios

# Scenarios whose client hangs up while the server is still sending.
HANGS_UP = {
    "client-abort",
    "sse-events",
    "sse-multiline",
    "sse-heartbeat",
    "mcp-get-stream",
    "mcp-resume",
}


@pytest.fixture(scope="module")
def traces() -> list[Trace]:
    return trio.run(run_scenarios, [s.name for s in SCENARIOS])


def test_segments_tile_each_direction_exactly(traces: list[Trace]) -> None:
    for trace in traces:
        for ac in annotate(trace):
            for from_client, total in (
                (True, len(ac.conn.client_to_server())),
                (False, len(ac.conn.server_to_client())),
            ):
                segs = [s for s in ac.segments(from_client=from_client) if s.nbytes]
                assert segs, (trace.name, from_client)
                assert segs[0].start == 0
                assert segs[-1].end == total, (trace.name, from_client)
                for a, b in pairwise(segs):
                    assert a.end == b.start, (trace.name, a, b)


def test_clean_scenarios_have_nothing_unparsed(traces: list[Trace]) -> None:
    for trace in traces:
        unparsed = [
            a.segment for ac in annotate(trace) for a in ac.items if isinstance(a.segment, Unparsed)
        ]
        if trace.name in HANGS_UP:
            # The response is cut short: marked, zero bytes long, at the end of what came.
            assert len(unparsed) == 1
            assert unparsed[0].nbytes == 0
            assert "cut short" in unparsed[0].note()
        else:
            assert unparsed == [], trace.name


def test_times_and_records_follow_the_trace(traces: list[Trace]) -> None:
    for trace in traces:
        for ac in annotate(trace):
            records = [a.record for a in ac.items]
            assert records == sorted(records)  # segments come in the order bytes moved
            for a in ac.items:
                assert a.t == ac.conn.records[a.record].t


def test_bad_bytes_become_unparsed_after_what_did_parse() -> None:
    conn = ConnectionTrace(side="client", local=("127.0.0.1", 1), peer=("127.0.0.1", 2))
    conn.records += [
        Record(0.0, CONNECT),
        Record(0.1, SEND, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"),
        Record(
            0.2,
            RECV,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\nmore",
        ),
        Record(0.3, EOF),
    ]
    ac = annotate_connection(conn)
    down = ac.segments(from_client=False)
    assert [s.kind for s in down] == [
        "status-line", "header-field", "head-end",
        "chunk-size", "chunk-data", "chunk-crlf", "unparsed",
    ]  # fmt: skip
    assert isinstance(down[-1], Unparsed)
    assert (down[-1].start, down[-1].end) == (55, len(conn.server_to_client()))
    assert "at byte offset 55" in down[-1].note()


def test_record_notes_cover_every_data_record(traces: list[Trace]) -> None:
    trace = next(t for t in traces if t.name == "token-stream")
    ac = annotate(trace)[0]
    notes = ac.record_notes()
    for i, rec in enumerate(ac.conn.records):
        if rec.kind in (SEND, RECV):
            assert notes.get(i), (i, rec)
    joined = " ".join(n for ns in notes.values() for n in ns)
    assert "chunk size 0x" in joined
    assert "last chunk" in joined
