"""Normalising a trace so that two runs of the same scenario compare equal.

What differs between two honest runs, and what :func:`normalize` does about it:

- **timestamps**: all set to 0;
- **ephemeral ports**: the client's port becomes :data:`CLIENT_PORT` and the server's
  :data:`SERVER_PORT`, whichever side was tapped (so a client-side and a server-side trace of
  one conversation normalise to the same addresses, mirrored);
- **recv boundaries**: how the kernel splits bytes between ``receive_some()`` calls (and how
  a sender's writes coalesce) depends on timing, so consecutive records of the same kind
  (same direction) are merged into one;
- **the Date header**: every ``Date:`` field whose value is an IMF-fixdate (RFC 9110
  §5.6.7, always 29 characters) gets the value :data:`PLACEHOLDER_DATE`, of the same length,
  so every byte offset stays where it was.

- **the server's port in a Host header**: ``Host: 127.0.0.1:54321`` names the ephemeral
  port too; it becomes :data:`SERVER_PORT`, zero-padded to the same number of digits
  (``Host: 127.0.0.1:08080``) so that, again, no offset moves. Linux picks ephemeral ports
  from 32768-60999, always five digits, so the result does not depend on the run.
- **the MCP session id**: the value of an ``Mcp-Session-Id`` field (a 2025-11-25 MCP
  server assigns it on the initialize response; the client sends it back on every later
  request) is random by design, since it must be unguessable, so no scenario can make it
  repeat. A value of visible ASCII characters (0x21-0x7E, the only ones the MCP spec
  allows) becomes :data:`SESSION_ID_FILL` repeated to the same length, so no offset moves.
  What the comparison no longer sees is whether the id a client sends back is the one it
  was given; the MCP tests check that.
- **a poll stream's run id**: the server keeps a poll stream (``/poll``, ``/longpoll``) by
  its name for two minutes, so a polling scenario names its stream afresh on each run
  (``stream=poll-short.1f2e3d4c``, :mod:`lab.scenarios.polling`); the 8 hex digits after
  the dot become :data:`RUN_ID_FILL`, as many, so no offset moves.

Hosts, the bytes themselves and the order of records across directions are kept: if those
differ, the scenario is not reproducible, and the comparison should say so. In HTTP/2 the
server's authority is rewritten where it is a plain HPACK literal (the lab's client writes
it so); a Huffman-coded date or authority is not reached, which is why scenario servers
send a fixed Date. A session id inside an HPACK header block is not reached either: the
MCP scenarios speak HTTP/1.1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from lab.capture.fileformat import dumps
from lab.capture.trace import RECV, SEND, ConnectionTrace, Record, Trace

__all__ = [
    "CLIENT_PORT",
    "PLACEHOLDER_DATE",
    "RUN_ID_FILL",
    "SERVER_PORT",
    "SESSION_ID_FILL",
    "normalize",
    "normalized_text",
]

CLIENT_PORT: Final = 0  # no real client uses port 0, so a normalised port cannot be mistaken
# The `lab serve` default, and in Wireshark's list of HTTP ports, so a normalised trace
# exported to pcapng is dissected as HTTP without "Decode As".
SERVER_PORT: Final = 8080
PLACEHOLDER_DATE: Final = b"Thu, 01 Jan 1970 00:00:00 GMT"  # the epoch, as an IMF-fixdate

# A Date field at the start of a line (RFC 9112 §5: field-name ":" OWS field-value). The
# name is case-insensitive; the value must be exactly an IMF-fixdate, e.g.
# "Sun, 06 Nov 1994 08:49:37 GMT", so nothing of another length is ever replaced.
_DATE_FIELD: Final = re.compile(
    rb"(?:^|(?<=\n))((?i:date):[ \t]*)"
    rb"[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_DATE_REPLACEMENT: Final = rb"\g<1>" + PLACEHOLDER_DATE
# What an MCP session id's every character becomes: not in secrets.token_urlsafe's
# alphabet ([A-Za-z0-9_-]), so a placeholder is never mistaken for a real id.
SESSION_ID_FILL: Final = b"*"
# An Mcp-Session-Id field at the start of a line (MCP 2025-11-25, transports.mdx, "Session
# Management"; the name is case-insensitive): its whole value, visible ASCII only, up to
# optional whitespace and the line end.
_SESSION_ID_FIELD: Final = re.compile(
    rb"(?:^|(?<=\n))((?i:mcp-session-id):[ \t]*)([\x21-\x7e]+)(?=[ \t]*\r?\n)"
)


# A poll stream's name in a request target: a name, a dot, then the 8-hex-digit run id.
_POLL_RUN_ID: Final = re.compile(rb"([?&]stream=[A-Za-z0-9_-]+\.)[0-9a-f]{8}(?=[&\s])")
RUN_ID_FILL: Final = b"x"
_RUN_ID_REPLACEMENT: Final = rb"\g<1>" + RUN_ID_FILL * 8


def _fill_session_id(match: re.Match[bytes]) -> bytes:
    return match[1] + SESSION_ID_FILL * len(match[2])


def normalize(trace: Trace) -> Trace:
    """A copy of ``trace`` with run-to-run noise removed (see the module docstring)."""
    return Trace(
        name=trace.name,
        description=trace.description,
        connections=[_normalize_connection(conn) for conn in trace.connections],
    )


def normalized_text(trace: Trace) -> str:
    """The ``.trace`` text of the normalised trace: what golden files are compared on."""
    return dumps(normalize(trace))


def _host_port_rewriter(port: int, host: str, http2: bool) -> Callable[[bytes], bytes]:
    """Replace ``port`` at the end of a Host field value, keeping its length.

    In HTTP/2 the authority is an HPACK string: the lab's own client writes it as a plain
    literal (no Huffman), so ``HOST:PORT`` is found as bytes; a Huffman-coded one is not
    reached (see the module docstring).
    """
    digits = str(port)
    placeholder = str(SERVER_PORT).rjust(len(digits), "0")
    if len(placeholder) != len(digits):  # a port under 1000 is not ephemeral: keep it
        return lambda data: data
    # RFC 9110 §7.2: Host = uri-host [ ":" port ]; the host may be an IPv6 literal in [].
    field = re.compile(
        rb"(?:^|(?<=\n))((?i:host):[ \t]*\S*?:)" + digits.encode() + rb"(?=[ \t]*\r?\n)"
    )
    replacement = rb"\g<1>" + placeholder.encode()
    if not http2:
        return lambda data: field.sub(replacement, data)
    authority = re.compile(re.escape(f"{host}:{digits}".encode()))
    literal = f"{host}:{placeholder}".encode()
    return lambda data: authority.sub(literal, field.sub(replacement, data))


def _normalize_connection(conn: ConnectionTrace) -> ConnectionTrace:
    rewrite_host = _host_port_rewriter(
        conn.server[1], conn.server[0], conn.protocol in ("h2", "h2c")
    )
    client = (conn.client[0], CLIENT_PORT)
    server = (conn.server[0], SERVER_PORT)
    local, peer = (client, server) if conn.side == "client" else (server, client)
    records: list[Record] = []
    pending: list[bytes] = []  # data of consecutive records of kind pending_kind
    pending_kind = ""

    def flush() -> None:
        if pending:
            data = _DATE_FIELD.sub(_DATE_REPLACEMENT, b"".join(pending))
            data = rewrite_host(_SESSION_ID_FIELD.sub(_fill_session_id, data))
            data = _POLL_RUN_ID.sub(_RUN_ID_REPLACEMENT, data)
            records.append(Record(0.0, pending_kind, data))
            pending.clear()

    for record in conn.records:
        if record.kind in (SEND, RECV):
            if record.kind != pending_kind:
                flush()
                pending_kind = record.kind
            pending.append(record.data)
        else:
            flush()
            pending_kind = ""
            records.append(Record(0.0, record.kind, record.data))
    flush()
    return ConnectionTrace(
        side=conn.side, local=local, peer=peer, protocol=conn.protocol, records=records,
        tls=conn.tls,
    )  # fmt: skip
