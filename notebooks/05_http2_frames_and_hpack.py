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
# # 05 · HTTP/2 frames and HPACK, byte by byte
#
# HTTP/2 (RFC 9113) carries the same requests and responses as HTTP/1.1, but not as lines
# of text: everything on the connection is a **frame**, a 9-octet header and a payload.
# Header fields travel compressed with **HPACK** (RFC 7541), and a body travels as DATA
# frames, which for a token stream means one frame per token.
#
# ```
# Length (24)  Type (8)  Flags (8)  R (1)  Stream Identifier (31)  Payload (Length)
# ```
#
# The frame types are DATA 0x0, HEADERS 0x1, PRIORITY 0x2, RST_STREAM 0x3, SETTINGS 0x4,
# PUSH_PROMISE 0x5, PING 0x6, GOAWAY 0x7, WINDOW_UPDATE 0x8 and CONTINUATION 0x9.
#
# This notebook opens one cleartext HTTP/2 connection (h2c, "prior knowledge": the client
# simply starts speaking HTTP/2) to the lab server with the lab's client, asks for a token
# stream twice on it, and takes the recorded bytes apart: the preface, the frame header by
# hand and with two decoders, the SETTINGS exchange, every header field and how HPACK
# encoded it, the dynamic table that makes the second request smaller than the first, and
# the DATA frames.

# %%
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import Frame as HyperFrame

from lab.capture.annotate import annotate
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.client.http2 import open_h2_connection
from lab.notebook import run, show, start_server, stop_server
from lab.wire.h2frames import (
    PREFACE,
    DataFrame,
    Frame,
    HeadersFrame,
    Preface,
    Representation,
    SettingsFrame,
    parse,
)

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url)

# %% [markdown]
# ## 1. Two requests on one connection
#
# `lab.client.http2.open_h2_connection` connects, sends the preface and its SETTINGS,
# and waits until the server's SETTINGS have arrived and its own have been acknowledged.
# Then the client sends `GET /tokens` on stream 1 and reads until the stream has ended,
# and does the same again on stream 3 with another prompt. Client streams have odd
# numbers, in increasing order. The trace records every byte the client's socket sent and
# received.

# %%
N_TOKENS = 4
INTERVAL_MS = 10
TARGETS = [
    f"/tokens?n={N_TOKENS}&interval_ms={INTERVAL_MS}",
    f"/tokens?n={N_TOKENS}&interval_ms={INTERVAL_MS}&prompt=again",
]


async def two_requests():
    recorder = Recorder(Trace(name="h2-two-requests"))
    async with open_h2_connection(server.host, server.port, recorder=recorder) as conn:
        responses = []
        for target in TARGETS:
            (response,) = await conn.finish(await conn.request("GET", target))
            responses.append(response)
        await conn.close()
    return responses, recorder.trace


responses, trace = run(two_requests)
for target, response in zip(TARGETS, responses, strict=True):
    print(f"stream {response.stream_id}: GET {target}")
    print(f"  status {response.status}, {len(response.frames)} DATA frames")
    print(f"  body {response.body!r}")

conn_trace = trace.connections[0]
sent = conn_trace.client_to_server()  # every byte the client wrote, in order
received = conn_trace.server_to_client()  # every byte it read
print(f"\nthe client sent {len(sent)} bytes and received {len(received)}")

# %% [markdown]
# ## 2. The client connection preface
#
# An HTTP/2 client starts with 24 fixed octets (§3.4). They look like an HTTP/1 request
# line for the method `PRI`, so that an HTTP/1.1 server that gets them by mistake fails
# at once instead of misreading frames. A SETTINGS frame must follow.

# %%
print(f"first {len(PREFACE)} bytes the client sent: {sent[: len(PREFACE)]!r}")
print("they are RFC 9113's preface:", sent[: len(PREFACE)] == PREFACE)
print("the next 9 bytes, a frame header:", sent[len(PREFACE) : len(PREFACE) + 9].hex(" "))

# %% [markdown]
# ## 3. A frame header, by hand
#
# After the preface, each direction is nothing but frames back to back: read 9 octets,
# take the Length out of them, skip that many, and the next frame starts. Walking the
# client's bytes that way, with plain Python:


# %%
def walk_by_hand(data, start):
    """(offset, length, type, flags, R, stream id) of each frame, from ``start`` on."""
    out = []
    pos = start
    while pos < len(data):
        header = data[pos : pos + 9]
        length = int.from_bytes(header[0:3], "big")  # 24 bits
        ftype = header[3]
        flags = header[4]
        reserved = header[5] >> 7  # the top bit of the last four octets
        stream_id = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF  # the other 31
        out.append((pos, length, ftype, flags, reserved, stream_id))
        pos += 9 + length
    assert pos == len(data), "the last frame must end where the bytes end"
    return out


client_by_hand = walk_by_hand(sent, len(PREFACE))
server_by_hand = walk_by_hand(received, 0)
print(f"{'offset':>6} {'length':>6} {'type':>4} {'flags':>8} {'R':>1} {'stream':>6}")
for pos, length, ftype, flags, reserved, stream_id in client_by_hand:
    print(f"{pos:6} {length:6} {ftype:#4x} {flags:08b} {reserved:1} {stream_id:6}")

# %% [markdown]
# One of them in detail: the first HEADERS frame (type 0x1), the request on stream 1. Its
# 9 header octets, field by field:

# %%
pos, *_ = next(f for f in client_by_hand if f[2] == 0x1)
header = sent[pos : pos + 9]
print("the 9 octets:", header.hex(" "))
print(f"  Length    {header[0:3].hex(' '):9} = {int.from_bytes(header[0:3], 'big')} payload bytes")
print(f"  Type      {header[3]:02x}        = {header[3]} (HEADERS)")
print(f"  Flags     {header[4]:02x}        = {header[4]:08b} in bits:")
for bit, name in (
    (0x01, "END_STREAM"),
    (0x04, "END_HEADERS"),
    (0x08, "PADDED"),
    (0x20, "PRIORITY"),
):
    print(f"              bit {bit:#04x} {name:12} {'set' if header[4] & bit else '-'}")
word = int.from_bytes(header[5:9], "big")
print(f"  R + id    {header[5:9].hex(' ')} = {word:032b} in bits:")
print(f"              R = {word >> 31}, stream identifier = {word & 0x7FFF_FFFF}")

# %% [markdown]
# END_STREAM on a request's HEADERS says there is no body: a GET is complete in one frame.
# END_HEADERS says the field block is all in this frame (no CONTINUATION follows).
#
# ## 4. The same frames through two decoders
#
# `lab.wire.h2frames.parse` decodes a whole direction at once into annotated segments: a
# `Preface`, then one `Frame` subclass per frame type, with its byte range on the wire
# (`start`, `header_end`, `end`) and its fields. hyperframe, the frame codec under the h2
# library, parses one frame from its 9-octet header (`Frame.parse_frame_header`) and then
# its body (`parse_body`). All three readings of both directions are compared here.


# %%
def walk_with_hyperframe(data, start):
    out = []
    view = memoryview(data)[start:]
    while view:
        frame, length = HyperFrame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        out.append((frame, length))
        view = view[9 + length :]
    return out


lab_client = parse(sent, decode_headers=True)
lab_server = parse(received, decode_headers=True)
print(f"{'offset':>6} {'header_end':>10} {'type':13} {'flags':26} {'stream':>6} {'length':>6}")
for seg in lab_client:
    if isinstance(seg, Preface):
        print(f"{seg.start:6} {'':10} preface       ({seg.end - seg.start} bytes)")
        continue
    flags = ", ".join(seg.flag_names) or "-"
    print(
        f"{seg.start:6} {seg.header_end:10} {seg.type_name:13} {flags:26} {seg.stream_id:6}"
        f" {seg.length:6}"
    )

hyper_client = walk_with_hyperframe(sent, len(PREFACE))
hyper_server = walk_with_hyperframe(received, 0)
print("\nhyperframe's view of the same client frames:")
for frame, _ in hyper_client:
    print(f"  {type(frame).__name__:18} stream {frame.stream_id} flags {sorted(frame.flags)}")


def agree(hand_frames, lab_frames, hyper_frames):
    """Do the three readings of one direction give the same frames?"""
    lab_frames = [f for f in lab_frames if isinstance(f, Frame)]
    hand = [(pos, length, ftype, flags, sid) for pos, length, ftype, flags, _, sid in hand_frames]
    lab = [(f.start, f.length, f.type, f.flags, f.stream_id) for f in lab_frames]
    # hyperframe gives no offsets, and its flags are a set of names
    lab_named = [(f.length, f.type, set(f.flag_names), f.stream_id) for f in lab_frames]
    hyper = [(length, f.type, set(f.flags), f.stream_id) for f, length in hyper_frames]
    return hand == lab and lab_named == hyper


n_frames = len(client_by_hand) + len(server_by_hand)
both = agree(client_by_hand, lab_client, hyper_client) and agree(
    server_by_hand, lab_server, hyper_server
)
print(f"\n{n_frames} frames in both directions;")
print(f"by hand, lab.wire.h2frames and hyperframe agree on all of them: {both}")

# %% [markdown]
# ## 5. SETTINGS, both ways
#
# The first frame each side sends is SETTINGS on stream 0 (the connection itself). Its
# payload is a list of 6-octet entries: a 16-bit identifier and a 32-bit value. Each side
# announces the limits of its own *receiving* side; settings it leaves out keep their
# initial values. The other side answers with an empty SETTINGS frame carrying the ACK
# flag. First the server's entries by hand, then both sides with names:

# %%
server_settings = next(f for f in lab_server if isinstance(f, SettingsFrame) and not f.ack)
payload = received[server_settings.header_end : server_settings.end]
print(f"server SETTINGS payload, {len(payload)} bytes = {len(payload) // 6} entries of 6:")
for i in range(0, len(payload), 6):
    ident = int.from_bytes(payload[i : i + 2], "big")
    value = int.from_bytes(payload[i + 2 : i + 6], "big")
    print(f"  {payload[i : i + 6].hex(' ')}  id {ident:#06x}  value {value}")

client_settings = next(f for f in lab_client if isinstance(f, SettingsFrame) and not f.ack)
by_name = {}
for side, frame in (("client", client_settings), ("server", server_settings)):
    for setting in frame.settings:
        by_name.setdefault((setting.id, setting.name), {})[side] = setting.value
print(f"\n{'id':>6} {'setting':24} {'client':>8} {'server':>8}")
for (ident, name), values in sorted(by_name.items()):
    client, srv = values.get("client", "-"), values.get("server", "-")
    print(f"{ident:#06x} {name:24} {client!s:>8} {srv!s:>8}")

hyper_settings = next(f for f, _ in hyper_server if f.type == 0x4 and "ACK" not in f.flags)
print("\nhyperframe reads the server's entries as", dict(hyper_settings.settings))
for side, frames in (("client", lab_client), ("server", lab_server)):
    for f in frames:
        if isinstance(f, SettingsFrame) and f.ack:
            print(f"the {side}'s SETTINGS with ACK (empty) at offset {f.start} of its bytes")

# %% [markdown]
# Most entries repeat the initial values. The ones that say something: `ENABLE_PUSH`
# (the client, through h2, leaves server push enabled; the server says 0, the only value
# a server may send), `MAX_CONCURRENT_STREAMS` (how many streams the *other* side may
# open at once) and `MAX_HEADER_LIST_SIZE` (the largest header section each will
# accept). Notebook 06 uses `INITIAL_WINDOW_SIZE` and `MAX_CONCURRENT_STREAMS`.
#
# ## 6. HEADERS: every field and how HPACK encoded it
#
# A HEADERS frame's payload is a *field block*: one HPACK representation per field. The
# first octet of a representation says which kind it is:
#
# ```
# 1xxxxxxx  indexed: the whole field is entry xxxxxxx of the tables
# 01xxxxxx  literal with incremental indexing: name index (0 = literal name), a value;
#           the field is then added to the dynamic table
# 0000xxxx  literal without indexing       0001xxxx  literal never indexed
# 001xxxxx  dynamic table size update
# ```
#
# Indexes 1 to 61 are the **static table** (RFC 7541 Appendix A: `:method: GET` is 2,
# `:status: 200` is 8, `user-agent` is 58 ...); from 62 on is the **dynamic table**, the
# fields this connection has added, newest first. Each direction has its own. A string
# literal (a name or a value) starts with an octet whose top bit H says "Huffman-coded"
# and whose other 7 bits are the length in octets.
#
# Below, for each HEADERS frame in the order it was on the wire: the first octet of each
# representation read by hand (the kind and the index its prefix holds; for a literal
# with an indexed name, the H bit and length of the value), then what `lab.wire.h2frames`
# decoded, with the dynamic table after each block.


# %%
def by_hand(rep_bytes):
    """The kind and prefix integer from a representation's first octet; for a literal
    with an indexed name, the value's H bit and length from the next octet."""
    b = rep_bytes[0]
    if b & 0x80:
        return f"{b:08b} = indexed, index {b & 0x7F}"
    if b & 0x40:
        kind, index = "incremental", b & 0x3F
    elif b & 0x20:
        return f"{b:08b} = size update to {b & 0x1F}"
    else:
        kind, index = ("never indexed" if b & 0x10 else "without indexing"), b & 0x0F
    if index == 0:
        return f"{b:08b} = {kind}, literal name"
    h, length = rep_bytes[1] >> 7, rep_bytes[1] & 0x7F
    return f"{b:08b} = {kind}, name index {index}; {rep_bytes[1]:08b} = H {h}, {length} octets"


def headers_frames():
    """(time, from_client, frame) for every HEADERS frame of the connection, in wire order."""
    (connection,) = annotate(trace)
    return [
        (item.t, item.from_client, item.segment)
        for item in connection.items
        if isinstance(item.segment, HeadersFrame)
    ]


block_sizes = {}
for t, from_client, frame in headers_frames():
    who = "request" if from_client else "response"
    block = frame.block
    print(f"{t * 1000:7.2f} ms  {who} HEADERS, stream {frame.stream_id}: {block.size}-byte block")
    block_sizes.setdefault(who, []).append(block.size)
    for rep in frame.fields:
        raw = block.data[rep.start : rep.end]
        hand = by_hand(raw)
        where = ""
        if rep.index is not None:
            where = f"static {rep.index}" if rep.index <= 61 else f"dynamic {rep.index}"
        if rep.representation is Representation.INDEXED:
            how = f"indexed ({where})"
        else:
            name = f"name {where}" if where else f"name literal {rep.name_octets} B"
            coding = "Huffman" if rep.value_huffman else "plain"
            how = f"{rep.representation}, {name}, value {coding} {rep.value_octets} B"
        field = f"{rep.name.decode()}: {rep.value.decode()}"
        print(f"    {len(raw):2} B  {field[:48]:48} {how}")
        print(f"          by hand: {hand}")
    entries = ", ".join(f"{n.decode()}" for n, _ in block.table)
    print(f"    dynamic table: {len(block.table)} entries, {block.table_size} bytes ({entries})")
    print()

# %% [markdown]
# Read the by-hand lines against the decoded ones: the index in the first octet is the
# static or dynamic index, and the H bit is 0 in the client's literals and 1 in the
# server's. In the first request only `:method` and `:scheme` were whole fields in the
# static table; `:authority`, `:path` and `user-agent` have their names there but not
# their values, so they went as literals with incremental indexing, and each became a
# dynamic table entry. The first response did the same with its own table.
#
# ## 7. Huffman or not
#
# The lab's client writes its strings as plain octets so that a hexdump of a request
# reads as text; the server, like most peers, Huffman-codes them (RFC 7541 Appendix B: a
# fixed code, 5 bits for common characters, up to 30 for rare ones). Every literal value
# of the connection, with its size both ways: what was sent, and what the other coding
# would have taken (hpack's Huffman encoder for the client's plain strings; the decoded
# length for the server's Huffman ones).

# %%
huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
totals = {}
print(f"{'side':6} {'field':14} {'plain B':>7} {'Huffman B':>9}  sent")
for _, from_client, frame in headers_frames():
    side = "client" if from_client else "server"
    for rep in frame.fields:
        if rep.representation is Representation.INDEXED:
            continue
        plain = len(rep.value)
        coded = len(huffman.encode(rep.value))
        assert rep.value_octets == (coded if rep.value_huffman else plain)
        sent_as = "Huffman" if rep.value_huffman else "plain"
        print(f"{side:6} {rep.name.decode():14} {plain:7} {coded:9}  {sent_as}")
        total = totals.setdefault(side, [0, 0])
        total[0] += plain
        total[1] += coded
for side, (plain, coded) in totals.items():
    print(f"{side}: {plain} bytes of literal values plain, {coded} Huffman-coded")

# %% [markdown]
# One value both ways: the server's `server` field as it was on the wire, and the same
# string as the lab's client would have written it. The octet before the string is the H
# bit and the length.

# %%
_, _, first_response = next(h for h in headers_frames() if not h[1])
rep = next(r for r in first_response.fields if r.name == b"server")
on_wire = first_response.block.data[rep.start : rep.end]
string = on_wire[1:]  # after the first octet: the name index
print(f"as sent (Huffman): {string.hex(' ')}")
print(f"  length octet {string[0]:08b}: H = {string[0] >> 7}, {string[0] & 0x7F} octets")
plain = bytes([len(rep.value)]) + rep.value
print(f"written plain:     {plain.hex(' ')}")
print(
    f"  length octet {plain[0]:08b}: H = {plain[0] >> 7}, {plain[0] & 0x7F} octets: {rep.value!r}"
)
print("hpack's encoder gives the server's bytes:", huffman.encode(rep.value) == string[1:])

# %% [markdown]
# ## 8. The dynamic table at work: the second request
#
# The second request on the connection sends the same `:authority` and `user-agent`, and
# each is now one octet, an index into the dynamic table. Only `:path` changed; it is a
# new literal (and a new entry). The response side did the same: the second response's
# fields are the first one's, so they are all references, unless the clock moved on to a
# new second between the two replies and `date` had to be sent again. The field block
# sizes, from the HEADERS frames above:

# %%
for who, sizes in block_sizes.items():
    first, second = sizes
    print(f"{who:8} header block: first {first:3} bytes, second {second:3} bytes")
requests = [f for _, from_client, f in headers_frames() if from_client]
kinds = [str(r.representation) for r in requests[1].fields]
print(f"\nsecond request's fields: {len(kinds)}, of which indexed: {kinds.count('indexed')}")
responses_h = [f for _, from_client, f in headers_frames() if not from_client]
kinds = [str(r.representation) for r in responses_h[1].fields]
print(f"second response's fields: {len(kinds)}, of which indexed: {kinds.count('indexed')}")

# %% [markdown]
# This is why HPACK is stateful: a receiver that missed one field block could not read
# the next, since indexes refer to entries earlier blocks added. So every field block must
# be decoded, in order, on each connection.
#
# ## 9. DATA frames: one per token, then END_STREAM
#
# The server's handler calls `send` once per token, and the lab's HTTP/2 server turns each
# call into one DATA frame. When the handler returns, the server ends the stream with an
# empty DATA frame carrying END_STREAM. Here are the DATA frames, with the time the read
# that completed each one returned:

# %%
(connection,) = annotate(trace)
print(f"{'ms':>7} {'stream':>6} {'length':>6} {'flags':12} data")
for item in connection.items:
    frame = item.segment
    if isinstance(frame, DataFrame):
        flags = ", ".join(frame.flag_names) or "-"
        print(
            f"{item.t * 1000:7.2f} {frame.stream_id:6} {frame.length:6} {flags:12} {frame.data!r}"
        )
for response in responses:
    frames = [
        f for f in lab_server if isinstance(f, DataFrame) and f.stream_id == response.stream_id
    ]
    tokens = [f for f in frames if f.data]
    print(
        f"stream {response.stream_id}: {len(frames)} DATA frames, {len(tokens)} with data"
        f" (the tokens and the [DONE] line), last one END_STREAM:"
        f" {frames[-1].flag_names == ('END_STREAM',) and not frames[-1].data}"
    )

# %% [markdown]
# Each token costs 9 octets of frame header (HTTP/1.1's chunked coding costs a size line
# and two CRLFs per chunk). The first stream's tokens arrive `interval_ms` apart; the
# second stream's too, after the first has ended: the client asked for it only then.
# Notebook 06 runs streams at the same time on one connection.
#
# No WINDOW_UPDATE appears in the client's frames: h2 gives flow-control credit back in
# batches, once half of a window is used, and this little data never got there.
#
# ## 10. The annotated view
#
# `lab.notebook.show` renders the whole trace: each direction's bytes grouped into the
# preface and frames, and under each HEADERS frame (marked `↳`) the HPACK
# representations, each at its byte range on the wire.

# %%
show(trace)

# %% [markdown]
# ## Clean up

# %%
stop_server()
