"""Writing the ``.trace`` file format (described in :mod:`lab.capture.fileformat`).

The writer sits below the model's :class:`~lab.capture.trace.Trace`, so that
:meth:`Trace.save <lab.capture.trace.Trace.save>` can use it: it takes a trace's parts (its
name, its description, its connections), not the trace. :mod:`lab.capture.fileformat`
reads the format back and offers :func:`~lab.capture.fileformat.dumps` on a whole trace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Final

from lab.capture.records import RECORD_KINDS, RECV, SEND, ConnectionTrace, Record

__all__ = [
    "BYTES_PER_LINE",
    "FORMAT_VERSION",
    "INDENT",
    "MAGIC",
    "connection_line",
    "header_lines",
    "record_lines",
    "trace_text",
]

FORMAT_VERSION: Final = 1
MAGIC: Final = "streamlab-trace"
BYTES_PER_LINE: Final = 16  # as hexdump -C: two groups of 8, readable in 80 columns
INDENT: Final = "  "  # hexdump lines are indented so the record lines stand out

_DATA_KINDS: Final = (SEND, RECV)
_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F))
_TO_ASCII_COLUMN: Final = bytes(b if b in _PRINTABLE_ASCII else 0x2E for b in range(256))
_HEX_AREA_WIDTH: Final = 3 * BYTES_PER_LINE  # "xx " per byte, plus the group gap, minus one


def trace_text(name: str, description: str, connections: Sequence[ConnectionTrace]) -> str:
    """The text of a ``.trace`` file holding a trace with these parts.

    Raises :class:`ValueError` for what the format cannot hold faithfully: an unknown record
    kind, data on a record that is not ``send``/``recv``, a time that is not finite, a port
    outside 0-65535, whitespace in a host or protocol.
    """
    out = header_lines(name, description)
    for index, conn in enumerate(connections):
        out.append("")
        out.append(connection_line(index, conn))
        record_lines(index, conn.records, {SEND: 0, RECV: 0}, out)
    out.append("")
    return "\n".join(out)


def header_lines(name: str, description: str) -> list[str]:
    """The lines a ``.trace`` file starts with, before its first connection."""
    return [
        f"{MAGIC} {FORMAT_VERSION}",
        f"name {_quote(name)}",
        f"description {_quote(description)}",
    ]


def record_lines(
    index: int, records: Iterable[Record], offsets: dict[str, int], out: list[str]
) -> None:
    """Append the lines of connection ``index``'s ``records`` to ``out``. ``offsets`` is
    where each direction's stream is (updated), so that a connection can be written in
    parts; the errors are :func:`trace_text`'s."""
    for record in records:
        if record.kind not in RECORD_KINDS:
            raise ValueError(f"connection {index}: unknown record kind {record.kind!r}")
        if not math.isfinite(record.t):
            raise ValueError(f"connection {index}: record time {record.t!r} is not finite")
        if record.kind in _DATA_KINDS:
            out.append(f"{record.t:+.6f} {record.kind} {len(record.data)}")
            offsets[record.kind] = _hexdump(record.data, offsets[record.kind], out)
        elif record.data:
            raise ValueError(f"connection {index}: a {record.kind} record cannot carry data")
        else:
            out.append(f"{record.t:+.6f} {record.kind}")


def _hexdump(data: bytes, offset: int, out: list[str]) -> int:
    """Append the hexdump lines of ``data`` to ``out``; return the offset after it."""
    half = BYTES_PER_LINE // 2
    for i in range(0, len(data), BYTES_PER_LINE):
        line = data[i : i + BYTES_PER_LINE]
        hex_area = f"{line[:half].hex(' ')}  {line[half:].hex(' ')}"
        ascii_column = line.translate(_TO_ASCII_COLUMN).decode("ascii")
        out.append(
            f"{INDENT}{offset + i:08x}  {hex_area.rstrip():<{_HEX_AREA_WIDTH}}  |{ascii_column}|"
        )
    return offset + len(data)


def connection_line(index: int, conn: ConnectionTrace) -> str:
    """The line that starts connection ``index`` (the blank line before it is apart)."""
    if not conn.protocol or _has_space(conn.protocol):
        raise ValueError(f"connection {index}: protocol {conn.protocol!r} is empty or has spaces")
    local = _address(index, conn.local)
    peer = _address(index, conn.peer)
    line = f"connection {index} {conn.side} local={local} peer={peer} protocol={conn.protocol}"
    # Only written when true, so that every trace without TLS reads as it always did.
    return line + " tls=above" if conn.tls else line


def _address(index: int, address: tuple[str, int]) -> str:
    host, port = address
    if _has_space(host) or "[" in host or "]" in host:
        raise ValueError(f"connection {index}: host {host!r} cannot be written")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"connection {index}: port {port!r} is not a TCP port")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_space(text: str) -> bool:
    return any(c.isspace() for c in text)


def _quote(text: str) -> str:
    """A one-line JSON string: readable text stays as is, the invisible is escaped."""
    text.encode("utf-8")  # lone surrogates cannot be stored: UnicodeEncodeError (a ValueError)
    quoted = json.dumps(text, ensure_ascii=False)
    if quoted.isprintable():
        return quoted
    return "".join(c if c.isprintable() else _json_escape(c) for c in quoted)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP JSON spells a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
