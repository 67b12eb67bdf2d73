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
# # 01 · Request/response vs streaming
#
# A chat backend can answer in two ways. It can wait until the whole reply exists and send
# it with a `Content-Length`, or it can send each token the moment it is ready and let the
# body grow while the reader watches. Over HTTP/1.1 the second way is *chunked transfer
# coding*.
#
# This notebook asks the lab server for the same number of bytes both ways, over a real
# TCP connection on 127.0.0.1, and looks at what came back: the raw bytes, what each byte
# range means, and **when** each byte arrived.
#
# Everything runs on your machine, now; every number below is measured in this run.

# %%
import socket

import matplotlib.pyplot as plt

from lab.capture.trace import RECV
from lab.capture.views import plot_timeline
from lab.client import fetch
from lab.notebook import run, show, start_server, stop_server

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url)

# %% [markdown]
# ## 1. The streaming reply, through the lab's client
#
# `GET /tokens` streams a deterministic reply, one token at a time, `interval_ms` apart.
# The lab's client (`lab.client.fetch`) sends the request on a fresh connection, reads the
# response with h11, and returns both the decoded response and a **trace**: every
# `send()` and `recv()` its socket made, with a timestamp and the exact bytes.

# %%
N_TOKENS = 6
INTERVAL_MS = 40
tokens = run(
    fetch,
    server.host,
    server.port,
    "GET",
    f"/tokens?n={N_TOKENS}&interval_ms={INTERVAL_MS}",
    name="tokens",
)
print(f"HTTP/1.1 {tokens.response.status} {tokens.response.reason}".rstrip())
for name, value in tokens.response.headers:
    print(f"{name}: {value}")
print()
print(tokens.response.body.decode())

# %% [markdown]
# ## 2. The same number of bytes, all at once
#
# `GET /fixed?size=N` answers with a body of exactly `N` bytes and a `Content-Length`
# header. To compare like with like we ask for as many body bytes as the token stream
# carried. This time the request goes out on a plain `socket`, written by hand, so that
# nothing stands between us and the wire. `Connection: close` asks the server to close
# after the response, so "read until the server closes" reads exactly one response.


# %%
def visible(data: bytes) -> str:
    """Bytes as text, with each CRLF shown as the two characters it is."""
    return data.decode("latin-1").replace("\r\n", "\\r\\n\n")


size = len(tokens.response.body)
request = (
    f"GET /fixed?size={size} HTTP/1.1\r\n"
    f"Host: {server.host}:{server.port}\r\n"
    "Connection: close\r\n"
    "\r\n"
).encode("ascii")
with socket.create_connection((server.host, server.port), timeout=5) as sock:
    sock.sendall(request)
    raw_fixed = b""
    while data := sock.recv(65536):
        raw_fixed += data
print(visible(raw_fixed))

# %% [markdown]
# The head ends at the first empty line (`\r\n\r\n`); after it come exactly
# `Content-Length` bytes of body, and the reader knows the message is over when it has
# counted them.
#
# The lab client does the same thing and records it, so from here on both replies are
# traces, measured the same way:

# %%
fixed = run(fetch, server.host, server.port, "GET", f"/fixed?size={size}", name="fixed")
print(f"HTTP/1.1 {fixed.response.status} {fixed.response.reason}".rstrip())
print("content-length:", fixed.response.header("content-length"))
print("transfer-encoding:", fixed.response.header("transfer-encoding") or "(absent)")
assert fixed.response.body == raw_fixed.partition(b"\r\n\r\n")[2]

# %% [markdown]
# ## 3. What came back, byte range by byte range
#
# The annotated view groups the bytes of each direction by protocol unit (a status line,
# a header field, a chunk-size line, chunk data ...) and says what each one means. The
# fixed reply is a head and one body:

# %%
show(fixed.trace)

# %% [markdown]
# The streamed reply has no `Content-Length`. It says `Transfer-Encoding: chunked`
# instead, and the body is a sequence of chunks, each a size in hex on its own line, the
# data, and a CRLF; a chunk of size 0 ends it. Notebook 02 takes that coding apart byte by
# byte.

# %%
show(tokens.trace)

# %% [markdown]
# ## 4. When the bytes arrived
#
# Each `recv` record of a trace is one `receive_some()` call on the client's socket, with
# the time it returned (seconds since the connection was made). Here are the reads of the
# streamed reply, one per line:

# %%
conn = tokens.trace.connections[0]
for record in conn.records:
    if record.kind == RECV:
        print(f"{record.t * 1000:8.1f} ms  {len(record.data):4} bytes  {record.data!r}")

# %% [markdown]
# Time to first byte (TTFB) and time to last byte (TTLB) of each response, counted from
# the moment the connection was made (the trace's `connect` record), so both include
# writing the request. Read off each trace:


# %%
def timings(trace):
    """TTFB and TTLB (seconds since connect), reads and bytes of a one-connection trace."""
    records = trace.connections[0].records
    connected = records[0].t
    reads = [r for r in records if r.kind == RECV]
    return {
        "ttfb": reads[0].t - connected,
        "ttlb": reads[-1].t - connected,
        "reads": len(reads),
        "bytes": sum(len(r.data) for r in reads),
    }


rows = {"fixed": timings(fixed.trace), "tokens": timings(tokens.trace)}
print(f"{'reply':8} {'TTFB ms':>9} {'TTLB ms':>9} {'TTLB-TTFB':>10} {'reads':>6} {'bytes':>6}")
for name, row in rows.items():
    spread = (row["ttlb"] - row["ttfb"]) * 1000
    print(
        f"{name:8} {row['ttfb'] * 1000:9.2f} {row['ttlb'] * 1000:9.2f} {spread:10.2f}"
        f" {row['reads']:6} {row['bytes']:6}"
    )
pauses = N_TOKENS - 1
print(f"\nthe server paused {pauses} times for {INTERVAL_MS} ms between tokens:")
print(f"{pauses * INTERVAL_MS} ms of the token stream's spread is the model 'thinking'")

# %% [markdown]
# Compare the two rows. The fixed reply's first and last bytes come close together: it
# left in one go, so a reader gets all of it or nothing. The token stream's first byte is
# as early as the fixed reply's, but its last byte comes after the server's pauses, and
# the `reads` column shows its body arrived in pieces. A chat UI can show the first token
# at TTFB instead of TTLB: that is the whole point of streaming.
#
# (The server runs in a thread of this notebook's own Python process, so differences of a
# fraction of a millisecond here are loopback and thread switching, not a network.)
#
# ## 5. On one time axis
#
# The timeline plots the body bytes received so far against the time since each
# connection was made, one step per piece of body data:

# %%
fig, ax = plt.subplots(figsize=(9, 3))
plot_timeline([fixed.trace, tokens.trace], ax=ax)
plt.show()

# %% [markdown]
# ## Clean up
#
# Stop the background server (re-running the first cell starts a fresh one).

# %%
stop_server()
