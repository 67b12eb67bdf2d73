"""What an idle client of each transport costs the server: ``lab compare --idle N``.

As in :mod:`lab.bench.idle_bench`, the server is ``lab serve`` in a process of its own
(:class:`~lab.attacks.process.LabProcess`), a fresh one per transport so that no
transport's allocations count against another's. This process opens ``N`` idle clients
of the transport, each of which has received the stream's first token and waits for the
second, far away; the server's resident memory (VmRSS) with them open, less before, over
``N``, is the cost of one.

What "idle" holds on the server, per transport:

- short-poll: a keep-alive connection between two polls (RFC 9112 §9.3), no request;
- long-poll: a request held until the next token (lab.apps.poll);
- the streaming ones: a response open between two tokens (a chunked body, an NDJSON or
  SSE body, an h2c stream, a WebSocket).

The second token is :data:`IDLE_GAP_MS` after the first (the longest interval the
endpoints accept), so every client must be open, and the memory read, within that time;
the run fails rather than measure clients that are no longer idle.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlencode

import h2.config
import h2.connection
import h2.events
import h11

from lab.apps.params import MAX_INTERVAL_MS
from lab.apps.poll import LONGPOLL_MAX_TIMEOUT_MS
from lab.apps.tokens import token_at
from lab.attacks.process import LabProcess
from lab.progress import Step
from lab.wire.websocket import make_key, request_headers

__all__ = ["IDLE_GAP_MS", "MAX_IDLE", "NotServed", "measure_idle"]

# The gap between the first token and the second for an idle client: the longest the
# token endpoints accept (lab.apps.params.MAX_INTERVAL_MS, 10 s).
IDLE_GAP_MS: Final = MAX_INTERVAL_MS
# Idle clients per transport at most: opening them and reading the server's memory must
# fit in IDLE_GAP_MS; a few thousand loopback connects and first tokens take well under
# a second each thousand.
MAX_IDLE: Final = 2000
# Bound on every socket operation of the measurement.
SOCKET_TIMEOUT: Final = 30.0
# Reading up to a client's first token stops after this many bytes: a head and one event.
FIRST_TOKEN_LIMIT: Final = 64 * 1024
PROMPT: Final = "idle"


class NotServed(Exception):
    """The server does not offer this transport (the handshake was refused)."""


def _query(stream: str = "", **extra: str | int) -> str:
    fields: dict[str, str | int] = {"prompt": PROMPT, "n": 2, "interval_ms": IDLE_GAP_MS}
    if stream:
        fields["stream"] = stream
    return urlencode({**fields, **extra})


def _request(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    client = h11.Connection(h11.CLIENT)
    fields = [("host", "127.0.0.1"), *headers]
    if body:
        fields.append(("content-length", str(len(body))))
    data = client.send(h11.Request(method=method, target=target, headers=fields)) or b""
    if body:
        data += client.send(h11.Data(data=body)) or b""
    return data + (client.send(h11.EndOfMessage()) or b"")


def _read_until(sock: socket.socket, marker: bytes, after_head: bool = True) -> bytes:
    """Read until ``marker`` appears (after the response head, if ``after_head``)."""
    seen = b""
    while len(seen) < FIRST_TOKEN_LIMIT:
        head_end = seen.find(b"\r\n\r\n")
        start = head_end + 4 if after_head and head_end >= 0 else 0
        if (head_end >= 0 or not after_head) and marker in seen[start:]:
            return seen
        data = sock.recv(65536)
        if not data:
            break
        seen += data
    raise RuntimeError(f"no {marker!r} in the first bytes: {seen[:200]!r}")


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)


def _h1(
    method: str, target: str, headers: list[tuple[str, str]], marker: bytes, body: bytes = b""
) -> Callable[[int], socket.socket]:
    def open_one(port: int) -> socket.socket:
        sock = _connect(port)
        sock.sendall(_request(method, target, headers, body))
        seen = _read_until(sock, marker)
        if not seen.startswith(b"HTTP/1.1 200 "):
            sock.close()
            raise RuntimeError(f"{method} {target}: {seen[:120]!r}")
        return sock

    return open_one


def _long_poll(stream: str) -> Callable[[int], socket.socket]:
    # Held: cursor 1 of a stream whose token 1 is IDLE_GAP_MS away. No answer comes until
    # then, so nothing is read; the server's /stats shows the connections accepted.
    def open_one(port: int) -> socket.socket:
        sock = _connect(port)
        target = f"/longpoll?{_query(stream, cursor=1, timeout_ms=LONGPOLL_MAX_TIMEOUT_MS)}"
        sock.sendall(_request("GET", target, []))
        return sock

    return open_one


def _ws_h1(port: int) -> socket.socket:
    sock = _connect(port)
    key = make_key()
    sock.sendall(_request("GET", f"/ws/tokens?{_query()}", request_headers("127.0.0.1", key)[1:]))
    seen = _read_until(sock, b"\r\n\r\n", after_head=False)
    if not seen.startswith(b"HTTP/1.1 101 "):
        sock.close()
        raise NotServed(seen.split(b"\r\n", 1)[0].decode("latin-1"))
    return sock


def _h2(extended_connect: bool) -> Callable[[int], socket.socket]:
    def open_one(port: int) -> socket.socket:
        sock = _connect(port)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        events: list[h2.events.Event] = []
        seen = 0
        while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
            data = sock.recv(65536)
            seen += len(data)
            if not data or seen > FIRST_TOKEN_LIMIT:
                raise RuntimeError("no SETTINGS from the server in its first bytes")
            events = conn.receive_data(data)
        sid = conn.get_next_available_stream_id()
        if extended_connect:
            if not conn.remote_settings.enable_connect_protocol:
                sock.close()
                raise NotServed("no SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)")
            fields = [
                (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                (":authority", "127.0.0.1"), (":path", f"/ws/tokens?{_query()}"),
                ("sec-websocket-version", "13"),
            ]  # fmt: skip
        else:
            fields = [
                (":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"),
                (":path", f"/sse/tokens?{_query()}"), ("accept", "text/event-stream"),
            ]  # fmt: skip
        conn.send_headers(sid, fields, end_stream=not extended_connect)
        sock.sendall(conn.data_to_send())
        for _ in range(FIRST_TOKEN_LIMIT):  # bounded: each read brings at least a byte
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed an idle h2c connection")
            events = conn.receive_data(data)
            sock.sendall(conn.data_to_send())
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers or []).get(b":status", b"")
                    if status != b"200":
                        sock.close()
                        raise NotServed(f"status {status.decode('latin-1')}")
                if isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    return sock
                if isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    sock.close()
                    raise NotServed(f"{type(event).__name__}")
        raise RuntimeError("no DATA frame on the idle h2c stream")

    return open_one


def openers(stream: str) -> dict[str, Callable[[int], socket.socket]]:
    """For each transport, a function that opens one idle client against ``port``."""
    first = token_at(PROMPT, 0).encode()
    chat = json.dumps({"prompt": PROMPT, "n": 2, "interval_ms": IDLE_GAP_MS}).encode()
    json_type = ("content-type", "application/json")
    return {
        "short-poll": _h1("GET", f"/poll?{_query(stream)}", [], b'"done": false'),
        "long-poll": _long_poll(stream),
        "chunked": _h1("GET", f"/tokens?{_query()}", [], first),
        "ndjson": _h1(
            "POST", "/chat", [("accept", "application/x-ndjson"), json_type], b"\n", chat
        ),
        "sse-get": _h1(
            "GET", f"/sse/tokens?{_query()}", [("accept", "text/event-stream")], b"\n\n"
        ),
        "sse-post": _h1(
            "POST", "/chat", [("accept", "text/event-stream"), json_type], b"\n\n", chat
        ),
        "sse-h2": _h2(extended_connect=False),
        "ws-h1": _ws_h1,
        "ws-h2": _h2(extended_connect=True),
    }


def measure_idle(name: str, count: int, step: Step) -> float:
    """KiB of server memory per idle client of transport ``name`` (``count`` of them);
    :class:`NotServed` if the server refuses the transport."""
    if not 1 <= count <= MAX_IDLE:
        raise ValueError(f"idle clients: 1..{MAX_IDLE}, not {count}")
    opener = openers(f"idle-{name}")[name]
    with LabProcess() as lab:
        socks: list[socket.socket] = []
        try:
            began = time.monotonic()
            socks.append(opener(lab.port))  # warm-up: first-use allocations, not counted
            before = lab.snapshot()
            step(f"{name}: {count} idle clients")
            socks += [opener(lab.port) for _ in range(count)]
            deadline = began + SOCKET_TIMEOUT
            while lab.snapshot().connections < count + 1:  # every one accepted
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not accept {count + 1} connections")
            after = lab.snapshot()
            if time.monotonic() - began >= IDLE_GAP_MS / 1000:
                raise RuntimeError(
                    f"{count} {name} clients took over {IDLE_GAP_MS} ms to open: their second "
                    "token came before the memory was read; try fewer"
                )
        finally:
            for sock in socks:
                sock.close()
    return (after.rss_kib - before.rss_kib) / count
