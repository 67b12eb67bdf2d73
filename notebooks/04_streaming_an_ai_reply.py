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
# # 04 · Streaming an AI reply, four ways
#
# A chat backend that streams its reply still has to choose how to frame the tokens inside
# the HTTP body. Four framings are common:
#
# - **bare text** (`text/plain`): the tokens themselves, nothing around them;
# - **Server-Sent Events** (`text/event-stream`): `data: {...}` lines, each event ended by
#   a blank line. Browsers' `EventSource` can only `GET`, so chat clients `POST` the prompt
#   and read the reply as an event stream themselves (the `fetch-event-source` pattern);
# - **NDJSON** (`application/x-ndjson`): one JSON object per line;
# - **one JSON document** (`application/json`): the whole reply at once, when it is done.
#   This is the non-streaming baseline.
#
# The lab server's `POST /chat` answers in whichever framing the request's `Accept` header
# asks for, with the same deterministic tokens for the same prompt; `GET /tokens` streams
# the same tokens as bare text from a query string. This notebook asks for one reply (same
# prompt, same number of tokens, same pause between tokens) in every framing, over real TCP
# connections on 127.0.0.1, and measures from the traces what each framing costs in bytes
# and when each token arrived.

# %%
import json
from bisect import bisect_right
from itertools import accumulate
from urllib.parse import urlencode

import matplotlib.pyplot as plt

from lab.capture.annotate import annotate
from lab.capture.trace import RECV
from lab.capture.views import DATA_KINDS, escape_bytes, plot_timeline
from lab.client import fetch
from lab.client.sse import event_source
from lab.notebook import run, start_server, stop_server
from lab.wire.sse import Dispatch, SSEDecoder

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url)

# %% [markdown]
# ## 1. One reply, five requests
#
# The knobs, shared by every request: the prompt seeds the token source, `n` is the number
# of tokens, `interval_ms` the server's pause between two of them. `POST /chat` takes them
# as a JSON body, `GET /tokens` as a query string.
#
# Bare text is asked for twice: as `GET /tokens` and as `POST /chat` with
# `Accept: text/plain`. The SSE request goes through the lab's EventSource-grade client,
# `lab.client.sse.event_source`, with `method="POST"` and a body; it stops once the
# `data: [DONE]` event has arrived and its response has ended, and never reconnects. The
# others go through `lab.client.fetch`. Every client records a trace of its socket.
#
# One throwaway request goes first, so that none of the five pays for whatever the first
# connection to a fresh server costs.

# %%
PROMPT = "why stream a reply?"
N_TOKENS = 12
INTERVAL_MS = 15
knobs = {"prompt": PROMPT, "n": N_TOKENS, "interval_ms": INTERVAL_MS}
chat_body = json.dumps(knobs).encode()
json_body = [("content-type", "application/json")]


def post_chat(accept, name):
    """POST /chat with the shared knobs, asking for the framing ``accept``."""
    headers = [("accept", accept), *json_body]
    return run(
        fetch, server.host, server.port, "POST", "/chat", headers=headers, body=chat_body, name=name
    )


run(fetch, server.host, server.port, "GET", "/tokens?n=1&interval_ms=0", name="warm-up")

replies = {}  # framing -> (trace, response); the framing is also the trace's name


def keep(trace, response):
    replies[trace.name] = (trace, response)


tokens_get = run(
    fetch, server.host, server.port, "GET", "/tokens?" + urlencode(knobs), name="text (GET /tokens)"
)
keep(tokens_get.trace, tokens_get.response)
plain = post_chat("text/plain", "text (POST /chat)")
keep(plain.trace, plain.response)
sse = run(
    event_source,
    server.host,
    server.port,
    "/chat",
    method="POST",
    headers=json_body,
    body=chat_body,
    until=lambda event: event.data == "[DONE]",
    max_connections=1,
    name="SSE (POST /chat)",
)
keep(sse.trace, sse.responses[0])
ndjson = post_chat("application/x-ndjson", "NDJSON (POST /chat)")
keep(ndjson.trace, ndjson.response)
whole = post_chat("application/json", "JSON (POST /chat)")
keep(whole.trace, whole.response)

print(f"the SSE client stopped because: {sse.stopped}")
print()
print(f"{'request':22} {'status':>6}  {'content-type':28} {'body framed by':28} {'body B':>7}")
for label, (_, response) in replies.items():
    length = response.header("content-length")
    framed = f"content-length: {length}" if length else "transfer-encoding: chunked"
    ctype = response.header("content-type")
    print(f"{label:22} {response.status:6}  {ctype:28} {framed:28} {len(response.body):7}")

# %% [markdown]
# The last column is the body as the client's HTTP parser handed it over, after removing
# the chunked coding; the bytes that carried it come in section 3.
#
# ## 2. Is it really the same reply?
#
# Each framing is decoded the way its reader would decode it:
#
# - the JSON document is parsed whole; its `tokens` list is the reference;
# - NDJSON: one object per line, the tokens in its `token` fields;
# - SSE: the lab's WHATWG event-stream decoder, run over the body; the tokens are in the
#   JSON of each event's data;
# - bare text has no token boundaries of its own. The server sends one token per chunk,
#   so here the chunk boundaries are the token boundaries; a proxy that re-chunks the
#   body would erase them, and a reader only ever sees growing text.
#
# For each token we also note where in the body the byte that completes it sits: the last
# byte of a bare-text token, the LF that ends an NDJSON line, the blank line that
# dispatches an SSE event. A JSON document is only usable once whole, so each of its tokens
# is completed by the body's last byte.

# %%
HEAD_KINDS = {"status-line", "header-field", "head-end"}


def chunks_of(trace):
    """The chunk data of the server's reply, one bytes object per chunk, in order."""
    ac = annotate(trace)[0]
    wire = ac.conn.server_to_client()
    chunks = []
    for seg in ac.segments(from_client=False):
        if seg.kind == "chunk-size":
            chunks.append(b"")
        elif seg.kind == "chunk-data":  # a chunk split across reads comes in pieces
            chunks[-1] += wire[seg.start : seg.end]
    return chunks


def decode_reply(trace, response):
    """The tokens, and for each the body offset just past the byte that completes it."""
    body = response.body
    ctype = response.header("content-type").split(";")[0]
    if ctype == "application/json":
        tokens = json.loads(body)["tokens"]
        return tokens, [len(body)] * len(tokens)
    if ctype == "application/x-ndjson":
        lines = body.splitlines(keepends=True)
        objects = [json.loads(line) for line in lines]
        tokens = [obj["token"] for obj in objects if "token" in obj]
        return tokens, list(accumulate(len(line) for line in lines))[: len(tokens)]
    if ctype == "text/event-stream":
        dispatches = [s for s in SSEDecoder().feed(body) if isinstance(s, Dispatch)]
        events = [(d.event.data, d.end) for d in dispatches if d.event is not None]
        tokens = [json.loads(data)["token"] for data, _ in events if data != "[DONE]"]
        return tokens, [end for data, end in events if data != "[DONE]"]
    chunks = chunks_of(trace)[:-1]  # text/plain: one token per chunk, then the end marker
    return [chunk.decode() for chunk in chunks], list(accumulate(len(c) for c in chunks))


decoded = {label: decode_reply(*pair) for label, pair in replies.items()}
reference = decoded["JSON (POST /chat)"][0]
for label, (tokens, ends) in decoded.items():
    same = "the same tokens" if tokens == reference else "DIFFERENT tokens"
    body = replies[label][1].body
    after = escape_bytes(body[ends[-1] :]) or "(nothing: the document is the reply)"
    print(f"{label:22} {len(tokens):3} tokens, {same}; after the last token: {after}")
    assert tokens == reference, label
print()
print(f"the reply ({len(reference)} tokens): {''.join(reference)!r}")
print("the tokens, one by one:", reference)
payload = sum(len(token.encode()) for token in reference)
print(f"payload: {payload} bytes of token text in every framing")

# %% [markdown]
# ## 3. The first bytes of each body, as the wire carried them
#
# Below, each body starts right after its response head. Bytes are shown escaped
# (`\r\n` is CR LF, `\n` a lone LF), one line per chunk: the chunk-size line in hex, the
# chunk data, and the CRLF that closes the chunk. The JSON reply is not chunked: it is one
# `Content-Length` body, shown as it arrived.

# %%
SHOWN_UNITS = 3
MAX_LINE = 110


def body_units(trace):
    """The body's wire bytes, one bytes object per chunk (or per piece of a plain body)."""
    ac = annotate(trace)[0]
    wire = ac.conn.server_to_client()
    units = []
    for seg in ac.segments(from_client=False):
        if seg.kind in HEAD_KINDS:
            continue
        if seg.kind in ("chunk-size", "last-chunk", "body-data") or not units:
            units.append(b"")
        units[-1] += wire[seg.start : seg.end]
    return units


for label, (trace, _) in replies.items():
    units = body_units(trace)
    print(f"{label}: first {min(SHOWN_UNITS, len(units))} of {len(units)} units")
    for unit in units[:SHOWN_UNITS]:
        text = escape_bytes(unit)
        more = f" … (+{len(text) - MAX_LINE} chars)" if len(text) > MAX_LINE else ""
        print("   ", text[:MAX_LINE] + more)
    print()

# %% [markdown]
# The lab's annotator reads the SSE body as a nested layer: inside the chunk data it finds
# the event stream's own units, a `data:` field line and the blank line that dispatches
# the event. Here is what it says about the first event's bytes (wire offsets count from
# the response's first byte):

# %%
sse_conn = annotate(sse.trace)[0]
nested = [s for s in sse_conn.segments(from_client=False, nested=True) if s.kind == "nested"]
for seg in nested:
    print(f"[{seg.start:4}, {seg.end:4})  {escape_bytes(seg.data):46} {seg.note()}")
    if seg.unit.kind == "sse-dispatch":
        break

# %% [markdown]
# ## 4. What each framing costs, and when the tokens arrived
#
# Each trace gives the bytes and the times:
#
# - **head B**: the status line, the header fields and the empty line that ends them;
# - **body B**: every byte after the head: chunk-size lines, chunk data, CRLFs, the last
#   chunk (for a `Content-Length` body: the body itself);
# - **payload B**: the token text alone, the same in every framing;
# - **B/token**: (head + body) / tokens, all the response bytes one token costs here;
# - **overhead**: (head + body) / payload;
# - **TTFT / TTLT**: time to first and to last token, in ms since the connection was made
#   (the trace's `connect` record, as in notebook 01), so both include sending the
#   request. A token's time is that of the `recv` that delivered the byte completing it.
#
# To find that `recv`, each token's body offset (section 2) is placed on the wire through
# the annotated data segments, and the wire offset is looked up in the `recv` records.


# %%
def wire_layout(trace):
    """Head bytes, body bytes on the wire, and (body start, wire start, size) per data
    segment of the server's reply."""
    ac = annotate(trace)[0]
    segments = ac.segments(from_client=False)
    head = sum(s.nbytes for s in segments if s.kind in HEAD_KINDS)
    body = sum(s.nbytes for s in segments if s.kind not in HEAD_KINDS)
    pieces = []
    offset = 0
    for seg in segments:
        if seg.kind in DATA_KINDS:
            pieces.append((offset, seg.start, seg.nbytes))
            offset += seg.nbytes
    return head, body, pieces


def arrival_times_ms(trace, body_ends):
    """For each body offset (one past a byte), when the recv carrying that byte returned."""
    conn = trace.connections[0]
    _, _, pieces = wire_layout(trace)
    recvs = [r for r in conn.records if r.kind == RECV]
    recv_ends = list(accumulate(len(r.data) for r in recvs))  # wire offset after each recv
    body_starts = [body_start for body_start, _, _ in pieces]
    times = []
    for end in body_ends:
        body_start, wire_start, _ = pieces[bisect_right(body_starts, end - 1) - 1]
        wire_offset = wire_start + (end - 1 - body_start)  # where the completing byte sits
        recv = recvs[bisect_right(recv_ends, wire_offset)]
        times.append((recv.t - conn.records[0].t) * 1000)
    return times


rows = {}
for label, (trace, _) in replies.items():
    tokens, ends = decoded[label]
    head, body, _ = wire_layout(trace)
    times = arrival_times_ms(trace, ends)
    rows[label] = {
        "head": head,
        "body": body,
        "per_token": (head + body) / len(tokens),
        "overhead": (head + body) / payload,
        "ttft": times[0],
        "ttlt": times[-1],
        "times": times,
    }

header = (
    f"{'framing':22} {'head B':>7} {'body B':>7} {'payload B':>9} {'B/token':>8}"
    f" {'overhead':>8} {'TTFT ms':>8} {'TTLT ms':>8}"
)
print(header)
print("-" * len(header))
for label, row in rows.items():
    print(
        f"{label:22} {row['head']:7} {row['body']:7} {payload:9} {row['per_token']:8.1f}"
        f" {row['overhead']:7.1f}x {row['ttft']:8.2f} {row['ttlt']:8.2f}"
    )

# %% [markdown]
# Where a body's bytes go: the chunked coding's own bytes (chunk-size lines, the CRLF
# after each chunk's data, the last chunk), the framing's syntax inside the chunk data
# (`data: `, JSON keys, newlines, the end marker), and the token text.


# %%
def chunk_coding_bytes(trace):
    segments = annotate(trace)[0].segments(from_client=False)
    return sum(s.nbytes for s in segments if s.kind not in HEAD_KINDS | DATA_KINDS)


print(f"{'framing':22} {'chunk coding B':>14} {'syntax B':>9} {'payload B':>9} {'body B':>7}")
for label, (trace, response) in replies.items():
    row = rows[label]
    row["coding"] = chunk_coding_bytes(trace)
    row["syntax"] = len(response.body) - payload
    assert row["coding"] + row["syntax"] + payload == row["body"]
    print(f"{label:22} {row['coding']:14} {row['syntax']:9} {payload:9} {row['body']:7}")

# %% [markdown]
# ## 5. The same numbers, drawn
#
# Left: the response bytes per token, split into the four parts above. Right: when each
# token became usable to its reader, one line per framing.

# %%
labels = list(rows)
fig, (ax_bytes, ax_time) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
bottom = [0.0] * len(labels)
for part, name in (
    ("payload", "token text"),
    ("syntax", "framing syntax"),
    ("coding", "chunk coding"),
    ("head", "response head"),
):
    values = [(payload if part == "payload" else rows[label][part]) / N_TOKENS for label in labels]
    ax_bytes.bar(labels, values, bottom=bottom, label=name)
    bottom = [b + v for b, v in zip(bottom, values, strict=True)]
ax_bytes.set(ylabel="bytes per token", title="Response bytes per token")
ax_bytes.tick_params(axis="x", labelrotation=20)
ax_bytes.legend()
for label in labels:
    times = rows[label]["times"]
    counts = range(1, len(times) + 1)
    ax_time.step(times, counts, where="post", marker="o", markersize=3, label=label)
ax_time.set(xlabel="ms since connect", ylabel="tokens usable", title="Token arrivals")
ax_time.grid(True, alpha=0.3)
ax_time.legend(loc="upper left")
plt.show()

# %% [markdown]
# The lab's own timeline plot shows the other side of it: cumulative body data (chunk data,
# or the `Content-Length` body) per connection. Bare text and the framed streams climb in
# steps as the tokens come; the JSON reply's body comes only at the end.

# %%
fig, ax = plt.subplots(figsize=(9, 3.5))
plot_timeline([trace for trace, _ in replies.values()], ax=ax)
plt.show()

# %% [markdown]
# ## 6. What this run says
#
# Computed from the table above; rerun the notebook and the sentences follow the numbers.

# %%
streaming = [label for label in labels if not label.startswith("JSON")]
per_token = {label: rows[label]["per_token"] for label in labels}
low, high = min(per_token.values()), max(per_token.values())
cheapest = " and ".join(label for label in labels if per_token[label] == low)
dearest = " and ".join(label for label in labels if per_token[label] == high)
print(f"cheapest per token: {cheapest}, {low:.1f} B/token")
print(f"dearest per token: {dearest}, {high:.1f} B/token ({high / low:.1f} times as much)")
head_share = {
    label: rows[label]["head"] / (rows[label]["head"] + rows[label]["body"]) for label in labels
}
print(
    f"the response head is {min(head_share.values()):.0%} to {max(head_share.values()):.0%}"
    " of each response's bytes"
)
print("body bytes per token, the head left out:")
for label in labels:
    print(f"    {label:22} {rows[label]['body'] / N_TOKENS:6.1f} B/token")
first = min(streaming, key=lambda label: rows[label]["ttft"])
baseline = rows["JSON (POST /chat)"]
print(
    f"first token: {first} at {rows[first]['ttft']:.2f} ms;"
    f" the JSON reply's first token at {baseline['ttft']:.2f} ms,"
    f" {baseline['ttft'] - rows[first]['ttft']:.2f} ms later"
)
print(
    f"the JSON reply's first and last tokens arrived"
    f" {baseline['ttlt'] - baseline['ttft']:.2f} ms apart (the whole document at once)"
)
spread = [rows[label]["ttlt"] for label in labels]
print(f"last token, all framings: between {min(spread):.2f} and {max(spread):.2f} ms")
print(
    f"the server paused {N_TOKENS - 1} times for {INTERVAL_MS} ms:"
    f" {(N_TOKENS - 1) * INTERVAL_MS} ms of every reply is the 'model' thinking"
)

# %% [markdown]
# Read together:
#
# - **Bytes.** Every framing carries the same token text; what differs is the syntax
#   around each token and the chunk coding that carries it. The first table and the bar
#   chart show which framing costs most per token on this run, and the lines above say
#   how much of each response the head is and what each framing costs per token without
#   it. The head is paid once per reply, so in a long reply the per-token syntax and chunk
#   coding are what remain.
# - **Time.** The streamed framings deliver each token as soon as the server has it; the
#   JSON document goes out only when the whole reply exists, so its first token waits for
#   the last one. Compare the last-token times with the server's pauses printed above:
#   streaming does not make the reply finish sooner, it lets the reader start sooner.
# - **Fine print.** The server runs in a thread of this notebook's own process and the
#   connection is loopback, so differences of a fraction of a millisecond between framings
#   are thread scheduling, not framing. Bare text carries nothing around each token: no
#   index, no token boundaries that survive re-chunking, and no end-of-reply signal but
#   the `[DONE]` text the lab appends. SSE and NDJSON pay for those with their extra bytes.
#
# ## 7. A side note: `GET /events` is a different payload
#
# `GET /events` is the lab's EventSource endpoint: plain `GET`, so a browser's
# `EventSource` can read it. It is not another framing of the chat reply, so it stays out
# of the table. Asking it for a stream named like the prompt shows why:

# %%
events = run(
    event_source,
    server.host,
    server.port,
    "/events?" + urlencode({"stream": PROMPT, "n": N_TOKENS, "interval_ms": INTERVAL_MS}),
    max_connections=1,  # it ends after n events; an EventSource would reconnect
    name="events",
)
print(f"{len(events.events)} events; the client stopped: {events.stopped}")
for unit in body_units(events.trace)[:SHOWN_UNITS]:
    print("   ", escape_bytes(unit))
words = [json.loads(event.data)["word"] for event in events.events]
print(
    "its words are the reply's tokens without their spaces:",
    words == [t.strip() for t in reference],
)
head, body, _ = wire_layout(events.trace)
per_event = (head + body) / len(words)
print(f"{head + body} response bytes for {len(words)} events: {per_event:.1f} B/event")

# %% [markdown]
# Its events carry the same words, but without the spaces between them, inside a
# different JSON object (a sequence number, the stream's name, the word), each with an
# `id:` line so that a reconnecting client can resume, after a `retry:` block, and with no
# `[DONE]` event: the stream simply ends after `n` events (and a browser's `EventSource`
# would then reconnect). Its bytes per event measure that object, not the chat reply's
# framing.
#
# ## Clean up

# %%
stop_server()
