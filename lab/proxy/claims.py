"""What a run's verdict rows say about the claims commonly made about proxies and streams.

Each :class:`Claim` is a sentence people repeat, the verdict this run gives it
(``confirmed``, ``refuted``, or ``depends on ...``) and the evidence: numbers taken from the
rows (:mod:`lab.proxy.verdicts`), never typed in, so a rerun that measures something else
says something else. A claim whose configurations were not run is left out.

:data:`TIMEOUTS` says which of the proxies' timeouts run between two reads and which
bound a whole exchange, from the proxies' own documentation, by directive name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from lab.proxy.verdicts import Row

__all__ = ["STREAMING_CONFIG", "TIMEOUTS", "Claim", "claims"]


@dataclass(frozen=True, slots=True)
class Claim:
    text: str
    verdict: str  # "confirmed", "refuted" or "depends on ..."
    evidence: str


# What each timeout measures. nginx: the ngx_http_proxy_module and ngx_http_core_module
# documentation of each directive; HAProxy: its configuration manual, section 4.2, by
# keyword. Neither proxy has a timeout on a whole proxied response by default.
TIMEOUTS: Final = (
    ("nginx", "proxy_read_timeout", "between reads", "between two successive reads from the "
     "upstream, not for the whole response (default 60s)"),
    ("nginx", "proxy_send_timeout", "between writes", "between two successive writes of the "
     "request to the upstream"),
    ("nginx", "send_timeout", "between writes", "between two successive writes of the "
     "response to the client"),
    ("nginx", "proxy_connect_timeout", "one step", "establishing the upstream connection"),
    ("nginx", "keepalive_timeout", "idle", "an idle keep-alive client connection"),
    ("HAProxy", "timeout server", "inactivity", "the server side sending nothing (and the "
     "proxy expecting it to)"),
    ("HAProxy", "timeout client", "inactivity", "the client side sending or reading nothing"),
    ("HAProxy", "timeout tunnel", "inactivity", "both sides once the connection is a "
     "tunnel (WebSocket, CONNECT); replaces client and server timeouts there only"),
    ("HAProxy", "timeout http-request", "whole", "receiving the complete request head"),
    ("HAProxy", "timeout connect", "one step", "establishing the server connection"),
)  # fmt: skip

# The nginx settings that streamed every content type in the matrix: buffering off (or
# X-Accel-Buffering: no from the upstream, per response), an idle timeout longer than the
# stream's longest quiet gap or heartbeats inside it, nothing that rewrites headers.
STREAMING_CONFIG: Final = (
    "proxy_buffering off",
    "proxy_http_version 1.1",
    "proxy_read_timeout 1h",
)


class _Rows:
    def __init__(self, rows: Sequence[Row]) -> None:
        self._rows = {(r.configuration, r.probe): r for r in rows}

    def get(self, config: str, probe: str) -> Row | None:
        return self._rows.get((config, probe))

    def all(self, *keys: tuple[str, str]) -> list[Row] | None:
        found = [self._rows.get(k) for k in keys]
        return None if any(r is None for r in found) else [r for r in found if r is not None]


def _per_read(row: Row) -> str:
    return f"{row.max_tokens_per_read} of {row.tokens_received} tokens in one client read"


def _ttft(row: Row) -> str:
    up = "—" if row.upstream_ttft_ms is None else f"{row.upstream_ttft_ms:.1f}"
    got = "—" if row.ttft_ms is None else f"{row.ttft_ms:.1f}"
    return f"first token at the client after {got} ms (the upstream sent it after {up} ms)"


def _streams(row: Row) -> bool:
    return row.tokens_received > 1 and row.max_tokens_per_read == 1


def _held(row: Row) -> bool:
    return row.tokens_received > 1 and row.max_tokens_per_read == row.tokens_received


def _default_buffering(rows: _Rows) -> Claim | None:
    found = rows.all(("nginx-default", "text"), ("nginx-default", "ndjson"))
    if found is None:
        return None
    text, ndjson = found
    verdict = "confirmed" if _held(text) and _held(ndjson) else "refuted"
    return Claim(
        "nginx with proxy_pass alone holds a token stream until it has ended",
        verdict,
        f"text/plain: {_per_read(text)}, {_ttft(text)}; NDJSON: {_per_read(ndjson)}",
    )


def _accel(rows: _Rows) -> Claim | None:
    found = rows.all(("nginx-default", "sse"), ("nginx-ignore-accel", "sse"))
    if found is None:
        return None
    with_header, ignored = found
    verdict = "confirmed" if _streams(with_header) and not _streams(ignored) else "refuted"
    return Claim(
        "X-Accel-Buffering: no from the upstream makes nginx stream that response",
        verdict,
        f"SSE with the header: {_per_read(with_header)}; the same with "
        f"proxy_ignore_headers X-Accel-Buffering: {_per_read(ignored)}",
    )


def _buffering_off(rows: _Rows) -> Claim | None:
    found = [r for p in ("text", "ndjson", "sse") if (r := rows.get("nginx-buffering-off", p))]
    if not found:
        return None
    verdict = "confirmed" if all(_streams(r) for r in found) else "refuted"
    each = "; ".join(f"{r.probe}: {_per_read(r)}" for r in found)
    return Claim("proxy_buffering off makes nginx stream every content type", verdict, each)


def _http11(rows: _Rows) -> Claim | None:
    found = rows.all(("nginx-buffering-off", "text"), ("nginx-http11", "text"))
    if found is None:
        return None
    off_10, on_11 = found
    verdict = "refuted" if _streams(off_10) else "confirmed"
    return Claim(
        "nginx needs proxy_http_version 1.1 to stream",
        verdict,
        f"buffering off with nginx's default HTTP/1.0 upstream ({off_10.upstream_framing}): "
        f"{_per_read(off_10)}; buffering on with HTTP/1.1 upstream "
        f"({on_11.upstream_framing}): {_per_read(on_11)}",
    )


def _gzip(rows: _Rows) -> Claim | None:
    found = [r for p in ("text", "ndjson", "sse") if (r := rows.get("nginx-gzip", p))]
    if not found:
        return None
    verdict = "refuted" if all(_streams(r) for r in found) else "confirmed"
    each = "; ".join(
        f"{r.probe}: {_per_read(r)}, {r.client_bytes} B to the client for "
        f"{r.upstream_bytes} B from the upstream"
        for r in found
    )
    return Claim("gzip on stops nginx streaming (with proxy_buffering off)", verdict, each)


def _read_timeout(rows: _Rows) -> Claim | None:
    quiet = rows.get("nginx-read-timeout", "quiet")
    if quiet is None:
        return None
    verdict = "confirmed" if quiet.quiet_survived is False else "refuted"
    end = "saw the end of the body" if quiet.complete else "got no last chunk: a cut body"
    return Claim(
        "a stream quiet for longer than proxy_read_timeout is cut",
        verdict,
        f"{quiet.tokens_received} of the 2 events arrived; the client {end}",
    )


def _between_reads(rows: _Rows) -> Claim | None:
    beat = rows.get("nginx-read-timeout", "heartbeat")
    if beat is None:
        return None
    verdict = "refuted" if beat.quiet_survived else "confirmed"
    return Claim(
        "proxy_read_timeout bounds the whole response",
        verdict,
        f"with heartbeats inside the timeout, a response longer than the timeout "
        f"{'survived' if beat.quiet_survived else 'was cut'} "
        f"({beat.tokens_received} events, end seen: {beat.complete}): it runs between reads",
    )


def _resume(rows: _Rows) -> Claim | None:
    row = rows.get("nginx-read-timeout", "resume")
    if row is None or row.resumed is None:
        return None
    return Claim(
        "an EventSource resumes after the cut with Last-Event-ID and loses nothing",
        "confirmed" if row.resumed else "refuted",
        f"{row.client_connections} connections; {row.note}",
    )


def _abort_text(row: Row) -> str:
    if row.abort_reached_upstream:
        return f"{row.configuration} {row.client_protocol}: yes, {row.abort_ms} ms"
    return f"{row.configuration} {row.client_protocol}: no, {row.tokens_after_abort} more tokens"


def _settings(row: Row) -> str:
    return "; ".join(row.settings) or "defaults"


def _abort(rows: _Rows) -> Claim | None:
    configs = (
        "nginx-abort", "nginx-abort-ignore", "nginx-abort-unbuffered",
        "nginx-abort-unbuffered-ignore",
    )  # fmt: skip
    found = [r for c in configs for p in ("abort-h1", "abort-h2") if (r := rows.get(c, p))]
    if not found:
        return None
    missed = {_settings(r) for r in found if not r.abort_reached_upstream}
    reached = {_settings(r) for r in found if r.abort_reached_upstream}
    if not missed:
        verdict = "confirmed"
    elif not reached:
        verdict = "refuted"
    elif missed & reached:
        verdict = "depends on the settings and on the client's protocol"
    else:
        verdict = f"depends on the settings: not with {' | '.join(sorted(missed))}"
    return Claim(
        "when the client goes away, nginx stops the upstream's work",
        verdict,
        "; ".join(_abort_text(r) for r in found),
    )


def _ignore_abort(rows: _Rows) -> Claim | None:
    configs = ("nginx-abort-ignore", "nginx-abort-unbuffered-ignore")
    found = [r for c in configs for p in ("abort-h1", "abort-h2") if (r := rows.get(c, p))]
    if not found:
        return None
    kept = [not r.abort_reached_upstream for r in found]
    by_buffering = {
        off: {
            not r.abort_reached_upstream
            for r in found
            if ("proxy_buffering off" in r.settings) == off
        }
        for off in (True, False)
    }
    if all(kept):
        verdict = "confirmed"
    elif not any(kept):
        verdict = "refuted"
    elif by_buffering[False] == {True} and by_buffering[True] == {False}:
        verdict = "depends on proxy_buffering: kept running with it on, not with it off"
    else:
        verdict = "depends on proxy_buffering and the client's protocol"
    return Claim(
        "proxy_ignore_client_abort on keeps the upstream running after the client left",
        verdict,
        "; ".join(_abort_text(r) for r in found),
    )


def _h2_frames(rows: _Rows) -> Claim | None:
    row = rows.get("nginx-h2-streaming", "h2-text")
    if row is None:
        return None
    data = [n for n in row.client_frames if n]  # the empty END_STREAM frame aside
    chunks = [n for n in row.upstream_frames if n]
    if data == chunks:
        verdict = "confirmed"
    elif data == row.upstream_writes:
        verdict = (
            "depends on the upstream's timing: one DATA frame per read from the upstream, "
            "so chunks that arrive together share a frame"
        )
    else:
        verdict = "refuted"
    return Claim(
        "behind HTTP/2, each upstream chunk becomes one DATA frame",
        verdict,
        f"upstream chunks {chunks} B, as the upstream's writes {row.upstream_writes} B; "
        f"DATA frames to the client {row.client_frames} B",
    )


def _course_notes(rows: _Rows) -> Claim | None:
    found = [r for p in ("text", "ndjson", "sse") if (r := rows.get("nginx-course-notes", p))]
    if not found:
        return None
    doubled = sorted({h for r in found for h in r.duplicated_headers})
    if not all(_streams(r) for r in found):
        verdict = "refuted"
    elif doubled:
        verdict = f"depends on the location serving SSE alone: it sends {', '.join(doubled)} twice"
    else:
        verdict = "confirmed"
    each = "; ".join(
        f"{r.probe}: {_per_read(r)}, fields sent twice: {', '.join(r.duplicated_headers) or 'none'}"
        for r in found
    )
    return Claim(
        "the course-notes block (buffering off, add_header Content-Type text/event-stream, "
        "...) is what SSE needs behind nginx",
        verdict,
        each,
    )


def _haproxy(rows: _Rows) -> Claim | None:
    default = rows.get("haproxy-default", "text")
    if default is None:
        return None
    evidence = f"defaults: {_per_read(default)}, {_ttft(default)}"
    no_delay = rows.get("haproxy-no-delay", "text")
    if no_delay is not None:
        evidence += f"; option http-no-delay: {_per_read(no_delay)}, {_ttft(no_delay)}"
    h2 = rows.get("haproxy-h2", "h2-text")
    if h2 is not None:
        evidence += f"; h2c to HAProxy: {_per_read(h2)}"
    return Claim(
        "HAProxy in HTTP mode passes each token on as it comes",
        "confirmed" if _streams(default) else "refuted",
        evidence,
    )


def _tunnel(rows: _Rows) -> Claim | None:
    row = rows.get("haproxy-timeout-tunnel", "quiet")
    if row is None:
        return None
    beat = rows.get("haproxy-timeout-server", "heartbeat")
    evidence = (
        f"timeout server 1s + timeout tunnel 1h: the quiet stream "
        f"{'survived' if row.quiet_survived else 'was cut'} (end seen: {row.complete})"
    )
    if beat is not None:
        evidence += (
            f"; heartbeats with timeout server alone: "
            f"{'survived' if beat.quiet_survived else 'cut'}"
        )
    return Claim(
        "HAProxy's timeout tunnel keeps a quiet SSE response open",
        "confirmed" if row.quiet_survived else "refuted",
        evidence,
    )


_CLAIMS: Final[tuple[Callable[[_Rows], Claim | None], ...]] = (
    _default_buffering, _accel, _buffering_off, _http11, _gzip, _read_timeout,
    _between_reads, _resume, _abort, _ignore_abort, _h2_frames, _course_notes, _haproxy,
    _tunnel,
)  # fmt: skip


def claims(rows: Sequence[Row]) -> list[Claim]:
    """The claims the rows have evidence for, each with its verdict."""
    index = _Rows(rows)
    return [claim for check in _CLAIMS if (claim := check(index)) is not None]
