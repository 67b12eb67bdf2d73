"""``trace_dir`` on a long connection: at most ``Limits.trace_bytes_held`` of its records in
memory while it is open (the rest spilled to disk, lab.capture.spill), and files that
still hold every record, whether the connection ends well or is reset by the client."""

from __future__ import annotations

import math
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import trio
import trio.testing

from lab.capture import load
from lab.capture.pcapread import read_capture
from lab.capture.records import RESET, SEND
from lab.capture.spill import RECORD_OVERHEAD, SpilledRecords
from lab.server import Limits, Server
from tests.server.helpers import H11Client
from tests.server.test_trace_dir import traced_server
from tests.tools import require_tool

# Paced tokens: the response writer sends each one as it comes, one SEND record each.
TOKENS = 3000
PACED = f"/tokens?n={TOKENS}&interval_ms=1"


def _run(main: Callable[[trio.testing.MockClock], Awaitable[None]]) -> None:
    """Run ``main(clock)`` under a clock that jumps over the paced tokens' sleeps. ``main``
    stops the jumps before the trace is written, in a thread the clock cannot see."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(main, clock, clock=clock)


def _spill(server: Server) -> SpilledRecords:
    (spill,) = server.spills
    return spill


def _files(directory: Path) -> tuple[Path, Path]:
    (trace,) = directory.glob("*.trace")
    (pcapng,) = directory.glob("*.pcapng")
    assert trace.stem == pcapng.stem
    return trace, pcapng


class _Watch:
    """What the server held for the one traced connection, sampled as the client reads."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.samples = 0
        self.most_bytes = 0
        self.most_records = 0

    def sample(self) -> None:
        spill = _spill(self.server)
        stats = self.server.stats()
        assert stats["trace_bytes_held"] == spill.held
        self.samples += 1
        self.most_bytes = max(self.most_bytes, spill.held)
        self.most_records = max(self.most_records, len(spill.conn.records))


async def _read_response(client: H11Client, watch: _Watch, *, stop_after: int = -1) -> int:
    """Read one response, sampling after every read; stop early after ``stop_after`` data
    events. Returns the data events read."""
    events = 0
    while True:
        event = await client.next_event()
        watch.sample()
        if isinstance(event, h11.Data):
            events += 1
            if events == stop_after:
                return events
        elif isinstance(event, h11.EndOfMessage):
            client.conn.start_next_cycle()
            return events


def test_a_long_connection_holds_at_most_the_limit_and_its_files_hold_every_record(
    tmp_path: Path,
) -> None:
    limits = Limits()
    sent: list[bytes] = []
    received: list[bytes] = []
    watches: list[_Watch] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with traced_server(tmp_path, limits=limits) as server:
            client = await H11Client.connect(server)
            watch = _Watch(server)
            watches.append(watch)
            for target in (PACED, "/tokens?n=10000&interval_ms=0", PACED):
                request = h11.Request(method="GET", target=target, headers=[("host", "lab")])
                sent.append(client.conn.send(request) + client.conn.send(h11.EndOfMessage()))
                await client.stream.send_all(sent[-1])
                await _read_response(client, watch)
            spill = _spill(server)
            # Thousands of records went by; the most held at any time is the limit's worth.
            assert len(spill) > 2 * TOKENS
            assert spill.spilled > 2 * TOKENS - limits.trace_bytes_held // RECORD_OVERHEAD
            assert spill.peak < limits.trace_bytes_held
            received.append(bytes(client.raw))
            await client.stream.aclose()
            clock.autojump_threshold = math.inf

    _run(main)
    (watch,) = watches
    assert watch.samples > 2 * TOKENS
    assert 0 < watch.most_bytes < limits.trace_bytes_held
    assert watch.most_records <= limits.trace_bytes_held // RECORD_OVERHEAD
    assert len(list(tmp_path.iterdir())) == 2  # the .trace and the .pcapng, nothing else

    trace_path, pcapng_path = _files(tmp_path)
    (conn,) = load(trace_path).connections
    assert conn.sent() == received[0]  # byte for byte what the client read
    assert conn.received() == b"".join(sent)
    assert sum(r.kind == SEND for r in conn.records) > 2 * TOKENS
    times = [r.t for r in conn.records]
    assert times == sorted(times)
    (captured,) = read_capture(pcapng_path).connections
    assert captured.server_to_client() == received[0]
    assert captured.client_to_server() == b"".join(sent)


def test_a_connection_reset_by_the_client_still_leaves_loadable_files(tmp_path: Path) -> None:
    limits = Limits(trace_bytes_held=4096)  # small, so that much of it is on disk
    received: list[bytes] = []

    async def main(clock: trio.testing.MockClock) -> None:
        async with traced_server(tmp_path, limits=limits) as server:
            client = await H11Client.connect(server)
            watch = _Watch(server)
            await client.get(PACED)
            await _read_response(client, watch, stop_after=TOKENS // 2)
            assert _spill(server).spilled > TOKENS // 4
            assert watch.most_bytes < limits.trace_bytes_held
            received.append(bytes(client.raw))
            # SO_LINGER with a zero timeout: close() sends an RST (RFC 9293 §3.10.7.1 ABORT).
            client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await client.stream.aclose()
            clock.autojump_threshold = math.inf

    _run(main)
    trace_path, pcapng_path = _files(tmp_path)
    (conn,) = load(trace_path).connections
    assert conn.sent().startswith(received[0])
    assert conn.received().startswith(b"GET /tokens?n=3000&interval_ms=1 HTTP/1.1\r\n")
    assert conn.records[-2].kind == RESET  # the send that found the connection reset
    (captured,) = read_capture(pcapng_path).connections
    assert captured.server_to_client() == conn.sent()
    tshark = require_tool("tshark", "tshark")
    summary = subprocess.run(
        [tshark, "-n", "-r", str(pcapng_path), "-q", "-z", "conv,tcp"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "127.0.0.1" in summary.stdout, summary.stdout
