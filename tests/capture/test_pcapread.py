"""Reading pcap and pcapng captures (lab.capture.pcapread): packets crafted with scapy, an
encoder the lab did not write, written by scapy's own pcap and pcapng writers.

Each test builds one TCP conversation packet by packet (sequence numbers as RFC 9293
§3.4 counts them), bends it the way real captures are bent (segments out of order,
retransmitted, retransmitted with other bytes, missing, cut to a snapshot length, a
reset, a capture that began after the handshake), and checks what the trace says: the
bytes of each direction, the records, and what `lab show` prints.
"""

from __future__ import annotations

import functools
import io
import itertools
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether, Loopback
from scapy.packet import Packet, Raw
from scapy.utils import EDecimal, PcapNgWriter, PcapWriter, rdpcap

from lab.capture.annotate import Unparsed, annotate_connection
from lab.capture.fileformat import load
from lab.capture.pcapng import to_pcapng
from lab.capture.pcapread import CaptureError, read_capture
from lab.capture.pcapread_file import read_frames
from lab.capture.pcapread_packet import TCPSegment
from lab.capture.pcapread_records import StreamBreak
from lab.capture.pcapread_tcp import reassemble
from lab.capture.pcapread_tls import TLSRecord, TLSRecordDecoder, TLSRecordError
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
from lab.capture.views import render
from lab.wire.chunked import ChunkSize

ROOT = Path(__file__).resolve().parent.parent.parent
GOLDEN = ROOT / "captures"
CLI_TIMEOUT = 60  # bound on one `lab show` run
T0 = 1_700_000_000  # the first packet's second; packets are 1 ms apart

REQUEST = b"GET /tokens?n=3 HTTP/1.1\r\nHost: lab\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKS = [b"5\r\nHello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"]
RESPONSE = HEAD + b"".join(CHUNKS)


# -- a conversation, packet by packet -------------------------------------------------


@dataclass
class Conversation:
    """One TCP connection's packets, with the sequence numbers a real stack would use."""

    link: Callable[[Packet], Packet] = lambda ip: Ether() / ip
    v6: bool = False
    client: tuple[str, int] = ("10.0.0.1", 40_000)
    server: tuple[str, int] = ("10.0.0.2", 8080)
    client_isn: int = 1_000
    server_isn: int = 5_000_000
    packets: list[Packet] = field(default_factory=list)
    ms: int = 0  # milliseconds since T0 of the last packet

    def __post_init__(self) -> None:
        if self.v6:
            self.client, self.server = ("fd00::1", 40_000), ("fd00::2", 8080)
        self.seq = {True: self.client_isn, False: self.server_isn}

    def segment(
        self, from_client: bool, flags: str, data: bytes = b"", *, seq: int | None = None
    ) -> Packet:
        """One segment; ``seq`` given: a copy of earlier sequence numbers (nothing advances)."""
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        ip: Packet = IPv6(src=src[0], dst=dst[0]) if self.v6 else IP(src=src[0], dst=dst[0])
        at = self.seq[from_client] if seq is None else seq
        ack = self.seq[not from_client] if "A" in flags else 0
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=at % 2**32, ack=ack % 2**32)
        packet = self.link(ip / tcp / Raw(data) if data else ip / tcp)
        self.ms += 1
        packet.time = EDecimal(T0) + EDecimal(self.ms) / 1000  # exact, unlike a float
        if seq is None:
            self.seq[from_client] += len(data) + (1 if "S" in flags or "F" in flags else 0)
        self.packets.append(packet)
        return packet

    def handshake(self) -> None:
        self.segment(True, "S")
        self.segment(False, "SA")
        self.segment(True, "A")

    def send(self, from_client: bool, data: bytes) -> Packet:
        return self.segment(from_client, "PA", data)

    def close(self) -> None:
        self.segment(True, "FA")
        self.segment(False, "FA")
        self.segment(True, "A")

    def exchange(self) -> None:
        """Handshake, the request, the response in four segments, both FINs."""
        self.handshake()
        self.send(True, REQUEST)
        self.send(False, HEAD)
        for chunk in CHUNKS:
            self.send(False, chunk)
        self.close()


def write(path: Path, packets: list[Packet], *, fmt: str = "pcapng", **kwargs: Any) -> Path:
    writer: Any = PcapNgWriter if fmt == "pcapng" else PcapWriter
    with writer(str(path), **kwargs) as w:
        for packet in packets:
            w.write(packet)
    return path


def retime(packets: list[Packet]) -> list[Packet]:
    """The packets 1 ms apart in their new order, as a capture would stamp them."""
    for ms, packet in enumerate(packets, 1):
        packet.time = EDecimal(T0) + EDecimal(ms) / 1000
    return packets


def read(tmp_path: Path, packets: list[Packet], **kwargs: Any) -> Trace:
    return read_capture(write(tmp_path / "c.pcapng", packets, **kwargs))


def lab_show(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "show", str(path), "--color", "never", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def kinds(conn: ConnectionTrace) -> list[str]:
    return [r.kind for r in conn.records]


def breaks(conn: ConnectionTrace) -> list[StreamBreak]:
    return [r for r in conn.records if isinstance(r, StreamBreak)]


# -- link layers, IP versions, file formats ----------------------------------------------


LINKS: dict[str, Callable[[Packet], Packet]] = {
    "ethernet": lambda ip: Ether() / ip,
    "sll": lambda ip: CookedLinux(proto=0x86DD if isinstance(ip, IPv6) else 0x0800) / ip,
    "sll2": lambda ip: CookedLinuxV2(proto=0x86DD if isinstance(ip, IPv6) else 0x0800) / ip,
    "bsd-loopback": lambda ip: Loopback(type=24 if isinstance(ip, IPv6) else 2) / ip,
    "raw-ip": lambda ip: ip,
}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("link", list(LINKS))
@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_every_link_layer_ip_version_and_format(
    tmp_path: Path, link: str, v6: bool, fmt: str
) -> None:
    conv = Conversation(LINKS[link], v6=v6)
    conv.exchange()
    trace = read(tmp_path, conv.packets, fmt=fmt)
    (conn,) = trace.connections
    assert (conn.side, conn.local, conn.peer) == ("client", conv.client, conv.server)
    assert conn.protocol == "http/1.1"
    assert conn.client_to_server() == REQUEST
    assert conn.server_to_client() == RESPONSE
    assert kinds(conn) == [CONNECT, SEND, RECV, RECV, RECV, RECV, CLOSE, EOF]
    # The capture's times, from its first packet, to the microsecond.
    assert [round(r.t, 6) for r in conn.records] == [0.0, 0.003, 0.004, 0.005, 0.006, 0.007,
                                                     0.008, 0.009]  # fmt: skip


def test_nanosecond_pcap_keeps_nanoseconds(tmp_path: Path) -> None:
    conv = Conversation()
    conv.exchange()
    conv.packets[3].time = EDecimal(T0) + EDecimal("0.003000123")  # the request
    trace = read(tmp_path, conv.packets, fmt="pcap", nano=True)
    # From the first packet (T0 + 1 ms), to the nanosecond.
    assert trace.connections[0].records[1].t == pytest.approx(0.002_000_123, abs=1e-10)


def test_frames_agree_with_scapys_reader(tmp_path: Path) -> None:
    """The lab's pcap/pcapng reader and scapy's see the same packets and bytes."""
    conv = Conversation()
    conv.exchange()
    files = [write(tmp_path / "a.pcapng", conv.packets),
             write(tmp_path / "a.pcap", conv.packets, fmt="pcap"),
             *sorted(GOLDEN.glob("*.pcapng"))[:5]]  # fmt: skip
    for path in files:
        with path.open("rb") as f:
            ours = list(read_frames(f))
        theirs = rdpcap(str(path))
        assert [f.data for f in ours] == [bytes(p) for p in theirs], path
        assert [f.time_ns for f in ours] == [int(p.time * 10**9) for p in theirs], path


# -- TCP: what reassembly must get right -------------------------------------------------


def test_out_of_order_segments_are_put_in_order(tmp_path: Path) -> None:
    conv = Conversation()
    conv.exchange()
    packets = conv.packets
    # The server's second chunk is captured before its head and first chunk.
    packets[4], packets[5], packets[6] = packets[6], packets[4], packets[5]
    trace = read(tmp_path, retime(packets))
    conn = trace.connections[0]
    assert conn.server_to_client() == RESPONSE
    # The early chunk waits: it becomes readable with the first chunk, at the frame that
    # brought the bytes before it (frame 7), as a receiving stack hands them over.
    recv = [r for r in conn.records if r.kind == RECV]
    assert [r.data for r in recv] == [HEAD, CHUNKS[0], CHUNKS[1], CHUNKS[2]]
    assert [round(r.t, 6) for r in recv] == [0.005, 0.006, 0.006, 0.007]
    assert "1 out-of-order segments put in order" in trace.description
    assert not breaks(conn)


def test_retransmissions_are_dropped_when_equal(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.send(True, REQUEST)
    first = conv.send(False, HEAD)
    conv.segment(False, "PA", HEAD, seq=first[TCP].seq)  # the whole segment again
    conv.send(False, CHUNKS[0])
    # A retransmission that straddles old and new bytes (RFC 9293 §3.10.7.4: only the new
    # part counts): the last 3 bytes of the first chunk, then the second chunk.
    conv.segment(False, "PA", CHUNKS[0][-3:] + CHUNKS[1], seq=conv.seq[False] - 3)
    conv.seq[False] += len(CHUNKS[1])
    conv.send(False, CHUNKS[2])
    conv.close()
    trace = read(tmp_path, conv.packets)
    conn = trace.connections[0]
    assert conn.server_to_client() == RESPONSE
    assert "1 retransmitted segments dropped" in trace.description
    assert not breaks(conn)


def test_a_keepalive_probe_is_not_a_conflict(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.send(True, REQUEST)
    # RFC 9293 §3.8.4: one garbage octet at SND.NXT - 1.
    conv.segment(True, "A", b"\0", seq=conv.seq[True] - 1)
    conv.send(False, RESPONSE)
    conv.close()
    trace = read(tmp_path, conv.packets)
    assert trace.connections[0].client_to_server() == REQUEST
    assert "1 keep-alive probes dropped" in trace.description


def test_a_retransmission_with_other_bytes_is_refused(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.send(True, REQUEST)
    conv.send(False, HEAD)
    chunk = conv.send(False, CHUNKS[0])
    # The same sequence numbers, other bytes: "5\r\nHELLO\r\n".
    conv.segment(False, "PA", CHUNKS[0].upper(), seq=chunk[TCP].seq)
    conv.send(False, CHUNKS[1])
    conv.close()
    path = write(tmp_path / "conflict.pcapng", conv.packets)
    conn = read_capture(path).connections[0]
    (broken,) = breaks(conn)
    assert broken.kind == RECV  # server→client
    assert "conflicting retransmission: frame 7" in broken.reason
    assert f"byte {len(HEAD) + 4} differs from the copy in frame 6" in broken.reason
    # The break sits where the copies start to differ ("5\r\nH" agree, "e" does not);
    # the first copy is shown from there, the later copy and all after it are not read.
    assert conn.server_to_client() == HEAD + CHUNKS[0]
    recv = [r for r in conn.records if r.kind == RECV]
    assert recv == [Record(recv[0].t, RECV, HEAD), Record(recv[1].t, RECV, CHUNKS[0][:4]),
                    broken, Record(recv[1].t, RECV, CHUNKS[0][4:])]  # fmt: skip
    assert kinds(conn)[-2:] == [CLOSE, EOF]
    # Annotation: what both copies agree on is decoded (the head, the chunk size, "H"),
    # the rest of that direction is one Unparsed segment that says why.
    ac = annotate_connection(conn)
    unparsed = [s for s in ac.segments(from_client=False) if isinstance(s, Unparsed)]
    assert [(u.start, u.end) for u in unparsed] == [(len(HEAD) + 4, len(HEAD + CHUNKS[0]))]
    assert "conflicting retransmission" in unparsed[0].error
    out = lab_show(path)
    assert out.returncode == 0, out.stderr
    assert "not parsed: conflicting retransmission: frame 7" in " ".join(out.stdout.split())


def test_a_gap_is_a_break_not_a_join(tmp_path: Path) -> None:
    conv = Conversation()
    conv.exchange()
    del conv.packets[5]  # the first chunk: never captured
    path = write(tmp_path / "gap.pcapng", conv.packets)
    trace = read_capture(path)
    conn = trace.connections[0]
    (gap,) = breaks(conn)
    size = len(CHUNKS[0])
    assert gap.kind == RECV
    assert gap.reason.startswith(f"gap in the capture: {size} bytes of the server→client")
    assert f"stream bytes {len(HEAD)}-{len(HEAD) + size - 1}" in gap.reason
    # The bytes after the gap are there, after the break, and the gap's are not invented.
    assert conn.server_to_client() == HEAD + CHUNKS[1] + CHUNKS[2]
    after = conn.records[conn.records.index(gap) + 1 :]
    assert [r.data for r in after if r.kind == RECV] == [CHUNKS[1], CHUNKS[2]]
    assert kinds(conn)[-2:] == [CLOSE, EOF]
    # The head is decoded; the second chunk is not read as if it followed the head.
    ac = annotate_connection(conn)
    server = ac.segments(from_client=False)
    assert not [s for s in server if isinstance(s, ChunkSize)]
    assert isinstance(server[-1], Unparsed)
    assert (server[-1].start, server[-1].end) == (len(HEAD), len(HEAD + CHUNKS[1] + CHUNKS[2]))
    assert gap.reason in trace.description
    assert "out-of-order" not in trace.description  # after a gap, not put in order
    out = lab_show(path)
    assert out.returncode == 0, out.stderr
    assert f"not parsed: gap in the capture: {size} bytes" in " ".join(out.stdout.split())


def test_a_packet_cut_to_the_snapshot_length_leaves_a_gap(tmp_path: Path) -> None:
    conv = Conversation()
    conv.exchange()
    path = write(tmp_path / "cut.pcap", conv.packets, fmt="pcap")
    raw = bytearray(path.read_bytes())
    # Cut the request's packet (the fourth record) by 10 bytes, as snaplen would: its
    # record says 10 bytes fewer captured than were on the wire.
    offset = 24
    for _ in range(3):
        offset += 16 + int.from_bytes(raw[offset + 8 : offset + 12], "little")
    caplen = int.from_bytes(raw[offset + 8 : offset + 12], "little")
    raw[offset + 8 : offset + 12] = (caplen - 10).to_bytes(4, "little")
    start = offset + 16 + caplen - 10
    del raw[start : start + 10]
    path.write_bytes(bytes(raw))
    conn = read_capture(path).connections[0]
    (gap,) = breaks(conn)
    assert gap.reason.startswith("gap in the capture: 10 bytes of the client→server stream")
    assert "just before the FIN" in gap.reason
    assert conn.client_to_server() == REQUEST[:-10]


def test_reset_ends_the_connection(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.send(True, REQUEST)
    conv.send(False, HEAD)
    conv.segment(True, "RA")
    conv.send(False, CHUNKS[0])  # after the reset: not read
    trace = read(tmp_path, conv.packets)
    conn = trace.connections[0]
    assert kinds(conn) == [CONNECT, SEND, RECV, RESET]
    assert conn.server_to_client() == HEAD


def test_a_refused_connection_is_not_a_connect(tmp_path: Path) -> None:
    conv = Conversation()
    conv.segment(True, "S")
    conv.segment(False, "RA")  # nothing listens on the port
    trace = read(tmp_path, conv.packets)
    assert kinds(trace.connections[0]) == [RESET]
    assert "the SYN was answered by a reset (refused)" in trace.description


def test_sequence_numbers_wrap_around(tmp_path: Path) -> None:
    conv = Conversation(client_isn=2**32 - 20, server_isn=2**32 - 3)
    conv.exchange()
    conn = read(tmp_path, conv.packets).connections[0]
    assert (conn.client_to_server(), conn.server_to_client()) == (REQUEST, RESPONSE)


def test_client_port_reused_is_a_new_connection(tmp_path: Path) -> None:
    first, second = Conversation(), Conversation(client_isn=900_000, server_isn=77)
    first.exchange()
    second.ms = first.ms
    second.exchange()
    again = second.packets[0].copy()  # the second SYN, retransmitted: the same connection
    again.time = second.packets[0].time + EDecimal("0.0005")
    trace = read(tmp_path, [*first.packets, second.packets[0], again, *second.packets[1:]])
    assert len(trace.connections) == 2
    for conn in trace.connections:
        assert (conn.client_to_server(), conn.server_to_client()) == (REQUEST, RESPONSE)


def test_a_capture_that_began_after_the_handshake(tmp_path: Path) -> None:
    conv = Conversation(client=("10.0.0.1", 80), server=("10.0.0.2", 50_000))
    conv.exchange()
    trace = read(tmp_path, conv.packets[3:])  # no SYN, no SYN-ACK
    conn = trace.connections[0]
    # The side whose bytes read as a request is the client, whatever the ports say.
    assert (conn.local, conn.peer) == (conv.client, conv.server)
    assert kinds(conn)[0] == SEND
    assert (conn.client_to_server(), conn.server_to_client()) == (REQUEST, RESPONSE)
    assert "no SYN in the capture" in trace.description


def test_a_client_fin_before_the_response_is_a_shutdown(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.send(True, REQUEST)
    conv.segment(True, "FA")
    conv.send(False, RESPONSE)
    conv.segment(False, "FA")
    conn = read(tmp_path, conv.packets).connections[0]
    assert kinds(conn) == [CONNECT, SEND, SHUTDOWN, RECV, EOF]


@st.composite
def _segmented(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, bytes]], set[int]]:
    """A stream, an ISN, its segments (offset, bytes) in some capture order with equal
    retransmissions of any range, and which bytes no segment carries (dropped ones)."""
    stream = draw(st.binary(min_size=1, max_size=400))
    isn = draw(st.integers(0, 2**32 - 1))
    cuts = (
        sorted(draw(st.sets(st.integers(1, len(stream) - 1), max_size=12)))
        if len(stream) > 1
        else []
    )
    bounds = [0, *cuts, len(stream)]
    pieces = [(a, stream[a:b]) for a, b in itertools.pairwise(bounds)]
    dropped = draw(st.sets(st.integers(0, len(pieces) - 1), max_size=len(pieces) - 1))
    kept = [p for i, p in enumerate(pieces) if i not in dropped]
    copies = draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 50)),
                           max_size=4))  # fmt: skip
    kept += [(a, stream[a : a + n]) for a, n in copies]
    order = draw(st.permutations(kept))
    covered = {a + i for a, data in order for i in range(len(data))}
    return stream, isn, list(order), set(range(len(stream))) - covered


@settings(max_examples=300, deadline=None)
@given(_segmented())
def test_reassembly_delivers_every_captured_byte_once_in_order(
    case: tuple[bytes, int, list[tuple[int, bytes]], set[int]],
) -> None:
    stream, isn, pieces, missing = case
    segments = [
        TCPSegment(n, n * 1000, ("a", 1), ("b", 2), (isn + 1 + a) % 2**32, 0, 0x18, d, len(d))
        for n, (a, d) in enumerate(pieces, 2)
    ]
    fin_seq = (isn + 1 + len(stream)) % 2**32
    segments.append(TCPSegment(len(pieces) + 2, 0, ("a", 1), ("b", 2), fin_seq, 0, 0x11, b"", 0))
    out = reassemble(segments, isn, "client→server")
    data = b"".join(d.data for d in out.deliveries)
    assert data == bytes(b for i, b in enumerate(stream) if i not in missing)
    # One break per run of missing bytes, never a join; deliveries in frame order.
    runs = sum(1 for i in missing if i - 1 not in missing)
    assert len(out.problems) == runs
    assert all(p.startswith("gap in the capture") for p in out.problems)
    numbers = [d.number for d in out.deliveries]
    assert numbers == sorted(numbers)
    assert out.deliveries[-1].fin


# -- protocols -------------------------------------------------------------------------


def test_h2c_is_told_by_its_preface(tmp_path: Path) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
    settings = bytes.fromhex("000000040000000000") + bytes.fromhex("000000040100000000")
    conv = Conversation()
    conv.handshake()
    conv.send(True, preface)
    conv.send(False, settings)
    conv.close()
    conn = read(tmp_path, conv.packets).connections[0]
    assert conn.protocol == "h2c"
    notes = [s.note() for s in annotate_connection(conn).segments(from_client=False)]
    assert notes[0].startswith("SETTINGS")


def test_websocket_after_a_101_is_marked(tmp_path: Path) -> None:
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    switched = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    frame = b"\x81\x05hello"  # a text frame, unmasked (server to client, RFC 6455 §5.2)
    conv = Conversation()
    conv.handshake()
    conv.send(True, upgrade)
    conv.send(False, switched + frame)
    conv.close()
    conn = read(tmp_path, conv.packets).connections[0]
    assert conn.protocol == "http/1.1+websocket"
    assert conn.server_to_client() == switched + frame
    # The HTTP/1.1 annotator reads the handshake; the frame's bytes follow the 101.
    segments = annotate_connection(conn).segments(from_client=False)
    assert segments[0].note().startswith("status line: HTTP/1.1 101")
    assert segments[-1].end == len(switched + frame)


def _client_hello(server_name: str, alpn: list[str]) -> bytes:
    """The first bytes a real TLS client (Python's OpenSSL) sends, without a network."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_tls_is_opaque_but_the_client_hello_names_the_server(tmp_path: Path) -> None:
    hello = _client_hello("lab.example", ["h2", "http/1.1"])
    encrypted = bytes([23, 3, 3, 0, 40]) + bytes(range(40))  # an application_data record
    conv = Conversation(server=("10.0.0.2", 443))
    conv.handshake()
    conv.send(True, hello)
    conv.send(False, encrypted)
    conv.close()
    path = write(tmp_path / "tls.pcapng", conv.packets)
    conn = read_capture(path).connections[0]
    assert conn.protocol == "tls"
    records = annotate_connection(conn).items
    assert all(isinstance(a.segment, TLSRecord) for a in records)
    first, second = (a.segment.note() for a in records)
    assert "ClientHello (SNI lab.example, ALPN h2, http/1.1)" in first
    assert second == "TLS record: application_data, 40 bytes: encrypted (opaque without the " \
        "session keys)"  # fmt: skip
    out = lab_show(path)
    assert out.returncode == 0, out.stderr
    assert "SNI lab.example, ALPN h2, http/1.1" in out.stdout
    assert "tls" in out.stdout


@settings(max_examples=300, deadline=None)
@given(
    hello=st.binary(max_size=300),
    kind=st.sampled_from([1, 2]),
    split=st.integers(0, 400),
)
def test_any_hello_is_read_or_called_malformed(hello: bytes, kind: int, split: int) -> None:
    """Whatever a ClientHello or ServerHello holds, the record is one segment with a note."""
    message = bytes([kind]) + len(hello).to_bytes(3, "big") + hello
    record = bytes([22, 3, 1]) + len(message).to_bytes(2, "big") + message
    decoder = TLSRecordDecoder()
    (segment,) = decoder.feed(record[:split]) + decoder.feed(record[split:]) + decoder.eof()
    assert (segment.start, segment.end) == (0, len(record))
    assert segment.note().startswith("TLS record: handshake")


def test_bytes_that_are_not_tls_are_refused_where_they_start() -> None:
    decoder = TLSRecordDecoder()
    good = bytes([23, 3, 3, 0, 2]) + b"\0\0"
    with pytest.raises(TLSRecordError, match="not a TLS record header") as info:
        decoder.feed(good + b"GET / HTTP/1.1\r\n")
    assert info.value.offset == len(good)
    assert [(s.start, s.end) for s in info.value.segments] == [(0, len(good))]


def test_unknown_bytes_are_shown_not_annotated(tmp_path: Path) -> None:
    conv = Conversation(server=("10.0.0.2", 6379))
    conv.handshake()
    conv.send(True, b"*1\r\n$4\r\nPING\r\n")  # not HTTP: RESP
    conv.send(False, b"+PONG\r\n")
    conv.close()
    conn = read(tmp_path, conv.packets).connections[0]
    assert conn.protocol == "tcp"
    assert conn.server_to_client() == b"+PONG\r\n"


# -- the lab's own export, read back ---------------------------------------------------


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.pcapng")), ids=lambda p: p.stem)
def test_every_golden_pcapng_reads_back_as_its_trace(golden: Path) -> None:
    original = load(golden.with_suffix(".trace"))
    read_back = read_capture(golden)
    assert len(read_back.connections) == len(original.connections)
    for ours, theirs in zip(read_back.connections, original.connections, strict=True):
        assert ours.client_to_server() == theirs.client_to_server()
        assert ours.server_to_client() == theirs.server_to_client()
        # The lab's server records "http/1.1" for a connection it upgraded; the capture
        # reader marks the upgrade it finds after the 101.
        upgraded = theirs.protocol == "http/1.1" and theirs.server_to_client().startswith(
            b"HTTP/1.1 101 Switching Protocols"
        )
        assert ours.protocol == ("http/1.1+websocket" if upgraded else theirs.protocol)
        assert ours.client[1] == theirs.client[1]
        assert not breaks(ours)


_RECORDS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([SEND, RECV]), st.binary(min_size=1, max_size=200)),
        # Past MAX_SEGMENT_PAYLOAD: the export splits it in two segments.
        st.tuples(st.just(SEND), st.builds(lambda b: bytes([b]) * 70_000, st.integers(0, 255))),
    ),
    max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_RECORDS, side=st.sampled_from(["client", "server"]))
def test_any_exported_trace_reads_back_with_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[str, bytes]], side: str
) -> None:
    local, peer = ("127.0.0.1", 50_000), ("127.0.0.1", 8080)
    if side == "server":
        local, peer = peer, local
    conn = ConnectionTrace(side, local, peer)  # type: ignore[arg-type]
    conn.records = [Record(0.0, CONNECT)]
    conn.records += [Record(0.001 * (i + 1), kind, data) for i, (kind, data) in enumerate(records)]
    conn.records += [Record(1.0, EOF), Record(1.0, CLOSE)]
    path = tmp_path_factory.mktemp("rt") / "t.pcapng"
    path.write_bytes(to_pcapng(Trace("rt", connections=[conn])))
    (back,) = read_capture(path).connections
    assert back.client_to_server() == conn.client_to_server()
    assert back.server_to_client() == conn.server_to_client()
    assert back.client == conn.client
    assert kinds(back)[0] == CONNECT


# -- what is refused, in one line ------------------------------------------------------


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    conv = Conversation()
    conv.exchange()
    path = write(tmp_path / "whole.pcapng", conv.packets)
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(CaptureError, match="truncated: the file ends inside packet 11"):
        read_capture(cut)
    out = lab_show(cut)
    assert (out.returncode, out.stdout) == (1, "")
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"lab show: {cut}: not a readable pcapng capture: truncated")


def test_a_capture_without_tcp_is_refused(tmp_path: Path) -> None:
    packets = [Ether() / IP(dst="10.0.0.9") / UDP(dport=53) / Raw(b"x" * 12) for _ in range(3)]
    for i, packet in enumerate(packets):
        packet.time = EDecimal(T0 + i)
    path = write(tmp_path / "udp.pcapng", packets)
    with pytest.raises(CaptureError, match=r"no TCP connection in this pcapng capture: 3 "
                       r"packets \(3 UDP\)"):  # fmt: skip
        read_capture(path)


def test_a_corrupt_block_length_is_refused(tmp_path: Path) -> None:
    conv = Conversation()
    conv.exchange()
    raw = bytearray(write(tmp_path / "a.pcapng", conv.packets).read_bytes())
    shb = int.from_bytes(raw[4:8], "little")
    raw[shb + 4 : shb + 8] = (13).to_bytes(4, "little")  # the interface block's length
    (tmp_path / "bad.pcapng").write_bytes(bytes(raw))
    with pytest.raises(CaptureError, match="has length 13"):
        read_capture(tmp_path / "bad.pcapng")


@functools.cache
def _small_capture(fmt: str) -> bytes:
    conv = Conversation()
    conv.exchange()
    with tempfile.TemporaryDirectory() as directory:
        return write(Path(directory) / f"small.{fmt}", conv.packets, fmt=fmt).read_bytes()


@settings(max_examples=500, deadline=None)
@given(
    fmt=st.sampled_from(["pcapng", "pcap"]),
    cut=st.one_of(st.just(0), st.integers(1, 1200)),
    flips=st.lists(st.tuples(st.integers(0, 1200), st.integers(1, 255)), max_size=4),
)
def test_damaged_files_are_refused_in_words_or_read(
    tmp_path_factory: pytest.TempPathFactory, fmt: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    """Any byte changed, any length cut: a trace or a CaptureError, never another error."""
    data = bytearray(_small_capture(fmt))
    for at, xor in flips:
        if at < len(data):
            data[at] ^= xor
    path = tmp_path_factory.mktemp("damaged") / f"d.{fmt}"
    path.write_bytes(bytes(data[: max(0, len(data) - cut)]))
    outcome: Trace | CaptureError
    try:
        outcome = read_capture(path)
    except CaptureError as exc:
        outcome = exc
    if isinstance(outcome, CaptureError):
        assert "\n" not in str(outcome)
    else:  # and every view shows it
        for view in ("annotated", "hex", "timeline", "sequence"):
            render(outcome, view, Console(file=io.StringIO(), width=120))


@pytest.mark.parametrize("view", ["annotated", "hex", "timeline", "sequence"])
def test_every_view_shows_a_capture(tmp_path: Path, view: str) -> None:
    conv = Conversation()
    conv.exchange()
    out = lab_show(write(tmp_path / "c.pcapng", conv.packets), "--view", view)
    assert out.returncode == 0, out.stderr
    assert "pcapng capture: 11 packets, 1 TCP connection\n" in out.stdout
    if view in ("annotated", "sequence"):
        assert "GET /tokens?n=3" in out.stdout
        assert "Hello" in out.stdout
