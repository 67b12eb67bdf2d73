"""The .trace text format (lossless, pinned, strict on load) and golden normalisation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.capture.fileformat import TraceFormatError, dumps, load, loads
from lab.capture.normalize import (
    CLIENT_PORT,
    PLACEHOLDER_DATE,
    SERVER_PORT,
    normalize,
    normalized_text,
)
from lab.capture.trace import (
    CLOSE,
    CONNECT,
    EOF,
    RECORD_KINDS,
    RECV,
    RESET,
    SEND,
    ConnectionTrace,
    Record,
    Trace,
)

# ---------------------------------------------------------------------------- generated traces

hosts = st.sampled_from(["127.0.0.1", "::1", "10.1.2.3", "fe80::1%lo", "localhost", ""])
ports = st.integers(0, 0xFFFF)
# Times are stored to the microsecond, so generate them on that grid.
times = st.integers(-(10**6), 10**12).map(lambda us: us / 1_000_000)


@st.composite
def records(draw: st.DrawFn) -> Record:
    kind = draw(st.sampled_from(RECORD_KINDS))
    data = draw(st.binary(max_size=70)) if kind in (SEND, RECV) else b""
    return Record(draw(times), kind, data)


@st.composite
def connections(draw: st.DrawFn) -> ConnectionTrace:
    return ConnectionTrace(
        side=draw(st.sampled_from(["client", "server"])),
        local=(draw(hosts), draw(ports)),
        peer=(draw(hosts), draw(ports)),
        protocol=draw(st.sampled_from(["http/1.1", "h2c", "h2", "x-custom/0.1"])),
        records=draw(st.lists(records(), max_size=12)),
    )


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    return Trace(
        name=draw(st.text(max_size=20)),
        description=draw(st.text(max_size=80)),  # newlines, quotes, controls, any script
        connections=draw(st.lists(connections(), max_size=4)),
    )


@given(traces())
def test_round_trip_is_exact(trace: Trace) -> None:
    text = dumps(trace)
    assert loads(text) == trace
    assert dumps(loads(text)) == text


@given(traces())
def test_text_is_diff_friendly(trace: Trace) -> None:
    text = dumps(trace)
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert all(line == line.rstrip() for line in lines), "trailing whitespace"
    assert len(lines) == 3 + sum(  # header; per connection a blank and a header line ...
        2 + sum(1 + (len(r.data) + 15) // 16 for r in conn.records)  # ... record + hex lines
        for conn in trace.connections
    )


def test_every_byte_value_round_trips() -> None:
    data = bytes(range(256))
    conn = ConnectionTrace("client", ("127.0.0.1", 1), ("127.0.0.1", 2))
    conn.records += [Record(0.0, SEND, data), Record(0.0, SEND, b""), Record(0.0, RECV, data)]
    trace = Trace("all bytes", connections=[conn])
    assert loads(dumps(trace)) == trace


def test_save_and_load(tmp_path: Path) -> None:
    trace = _example()
    trace.save(tmp_path / "example.trace")
    assert load(tmp_path / "example.trace") == trace
    assert (tmp_path / "example.trace").read_text(encoding="utf-8") == EXAMPLE_TEXT


def test_load_reports_non_utf8_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.trace"
    path.write_bytes(EXAMPLE_TEXT.encode().replace(b'"hello"', b'"h\xffllo"'))
    with pytest.raises(TraceFormatError, match=r"^line 2: not UTF-8"):
        load(path)


# ---------------------------------------------------------------------------- the pinned format


def _example() -> Trace:
    conn = ConnectionTrace("client", ("127.0.0.1", 50000), ("127.0.0.1", 8080))
    conn.records += [
        Record(0.0, CONNECT),
        Record(0.000084, SEND, b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"),
        Record(0.00095, RECV, b"HTTP/1.1 204 No Content\r\n"),
        Record(0.0011, RECV, b"\r\n"),
        Record(0.0012, EOF),
        Record(0.00121, CLOSE),
    ]
    server = ConnectionTrace("server", ("::1", 8080), ("::1", 41000), protocol="h2c")
    server.records += [Record(1.5, CONNECT), Record(1.500002, RESET)]
    return Trace("hello", 'One "GET" and its reply.\nSecond line.', [conn, server])


EXAMPLE_TEXT = """\
streamlab-trace 1
name "hello"
description "One \\"GET\\" and its reply.\\nSecond line."

connection 0 client local=127.0.0.1:50000 peer=127.0.0.1:8080 protocol=http/1.1
+0.000000 connect
+0.000084 send 29
  00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|
  00000010  48 6f 73 74 3a 20 6c 61  62 0d 0a 0d 0a           |Host: lab....|
+0.000950 recv 25
  00000000  48 54 54 50 2f 31 2e 31  20 32 30 34 20 4e 6f 20  |HTTP/1.1 204 No |
  00000010  43 6f 6e 74 65 6e 74 0d  0a                       |Content..|
+0.001100 recv 2
  00000019  0d 0a                                             |..|
+0.001200 eof
+0.001210 close

connection 1 server local=[::1]:8080 peer=[::1]:41000 protocol=h2c
+1.500000 connect
+1.500002 reset
"""


def test_format_is_pinned() -> None:
    assert dumps(_example()) == EXAMPLE_TEXT
    assert loads(EXAMPLE_TEXT) == _example()


def test_invisible_characters_are_escaped_readable_ones_kept() -> None:
    trace = Trace("naïve → ok", "tab\there\u2028sep\x7fdel \U000e0001tag")
    header = dumps(trace).split("\n")[1:3]
    assert header == [
        'name "naïve → ok"',
        'description "tab\\there\\u2028sep\\u007fdel \\udb40\\udc01tag"',
    ]
    assert loads(dumps(trace)) == trace


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda c: c.records.append(Record(0.0, "wave")), "unknown record kind"),
        (lambda c: c.records.append(Record(0.0, CLOSE, b"x")), "cannot carry data"),
        (lambda c: c.records.append(Record(float("nan"), CLOSE)), "not finite"),
        (lambda c: setattr(c, "protocol", "http 1.1"), "protocol"),
        (lambda c: setattr(c, "protocol", ""), "protocol"),
        (lambda c: setattr(c, "local", ("a b", 1)), "host"),
        (lambda c: setattr(c, "peer", ("127.0.0.1", 70000)), "port"),
    ],
)
def test_dumps_refuses_what_it_cannot_write_faithfully(
    change: Callable[[ConnectionTrace], object], why: str
) -> None:
    trace = _example()
    change(trace.connections[0])
    with pytest.raises(ValueError, match=why):
        dumps(trace)


# ---------------------------------------------------------------------------- malformed files


def _edit(lineno: int, new: str | None) -> str:
    """EXAMPLE_TEXT with line ``lineno`` (1-based) replaced, or deleted if ``new`` is None."""
    lines = EXAMPLE_TEXT.split("\n")
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "lineno", "message"),
    [
        ("", 1, "file ends where the header was expected"),
        ("streamlab-trace 2\n", 1, "unsupported trace format version '2'"),
        ("pcapng?\n", 1, "not a streamlab trace"),
        (_edit(2, "name hello"), 2, "name is not a valid JSON string"),
        (_edit(3, "description 42"), 3, "description is not a JSON string"),
        (_edit(3, 'summary "x"'), 3, "expected 'description"),
        (_edit(5, "connection 1 client local=a:1 peer=b:2 protocol=x"), 5, "connection 0 was"),
        (_edit(5, "connection 0 client local=a:1 peer=b protocol=x"), 5, "malformed address 'b'"),
        (_edit(5, "connection 0 peer local=a:1 peer=b:2 protocol=x"), 5, "malformed connection"),
        (_edit(5, "connection 0 client local=a:1 peer=b:99999 protocol=x"), 5, "out of range"),
        (_edit(6, "+0.0 connect"), 6, "malformed record line"),
        (_edit(6, "+0.000000 wave"), 6, "unknown record kind 'wave'"),
        (_edit(6, "+0.000000 connect 3"), 6, "a connect record has no length"),
        (_edit(7, "+0.000084 send"), 7, "needs its length"),
        (
            _edit(8, "  00000000  47 45 54 20 2f 20 48 5g  54 50 2f 31"),
            8,
            "malformed hex byte '5g'",
        ),
        (_edit(8, "  0000000x  47 45"), 8, "malformed offset '0000000x'"),
        (_edit(8, "  00000000"), 8, "holds no bytes"),
        (_edit(8, "  00000000  " + "00 " * 17), 8, "holds 17 bytes"),
        (
            _edit(8, "  00000010  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a"),
            8,
            "offset 00000010 where 00000000",
        ),
        (_edit(8, None), 8, "offset 00000010 where 00000000"),
        (_edit(9, None), 7, "record declares 29 bytes but its hexdump holds 16"),
        (_edit(14, "  00000000  0d 0a"), 14, "offset 00000000 where 00000019"),
        (_edit(14, "  00000019  0d 0a 0d"), 14, "more than the 2 bytes"),
        (_edit(15, "  0000001b  0d 0a"), 15, "outside a record"),
        (_edit(5, ""), 6, "record before the first connection"),
        (_edit(4, "hello"), 4, "unrecognised line 'hello'"),
    ],
)
def test_malformed_files_name_the_line(text: str, lineno: int, message: str) -> None:
    with pytest.raises(TraceFormatError) as info:
        loads(text)
    assert info.value.lineno == lineno
    assert str(info.value).startswith(f"line {lineno}: ")
    assert message in str(info.value)


def test_the_ascii_column_is_not_read_back() -> None:
    stale = EXAMPLE_TEXT.replace("|GET / HTTP/1.1..|", "|(edited by hand)|")
    assert loads(stale) == _example()
    bare = EXAMPLE_TEXT.replace("  |GET / HTTP/1.1..|", "")
    assert loads(bare) == _example()


def test_crlf_line_endings_are_accepted() -> None:
    assert loads(EXAMPLE_TEXT.replace("\n", "\r\n")) == _example()


# ---------------------------------------------------------------------------- normalize

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"date: Sat, 21 Nov 2026 12:14:23 GMT\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n"
)
REQUEST = b"GET /tokens HTTP/1.1\r\nHost: 127.0.0.1:54321\r\n\r\n"


def _run(side: str, t0: float, cut: int) -> Trace:
    """One conversation as a run might record it: times, ports and recv splits vary."""
    client, server = ("127.0.0.1", 40000 + cut), ("127.0.0.1", 54321)
    conn = ConnectionTrace("client", client, server)
    if side == "client":
        conn.records += [
            Record(t0, CONNECT),
            Record(t0 + 0.1, SEND, REQUEST),
            Record(t0 + 0.2, RECV, RESPONSE[:cut]),
            Record(t0 + 0.3, RECV, RESPONSE[cut:]),
            Record(t0 + 0.4, EOF),
            Record(t0 + 0.5, CLOSE),
        ]
    else:
        conn = ConnectionTrace("server", server, client)
        conn.records += [
            Record(t0, CONNECT),
            Record(t0 + 0.1, RECV, REQUEST[:cut]),
            Record(t0 + 0.2, RECV, REQUEST[cut:]),
            Record(t0 + 0.3, SEND, RESPONSE),
            Record(t0 + 0.5, CLOSE),
        ]
    return Trace("tokens", "two runs", [conn])


@pytest.mark.parametrize("side", ["client", "server"])
def test_normalize_makes_runs_comparable(side: str) -> None:
    first, second = _run(side, 0.0, 20), _run(side, 3.25, 41)
    assert dumps(first) != dumps(second)
    assert normalized_text(first) == normalized_text(second)


def test_normalize_replaces_ports_times_dates_and_merges() -> None:
    (conn,) = normalize(_run("client", 7.0, 20)).connections
    assert conn.client == ("127.0.0.1", CLIENT_PORT)
    assert conn.server == ("127.0.0.1", SERVER_PORT)
    assert [r.t for r in conn.records] == [0.0] * 5
    assert [r.kind for r in conn.records] == [CONNECT, SEND, RECV, EOF, CLOSE]
    assert conn.records[1].data == REQUEST.replace(b":54321\r\n", b":08080\r\n")
    assert conn.records[2].data == RESPONSE.replace(
        b"Sat, 21 Nov 2026 12:14:23 GMT", PLACEHOLDER_DATE
    )
    (server_side,) = normalize(_run("server", 7.0, 20)).connections
    assert server_side.client == conn.client
    assert server_side.server == conn.server


def test_normalize_keeps_lengths_and_order_across_directions() -> None:
    conn = ConnectionTrace("client", ("127.0.0.1", 40000), ("127.0.0.1", 8080))
    conn.records += [
        Record(0.1, SEND, b"a"),
        Record(0.2, SEND, b"b"),
        Record(0.3, RECV, b"c"),
        Record(0.4, SEND, b"d"),
        Record(0.5, RECV, b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"),
        Record(0.6, RECV, b"Date: not a date\r\n"),
        Record(0.7, RESET),
    ]
    trace = Trace("t", connections=[conn])
    (merged,) = normalize(trace).connections
    assert [(r.kind, r.data) for r in merged.records] == [
        (SEND, b"ab"),
        (RECV, b"c"),
        (SEND, b"d"),
        (RECV, b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nDate: not a date\r\n"),
        (RESET, b""),
    ]
    assert len(merged.sent()) == len(conn.sent())
    assert len(merged.received()) == len(conn.received())
    assert trace.connections[0].records[0] == Record(0.1, SEND, b"a"), "input left alone"


@given(traces())
def test_normalize_is_idempotent_and_keeps_stream_lengths(trace: Trace) -> None:
    once = normalize(trace)
    assert normalize(once) == once
    for before, after in zip(trace.connections, once.connections, strict=True):
        assert len(after.sent()) == len(before.sent())
        assert len(after.received()) == len(before.received())
