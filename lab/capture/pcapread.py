"""Packet captures as traces: ``lab show`` on a pcap or pcapng from anywhere (tcpdump,
dumpcap, Wireshark, a browser's export), shown exactly as the lab's own traces.

:func:`read_capture` goes from packets to a :class:`~lab.capture.trace.Trace`:

1. the file's packets (:mod:`lab.capture.pcapread_file`: pcap and pcapng);
2. each packet's TCP segment (:mod:`lab.capture.pcapread_packet`: Ethernet, Linux cooked
   SLL and SLL2, BSD loopback, raw IP; IPv4 and IPv6); other packets are counted, and
   said, but not read;
3. segments grouped into connections by their two endpoints. A SYN with a new initial
   sequence number on the same endpoints is a new connection (a client port used again,
   RFC 9293 §3.4.1), a retransmitted SYN is not;
4. the client of each connection is the sender of the SYN (without ACK), so each
   becomes a :class:`~lab.capture.trace.ConnectionTrace` tapped at the client: ``send``
   for client→server bytes, ``recv`` for server→client. Without a SYN in the capture (it
   began after the handshake), the receiver of the SYN-ACK, else the side whose first
   bytes read as a request, else the higher port, and the trace's description says so;
5. each direction reassembled (:mod:`lab.capture.pcapread_tcp`): out-of-order segments
   wait for the ones before them, equal retransmissions are dropped, a retransmission
   with different bytes stops that direction, and a gap is a
   :class:`~lab.capture.pcapread_records.StreamBreak` (never joined silently);
6. records at the capture's times (seconds from its first TCP packet): ``connect`` at
   the SYN, ``send``/``recv`` when bytes became readable in order, ``close`` at the
   client's FIN (``shutdown`` if the server's bytes still came after it), ``eof`` at the
   server's FIN, ``reset`` at the first RST, after which nothing of the connection is
   read;
7. the protocol of each connection, from its first bytes: ``h2c`` (the HTTP/2 client
   preface, RFC 9113 §3.4), ``tls`` (a TLS handshake record, shown record by record,
   the payload opaque: :mod:`lab.capture.pcapread_tls`), ``http/1.1`` (a request line,
   RFC 9112 §3), ``http/1.1+websocket`` when a ``101 Switching Protocols`` answers an
   ``Upgrade: websocket`` (RFC 6455 §4; ``http/1.1+TOKEN`` for another upgrade): the
   HTTP/1.1 annotator reads the handshake, and the bytes after the 101 are WebSocket
   frames; else ``tcp`` (shown as bytes, not annotated).

Limits, each named with its reason: :data:`MAX_PACKETS` read from a file,
:data:`MAX_CONNECTIONS` per file, :data:`~lab.capture.pcapread_tcp.MAX_STREAM_BYTES` per
direction and :data:`MAX_PAYLOAD_BYTES` held in all; past one of them the file is refused
with a hint to cut it down first. Every refusal is a :class:`CaptureError`, one line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lab.capture.pcapread_file import CaptureFormatError, Frame, capture_format, read_frames
from lab.capture.pcapread_packet import TCPSegment, tcp_segment
from lab.capture.pcapread_records import StreamBreak
from lab.capture.pcapread_tcp import Reassembled, StreamTooLong, reassemble
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
from lab.wire.errors import ProtocolError
from lab.wire.h2constants import PREFACE
from lab.wire.http1 import HeadEnd, HeaderField, MessageDecoder, RequestLine, StatusLine
from lab.wire.segment import Segment

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_NOTES",
    "MAX_PACKETS",
    "MAX_PAYLOAD_BYTES",
    "CaptureError",
    "capture_format",
    "detect_protocol",
    "read_capture",
]

# Packets read from one file: a million is minutes of a busy link, far more than the views
# can show readably, and takes some twenty seconds to read in Python (~20 µs a packet).
MAX_PACKETS: Final = 1_000_000
# TCP connections in one file: each is annotated and rendered in full; a port scan or a
# browser's whole session is better cut down to the connections of interest first.
MAX_CONNECTIONS: Final = 10_000
# TCP payload bytes held in memory while reading (all connections, retransmissions too).
MAX_PAYLOAD_BYTES: Final = 256 * 1024 * 1024

# Notes (a gap, a missing SYN, retransmissions) in the trace's description, which every
# view prints as its title: past this many the rest are counted, not listed. A gap is
# also said where it is, in the connection's own rows.
MAX_NOTES: Final = 20

_CUT_HINT: Final = (
    "cut the capture down first, e.g. tshark -r FILE -Y 'tcp.port == 8080' -w smaller.pcapng"
)
# A request line's method: an RFC 9110 §5.6.2 token, then a space.
_REQUEST_START: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]")

Endpoint = tuple[str, int]


class CaptureError(ValueError):
    """The capture cannot be shown: not readable, no TCP, or past a limit (one line)."""


@dataclass(slots=True)
class _Connection:
    """The segments of one TCP connection, in capture order."""

    first: Endpoint  # the source of its first captured segment
    segments: list[TCPSegment] = field(default_factory=list)
    syn: TCPSegment | None = None  # the first SYN without ACK: from the client
    syn_ack: TCPSegment | None = None  # the first SYN-ACK: from the server


def read_capture(path: str | Path) -> Trace:
    """The TCP connections of the pcap/pcapng file at ``path`` as a trace (see the module
    docstring); :class:`CaptureError` if it cannot be read."""
    path = Path(path)
    with path.open("rb") as f:
        kind = capture_format(f.read(4)) or "packet"
        f.seek(0)
        try:
            connections, skipped, frames = _connections(read_frames(f))
        except CaptureFormatError as exc:
            raise CaptureError(f"not a readable {kind} capture: {exc}") from None
    if not connections:
        what = f"{frames} packet{'s' if frames > 1 else ''}" if frames else "no packets"
        if skipped:
            what += f" ({_counts(skipped)})"
        raise CaptureError(f"no TCP connection in this {kind} capture: {what}")
    t0 = min(c.segments[0].time_ns for c in connections)
    notes: list[str] = []
    trace = Trace(path.name)
    for index, conn in enumerate(connections):
        try:
            trace.connections.append(_connection_trace(conn, t0, index, notes))
        except StreamTooLong as exc:
            raise CaptureError(f"connection {index}: {exc}; {_CUT_HINT}") from None
    plural = "s" if len(connections) > 1 else ""
    packets = f"{frames} packet{'s' if frames > 1 else ''}"
    summary = f"{kind} capture: {packets}, {len(connections)} TCP connection{plural}"
    if skipped:
        summary += f"; not TCP or not read: {_counts(skipped)}"
    if len(notes) > MAX_NOTES:
        more = len(notes) - MAX_NOTES
        notes = [*notes[:MAX_NOTES], f"… and {more} more notes like these"]
    trace.description = "\n".join([summary, *notes])
    return trace


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counter.most_common())


def _connections(frames: Iterable[Frame]) -> tuple[list[_Connection], Counter[str], int]:
    current: dict[frozenset[Endpoint], _Connection] = {}
    connections: list[_Connection] = []
    skipped: Counter[str] = Counter()
    held = 0
    count = 0
    for frame in frames:
        count += 1
        if count > MAX_PACKETS:
            raise CaptureError(f"more than {MAX_PACKETS} packets (MAX_PACKETS); {_CUT_HINT}")
        seg = tcp_segment(frame)
        if isinstance(seg, str):
            skipped[seg] += 1
            continue
        held += len(seg.payload)
        if held > MAX_PAYLOAD_BYTES:
            raise CaptureError(
                f"more than {MAX_PAYLOAD_BYTES} bytes of TCP payload (MAX_PAYLOAD_BYTES); "
                + _CUT_HINT
            )
        key = frozenset((seg.src, seg.dst))
        conn = current.get(key)
        opening = seg.syn and not seg.has_ack
        if conn is None or (opening and not _same_syn(conn.syn, seg)):
            if len(connections) == MAX_CONNECTIONS:
                raise CaptureError(
                    f"more than {MAX_CONNECTIONS} TCP connections (MAX_CONNECTIONS); " + _CUT_HINT
                )
            conn = current[key] = _Connection(seg.src)
            connections.append(conn)
        if opening and conn.syn is None:
            conn.syn = seg
        elif seg.syn and seg.has_ack and conn.syn_ack is None:
            conn.syn_ack = seg
        conn.segments.append(seg)
    return connections, skipped, count


def _same_syn(syn: TCPSegment | None, seg: TCPSegment) -> bool:
    """``seg`` is a retransmission of ``syn`` (same sender, same initial sequence number)."""
    return syn is not None and syn.src == seg.src and syn.seq == seg.seq


def _client(conn: _Connection) -> tuple[Endpoint, Endpoint, str]:
    """(client, server, how the client was chosen when there was no SYN: else "")."""
    ends = {s.src for s in conn.segments} | {s.dst for s in conn.segments}
    a = conn.first
    b = next(iter(ends - {a}), a)
    if conn.syn is not None:
        return conn.syn.src, conn.syn.dst, ""
    if conn.syn_ack is not None:
        return conn.syn_ack.dst, conn.syn_ack.src, "the receiver of the SYN-ACK"
    firsts: dict[Endpoint, TCPSegment] = {}  # each side's first captured bytes
    for seg in conn.segments:
        if seg.payload:
            firsts.setdefault(seg.src, seg)
    for seg in firsts.values():
        role = _looks_like(seg.payload)
        if role == "request":
            return seg.src, seg.dst, "the side whose first bytes read as a request"
        if role == "response":
            return seg.dst, seg.src, "the receiver of bytes that read as a response"
    client, server = (a, b) if a[1] >= b[1] else (b, a)
    return client, server, "the higher port (an ephemeral port, as clients use)"


def _looks_like(data: bytes) -> str:
    if data.startswith(PREFACE[: len(data)]) or _REQUEST_START.match(data):
        return "request"
    if data[:1] == b"\x16" and data[5:6] == b"\x01":  # a TLS handshake: ClientHello
        return "request"
    if data.startswith(b"HTTP/"):
        return "response"
    return ""


def _connection_trace(conn: _Connection, t0: int, index: int, notes: list[str]) -> ConnectionTrace:
    client, server, chosen = _client(conn)
    name = f"connection {index} ({client[0]}:{client[1]} → {server[0]}:{server[1]})"
    if chosen:
        notes.append(f"{name}: no SYN in the capture (it began after the handshake); the "
                     f"client is {chosen}, and its first bytes may be mid-message")  # fmt: skip
    reset = next((s for s in conn.segments if s.rst), None)
    segments = [s for s in conn.segments if reset is None or s.number < reset.number]
    isn_c = conn.syn.seq if conn.syn is not None else None
    isn_s = conn.syn_ack.seq if conn.syn_ack is not None else None
    c2s = reassemble([s for s in segments if s.src == client], isn_c, "client→server")
    s2c = reassemble([s for s in segments if s.src == server], isn_s, "server→client")
    for problem in c2s.problems + s2c.problems:
        notes.append(f"{name}: {problem}")
    counts = _repairs(c2s, s2c)
    if counts:
        notes.append(f"{name}: {counts}")

    def t(time_ns: int) -> float:
        return (time_ns - t0) / 1e9

    events: list[tuple[int, int, Record]] = []  # (frame, order, record)
    # Established: a SYN-ACK, or bytes or a FIN (the capture missed the SYN-ACK). A SYN
    # answered by nothing, or by a reset (a refused connection), is not a connect.
    answered = conn.syn_ack is not None or any(s.payload or s.fin for s in segments)
    if conn.syn is not None and not answered:
        how = "a reset (refused)" if reset is not None else "nothing in the capture"
        notes.append(f"{name}: the SYN was answered by {how}")
    opening = (conn.syn if answered else None) or conn.syn_ack
    if opening is not None:
        events.append((opening.number, 0, Record(t(opening.time_ns), CONNECT)))
    server_data = [d.number for d in s2c.deliveries if d.data]
    for from_client, result in ((True, c2s), (False, s2c)):
        kind = SEND if from_client else RECV
        for d in result.deliveries:
            if d.problem:
                record: Record = StreamBreak(t(d.time_ns), kind, reason=d.problem)
            elif d.fin and from_client:
                still_read = any(n > d.number for n in server_data)
                record = Record(t(d.time_ns), SHUTDOWN if still_read else CLOSE)
            elif d.fin:
                record = Record(t(d.time_ns), EOF)
            else:
                record = Record(t(d.time_ns), kind, d.data)
            events.append((d.number, len(events) + 1, record))
    if reset is not None:
        events.append((reset.number, len(events) + 1, Record(t(reset.time_ns), RESET)))
    events.sort(key=lambda e: (e[0], e[1]))
    trace = ConnectionTrace("client", client, server, records=[r for _, _, r in events])
    trace.protocol = detect_protocol(trace)
    return trace


def _repairs(c2s: Reassembled, s2c: Reassembled) -> str:
    parts = [
        (c2s.retransmissions + s2c.retransmissions, "retransmitted segments dropped"),
        (c2s.out_of_order + s2c.out_of_order, "out-of-order segments put in order"),
        (c2s.keepalives + s2c.keepalives, "keep-alive probes dropped"),
        (c2s.ignored + s2c.ignored, "segments not read (past a conflict or the FIN)"),
    ]
    return ", ".join(f"{n} {what}" for n, what in parts if n)


# --------------------------------------------------------------------------- protocol


def _readable(conn: ConnectionTrace, *, from_client: bool) -> bytes:
    """One direction's bytes up to its first break."""
    out = []
    for rec in conn.records:
        if rec.kind in (SEND, RECV) and conn.is_from_client(rec) == from_client:
            if isinstance(rec, StreamBreak):
                break
            out.append(rec.data)
    return b"".join(out)


def detect_protocol(conn: ConnectionTrace) -> str:
    """What the connection speaks, from its first bytes (see the module docstring)."""
    request = _readable(conn, from_client=True)
    if not request:
        return "tcp"
    if request.startswith(PREFACE[: len(request)]):
        return "h2c"
    if request[:1] == b"\x16" and request[1:2] == b"\x03":  # TLS handshake record, 3.x
        return "tls"
    if not _REQUEST_START.match(request.lstrip(b"\r\n")):
        return "tcp"
    upgrade = _upgrade(request, _readable(conn, from_client=False))
    return f"http/1.1+{upgrade}" if upgrade else "http/1.1"


def _upgrade(request: bytes, response: bytes) -> str:
    """The protocol a ``101 Switching Protocols`` switched to (its Upgrade header), or ""."""
    requests = _segments(MessageDecoder("request"), request)
    decoder = MessageDecoder("response")
    for seg in requests:
        if isinstance(seg, RequestLine):
            decoder.expect(seg.method)
    switched = False
    for seg in _segments(decoder, response):
        if isinstance(seg, StatusLine):
            switched = seg.status == 101
        elif switched and isinstance(seg, HeaderField) and seg.name.lower() == "upgrade":
            token = seg.value.split(",")[0].strip().lower()
            return re.sub(r"[^a-z0-9._/-]", "_", token)[:40] or "unknown"
        elif switched and isinstance(seg, HeadEnd):
            return "unknown"
    return ""


def _segments(decoder: MessageDecoder, data: bytes) -> list[Segment]:
    try:
        return decoder.feed(data)
    except ProtocolError as exc:  # the bytes after an upgrade are not HTTP/1.1
        return exc.segments
