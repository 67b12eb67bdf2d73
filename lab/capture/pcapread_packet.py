"""One captured packet -> its TCP segment: the link layer, IPv4 or IPv6, then TCP.

Link layers (the tcpdump.org link-layer header type registry, LINKTYPE_*; IETF
draft-ietf-opsawg-pcaplinktype):

==========  ====================================================================
0 NULL      BSD loopback: a 4-byte address family in the capturing host's byte order
108 LOOP    OpenBSD loopback: the same family, in network byte order
1 ETHERNET  IEEE 802.3: destination, source, EtherType; 802.1Q / 802.1ad VLAN tags
            skipped (what ``dumpcap -i lo`` writes on Linux: zero MAC addresses)
113 SLL     Linux "cooked" capture v1 (``-i any`` with older libpcap): 16-byte header,
            the protocol type in its last two bytes
276 SLL2    Linux cooked capture v2 (``-i any`` with libpcap 1.10+): 20-byte header,
            the protocol type first
101 RAW     the packet starts with its IP header, v4 or v6 (the lab's own export)
228, 229    raw IPv4, raw IPv6
==========  ====================================================================

The two loopbacks are told apart from the IP header's version nibble rather than the
family value, which differs between BSDs (AF_INET6 is 24, 28 or 30).

IPv4 (RFC 791): the header length (IHL) and the total length bound the TCP segment, so
Ethernet padding is never taken for data; fragments are not reassembled (a TCP segment in
IP fragments is counted and skipped). IPv6 (RFC 8200): Hop-by-Hop, Routing, Destination
Options and Authentication headers are walked to the TCP header; a Fragment header is
counted and skipped like an IPv4 fragment. A total length of 0 (Linux "BIG TCP" and
segmentation offload captured before the NIC split it) means the captured length.

TCP (RFC 9293 §3.1): ports, sequence and acknowledgement numbers, data offset, flags. A
packet the capture cut short (snapshot length) keeps its payload's length on the wire, so
reassembly sees the bytes it did not get as missing. Checksums are not checked: captures
on the sending host carry checksums the NIC was to fill in (checksum offload).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

from lab.capture.pcapread_file import Frame

__all__ = ["LINKTYPES", "TCPSegment", "tcp_segment"]

# RFC 9293 §3.1 flag bits.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
_ETHERTYPE_VLAN: Final = (0x8100, 0x88A8)  # IEEE 802.1Q, 802.1ad
_IPPROTO_TCP: Final = 6
# IPv6 extension headers that can come before TCP (RFC 8200 §4), with how each gives its
# length: (hdr ext len + 1) * 8 octets, except AH (RFC 4302 §2.2): (payload len + 2) * 4.
_IPV6_HOP_BY_HOP: Final = 0
_IPV6_ROUTING: Final = 43
_IPV6_FRAGMENT: Final = 44
_IPV6_AUTH: Final = 51
_IPV6_DEST_OPTS: Final = 60

LINKTYPES: Final = {
    0: "BSD loopback",
    1: "Ethernet",
    101: "raw IP",
    108: "OpenBSD loopback",
    113: "Linux cooked (SLL)",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked v2 (SLL2)",
}


@dataclass(frozen=True, slots=True)
class TCPSegment:
    number: int  # the frame's number in the file
    time_ns: int
    src: tuple[str, int]  # (IP address, port)
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    payload: bytes  # the captured payload
    length: int  # the payload's length on the wire (more than len(payload) if cut short)

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)


def tcp_segment(frame: Frame) -> TCPSegment | str:
    """The TCP segment ``frame`` carries, or why it is skipped (a short phrase such as
    ``"UDP"`` or ``"ARP"``, for the count of skipped packets)."""
    ip = _ip_packet(frame.linktype, frame.data)
    if isinstance(ip, str):
        return ip
    version = ip[0] >> 4 if ip else 0
    if version == 4:
        parsed = _ipv4(ip)
    elif version == 6:
        parsed = _ipv6(ip)
    else:
        return f"not IP (version {version})" if ip else "empty packet"
    if isinstance(parsed, str):
        return parsed
    src, dst, tcp, wire_length = parsed
    if len(tcp) < 20:
        return "TCP header cut short by the capture"
    sport, dport, seq, ack, offset_byte, flags = struct.unpack_from("!HHIIBB", tcp)
    header = (offset_byte >> 4) * 4
    if header < 20 or header > wire_length:
        return "TCP header with an impossible data offset"
    return TCPSegment(
        frame.number,
        frame.time_ns,
        (src, sport),
        (dst, dport),
        seq,
        ack,
        flags,
        tcp[header:wire_length],
        wire_length - header,
    )


def _ip_packet(linktype: int, data: bytes) -> bytes | str:
    """The bytes from the IP header on, or why there are none."""
    if linktype in (101, 228, 229):
        return data
    if linktype in (0, 108):
        return data[4:]
    if linktype == 1:
        pos = 12
        ethertype = int.from_bytes(data[pos : pos + 2], "big")
        while ethertype in _ETHERTYPE_VLAN:
            pos += 4
            ethertype = int.from_bytes(data[pos : pos + 2], "big")
        return _by_ethertype(ethertype, data[pos + 2 :])
    if linktype == 113:
        return _by_ethertype(int.from_bytes(data[14:16], "big"), data[16:])
    if linktype == 276:
        return _by_ethertype(int.from_bytes(data[0:2], "big"), data[20:])
    return f"of link type {linktype} (lab show reads {', '.join(sorted(LINKTYPES.values()))})"


def _by_ethertype(ethertype: int, payload: bytes) -> bytes | str:
    if ethertype in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return payload
    names = {0x0806: "ARP", 0x88CC: "LLDP", 0x8035: "RARP"}
    return names.get(ethertype, f"EtherType 0x{ethertype:04x}")


_Parsed = tuple[str, str, bytes, int]  # source, destination, TCP bytes, TCP length on wire


def _ipv4(ip: bytes) -> _Parsed | str:
    if len(ip) < 20:
        return "IPv4 header cut short by the capture"
    ihl = (ip[0] & 0x0F) * 4
    total, flags_fragment, protocol = struct.unpack_from("!H2xH1xB", ip, 2)
    if protocol != _IPPROTO_TCP:
        return _protocol_name(protocol)
    if flags_fragment & 0x3FFF:  # More Fragments, or a fragment offset (RFC 791 §3.1)
        return "IPv4 fragment (not reassembled)"
    if total == 0:  # segmentation offload: the length is the captured one
        total = len(ip)
    if ihl < 20 or total < ihl:
        return "IPv4 header with impossible lengths"
    return _ntop(socket.AF_INET, ip[12:16]), _ntop(socket.AF_INET, ip[16:20]), ip[ihl:], total - ihl


def _ipv6(ip: bytes) -> _Parsed | str:
    if len(ip) < 40:
        return "IPv6 header cut short by the capture"
    payload_length, next_header = struct.unpack_from("!HB", ip, 4)
    src, dst = _ntop(socket.AF_INET6, ip[8:24]), _ntop(socket.AF_INET6, ip[24:40])
    rest = ip[40:]
    wire = payload_length or len(rest)  # 0: a jumbogram or offload, as for IPv4
    while next_header != _IPPROTO_TCP:
        if next_header == _IPV6_FRAGMENT:
            return "IPv6 fragment (not reassembled)"
        if next_header not in (_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_AUTH, _IPV6_DEST_OPTS):
            return _protocol_name(next_header)
        if len(rest) < 2:
            return "IPv6 extension header cut short by the capture"
        size = (rest[1] + 2) * 4 if next_header == _IPV6_AUTH else (rest[1] + 1) * 8
        next_header, rest, wire = rest[0], rest[size:], wire - size
    if wire < 0:
        return "IPv6 header with impossible lengths"
    return src, dst, rest, wire


def _protocol_name(protocol: int) -> str:
    names = {1: "ICMP", 17: "UDP", 58: "ICMPv6", 2: "IGMP", 50: "IPsec ESP", 132: "SCTP"}
    return names.get(protocol, f"IP protocol {protocol}")


# Addresses as text, memoised: a capture holds few addresses and many packets. Bounded, so
# that reading many files in one process (a notebook) does not grow it for ever.
_MAX_MEMOISED_ADDRESSES: Final = 4096
_addresses: dict[bytes, str] = {}


def _ntop(family: int, packed: bytes) -> str:
    text = _addresses.get(packed)
    if text is None:
        if len(_addresses) >= _MAX_MEMOISED_ADDRESSES:
            _addresses.clear()
        text = _addresses[packed] = socket.inet_ntop(family, packed)
    return text
