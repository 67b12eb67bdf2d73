"""The live wire viewer's page (``GET /lab/``): one static HTML document, plain JavaScript.

The page follows ``/lab/events`` with the browser's own EventSource (WHATWG HTML §9.2)
and builds the DOM from the feed's events (lab.capture.live): a list of connections on the
left, and for the one selected, what the user of the app sees (each response's text as it
arrives) beside the bytes on the wire, record by record, each with what its bytes mean
(chunk sizes, RFC 9112 §7.1; SSE fields, WHATWG HTML §9.2.6; HTTP/2 frames with their
stream, RFC 9113 §4 and §6).

- **Pause** holds the events that arrive (at most ``MAX_QUEUED``; past that the page
  counts what it missed and, on resume, starts again from the server's snapshot);
  **Step** applies them up to the next record; **Resume** applies the rest.
- **follow** selects each new connection as it appears; a click on one in the list
  selects it and stops following.
- Each connection links its ``.trace`` and ``.pcapng`` (``connections/N.trace``).
- What the server dropped (over its limits) or withdrew (a connection that came to carry
  the viewer's own requests) is listed under the header.

For tests and notebooks the page keeps plain data in ``window.labViewer`` (whether the
feed is open, how many ``hello`` snapshots and events it applied, how many it holds while
paused, the id of the last event received) and marks the DOM with
``data-`` attributes: ``section.conn[data-n][data-target][data-protocol]``, one
``div.row[data-i][data-kind][data-dir]`` per record, one
``li.seg[data-kind][data-sid][data-type][data-flags]`` per segment, and per response a
``div.stream[data-sid][data-done]`` whose ``pre.text`` holds what the user sees.
"""

from __future__ import annotations

from typing import Final

__all__ = ["VIEWER_HTML"]

VIEWER_HTML: Final = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamlab: live wire</title>
<link rel="icon" href="data:,">
<style>
body { font: 13px/1.35 system-ui, sans-serif; margin: 0; color: #222; }
header { padding: .5em 1em; background: #f3f3f3; border-bottom: 1px solid #ccc;
  display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
header h1 { font-size: 1.1em; margin: 0; }
#status[data-state="open"] { color: #070; } #status[data-state="closed"] { color: #a00; }
#notices { margin: 0; padding: .3em 1em .3em 2em; font-size: .9em; color: #735; }
#notices:empty { display: none; }
main { display: flex; align-items: flex-start; }
nav { width: 17em; flex: none; border-right: 1px solid #ddd; max-height: calc(100vh - 4em);
  overflow-y: auto; }
nav button { display: block; width: 100%; text-align: left; border: 0;
  border-bottom: 1px solid #eee; background: none; padding: .35em .6em; font: inherit;
  cursor: pointer; }
nav button[aria-current="true"] { background: #e4eefc; }
nav button .meta { color: #666; font-size: .85em; display: block; }
#views { flex: 1; min-width: 0; padding: 0 1em; }
section.conn h2 { font-size: 1em; margin: .6em 0 .2em; }
section.conn .notes { color: #735; margin: 0 0 .4em; font-size: .9em; }
.cols { display: grid; grid-template-columns: minmax(14em, 1fr) 2.4fr; gap: 1em; }
.cols h3 { font-size: .9em; margin: .3em 0; color: #555; }
.user { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto; }
.stream { border: 1px solid #ddd; border-radius: 4px; margin-bottom: .6em; padding: .3em .5em; }
.stream .req { font-family: monospace; color: #444; }
.stream[data-done="1"] .req::after { content: "  (done)"; color: #070; }
.stream pre.text { white-space: pre-wrap; margin: .3em 0 0; font-size: 1.05em; }
.row { border-top: 1px solid #eee; padding: .2em 0; }
.row .head { font-family: monospace; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.row[data-dir="c2s"] .head { color: #135; } .row[data-dir="s2c"] .head { color: #531; }
.row .bytes { color: #666; margin-left: .6em; }
ul.segs { margin: .1em 0 .1em 1.5em; padding: 0; list-style: none; font-size: .92em; }
li.seg .kind { display: inline-block; min-width: 7.5em; font-family: monospace; color: #06c; }
li.seg[data-nested="1"] { margin-left: 1.2em; } li.seg[data-nested="1"] .kind { color: #909; }
li.seg[data-kind="unparsed"] { color: #a00; }
</style>
</head>
<body>
<header>
<h1>streamlab live wire</h1>
<span>feed: <b id="status" data-state="connecting">connecting</b></span>
<button id="pause" type="button">Pause</button>
<button id="step" type="button" disabled>Step</button>
<label><input id="follow" type="checkbox" checked> follow new connections</label>
<span id="summary"></span>
</header>
<ul id="notices"></ul>
<main><nav id="list" aria-label="connections"></nav><div id="views"></div></main>
<script>
"use strict";
// Events held while paused; past this the page counts what it missed and, on resume,
// starts again from the server's snapshot.
const MAX_QUEUED = 20000;
const MAX_NOTICES = 20;  // notices shown under the header, newest last
const MAX_TEXT = 65536;  // characters of one response's text kept on the page
const TYPES = ["hello", "conn", "row", "limit", "close", "dropped", "gone"];

const lab = window.labViewer = {open: false, hellos: 0, applied: 0, queued: 0, missed: 0,
                                paused: false, limits: null, lastId: ""};
const conns = new Map();  // connection number -> its DOM and state
let queue = [];
let source = null;
let selected = null;
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setStatus(what) {
  $("status").textContent = what;
  $("status").dataset.state = what;
}

function connect() {
  if (source) source.close();
  source = new EventSource("events");  // a new EventSource sends no Last-Event-ID
  source.addEventListener("open", () => { lab.open = true; setStatus("open"); });
  source.addEventListener("error", () => {
    lab.open = false;
    setStatus(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  });
  for (const type of TYPES) {
    source.addEventListener(type, (e) => {
      lab.lastId = e.lastEventId;
      receive(type, JSON.parse(e.data));
    });
  }
}

function receive(type, data) {
  const ev = {type: type, data: data};
  if (type === "hello") { queue = []; lab.missed = 0; }
  if (lab.paused && type !== "hello") {
    if (queue.length < MAX_QUEUED) queue.push(ev); else lab.missed += 1;
  } else {
    apply(ev);
  }
  showQueue();
}

function apply(ev) {
  lab.applied += 1;
  const d = ev.data;
  if (ev.type === "hello") reset(d);
  else if (ev.type === "conn") ensure(d, true);
  else if (ev.type === "row") addRow(d);
  else if (ev.type === "limit") limitReached(d);
  else if (ev.type === "close") closed(d);
  else if (ev.type === "dropped") remove(d.n, `connection ${d.n} dropped: ${d.reason}`);
  else if (ev.type === "gone") remove(d.n, `connection ${d.n} withdrawn: ${d.reason}`);
}

function reset(hello) {
  lab.hellos += 1;
  lab.limits = hello.limits;
  for (const n of [...conns.keys()]) remove(n, null);
  $("notices").textContent = "";
  for (const d of hello.dropped) notice(`connection ${d.n} dropped: ${d.reason}`);
  const earlier = hello.dropped_total - hello.dropped.length;
  if (earlier > 0) notice(`${earlier} more connections were dropped before`);
  for (const info of hello.connections) ensure(info, false);
  const l = hello.limits;
  $("summary").textContent = `keeps ${l.connections} connections, each its first ` +
    `${l.records_per_connection} records / ${Math.round(l.bytes_per_connection / 1024)} KiB`;
}

function notice(text) {
  const list = $("notices");
  list.append(el("li", "", text));
  while (list.children.length > MAX_NOTICES) list.firstChild.remove();
}

function ensure(info, announce) {
  let c = conns.get(info.n);
  if (!c) {
    const section = el("section", "conn");
    section.dataset.n = info.n;
    section.hidden = true;
    const title = el("h2");
    const notes = el("p", "notes");
    const cols = el("div", "cols");
    const user = el("div", "user");
    user.append(el("h3", "", "what the user sees"));
    const streams = el("div", "streams");
    user.append(streams);
    const wire = el("div", "wire");
    wire.append(el("h3", "", "on the wire: each record, and what its bytes mean"));
    const rows = el("div", "rows");
    wire.append(rows);
    cols.append(user, wire);
    section.append(title, notes, cols);
    $("views").append(section);
    const item = el("button");
    item.type = "button";
    item.addEventListener("click", () => { $("follow").checked = false; select(info.n); });
    $("list").append(item);
    c = {n: info.n, info: {}, section, title, notes, streams, rows, item,
         streamMap: new Map(), count: 0};
    conns.set(info.n, c);
    if (!announce && info.records > 0) note(c, "rows from before this page opened are " +
      "only shown if the feed's log still holds them; the .trace download has them all");
  }
  Object.assign(c.info, info);
  const i = c.info;
  c.section.dataset.target = i.target || "";
  c.section.dataset.protocol = i.protocol || "";
  c.section.dataset.closed = i.open === false ? "1" : "0";
  c.title.textContent = "";
  c.title.append(`connection ${i.n} · ${i.protocol} · from ${i.peer}` +
    (i.tls ? " · TLS (decrypted bytes)" : "") + " · ");
  for (const kind of ["trace", "pcapng"]) {
    const a = el("a", "", `.${kind}`);
    a.href = `connections/${i.n}.${kind}`;
    a.download = "";
    c.title.append(a, " ");
  }
  listItem(c);
  if (announce && $("follow").checked) select(info.n);
  else if (selected === null) select(info.n);
  return c;
}

function listItem(c) {
  const i = c.info;
  c.item.textContent = "";
  c.item.append(`${i.n} ${i.method || ""} ${i.target || "(no request yet)"}`);
  c.item.append(el("span", "meta",
    `${i.protocol} · ${c.count} records · ${i.open === false ? "closed" : "open"}`));
}

function select(n) {
  selected = n;
  for (const c of conns.values()) {
    c.section.hidden = c.n !== n;
    c.item.setAttribute("aria-current", c.n === n ? "true" : "false");
  }
}

function note(c, text) {
  c.notes.append(el("span", "", text), el("br"));
}

function stream(c, sid) {
  let s = c.streamMap.get(sid);
  if (!s) {
    const box = el("div", "stream");
    box.dataset.sid = sid;
    box.dataset.done = "0";
    const req = el("div", "req", c.info.protocol && c.info.protocol.startsWith("h2")
      ? `stream ${sid}` : `response ${sid}`);
    const text = el("pre", "text");
    box.append(req, text);
    c.streams.append(box);
    s = {box, req, text, head: "", status: "", chars: 0};
    c.streamMap.set(sid, s);
  }
  return s;
}

function describe(c, sid, s) {
  const label = c.info.protocol && c.info.protocol.startsWith("h2") ? `stream ${sid}` : `#${sid}`;
  s.req.textContent = `${label} ${s.head}${s.status ? " → " + s.status : ""}`;
}

const ARROWS = {c2s: "C→S", s2c: "S→C"};

function addRow(r, counted = true) {
  let c = conns.get(r.n);
  if (!c) {
    c = ensure({n: r.n, protocol: "", target: "", method: "", peer: "?"}, false);
    note(c, `its first rows (before record ${r.i}) are no longer in the feed's log`);
  }
  const dir = r.c === null ? "" : (r.c ? "c2s" : "s2c");
  const row = el("div", "row");
  row.dataset.i = r.i;
  row.dataset.kind = r.kind;
  row.dataset.dir = dir;
  const head = el("div", "head");
  const when = r.t === null ? "" : `+${r.t.toFixed(6)} `;
  head.append(`${when}${ARROWS[dir] || "   "} ${r.kind}` + (r.size ? ` ${r.size} B` : ""));
  if (r.wire) head.append(el("code", "bytes", r.wire + (r.cut ? ` … (+${r.cut} B)` : "")));
  row.append(head);
  if (r.segs.length) {
    const ul = el("ul", "segs");
    for (const s of r.segs) {
      const li = el("li", "seg");
      li.dataset.kind = s.k;
      if (s.nested) li.dataset.nested = "1";
      if (s.sid !== undefined) li.dataset.sid = s.sid;
      if (s.type) li.dataset.type = s.type;
      if (s.flags) li.dataset.flags = s.flags.join(" ");
      li.append(el("span", "kind", s.type || s.k), " ", s.note);
      ul.append(li);
    }
    if (r.more) ul.append(el("li", "seg", `… ${r.more} more segments (in the downloads)`));
    row.append(ul);
  }
  c.rows.append(row);
  if (counted) c.count += 1;
  for (const [sid, method, target] of r.req) {
    const s = stream(c, sid);
    s.head = `${method} ${target}`;
    describe(c, sid, s);
  }
  for (const [sid, code] of r.status) {
    const s = stream(c, sid);
    s.status = String(code);
    describe(c, sid, s);
  }
  for (const [sid, text] of r.text) {
    const s = stream(c, sid);
    if (s.chars < MAX_TEXT) {
      const part = text.slice(0, MAX_TEXT - s.chars);
      s.text.append(document.createTextNode(part));
      s.chars += part.length;
      if (s.chars >= MAX_TEXT) s.text.append(" …");
    }
  }
  for (const sid of r.done) stream(c, sid).box.dataset.done = "1";
  listItem(c);
}

function limitReached(d) {
  const c = conns.get(d.n);
  if (c) note(c, `limit reached: only its first ${d.records} records are kept; ` +
    "later ones are counted, not shown");
}

function closed(d) {
  const c = conns.get(d.n);
  if (!c) return;
  const segs = d.segs || [];
  if (segs.length || (d.text && d.text.length)) {
    // What the end of the connection completed: messages it cut short.
    addRow({n: d.n, i: "end", t: null, kind: "end", c: null, size: 0, wire: "", cut: 0,
            segs: segs, more: d.more || 0, text: d.text || [], req: [], status: [],
            done: d.done || []}, false);
  }
  if (d.lost_records) note(c, `${d.lost_records} records (${d.lost_bytes} bytes of data) ` +
    "were not kept: over the per-connection limit");
  ensure(d, false);
}

function remove(n, why) {
  const c = conns.get(n);
  if (c) {
    c.section.remove();
    c.item.remove();
    conns.delete(n);
    if (selected === n) selected = null;
  }
  if (why) notice(why);
}

function showQueue() {
  lab.queued = queue.length;
  $("step").disabled = !lab.paused || queue.length === 0;
  $("pause").textContent = lab.paused
    ? `Resume (${queue.length} held${lab.missed ? `, ${lab.missed} missed` : ""})` : "Pause";
}

function step() {
  while (queue.length) {
    const ev = queue.shift();
    apply(ev);
    if (ev.type === "row") break;
  }
  showQueue();
}

$("pause").addEventListener("click", () => {
  lab.paused = !lab.paused;
  if (!lab.paused) {
    const missed = lab.missed;
    while (queue.length) apply(queue.shift());
    if (missed) connect();  // events were missed: start again from the snapshot
  }
  showQueue();
});
$("step").addEventListener("click", step);
connect();
</script>
</body>
</html>
"""
