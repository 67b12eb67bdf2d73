"""The proxy experiments: which proxy, which settings, which requests, and why.

An :class:`Experiment` is a question (``buffering``: what does nginx do to a token stream
by default, and which setting changes it?). It holds :class:`Configuration` objects, each
a proxy with settings exactly as an operator would write them, and each configuration
runs :class:`Probe` objects, one request each (a token stream of one content type, a
quiet event stream, an EventSource that resumes, a client that hangs up). Every probe
gets a proxy of its own, started for it and stopped after it, so each probe's trace holds
its connections and nothing else.

The numbers below are the experiments' named limits. They keep the whole matrix to
well under two minutes while every effect stays far above the noise of one loopback run:
a token every 40 ms, timeouts of one second against gaps of two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal

from lab.proxy.configs import ProxyKind, ProxySpec

__all__ = [
    "ABORT_AFTER",
    "ABORT_INTERVAL_MS",
    "ABORT_TOKENS",
    "COURSE_NOTES_BLOCK",
    "EXPERIMENTS",
    "HEARTBEAT_MS",
    "IDLE_TIMEOUT",
    "QUIET_GAP_MS",
    "RESUME_EVENTS",
    "RETRY_MS",
    "TOKENS",
    "TOKEN_INTERVAL_MS",
    "Configuration",
    "Experiment",
    "Probe",
    "configurations",
    "find",
]

# A token stream: 12 tokens, one every 40 ms (25 tokens a second, a fast model's pace).
# Twelve tokens in one client read cannot be an accident of scheduling; the stream takes
# under half a second.
TOKENS: Final = 12
TOKEN_INTERVAL_MS: Final = 40
PROMPT: Final = "what does a proxy do to my stream?"
# The idle timeout under test (nginx proxy_read_timeout, HAProxy timeout server): one
# second, the shortest whole-second value, so that a cut comes quickly.
IDLE_TIMEOUT: Final = "1s"
# The quiet stream's gap between its two events: twice the idle timeout, so a timer that
# runs between reads must fire, and short enough that a stream that survives ends soon.
QUIET_GAP_MS: Final = 2000
# Heartbeat comments every 300 ms: three to each second of the timeout, so one always
# arrives in time even on a loaded machine.
HEARTBEAT_MS: Final = 300
# With no heartbeat wanted, the /events maximum: the quiet gap is then really quiet.
NO_HEARTBEAT_MS: Final = 600_000
# The resuming EventSource: three events, each on a connection of its own after a cut,
# reconnecting 100 ms after each (the stream's retry: field), then the 204 that stops it.
RESUME_EVENTS: Final = 3
RETRY_MS: Final = 100
# The client that hangs up: a 1 s stream (20 tokens, 50 ms apart) that the client leaves
# 0.3 s after sending its request, while the upstream still has most of it to send.
ABORT_TOKENS: Final = 20
ABORT_INTERVAL_MS: Final = 50
ABORT_AFTER: Final = 0.3

ProbeKind = Literal["stream", "quiet", "resume", "abort"]


@dataclass(frozen=True, slots=True)
class Probe:
    """One request through the proxy, and what is measured on it."""

    kind: ProbeKind
    label: str  # short, unique within its configuration: names the trace
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    http2: bool = False  # the client speaks h2c (prior knowledge) to the proxy
    heartbeat: bool = False  # quiet probes: the upstream sends heartbeat comments

    @property
    def accept(self) -> str:
        return next((v for k, v in self.headers if k == "accept"), "")

    def describe(self) -> str:
        accept = f" Accept: {self.accept}" if self.accept and self.method == "POST" else ""
        path = self.target.split("?")[0]
        return f"{self.method} {path}{accept}"


@dataclass(frozen=True, slots=True)
class Configuration:
    name: str  # unique across experiments: nginx-default, haproxy-timeout-server, ...
    kind: ProxyKind
    settings: tuple[str, ...]
    probes: tuple[Probe, ...]
    summary: str

    def spec(self, probe: Probe) -> ProxySpec:
        return ProxySpec(self.kind, self.settings, http2=probe.http2)


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    title: str
    configurations: tuple[Configuration, ...]


def _chat(accept: str, label: str, *, gzip: bool = False, http2: bool = False) -> Probe:
    body = json.dumps({"prompt": PROMPT, "n": TOKENS, "interval_ms": TOKEN_INTERVAL_MS})
    headers = [("accept", accept), ("content-type", "application/json")]
    if gzip:
        headers.append(("accept-encoding", "gzip"))
    return Probe("stream", label, "POST", "/chat", tuple(headers), body.encode(), http2=http2)


TEXT: Final = _chat("text/plain", "text")
NDJSON: Final = _chat("application/x-ndjson", "ndjson")
SSE: Final = _chat("text/event-stream", "sse")
STREAMS: Final = (TEXT, NDJSON, SSE)


def _quiet(label: str, *, heartbeat: bool) -> Probe:
    beat = HEARTBEAT_MS if heartbeat else NO_HEARTBEAT_MS
    target = f"/events?n=2&interval_ms={QUIET_GAP_MS}&heartbeat_ms={beat}&stream=quiet"
    return Probe("quiet", label, "GET", target, heartbeat=heartbeat)


QUIET: Final = _quiet("quiet", heartbeat=False)
HEARTBEAT: Final = _quiet("heartbeat", heartbeat=True)
RESUME: Final = Probe(
    "resume",
    "resume",
    "GET",
    f"/events?n={RESUME_EVENTS}&total={RESUME_EVENTS}&interval_ms={QUIET_GAP_MS}"
    f"&retry_ms={RETRY_MS}&heartbeat_ms={NO_HEARTBEAT_MS}&stream=resume",
)


def _abort(label: str, *, http2: bool) -> Probe:
    target = f"/tokens?n={ABORT_TOKENS}&interval_ms={ABORT_INTERVAL_MS}&prompt=abort"
    return Probe("abort", label, "GET", target, http2=http2)


ABORTS: Final = (_abort("abort-h1", http2=False), _abort("abort-h2", http2=True))

GZIP_TYPES: Final = "gzip_types text/plain application/x-ndjson text/event-stream"

# The block course notes and blog posts give for SSE behind nginx, as they give it.
COURSE_NOTES_BLOCK: Final = (
    "proxy_buffering off",
    "proxy_cache off",
    "add_header Cache-Control no-cache",
    "add_header Content-Type text/event-stream",
    "proxy_read_timeout 1h",
    "proxy_http_version 1.1",
    "proxy_set_header Connection ''",
)

_NGINX_BUFFERING = Experiment(
    "buffering",
    "nginx buffering: the same token stream as text/plain, NDJSON and SSE",
    (
        Configuration(
            "nginx-default", "nginx", (), STREAMS,
            "proxy_pass alone; the lab's SSE responses carry X-Accel-Buffering: no, "
            "its text/plain and NDJSON ones do not",
        ),
        Configuration(
            "nginx-ignore-accel", "nginx", ("proxy_ignore_headers X-Accel-Buffering",), STREAMS,
            "the same, with nginx told to ignore the upstream's X-Accel-Buffering header",
        ),
        Configuration(
            "nginx-buffering-off", "nginx", ("proxy_buffering off",), STREAMS,
            "proxy_buffering off (the upstream request stays HTTP/1.0, nginx's default)",
        ),
        Configuration(
            "nginx-http11", "nginx", ("proxy_http_version 1.1",), (TEXT,),
            "HTTP/1.1 to the upstream, buffering left on",
        ),
        Configuration(
            "nginx-gzip", "nginx", ("proxy_buffering off", "gzip on", GZIP_TYPES),
            tuple(_chat(p.accept, p.label, gzip=True) for p in STREAMS),
            "gzip for the streaming types, buffering off, a client that accepts gzip",
        ),
    ),
)  # fmt: skip

_NGINX_IDLE = Experiment(
    "idle-timeout",
    "nginx proxy_read_timeout against a quiet event stream",
    (
        Configuration(
            "nginx-read-timeout", "nginx", (f"proxy_read_timeout {IDLE_TIMEOUT}",),
            (QUIET, HEARTBEAT, RESUME),
            f"proxy_read_timeout {IDLE_TIMEOUT}; events {QUIET_GAP_MS} ms apart, without "
            f"and with heartbeats every {HEARTBEAT_MS} ms; an EventSource that resumes",
        ),
    ),
)  # fmt: skip

_NGINX_ABORT = Experiment(
    "client-abort",
    f"the client leaves {ABORT_AFTER} s into a {ABORT_TOKENS}-token stream",
    (
        Configuration(
            "nginx-abort", "nginx", (), ABORTS, "defaults (buffering on)",
        ),
        Configuration(
            "nginx-abort-ignore", "nginx", ("proxy_ignore_client_abort on",), ABORTS,
            "buffering on, proxy_ignore_client_abort on",
        ),
        Configuration(
            "nginx-abort-unbuffered", "nginx", ("proxy_buffering off",), ABORTS,
            "proxy_buffering off",
        ),
        Configuration(
            "nginx-abort-unbuffered-ignore", "nginx",
            ("proxy_buffering off", "proxy_ignore_client_abort on"), ABORTS,
            "proxy_buffering off, proxy_ignore_client_abort on",
        ),
    ),
)  # fmt: skip

_H2_STREAMS: Final = (
    _chat("text/plain", "h2-text", http2=True),
    _chat("text/event-stream", "h2-sse", http2=True),
)

_NGINX_H2 = Experiment(
    "h2-translation",
    "HTTP/2 (h2c) to nginx, HTTP/1.1 to the upstream: DATA frames against chunks",
    (
        Configuration(
            "nginx-h2", "nginx", (), _H2_STREAMS, "listen ... http2; defaults otherwise",
        ),
        Configuration(
            "nginx-h2-streaming", "nginx", ("proxy_buffering off", "proxy_http_version 1.1"),
            _H2_STREAMS, "listen ... http2; proxy_buffering off; HTTP/1.1 upstream (chunked)",
        ),
    ),
)  # fmt: skip

_COURSE_NOTES = Experiment(
    "course-notes",
    "the SSE block course notes recommend, run as written",
    (
        Configuration(
            "nginx-course-notes", "nginx", COURSE_NOTES_BLOCK, STREAMS,
            "the block as written, for every content type behind the location",
        ),
    ),
)  # fmt: skip

_HAPROXY = Experiment(
    "haproxy",
    "HAProxy in HTTP mode: the same streams; timeout server and timeout tunnel",
    (
        Configuration(
            "haproxy-default", "haproxy", (), STREAMS,
            "mode http, one backend server; timeouts long enough not to cut anything",
        ),
        Configuration(
            "haproxy-no-delay", "haproxy", ("option http-no-delay",), (TEXT, SSE),
            "option http-no-delay",
        ),
        Configuration(
            "haproxy-h2", "haproxy", (), (_H2_STREAMS[0],), "bind ... proto h2 (h2c)",
        ),
        Configuration(
            "haproxy-timeout-server", "haproxy", (f"timeout server {IDLE_TIMEOUT}",),
            (QUIET, HEARTBEAT),
            f"timeout server {IDLE_TIMEOUT}; events {QUIET_GAP_MS} ms apart, without and "
            "with heartbeats",
        ),
        Configuration(
            "haproxy-timeout-tunnel", "haproxy",
            (f"timeout server {IDLE_TIMEOUT}", "timeout tunnel 1h"), (QUIET,),
            f"timeout server {IDLE_TIMEOUT} with timeout tunnel 1h, as often advised for SSE",
        ),
    ),
)  # fmt: skip

EXPERIMENTS: Final = (
    _NGINX_BUFFERING,
    _NGINX_IDLE,
    _NGINX_ABORT,
    _NGINX_H2,
    _COURSE_NOTES,
    _HAPROXY,
)


def configurations(
    names: tuple[str, ...] = (), proxy: ProxyKind | None = None
) -> list[tuple[Experiment, Configuration]]:
    """The configurations of the named experiments or configurations (all if none is
    named), of one proxy if ``proxy`` is given; KeyError naming the unknown name."""
    known = {e.name for e in EXPERIMENTS} | {c.name for e in EXPERIMENTS for c in e.configurations}
    for name in names:
        if name not in known:
            raise KeyError(f"no proxy experiment {name!r}; `lab proxy --list` lists them")
    return [
        (experiment, config)
        for experiment in EXPERIMENTS
        for config in experiment.configurations
        if (not names or experiment.name in names or config.name in names)
        and (proxy is None or config.kind == proxy)
    ]


def find(name: str) -> Configuration:
    """The configuration called ``name``."""
    for experiment in EXPERIMENTS:
        for config in experiment.configurations:
            if config.name == name:
                return config
    raise KeyError(f"no proxy configuration {name!r}")
