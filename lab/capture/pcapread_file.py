"""Read pcap and pcapng files: every packet with its link type, its time and its bytes.

The two formats, as written by tcpdump, dumpcap, Wireshark and browsers' exports:

- **pcap**, the libpcap file format (IETF draft-ietf-opsawg-pcap): a 24-byte file header
  (magic number, version 2.4, snapshot length, link type), then per packet a 16-byte
  record header (seconds, microseconds or nanoseconds, captured length, original length)
  and the captured bytes. The magic number says both the byte order of the writer and
  the time resolution: ``A1B2C3D4`` microseconds, ``A1B23C4D`` nanoseconds (§4).
- **pcapng** (IETF draft-ietf-opsawg-pcapng): a sequence of blocks, each ``type, total
  length, body, total length`` (§3.1). A Section Header Block (§4.1) starts each section
  and fixes its byte order (its byte-order magic ``1A2B3C4D``); Interface Description
  Blocks (§4.2) give each interface's link type and time resolution (``if_tsresol``,
  ``if_tsoffset``, §4.2 options); packets come in Enhanced Packet Blocks (§4.3), Simple
  Packet Blocks (§4.4, no timestamp: they take the previous packet's time) or the obsolete
  Packet Block (Appendix A). Other blocks (name resolution, statistics, decryption
  secrets, custom) are skipped.

Why not scapy's readers (``RawPcapReader``, ``RawPcapNgReader``), which are installed: they
treat a file cut short in the middle of a packet as its end (a warning on the log, the
last packets silently gone), where ``lab show`` must say that the file is truncated; they
cut every packet at 65,535 bytes unless told otherwise (a Linux loopback frame is up to
65,550); and their warnings go to stderr, where the CLI promises one line. Reading the
blocks here is about as long as working around those, and the tests read the same files
with scapy and compare.

Errors are :class:`CaptureFormatError`, one line naming the packet and byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

__all__ = [
    "MAX_BLOCK_BYTES",
    "MAX_FRAME_BYTES",
    "CaptureFormatError",
    "Frame",
    "capture_format",
    "read_frames",
]

# The largest packet a capture tool writes: libpcap's MAXIMUM_SNAPLEN (262,144 bytes, the
# most tcpdump and dumpcap capture of one packet). A record that claims more is corrupt.
MAX_FRAME_BYTES: Final = 262_144
# The largest pcapng block read: a packet block is at most MAX_FRAME_BYTES plus its
# options; name resolution and decryption-secrets blocks can be larger, but not by orders
# of magnitude. A length past this is a corrupt file, not a block to allocate.
MAX_BLOCK_BYTES: Final = 16 * 1024 * 1024

_PCAP_MAGICS: Final = {
    # magic as it appears in the file -> (byte order, nanoseconds per time unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # microseconds, little-endian writer
    b"\xa1\xb2\xc3\xd4": (">", 1_000),  # microseconds, big-endian writer
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_SHB: Final = b"\x0a\x0d\x0d\x0a"  # a palindrome: the same in either byte order
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_IDB: Final = 0x00000001
_PB: Final = 0x00000002  # obsolete Packet Block (pcapng Appendix A)
_SPB: Final = 0x00000003
_EPB: Final = 0x00000006
_OPT_ENDOFOPT: Final = 0
_IF_TSRESOL: Final = 9
_IF_TSOFFSET: Final = 14
_DEFAULT_TSRESOL: Final = 6  # microseconds, when an interface has no if_tsresol


class CaptureFormatError(ValueError):
    """The file is not a readable pcap/pcapng: truncated, corrupt, or an unknown version."""


@dataclass(frozen=True, slots=True)
class Frame:
    number: int  # from 1, in file order, as Wireshark numbers frames
    time_ns: int  # nanoseconds since the Unix epoch
    linktype: int  # LINKTYPE_* (the tcpdump.org link-layer header type registry)
    data: bytes  # the captured bytes: fewer than original_length if the capture cut it
    original_length: int


def capture_format(head: bytes) -> str | None:
    """``"pcap"`` or ``"pcapng"`` for a file starting with ``head`` (4 bytes suffice)."""
    if head[:4] in _PCAP_MAGICS:
        return "pcap"
    if head[:4] == _SHB:
        return "pcapng"
    return None


def read_frames(f: BinaryIO) -> Iterator[Frame]:
    """Every packet of the pcap or pcapng file open in ``f``, in file order."""
    head = f.read(4)
    kind = capture_format(head)
    if kind == "pcap":
        return _pcap(f, head)
    if kind == "pcapng":
        return _pcapng(f, head)
    raise CaptureFormatError(f"not a pcap or pcapng file (it starts {head.hex()})")


def _read(f: BinaryIO, n: int, at: int, what: str, *, have: bytes = b"") -> bytes:
    """``n`` bytes at file offset ``at`` (``have``: those of them read already)."""
    data = have + f.read(n - len(have)) if len(have) < n else have
    if len(data) < n:
        raise CaptureFormatError(
            f"truncated: the file ends inside {what} (byte offset {at + len(data)}, "
            f"{n - len(data)} bytes short): it was cut short, or is still being written"
        )
    return data


# ------------------------------------------------------------------------------- pcap


def _pcap(f: BinaryIO, magic: bytes) -> Iterator[Frame]:
    order, unit_ns = _PCAP_MAGICS[magic]
    header = _read(f, 20, 4, "the pcap file header")
    major, minor, _, _, _, link = struct.unpack(order + "HHIIII", header)
    if major != 2:
        raise CaptureFormatError(f"pcap version {major}.{minor}: only version 2.x is known")
    linktype = link & 0xFFFF  # the upper bits carry the FCS length (draft §4)
    offset = 24
    number = 0
    while True:
        record = f.read(16)
        if not record:
            return
        number += 1
        record = _read(f, 16, offset, f"the header of packet {number}", have=record)
        seconds, fraction, caplen, origlen = struct.unpack(order + "IIII", record)
        if caplen > MAX_FRAME_BYTES:
            raise CaptureFormatError(
                f"packet {number} (byte offset {offset}) claims {caplen} captured bytes, "
                f"more than any capture tool writes ({MAX_FRAME_BYTES}): the file is corrupt"
            )
        data = _read(f, caplen, offset + 16, f"packet {number}")
        yield Frame(number, seconds * 1_000_000_000 + fraction * unit_ns, linktype, data, origlen)
        offset += 16 + caplen


# ----------------------------------------------------------------------------- pcapng


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    tsresol: int  # as if_tsresol: bit 7 clear: 10**-n seconds, set: 2**-n
    tsoffset: int  # seconds added to every timestamp


def _pcapng(f: BinaryIO, first: bytes) -> Iterator[Frame]:
    order = "<"
    interfaces: list[_Interface] = []
    offset = 0
    number = 0
    last_ns = 0
    unread: bytes | None = first  # the first block's type, read to recognise the file
    while True:
        at = offset
        block_type = unread if unread is not None else f.read(4)
        unread = None
        if not block_type:
            return
        block_type = _read(f, 4, at, "a block header", have=block_type)
        length_bytes = _read(f, 4, at + 4, "a block header")
        if block_type == _SHB:
            magic = _read(f, 4, at + 8, "a section header")
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(magic, "")
            if not order:
                raise CaptureFormatError(
                    f"section header at byte offset {at}: byte-order magic {magic.hex()} "
                    f"is neither order of {_BYTE_ORDER_MAGIC:08x}: the file is corrupt"
                )
            (total,) = struct.unpack(order + "I", length_bytes)
            _check_length(total, at, minimum=28)  # §4.1: 16 bytes of fields, the framing
            body = magic + _read(f, total - 16, at + 12, "a section header")
            kind = -1
        else:
            (total,) = struct.unpack(order + "I", length_bytes)
            _check_length(total, at)
            (kind,) = struct.unpack(order + "I", block_type)
            what = f"packet {number + 1}" if kind in (_EPB, _SPB, _PB) else "a block"
            body = _read(f, total - 12, at + 8, what)
        (trailer,) = struct.unpack(order + "I", _read(f, 4, at + total - 4, "a block"))
        if trailer != total:
            raise CaptureFormatError(
                f"block at byte offset {at}: its length is {total} at the start and "
                f"{trailer} at the end: the file is corrupt"
            )
        offset += total
        if block_type == _SHB:
            major, minor = struct.unpack(order + "HH", body[4:8])
            if major != 1:
                raise CaptureFormatError(
                    f"pcapng section at byte offset {at} is version {major}.{minor}: "
                    "only version 1.x is known"
                )
            interfaces = []  # interface numbers are per section (§4.2)
        elif kind == _IDB:
            interfaces.append(_interface(body, order, at))
        elif kind in (_EPB, _PB, _SPB):
            number += 1
            frame = _packet(
                kind,
                body,
                order=order,
                interfaces=interfaces,
                number=number,
                at=at,
                last_ns=last_ns,
            )
            last_ns = frame.time_ns
            yield frame


def _check_length(total: int, at: int, minimum: int = 12) -> None:
    if total < minimum or total % 4 or total > MAX_BLOCK_BYTES:
        raise CaptureFormatError(
            f"block at byte offset {at} has length {total}: this block is a multiple of 4 "
            f"bytes, from {minimum} to {MAX_BLOCK_BYTES}; the file is corrupt"
        )


def _options(data: bytes, order: str, at: int) -> Iterator[tuple[int, bytes]]:
    """The options of a block (§3.5): code, length, value padded to 32 bits."""
    pos = 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == _OPT_ENDOFOPT:
            return
        value = data[pos + 4 : pos + 4 + length]
        if len(value) < length:
            raise CaptureFormatError(f"block at byte offset {at}: an option runs past its end")
        yield code, value
        pos += 4 + length + (-length % 4)


def _interface(body: bytes, order: str, at: int) -> _Interface:
    if len(body) < 8:
        raise CaptureFormatError(f"interface description at byte offset {at} is too short")
    linktype, _, snaplen = struct.unpack_from(order + "HHI", body)
    tsresol, tsoffset = _DEFAULT_TSRESOL, 0
    for code, value in _options(body[8:], order, at):
        if code == _IF_TSRESOL and len(value) == 1:
            tsresol = value[0]
        elif code == _IF_TSOFFSET and len(value) == 8:
            (tsoffset,) = struct.unpack(order + "q", value)
    return _Interface(linktype, snaplen, tsresol, tsoffset)


def _nanoseconds(ticks: int, interface: _Interface) -> int:
    exponent = interface.tsresol & 0x7F
    if interface.tsresol & 0x80:  # 2**-exponent seconds per tick
        ns = (ticks * 1_000_000_000) >> exponent
    elif exponent <= 9:
        ns = ticks * 10 ** (9 - exponent)
    else:
        ns = ticks // 10 ** (exponent - 9)
    return ns + interface.tsoffset * 1_000_000_000


def _packet(
    kind: int,
    body: bytes,
    *,
    order: str,
    interfaces: list[_Interface],
    number: int,
    at: int,
    last_ns: int,
) -> Frame:
    def interface(index: int) -> _Interface:
        if index >= len(interfaces):
            raise CaptureFormatError(
                f"packet {number} (byte offset {at}) is on interface {index}, but the "
                f"section describes {len(interfaces)}: the file is corrupt"
            )
        return interfaces[index]

    if kind == _SPB:  # §4.4: interface 0, no timestamp, captured length implied
        if len(body) < 4:
            raise CaptureFormatError(f"packet {number} (byte offset {at}) is too short")
        iface = interface(0)
        (origlen,) = struct.unpack_from(order + "I", body)
        caplen = min(origlen, len(body) - 4, iface.snaplen or origlen)
        return Frame(number, last_ns, iface.linktype, body[4 : 4 + caplen], origlen)
    if kind == _EPB:
        if len(body) < 20:
            raise CaptureFormatError(f"packet {number} (byte offset {at}) is too short")
        index, high, low, caplen, origlen = struct.unpack_from(order + "IIIII", body)
        start = 20
    else:  # the obsolete Packet Block: a 16-bit interface id and a drops count
        if len(body) < 20:
            raise CaptureFormatError(f"packet {number} (byte offset {at}) is too short")
        index, _, high, low, caplen, origlen = struct.unpack_from(order + "HHIIII", body)
        start = 20
    iface = interface(index)
    if caplen > len(body) - start:
        raise CaptureFormatError(
            f"packet {number} (byte offset {at}) claims {caplen} captured bytes in a block "
            f"of {len(body) + 12}: the file is corrupt"
        )
    data = body[start : start + caplen]
    return Frame(number, _nanoseconds((high << 32) | low, iface), iface.linktype, data, origlen)
