"""The views, on traces from a real lab server and client over loopback (and a few built by
hand for cases a healthy server never produces)."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import trio
from matplotlib.figure import Figure
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.text import Text

from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.capture.annotate import annotate
from lab.capture.trace import CLOSE, CONNECT, RECV, RESET, SEND, ConnectionTrace, Record, Trace
from lab.capture.views import (
    DATA_KINDS,
    DEFAULT_KIND_STYLE,
    KEPT_FIELDS,
    KIND_STYLES,
    MAX_HEX_BYTES_PER_RECORD,
    MAX_SHOWN_BYTES,
    MAX_SHOWN_HEX_BYTES,
    TIMELINE_BAR_WIDTH,
    VIEWS,
    data_arrivals,
    escape_bytes,
    hex_bytes,
    plot_timeline,
    render,
    render_annotated,
    render_hex,
    render_html,
    render_sequence,
    render_timeline,
)
from lab.client import fetch, open_connection
from lab.server import Server, serve_tcp
from lab.wire.chunked import ChunkSize
from lab.wire.http1 import HeaderField

# Every trio run here is bounded: a hang fails the test instead of stalling the suite.
WAIT = 20.0
T = TypeVar("T")


def with_server(script: Callable[[Server], Awaitable[T]]) -> T:
    """Run ``script`` against a lab server on 127.0.0.1, port 0."""

    async def main() -> T:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                server: Server = await nursery.start(serve_tcp, lab_app)
                try:
                    return await script(server)
                finally:
                    nursery.cancel_scope.cancel()

    return trio.run(main)


def get(target: str, headers: list[tuple[str, str]] | None = None) -> Trace:
    async def script(server: Server) -> Trace:
        ex = await fetch("127.0.0.1", server.port, "GET", target, headers=headers or [])
        assert ex.response.status == 200
        return ex.trace

    return with_server(script)


def console(width: int = 160) -> Console:
    return Console(
        record=True, width=width, color_system="truecolor", file=io.StringIO(), highlight=False
    )


def shown(render_fn: Callable[[Trace, Console], None], trace: Trace, width: int = 160) -> Text:
    """What ``render_fn`` printed, as text with its styles."""
    out = console(width)
    render_fn(trace, out)
    return Text.from_ansi(out.export_text(styles=True))


def color_at(text: Text, needle: str, start: int = 0) -> Color:
    """The colour of the first character of ``needle`` (searched from ``start``)."""
    index = text.plain.index(needle, start)
    style = Style.combine(
        Style.parse(s) if isinstance(s, str) else s
        for s in (span.style for span in text.spans if span.start <= index < span.end)
    )
    assert style.color is not None, f"{needle!r} has no colour"
    return style.color


def same_color(a: Color, b: Color) -> bool:
    return a.get_truecolor() == b.get_truecolor()


def kind_color(kind: str) -> Color:
    color = Style.parse(KIND_STYLES[kind]).color
    assert color is not None
    return color


# -- traces from the real server, made once per module -------------------------------------

N_TOKENS = 5


@pytest.fixture(scope="module")
def tokens_trace() -> Trace:
    return get(f"/tokens?n={N_TOKENS}&interval_ms=10&prompt=views")


@pytest.fixture(scope="module")
def ndjson_trace() -> Trace:
    # NDJSON lines are 30-odd bytes: chunk sizes whose hex and decimal spellings differ.
    async def script(server: Server) -> Trace:
        body = json.dumps({"prompt": "views", "n": 4, "interval_ms": 0}).encode()
        headers = [("content-type", "application/json"), ("accept", "application/x-ndjson")]
        ex = await fetch("127.0.0.1", server.port, "POST", "/chat", headers=headers, body=body)
        return ex.trace

    return with_server(script)


@pytest.fixture(scope="module")
def trailers_trace() -> Trace:
    return get("/trailers?n=3&interval_ms=0&prompt=views", [("te", "trailers")])


@pytest.fixture(scope="module")
def abort_trace() -> Trace:
    """The client reads two pieces of a long stream, then hangs up."""

    async def script(server: Server) -> Trace:
        trace = Trace(name="abort")
        async with open_connection("127.0.0.1", server.port, trace=trace) as conn:
            await conn.send_request("GET", "/tokens?n=50&interval_ms=20&prompt=abort")
            response = await conn.read_response(stop_after_pieces=2)
            assert not response.complete
        return trace

    return with_server(script)


# -- escaping and styles -------------------------------------------------------------------


def test_escape_bytes_shows_every_byte_unambiguously() -> None:
    assert escape_bytes(b"GET / HTTP/1.1\r\n") == "GET / HTTP/1.1\\r\\n"
    assert (
        escape_bytes(b"\t\\\x00\x7f\xff\xe2\x82\xac ok")
        == "\\t\\\\\\x00\\x7f\\xff\\xe2\\x82\\xac ok"
    )
    # A backslash in the data cannot be mistaken for an escape.
    assert escape_bytes(b"\\r") != escape_bytes(b"\r")


def test_each_kind_has_its_own_colour() -> None:
    expected = {
        "request-line", "status-line", "header-field", "head-end", "chunk-size", "chunk-data",
        "chunk-crlf", "last-chunk", "trailer-field", "body-end", "body-data", "unparsed",
        "empty-line", "sse-bom", "sse-comment", "sse-field", "sse-dispatch", "sse-incomplete",
    }  # fmt: skip
    assert expected <= KIND_STYLES.keys()
    colours = [kind_color(kind).get_truecolor() for kind in KIND_STYLES]
    assert len(set(colours)) == len(colours)
    assert Style.parse(KIND_STYLES["unparsed"]) == Style.parse("bold red")
    assert Style.parse(DEFAULT_KIND_STYLE).color is not None
    assert {"chunk-data", "body-data"} <= DATA_KINDS


def test_unknown_view_is_refused(tokens_trace: Trace) -> None:
    with pytest.raises(ValueError, match="unknown view 'pretty'"):
        render(tokens_trace, "pretty", console())


@pytest.mark.parametrize("view", VIEWS)
def test_render_dispatches_every_view(tokens_trace: Trace, view: str) -> None:
    out = console()
    render(tokens_trace, view, out)
    text = out.export_text()
    assert text.startswith(f"trace {tokens_trace.name}")
    assert "connection 0" in text


# -- the annotated view --------------------------------------------------------------------


def test_annotated_rows_follow_the_segments(tokens_trace: Trace) -> None:
    text = shown(render_annotated, tokens_trace, width=400)  # wide: no row wraps
    plain = text.plain
    (ac,) = annotate(tokens_trace)
    conn = tokens_trace.connections[0]
    streams = {True: conn.client_to_server(), False: conn.server_to_client()}
    t0 = conn.records[0].t
    lines = plain.splitlines()
    position = 0
    for item in ac.items:
        seg = item.segment
        arrow = "C→S" if item.from_client else "S→C"
        wire = escape_bytes(streams[item.from_client][seg.start : seg.end])
        where = rf"\[{seg.start}, {seg.end}\)"
        row = re.compile(
            rf"^\s*{(item.t - t0) * 1000:.3f}\s+{arrow}\s+{where}\s+{re.escape(wire)}\s"
        )
        # Rows appear in the order of the segments.
        found = next(i for i in range(position, len(lines)) if row.match(lines[i]))
        assert seg.note().split(":")[0] in lines[found]
        position = found + 1
    assert "C→S" in plain
    assert "S→C" in plain
    # The connection's heading and events.
    assert f"client {conn.client[0]}:{conn.client[1]} → server" in plain
    assert "http/1.1" in plain
    assert "tapped at the client" in plain
    assert "connect: TCP connection established" in plain
    assert "close: the client closed the connection" in plain


def test_every_chunk_size_shows_hex_and_decimal(ndjson_trace: Trace) -> None:
    plain = shown(render_annotated, ndjson_trace).plain
    sizes = [s for ac in annotate(ndjson_trace) for s in ac.segments(from_client=False)]
    chunk_sizes = [s for s in sizes if isinstance(s, ChunkSize)]
    assert len(chunk_sizes) == 5  # 4 lines and {"done": true}
    assert any(s.size >= 16 for s in chunk_sizes)  # hex and decimal spell differently
    for seg in chunk_sizes:
        hex_text = seg.size_text.decode()
        line = next(line for line in plain.splitlines() if f"[{seg.start}, {seg.end})" in line)
        assert f"{hex_text}\\r\\n" in line
        assert f"0x{hex_text} = {seg.size} bytes" in line
    assert re.search(r"\s0\\r\\n\s+last chunk \(size 0\)", plain)
    assert "CRLF ending the chunked body" in plain


def test_annotated_colours_differ_by_kind(tokens_trace: Trace) -> None:
    text = shown(render_annotated, tokens_trace, width=400)
    plain = text.plain
    (ac,) = annotate(tokens_trace)
    conn = tokens_trace.connections[0]
    streams = {True: conn.client_to_server(), False: conn.server_to_client()}
    seen: dict[str, Color] = {}
    for item in ac.items:
        seg = item.segment
        # The row's bytes come right after its direction and byte range.
        arrow = "C→S" if item.from_client else "S→C"
        row = re.search(rf"{arrow}\s+\[{seg.start}, {seg.end}\)  ", plain)
        assert row is not None
        wire = escape_bytes(streams[item.from_client][seg.start : seg.end])
        wire_at = row.end()
        assert plain.startswith(wire, wire_at)
        colour = color_at(text, wire, wire_at)
        assert same_color(colour, kind_color(seg.kind)), seg.kind
        seen[seg.kind] = colour
    assert seen.keys() == {
        "request-line", "header-field", "head-end", "status-line",
        "chunk-size", "chunk-data", "chunk-crlf", "last-chunk", "body-end",
    }  # fmt: skip
    assert len({c.get_truecolor() for c in seen.values()}) == len(seen)
    # The legend names every kind shown, each in its colour.
    legend = next(line for line in plain.splitlines() if line.startswith("kinds: "))
    for kind in seen:
        assert f"■ {kind}" in legend
        assert same_color(color_at(text, f"■ {kind}"), kind_color(kind))


def test_long_body_rows_are_capped_and_say_so() -> None:
    size = 20_000
    trace = get(f"/fixed?size={size}")
    plain = shown(render_annotated, trace, width=400).plain
    conn = trace.connections[0]
    body_segments = [
        s for ac in annotate(trace) for s in ac.segments(from_client=False) if s.kind == "body-data"
    ]
    assert sum(s.nbytes for s in body_segments) == size
    down = conn.server_to_client()
    for seg in body_segments:
        first = escape_bytes(down[seg.start : seg.start + MAX_SHOWN_BYTES])
        if seg.nbytes > MAX_SHOWN_BYTES:
            assert f"{first} … (+{seg.nbytes - MAX_SHOWN_BYTES} bytes)" in plain
            # Never more than the cap of one segment's bytes on a row.
            more = escape_bytes(down[seg.start : seg.start + MAX_SHOWN_BYTES + 1])
            assert more not in plain
        else:
            assert first in plain
    assert "body of 20000 bytes (Content-Length)" in plain


def test_a_megabyte_body_renders_compactly() -> None:
    trace = get("/fixed?size=1048576")
    out = console()
    render_annotated(trace, out)
    text = out.export_text()
    # One short row per read of the body, not a megabyte of text.
    assert len(text) < 100_000
    assert text.count("bytes of body") == sum(
        1 for ac in annotate(trace) for a in ac.items if a.segment.kind == "body-data"
    )


def test_hanging_up_mid_stream_is_visible(abort_trace: Trace) -> None:
    text = shown(render_annotated, abort_trace)
    plain = text.plain
    close_at = plain.index("close: the client closed the connection")
    cut_at = plain.index("message cut short")
    assert close_at < cut_at
    assert "last chunk" not in plain
    assert same_color(color_at(text, "message cut short"), kind_color("unparsed"))


def test_events_and_unknown_protocols_are_shown_raw() -> None:
    request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    conn = ConnectionTrace(
        side="server",
        local=("127.0.0.1", 8080),
        peer=("127.0.0.1", 40000),
        protocol="spdy/3",  # no annotator for it: shown raw
        records=[
            Record(0.0, CONNECT),
            Record(0.001, RECV, request),
            Record(0.002, SEND, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
            Record(0.003, RESET),
        ],
    )
    trace = Trace(name="unknown-by-hand", connections=[conn])
    text = shown(render_annotated, trace, width=400)
    plain = text.plain
    assert "not annotated: no annotator for protocol 'spdy/3'" in plain
    # Bytes no decoder took are content: not text (NUL octets), so they are shown in hex.
    shown_part = hex_bytes(request[:MAX_SHOWN_HEX_BYTES])
    assert f"{shown_part} … (+{len(request) - MAX_SHOWN_HEX_BYTES} bytes)" in plain
    assert "00 00 00 04 00 00 00 00 00" in plain
    assert "\\x00" not in plain
    assert "reset: the connection broke under the server" in plain
    assert "tapped at the server" in plain
    assert "client 127.0.0.1:40000 → server 127.0.0.1:8080" in plain
    # The other views cope too.
    assert "no body data from the server" in shown(render_timeline, trace).plain
    assert "✕ reset: the connection broke under the server ✕" in shown(render_sequence, trace).plain
    assert data_arrivals(trace) == []


# -- the hex view --------------------------------------------------------------------------

HEX_LINE = re.compile(r"^([0-9a-f]{8})  ((?:[0-9a-f]{2} {1,2}){0,15}[0-9a-f]{2})\s+\|(.*)\|$")


def parse_hexdump(plain: str) -> dict[str, bytearray]:
    """Re-read the dump: bytes per direction, checking every line's offset."""
    streams = {"C→S": bytearray(), "S→C": bytearray()}
    direction = ""
    for line in plain.splitlines():
        header = re.match(r"^\+[\d.]+ ms  (send|recv) (\d+) bytes  (C→S|S→C)", line)
        if header:
            direction = header[3]
            continue
        match = HEX_LINE.match(line)
        if match:
            stream = streams[direction]
            assert int(match[1], 16) == len(stream)
            data = bytes.fromhex(match[2].replace(" ", ""))
            assert match[3] == "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
            stream += data
    return streams


def test_hexdump_is_every_byte_of_every_record(tokens_trace: Trace) -> None:
    text = shown(render_hex, tokens_trace)
    plain = text.plain
    conn = tokens_trace.connections[0]
    streams = parse_hexdump(plain)
    assert streams["C→S"] == conn.client_to_server()
    assert streams["S→C"] == conn.server_to_client()
    t0 = conn.records[0].t
    for rec in conn.records:
        if rec.kind in (SEND, RECV):
            assert f"+{(rec.t - t0) * 1000:.3f} ms  {rec.kind} {len(rec.data)} bytes" in plain
    assert "connect: TCP connection established" in plain
    assert "close: the client closed the connection" in plain


def test_hexdump_bytes_are_coloured_by_kind(tokens_trace: Trace) -> None:
    text = shown(render_hex, tokens_trace)
    plain = text.plain
    (ac,) = annotate(tokens_trace)
    kinds = {
        "C→S" if d else "S→C": {
            offset: seg.kind
            for seg in ac.segments(from_client=d)
            for offset in range(seg.start, seg.end)
        }
        for d in (True, False)
    }
    checked = set()
    direction = ""
    at = 0
    for line in plain.splitlines(keepends=True):
        header = re.match(r"^\+[\d.]+ ms  (send|recv) \d+ bytes  (C→S|S→C)", line)
        if header:
            direction = header[2]
        elif match := HEX_LINE.match(line.rstrip("\n")):
            offset = int(match[1], 16)
            for i in range(len(match[2].replace(" ", "")) // 2):
                colour = kind_color(kinds[direction][offset + i])
                hex_at = at + 10 + 3 * i + (i >= 8)  # "00000000  " then "xx " each
                ascii_at = at + 10 + 48 + 3 + i  # after the 48-cell hex column and "  |"
                assert same_color(color_at(text, plain[hex_at], hex_at), colour)
                assert same_color(color_at(text, plain[ascii_at], ascii_at), colour)
                checked.add(kinds[direction][offset + i])
        at += len(line)
    assert checked == {seg.kind for seg in ac.segments(from_client=False)} | {
        seg.kind for seg in ac.segments(from_client=True)
    }
    legend = next(line for line in plain.splitlines() if line.startswith("kinds: "))
    for kind in checked:
        assert f"■ {kind}" in legend


def test_hexdump_caps_long_records() -> None:
    trace = get("/fixed?size=200000")
    plain = shown(render_hex, trace).plain
    conn = trace.connections[0]
    long_records = [r for r in conn.records if len(r.data) > MAX_HEX_BYTES_PER_RECORD]
    assert long_records
    for rec in long_records:
        assert f"… (+{len(rec.data) - MAX_HEX_BYTES_PER_RECORD} bytes of this record)" in plain
    out = console()
    render_hex(trace, out, max_bytes=None)
    streams = parse_hexdump(out.export_text())
    assert streams["S→C"] == conn.server_to_client()


# -- arrivals and the timeline -------------------------------------------------------------


def test_data_arrivals_are_the_tokens_then_done(tokens_trace: Trace) -> None:
    arrivals = data_arrivals(tokens_trace)
    expected = [t.encode() for t in tokens_for("views", N_TOKENS)] + [b"\n[DONE]\n"]
    assert len(arrivals) == N_TOKENS + 1
    assert [data for _, _, _, data in arrivals] == expected
    assert [size for _, _, size, _ in arrivals] == [len(d) for d in expected]
    assert {index for index, _, _, _ in arrivals} == {0}
    times = [t for _, t, _, _ in arrivals]
    assert times == sorted(times)
    # Times are on the trace's axis: each is the time of a record that carried the data.
    record_times = {r.t for r in tokens_trace.connections[0].records if r.kind == RECV}
    assert set(times) <= record_times


def test_data_arrivals_leave_out_what_the_client_sent(ndjson_trace: Trace) -> None:
    # The request had a JSON body; only the reply's pieces count.
    arrivals = data_arrivals(ndjson_trace)
    lines = [json.loads(data) for _, _, _, data in arrivals]
    assert lines == [
        *({"index": i, "token": t} for i, t in enumerate(tokens_for("views", 4))),
        {"done": True},
    ]


def test_data_arrivals_count_content_length_bodies() -> None:
    trace = get("/fixed?size=3000")
    arrivals = data_arrivals(trace)
    assert sum(size for _, _, size, _ in arrivals) == 3000
    assert b"".join(data for _, _, _, data in arrivals) == (b"streamlab " * 300)


def test_timeline_has_a_row_per_piece_and_a_summary(tokens_trace: Trace) -> None:
    plain = shown(render_timeline, tokens_trace).plain
    arrivals = data_arrivals(tokens_trace)
    t0 = tokens_trace.connections[0].records[0].t
    rows = [line for line in plain.splitlines() if "█" in line]
    assert len(rows) == len(arrivals)
    previous = None
    for row, (_, t, size, data) in zip(rows, arrivals, strict=True):
        rel = (t - t0) * 1000
        cells = row.split()
        assert cells[0] == f"{rel:.3f}"
        if previous is None:
            assert cells[1] == str(size)
        else:
            assert cells[1] == f"{rel - previous:.3f}"
            assert cells[2] == str(size)
        assert escape_bytes(data) in row
        previous = rel
    # The bars span the first piece to the last.
    assert re.search(r"\s█\s", rows[0])
    assert "·" * (TIMELINE_BAR_WIDTH - 1) + "█" in rows[-1]
    positions = [row.index("█") for row in rows]
    assert positions == sorted(positions)
    first = (arrivals[0][1] - t0) * 1000
    last = (arrivals[-1][1] - t0) * 1000
    gaps = (last - first) / (len(arrivals) - 1)
    total = sum(size for _, _, size, _ in arrivals)
    summary = (
        f"{len(arrivals)} pieces, {total} bytes; first byte at {first:.3f} ms, last at"
        f" {last:.3f} ms; mean gap {gaps:.3f} ms"
    )
    assert summary in plain


def test_timeline_of_a_trace_without_times() -> None:
    # A normalised trace has every time at 0: nothing may divide by it.
    conn = ConnectionTrace(
        side="client",
        local=("127.0.0.1", 40000),
        peer=("127.0.0.1", 8080),
        records=[
            Record(0.0, CONNECT),
            Record(0.0, SEND, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"),
            Record(0.0, RECV, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
            Record(0.0, CLOSE),
        ],
    )
    trace = Trace(name="zero", connections=[conn])
    plain = shown(render_timeline, trace).plain
    assert "1 piece, 2 bytes; first byte at 0.000 ms, last at 0.000 ms" in plain
    fig = plot_timeline(trace)
    assert len(fig.axes[0].get_lines()) == 1


# -- the sequence diagram ------------------------------------------------------------------


def test_sequence_has_one_arrow_per_unit(tokens_trace: Trace) -> None:
    plain = shown(render_sequence, tokens_trace).plain
    # Arrow lines only: the lines below an arrow hold what did not fit on it.
    lines = [line for line in plain.splitlines() if "▶│" in line or "│◀" in line]
    tokens = [t.encode() for t in tokens_for("views", N_TOKENS)] + [b"\n[DONE]\n"]
    (ac,) = annotate(tokens_trace)
    request, response = (
        [s for s in ac.segments(from_client=d) if isinstance(s, HeaderField)] for d in (True, False)
    )
    assert not any(f.name.lower() in KEPT_FIELDS for f in request)  # host, user-agent
    kept = [f"{f.name}: {f.value}" for f in response if f.name.lower() in KEPT_FIELDS]
    assert kept  # what the body is and how it is framed
    expected = [
        "connect: TCP connection established ─",
        f"GET /tokens?n={N_TOKENS}&interval_ms=10&prompt=views HTTP/1.1"
        f"  + {len(request)} header fields ─",
        "─ HTTP/1.1 200 OK  " + "  ".join(kept),
        *(f'─ chunk {len(t)} B  "{escape_bytes(t)}"' for t in tokens),
        "─ last chunk (0)",
        "close: the client closed the connection ─",
    ]
    assert len(lines) == len(expected)
    for line, words in zip(lines, expected, strict=True):
        assert words in line
        to_server = line.rstrip().endswith("▶│")
        assert to_server == words.endswith("─")
        assert ("│◀" in line) == (not to_server)
    times = [float(line.split()[0]) for line in lines]
    assert times == sorted(times)


def test_sequence_folds_trailers_and_shows_the_hang_up(
    trailers_trace: Trace, abort_trace: Trace
) -> None:
    plain = shown(render_sequence, trailers_trace, width=200).plain
    assert "─ last chunk (0)" in plain
    # One arrow for the trailer section, every trailer field in full on the lines below.
    lines = plain.splitlines()
    at = next(i for i, line in enumerate(lines) if re.search(r"◀─+ trailers │", line))
    below = "\n".join(lines[at + 1 : at + 3])
    assert "x-token-count: 3" in below
    assert re.search(r"x-body-sha256: [0-9a-f]{64} │", below)
    # te: trailers is what the request is about; host and user-agent are folded.
    assert "te: trailers  + 2 header fields" in plain
    plain = shown(render_sequence, abort_trace).plain
    assert "last chunk" not in plain
    lines = plain.splitlines()
    close = next(i for i, line in enumerate(lines) if "close: the client closed" in line)
    assert "message cut short" in lines[close + 1]
    assert sum("─ chunk " in line for line in lines) >= 2


# -- HTML and the plot ---------------------------------------------------------------------


def test_html_page_has_the_annotated_view_in_colour(tokens_trace: Trace) -> None:
    page = render_html(tokens_trace)
    assert page.startswith("<!DOCTYPE html>")
    assert "GET /tokens?n=5&amp;interval_ms=10&amp;prompt=views HTTP/1.1\\r\\n" in page
    r, g, b = kind_color("chunk-size").get_truecolor()
    assert f"color: #{r:02x}{g:02x}{b:02x}" in page
    assert "<script" not in page


def test_plot_timeline_compares_traces(tmp_path: Path, tokens_trace: Trace) -> None:
    fixed = get("/fixed?size=5000")
    path = tmp_path / "timeline.png"
    fig = plot_timeline([fixed, tokens_trace], path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert path.stat().st_size > 1000
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2  # one per connection
    # The tokens line: a marker at each arrival, and the cumulative bytes.
    arrivals = data_arrivals(tokens_trace)
    line = lines[1]
    ys = np.asarray(line.get_ydata(), dtype=float)
    assert ys[-1] == sum(size for _, _, size, _ in arrivals)
    markevery = line.get_markevery()
    assert isinstance(markevery, list)
    assert len(markevery) == len(arrivals)
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[1].startswith(f"{tokens_trace.name} ({len(arrivals)} pieces")
    assert ax.get_xlabel() == "time since the trace's first connect (ms)"
    assert ax.get_title()


def test_plot_timeline_draws_on_given_axes(tokens_trace: Trace) -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_timeline(tokens_trace, ax=ax) is fig
    assert len(ax.get_lines()) == 1


def test_plot_timeline_without_matplotlib_names_the_extra(
    tokens_trace: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on the tour's install, which has no matplotlib: None in sys.modules stops imports.
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[plots\]'"):
        plot_timeline(tokens_trace)


# -- the nested SSE layer ------------------------------------------------------------


@pytest.fixture(scope="module")
def sse_trace() -> Trace:
    from lab.scenarios import get, run_scenario

    return trio.run(run_scenario, get("sse-reconnect"))


def test_annotated_view_shows_sse_lines_under_their_chunks(sse_trace: Trace) -> None:
    out = console()
    render_annotated(sse_trace, out)
    text = out.export_text()
    assert "↳ id: 1\\n" in text
    assert "field 'retry' = '50': reconnection time set to 50 ms" in text
    assert "blank line: dispatch a 'message' event" in text
    assert "header field last-event-id: 2" in text  # the second connection resumes
    # Each nested row comes after the chunk-data row that completed it.
    assert text.index("↳ id: 1\\n") > text.index("3d\\r\\n")


def test_sequence_view_shows_each_dispatched_event(sse_trace: Trace) -> None:
    out = console()
    render_sequence(sse_trace, out)
    text = out.export_text()
    for event_id in ("1", "2", "3", "4"):
        assert f"SSE message id={event_id}" in text
    assert "204 No Content" in text


def test_hex_view_colours_the_framing_not_the_nested_layer(sse_trace: Trace) -> None:
    out = console()
    render_hex(sse_trace, out)
    text = out.export_text()
    assert "sse-field" not in text.split("kinds:")[-1]  # the legend lists framing kinds only


def test_data_arrivals_over_http2_are_the_data_frames() -> None:
    from lab.scenarios import get, run_scenario

    trace = trio.run(run_scenario, get("h2-token-stream"))
    arrivals = data_arrivals(trace)
    # One arrival per non-empty DATA frame: the tokens, then [DONE]; the empty DATA frame
    # that only carries END_STREAM is not data.
    assert [data for _, _, _, data in arrivals] == [t.encode() for t in tokens_for("h2", 5)] + [
        b"\n[DONE]\n"
    ]
