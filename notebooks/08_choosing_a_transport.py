# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Choosing a transport
#
# A reply that is produced a token at a time can reach a browser-era client in many ways.
# The lab offers one deterministic token stream (one prompt, `n` tokens, `interval_ms`
# apart on the server) over each of them:
#
# - **short polling**: `GET /poll` on a fixed schedule, each answer the tokens produced
#   since the client's cursor; **long polling**: `GET /longpoll`, held by the server until
#   the next token exists (both in `lab.apps.poll`);
# - **one streamed response** over HTTP/1.1: bare text in chunks, NDJSON, Server-Sent
#   Events by `GET` (what `EventSource` can send) or by `POST`;
# - **SSE on an HTTP/2 stream** (h2c);
# - **WebSocket**, over HTTP/1.1 (RFC 6455: an `Upgrade` answered `101`) and over HTTP/2
#   (RFC 8441: an extended `CONNECT` on a stream).
#
# This notebook reads the same reply over every one of them with the clients `lab compare`
# uses (`lab.bench.compare.run_streams`: a lab server in this process on 127.0.0.1, one
# clock for both ends), then works out from the traces what each costs per token and per
# idle client, and where a browser's limit of six HTTP/1.1 connections per host decides
# the matter. Every number below comes from this run.

# %%
import ast
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

import lab
from lab.apps.tokens import tokens_for
from lab.bench.compare import TRANSPORTS, CompareOptions, run_streams
from lab.bench.compare_idle import measure_idle
from lab.bench.compare_report import table
from lab.capture.annotate import annotate
from lab.capture.trace import Trace
from lab.notebook import run, show
from lab.wire.h2frames import ContinuationFrame, HeadersFrame, SettingId, SettingsFrame
from lab.wire.http1 import EmptyLine, HeadEnd, HeaderField, RequestLine, StatusLine

for transport in TRANSPORTS:
    print(f"{transport.name:11} {transport.what}")

# %% [markdown]
# ## 1. The same reply, every way
#
# The knobs: the prompt seeds the tokens, `N` is how many, `INTERVAL_MS` the server's pause
# between two; short polls go out every `POLL_MS`. `run_streams` reads the stream over each
# transport in turn, each on connections of its own, and returns for each a row of
# measurements, the trace of its connections and the tokens as the client decoded them.

# %%
PROMPT = "which transport?"
N = 12
INTERVAL_MS = 25
POLL_MS = 60

options = CompareOptions(prompt=PROMPT, n=N, interval_ms=INTERVAL_MS, poll_interval_ms=POLL_MS)
results = run(run_streams, options)
rows = [r.row for r in results]
traces = {r.row.transport: r.trace for r in results}

expected = tokens_for(PROMPT, N)
same = all(
    [x.token for x in sorted(r.received, key=lambda x: x.index)] == expected for r in results
)
print(f"transports run: {len(results)}; statuses: {sorted({row.status for row in rows})}")
print(f"every transport delivered the reply's tokens, in order: {same}")

# %% [markdown]
# ## 2. The comparison table and the plot
#
# The table is `lab compare`'s (`lab.bench.compare_report.table`). Per transport:
# requests made and connections opened, bytes each way, `wire_per_token_byte` (bytes on
# the wire, both directions, per byte of token text), the time to the first token since
# the client began, and the delay of each token from its production on the server to its
# decoding on the client, median and 99th percentile. For the polling transports a token
# is *produced* when the poll schedule makes it available; for the others, when the
# endpoint handed it to the server.

# %%
print(table(rows, idle=False))

# %%
fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
for row in rows:
    xs = [0.0, *row.arrivals]
    ax.step(xs, range(len(xs)), where="post", label=row.transport, marker=".", markersize=4)
ax.set_xlabel("ms since the client began")
ax.set_ylabel("tokens decoded")
ax.yaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_title(f"{N} tokens {INTERVAL_MS} ms apart; short polls every {POLL_MS} ms")
ax.grid(True, alpha=0.3)
ax.legend(loc="lower right", fontsize="small")
plt.show()

fastest = min(rows, key=lambda r: r.delay_p50_ms or float("inf"))
slowest = max(rows, key=lambda r: r.delay_p50_ms or 0.0)
print(f"lowest median delay:  {fastest.transport} ({fastest.delay_p50_ms} ms)")
print(f"highest median delay: {slowest.transport} ({slowest.delay_p50_ms} ms)")

# %% [markdown]
# The streaming transports follow the server's schedule: each token is decoded as soon as
# the read that carries it returns (the delay columns). Short polling moves in steps: a
# token waits on the server until the next poll, so its delay is spread over up to one
# poll interval. Long polling answers as soon as a token exists, and then the client needs
# a whole round trip (a new request) before it can get the next one.
#
# ## 3. What a token costs on the wire
#
# Where do the bytes go? Each trace is annotated (`lab.capture.annotate`) and its bytes
# split three ways: **heads** (HTTP/1.1 request and status lines and header fields, HTTP/2
# HEADERS and CONTINUATION frames), **token text** (the UTF-8 of the tokens themselves) and
# **the rest**: the framing around the text (chunk sizes, SSE field names, JSON, WebSocket
# and HTTP/2 frame headers, masking keys) and the connection's own messages (HTTP/2
# SETTINGS, WINDOW_UPDATE, GOAWAY; WebSocket's closing handshake).

# %%
HEAD_SEGMENTS = (
    RequestLine,
    StatusLine,
    HeaderField,
    HeadEnd,
    EmptyLine,
    HeadersFrame,
    ContinuationFrame,
)


def head_bytes(trace: Trace) -> int:
    """Bytes of HTTP heads in both directions of every connection of ``trace``."""
    total = 0
    for ac in annotate(trace):
        for item in ac.items:
            seg = item.segment
            if isinstance(seg, HEAD_SEGMENTS):
                total += seg.nbytes
    return total


text_bytes = sum(len(t.encode()) for t in expected)
split = {}
print(f"token text: {text_bytes} bytes in {N} tokens\n")
print(f"{'transport':11} {'requests/token':>14} {'heads B/token':>13} {'rest B/token':>12}")
for row in rows:
    heads = head_bytes(traces[row.transport])
    rest = row.bytes_up + row.bytes_down - heads - text_bytes
    split[row.transport] = (heads / N, rest / N)
    print(f"{row.transport:11} {row.requests / N:14.2f} {heads / N:13.1f} {rest / N:12.1f}")

# %%
fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
names = [row.transport for row in rows]
heads_per = [split[n][0] for n in names]
rest_per = [split[n][1] for n in names]
text_per = [text_bytes / N] * len(names)
ax.bar(names, text_per, label="token text")
ax.bar(names, heads_per, bottom=text_per, label="heads")
ax.bar(
    names,
    rest_per,
    bottom=[a + b for a, b in zip(text_per, heads_per, strict=True)],
    label="the rest",
)
ax.set_ylabel("bytes on the wire per token")
ax.tick_params(axis="x", rotation=30)
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# Polling pays for a whole request and response head per answer, and a short poll pays it
# whether or not there is news; one streamed response pays for its heads once and then
# only for its framing: a chunk-size line and CRLFs per chunk, an SSE event's `data:`
# field and blank line (here around a JSON object), a WebSocket frame's header (2 octets
# for a short frame from the server; a client's frames add a 4-octet masking key, RFC 6455
# §5.2). Over HTTP/2 each DATA frame adds a 9-octet header (RFC 9113 §4.1), and the
# connection has a preface and SETTINGS of its own.
#
# What the WebSocket over HTTP/1.1 looked like, as the lab's sequence view shows it: the
# handshake, one message per token, `[DONE]`, then the closing handshake.

# %%
show(traces["ws-h1"], "sequence")

# %% [markdown]
# ## 4. What an idle client costs the server
#
# Between two tokens, a client of each transport holds something on the server: a
# keep-alive connection between two polls, a held long poll, an open response, an h2c
# stream, a WebSocket. `lab.bench.compare_idle.measure_idle` starts a `lab serve` process
# of its own per transport, opens `N_IDLE` clients that have each received the first token
# and wait for the second, and reads the server's resident memory (VmRSS) before and
# after: the difference over `N_IDLE` is the cost of one. A small `N_IDLE` keeps this
# quick; memory is counted in pages, so the figures are coarse (`lab compare --idle 1000`
# measures with more clients).

# %%
N_IDLE = 25
idle = {row.transport: measure_idle(row.transport, N_IDLE, lambda _: None) for row in rows}
CLIENTS = 10_000
print(f"{'transport':11} {'KiB per idle client':>19} {f'MiB for {CLIENTS:,} clients':>22}")
for name, kib in idle.items():
    print(f"{name:11} {kib:19.1f} {kib * CLIENTS / 1024:22.1f}")
cheapest = min(idle, key=idle.__getitem__)
dearest = max(idle, key=idle.__getitem__)
print(f"\nleast per idle client: {cheapest}; most: {dearest}")

# %% [markdown]
# Here every idle client has a TCP connection of its own, even over HTTP/2. A browser
# puts all its streams to one host on one HTTP/2 connection, so there a stream costs the
# server only its share of a connection.
#
# ## 5. Six connections per host
#
# Chromium opens at most six HTTP/1.1 connections to one host (its socket pool's
# per-group cap), and a request that finds them all busy waits for one to free.
# `tests/interop/test_browser_connections.py` measures it: a page opens ten EventSources
# over plain `http://`, six open and four stay in `CONNECTING` until a response ends;
# over HTTPS, where the browser negotiates HTTP/2, all ten share one connection. Chromium
# keeps one pool per browser profile, so the tabs of one browser share the six.
#
# What that means depends on how long each transport keeps a connection busy. From each
# HTTP/1.1 trace: the share of the stream's time during which the client had a request
# in flight (from the read that completed its head being sent to the last byte of its
# answer).

# %%
MEASURED_IN = (
    Path(lab.__file__).resolve().parent.parent / "tests/interop/test_browser_connections.py"
)
PER_HOST = next(
    ast.literal_eval(node.value)
    for node in ast.parse(MEASURED_IN.read_text(encoding="utf-8")).body
    if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "HTTP1_PER_HOST"
)
print(f"Chromium's HTTP/1.1 connections per host, as {MEASURED_IN.name} asserts: {PER_HOST}")


def busy_share(trace: Trace) -> float:
    """Of the time from the first request to the last byte, the share with a request in
    flight: each request from its request line to the last server byte before the next."""
    busy = 0.0
    first = last = None
    for ac in annotate(trace):
        starts = [a.t for a in ac.items if isinstance(a.segment, RequestLine)]
        ends = [a.t for a in ac.items if not a.from_client]
        for k, start in enumerate(starts):
            stop = starts[k + 1] if k + 1 < len(starts) else float("inf")
            answered = max((t for t in ends if start <= t < stop), default=start)
            busy += answered - start
            first = start if first is None else min(first, start)
            last = answered if last is None else max(last, answered)
    return busy / (last - first) if last and first is not None and last > first else 0.0


# HTTP/1.1 requests only: the WebSocket over HTTP/1.1 is left out (see below).
h1_streams = [
    row.transport
    for row in rows
    if traces[row.transport].connections[0].protocol.startswith("http/1")
    and not row.transport.startswith("ws-")
]
shares = {name: busy_share(traces[name]) for name in h1_streams}
for name, share in shares.items():
    holds = "a connection the whole time" if share > 0.9 else f"{share:.0%} of the time"
    print(f"{name:11} busy {share:6.1%}: {holds}")

# %% [markdown]
# A transport that keeps its request in flight for the whole stream (long polling, a
# streamed response, SSE) takes one of the six for as long as the stream lasts; short
# polling only while a poll is out. Over HTTP/2 every stream to the host shares one
# connection, up to the number of concurrent streams the server allows, which its SETTINGS
# frame says (RFC 9113 §6.5.2); the `sse-h2` trace holds the lab server's.

# %%
server_settings = next(
    item.segment
    for ac in annotate(traces["sse-h2"])
    for item in ac.items
    if not item.from_client and isinstance(item.segment, SettingsFrame) and not item.segment.ack
)
MAX_STREAMS = {s.id: s.value for s in server_settings.settings}[SettingId.MAX_CONCURRENT_STREAMS]
print(f"the lab server's SETTINGS_MAX_CONCURRENT_STREAMS: {MAX_STREAMS}\n")

TABS = 10  # tabs of one browser, each following one stream from the same host
print(f"{TABS} tabs, one stream each, to one host:")
for name, share in shares.items():
    # Connections busy at a time: one per tab that holds its request; a share of one for
    # a tab that polls, on average (polls that bunch up need more at that moment).
    needed = TABS * share
    if share > 0.9:  # the request is out the whole stream: a connection per tab
        served_tabs = min(TABS, PER_HOST)
        print(f"  {name:11} HTTP/1.1: {served_tabs} tabs stream, {TABS - served_tabs} wait")
    else:
        fits = int(PER_HOST / share) if share else TABS
        print(
            f"  {name:11} HTTP/1.1: ~{needed:.1f} of {PER_HOST} connections busy on average;"
            f" at this poll rate about {fits} tabs fit"
        )
over_h2 = max(0, TABS - MAX_STREAMS)
print(f"  {'sse-h2':11} HTTP/2: one connection, {TABS} streams; {over_h2} wait")
print(f"tabs that get a stream over HTTP/1.1 with SSE or long polling: {min(TABS, PER_HOST)}")

# %% [markdown]
# The seventh tab's EventSource, or its long poll, does not fail: it waits, in
# `CONNECTING`, until another tab's response ends, which for a token stream may be long,
# and for an idle SSE channel never. Short polling fits more tabs into six connections,
# at the price of section 3's bytes and section 2's delay; its share here is measured on
# loopback, where a poll is answered at once, and grows with the round-trip time of a
# real network. Over HTTP/2 the cap is gone
# for SSE (one connection, many streams), which is why an SSE endpoint should be served
# over HTTPS with HTTP/2. The WebSocket rows are left out of this count: how a browser
# counts WebSocket connections against its limits is not measured in the lab.
#
# ## 6. Summary
#
# The figures above in one place, each the best of its column in this run.

# %%
served = [row for row in rows if row.status == "ok"]
columns = {
    "fewest bytes per token": {r.transport: r.wire_per_token_byte for r in served},
    "lowest median delay, ms": {r.transport: r.delay_p50_ms for r in served},
    "lowest p99 delay, ms": {r.transport: r.delay_p99_ms for r in served},
    "fewest requests": {r.transport: r.requests for r in served},
    "least KiB per idle client": {n: round(k, 1) for n, k in idle.items()},
}
for what, values in columns.items():
    low = min(v for v in values.values() if v is not None)
    leaders = ", ".join(n for n, v in values.items() if v == low)
    print(f"{what:26} {low:>8}  {leaders}")
print(f"transports that delivered every token: {len(served)} of {len(rows)}")

# %% [markdown]
# How to choose, from what this notebook measured:
#
# - **one reply to one request** (a chat answer): a streamed response. SSE if a browser
#   reads it (`fetch` with a body, or `EventSource` for `GET`), NDJSON or bare chunks for
#   other clients; over HTTP/2 when many may be open at once to one host;
# - **both directions at once** (a client that stops, steers or pings a stream): a
#   WebSocket; over HTTP/1.1 it costs a connection per socket, over HTTP/2 (RFC 8441) a
#   stream;
# - **a client or a proxy that cannot stream**: long polling delivers tokens as soon as
#   they exist, one request each; short polling is the last resort, paying for heads
#   whether or not there is news and delaying every token by up to a poll interval.
