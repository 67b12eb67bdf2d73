"""Small static HTML pages that let a real browser talk to the lab: ``GET /pages/<name>``.

A browser's EventSource and fetch() only run in a page, and a page served by the lab
itself is same-origin with every endpoint, so no CORS is involved. Each page does one
thing with the browser's own API and records what the browser reported in
``window.lab`` (plain data, for a test or a notebook to read with playwright's
``page.evaluate("window.lab")``), and prints the same in a ``<pre>`` so that a screenshot
shows it. Plain JavaScript, no build step, nothing loaded from anywhere else; the
``data:`` icon stops the browser from asking for /favicon.ico.

- ``eventsource.html?src=<url-encoded path>`` opens ``new EventSource(src)`` and records
  every ``message``, ``progress``, ``result`` and ``error`` event (``type``, ``data``,
  ``lastEventId``, ``readyState``, time), every ``open``, and every error of the
  connection itself. A server event named ``error`` and the EventSource's own error
  event share the name: the first is a ``MessageEvent`` with data, the second a plain
  ``Event``, and the page keeps them apart (``events`` versus ``errors``/``states``).
- ``fetchstream.html?prompt=..&n=..&interval_ms=..`` POSTs that JSON to ``/chat`` with
  ``Accept: text/event-stream`` and reads the body with ``response.body.getReader()``,
  recording each read (time, size, text), as a chat front end does: EventSource can only
  GET, with no body and no headers of its own.
- ``many.html?count=N&src=<url-encoded path>`` opens N EventSources at once, each to
  ``src`` with ``{i}`` replaced by its index (0..N-1), and records for each when it was
  created, when it opened, when its first message came, and how many messages and
  errors it saw (``window.lab.sources``; the EventSource objects are
  ``window.labSources``, for live ``readyState``). It shows the browser's connection
  limits: over HTTP/1.1 only a few streams per host are open at once, over HTTP/2 all.
"""

from __future__ import annotations

from typing import Final

from lab.apps.interface import HTTPError, Request, ResponseStream

__all__ = ["PAGES", "PREFIX", "page"]

PREFIX: Final = "/pages/"

# Times are milliseconds since the page started, to 0.1 ms (performance.now()).
_EVENTSOURCE_HTML: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamlab: EventSource</title>
<link rel="icon" href="data:,">
<style>body { font: 14px/1.4 monospace; margin: 1em; } pre { white-space: pre-wrap; }</style>
</head>
<body>
<h1>EventSource</h1>
<p>new EventSource(<code id="src"></code>), readyState <code id="state"></code></p>
<pre id="log"></pre>
<script>
"use strict";
const STATES = ["CONNECTING", "OPEN", "CLOSED"];
const src = new URLSearchParams(location.search).get("src") || "/events";
const t0 = performance.now();
// window.lab holds only plain data: what the browser reported, in order.
const lab = window.lab = {src: src, events: [], opens: 0, errors: 0, states: [], closed: false};
const source = window.labSource = new EventSource(src);
const logLines = document.getElementById("log");
document.getElementById("src").textContent = src;

function now() { return Math.round((performance.now() - t0) * 10) / 10; }

function show(line) {
  logLines.textContent += line + "\\n";
  document.getElementById("state").textContent = STATES[source.readyState];
}

function state(what) {
  const entry = {t: now(), what: what, readyState: source.readyState};
  lab.states.push(entry);
  show(`${entry.t} ms  ${what}  readyState ${entry.readyState} ${STATES[entry.readyState]}`);
}

function onEvent(e) {
  if (!(e instanceof MessageEvent)) {
    // The EventSource's own error event: the connection ended or failed. readyState says
    // which: CONNECTING (it will reconnect) or CLOSED (it gave up, e.g. on a 204).
    lab.errors += 1;
    state("error");
    if (source.readyState === EventSource.CLOSED) lab.closed = true;
    return;
  }
  const entry = {
    t: now(), type: e.type, data: e.data, lastEventId: e.lastEventId,
    readyState: source.readyState,
  };
  lab.events.push(entry);
  show(`${entry.t} ms  ${e.type}  lastEventId ${JSON.stringify(e.lastEventId)}  ${e.data}`);
}

source.addEventListener("open", () => { lab.opens += 1; state("open"); });
for (const type of ["message", "progress", "result", "error"]) {
  source.addEventListener(type, onEvent);
}
state("created");
</script>
</body>
</html>
"""

_FETCHSTREAM_HTML: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamlab: fetch + ReadableStream</title>
<link rel="icon" href="data:,">
<style>body { font: 14px/1.4 monospace; margin: 1em; } pre { white-space: pre-wrap; }</style>
</head>
<body>
<h1>fetch() + ReadableStream</h1>
<p>POST /chat, Accept: text/event-stream, body <code id="request"></code></p>
<pre id="log"></pre>
<script>
"use strict";
const query = new URLSearchParams(location.search);
const request = {
  prompt: query.get("prompt") || "hello",
  n: Number(query.get("n") || 5),
  interval_ms: Number(query.get("interval_ms") || 25),
};
// chunks: one entry per read() that returned data; data: the values of complete
// "data:" lines (a minimal reading of the SSE; the whole text is in `text`).
const lab = window.lab = {
  request: request, status: null, contentType: null, tHeaders: null,
  chunks: [], text: "", data: [], done: false, error: null,
};
const logLines = document.getElementById("log");
document.getElementById("request").textContent = JSON.stringify(request);
const t0 = performance.now();

function now() { return Math.round((performance.now() - t0) * 10) / 10; }
function show(line) { logLines.textContent += line + "\\n"; }

async function main() {
  const response = await fetch("/chat", {
    method: "POST",
    headers: {"Accept": "text/event-stream", "Content-Type": "application/json"},
    body: JSON.stringify(request),
  });
  lab.status = response.status;
  lab.contentType = response.headers.get("content-type");
  lab.tHeaders = now();
  show(`${lab.tHeaders} ms  ${lab.status} ${lab.contentType}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();  // UTF-8; {stream: true} keeps split characters
  let partial = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    const text = decoder.decode(value, {stream: true});
    const chunk = {t: now(), size: value.byteLength, text: text};
    lab.chunks.push(chunk);
    lab.text += text;
    show(`${chunk.t} ms  read ${chunk.size} bytes  ${JSON.stringify(text)}`);
    const lines = (partial + text).split(/\\r\\n|\\r|\\n/);
    partial = lines.pop();
    for (const line of lines) {
      if (line.startsWith("data:")) lab.data.push(line.slice(5).replace(/^ /, ""));
    }
  }
  lab.text += decoder.decode();
}

main()
  .catch((e) => { lab.error = String(e); show(`error: ${lab.error}`); })
  .finally(() => { lab.done = true; show(`${now()} ms  done`); });
</script>
</body>
</html>
"""

_MANY_HTML: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamlab: many EventSources</title>
<link rel="icon" href="data:,">
<style>body { font: 14px/1.4 monospace; margin: 1em; } pre { white-space: pre-wrap; }</style>
</head>
<body>
<h1>Many EventSources</h1>
<p><code id="count"></code> &times; new EventSource(<code id="src"></code>)</p>
<pre id="log"></pre>
<script>
"use strict";
const STATES = ["CONNECTING", "OPEN", "CLOSED"];
// At most this many sources: enough to go well past any per-host connection cap, few
// enough that a typo in count cannot make the page open thousands of requests.
const MAX_SOURCES = 100;
const query = new URLSearchParams(location.search);
const count = Math.max(1, Math.min(MAX_SOURCES, Number(query.get("count")) || 10));
const src = query.get("src") || "/events?n=3&stream=many-{i}";
const t0 = performance.now();
// window.lab holds only plain data; one entry per source, in the order they were made.
const lab = window.lab = {count: count, src: src, sources: []};
const sources = window.labSources = [];
const logLines = document.getElementById("log");
document.getElementById("count").textContent = String(count);
document.getElementById("src").textContent = src;

function now() { return Math.round((performance.now() - t0) * 10) / 10; }

function show(entry, what) {
  logLines.textContent +=
    `${now()} ms  #${entry.index}  ${what}  readyState ${STATES[entry.readyState]}\\n`;
}

for (let i = 0; i < count; i++) {
  const url = src.replaceAll("{i}", String(i));
  const entry = {
    index: i, url: url, created: now(), opened: null, firstEvent: null,
    opens: 0, events: 0, errors: 0, readyState: 0,
  };
  lab.sources.push(entry);
  const source = new EventSource(url);
  sources.push(source);
  source.addEventListener("open", () => {
    entry.opens += 1;
    entry.readyState = source.readyState;
    if (entry.opened === null) entry.opened = now();
    show(entry, "open");
  });
  source.addEventListener("message", (e) => {
    entry.events += 1;
    entry.readyState = source.readyState;
    if (entry.firstEvent === null) {
      entry.firstEvent = now();
      show(entry, `first message, lastEventId ${JSON.stringify(e.lastEventId)}`);
    }
  });
  source.addEventListener("error", () => {
    entry.errors += 1;
    entry.readyState = source.readyState;
    show(entry, "error");
  });
}
</script>
</body>
</html>
"""

PAGES: Final[dict[str, str]] = {
    "eventsource.html": _EVENTSOURCE_HTML,
    "fetchstream.html": _FETCHSTREAM_HTML,
    "many.html": _MANY_HTML,
}


async def page(request: Request, response: ResponseStream) -> None:
    """One page of :data:`PAGES`, whole, with Content-Length; 404 for any other name."""
    name = request.path.removeprefix(PREFIX)
    html = PAGES.get(name) if request.path.startswith(PREFIX) else None
    if html is None:
        raise HTTPError(404, f"no page at {request.path}; pages: {', '.join(PAGES)}\n")
    body = html.encode("utf-8")
    await response.start(
        200,
        [
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),  # an edited page is seen at the next load
        ],
    )
    await response.send(body)
    await response.end()
