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
# # 07 · MCP Streamable HTTP on the wire
#
# The Model Context Protocol (MCP) lets an AI application call the tools of a server.
# Its messages are JSON-RPC 2.0; its HTTP transport, *Streamable HTTP*, is one endpoint
# path, here `/mcp`, and everything the earlier notebooks showed: JSON bodies with
# `Content-Length`, and Server-Sent Events in chunked coding when a reply takes a while.
#
# The lab's `/mcp` speaks two revisions of the transport side by side:
#
# - **2025-11-25**, with sessions: the client starts with `initialize`, the server hands
#   out an `Mcp-Session-Id`, and every later request carries it. Every SSE event has an
#   id, so a stream cut by a dropped connection can be resumed with `GET` and
#   `Last-Event-ID`;
# - **2026-07-28**, stateless: no handshake and no session. Each request carries the
#   revision and the client's capabilities in its own `_meta`, and mirrors its method
#   (and tool name) in headers that a proxy can route on.
#
# This notebook runs both against a lab server on 127.0.0.1 with the lab's own raw
# HTTP/1.1 client, and reads every number off the traces of those connections:
#
# 1. the initialize exchange, and the session header on the requests after it;
# 2. a tool call streamed as SSE: the priming event, progress notifications, the result,
#    the end of the stream;
# 3. a stream cut mid-call and resumed;
# 4. the same tool call under 2026-07-28, compared with the 2025-11-25 one;
# 5. the end of the session.

# %%
import json

from lab.capture.annotate import annotate
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.capture.views import escape_bytes
from lab.client.http1 import open_connection
from lab.client.sse import event_source
from lab.notebook import run, show, start_server, stop_server
from lab.wire.http1 import HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested
from lab.wire.sse import Dispatch, SSEDecoder

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url, "- the MCP endpoint is", server.url + "/mcp")

# %% [markdown]
# ## 1. The initialize exchange
#
# Each client message is its own `POST /mcp` with a JSON body and an `Accept` header that
# lists both `application/json` and `text/event-stream`: the server picks which of the two
# a reply gets. The client below sends three messages on one keep-alive connection:
#
# 1. `initialize` (a request: it has an `id`) with the revision it wants, its capabilities
#    and its name;
# 2. `notifications/initialized` (a notification: no `id`, so no JSON-RPC response);
# 3. `tools/list`, now carrying the session id it was given, and the revision.

# %%
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
MCP_POST = [
    ("accept", "application/json, text/event-stream"),
    ("content-type", "application/json"),
]
CLIENT_INFO = {"name": "notebook-07", "version": "0.1"}


def rpc(method, params=None, id=None):
    """One JSON-RPC message as bytes: a request with an ``id``, a notification without."""
    message = {"jsonrpc": "2.0"}
    if id is not None:
        message["id"] = id
    message["method"] = method
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


async def handshake(rec):
    """initialize, notifications/initialized and tools/list on one connection."""
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO}
        init = await conn.request("POST", "/mcp", MCP_POST, rpc("initialize", params, 1))
        session = [
            ("mcp-session-id", init.header("mcp-session-id")),
            ("mcp-protocol-version", LEGACY),
        ]
        done = rpc("notifications/initialized")
        note = await conn.request("POST", "/mcp", [*MCP_POST, *session], done)
        tools = await conn.request("POST", "/mcp", [*MCP_POST, *session], rpc("tools/list", {}, 2))
    return session, [init, note, tools]


hello = Recorder(Trace(name="handshake"))
session_headers, replies = run(handshake, hello)
session_id = session_headers[0][1]
for reply in replies:
    ctype = reply.header("content-type") or "(no body)"
    print(f"HTTP/1.1 {reply.status} {reply.reason:9}  {ctype:18} {len(reply.body):4} body bytes")
init_result = json.loads(replies[0].body)["result"]
print()
print("negotiated revision:", init_result["protocolVersion"])
print("server:", init_result["serverInfo"]["name"], "- capabilities:", init_result["capabilities"])
print("tools:", [tool["name"] for tool in json.loads(replies[2].body)["result"]["tools"]])
print()
print(f"mcp-session-id: {session_id}")
print(
    f"  {len(session_id)} characters, all visible ASCII (0x21-0x7E):",
    all(0x21 <= ord(c) <= 0x7E for c in session_id),
)

# %% [markdown]
# The whole connection, annotated: every byte range that crossed the socket and what it
# means. Look for the `mcp-session-id` field in the head of the first response, and for
# the `202 Accepted` with `content-length: 0` that answers the notification.

# %%
show(hello.trace)

# %% [markdown]
# ### The session header on later requests
#
# Read back from the bytes the client sent: each request's JSON-RPC method and id, and
# which MCP headers it carried. The server answers a later request without
# `Mcp-Session-Id` with 400 and an unknown id with 404 (section 5 shows the 404).


# %%
def requests_in(trace):
    """Each request of the trace: its request line, header fields and body bytes."""
    out = []
    for ac in annotate(trace):
        wire = ac.conn.client_to_server()
        for seg in ac.segments(from_client=True):
            if isinstance(seg, RequestLine):
                out.append({"line": seg, "headers": [], "body": b""})
            elif isinstance(seg, HeaderField):
                out[-1]["headers"].append((seg.name.lower(), seg.value))
            elif seg.kind == "body-data":
                out[-1]["body"] += wire[seg.start : seg.end]
    return out


def mcp_headers(request):
    return {name: value for name, value in request["headers"] if name.startswith("mcp-")}


print(f"{'method':26} {'id':>3}  {'mcp-session-id':34} mcp-protocol-version")
for request in requests_in(hello.trace):
    message = json.loads(request["body"])
    headers = mcp_headers(request)
    sent = headers.get("mcp-session-id")
    if sent is None:
        shown = "-"
    else:
        shown = sent[:8] + "…" + (" (the one assigned)" if sent == session_id else " (another)")
    version = headers.get("mcp-protocol-version", "-")
    print(f"{message['method']:26} {message.get('id', '-'):>3}  {shown:34} {version}")

# %% [markdown]
# ## 2. A tool call, streamed
#
# The server's `stream_tokens` tool produces the lab's deterministic reply one token at a
# time. A call that asks for progress (`_meta.progressToken`) gets a `text/event-stream`
# reply instead of one JSON body: every token becomes a `notifications/progress` on the
# stream, and the JSON-RPC response comes last. The helper below sends a `tools/call` and
# reads the reply's events with the lab's SSE decoder; `stop_after` makes it hang up
# after that many events (used in section 3).

# %%
CALL_ID = 3
CALL_ARGS = {"prompt": "mcp on the wire", "n": 5, "interval_ms": 30}


def tool_call(id, arguments, meta=None):
    params = {
        "name": "stream_tokens",
        "arguments": arguments,
        "_meta": {**(meta or {}), "progressToken": f"progress-{id}"},
    }
    return rpc("tools/call", params, id)


async def call_streamed(rec, headers, body, stop_after=None):
    """POST ``body``; read the SSE reply to its end (or ``stop_after`` events)."""
    events = []
    decoder = SSEDecoder()

    def on_piece(data):
        for seg in decoder.feed(data):
            if isinstance(seg, Dispatch) and seg.event is not None:
                events.append(seg.event)
        return stop_after is not None and len(events) >= stop_after

    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.send_request("POST", "/mcp", [*MCP_POST, *headers], body)
        response = await conn.read_head()
        await conn.read_body(response, on_piece)
    return response, events


legacy_call = Recorder(Trace(name="tools/call, 2025-11-25"))
legacy_reply, legacy_events = run(
    call_streamed, legacy_call, session_headers, tool_call(CALL_ID, CALL_ARGS)
)
print(f"HTTP/1.1 {legacy_reply.status} {legacy_reply.reason}")
for name, value in legacy_reply.headers:
    print(f"  {name}: {value}")
print(f"{len(legacy_events)} events; the response ended properly: {legacy_reply.complete}")

# %% [markdown]
# Each event, as the annotated trace has it: when its blank line arrived (ms since the
# request was sent), its id, the bytes of its SSE lines, and what it carries.


# %%
def sse_events(trace):
    """(time, event, SSE bytes) per dispatched event of the trace's server responses, and
    the time of each response's last chunk."""
    out, last_chunks = [], []
    for ac in annotate(trace):
        sent = next(a.t for a in ac.items if a.from_client)
        size = 0
        for item in ac.items:
            seg = item.segment
            if item.from_client:
                continue
            if isinstance(seg, Nested):
                size += len(seg.data)
                if isinstance(seg.unit, Dispatch):
                    if seg.unit.event is not None:
                        out.append(((item.t - sent) * 1000, seg.unit.event, size))
                    size = 0
            elif seg.kind == "last-chunk":
                last_chunks.append((item.t - sent) * 1000)
    return out, last_chunks


def what(event):
    if not event.data:
        return "priming event: an id and empty data"
    message = json.loads(event.data)
    if message.get("method") == "notifications/progress":
        p = message["params"]
        return f"progress {p['progress']}/{p['total']}: {p['message']!r}"
    if message.get("method"):
        return message["method"]
    text = message["result"]["content"][0]["text"]
    return f"response to id {message['id']}: {text!r}"


def print_events(trace):
    events, last_chunks = sse_events(trace)
    print(f"{'ms':>7}  {'id':5} {'SSE B':>5}  carries")
    for t, event, size in events:
        print(f"{t:7.2f}  {event.last_event_id or '-':5} {size:5}  {what(event)}")
    for t in last_chunks:
        print(f"{t:7.2f}  {'':5} {'':5}  last chunk: the response, and the stream, end")
    return events


legacy_table = print_events(legacy_call.trace)
first_bytes = legacy_reply.body[: legacy_reply.body.index(b"\n\n") + 2]
print()
print("the priming event's bytes:", escape_bytes(first_bytes))

# %% [markdown]
# Read it from the top:
#
# - **the priming event** comes first, before the tool has produced anything: an `id:`,
#   a `retry:` (how long a client should wait before reconnecting) and an empty `data:`.
#   It gives the client an event id to resume from even if the connection drops before
#   the first real event;
# - **the ids** are `<stream>-<n>`: the stream's number in the session, then the event's
#   place in it. A `Last-Event-ID` therefore tells the server which stream was cut, and
#   where;
# - **progress notifications**, one per token, each naming the request's `progressToken`;
# - **the JSON-RPC response**, with the request's id. The stream ends right after it:
#   the chunked body's last chunk.

# %%
tokens = [json.loads(e.data)["params"]["message"] for _, e, _ in legacy_table[1:-1]]
result = json.loads(legacy_table[-1][1].data)["result"]["content"][0]["text"]
print("the result text is the progress messages joined:", result == "".join(tokens))

# %% [markdown]
# ## 3. A cut stream, resumed
#
# In 2025-11-25 a dropped connection does not cancel the request: the tool keeps running
# and the server keeps its events. Here the client starts a slower call and hangs up
# after three events. A second call runs to its end meanwhile, on a stream of its own.
# Then the client asks for the rest of the first one the way an `EventSource` would:
# `GET /mcp` with `Last-Event-ID` set to the last id it saw.

# %%
# Tokens 80 ms apart: the client hangs up after the priming event and two progress
# notifications, 80 ms before the third would come.
SLOW = {"prompt": "resume me", "n": 6, "interval_ms": 80}
CUT_ID, OTHER_ID = 4, 5


async def cut_and_resume(rec):
    cut, seen = await call_streamed(rec, session_headers, tool_call(CUT_ID, SLOW), stop_after=3)
    quick = {"prompt": "meanwhile", "n": 2, "interval_ms": 0}
    _, other_events = await call_streamed(rec, session_headers, tool_call(OTHER_ID, quick))
    resumed = await event_source(
        server.host, server.port, "/mcp", headers=session_headers,
        last_event_id=seen[-1].last_event_id, max_connections=1, recorder=rec,
    )  # fmt: skip
    return cut, seen, other_events, resumed


resume = Recorder(Trace(name="cut and resumed"))
cut, seen, other_events, resumed = run(cut_and_resume, resume)
cut_stream = seen[0].last_event_id.split("-")[0]
print(f"cut connection:     ids {[e.last_event_id for e in seen]}, complete: {cut.complete}")
print(f"the other call:     ids {[e.last_event_id for e in other_events]}")
get_request = requests_in(resume.trace)[-1]
print(
    f"resuming request:   {get_request['line'].method} {get_request['line'].target}"
    f" with last-event-id: {dict(get_request['headers'])['last-event-id']}"
)
print(f"resumed connection: ids {[e.last_event_id for e in resumed.events]}")
print(f"  status {resumed.responses[0].status}, complete: {resumed.responses[0].complete}")

# %% [markdown]
# The resumed response opens with a priming event of its own, carrying the id the client
# sent, and then has exactly what the cut connection missed. Checked:

# %%
resumed_ids = [e.last_event_id for e in resumed.events]
print(
    f"only stream {cut_stream} was replayed:",
    all(i.split("-")[0] == cut_stream for i in resumed_ids),
)
repeated = {e.last_event_id for e in seen} & set(resumed_ids[1:])
print("events the cut connection had come again:", sorted(repeated) or "none")
messages = [json.loads(e.data) for e in [*seen, *resumed.events] if e.data]
progress = [m["params"]["progress"] for m in messages if "params" in m]
print("progress notifications, both connections together:", progress)
print(f"then the response, id {messages[-1]['id']}: the cut call's id was {CUT_ID}")


# %% [markdown]
# Are the replayed events the ones the server would have sent on the first connection?
# Asking again from the stream's priming id gives the whole stream as the server keeps
# it; the bytes of the cut connection plus those of the resumed one (without its priming
# event) must be exactly that.


# %%
async def replay_from(rec, last_id):
    return await event_source(
        server.host, server.port, "/mcp", headers=session_headers,
        last_event_id=last_id, max_connections=1, recorder=rec,
    )  # fmt: skip


replay = run(replay_from, Recorder(Trace(name="replay")), f"{cut_stream}-0")
whole = replay.responses[0].body
cut_body = cut.body
resumed_body = resumed.responses[0].body
without_priming = resumed_body[resumed_body.index(b"\n\n") + 2 :]
print(f"replay from {cut_stream}-0: {len(whole)} body bytes")
print(
    f"cut ({len(cut_body)} B) + resumed without its priming event ({len(without_priming)} B)"
    f" = the replay, byte for byte: {cut_body + without_priming == whole}"
)

# %% [markdown]
# The three connections of the cut-and-resume, as a sequence diagram. On the first, the
# client closes and the annotator marks the response as cut short; on the third, the
# events come one token interval apart again: the call was still running while nobody
# was reading it.

# %%
show(resume.trace, "sequence")

# %% [markdown]
# ## 4. The same call under 2026-07-28
#
# No `initialize`, no session: nothing has to come before a call, and this server answers
# one without any exchange first. The client below still asks `server/discover` (what
# does the server support?) and `tools/list`, as section 1 did. Every request carries
# the revision in its `MCP-Protocol-Version` header *and* in `params._meta`, with the
# client's capabilities and identity, and repeats its method in `Mcp-Method` and, for
# `tools/call`, the tool's name in `Mcp-Name`. The server checks that headers and body
# agree (400 if not). Then the very call of section 2: same id, same arguments.

# %%
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
}
modern = [("mcp-protocol-version", MODERN)]


async def discover(rec):
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        replies = []
        for id, method in enumerate(("server/discover", "tools/list"), 1):
            headers = [*MCP_POST, *modern, ("mcp-method", method)]
            body = rpc(method, {"_meta": MODERN_META}, id)
            replies.append(await conn.request("POST", "/mcp", headers, body))
    return [json.loads(reply.body)["result"] for reply in replies]


setup = Recorder(Trace(name="server/discover and tools/list"))
found, listed = run(discover, setup)
print("supported versions:", found["supportedVersions"])
print("tools:", [tool["name"] for tool in listed["tools"]])
print(f"tools/list: result type {listed['resultType']}, cacheable for {listed['ttlMs']} ms")

modern_call = Recorder(Trace(name="tools/call, 2026-07-28"))
call_headers = [*modern, ("mcp-method", "tools/call"), ("mcp-name", "stream_tokens")]
modern_reply, modern_events = run(
    call_streamed, modern_call, call_headers, tool_call(CALL_ID, CALL_ARGS, MODERN_META)
)
print()
modern_table = print_events(modern_call.trace)

# %% [markdown]
# ### Side by side
#
# Everything in the table is read from the two calls' traces (one connection each, one
# request, one streamed response) and, for the last row, from the traces of what each
# client sent before its call (section 1's connection, and the one above).


# %%
def wire(trace):
    """Bytes each way on the trace's connections, and the response heads' share."""
    up = sum(len(c.client_to_server()) for c in trace.connections)
    down = sum(len(c.server_to_client()) for c in trace.connections)
    head = sum(
        s.nbytes
        for ac in annotate(trace)
        for s in ac.segments(from_client=False)
        if isinstance(s, StatusLine | HeaderField) or s.kind == "head-end"
    )
    return up, down, head


def short(key):
    return key.removeprefix("io.modelcontextprotocol/")


def mcp_header_bytes(trace):
    """Bytes of the request's MCP header lines (name, value and CRLF)."""
    return sum(
        s.nbytes
        for ac in annotate(trace)
        for s in ac.segments(from_client=True)
        if isinstance(s, HeaderField) and s.name.lower().startswith("mcp-")
    )


def describe(trace, reply, events, setup_trace):
    (request,) = requests_in(trace)
    meta = json.loads(request["body"])["params"]["_meta"]
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    assert meta_bytes in request["body"]  # the object exactly as it was sent
    headers = mcp_headers(request)
    ids = [e.last_event_id for e in events if e.last_event_id]
    final = json.loads(events[-1].data)
    up, down, head = wire(trace)
    setup_up, setup_down, _ = wire(setup_trace)
    before = [json.loads(r["body"])["method"] for r in requests_in(setup_trace)]
    session = headers.get("mcp-session-id")
    return {
        "MCP request headers": ", ".join(headers) or "none",
        "MCP header bytes": str(mcp_header_bytes(trace)),
        "Mcp-Session-Id": f"{len(session)} chars" if session else "none",
        "_meta keys": ", ".join(short(k) for k in meta),
        "_meta bytes": str(len(meta_bytes)),
        "response content-type": reply.header("content-type"),
        "SSE events": str(len(events)),
        "events with an id": f"{len(ids)} ({ids[0]} .. {ids[-1]})" if ids else "0",
        "priming event": "yes" if any(not e.data for e in events) else "no",
        "progress messages": "".join(
            json.loads(e.data)["params"]["message"] for e in events if "progress" in e.data
        ),
        "result keys": ", ".join(final["result"]),
        "request bytes": str(up),
        "response bytes (head)": f"{down} ({head})",
        "sent before the call": ", ".join(m.removeprefix("notifications/") for m in before),
        "  its bytes, up + down": f"{setup_up} + {setup_down}",
    }


old = describe(legacy_call.trace, legacy_reply, legacy_events, hello.trace)
new = describe(modern_call.trace, modern_reply, modern_events, setup.trace)
print(f"{'':24} {LEGACY:44} {MODERN}")
print(f"{'':24} {'-' * 44} {'-' * 44}")
for row in old:
    mark = " " if old[row] == new[row] else "*"
    print(f"{mark}{row:23} {old[row]:44} {new[row]}")
print("\n* rows that differ")

# %% [markdown]
# What the table says (the sentences are computed from its numbers):

# %%
old_up, old_down, _ = wire(legacy_call.trace)
new_up, new_down, _ = wire(modern_call.trace)
print(f"the 2026-07-28 request is {new_up - old_up:+} bytes against the 2025-11-25 one:")
for row in ("MCP header bytes", "_meta bytes"):
    print(f"  {row}: {int(new[row]) - int(old[row]):+}")
print(f"the 2026-07-28 response is {new_down - old_down:+} bytes against the 2025-11-25 one")
old_ids = sum(1 for e in legacy_events if e.last_event_id)
new_ids = sum(1 for e in modern_events if e.last_event_id)
print(
    f"2025-11-25 sent {old_ids} id: lines, {old['priming event']} priming event: a cut stream"
    f" can be resumed; 2026-07-28 sent {new_ids}, {new['priming event']} priming event:"
    " closing its stream cancels the call instead"
)
same_tokens = old["progress messages"] == new["progress messages"]
print("the tool's output is the same under both revisions:", same_tokens)

# %% [markdown]
# 2026-07-28 trades the session for self-description: the server keeps no state and
# there is nothing to resume, but every request repeats the revision, the capabilities
# and the client's identity (the `_meta` rows), and its headers let a proxy route on
# method and tool without reading the body. 2025-11-25 needs its handshake before the
# first call and an id on every event, and in return a cut stream can be resumed.
#
# ## 5. Ending the session
#
# A 2025-11-25 client that is done says so with `DELETE`; the session id is dead after it.


# %%
async def end_session(rec):
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        deleted = await conn.request("DELETE", "/mcp", session_headers)
        after = await conn.request(
            "POST", "/mcp", [*MCP_POST, *session_headers], rpc("ping", {}, 6)
        )
    return deleted, after


deleted, after = run(end_session, Recorder(Trace(name="delete")))
print(f"DELETE /mcp: {deleted.status} {deleted.reason}")
print(f"then ping with the same id: {after.status} {after.reason} {after.body.decode()}")

# %% [markdown]
# ## Clean up

# %%
stop_server()
