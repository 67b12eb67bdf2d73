"""The two-leg view: token by token, when the upstream sent it and when the client got it.

For each exchange of a proxy trace (a client connection and the upstream connection the
proxy opened for it, :func:`lab.proxy.legs.pairs`), :func:`render_legs` prints:

- the response head as each leg carried it (what the proxy added, dropped or doubled);
- how each leg framed the body: chunk sizes (HTTP/1.1), DATA frame sizes (HTTP/2), or
  none (a body that runs until the connection closes), and the size of every write the
  upstream made and every read the client made;
- one line per message (token, NDJSON line, SSE event): when the upstream handed it to
  the proxy, when the client's read that completed it returned, the difference (what
  the proxy held it for), and which client read it came in;
- how each leg ended: a last chunk or END_STREAM, a FIN, a reset.

Times are milliseconds after the client's request left (the record that completed it).
A hold under a millisecond shows as ``<1``: the relay and the client run in one process,
and which of two records made that close together is stamped first is the scheduler's
choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.capture.trace import CLOSE, EOF, RECV, RESET, SEND, SHUTDOWN, Trace
from lab.proxy.legs import Arrival, Leg, arrivals, pairs

__all__ = ["MAX_LISTED", "render_legs"]

# Sizes listed in one line before the rest is summed up: a token stream's dozen or two fit.
MAX_LISTED: Final = 24
# Message text shown per line (an SSE event's label is its token; a long line is cut).
_LABEL: Final = 24


def _listed(values: Sequence[int]) -> str:
    if not values:
        return "none"
    shown = ", ".join(str(v) for v in values[:MAX_LISTED])
    rest = values[MAX_LISTED:]
    return shown + (f", … (+{len(rest)} more, {sum(rest)} B)" if rest else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _framing_text(leg: Leg) -> str:
    if leg.framing == "chunked":
        return f"chunked: {_count(len(leg.frames), 'chunk')} of {_listed(leg.frames)} B"
    if leg.framing == "h2":
        return f"HTTP/2: {_count(len(leg.frames), 'DATA frame')} of {_listed(leg.frames)} B"
    if leg.framing == "close":
        return "no framing: the body runs until the connection closes"
    if leg.framing == "length":
        return f"Content-Length: {leg.header('content-length')}"
    return "no response"


def _end_words(leg: Leg, kind: str) -> str:
    """A connection event in words, from where this leg's tap sat."""
    client_tap = leg.leg == "client"
    return {
        EOF: "the proxy's FIN" if client_tap else "the proxy's FIN (it stopped sending)",
        SHUTDOWN: "the client's FIN" if client_tap else "the upstream's FIN",
        CLOSE: "the client closed" if client_tap else "the relay closed",
        RESET: "a reset",
    }.get(kind, kind)


def _ending(leg: Leg) -> str:
    if leg.complete:
        how = {"chunked": "last chunk", "h2": "END_STREAM", "close": "the server's FIN"}
        return f"complete ({how.get(leg.framing, 'whole body')})"
    end = leg.end()
    cut = (
        f"{_end_words(leg, end[1])} at {end[0] * 1000:.1f} ms on the trace's clock"
        if end
        else "none: still open"
    )
    return f"NOT complete: no end of the body; the connection's first end was {cut}"


def _who(leg: Leg) -> str:
    if leg.leg == "client":
        return f"client leg (connection {leg.index}, client ↔ proxy, tapped at the client)"
    return f"upstream leg (connection {leg.index}, proxy ↔ lab server, tapped at the relay)"


def _leg_lines(console: Console, leg: Leg) -> None:
    console.print(
        f"[bold]{_who(leg)}[/bold]: {escape(leg.request or 'no request')}", soft_wrap=True
    )
    counts = leg.header_counts()
    head = ", ".join(
        f"{name}: {value}" + (" [doubled]" if counts[name.lower()] > 1 else "")
        for name, value in leg.headers
    )
    console.print(f"  response: {leg.status or '—'}  {escape(head)}", soft_wrap=True)
    console.print(f"  framing: {_framing_text(leg)}", soft_wrap=True)
    kind = "read" if leg.leg == "client" else "write"
    pieces = leg.piece_sizes()
    total = sum(1 for r in leg.conn.records if r.kind in (RECV, SEND))
    console.print(
        f"  body in {_count(len(pieces), kind)} of {_listed(pieces)} B "
        f"({total} send/recv records on the connection); {_ending(leg)}",
        soft_wrap=True,
    )


def _ms(t: float | None, start: float) -> str:
    return "—" if t is None else f"{(t - start) * 1000:.1f}"


def _arrival_table(found: Sequence[Arrival], start: float) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name, justify in (
        ("#", "right"), ("message", "left"), ("upstream sent ms", "right"),
        ("client got ms", "right"), ("held ms", "right"), ("client read", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for a in found:
        held = "—"
        if a.client_t is not None and a.upstream_t is not None:
            ms = (a.client_t - a.upstream_t) * 1000
            held = "<1" if ms < 1 else f"{ms:.1f}"
        label = a.unit.text if len(a.unit.text) <= _LABEL else a.unit.text[: _LABEL - 1] + "…"
        table.add_row(
            str(a.index),
            escape(repr(label)) + (" (end)" if a.unit.final else ""),
            _ms(a.upstream_t, start),
            _ms(a.client_t, start),
            held,
            "—" if a.client_read is None else str(a.client_read),
        )
    return table


def render_legs(trace: Trace, console: Console) -> None:
    """The two-leg view of ``trace`` (see the module docstring)."""
    console.rule(f"[bold]{escape(trace.name)}")
    console.print(escape(trace.description), soft_wrap=True)
    for k, (client, upstream) in enumerate(pairs(trace)):
        if k:
            console.print()
        console.print(f"[bold]exchange {k + 1}[/bold]")
        for leg in (client, upstream):
            if leg is not None:
                _leg_lines(console, leg)
        found = arrivals(client, upstream)
        if not found:
            console.print("  no message crossed either leg")
            continue
        start = next(
            (leg.request_t for leg in (client, upstream) if leg and leg.request_t is not None),
            0.0,
        )
        console.print(_arrival_table(found, start))
