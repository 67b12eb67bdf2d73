"""TLS seen from outside: the record layer, and what a handshake shows in the clear.

A packet capture of HTTPS holds TLS records, not HTTP: the payload is encrypted, and
without the session keys it is opaque. What is readable is the record layer (RFC 8446
§5.1; RFC 5246 §6.2 for TLS 1.2): a content type (20 change_cipher_spec, 21 alert, 22
handshake, 23 application_data, 24 heartbeat), a legacy version and a length; and the
first handshake messages, sent before any key exists:

- the ClientHello (RFC 8446 §4.1.2): the server name the client asked for (SNI, RFC 6066
  §3) and the protocols it offers (ALPN, RFC 7301 §3.1: ``h2``, ``http/1.1``);
- the ServerHello (§4.1.3): the version chosen (``supported_versions``, §4.2.1) and, in
  TLS 1.2, the protocol chosen (ALPN; TLS 1.3 sends it encrypted).

After a direction's change_cipher_spec its handshake and alert records are encrypted too
(TLS 1.2's Finished; TLS 1.3 sends the record only for middleboxes, §5, and encrypts the
rest as application_data). :class:`TLSRecordDecoder` turns one direction into one
:class:`TLSRecord` segment per record, and refuses bytes that are not a TLS record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Final

from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

__all__ = ["MAX_RECORD_LENGTH", "TLSRecord", "TLSRecordDecoder", "TLSRecordError"]

# The longest record payload: 2**14 bytes of plaintext plus up to 2048 of expansion
# (RFC 5246 §6.2.3; TLS 1.3 allows 256, RFC 8446 §5.2). Longer is not TLS.
MAX_RECORD_LENGTH: Final = 2**14 + 2048
_HEADER: Final = 5

CONTENT_TYPES: Final = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
    24: "heartbeat",
}
HANDSHAKE_TYPES: Final = {
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
}
VERSIONS: Final = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
_EXT_SERVER_NAME: Final = 0
_EXT_ALPN: Final = 16
_EXT_SUPPORTED_VERSIONS: Final = 43


class TLSRecordError(ProtocolError):
    """Bytes that are not a TLS record where one should start."""


@dataclass(frozen=True, slots=True)
class TLSRecord(Segment):
    content_type: int
    version: int  # the record's legacy_version
    length: int  # of the payload, after the 5-byte header
    detail: str  # what is readable inside (a hello's names), or why nothing is
    kind: ClassVar[str] = "tls-record"
    binary: ClassVar[bool] = True

    def note(self) -> str:
        name = CONTENT_TYPES.get(self.content_type, f"type {self.content_type}")
        size = f"{self.length} byte{'' if self.length == 1 else 's'}"
        return f"TLS record: {name}, {size}: {self.detail}"


class TLSRecordDecoder:
    """One direction of a TLS connection, record by record (feed/eof as lab.wire's
    decoders)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offset = 0
        self._encrypted = False  # after this direction's change_cipher_spec

    def feed(self, data: bytes) -> list[Segment]:
        self._buf += data
        out: list[Segment] = []
        while len(self._buf) >= _HEADER:
            content_type, version, length = struct.unpack_from("!BHH", self._buf)
            if content_type not in CONTENT_TYPES or version >> 8 != 3:
                raise TLSRecordError(
                    f"not a TLS record header: {bytes(self._buf[:_HEADER]).hex(' ')} "
                    "(content type 20-24, version 3.x)",
                    self._offset,
                    segments=out,
                )
            if length > MAX_RECORD_LENGTH:
                raise TLSRecordError(
                    f"TLS record of {length} bytes, more than {MAX_RECORD_LENGTH} "
                    "(RFC 5246 §6.2.3)",
                    self._offset + 3,
                    segments=out,
                )
            if len(self._buf) < _HEADER + length:
                break
            payload = bytes(self._buf[_HEADER : _HEADER + length])
            start = self._offset
            del self._buf[: _HEADER + length]
            self._offset += _HEADER + length
            out.append(
                TLSRecord(
                    start,
                    self._offset,
                    content_type,
                    version,
                    length,
                    self._detail(content_type, payload),
                )
            )
        return out

    def eof(self) -> list[Segment]:
        if self._buf:
            raise TLSRecordError("connection ended inside a TLS record", self._offset)
        return []

    def _detail(self, content_type: int, payload: bytes) -> str:
        if content_type == 23:
            return "encrypted (opaque without the session keys)"
        if content_type == 20:
            self._encrypted = True
            return "what follows from this side is encrypted"
        if self._encrypted:
            return "encrypted (opaque without the session keys)"
        if content_type == 21 and len(payload) == 2:
            return f"alert level {payload[0]}, description {payload[1]} (RFC 8446 §6)"
        if content_type == 22:
            return "; ".join(_handshake_messages(payload)) or "empty"
        return "not read"


def _handshake_messages(payload: bytes) -> Iterator[str]:
    pos = 0
    while pos + 4 <= len(payload):
        msg_type = payload[pos]
        length = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        body = payload[pos + 4 : pos + 4 + length]
        name = HANDSHAKE_TYPES.get(msg_type, f"handshake type {msg_type}")
        if len(body) < length:
            yield f"{name} (continues in the next record)"
            return
        yield name + _hello(msg_type, body)
        pos += 4 + length
    if pos < len(payload):
        yield "part of a handshake message"


def _hello(msg_type: int, body: bytes) -> str:
    """The readable names in a ClientHello or ServerHello: SNI, ALPN, version."""
    try:
        if msg_type == 1:
            pos = 2 + 32  # legacy_version, random
            pos += 1 + body[pos]  # legacy_session_id
            pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher_suites
            pos += 1 + body[pos]  # legacy_compression_methods
        elif msg_type == 2:
            pos = 2 + 32
            pos += 1 + body[pos] + 2 + 1  # session id, cipher_suite, compression
        else:
            return ""
        parts = []
        for ext_type, data in _extensions(body, pos):
            if ext_type == _EXT_SERVER_NAME and msg_type == 1:
                parts.append("SNI " + ", ".join(_server_names(data)))
            elif ext_type == _EXT_ALPN:
                parts.append("ALPN " + ", ".join(_alpn(data)))
            elif ext_type == _EXT_SUPPORTED_VERSIONS and msg_type == 2 and len(data) == 2:
                version = int.from_bytes(data, "big")
                parts.append(VERSIONS.get(version, f"version {version:#06x}"))
    except (IndexError, ValueError):
        return " (malformed)"
    return f" ({', '.join(parts)})" if parts else ""


def _extensions(body: bytes, pos: int) -> Iterator[tuple[int, bytes]]:
    if pos + 2 > len(body):
        return  # no extensions (allowed before TLS 1.3)
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= min(end, len(body)):
        ext_type, length = struct.unpack_from("!HH", body, pos)
        yield ext_type, body[pos + 4 : pos + 4 + length]
        pos += 4 + length


def _server_names(data: bytes) -> Iterator[str]:
    pos = 2  # server_name_list length
    while pos + 3 <= len(data):
        name_type, length = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        name = data[pos + 3 : pos + 3 + length]
        yield name.decode("ascii", "backslashreplace") if name_type == 0 else f"type {name_type}"
        pos += 3 + length


def _alpn(data: bytes) -> Iterator[str]:
    pos = 2  # protocol_name_list length
    while pos < len(data):
        length = data[pos]
        yield data[pos + 1 : pos + 1 + length].decode("ascii", "backslashreplace")
        pos += 1 + length
