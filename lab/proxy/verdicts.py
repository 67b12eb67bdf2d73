"""One verdict row per probe, measured from its trace; the table and the JSON of them.

Every number in a :class:`Row` is computed from the probe's two-leg trace
(:mod:`lab.proxy.legs`), never from what a client library reported:

- **TTFT**: from the record that completed the client's request to the client read that
  completed the first token; **upstream TTFT** is the same start to when the upstream
  handed that token to the proxy, so their difference is what the proxy added;
- **+proxy** (table only, ms): TTFT minus upstream TTFT, the time the proxy held the
  first token; under a millisecond it shows as ``<1``, since the relay and the client run
  in one process and which of two records made that close together is stamped first is
  the scheduler's choice;
- **max/read**: the most tokens (end markers not counted) that one client read
  completed: 1 when every token came on its own, the whole reply when the proxy held it;
- **complete**: the client saw the response end (last chunk, END_STREAM); a cut
  connection has none;
- **quiet survived** (quiet and resume probes): the first response completed with all
  its events although the stream was quiet for longer than the idle timeout;
- **resumed** (resume probe): the EventSource got every event exactly once, in order,
  over more than one connection;
- **abort reached upstream** (abort probes): the proxy ended the upstream connection (its
  FIN or a reset, at the relay) before the upstream's response was complete; **abort
  ms** is how long after the client left that happened;
- **bytes** (client B, up B): every byte each leg carried, both directions, all its
  connections.

In the table, **abort→up** is ``yes`` and how many ms after the client left, or ``NO`` and
how many tokens the upstream still sent; **end** is whether the client saw the response
end; **quiet** whether the quiet stream survived (and, for the resume probe, whether the
EventSource resumed).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Final

from rich.box import SIMPLE_HEAD
from rich.table import Table

from lab.capture.trace import CLOSE, Trace
from lab.proxy.legs import CLIENT, UPSTREAM, Arrival, Leg, arrivals, body_reads, legs, pairs
from lab.proxy.probes import ProbeOutcome

__all__ = ["Row", "measure", "rows_json", "settings_table", "table"]

_NONE: Final = "—"


@dataclass(slots=True)
class Row:
    experiment: str
    configuration: str
    proxy: str  # "nginx" or "haproxy"
    version: str  # "nginx/1.22.1", "HAProxy 2.6.12"
    settings: list[str]
    client_protocol: str  # "http/1.1" or "h2c", client to proxy
    probe: str
    kind: str
    request: str
    content_type: str
    trace: str  # the trace's file name
    status: int | None = None
    tokens_sent: int = 0  # tokens the upstream handed to the proxy
    tokens_received: int = 0  # tokens that reached the client
    ttft_ms: float | None = None
    upstream_ttft_ms: float | None = None
    max_tokens_per_read: int = 0
    client_reads: int = 0  # client reads that carried body bytes
    complete: bool = False
    upstream_complete: bool = False
    quiet_survived: bool | None = None
    resumed: bool | None = None
    abort_reached_upstream: bool | None = None
    abort_ms: float | None = None
    tokens_after_abort: int | None = None
    client_bytes: int = 0
    upstream_bytes: int = 0
    client_framing: str = ""
    upstream_framing: str = ""
    client_frames: list[int] = field(default_factory=list)
    upstream_frames: list[int] = field(default_factory=list)
    upstream_writes: list[int] = field(default_factory=list)  # body bytes per relayed write
    duplicated_headers: list[str] = field(default_factory=list)
    client_connections: int = 0
    upstream_connections: int = 0
    note: str = ""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _framing(leg: Leg | None) -> str:
    if leg is None:
        return ""
    version = leg.request.rsplit(" ", 1)[-1] if leg.framing != "h2" else "h2"
    return f"{version} {leg.framing}" if leg.framing != "h2" else "h2 DATA"


def _stream_numbers(row: Row, client: Leg | None, upstream: Leg | None) -> list[Arrival]:
    found = arrivals(client, upstream)
    tokens = [a for a in found if not a.unit.final]
    row.tokens_sent = sum(1 for a in tokens if a.upstream_t is not None)
    row.tokens_received = sum(1 for a in tokens if a.client_t is not None)
    start = client.request_t if client is not None else None
    first = tokens[0] if tokens else None
    if start is not None and first is not None:
        if first.client_t is not None:
            row.ttft_ms = _ms(first.client_t - start)
        if first.upstream_t is not None:
            row.upstream_ttft_ms = _ms(first.upstream_t - start)
    per_read = Counter(a.client_read for a in tokens if a.client_read is not None)
    row.max_tokens_per_read = max(per_read.values(), default=0)
    if client is not None:
        row.status = client.status
        row.complete = client.complete
        row.client_reads = body_reads(client)
        row.client_frames = list(client.frames)
        row.duplicated_headers = sorted(n for n, c in client.header_counts().items() if c > 1)
        row.content_type = client.content_type or row.content_type
    if upstream is not None:
        row.upstream_complete = upstream.complete
        row.upstream_frames = list(upstream.frames)
        row.upstream_writes = upstream.piece_sizes()
        row.content_type = row.content_type or upstream.content_type
    row.client_framing = _framing(client)
    row.upstream_framing = _framing(upstream)
    return found


def _abort(row: Row, client: Leg | None, upstream: Leg | None, found: list[Arrival]) -> None:
    if client is None:
        return
    if client.framing == "h2" or client.conn.protocol in ("h2", "h2c"):
        left = client.reset_t if client.reset_by_client else None
    else:
        left = next((r.t for r in client.conn.records if r.kind == CLOSE), None)
    if left is None or upstream is None:
        return
    row.tokens_after_abort = sum(
        1 for a in found if not a.unit.final and a.upstream_t is not None and a.upstream_t > left
    )
    # The proxy's FIN or reset on the upstream leg, whenever it came: the relay can record
    # it a few microseconds before the client's tap records the send that caused it (a
    # send's record is taken when send_all returns, after trio's checkpoint).
    ended = upstream.peer_end()
    finished = upstream.complete
    row.abort_reached_upstream = ended is not None and not finished
    if row.abort_reached_upstream and ended is not None:
        row.abort_ms = _ms(max(0.0, ended[0] - left))
        row.note = f"upstream connection ended by the proxy ({ended[1]})"
    elif finished:
        row.note = (
            f"the upstream ran to its end: {row.tokens_after_abort} tokens after the client left"
        )
    else:
        row.note = "the upstream connection stayed open"


def measure(row: Row, trace: Trace, outcome: ProbeOutcome) -> Row:
    """Fill ``row``'s measured fields from ``trace`` (and the client's ``outcome``)."""
    all_legs = legs(trace)
    row.client_bytes = sum(leg.bytes_carried for leg in all_legs if leg.leg == CLIENT)
    row.upstream_bytes = sum(leg.bytes_carried for leg in all_legs if leg.leg == UPSTREAM)
    row.client_connections = sum(1 for leg in all_legs if leg.leg == CLIENT)
    row.upstream_connections = sum(1 for leg in all_legs if leg.leg == UPSTREAM)
    exchanges = pairs(trace)
    client, upstream = exchanges[0] if exchanges else (None, None)
    found = _stream_numbers(row, client, upstream)
    if row.kind in ("quiet", "resume"):
        events = [a for a in found if not a.unit.final]
        row.quiet_survived = bool(
            client is not None
            and client.complete
            and events
            and all(a.client_t is not None for a in events)
        )
    if row.kind == "resume":
        expected = [str(i) for i in range(1, len(outcome.events) + 1)]
        row.resumed = (
            row.client_connections > 1 and bool(outcome.events) and outcome.events == expected
        )
        row.tokens_received = len(outcome.events)
        row.tokens_sent = sum(
            sum(1 for a in arrivals(c, u) if not a.unit.final and a.upstream_t is not None)
            for c, u in exchanges
        )
        row.note = f"events {', '.join(outcome.events) or 'none'}; {outcome.stopped}"
    if row.kind == "abort":
        _abort(row, client, upstream, found)
    if outcome.error and not row.note:
        row.note = f"client: {outcome.error}"
    if outcome.timed_out:
        row.note = (row.note + "; " if row.note else "") + "the probe ran out of time"
    return row


def _yes(value: bool | None) -> str:
    return _NONE if value is None else "yes" if value else "NO"


def _num(value: float | None) -> str:
    return _NONE if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def table(rows: Sequence[Row]) -> Table:
    """The verdict table: one row per probe, grouped by experiment (the settings of each
    configuration are in :func:`settings_table`; the client's protocol is in the probe's
    name: ``h2`` ones speak h2c to the proxy, the others HTTP/1.1)."""
    out = Table(title="what the proxy did to the stream (both legs measured)", box=SIMPLE_HEAD)
    for name, justify in (
        ("configuration", "left"), ("probe", "left"), ("TTFT ms", "right"),
        ("+proxy", "right"), ("max/read", "right"), ("tokens", "right"), ("end", "left"),
        ("quiet", "left"), ("abort→up", "left"), ("client B", "right"), ("up B", "right"),
    ):  # fmt: skip
        out.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    previous = ""
    for row in rows:
        if previous and row.experiment != previous:
            out.add_section()
        previous = row.experiment
        added = (
            None
            if row.ttft_ms is None or row.upstream_ttft_ms is None
            else row.ttft_ms - row.upstream_ttft_ms
        )
        if row.abort_reached_upstream is None:
            abort = _NONE
        elif row.abort_reached_upstream:
            abort = f"yes {_num(row.abort_ms)} ms"
        else:
            abort = f"NO, +{row.tokens_after_abort}"
        quiet = _yes(row.quiet_survived)
        if row.resumed is not None:
            quiet += ", resumed" if row.resumed else ", not resumed"
        out.add_row(
            row.configuration,
            row.probe,
            _num(row.ttft_ms),
            _NONE if added is None else "<1" if added < 1 else _num(added),
            str(row.max_tokens_per_read) if row.tokens_received else _NONE,
            f"{row.tokens_received}/{row.tokens_sent}",
            _yes(row.complete),
            quiet,
            abort,
            str(row.client_bytes),
            str(row.upstream_bytes),
        )
    return out


def settings_table(rows: Sequence[Row]) -> Table:
    """Each configuration of ``rows`` once: its proxy and its settings, as written."""
    out = Table(title="the configurations", show_header=True)
    out.add_column("configuration")
    out.add_column("proxy")
    out.add_column("settings (nginx: in location /; HAProxy: in defaults)")
    seen: set[str] = set()
    for row in rows:
        if row.configuration in seen:
            continue
        seen.add(row.configuration)
        out.add_row(row.configuration, row.version, "; ".join(row.settings) or "(defaults)")
    return out


def rows_json(rows: Sequence[Row]) -> str:
    """The rows as a JSON array, one object per probe."""
    return json.dumps([asdict(row) for row in rows], indent=2)
