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
# # 09 · What a proxy does to your stream
#
# Between a streaming server and its user there is almost always a reverse proxy: nginx
# or HAProxy in front of the app, a load balancer, an ingress. Advice about them travels
# as claims ("nginx buffers SSE", "set `proxy_http_version 1.1`", "add `timeout tunnel`")
# and as copied configuration blocks. This notebook tests each claim against the real
# thing: Debian's nginx and HAProxy, started with a configuration written for each
# experiment, in front of the lab's server.
#
# Every request is recorded on **both legs, on one clock**:
#
# - the **client leg** (client ↔ proxy) by the lab's client, which taps its own socket;
# - the **upstream leg** (proxy ↔ lab server) by a recording relay (`lab.capture.relay`)
#   put between the proxy and the lab server, sharing the client's recorder.
#
# So for every token we know when the upstream handed it to the proxy and when the
# client's read that completed it returned, and what framed it on each side. Each claim
# below gets a verdict (**confirmed**, **refuted**, or **depends on ...**) computed from
# the traces of this run; nothing is typed in. `lab proxy --matrix` runs the same
# experiments from the command line.

# %%
import io

import matplotlib.pyplot as plt
from rich.console import Console

from lab.notebook import run
from lab.proxy.claims import STREAMING_CONFIG, TIMEOUTS, claims
from lab.proxy.experiments import (
    ABORT_AFTER,
    ABORT_TOKENS,
    HEARTBEAT_MS,
    IDLE_TIMEOUT,
    QUIET_GAP_MS,
    STREAMS,
    TOKEN_INTERVAL_MS,
    TOKENS,
    Configuration,
    Experiment,
    configurations,
)
from lab.proxy.harness import MissingProxy, proxy_version
from lab.proxy.legs import arrivals, pairs
from lab.proxy.runner import run_configurations
from lab.proxy.view import render_legs

try:
    versions = {kind: proxy_version(kind) for kind in ("nginx", "haproxy")}
except MissingProxy as exc:
    raise RuntimeError(f"this notebook runs real proxies: {exc}") from None
print("proxies:", ", ".join(versions.values()))
print(f"token streams: {TOKENS} tokens, one every {TOKEN_INTERVAL_MS} ms")

runs = {}  # (configuration, probe) -> the run: its trace, its verdict row, the config file


def experiment(name):
    """Run one experiment's configurations (a proxy per probe); keep and return the runs."""
    done = run(run_configurations, configurations((name,)))
    for r in done:
        runs[(r.row.configuration, r.row.probe)] = r
    return done


def legs_view(trace, width=130):
    """The two-leg view (lab.proxy.view) as plain text in the cell's output."""
    console = Console(
        file=io.StringIO(), width=width, highlight=False, force_jupyter=False,
        force_terminal=False, no_color=True,
    )  # fmt: skip
    render_legs(trace, console)
    print(console.file.getvalue())


def verdicts(*texts):
    """The claims of this run whose text starts with one of ``texts``, with the evidence."""
    for claim in claims([r.row for r in runs.values()]):
        if claim.text.startswith(texts):
            print(f"claim: {claim.text}\n  -> verdict: {claim.verdict}")
            print(f"  evidence: {claim.evidence}\n")


# %% [markdown]
# ## 1. Buffering: the same reply as text, NDJSON and SSE
#
# `POST /chat` answers with the same tokens in three framings. The lab's SSE responses
# carry `X-Accel-Buffering: no` (a header nginx reads from its upstream); the text and
# NDJSON ones do not, and the lab has no switch for it, so the comparison is by content
# type, plus one configuration that tells nginx to ignore the header
# (`proxy_ignore_headers X-Accel-Buffering`). The configurations:

# %%
buffering = experiment("buffering")
for r in buffering:
    if r.probe.label == "text":
        print(f"{r.row.configuration:20} {'; '.join(r.row.settings) or '(proxy_pass alone)'}")
print()
print("the nginx.conf of nginx-default, as written for the run:")
print(runs[("nginx-default", "text")].config_text)

# %% [markdown]
# First, nginx with `proxy_pass` alone and the text reply. Each line is one token: when
# the upstream sent it, when the client got it, how long nginx held it, and in which of
# the client's reads it came.

# %%
legs_view(runs[("nginx-default", "text")].trace)

# %% [markdown]
# Then the SSE reply through the same nginx: the upstream's `X-Accel-Buffering: no`
# switches buffering off for that response (and nginx keeps the header to itself: the
# client leg does not carry it).

# %%
legs_view(runs[("nginx-default", "sse")].trace)


# %%
def plot_legs(ax, key, title):
    found = arrivals(*pairs(runs[key].trace)[0])
    tokens = [a for a in found if not a.unit.final]
    start = pairs(runs[key].trace)[0][0].request_t
    up = [(a.upstream_t - start) * 1000 for a in tokens]
    down = [(a.client_t - start) * 1000 for a in tokens]
    ax.step(up, range(1, len(up) + 1), where="post", label="upstream sent")
    ax.step(down, range(1, len(down) + 1), where="post", label="client got")
    ax.set(title=title, xlabel="ms after the request", ylabel="tokens")
    ax.legend(loc="lower right")


fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained", sharey=True)
plot_legs(axes[0], ("nginx-default", "text"), "nginx defaults, text/plain")
plot_legs(axes[1], ("nginx-default", "sse"), "nginx defaults, SSE")
plot_legs(axes[2], ("nginx-buffering-off", "text"), "proxy_buffering off, text/plain")
plt.show()

# %% [markdown]
# What the buffering experiment says, claim by claim. "One client read" counts the
# tokens a single `recv` on the client's socket completed.

# %%
verdicts(
    "nginx with proxy_pass alone",
    "X-Accel-Buffering",
    "proxy_buffering off",
    "nginx needs proxy_http_version",
    "gzip on",
)

# %% [markdown]
# The HTTP/1.0 default is visible on the upstream leg: nginx asks `POST /chat HTTP/1.0`
# with `Connection: close`, the lab answers with a body that runs until it closes (no
# chunks), and nginx re-frames it as chunked for the client. With
# `proxy_http_version 1.1` the upstream leg is chunked too. gzip compresses the client
# leg only, with a flush per token: the bytes each leg carried show what that costs.

# %%
for key in (("nginx-buffering-off", "text"), ("nginx-http11", "text"), ("nginx-gzip", "text")):
    row = runs[key].row
    print(
        f"{key[0]:20} upstream: {row.upstream_framing:16} client: {row.client_framing:16}"
        f" bytes upstream {row.upstream_bytes:4}, to the client {row.client_bytes:4}"
    )

# %% [markdown]
# ## 2. The idle timeout: a quiet stream, heartbeats, and resuming
#
# `proxy_read_timeout` is set to the experiment's `IDLE_TIMEOUT`, and the upstream sends
# two events `QUIET_GAP_MS` apart, once without heartbeats and once with a `: heartbeat`
# comment every `HEARTBEAT_MS`. Then an EventSource-grade client
# (`lab.client.sse.event_source`) reads a stream whose every event is followed by a
# gap the timeout cuts, and resumes with `Last-Event-ID`.

# %%
print(f"proxy_read_timeout {IDLE_TIMEOUT}; gap {QUIET_GAP_MS} ms; heartbeat {HEARTBEAT_MS} ms")
idle = experiment("idle-timeout")
legs_view(runs[("nginx-read-timeout", "quiet")].trace)

# %% [markdown]
# How the cut looks on each leg: nginx closes the client connection where the last chunk
# should have come (an incomplete chunked body: RFC 9112 §7.1 ends a chunked body only
# with the last chunk) and closes the upstream connection, the same moment.

# %%
((client, upstream),) = pairs(runs[("nginx-read-timeout", "quiet")].trace)
last_data = upstream.pieces[-1][0]
for leg in (client, upstream):
    end = leg.peer_end()
    print(
        f"{leg.leg:8} leg: last chunk seen: {leg.complete}; first end of the connection: "
        f"{end[1]} {(end[0] - last_data) * 1000:.0f} ms after the upstream's last data"
    )

# %%
verdicts("a stream quiet", "proxy_read_timeout bounds", "an EventSource resumes")
resume = runs[("nginx-read-timeout", "resume")]
for k, (c, _) in enumerate(pairs(resume.trace)):
    head = c.conn.client_to_server().split(b"\r\n\r\n")[0].decode()
    sent = [line for line in head.split("\r\n") if line.lower().startswith("last-event-id")]
    print(f"connection {k + 1}: {c.status} {sent or 'no Last-Event-ID'}, end seen: {c.complete}")

# %% [markdown]
# Which timeouts run between two reads and which bound a whole exchange, from each
# proxy's documentation by directive name. Neither proxy limits a whole proxied response
# by default: a stream lives as long as something crosses it often enough.

# %%
for proxy, directive, kind, what in TIMEOUTS:
    print(f"{proxy:8} {directive:22} {kind:15} {what}")

# %% [markdown]
# ## 3. The client leaves
#
# The client hangs up `ABORT_AFTER` seconds into a stream of `ABORT_TOKENS` tokens: over
# HTTP/1.1 it closes the connection, over HTTP/2 it sends `RST_STREAM(CANCEL)` and keeps
# the connection, as browsers do when a `fetch` is aborted. Did nginx end the upstream
# connection (so the lab server's handler was cancelled), and how long after?

# %%
print(f"abort after {ABORT_AFTER} s of a {ABORT_TOKENS}-token stream")
abort = experiment("client-abort")
print(f"{'configuration':30} {'client':9} {'reached':8} {'after ms':>8} {'tokens after':>12}")
for r in abort:
    row = r.row
    after = "" if row.abort_ms is None else f"{row.abort_ms:.1f}"
    print(
        f"{row.configuration:30} {row.client_protocol:9} {row.abort_reached_upstream!s:8}"
        f" {after:>8} {row.tokens_after_abort!s:>12}"
    )
print()
verdicts("when the client goes away", "proxy_ignore_client_abort on")

# %% [markdown]
# ## 4. HTTP/2 to the proxy, HTTP/1.1 to the upstream
#
# nginx takes h2c (prior knowledge) on `listen ... http2`; with `proxy_http_version 1.1`
# the upstream leg is chunked. The sizes below are each chunk's data upstream and each
# DATA frame's payload to the client (the last, empty one carries END_STREAM).

# %%
h2 = experiment("h2-translation")
for r in h2:
    print(f"{r.row.configuration} {r.row.probe}:")
    print(f"  upstream ({r.row.upstream_framing}): {r.row.upstream_frames}")
    print(f"  client   ({r.row.client_framing}): {r.row.client_frames}")
verdicts("nginx turns each upstream chunk")

# %% [markdown]
# ## 5. The block from the course notes, run as written
#
# This block is given again and again for SSE behind nginx. Run as written, in the one
# `location` that proxies the whole app:

# %%
notes = experiment("course-notes")
print("\n".join(f"    {line};" for line in notes[0].configuration.settings))
legs_view(runs[("nginx-course-notes", "text")].trace)
verdicts("the course-notes block")

# %% [markdown]
# `add_header` adds a field; it replaces nothing. Content-Type is not a list field, so
# two of them on one response is a message a recipient cannot read one way only (RFC
# 9110 §5.3); the text reply now also claims to be `text/event-stream`. Cache-Control is
# a list, so `no-store, no-cache` is legal, if redundant. `proxy_set_header Connection ''`
# removes the `Connection: close` nginx otherwise sends upstream (it matters for upstream
# keep-alive, which also needs an `upstream` block with `keepalive`).

# %% [markdown]
# ## 6. HAProxy
#
# The same streams through HAProxy in HTTP mode, and its timeouts against a quiet stream.

# %%
haproxy = experiment("haproxy")
legs_view(runs[("haproxy-default", "text")].trace)
verdicts("HAProxy")

# %% [markdown]
# ## 7. What this run says, and the configuration that streams
#
# Every claim, from the numbers above:

# %%
all_claims = claims([r.row for r in runs.values()])
for claim in all_claims:
    print(f"[{claim.verdict}] {claim.text}")
print(f"\n{len(all_claims)} claims checked in this run")

# %% [markdown]
# The nginx settings that streamed in this run, checked once more in a configuration of
# their own, for each content type:

# %%
streaming = Configuration(
    "nginx-streaming", "nginx", STREAMING_CONFIG, STREAMS, "the settings that streamed"
)
checked = run(run_configurations, [(Experiment("streaming", "the fix", (streaming,)), streaming)])
print("location / {\n    proxy_pass http://upstream;")
print("\n".join(f"    {line};" for line in STREAMING_CONFIG))
print("}")
for r in checked:
    row = r.row
    print(
        f"{row.probe:7} max tokens in one client read: {row.max_tokens_per_read}"
        f" of {row.tokens_received}; first token after {row.ttft_ms} ms;"
        f" fields sent twice: {row.duplicated_headers or 'none'}"
    )
streams_everywhere = all(r.row.max_tokens_per_read == 1 for r in checked)
print(f"every content type streamed, one token per read: {streams_everywhere}")
