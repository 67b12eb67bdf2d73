// The Node.js peer: node's own `http` module, one res.write per token.
// `node node_app.js PORT REPLIES.json`. The replies come from the lab's tokens_for (the
// launcher writes them, {prompt: [token, ...]}) so that this file does not reimplement
// the token source.
"use strict";
const fs = require("node:fs");
const http = require("node:http");

const port = Number(process.argv[2]);
const replies = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const MAX_N = 10000;
const MAX_INTERVAL_MS = 600000;
const stats = { started: 0, finished: 0, closed: 0, produced: 0 };

function bounded(value, fallback, high) {
  return /^[0-9]+$/.test(value || "") ? Math.min(Number(value), high) : fallback;
}

function stream(req, res, url, each, last, type) {
  const n = bounded(url.searchParams.get("n"), 8, MAX_N);
  const interval = bounded(url.searchParams.get("interval_ms"), 25, MAX_INTERVAL_MS);
  const reply = replies[url.searchParams.get("prompt") || "hi"];
  if (!reply || reply.length < n) {
    res.writeHead(400, { "content-type": "text/plain" });
    res.end("no reply prepared for this prompt and n\n");
    return;
  }
  res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
  stats.started += 1;
  let i = 0;
  let timer = null;
  let complete = false;
  res.on("close", () => {
    if (timer !== null) clearTimeout(timer);
    if (complete) stats.finished += 1;
    else stats.closed += 1;
  });
  const next = () => {
    timer = null;
    if (res.destroyed) return;
    if (i < n) {
      stats.produced += 1;
      res.write(each(reply[i]));
      i += 1;
      if (interval) timer = setTimeout(next, interval);
      else setImmediate(next);
    } else {
      complete = true;
      res.end(last);
    }
  };
  next();
}

http
  .createServer((req, res) => {
    const url = new URL(req.url, "http://peer");
    if (url.pathname === "/tokens") {
      stream(req, res, url, (t) => t, "\n[DONE]\n", "text/plain");
    } else if (url.pathname === "/sse") {
      stream(req, res, url, (t) => `data: ${t}\n\n`, "data: [DONE]\n\n", "text/event-stream");
    } else if (url.pathname === "/stats") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(stats));
    } else {
      res.writeHead(404);
      res.end();
    }
  })
  .listen(port, "127.0.0.1");
