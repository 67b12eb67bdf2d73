"""A connection's records spilled to disk (lab.capture.spill) and its files written from
there (lab.capture.spillsave): the same records back, and the same files as a trace held
whole gives, checked on every golden capture of one connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.capture import load, spillsave, write_capture
from lab.capture.pcapread import read_capture
from lab.capture.records import CONNECT, RECV, RESET, SEND, ConnectionTrace, Record
from lab.capture.spill import RECORD_OVERHEAD, SpilledRecords
from lab.capture.spillsave import write_spilled
from lab.capture.trace import Trace

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"
ONE_CONNECTION = sorted(p.stem for p in CAPTURES.glob("*.trace") if len(load(p).connections) == 1)


def test_spilled_records_come_back_in_order_byte_for_byte(tmp_path: Path) -> None:
    conn = ConnectionTrace(side="server", local=("127.0.0.1", 1), peer=("127.0.0.1", 2))
    spill = SpilledRecords(conn, tmp_path, limit=1000)
    records = [Record(0.0, CONNECT)]
    records += [
        Record(i / 1000, SEND if i % 3 else RECV, bytes([i % 256]) * i) for i in range(1, 400)
    ]
    records.append(Record(1.0, RESET))
    for record in records:
        spill.add(record)
        assert spill.held < spill.limit
        assert len(conn.records) <= spill.limit // RECORD_OVERHEAD
    assert spill.spilled > 300
    assert list(spill.records()) == records
    assert list(spill.records()) == records  # reading does not consume
    spill.close()
    assert list(tmp_path.iterdir()) == []  # the spill file had no name to leave behind


def _spilled(trace: Trace, directory: Path, limit: int) -> SpilledRecords:
    (whole,) = trace.connections
    conn = ConnectionTrace(
        side=whole.side, local=whole.local, peer=whole.peer, protocol=whole.protocol,
        tls=whole.tls,
    )  # fmt: skip
    spill = SpilledRecords(conn, directory, limit=limit)
    for record in whole.records:
        spill.add(record)
    trace.connections = [conn]
    return spill


@pytest.mark.parametrize("name", ONE_CONNECTION)
def test_the_files_written_from_a_spill_are_those_of_the_whole_trace(
    tmp_path: Path, name: str
) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    write_capture(load(CAPTURES / f"{name}.trace"), whole)
    trace = load(CAPTURES / f"{name}.trace")
    spill = _spilled(trace, tmp_path, limit=512)
    write_spilled(trace, spill, parts)
    spill.close()
    for suffix in (".trace", ".pcapng"):
        assert (parts / f"{name}{suffix}").read_bytes() == (whole / f"{name}{suffix}").read_bytes()


def test_past_the_note_window_every_record_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spillsave, "NOTE_WINDOW_RECORDS", 3)
    monkeypatch.setattr(spillsave, "TRACE_BATCH_BYTES", 100)
    name = max(
        ONE_CONNECTION, key=lambda n: len(load(CAPTURES / f"{n}.trace").connections[0].records)
    )
    original = load(CAPTURES / f"{name}.trace")
    trace = load(CAPTURES / f"{name}.trace")
    spill = _spilled(trace, tmp_path, limit=256)
    trace_path, pcap_path = write_spilled(trace, spill, tmp_path / "out")
    spill.close()
    assert trace_path.read_text() == (CAPTURES / f"{name}.trace").read_text()
    (conn,) = original.connections
    (captured,) = read_capture(pcap_path).connections
    assert captured.client_to_server() == conn.client_to_server()
    assert captured.server_to_client() == conn.server_to_client()
    assert b"chunk" in pcap_path.read_bytes() or b"frame" in pcap_path.read_bytes()
