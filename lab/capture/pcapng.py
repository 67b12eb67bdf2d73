"""Export a trace to pcapng, with synthetic IP/TCP around its bytes, for tshark and Wireshark.

A trace records socket calls, not packets, so the packets here are made up, in the simplest
way that a TCP dissector accepts as a clean conversation:

- per connection a three-way handshake (SYN, SYN-ACK, ACK) at the time of its ``connect``;
- one segment per ``send`` / ``recv`` record, in that record's direction, PSH|ACK, with
  correct sequence and acknowledgement numbers, split at :data:`MAX_SEGMENT_PAYLOAD` (PSH
  only on the last piece, as a sending stack does). No pure ACKs are invented between data
  segments: each segment acknowledges everything the other side has sent so far, and the
  window is large enough (scale 14, RFC 7323) that nothing looks stalled;
- ``eof`` is a FIN from the peer, ``close`` and ``shutdown`` a FIN from the tapped side, each
  ACKed by the other side; ``reset`` is an RST from the peer;
- correct IPv4 header and TCP checksums (IPv6 when the trace's addresses are IPv6).

Ports and addresses are the trace's own, so ``tcp.stream`` matches its connections; when two
connections share a 4-tuple (a normalised trace, or both sides of one conversation), the
later one gets a free client port from :data:`SYNTHETIC_PORT_BASE` up, so every connection
stays a stream of its own. Wireshark picks the HTTP dissector by port: 8080 is among its
defaults; for other ports use Decode As (``tshark -d tcp.port==PORT,http``).

Times are the trace's axis plus :data:`EPOCH_BASE`, to the microsecond. Output is a pure
function of the trace: exporting twice gives identical files.

Every packet carries a comment (EPB ``opt_comment``): the text ``annotations(conn_index,
record_index)`` returns for the record that produced it, or a default such as ``client→server
send 57 bytes (record 3)``. Packets also carry the direction (EPB flags) seen from the tapped
socket: ``outbound`` for what it sent, ``inbound`` for what it received.

Why the blocks are written here rather than through scapy (which is installed, and whose
``PcapNgWriter`` does write packet comments): the format needs four block layouts and a
checksum, about as many lines as driving scapy would take; struct-packed bytes are
reproducible byte for byte, checked by tshark in the tests, and avoid scapy's import
(~0.7 s) in the CLI and every notebook that exports. Format reference: the pcapng
specification (IETF draft-ietf-opsawg-pcapng), sections 4.1-4.3 and 3.5.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

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

__all__ = [
    "EPOCH_BASE",
    "MAX_SEGMENT_PAYLOAD",
    "SYNTHETIC_PORT_BASE",
    "Annotations",
    "export_pcapng",
    "to_pcapng",
    "write_pcapng_connection",
]

Annotations = Callable[[int, int], str | None]  # (connection index, record index) -> comment

# The largest TCP payload one IPv4 packet can carry: 65,535 (the IPv4 total-length field's
# maximum) - 20 (IPv4 header) - 20 (TCP header without options). Loopback's MTU is 65,536,
# so this is also about what a loopback capture shows.
MAX_SEGMENT_PAYLOAD: Final = 65_495
EPOCH_BASE: Final = 1_704_067_200  # 2024-01-01 00:00:00 UTC: fixed, so exports reproduce
SYNTHETIC_PORT_BASE: Final = 49_152  # start of the IANA dynamic range, for remapped ports
# Documentation addresses (RFC 5737 TEST-NET-1) for hosts that are not IP literals.
SYNTHETIC_CLIENT_IP: Final = "192.0.2.1"
SYNTHETIC_SERVER_IP: Final = "192.0.2.2"
CLIENT_ISN: Final = 0x1000_0000  # initial sequence numbers: any fixed value will do;
SERVER_ISN: Final = 0x2000_0000  # Wireshark shows sequence numbers relative to them
WINDOW: Final = 0xFFFF
WINDOW_SCALE: Final = 14  # the largest shift RFC 7323 allows: a 1 GiB window
TTL: Final = 64

# TCP flags (RFC 9293 §3.1).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10

# pcapng (draft-ietf-opsawg-pcapng): block types, option codes, link type.
_SHB: Final = 0x0A0D0D0A
_IDB: Final = 0x00000001
_EPB: Final = 0x00000006
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_OPT_ENDOFOPT: Final = 0
_OPT_COMMENT: Final = 1
_SHB_USERAPPL: Final = 4
_IF_NAME: Final = 2
_EPB_FLAGS: Final = 2
_INBOUND: Final = 0b01
_OUTBOUND: Final = 0b10
_LINKTYPE_RAW: Final = 101  # each packet starts with its IP header, v4 or v6

_IPPROTO_TCP: Final = 6


def export_pcapng(trace: Trace, path: str | Path, annotations: Annotations | None = None) -> None:
    """Write ``trace`` to ``path`` as a pcapng file (see the module docstring)."""
    Path(path).write_bytes(to_pcapng(trace, annotations))


def to_pcapng(trace: Trace, annotations: Annotations | None = None) -> bytes:
    """The bytes of the pcapng file :func:`export_pcapng` writes."""
    blocks = [_head(trace.name, trace.description)]
    flows = [
        _packets(index, conn, endpoints, annotations)
        for index, (conn, endpoints) in enumerate(
            zip(trace.connections, _assign_endpoints(trace.connections), strict=True)
        )
    ]
    blocks += map(_enhanced_packet, heapq.merge(*flows, key=lambda p: p.timestamp))
    return b"".join(blocks)


def write_pcapng_connection(
    out: BinaryIO,
    name: str,
    description: str,
    conn: ConnectionTrace,
    records: Iterable[Record],
    *,
    annotations: Annotations | None = None,
) -> None:
    """Write to ``out`` what :func:`to_pcapng` gives for a trace of one connection,
    ``conn`` with these ``records`` (read as they go, instead of ``conn.records``), a
    block at a time: the packets of one record are all it holds at once."""
    out.write(_head(name, description))
    (endpoints,) = _assign_endpoints([conn])
    for packet in _packets(0, conn, endpoints, annotations, records):
        out.write(_enhanced_packet(packet))


def _head(name: str, description: str) -> bytes:
    """The Section Header Block and the Interface Description Block (§4.1, §4.2)."""
    title = name if not description else f"{name}\n\n{description}"
    return _block(
        _SHB,
        struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1),  # version 1.0, length unknown
        _option(_OPT_COMMENT, title.encode()) + _option(_SHB_USERAPPL, b"streamlab"),
    ) + _block(
        _IDB,
        struct.pack("<HHI", _LINKTYPE_RAW, 0, 0),  # snaplen 0: no limit
        _option(_IF_NAME, b"streamlab synthetic TCP"),  # if_tsresol absent: microseconds
    )


def _enhanced_packet(packet: _Packet) -> bytes:
    """One Enhanced Packet Block (§4.3)."""
    body = struct.pack(
        "<IIIII",
        0,  # interface 0
        packet.timestamp >> 32,
        packet.timestamp & 0xFFFF_FFFF,
        len(packet.data),
        len(packet.data),
    )
    options = _option(_EPB_FLAGS, struct.pack("<I", packet.direction))
    if packet.comment:
        options = _option(_OPT_COMMENT, packet.comment.encode()) + options
    return _block(_EPB, body + _pad(packet.data), options)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(block_type: int, body: bytes, options: bytes) -> bytes:
    if options:
        options += struct.pack("<HH", _OPT_ENDOFOPT, 0)
    length = 12 + len(body) + len(options)  # type, length before and length after
    return struct.pack("<II", block_type, length) + body + options + struct.pack("<I", length)


# ---------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class _Endpoints:
    client_ip: bytes  # packed, 4 or 16 bytes
    client_port: int
    server_ip: bytes
    server_port: int


def _assign_endpoints(connections: list[ConnectionTrace]) -> list[_Endpoints]:
    used: set[_Endpoints] = set()
    ports_in_use = {conn.client[1] for conn in connections}
    next_port = SYNTHETIC_PORT_BASE
    result = []
    for conn in connections:
        client_ip, server_ip = _ip_pair(conn.client[0], conn.server[0])
        endpoints = _Endpoints(client_ip, conn.client[1], server_ip, conn.server[1])
        while endpoints in used:
            while next_port in ports_in_use:
                next_port += 1
            ports_in_use.add(next_port)
            endpoints = _Endpoints(client_ip, next_port, server_ip, conn.server[1])
        used.add(endpoints)
        result.append(endpoints)
    return result


def _ip_pair(client: str, server: str) -> tuple[bytes, bytes]:
    try:
        client_ip, server_ip = ipaddress.ip_address(client), ipaddress.ip_address(server)
    except ValueError:  # a host name, or a path for a Unix socket
        client_ip = server_ip = ipaddress.ip_address("::")  # replaced below
    if client_ip.version != server_ip.version or client_ip.is_unspecified:
        client_ip = ipaddress.ip_address(SYNTHETIC_CLIENT_IP)
        server_ip = ipaddress.ip_address(SYNTHETIC_SERVER_IP)
    return client_ip.packed, server_ip.packed


# ---------------------------------------------------------------------------- packets


@dataclass(frozen=True, slots=True)
class _Packet:
    timestamp: int  # microseconds since the Unix epoch
    data: bytes  # from the IP header on
    comment: str
    direction: int  # _INBOUND or _OUTBOUND, seen from the tapped socket


@dataclass(slots=True)
class _Peer:
    """One end of a synthetic TCP connection."""

    name: str  # "client" or "server"
    ip: bytes
    port: int
    seq: int  # the next sequence number it will send
    ip_id: int = 0
    fin_sent: bool = False


def _packets(
    index: int,
    conn: ConnectionTrace,
    endpoints: _Endpoints,
    annotations: Annotations | None,
    records: Iterable[Record] | None = None,
) -> Iterator[_Packet]:
    """The packets of one connection (of ``records``, or else ``conn.records``), in order."""
    client = _Peer("client", endpoints.client_ip, endpoints.client_port, CLIENT_ISN)
    server = _Peer("server", endpoints.server_ip, endpoints.server_port, SERVER_ISN)
    tapped, peer = (client, server) if conn.side == "client" else (server, client)

    def packet(
        timestamp: int,
        src: _Peer,
        flags: int,
        *,
        default: str,
        record: int | None,
        payload: bytes = b"",
        options: bytes = b"",
        suffix: str = "",
    ) -> _Packet:
        dst = server if src is client else client
        comment = annotations(index, record) if annotations and record is not None else None
        data = _tcp_packet(src, dst, flags, payload, options)
        return _Packet(
            timestamp,
            data,
            (default if comment is None else comment) + suffix,
            _OUTBOUND if src is tapped else _INBOUND,
        )

    rest = iter(conn.records if records is None else records)
    head = next(rest, None)
    first = Record(0.0, CONNECT) if head is None else head
    at = EPOCH_BASE * 1_000_000 + round(first.t * 1_000_000)
    connect = 0 if head is not None and first.kind == CONNECT else None
    why = "record 0: connect" if connect is not None else "synthetic: no connect record"
    syn_options = _syn_options()
    handshake = (
        (client, SYN, f"client→server SYN ({why})", syn_options),
        (server, SYN | ACK, f"server→client SYN-ACK ({why})", syn_options),
        (client, ACK, f"client→server ACK, handshake complete ({why})", b""),
    )
    for src, flags, default, options in handshake:
        yield packet(at, src, flags, default=default, record=connect, options=options)

    for number, record in enumerate(itertools.chain(() if head is None else (head,), rest)):
        at = EPOCH_BASE * 1_000_000 + round(record.t * 1_000_000)
        kind = record.kind
        if kind in (SEND, RECV):
            src = tapped if kind == SEND else peer
            arrow = f"{src.name}→{(server if src is client else client).name}"
            default = f"{arrow} {kind} {len(record.data)} bytes (record {number})"
            pieces = range(0, len(record.data), MAX_SEGMENT_PAYLOAD)
            for piece, start in enumerate(pieces, 1):
                payload = record.data[start : start + MAX_SEGMENT_PAYLOAD]
                last = piece == len(pieces)
                suffix = ""
                if len(pieces) > 1:
                    end = start + len(payload) - 1
                    suffix = f", segment {piece} of {len(pieces)}: bytes {start}-{end}"
                flags = PSH | ACK if last else ACK
                yield packet(
                    at, src, flags, default=default, record=number, payload=payload, suffix=suffix
                )
        elif kind in (EOF, CLOSE, SHUTDOWN):
            closer = peer if kind == EOF else tapped
            if closer.fin_sent:
                continue  # a second eof/close: the FIN went out already
            other = server if closer is client else client
            arrow = f"{closer.name}→{other.name}"
            what = {
                EOF: f"the {closer.name} closed its sending side",
                CLOSE: f"the {closer.name} closed the connection",
                SHUTDOWN: f"the {closer.name} sent EOF",
            }[kind]
            why = f"record {number}: {kind}"
            yield packet(
                at, closer, FIN | ACK, default=f"{arrow} FIN: {what} ({why})", record=number
            )
            closer.fin_sent = True
            back = f"{other.name}→{closer.name}"
            yield packet(at, other, ACK, default=f"{back} ACK of the FIN ({why})", record=number)
        elif kind == RESET:
            arrow = f"{peer.name}→{tapped.name}"
            default = f"{arrow} RST: the connection was reset (record {number}: reset)"
            yield packet(at, peer, RST | ACK, default=default, record=number)
            return  # nothing follows a reset


def _syn_options() -> bytes:
    # MSS (kind 2, RFC 9293 §3.2), NOP, window scale (kind 3, RFC 7323 §2).
    return struct.pack("!BBH", 2, 4, MAX_SEGMENT_PAYLOAD) + struct.pack(
        "!BBBB", 1, 3, 3, WINDOW_SCALE
    )


def _tcp_packet(src: _Peer, dst: _Peer, flags: int, payload: bytes, options: bytes) -> bytes:
    """One IP packet carrying one TCP segment from ``src`` to ``dst``; advances ``src.seq``."""
    header_length = 20 + len(options)
    ack = dst.seq if flags & ACK else 0
    tcp = (
        struct.pack(
            "!HHIIBBHHH",
            src.port,
            dst.port,
            src.seq,
            ack,
            (header_length // 4) << 4,  # data offset in 32-bit words
            flags,
            WINDOW,
            0,  # checksum, filled in below
            0,  # urgent pointer
        )
        + options
        + payload
    )
    # SYN and FIN each take one sequence number (RFC 9293 §3.4).
    src.seq = (src.seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFF_FFFF
    src.ip_id = (src.ip_id + 1) & 0xFFFF
    if len(src.ip) == 4:
        # RFC 9293 §3.1: the checksum covers a pseudo-header of addresses, protocol, length.
        pseudo = src.ip + dst.ip + struct.pack("!BBH", 0, _IPPROTO_TCP, len(tcp))
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,  # version 4, header of 5 words
            0,
            20 + len(tcp),
            src.ip_id,
            0x4000,  # don't fragment
            TTL,
            _IPPROTO_TCP,
            0,
            src.ip,
            dst.ip,
        )
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]  # RFC 791 §3.1
    else:
        # RFC 8200 §8.1: the IPv6 pseudo-header.
        pseudo = src.ip + dst.ip + struct.pack("!IxxxB", len(tcp), _IPPROTO_TCP)
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), _IPPROTO_TCP, TTL, src.ip, dst.ip)
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    return ip + tcp


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): the one's complement of the one's complement sum.

    Since 2**16 = 1 (mod 0xFFFF), the sum of the 16-bit words is the big-endian value of the
    whole buffer modulo 0xFFFF, which Python computes in C; a non-zero buffer whose sum is
    0 (mod 0xFFFF) sums to 0xFFFF in one's complement arithmetic.
    """
    if len(data) % 2:
        data += b"\0"
    value = int.from_bytes(data, "big")
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF
    return ~total & 0xFFFF
