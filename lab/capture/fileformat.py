"""The ``.trace`` file format: a lossless, diffable text form of a :class:`Trace`.

A trace file is UTF-8 text, one item per line, meant to be read in an editor and reviewed in
``git diff``::

    streamlab-trace 1
    name "hello"
    description "One GET and its reply.\\nSecond line."

    connection 0 client local=127.0.0.1:50000 peer=127.0.0.1:8080 protocol=http/1.1
    +0.000000 connect
    +0.000084 send 18
      00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|
      00000010  0d 0a                                             |..|
    +0.000950 recv 5
      00000000  48 54 54 50 2f                                    |HTTP/|
    +0.001000 eof
    +0.001010 close

- Line 1 names the format and its version. ``name`` and ``description`` are JSON strings, so
  a multi-line description stays on one line (``\\n``) and quotes or backslashes are safe;
  non-printable characters are escaped, everything else is written as itself.
- Each connection starts with a blank line and a header: its index (0, 1, ... in order), the
  tapped side, the local and peer addresses (``[host]:port`` when the host has a colon), and
  the protocol.
- Each record is ``+SECONDS KIND`` with the time to the microsecond, and for ``send`` and
  ``recv`` the number of bytes, followed by a hexdump of exactly those bytes in the style of
  ``hexdump -C``, indented two spaces: the offset of the line within that direction's stream
  (all ``send`` bytes of the connection form one stream, all ``recv`` bytes another, the same
  offsets the annotated views use), 16 bytes in two groups of 8, and the bytes as ASCII with
  ``.`` for anything not printable.

Only the hex digits are read back; the ASCII column is for people and may be stale or
missing after a hand edit. The offsets are checked, so a line dropped or pasted twice is
caught. Anything malformed raises :class:`TraceFormatError` naming the line.

Times are kept to the microsecond: a :class:`Record` whose ``t`` has finer digits comes back
rounded. Everything else round-trips exactly.

This module reads the format and is its public face (:func:`load`, :func:`loads`,
:func:`dumps`); the writing is in :mod:`lab.capture.filewriter`, below
:mod:`lab.capture.trace`, so that :meth:`Trace.save <lab.capture.trace.Trace.save>` can use
it without importing this module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

from lab.capture.filewriter import (
    _DATA_KINDS,
    BYTES_PER_LINE,
    FORMAT_VERSION,
    INDENT,
    MAGIC,
    trace_text,
)
from lab.capture.trace import RECORD_KINDS, RECV, SEND, ConnectionTrace, Record, Side, Trace

__all__ = ["FORMAT_VERSION", "TraceFormatError", "dumps", "load", "loads"]

_CONNECTION_RE: Final = re.compile(
    r"connection (\d+) (client|server) local=(\S+) peer=(\S+) protocol=(\S+)( tls=above)?"
)
_ADDRESS_RE: Final = re.compile(r"\[([^\s\[\]]*)\]:(\d+)|([^\s\[\]:]*):(\d+)")
_RECORD_RE: Final = re.compile(r"([+-]\d+\.\d{6}) ([a-z-]+)(?: (\d+))?")
_HEX_LINE_RE: Final = re.compile(r"([0-9a-fA-F]+)((?: +[0-9a-fA-F]{2}){1,16}) *")
_BYTE_RE: Final = re.compile(r"[0-9a-fA-F]{2}")


class TraceFormatError(ValueError):
    """A trace file that cannot be read; ``lineno`` is 1-based."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"line {lineno}: {message}")
        self.lineno = lineno


def dumps(trace: Trace) -> str:
    """The text of ``trace`` as a ``.trace`` file.

    Raises :class:`ValueError` for what the format cannot hold faithfully (the list is at
    :func:`lab.capture.filewriter.trace_text`).
    """
    return trace_text(trace.name, trace.description, trace.connections)


# ---------------------------------------------------------------------------- reading


def load(path: str | Path) -> Trace:
    """Read a ``.trace`` file."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise TraceFormatError(lineno, f"not UTF-8 text ({exc.reason})") from None
    return loads(text)


def loads(text: str) -> Trace:
    """Parse the text of a ``.trace`` file; raise :class:`TraceFormatError` if malformed."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline ends the last line, it does not start a new one
        self.lines = [line.removesuffix("\r") for line in lines]
        self.i = 0  # index of the next line to read; its line number is i + 1

    def next_line(self, what: str) -> str:
        if self.i >= len(self.lines):
            raise TraceFormatError(self.i + 1, f"file ends where {what} was expected")
        self.i += 1
        return self.lines[self.i - 1]

    def fail(self, message: str) -> TraceFormatError:
        """An error about the line read last."""
        return TraceFormatError(self.i, message)

    def parse(self) -> Trace:
        first = self.next_line("the header")
        magic, _, version = first.partition(" ")
        if magic != MAGIC:
            raise self.fail(f"not a streamlab trace (expected {MAGIC!r} {FORMAT_VERSION})")
        if version != str(FORMAT_VERSION):
            raise self.fail(
                f"unsupported trace format version {version!r} (this lab reads {FORMAT_VERSION})"
            )
        trace = Trace(name=self.string_field("name"), description=self.string_field("description"))
        conn: ConnectionTrace | None = None
        offsets = {SEND: 0, RECV: 0}
        while self.i < len(self.lines):
            line = self.next_line("a line")
            if not line:
                continue
            if line.startswith("connection "):
                conn = self.connection(line, len(trace.connections))
                trace.connections.append(conn)
                offsets = {SEND: 0, RECV: 0}
            elif line.startswith(("+", "-")):
                if conn is None:
                    raise self.fail("record before the first connection line")
                conn.records.append(self.record(line, offsets))
            elif line.startswith(INDENT):
                raise self.fail("hexdump line outside a record (more bytes than declared?)")
            else:
                raise self.fail(f"unrecognised line {line[:40]!r}")
        return trace

    def string_field(self, key: str) -> str:
        line = self.next_line(f"the {key} line")
        if not line.startswith(f"{key} "):
            raise self.fail(f"expected '{key} \"...\"'")
        try:
            value = json.loads(line[len(key) + 1 :])
        except json.JSONDecodeError as exc:
            raise self.fail(f"{key} is not a valid JSON string: {exc.msg}") from None
        if not isinstance(value, str):
            raise self.fail(f"{key} is not a JSON string")
        return value

    def connection(self, line: str, expected_index: int) -> ConnectionTrace:
        match = _CONNECTION_RE.fullmatch(line)
        if match is None:
            raise self.fail(
                "malformed connection line (expected "
                "'connection N client|server local=HOST:PORT peer=HOST:PORT protocol=NAME"
                " [tls=above]')"
            )
        index, side, local, peer, protocol, tls = match.groups()
        if int(index) != expected_index:
            raise self.fail(f"connection {index} where connection {expected_index} was expected")
        side_name: Side = "client" if side == "client" else "server"
        return ConnectionTrace(
            side=side_name,
            local=self.address(local),
            peer=self.address(peer),
            protocol=protocol,
            tls=tls is not None,
        )

    def address(self, text: str) -> tuple[str, int]:
        match = _ADDRESS_RE.fullmatch(text)
        if match is None:
            raise self.fail(f"malformed address {text!r} (expected HOST:PORT or [HOST]:PORT)")
        bracketed, bracketed_port, plain, plain_port = match.groups()
        host, port = (bracketed, bracketed_port) if bracketed is not None else (plain, plain_port)
        if int(port) > 0xFFFF:
            raise self.fail(f"port {port} is out of range")
        return host, int(port)

    def record(self, line: str, offsets: dict[str, int]) -> Record:
        match = _RECORD_RE.fullmatch(line)
        if match is None:
            raise self.fail("malformed record line (expected '+SECONDS KIND [LENGTH]')")
        t_text, kind, length_text = match.groups()
        if kind not in RECORD_KINDS:
            raise self.fail(f"unknown record kind {kind!r}")
        if kind not in _DATA_KINDS:
            if length_text is not None:
                raise self.fail(f"a {kind} record has no length")
            return Record(float(t_text), kind)
        if length_text is None:
            raise self.fail(f"a {kind} record needs its length in bytes")
        data = self.hexdump(int(length_text), offsets[kind])
        offsets[kind] += len(data)
        return Record(float(t_text), kind, data)

    def hexdump(self, length: int, offset: int) -> bytes:
        parts: list[bytes] = []
        have = 0
        record_lineno = self.i
        while have < length:
            if self.i >= len(self.lines) or not self.lines[self.i].startswith(INDENT):
                raise TraceFormatError(
                    record_lineno,
                    f"record declares {length} bytes but its hexdump holds {have}",
                )
            line = self.next_line("a hexdump line")
            head = line[len(INDENT) :].partition("|")[0]
            match = _HEX_LINE_RE.fullmatch(head)
            if match is None:
                raise self.fail(_explain_bad_hex(head))
            if int(match[1], 16) != offset + have:
                raise self.fail(
                    f"offset {match[1]} where {offset + have:08x} was expected "
                    "(a hexdump line is missing, repeated or edited)"
                )
            chunk = bytes.fromhex(match[2])
            have += len(chunk)
            if have > length:
                raise self.fail(f"hexdump holds more than the {length} bytes the record declares")
            parts.append(chunk)
        return b"".join(parts)


def _explain_bad_hex(head: str) -> str:
    tokens = head.split()
    if not tokens:
        return "empty hexdump line"
    if not all(c in "0123456789abcdefABCDEF" for c in tokens[0]):
        return f"malformed offset {tokens[0]!r}"
    for token in tokens[1:]:
        if not _BYTE_RE.fullmatch(token):
            return f"malformed hex byte {token!r}"
    if len(tokens) == 1:
        return "hexdump line holds no bytes"
    return f"hexdump line holds {len(tokens) - 1} bytes (at most {BYTES_PER_LINE})"
