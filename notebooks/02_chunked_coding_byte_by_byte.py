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
# # 02 · Chunked coding, byte by byte
#
# When an HTTP/1.1 server does not know how long its reply will be (a model is still
# generating it), it sends the body with `Transfer-Encoding: chunked`: each piece of data
# goes out behind its own length. RFC 9112 §7.1 gives the grammar:
#
# ```
# chunked-body    = *chunk last-chunk trailer-section CRLF
# chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
# chunk-size      = 1*HEXDIG
# last-chunk      = 1*("0") [ chunk-ext ] CRLF
# trailer-section = *( field-line CRLF )
# ```
#
# This notebook captures a real chunked response from the lab server, decodes it three
# ways (by hand, with the lab's decoder, with h11) and checks that they agree, looks at
# trailers, feeds the decoder two malformed bodies that have caused real request-smuggling
# bugs, and measures when each token arrived.

# %%
import hashlib
import json
from itertools import pairwise

import h11
import matplotlib.pyplot as plt

from lab.capture.views import data_arrivals
from lab.client import fetch
from lab.notebook import run, show, start_server, stop_server
from lab.wire.chunked import ChunkedDecoder, ChunkedError, decode

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url)

# %% [markdown]
# ## 1. Capture a chunked response
#
# `POST /chat` with `Accept: application/x-ndjson` streams a chat reply as one JSON object
# per line (NDJSON), a common framing for token streams; over HTTP/1.1 each line goes out
# as one chunk. The lab client records every byte its socket received: the head (up to the
# first empty line), then the chunked body. We split them there.

# %%
exchange = run(
    fetch,
    server.host,
    server.port,
    "POST",
    "/chat",
    headers=[("accept", "application/x-ndjson"), ("content-type", "application/json")],
    body=json.dumps({"prompt": "hello", "n": 3, "interval_ms": 5}).encode(),
    name="captured",
)
raw = exchange.trace.connections[0].server_to_client()
head, end_of_head, body = raw.partition(b"\r\n\r\n")
print((head + end_of_head).decode("latin-1"))
print(f"the chunked body is {len(body)} bytes:")
print(body)

# %% [markdown]
# ## 2. Decode it by hand
#
# Plain Python, following the grammar: read a line up to CRLF, parse it as hex, take that
# many bytes of data, check the CRLF after them, repeat until a size of 0; then read
# trailer lines until an empty line. Offsets are counted from the first byte of the body.

# %%
pos = 0
by_hand = b""
while True:
    eol = body.index(b"\r\n", pos)
    size_line = body[pos:eol]
    # Anything after ';' is a chunk extension. int() is lenient ('+5', ' 5', '0x5' and
    # '1_0' all parse): good enough for a body we trust, not for a server (section 6).
    size = int(size_line.split(b";")[0], 16)
    print(f"@{pos:3}  size line {size_line!r:7} hex {size_line.decode()} = {size} bytes")
    pos = eol + 2
    if size == 0:
        break
    data = body[pos : pos + size]
    print(f"@{pos:3}  data      {data!r}")
    pos += size
    assert body[pos : pos + 2] == b"\r\n", "chunk data must be followed by CRLF"
    print(f"@{pos:3}  CRLF")
    pos += 2
    by_hand += data
trailers_by_hand = []
while (line := body[pos : body.index(b"\r\n", pos)]) != b"":
    trailers_by_hand.append(line)
    pos += len(line) + 2
print(f"@{pos:3}  final CRLF; trailer lines: {trailers_by_hand}")
pos += 2
assert pos == len(body), "nothing may follow the final CRLF"
print("\ndata:", by_hand)

# %% [markdown]
# ## 3. The lab's decoder
#
# `lab.wire.chunked.decode` does the same for a whole body and returns the data and the
# trailer fields. Underneath is `ChunkedDecoder`, which takes bytes as they arrive and
# returns *annotated segments*: every byte range of the body with what it means.

# %%
lab_data, lab_trailers = decode(body)
print("data:    ", lab_data)
print("trailers:", lab_trailers)
for segment in ChunkedDecoder().feed(body):
    covered = body[segment.start : segment.end]
    print(f"{segment.start:4}..{segment.end:<4} {covered!r:44} {segment.note()}")

# %% [markdown]
# Bytes do not arrive in neat chunks: a read can end anywhere. Feeding the decoder one
# byte at a time must give the same data:

# %%
decoder = ChunkedDecoder()
pieces = [s for i in range(len(body)) for s in decoder.feed(body[i : i + 1])]
one_byte_at_a_time = b"".join(s.data for s in pieces if s.kind == "chunk-data")
assert one_byte_at_a_time == lab_data
print(f"{len(body)} one-byte feeds gave {len(pieces)} segments and the same data")

# %% [markdown]
# ## 4. h11, as an independent reference
#
# h11 is the HTTP/1.1 library the lab's servers are built on. Its client `Connection`
# must have sent a request before it will read a response; then it takes the raw bytes
# (head and body) and hands back `Data` events and an `EndOfMessage`.

# %%
client = h11.Connection(h11.CLIENT)
client.send(h11.Request(method="POST", target="/chat", headers=[("host", "lab")]))
client.send(h11.EndOfMessage())
client.receive_data(raw)
h11_data = b""
while True:
    event = client.next_event()
    if isinstance(event, h11.Data):
        print("Data", bytes(event.data))
        h11_data += event.data
    else:
        print(type(event).__name__)
    if isinstance(event, h11.EndOfMessage):
        h11_trailers = event.headers
        break

assert by_hand == lab_data == h11_data == exchange.response.body
assert lab_trailers == list(h11_trailers) == []
print("\nby hand, lab.wire.chunked and h11 agree:", len(lab_data), "bytes of data")

# %% [markdown]
# ## 5. Trailers
#
# A chunked body can end with header fields that were only known once the data was sent:
# *trailers*. `GET /trailers` announces them in a `Trailer` header and sends a token count
# and a SHA-256 of the body after the last chunk.

# %%
with_trailers = run(
    fetch, server.host, server.port, "GET", "/trailers?n=3&interval_ms=0", name="trailers"
)
raw_t = with_trailers.trace.connections[0].server_to_client()
body_t = raw_t.partition(b"\r\n\r\n")[2]
print("Trailer header:", with_trailers.response.header("trailer"))
print("end of the body:", body_t[body_t.rindex(b"\r\n0\r\n") + 2 :])
data_t, trailers_t = decode(body_t)
for name, value in trailers_t:
    print(f"trailer {name.decode()}: {value.decode()}")
fields = dict(trailers_t)
assert fields[b"x-body-sha256"].decode() == hashlib.sha256(data_t).hexdigest()
print("the body's SHA-256, computed here, matches the trailer")

# %% [markdown]
# ## 6. Malformed bodies and where they break
#
# A decoder must reject what the grammar does not allow, and say *where*. Two bodies
# that caused real request-smuggling bugs:
#
# - `3\r\nxxx__1a\r\n`: three bytes of data, then `__` where the CRLF must be. h11 before
#   0.16.0 skipped any two bytes there (CVE-2025-43859), so a front end and a back end
#   could disagree about where the body ends.
# - `5\nhello…`: the size line ends with a lone LF instead of CRLF (Go's CVE-2025-22871
#   accepted it).
#
# Each error carries the byte offset of the first byte that cannot belong to a valid
# chunked body; the hexdump points at it.


# %%
def hexdump_at(data: bytes, offset: int) -> str:
    """``data`` as ``hexdump -C`` does it, with carets under the byte at ``offset``."""
    lines = []
    for start in range(0, len(data), 16):
        row = data[start : start + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{start:08x}  {hexes:<47}  |{text}|")
        if start <= offset < start + 16:
            col = offset - start
            marker = [" "] * (10 + 47 + 3 + 16)
            marker[10 + 3 * col : 12 + 3 * col] = "^^"  # under the hex digits
            marker[10 + 47 + 3 + col] = "^"  # under the ASCII column
            lines.append("".join(marker).rstrip())
    return "\n".join(lines)


def h11_verdict(bad_body: bytes) -> str:
    """What h11 says when the same body follows a chunked response head."""
    peer = h11.Connection(h11.CLIENT)
    peer.send(h11.Request(method="GET", target="/", headers=[("host", "lab")]))
    peer.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + bad_body)
    try:
        while (event := peer.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.EndOfMessage):
                return "h11 accepts it"
    except h11.RemoteProtocolError as exc:
        return f"h11 refuses it too: {exc}"
    return "h11 waits for more bytes"


for bad in (b"3\r\nxxx__1a\r\n", b"5\nhello\r\n0\r\n\r\n"):
    print(f"body {bad!r}")
    try:
        decode(bad)
    except ChunkedError as exc:
        print(f"  ChunkedError at byte offset {exc.offset}: {exc.message}")
        print("  the byte there:", repr(bad[exc.offset : exc.offset + 1]))
        print("  " + hexdump_at(bad, exc.offset).replace("\n", "\n  "))
    else:
        raise AssertionError("the lab's decoder accepted a malformed body")
    print("  " + h11_verdict(bad))
    print()

# %% [markdown]
# Compare the two verdicts on each body: the lab's error names the exact byte offset; h11's
# says which bytes it choked on, but not where they were.
#
# ## 7. When the tokens arrived
#
# Finally, timing. `/tokens` sends one token per chunk, `interval_ms` apart. The trace
# knows when each read returned; the lab decodes the chunks in it and stamps each piece of
# chunk data with the time of the read that delivered it.

# %%
N_TOKENS = 10
INTERVAL_MS = 20
timed = run(
    fetch,
    server.host,
    server.port,
    "GET",
    f"/tokens?n={N_TOKENS}&interval_ms={INTERVAL_MS}",
    name="tokens",
)
show(timed.trace, "timeline")
arrivals = data_arrivals(timed.trace)  # (connection, seconds, size, data) per piece
times_ms = [t * 1000 for _, t, _, _ in arrivals]
gaps_ms = [b - a for a, b in pairwise(times_ms)]

fig, (ax_t, ax_g) = plt.subplots(1, 2, figsize=(10, 3))
ax_t.plot(times_ms, range(len(times_ms)), "o-")
ax_t.set(xlabel="ms since connect", ylabel="piece of chunk data", title="arrivals")
ax_g.bar(range(1, len(gaps_ms) + 1), gaps_ms)
ax_g.axhline(INTERVAL_MS, color="tab:red", linestyle="--", label="interval_ms asked for")
ax_g.set(xlabel="piece", ylabel="ms since the previous piece", title="inter-arrival gaps")
ax_g.legend(loc="lower right")
plt.show()

# %% [markdown]
# Compare the gap column (and the bars) with the dashed line: each token waits for the
# server's pause. The server times its pause from when it sent the previous token, so
# when one read comes back late, the gap after it is shorter. The last gap is the
# `[DONE]` marker, which the server sends right after the last token without a pause;
# when both arrive in one read the gap is zero.
#
# ## Clean up

# %%
stop_server()
