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
# # 03 · Server-Sent Events on the wire
#
# Server-Sent Events (SSE) is how most chat backends stream a reply to a browser: an
# ordinary HTTP response with `Content-Type: text/event-stream` whose body never seems to
# end. The body is UTF-8 text in lines; a blank line ends each event (WHATWG HTML §9.2):
#
# ```
# : a comment, ignored         (servers send these as heartbeats)
# retry: 3000                  the reconnection time, in ms
# event: progress              the event's type (default: message)
# id: 41                       the last event ID, sent back when reconnecting
# data: first line             data lines are joined with "\n"
# data: second line
#                              a blank line: dispatch the event
# ```
#
# This notebook decodes such a stream by hand, then reads the lab's `/events` endpoint
# twice: with the lab's own EventSource-style client, whose trace shows every byte, and
# with a real browser, headless Chromium, whose `EventSource` reports what it dispatched.
# The two are put side by side, including the part a browser does on its own: reconnect,
# send `Last-Event-ID`, and stop when the server answers 204.
#
# **Sections 4 to 6 need Chromium**, Debian's package `chromium` (`apt-get install
# chromium`, as root), and playwright, which drives it and comes with the project's `test`
# extra (`pip install -e '.[test]'`). `python3 dev.py test` installs both (Chromium when
# run as root); `python3 dev.py notebooks` installs neither. Sections 1 to 3 need neither:
# without them, the cell that starts the browser stops with a message naming what to
# install.

# %%
import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

from lab.apps.tokens import tokens_for
from lab.capture import annotate, load
from lab.client.sse import event_source
from lab.notebook import run, show, start_server, stop_server
from lab.wire.http1 import HeaderField, RequestLine, StatusLine
from lab.wire.segment import Nested
from lab.wire.sse import Dispatch, SSEDecoder, parse

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url)

# %% [markdown]
# ## 1. An event stream, line by line
#
# A small stream written by hand, with the cases that trip up home-made parsers: a
# comment, a `retry` block with no data, a named event whose data spans two lines, a
# `data:` with no space after the colon, and lines with no colon at all. The lab's
# decoder (`lab.wire.sse.SSEDecoder`) follows the WHATWG parsing algorithm step by step and
# returns one segment per line, each with the byte range it covers and what it did.

# %%
by_hand = (
    b": heartbeat\n"
    b"retry: 2500\n"
    b"\n"
    b"event: progress\n"
    b"id: 7\n"
    b'data: {"step": 1,\n'
    b'data:  "of": 2}\n'
    b"\n"
    b"data:no space after the colon\n"
    b"\n"
    b"id\n"
    b"data\n"
    b"\n"
)
decoder = SSEDecoder()
for segment in decoder.feed(by_hand):
    line = by_hand[segment.start : segment.end]
    print(f"{segment.start:3}..{segment.end:<3} {line!r:32} {segment.note()}")
print("\nreconnection time after this stream:", decoder.retry, "ms")

# %% [markdown]
# `lab.wire.sse.parse` gives just the events a browser would dispatch. Note the second
# `data` line: one space after the colon is removed, the second space is data. The `id`
# with no colon sets the last event ID to the empty string, and `data` with no colon
# dispatches an event whose data is empty. The `retry` block dispatches nothing.

# %%
events = parse(by_hand)
print(f"{'type':10} {'lastEventId':12} data")
for event in events:
    print(f"{event.type:10} {event.last_event_id!r:12} {event.data!r}")
one_at_a_time = SSEDecoder()
split = [s for i in range(len(by_hand)) for s in one_at_a_time.feed(by_hand[i : i + 1])]
same = [s.event for s in split if isinstance(s, Dispatch) and s.event] == events
print(f"\nfed one byte at a time, the decoder dispatches the same events: {same}")

# %% [markdown]
# ## 2. Heartbeats and multi-line data from the lab server
#
# `GET /events` sends numbered events with an `id`. With `multiline=1` each event's JSON
# is indented, so it takes several `data:` lines; `heartbeat_ms` is how long the server
# stays silent before it sends a comment line, which keeps proxies from dropping an idle
# connection. Here the events are further apart than the heartbeat, so comments appear
# between them.
#
# The lab's client `lab.client.sse.event_source` reads the stream as an EventSource
# would; it stops when the event with id 2 has arrived and its response has ended. The
# annotated view shows the HTTP framing (chunk sizes) and, nested under each chunk with
# `↳`, the SSE lines inside it.

# %%
heartbeats = run(
    event_source,
    server.host,
    server.port,
    "/events?n=2&interval_ms=60&heartbeat_ms=25&multiline=1&stream=nb03-multi",
    until=lambda event: event.last_event_id == "2",
    name="heartbeats",
)
show(heartbeats.trace)
for event in heartbeats.events:
    print(f"event {event.last_event_id}: {event.data!r}")

# %% [markdown]
# Each `data:` line adds one line to the event's data; the blank line dispatches it with
# the lines joined by `\n`, which is exactly the indented JSON (the `data` strings above).
# The comment lines (`: heartbeat`) are bytes on the wire and nothing in the events.
#
# ## 3. Reconnecting with Last-Event-ID, and the 204 that stops it
#
# An EventSource does not give up when a response ends: it waits for the reconnection
# time (set by `retry:`), connects again, and sends the last event ID it saw in a
# `Last-Event-ID` header, so that the server can go on from there. A server that has
# nothing more to say answers `204 No Content`, and the EventSource closes for good.
#
# `/events?n=3&total=6` sends 3 events per response and 6 in all, so a client needs two
# responses of events and then gets the 204. `retry_ms=100` makes the reconnects quick.
# The lab client puts every connection it makes into one trace.

# %%
STREAM = "nb03-resume"
SRC = f"/events?n=3&total=6&interval_ms=20&retry_ms=100&stream={STREAM}"
lab_client = run(event_source, server.host, server.port, SRC, name="resume")
show(lab_client.trace)
print("the lab client stopped:", lab_client.stopped)


# %% [markdown]
# The view is long; the requests and responses in it, in one table (read from the same
# annotated trace: each request line, its `Last-Event-ID` header, the status line of the
# response, and the SSE events the decoder found in the response's body):


# %%
def exchanges(trace):
    """Each request/response of a trace, with its Last-Event-ID and the SSE events."""
    rows = []
    for conn in annotate(trace):
        requests, responses = [], []
        for item in conn.items:
            seg = item.segment
            if isinstance(seg, RequestLine):
                requests.append(
                    {"trace": trace.name, "t": item.t, "target": seg.target, "last-event-id": None}
                )
            elif isinstance(seg, HeaderField) and item.from_client:
                if seg.name.lower() == "last-event-id":
                    requests[-1]["last-event-id"] = seg.value
            elif isinstance(seg, StatusLine):
                responses.append({"status": seg.status, "events": [], "end": item.t})
            elif not item.from_client and responses:
                responses[-1]["end"] = item.t  # the response's last bytes so far
                if isinstance(seg, Nested) and isinstance(seg.unit, Dispatch) and seg.unit.event:
                    responses[-1]["events"].append(seg.unit.event)
        rows += [{**req, **resp} for req, resp in zip(requests, responses, strict=False)]
    return rows


def print_exchanges(rows):
    """One line per request: when it was made, and how long after the previous response
    ended (ms, on its trace's time axis), its Last-Event-ID, the status, the event ids."""
    print(f"{'ms':>7} {'after':>6}  {'GET':24} {'Last-Event-ID':>13} {'status':>6}  event ids")
    previous = None
    for row in rows:
        after = ""
        if previous is not None and previous["trace"] == row["trace"]:
            after = f"{(row['t'] - previous['end']) * 1000:6.1f}"
        previous = row
        ids = ", ".join(e.last_event_id for e in row["events"]) or "-"
        path = row["target"].partition("?")[0]
        last_id = row["last-event-id"] or "(none)"
        when = row["t"] * 1000
        print(f"{when:7.1f} {after:>6}  {path:24} {last_id:>13} {row['status']:6}  {ids}")


print_exchanges(exchanges(lab_client.trace))

# %% [markdown]
# Three connections: the first without `Last-Event-ID`, the second sending the id of the
# last event of the first, and the third, after the last event, getting the 204. The
# `after` column is the time from the end of one response to the next request: the
# reconnection time that the stream's `retry:` field set, plus the time to connect.
#
# ## 4. The same stream in a real browser
#
# Now the same thing in headless Chromium, the Debian build in `/usr/bin/chromium`,
# driven by playwright. The lab serves a small page, `/pages/eventsource.html?src=...`,
# that opens `new EventSource(src)` and records every event and state change into
# `window.lab`, which playwright reads back as plain data.
#
# One practical point: this kernel runs an asyncio event loop in its main thread, and
# playwright's sync API refuses to run inside one; so the browser lives in a worker
# thread of its own (a one-thread executor, which has no event loop) and cells hand it
# work. The flags are the ones Chromium needs to start as root in a container and to make
# no connections of its own (playwright adds `--headless` and a fresh profile directory).
# The browser is the system's: playwright's own download (`playwright install`) is not
# used.

# %%
CHROMIUM = shutil.which("chromium") or shutil.which("/usr/bin/chromium")
if CHROMIUM is None:
    raise RuntimeError(
        "Chromium not found: sections 4 to 6 need the Debian package chromium; "
        "install it with: apt-get install chromium (as root)"
    )
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    raise RuntimeError(
        "playwright not found: sections 4 to 6 drive Chromium with it; install it with "
        "the project's test extra: .venv/bin/python -m pip install -e '.[test]'"
    ) from None

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # any one wait on a page
CALL_TIMEOUT = 60  # any one call into the browser thread, in seconds


class Chromium:
    """Headless Chromium, driven by playwright's sync API in a thread of its own."""

    def __init__(self):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._closed = False
        self._playwright, self.browser = self._call(self._launch)

    def _call(self, fn, *args):
        return self._thread.submit(fn, *args).result(timeout=CALL_TIMEOUT)

    @staticmethod
    def _launch():
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        return playwright, browser

    def visit(self, url, until, *, quiet_ms=0, then=""):
        """Load ``url`` in a fresh context; wait for the JS condition ``until``, then
        ``quiet_ms`` more; run the JS ``then``; return ``window.lab``. The context (and
        with it every connection it made) is closed before this returns."""

        def go():
            context = self.browser.new_context()
            try:
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                page.goto(url)
                page.wait_for_function(until)
                if quiet_ms:
                    page.wait_for_timeout(quiet_ms)
                if then:
                    page.evaluate(then)
                return page.evaluate("window.lab")
            finally:
                context.close()

        return self._call(go)

    def close(self):
        """Close the browser and stop its thread (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True

        def stop():
            self.browser.close()
            self._playwright.stop()

        self._call(stop)
        self._thread.shutdown()


if (previous := globals().get("chromium")) is not None:
    previous.close()  # re-running this cell: the old browser goes first
chromium = Chromium()
print("Chromium", chromium.browser.version)

# %% [markdown]
# The browser gets a lab server of its own, which writes a trace of each connection
# (`trace_dir`): that is how we see what Chromium sent, byte for byte. A trace file is
# written when its connection closes, so the server is stopped before the traces are read.

# %%
TRACE_DIR = Path(tempfile.mkdtemp(prefix="streamlab-03-"))
stop_server("browser")  # re-running this cell: start afresh
browser_server = start_server("browser", trace_dir=TRACE_DIR)


def page_url(srv, name, **query):
    return f"{srv.url}/pages/{name}?{urlencode(query, quote_via=quote)}"


QUIET_MS = 1000  # after the 204: ten reconnection times for a request that must not come
seen = chromium.visit(
    page_url(browser_server, "eventsource.html", src=SRC),
    "window.lab.closed",
    quiet_ms=QUIET_MS,
)
stop_server("browser")
traces = [load(path) for path in sorted(TRACE_DIR.glob("*.trace"))]
chromium_rows = [row for trace in traces for row in exchanges(trace)]

print("what the page recorded, in order (ms since the EventSource was created):")
timeline = [(s["t"], s["what"], s["readyState"], "") for s in seen["states"]]
timeline += [(e["t"], e["type"], e["readyState"], e["lastEventId"]) for e in seen["events"]]
STATE_NAMES = ["CONNECTING", "OPEN", "CLOSED"]
for t, what, state, last_id in sorted(timeline):
    note = f"lastEventId {last_id!r}" if what == "message" else ""
    print(f"{t:8.1f}  {what:8} readyState {state} {STATE_NAMES[state]:10} {note}")
print(f"\n{len(traces)} TCP connection(s) from Chromium; its requests, as the server got them:")
print_exchanges(chromium_rows)
events_requests = [r for r in chromium_rows if r["target"] == SRC]
print(
    f"\nEventSource requests: {len(events_requests)}; in the {QUIET_MS} ms after the"
    f" 204, further requests: {len(events_requests) - 3}"
)

# %% [markdown]
# The times in the first list are when the page's script ran for each event. Right after
# the page has loaded the renderer is still busy, and the first events can wait and then
# run together (the same stream opened later comes at the server's pace).
#
# In the second table, the first `after` is the time the page took to load and run its
# script; the others are the reconnects.
#
# The browser did what the lab client did: two responses of events, a reconnect with
# `Last-Event-ID: 3`, a last one with `Last-Event-ID: 6` that got the 204, after which
# `readyState` is 2 (CLOSED) and no request came. Each end of a response is an `error`
# event with `readyState` 0 (CONNECTING: it will reconnect); the 204 is an `error` with
# `readyState` 2. Chromium also kept its TCP connection alive: the page and all three
# EventSource requests share it, where the lab client opened a new connection each time.
# (The second response came from the stream's event log: the lab client's run had already
# made events 4 to 6 of this stream, so the server replayed them at once.)
#
# Now the events side by side: what Chromium dispatched (`MessageEvent.type`, `.data`,
# `.lastEventId`), what the lab's decoder makes of the bytes the server sent to Chromium
# (read from the server's trace), and what the lab client got in section 3.

# %%
in_chromium = [(e["type"], e["data"], e["lastEventId"]) for e in seen["events"]]
on_the_wire = [(e.type, e.data, e.last_event_id) for r in events_requests for e in r["events"]]
in_lab_client = [(e.type, e.data, e.last_event_id) for e in lab_client.events]


def verdict(events, i, event):
    return "same" if events[i : i + 1] == [event] else "DIFFERS"


print(f"{'lastEventId':>11} {'type':8} {'data (Chromium)':52} {'decoder':>8} {'lab client':>11}")
for i, (kind, data, last_id) in enumerate(in_chromium):
    event = (kind, data, last_id)
    print(
        f"{last_id:>11} {kind:8} {data:52} {verdict(on_the_wire, i, event):>8}"
        f" {verdict(in_lab_client, i, event):>11}"
    )
agree = in_chromium == on_the_wire == in_lab_client
print(f"\n{len(in_chromium)} events in Chromium, {len(on_the_wire)} decoded from its bytes,")
print(f"{len(in_lab_client)} in the lab client; all the same: {agree}")

# %% [markdown]
# ## 5. An event named `error` is not an error
#
# `/progress` sends named events: `event: progress` for each step, then `event: result`;
# with `fail_at=K` it sends `event: error` at step K and ends. The page listens for
# `error` with `addEventListener("error", ...)`, and so receives two different things
# under that name: the server's event, a `MessageEvent` with data, and the EventSource's
# own error event when the connection ends, a plain `Event` without data. The page tells
# them apart with `instanceof MessageEvent`; once it has seen both, it closes the source
# (otherwise the browser would reconnect and start over).

# %%
for src in ("/progress?n=3&interval_ms=10", "/progress?n=3&interval_ms=10&fail_at=2"):
    progress = chromium.visit(
        page_url(server, "eventsource.html", src=src),
        "window.lab.errors >= 1",
        then="window.labSource.close()",
    )
    print(src)
    for event in progress["events"]:
        print(f"  MessageEvent  {event['type']:9} data {event['data']}")
    ends = [s for s in progress["states"] if s["what"] == "error"]
    for end in ends:
        print(f"  Event         error     readyState {end['readyState']}: the connection ended")

# %% [markdown]
# ## 6. POST with fetch() and a stream reader
#
# `EventSource` can only `GET`, with no body and no headers of its own, so a chat front
# end that POSTs a prompt reads the SSE itself: `fetch()` and
# `response.body.getReader()`. The page `/pages/fetchstream.html` does that with
# `POST /chat` (`Accept: text/event-stream`) and records each `read()` that returned
# data. The text it collected goes through the lab's decoder here.

# %%
PROMPT, N, INTERVAL_MS = "hello", 5, 30
reply = chromium.visit(
    page_url(server, "fetchstream.html", prompt=PROMPT, n=N, interval_ms=INTERVAL_MS),
    "window.lab.done",
)
print(reply["status"], reply["contentType"], "error:", reply["error"])
print(f"{'ms':>7} {'bytes':>5}  text of the read")
for chunk in reply["chunks"]:
    print(f"{chunk['t']:7.1f} {chunk['size']:5}  {chunk['text']!r}")
chat_events = parse(reply["text"].encode("utf-8"))
tokens = [json.loads(e.data)["token"] for e in chat_events[:-1]]
print("\ndecoded:", [e.data for e in chat_events])
print("the tokens are the lab's reply for this prompt:", tokens == tokens_for(PROMPT, N))
print("last event:", chat_events[-1].data)

# %% [markdown]
# The reads come over time, about `interval_ms` apart, most with one event each: the
# browser hands the page the bytes as they arrive, which is what makes a reply appear
# token by token. A read with two events has bytes that arrived while the page was busy
# (near its start, as in section 4), or the last token and `[DONE]`, which the server
# sends back to back.
#
# ## Clean up
#
# Close the browser, stop the lab server, and remove the browser server's traces.

# %%
if (browser := globals().get("chromium")) is not None:  # None if section 4 could not start
    browser.close()
stop_server()
if (trace_dir := globals().get("TRACE_DIR")) is not None:
    shutil.rmtree(trace_dir, ignore_errors=True)
