"""``lab compare`` run as a user runs it, every row checked against the traces it saved.

Nothing here is timed against the wall clock: the checks are on structure (a row per
transport, counts of requests, connections and bytes equal to what the saved traces
hold) and on orderings every correct run has (no token decoded before it was produced,
p50 <= p99, short polling faster than the tokens asks more often than long polling).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.bench.compare import (
    FIELDS,
    TRANSPORTS,
    LoggedRequest,
    ProductionLog,
    count_requests,
    percentile,
    wire_bytes,
)
from lab.bench.compare import _send_times as send_times
from lab.capture.fileformat import load
from lab.capture.records import RECV, SEND

# Bound on one run of the command.
CLI_TIMEOUT = 180
NAMES = [t.name for t in TRANSPORTS]
NUMBERS = ("tokens", "requests", "connections", "bytes_up", "bytes_down",
           "wire_per_token_byte", "ttft_ms", "delay_p50_ms", "delay_p99_ms")  # fmt: skip


def lab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=cwd, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    # Short polls every 2 ms on tokens 20 ms apart: the short poller must ask many times
    # per token, the long poller once per token.
    out = tmp_path_factory.mktemp("compare")
    result = lab(
        "compare", "--n", "5", "--interval-ms", "20", "--poll-interval-ms", "2", "--json",
        "--out", str(out / "run"), cwd=out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows, out / "run"


def test_one_row_per_transport_with_the_tables_fields(
    json_run: tuple[list[dict[str, Any]], Path],
) -> None:
    rows, _ = json_run
    assert [r["transport"] for r in rows] == NAMES
    for row in rows:
        assert tuple(row) == FIELDS


def test_every_served_row_received_the_stream_and_its_numbers_are_consistent(
    json_run: tuple[list[dict[str, Any]], Path],
) -> None:
    rows, _ = json_run
    served = [r for r in rows if not r["status"].startswith("not served")]
    # Everything the lab serves today: only the WebSocket rows may be missing.
    assert {r["transport"] for r in served} >= set(NAMES) - {"ws-h1", "ws-h2"}
    for row in served:
        assert row["status"] == "ok", row
        assert row["tokens"] == 5
        assert row["requests"] >= 1
        assert row["connections"] >= 1
        assert row["bytes_up"] > 0
        assert row["bytes_down"] > 0
        assert row["wire_per_token_byte"] > 1  # framing costs something on every transport
        assert row["ttft_ms"] > 0
        assert 0 <= row["delay_p50_ms"] <= row["delay_p99_ms"]
        assert row["produced"] == ("schedule" if row["transport"].endswith("poll") else "send")


def test_the_rows_compare_the_transports_as_their_designs_say(
    json_run: tuple[list[dict[str, Any]], Path],
) -> None:
    by_name = {r["transport"]: r for r in json_run[0]}
    short, long_, chunked = by_name["short-poll"], by_name["long-poll"], by_name["chunked"]
    # A long poll is answered once per token (none timed out in so short a stream).
    assert long_["requests"] <= 5
    assert short["requests"] > long_["requests"]
    assert short["bytes_up"] > long_["bytes_up"]
    # One streamed response carries the whole reply.
    for name in ("chunked", "ndjson", "sse-get", "sse-post", "sse-h2"):
        assert (by_name[name]["requests"], by_name[name]["connections"]) == (1, 1)
    # Polling pays a request per answer; one chunked response costs the least per token.
    assert chunked["wire_per_token_byte"] < long_["wire_per_token_byte"]
    assert chunked["wire_per_token_byte"] < short["wire_per_token_byte"]


def test_unserved_rows_say_why_and_carry_no_numbers(
    json_run: tuple[list[dict[str, Any]], Path],
) -> None:
    for row in json_run[0]:
        if row["status"].startswith("not served"):
            assert row["transport"] in ("ws-h1", "ws-h2")
            assert len(row["status"]) > len("not served: ")
            assert all(row[k] is None for k in NUMBERS)


def test_the_saved_traces_load_and_hold_exactly_the_rows_bytes_and_requests(
    json_run: tuple[list[dict[str, Any]], Path],
) -> None:
    rows, out = json_run
    for row in rows:
        path = Path(row["trace"])
        assert path.parent == out
        assert path.with_suffix(".pcapng").is_file()
        trace = load(path)
        assert trace.name == row["transport"]
        if row["tokens"] is None:
            continue
        assert wire_bytes(trace) == (row["bytes_up"], row["bytes_down"])
        assert len(trace.connections) == row["connections"]
        assert count_requests(trace) == row["requests"]
    assert json.loads((out / "compare.json").read_text()) == rows


def test_the_table_has_every_transport_and_the_same_field_names(tmp_path: Path) -> None:
    result = lab(
        "compare", "--n", "3", "--interval-ms", "5", "--transports", ",".join(NAMES),
        "--out", str(tmp_path / "t"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("transport "))
    for name in ("requests", "connections", "bytes_up", "bytes_down", "wire_per_token_byte",
                 "ttft_ms", "delay_p50_ms", "delay_p99_ms", "status"):  # fmt: skip
        assert name in header.split()
    assert "idle_kib" not in header  # only with --idle
    for name in NAMES:
        assert any(line.split()[0] == name for line in lines if line.strip()), name
    # Progress goes to stderr, one step per transport.
    assert all(f"compare {name}" in result.stderr for name in NAMES)
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        assert "plots" in result.stderr
    else:
        assert (tmp_path / "t" / "arrivals.png").stat().st_size > 0


def test_transports_narrows_the_run_and_an_unknown_name_is_a_usage_error(
    tmp_path: Path,
) -> None:
    result = lab(
        "compare", "--n", "2", "--interval-ms", "0", "--transports", "chunked,sse-h2",
        "--json", "--out", str(tmp_path / "two"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["transport"] for r in json.loads(result.stdout)] == ["chunked", "sse-h2"]
    assert sorted(p.name for p in (tmp_path / "two").glob("*.trace")) == [
        "chunked.trace", "sse-h2.trace",
    ]  # fmt: skip
    bad = lab("compare", "--transports", "carrier-pigeon", cwd=tmp_path)
    assert bad.returncode == 2
    assert "carrier-pigeon" in bad.stderr
    assert "short-poll" in bad.stderr  # the names it knows


def test_idle_measures_server_memory_per_idle_client(tmp_path: Path) -> None:
    # One transport of each kind of idle client: between polls, a held poll, an open
    # HTTP/1.1 stream, an h2c stream, and the WebSockets (when served).
    names = ["short-poll", "long-poll", "sse-get", "sse-h2", "ws-h1", "ws-h2"]
    result = lab(
        "compare", "--n", "2", "--interval-ms", "0", "--transports", ",".join(names),
        "--idle", "20", "--json", "--out", str(tmp_path / "idle"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["transport"] for r in rows] == names
    for row in rows:
        if row["status"].startswith("not served"):
            assert row["idle_kib"] is None
        else:
            assert isinstance(row["idle_kib"], float), row
            assert f"compare --idle {row['transport']}: 20 idle clients" in result.stderr


# -- the pieces, without a server ----------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 99) == 5.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0


def test_production_times_are_matched_to_tokens_in_order_skipping_comments() -> None:
    from lab.apps.tokens import token_at

    words = [token_at("m", i) for i in range(3)]
    log = ProductionLog()
    entry = LoggedRequest("/sse/tokens", 0.0)
    entry.sends = [
        (1.0, f'data: {{"index": 0, "token": "{words[0]}"}}\n\n'.encode()),
        (1.5, b": heartbeat" + words[1].encode() + b"\n\n"),  # a comment: never a token
        (2.0, f'data: {{"index": 1, "token": "{words[1]}"}}\n\n'.encode()),
        (3.0, f'data: {{"index": 2, "token": "{words[2]}"}}\n\n'.encode()),
        (4.0, b"data: [DONE]\n\n"),
    ]
    log.requests.append(entry)
    assert send_times(log, "m", 3) == {0: 1.0, 1: 2.0, 2: 3.0}
    assert send_times(log, "m", 4) == {0: 1.0, 1: 2.0, 2: 3.0}  # token 3 was never sent


def test_wire_bytes_sum_each_direction_of_a_client_trace(
    json_run: tuple[list[dict[str, Any]], Path],
) -> None:
    trace = load(json_run[1] / "short-poll.trace")
    sent = sum(len(r.data) for c in trace.connections for r in c.records if r.kind == SEND)
    got = sum(len(r.data) for c in trace.connections for r in c.records if r.kind == RECV)
    assert wire_bytes(trace) == (sent, got)
    assert sent == sum(len(c.client_to_server()) for c in trace.connections)
