"""The two legs of an exchange through a proxy, read from one trace.

A proxy experiment's trace holds two kinds of connection, told apart by where the tap sat
(:attr:`ConnectionTrace.side <lab.capture.trace.ConnectionTrace.side>`):

- ``side="client"``: the **client leg**, client ↔ proxy, tapped in the lab's client;
- ``side="server"``: the **upstream leg**, proxy ↔ lab server, tapped by the recording
  relay (:mod:`lab.capture.relay`) in front of the lab server, so its SEND records are
  the upstream's bytes, timed as they were handed to the proxy.

Both are on the trace's one clock. :func:`read_leg` decodes one connection's first
response through the lab's annotator (:func:`lab.capture.annotate.annotate_connection`)
into a :class:`Leg`: the head, the framing units on the wire (chunk sizes, or DATA frame
payload sizes), and after which record how much of the decoded body (after any
``Content-Encoding: gzip``) had arrived. :func:`units` cuts a body into the messages the
lab's endpoints send (tokens, NDJSON lines, SSE events), and :func:`arrivals` says for
each one when the upstream sent it and when the client got it, and in which client read.

Which unit is which is decided by the body itself, never by read boundaries, so the same
unit is found on both legs whatever the proxy did to the framing:

- ``text/event-stream``: one unit per event an EventSource dispatches (comments and a
  lone ``retry:`` block dispatch nothing); ``data: [DONE]`` is the end marker;
- ``application/x-ndjson``: one unit per line; a line without a ``"token"`` key (the
  lab's ``{"done": true}``) is the end marker;
- anything else is the lab's bare token text: a unit starts at each space (every token
  after the first begins with one), and ``\\n[DONE]\\n`` is the end marker.
"""

from __future__ import annotations

import json
import re
import zlib
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from lab.capture.annotate import Annotated, annotate_connection
from lab.capture.trace import CLOSE, EOF, RECV, RESET, SEND, SHUTDOWN, ConnectionTrace, Trace
from lab.wire.chunked_segments import ChunkData, ChunkSize, LastChunk
from lab.wire.h2segments import DataFrame, HeadersFrame, RstStreamFrame
from lab.wire.http1 import BodyData, HeadEnd, HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested
from lab.wire.sse import Dispatch, SSEDecoder

__all__ = [
    "CLIENT",
    "UPSTREAM",
    "Arrival",
    "Leg",
    "Unit",
    "arrivals",
    "leg_name",
    "legs",
    "pairs",
    "read_leg",
    "units",
]

CLIENT: Final = "client"  # client ↔ proxy, tapped at the lab's client
UPSTREAM: Final = "upstream"  # proxy ↔ lab server, tapped at the relay

_END_STREAM: Final = 0x1
_TEXT_UNIT: Final = re.compile(rb"\n\[DONE\]\n|\n| ?[^ \n]+")


def leg_name(conn: ConnectionTrace) -> str:
    """``"client"`` or ``"upstream"``: which leg a connection of a proxy trace is."""
    return CLIENT if conn.side == "client" else UPSTREAM


@dataclass(frozen=True, slots=True)
class Unit:
    """One message of a body: ``[start, end)`` in the decoded body, its text, and whether
    it is the stream's end marker rather than a token or event."""

    start: int
    end: int
    text: str
    final: bool = False


@dataclass(slots=True)
class Leg:
    """One connection's first exchange, as one leg of the proxied request."""

    leg: str  # CLIENT or UPSTREAM
    index: int  # the connection's index in the trace
    conn: ConnectionTrace
    request: str = ""  # the request line, or "GET /path (h2 stream 1)"
    request_t: float | None = None  # when the request's last byte crossed this leg
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # as on the wire
    framing: str = ""  # "chunked", "length", "close", "h2", or "" when no response came
    frames: list[int] = field(default_factory=list)  # chunk-data or DATA payload sizes
    # (time, record index, decoded body length after it) for each record carrying body.
    pieces: list[tuple[float, int, int]] = field(default_factory=list)
    body: bytes = b""  # the decoded body (Content-Encoding undone)
    wire_body: int = 0  # body bytes as they crossed this leg, framing included
    complete: bool = False  # the response's end arrived: last chunk, END_STREAM, ...
    reset_t: float | None = None  # h2: when RST_STREAM crossed (either way)
    reset_by_client: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def header_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, _ in self.headers:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
        return counts

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def bytes_carried(self) -> int:
        """Every byte of the connection, both ways."""
        return len(self.conn.client_to_server()) + len(self.conn.server_to_client())

    def end(self, after: float = float("-inf")) -> tuple[float, str] | None:
        """The first EOF, RESET, SHUTDOWN or CLOSE record after ``after``: (time, kind)."""
        return next(
            (
                (r.t, r.kind)
                for r in self.conn.records
                if r.kind in (EOF, RESET, SHUTDOWN, CLOSE) and r.t > after
            ),
            None,
        )

    def peer_end(self, after: float = float("-inf")) -> tuple[float, str] | None:
        """When the far side of this leg stopped: for the upstream leg, the proxy's FIN
        or a reset (EOF/RESET at the relay); for the client leg, the proxy's FIN."""
        return next(
            ((r.t, r.kind) for r in self.conn.records if r.kind in (EOF, RESET) and r.t > after),
            None,
        )

    def piece_sizes(self) -> list[int]:
        """The decoded body bytes each body-carrying record added: the client's reads, or
        the upstream's writes as the relay handed them on."""
        out, before = [], 0
        for _, _, size in self.pieces:
            out.append(size - before)
            before = size
        return out

    def body_at(self, t: float) -> int:
        """Decoded body bytes that had crossed this leg by time ``t``."""
        have = 0
        for when, _, size in self.pieces:
            if when > t:
                break
            have = size
        return have


class _Gunzip:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def __call__(self, data: bytes) -> bytes:
        try:
            return self._z.decompress(data)
        except zlib.error:
            return b""


def read_leg(conn: ConnectionTrace, index: int) -> Leg:
    """The first request and response of ``conn``, decoded."""
    leg = Leg(leg_name(conn), index, conn)
    annotated = annotate_connection(conn, index)
    if conn.protocol in ("h2", "h2c"):
        _read_h2(leg, annotated.items)
    else:
        _read_http1(leg, annotated.items)
    return leg


def _read_http1(leg: Leg, items: Sequence[Annotated]) -> None:
    gunzip: _Gunzip | None = None
    state = "head"  # "head", "body" (after the first final response's head), "done"
    for item in items:
        seg = item.segment
        if isinstance(seg, Nested):
            continue  # an SSE line inside the body: its bytes are the body's
        if item.from_client:
            if isinstance(seg, RequestLine) and not leg.request:
                leg.request = f"{seg.method} {seg.target} {seg.version}"
            if state == "head" and leg.request:
                leg.request_t = item.t
            continue
        if state == "done":
            break
        if state == "head":
            if isinstance(seg, StatusLine) and not 100 <= seg.status < 200:
                leg.status = seg.status
            elif isinstance(seg, HeaderField) and leg.status is not None:
                leg.headers.append((seg.name, seg.value))
            elif isinstance(seg, HeadEnd) and leg.status is not None:
                te = (leg.header("transfer-encoding") or "").lower()
                length = leg.header("content-length")
                leg.framing = "chunked" if "chunked" in te else "length" if length else "close"
                if (leg.header("content-encoding") or "").lower() == "gzip":
                    gunzip = _Gunzip()
                state = "body"
            continue
        if isinstance(seg, StatusLine):
            state = "done"  # the next response on this connection
            continue
        leg.wire_body += seg.nbytes
        if isinstance(seg, ChunkSize):
            leg.frames.append(0)
        elif isinstance(seg, ChunkData | BodyData):
            if isinstance(seg, ChunkData) and leg.frames:
                leg.frames[-1] += len(seg.data)
            _add_body(leg, seg.data, gunzip, item.t, item.record)
        elif isinstance(seg, LastChunk):
            leg.complete = True
    if leg.framing == "length":
        leg.complete = len(leg.body) >= int(leg.header("content-length") or 0) or bool(
            gunzip and leg.wire_body >= int(leg.header("content-length") or 0)
        )
    elif leg.framing == "close":
        leg.complete = _server_finished(leg.conn)


def _server_finished(conn: ConnectionTrace) -> bool:
    """A close-delimited body ended by the server's FIN: the first end of the connection
    was the server's, not a reset or the client leaving first."""
    fin = SHUTDOWN if conn.side == "server" else EOF
    first = next((r.kind for r in conn.records if r.kind in (EOF, SHUTDOWN, RESET, CLOSE)), None)
    return first == fin


def _add_body(leg: Leg, data: bytes, gunzip: _Gunzip | None, t: float, record: int) -> None:
    decoded = gunzip(data) if gunzip is not None else data
    leg.body += decoded
    if leg.pieces and leg.pieces[-1][1] == record:
        leg.pieces[-1] = (t, record, len(leg.body))
    else:
        leg.pieces.append((t, record, len(leg.body)))


def _read_h2(leg: Leg, items: Sequence[Annotated]) -> None:
    stream = 0
    gunzip: _Gunzip | None = None
    for item in items:
        seg, t, from_client = item.segment, item.t, item.from_client
        if isinstance(seg, HeadersFrame) and from_client and not stream:
            stream = seg.stream_id
            fields = dict(seg.block.headers) if seg.block is not None else {}
            method = fields.get(b":method", b"?").decode("latin-1")
            path = fields.get(b":path", b"?").decode("latin-1")
            leg.request = f"{method} {path} (h2 stream {stream})"
            leg.request_t = t
        elif isinstance(seg, DataFrame) and from_client and seg.stream_id == stream:
            leg.request_t = t
        elif isinstance(seg, RstStreamFrame) and seg.stream_id == stream and stream:
            if leg.reset_t is None:
                leg.reset_t = t
                leg.reset_by_client = from_client
        elif from_client or not stream:
            continue
        elif isinstance(seg, HeadersFrame) and seg.stream_id == stream:
            if seg.block is not None and leg.status is None:
                for name, value in seg.block.headers:
                    text = (name.decode("latin-1"), value.decode("latin-1"))
                    if text[0] == ":status":
                        leg.status = int(text[1])
                    else:
                        leg.headers.append(text)
                leg.framing = "h2"
                if (leg.header("content-encoding") or "").lower() == "gzip":
                    gunzip = _Gunzip()
            leg.complete = leg.complete or bool(seg.flags & _END_STREAM)
        elif isinstance(seg, DataFrame) and seg.stream_id == stream:
            leg.frames.append(len(seg.data))
            leg.wire_body += seg.nbytes
            _add_body(leg, seg.data, gunzip, t, item.record)
            leg.complete = leg.complete or bool(seg.flags & _END_STREAM)


def legs(trace: Trace) -> list[Leg]:
    """Every connection of a proxy trace, read as a leg, in trace order."""
    return [read_leg(conn, i) for i, conn in enumerate(trace.connections)]


def pairs(trace: Trace) -> list[tuple[Leg | None, Leg | None]]:
    """The client legs and upstream legs paired in the order they opened: the k-th
    client connection with the k-th upstream connection (the experiments send one
    request per connection, one after the other)."""
    all_legs = legs(trace)
    clients = [leg for leg in all_legs if leg.leg == CLIENT]
    upstreams = [leg for leg in all_legs if leg.leg == UPSTREAM]
    count = max(len(clients), len(upstreams))
    return [
        (
            clients[k] if k < len(clients) else None,
            upstreams[k] if k < len(upstreams) else None,
        )
        for k in range(count)
    ]


def units(content_type: str, body: bytes) -> list[Unit]:
    """The messages of ``body`` (see the module docstring for how each type is cut)."""
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind == "text/event-stream":
        out: list[Unit] = []
        start = 0
        for seg in SSEDecoder().feed(body):
            if isinstance(seg, Dispatch):
                if seg.event is not None:
                    data = seg.event.data
                    out.append(Unit(start, seg.end, _sse_label(data), final=data == "[DONE]"))
                start = seg.end
        return out
    if kind == "application/x-ndjson":
        out = []
        start = 0
        for line in body.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # a line cut short is no message yet
            label, final = _ndjson_label(line)
            out.append(Unit(start, start + len(line), label, final))
            start += len(line)
        return out
    return [
        Unit(m.start(), m.end(), m.group().decode("utf-8", "replace"), m.group() == b"\n[DONE]\n")
        for m in _TEXT_UNIT.finditer(body)
        if m.group() != b"\n"
    ]


def _sse_label(data: str) -> str:
    try:
        value = json.loads(data)
    except ValueError:
        return data
    if isinstance(value, dict):
        for key in ("token", "word"):
            if key in value:
                return str(value[key])
    return data


def _ndjson_label(line: bytes) -> tuple[str, bool]:
    try:
        value = json.loads(line)
    except ValueError:
        return line.decode("utf-8", "replace").strip(), False
    if isinstance(value, dict) and "token" in value:
        return str(value["token"]), False
    return line.decode("utf-8", "replace").strip(), True


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message: when the upstream handed its last byte to the proxy, when the
    client's read that completed it returned, and which body-carrying client read it was
    (1 for the first); None where that leg never carried it."""

    index: int
    unit: Unit
    upstream_t: float | None
    client_t: float | None
    client_read: int | None


def _completed(leg: Leg, end: int) -> tuple[float, int] | None:
    """(time, piece number from 1) of the record after which ``end`` body bytes were in."""
    sizes = [size for _, _, size in leg.pieces]
    k = bisect_left(sizes, end)
    if k == len(sizes):
        return None
    return leg.pieces[k][0], k + 1


def arrivals(client: Leg | None, upstream: Leg | None) -> list[Arrival]:
    """Each message of the exchange, on both legs (the message list is the longer leg's
    body's, so messages that never reached the client are there too)."""
    bodies = [leg for leg in (upstream, client) if leg is not None]
    if not bodies:
        return []
    source = max(bodies, key=lambda leg: len(leg.body))
    content_type = next((leg.content_type for leg in bodies if leg.content_type), "")
    out = []
    for i, unit in enumerate(units(content_type, source.body)):
        up = _completed(upstream, unit.end) if upstream is not None else None
        down = _completed(client, unit.end) if client is not None else None
        out.append(
            Arrival(
                i,
                unit,
                up[0] if up else None,
                down[0] if down else None,
                down[1] if down else None,
            )
        )
    return out


def body_reads(leg: Leg) -> int:
    """How many records (reads, for the client leg) carried body bytes."""
    return sum(1 for _, record, _ in leg.pieces if leg.conn.records[record].kind in (RECV, SEND))
