"""Golden normalisation of MCP session ids (the other rules: tests/capture/test_fileformat)."""

from __future__ import annotations

import pytest

from lab.apps.mcp.session import new_session_id
from lab.capture.normalize import SESSION_ID_FILL, normalize, normalized_text
from lab.capture.trace import CLOSE, CONNECT, RECV, SEND, ConnectionTrace, Record, Trace

INIT_REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: application/json\r\n"
    b"mcp-session-id: %s\r\n"
    b"content-length: 2\r\n\r\n{}"
)
LATER_REQUEST = (
    b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"
    b"Mcp-Session-Id: %s\r\nmcp-protocol-version: 2025-11-25\r\n\r\n"
)


def _session(session_id: bytes, cut: int = 30) -> Trace:
    """A server assigning ``session_id`` and the client sending it back; the reply is
    received in two pieces split at ``cut`` (the id may straddle the split)."""
    reply = INIT_REPLY % session_id
    conn = ConnectionTrace("client", ("127.0.0.1", 40000), ("127.0.0.1", 8080))
    conn.records += [
        Record(0.0, CONNECT),
        Record(0.1, RECV, reply[:cut]),
        Record(0.2, RECV, reply[cut:]),
        Record(0.3, SEND, LATER_REQUEST % session_id),
        Record(0.4, CLOSE),
    ]
    return Trace("mcp", connections=[conn])


@pytest.mark.parametrize("cut", [5, 55, 70])
def test_two_sessions_normalise_alike(cut: int) -> None:
    first, second = new_session_id().encode(), new_session_id().encode()
    assert first != second
    assert normalized_text(_session(first, cut)) == normalized_text(_session(second, 30))


def test_the_value_becomes_a_fill_of_the_same_length_in_both_directions() -> None:
    session_id = b"72z7ybUnuddidKG4K3Xstkq1Ff_6mDxF"
    (conn,) = normalize(_session(session_id)).connections
    fill = SESSION_ID_FILL * len(session_id)
    assert [r.data for r in conn.records if r.kind in (RECV, SEND)] == [
        INIT_REPLY % fill,
        LATER_REQUEST % fill,
    ]
    assert normalize(normalize(_session(session_id))) == normalize(_session(session_id))


@pytest.mark.parametrize(
    ("line", "normalised"),
    [
        # Any visible-ASCII value, the name in any case, whitespace around the value kept.
        (b"MCP-SESSION-ID:\tabc \r\n", b"MCP-SESSION-ID:\t*** \r\n"),
        (b"mcp-session-id: a.b~c!\n", b"mcp-session-id: ******\n"),
        # Not a session-id field, or not a value MCP allows: left alone.
        (b"x-mcp-session-id: abc\r\n", b"x-mcp-session-id: abc\r\n"),
        (b"mcp-session-id: two words\r\n", b"mcp-session-id: two words\r\n"),
        (b"mcp-session-id: caf\xc3\xa9\r\n", b"mcp-session-id: caf\xc3\xa9\r\n"),
        (b"mcp-session-id:\r\n", b"mcp-session-id:\r\n"),
        (b'{"mcp-session-id: abc"}\r\n', b'{"mcp-session-id: abc"}\r\n'),
    ],
)
def test_only_a_session_id_field_value_is_replaced(line: bytes, normalised: bytes) -> None:
    conn = ConnectionTrace("server", ("127.0.0.1", 8080), ("127.0.0.1", 40000))
    conn.records.append(Record(0.0, RECV, b"HTTP/1.1 200 OK\r\n" + line))
    (out,) = normalize(Trace("t", connections=[conn])).connections
    assert out.records[0].data == b"HTTP/1.1 200 OK\r\n" + normalised
