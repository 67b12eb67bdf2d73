"""pcapng export, read back by two parsers the lab did not write: scapy and tshark."""

from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from lab.capture.pcapng import (
    EPOCH_BASE,
    MAX_SEGMENT_PAYLOAD,
    SYNTHETIC_PORT_BASE,
    _checksum,
    export_pcapng,
    to_pcapng,
)
from lab.capture.tap import Recorder
from lab.capture.trace import (
    CLOSE,
    CONNECT,
    EOF,
    RECV,
    RESET,
    SEND,
    SHUTDOWN,
    ConnectionTrace,
    Record,
    Trace,
)
from tests.tools import require_tool

REQUEST = b"GET /tokens?n=3 HTTP/1.1\r\nHost: lab\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nHello\r\n6\r\n world\r\n7\r\n[DONE]\n\r\n0\r\n\r\n"
)
BIG = b"x" * 150_000  # three segments: 65,495 + 65,495 + 19,010 bytes of the record
CHAT_BODY = b'{"prompt": "hi", "n": 2}'
CHAT = (
    b"POST /chat HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(CHAT_BODY), CHAT_BODY)
)
BIG_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n" % len(BIG)
    + BIG
    + b"\r\n3\r\nend\r\n0\r\n\r\n"
)
OTHER_PORT = 43_210  # not among Wireshark's HTTP ports: the tshark calls say "Decode As"


def _trace() -> Trace:
    """Three HTTP/1.1 connections, tapped on either side; two share one 4-tuple."""
    first = ConnectionTrace("client", ("127.0.0.1", 50000), ("127.0.0.1", 8080))
    first.records += [
        Record(0.0, CONNECT),
        Record(0.000_120, SEND, REQUEST),
        Record(0.001_000, RECV, RESPONSE[:30]),  # recv boundaries fall anywhere
        Record(0.002_000, RECV, RESPONSE[30:91]),
        Record(0.003_000, RECV, RESPONSE[91:]),
        Record(0.003_100, EOF),
        Record(0.003_200, CLOSE),
    ]
    second = ConnectionTrace("server", ("127.0.0.1", 8080), ("127.0.0.1", 50000))
    second.records += [
        Record(0.010_000, CONNECT),
        Record(0.010_100, RECV, CHAT),
        Record(0.011_000, SEND, BIG_RESPONSE),
        Record(0.011_500, SEND, b""),  # an empty send_all: no segment
        Record(0.012_000, CLOSE),
        Record(0.012_500, EOF),
    ]
    third = ConnectionTrace("client", ("127.0.0.1", 50001), ("127.0.0.1", OTHER_PORT))
    third.records += [
        Record(0.020_000, CONNECT),
        Record(0.020_100, SEND, REQUEST),
        Record(0.020_200, SHUTDOWN),
        Record(0.021_000, RECV, RESPONSE),
        Record(0.022_000, RESET),
    ]
    return Trace("pcapng test", "three connections\nover HTTP/1.1", [first, second, third])


ANNOTATIONS = {
    (0, 1): "request line and headers: GET /tokens?n=3",
    (1, 2): "the 150,000-byte chunk",
    (2, 4): "the server reset the connection",
}


def _annotate(conn: int, record: int) -> str | None:
    return ANNOTATIONS.get((conn, record))


# ---------------------------------------------------------------------------- without tshark


def _reference_checksum(data: bytes) -> int:
    """RFC 1071 §4.1, word by word with end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=300))
def test_checksum_matches_rfc_1071(data: bytes) -> None:
    assert _checksum(data) == _reference_checksum(data)


@pytest.mark.parametrize("data", [b"", b"\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\x01"])
def test_checksum_edge_cases(data: bytes) -> None:
    assert _checksum(data) == _reference_checksum(data)


def test_export_is_reproducible(tmp_path: Path) -> None:
    export_pcapng(_trace(), tmp_path / "a.pcapng", _annotate)
    assert (tmp_path / "a.pcapng").read_bytes() == to_pcapng(_trace(), _annotate)


def _read_with_scapy(data: bytes, tmp_path: Path) -> list[Any]:
    from scapy.utils import PcapNgReader

    path = tmp_path / "t.pcapng"
    path.write_bytes(data)
    with PcapNgReader(str(path)) as reader:
        return list(reader)


def test_scapy_sees_consistent_tcp_carrying_exactly_the_records(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP

    trace = _trace()
    packets = _read_with_scapy(to_pcapng(trace, _annotate), tmp_path)
    payloads: dict[tuple[int, int], bytes] = {}  # (source port, destination port) -> bytes
    next_seq: dict[tuple[int, int], int] = {}
    for packet in packets:
        ip, tcp = packet[IP], packet[TCP]
        flow, back = (tcp.sport, tcp.dport), (tcp.dport, tcp.sport)
        payload = bytes(tcp.payload)
        assert len(payload) <= MAX_SEGMENT_PAYLOAD
        # Sequence numbers continue where the flow left off; SYN and FIN count as one.
        if tcp.flags.S:
            assert flow not in next_seq
        else:
            assert tcp.seq == next_seq[flow]
        next_seq[flow] = tcp.seq + len(payload) + (1 if tcp.flags.S or tcp.flags.F else 0)
        # Every ACK acknowledges all that the other side has sent so far.
        if tcp.flags.A:
            assert tcp.ack == next_seq[back]
        payloads[flow] = payloads.get(flow, b"") + payload
        # scapy recomputes both checksums when a field is deleted before building.
        rebuilt = IP(bytes(packet))
        del rebuilt[IP].chksum, rebuilt[TCP].chksum
        again = IP(bytes(rebuilt))
        assert (again[IP].chksum, again[TCP].chksum) == (ip.chksum, tcp.chksum)
        assert len(packet.comments) == 1

    first, second, third = trace.connections
    remapped = SYNTHETIC_PORT_BASE  # the second connection reused the first one's 4-tuple
    assert payloads == {
        (50000, 8080): first.client_to_server(),
        (8080, 50000): first.server_to_client(),
        (remapped, 8080): second.client_to_server(),
        (8080, remapped): second.server_to_client(),
        (50001, OTHER_PORT): third.client_to_server(),
        (OTHER_PORT, 50001): third.server_to_client(),
    }


def test_scapy_reads_comments_times_and_directions(tmp_path: Path) -> None:
    from scapy.layers.inet import TCP

    packets = _read_with_scapy(to_pcapng(_trace(), _annotate), tmp_path)
    out, into = 2, 1  # pcapng epb_flags direction, seen from the tapped (client) socket
    summary = [
        (int((p.time - EPOCH_BASE) * 1_000_000), str(p[TCP].flags), p.direction)
        for p in packets[:11]
    ]
    assert summary == [
        (0, "S", out),
        (0, "SA", into),
        (0, "A", out),
        (120, "PA", out),
        (1000, "PA", into),
        (2000, "PA", into),
        (3000, "PA", into),
        (3100, "FA", into),
        (3100, "A", out),
        (3200, "FA", out),
        (3200, "A", into),
    ]
    comments = [p.comments[0].decode() for p in packets]
    assert comments[:11] == [
        "client→server SYN (record 0: connect)",
        "server→client SYN-ACK (record 0: connect)",
        "client→server ACK, handshake complete (record 0: connect)",
        ANNOTATIONS[0, 1],
        "server→client recv 30 bytes (record 2)",
        "server→client recv 61 bytes (record 3)",
        f"server→client recv {len(RESPONSE) - 91} bytes (record 4)",
        "server→client FIN: the server closed its sending side (record 5: eof)",
        "client→server ACK of the FIN (record 5: eof)",
        "client→server FIN: the client closed the connection (record 6: close)",
        "server→client ACK of the FIN (record 6: close)",
    ]
    mss = MAX_SEGMENT_PAYLOAD
    assert f"{ANNOTATIONS[1, 2]}, segment 1 of 3: bytes 0-{mss - 1}" in comments
    assert f"{ANNOTATIONS[1, 2]}, segment 2 of 3: bytes {mss}-{2 * mss - 1}" in comments
    assert (
        f"{ANNOTATIONS[1, 2]}, segment 3 of 3: bytes {2 * mss}-{len(BIG_RESPONSE) - 1}" in comments
    )
    assert comments[-1] == ANNOTATIONS[2, 4]


# ---------------------------------------------------------------------------- tshark

# tshark 4.0 names (`tshark -G fields`, `tshark -G values`): frame.comment holds the packet
# comments; checksum statuses are 0 Bad, 1 Good, 2 Unverified, and checksums are only
# verified when the check_checksum preferences are on.
CHECK_CHECKSUMS = ("-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")
GOOD, BAD = "1", "0"
PI_WARN = 0x0060_0000  # tshark's expert severity "Warning" (_ws.expert.severity)
DECODE_AS = ("-d", f"tcp.port=={OTHER_PORT},http")


def _tshark(path: Path, *args: str) -> list[list[str]]:
    """Run tshark on ``path``; its tab-separated output, one list per line."""
    tshark = require_tool("tshark", "tshark")
    result = subprocess.run(
        [tshark, "-n", "-r", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def _fields(path: Path, *names: str, options: tuple[str, ...] = ()) -> list[list[str]]:
    """One row per packet (after ``options``, e.g. a -Y filter) with the named fields."""
    return _tshark(path, *options, "-T", "fields", *(a for n in names for a in ("-e", n)))


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    path = tmp_path / "exchange.pcapng"
    export_pcapng(_trace(), path, _annotate)
    return path


@pytest.mark.interop
def test_tshark_dissects_the_http_exchanges(exported: Path) -> None:
    http = (*DECODE_AS, "-Y", "http")
    names = ("tcp.stream", "http.request.method", "http.request.uri", "http.response.code")
    assert _fields(exported, *names, "http.chunk_size", options=http) == [
        ["0", "GET", "/tokens?n=3", "", ""],
        ["0", "", "", "200", "5,6,7,0"],
        ["1", "POST", "/chat", "", ""],
        ["1", "", "", "200", f"{len(BIG)},3,0"],
        ["2", "GET", "/tokens?n=3", "", ""],
        ["2", "", "", "200", "5,6,7,0"],
    ]
    big_end = f"segment 3 of 3: bytes {2 * MAX_SEGMENT_PAYLOAD}-{len(BIG_RESPONSE) - 1}"
    assert [row[0] for row in _fields(exported, "frame.comment", options=http)] == [
        ANNOTATIONS[0, 1],
        f"server→client recv {len(RESPONSE) - 91} bytes (record 4)",
        f"client→server recv {len(CHAT)} bytes (record 1)",
        f"{ANNOTATIONS[1, 2]}, {big_end}",
        f"client→server send {len(REQUEST)} bytes (record 1)",
        f"server→client recv {len(RESPONSE)} bytes (record 3)",
    ]


@pytest.mark.interop
def test_tshark_sees_clean_tcp_with_good_checksums(exported: Path) -> None:
    assert _tshark(exported, *DECODE_AS, "-Y", "tcp.analysis.flags") == []
    assert _tshark(exported, *DECODE_AS, "-Y", "_ws.malformed") == []
    # Expert warnings or worse, other than for the RST that the trace records.
    warnings = f"_ws.expert.severity >= {PI_WARN} and not tcp.flags.reset == 1"
    assert _tshark(exported, *DECODE_AS, *CHECK_CHECKSUMS, "-Y", warnings) == []
    statuses = _fields(
        exported, "ip.checksum.status", "tcp.checksum.status", options=CHECK_CHECKSUMS
    )
    assert statuses == [[GOOD, GOOD]] * (11 + 11 + 8)  # the packets of the three connections


@pytest.mark.interop
def test_tshark_would_notice_a_bad_checksum(exported: Path, tmp_path: Path) -> None:
    """The checksum check above can fail: flip one payload bit and tshark says Bad."""
    data = bytearray(exported.read_bytes())
    data[data.index(b"GET /tokens")] ^= 0x01
    corrupt = tmp_path / "corrupt.pcapng"
    corrupt.write_bytes(data)
    statuses = _fields(
        corrupt, "ip.checksum.status", "tcp.checksum.status", options=CHECK_CHECKSUMS
    )
    assert statuses[3] == [GOOD, BAD]  # frame 4, the request
    assert statuses.count([GOOD, GOOD]) == len(statuses) - 1


@pytest.mark.interop
def test_tshark_sees_streams_handshakes_closes_and_comments(exported: Path) -> None:
    names = ("tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.flags.str", "tcp.len")
    rows = [
        (int(stream), int(src), int(dst), flags.replace("·", ""), int(size), comment)
        for stream, src, dst, flags, size, comment in _fields(exported, *names, "frame.comment")
    ]
    assert all(comment for *_, comment in rows), "every packet has a comment"
    assert {row[:3] for row in rows if row[3] == "S"} == {
        (0, 50000, 8080),
        (1, SYNTHETIC_PORT_BASE, 8080),  # the first connection's 4-tuple, used again
        (2, 50001, OTHER_PORT),
    }
    first = [(flags, size) for stream, _, _, flags, size, _ in rows if stream == 0]
    assert first == [
        ("S", 0),
        ("AS", 0),
        ("A", 0),
        ("AP", len(REQUEST)),
        ("AP", 30),
        ("AP", 61),
        ("AP", len(RESPONSE) - 91),
        ("AF", 0),  # the server's FIN (eof)
        ("A", 0),
        ("AF", 0),  # the client's FIN (close)
        ("A", 0),
    ]
    second = [size for stream, _, _, _, size, _ in rows if stream == 1 and size]
    tail = len(BIG_RESPONSE) - 2 * MAX_SEGMENT_PAYLOAD
    assert second == [len(CHAT), MAX_SEGMENT_PAYLOAD, MAX_SEGMENT_PAYLOAD, tail]
    assert rows[-1][3:] == ("AR", 0, ANNOTATIONS[2, 4])


# ---------------------------------------------------------------------------- a real exchange


async def _chunked_server(stream: trio.SocketStream) -> None:
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some()
            assert data, "EOF inside the request head"
            request += data
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for token in (b"Hel", b"lo, ", b"world"):
            await stream.send_all(b"%x\r\n%s\r\n" % (len(token), token))
        await stream.send_all(b"0\r\n\r\n")


@pytest.mark.interop
def test_a_tapped_loopback_exchange_exports_and_dissects(tmp_path: Path) -> None:
    recorder = Recorder(Trace("loopback"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, _chunked_server, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            with trio.fail_after(10):
                stream = recorder.tap(await trio.open_tcp_stream("127.0.0.1", port), "client")
                await stream.send_all(b"GET /tokens HTTP/1.1\r\nHost: lab\r\n\r\n")
                while await stream.receive_some():
                    pass
                await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    (conn,) = recorder.trace.connections
    assert [r.kind for r in conn.records][-2:] == [EOF, CLOSE]
    path = tmp_path / "loopback.pcapng"
    export_pcapng(recorder.trace, path)
    decode_as = ("-d", f"tcp.port=={conn.server[1]},http")
    names = ("http.request.method", "http.response.code", "http.chunk_size")
    assert _fields(path, *names, options=(*decode_as, "-Y", "http")) == [
        ["GET", "", ""],
        ["", "200", "3,4,5,0"],
    ]
    assert _tshark(path, *decode_as, "-Y", "tcp.analysis.flags") == []


def test_a_missing_tool_fails_the_test_instead_of_skipping_it() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"^no-such-tool not found: install the"):
        require_tool("no-such-tool", "no-such-package")
