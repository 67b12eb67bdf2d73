"""Helpers for cutting a request or a response at a chosen place, and for seeing what a
cut left behind inside the server: handlers still running, trio tasks still alive.

Requests are built by h11 / h2 acting as the client (independent of the server's code);
the same client object then reads the response, so that a test knows, record by record,
whether the response has started and whether it is complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import h2.connection
import h2.events
import h11
import trio

from lab.apps import Request, ResponseStream
from lab.apps import app as lab_app
from lab.server.faults import leaves
from lab.server.listener import serve_tcp
from tests.server.peers import Fields, h2_client, is_h2

# -- what is requested --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One request to cut. ``long``: a streamed response that takes far longer than a
    cut in its first records does, so a client that leaves there must cancel it."""

    name: str
    method: str
    target: str
    headers: Fields = field(default_factory=list)
    body: bytes = b""
    long: bool = False


_JSON: Final = ("content-type", "application/json")
_MCP_INIT: Final = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "lab-fault-injection", "version": "0"}},
}).encode()  # fmt: skip

# Every endpoint of lab.apps.router.ENDPOINTS: the three /pages share one handler, so
# eventsource.html stands for them; /mcp is a POST initialize (what tests/mcp/helpers.py
# sends: both media types in Accept, a JSON body, the local Host).
TARGETS: Final = (
    Target("index", "GET", "/"),
    Target("fixed", "GET", "/fixed?size=200000"),
    # More than loopback socket buffers hold (several MiB with autotuning): a client that
    # stops reading leaves the server's send blocked, not just buffered.
    Target("fixed-16MiB", "GET", "/fixed?size=16777216"),
    Target("tokens", "GET", "/tokens?n=40&interval_ms=5&prompt=cut", long=True),
    Target(
        "chat-sse", "POST", "/chat", [("accept", "text/event-stream"), _JSON],
        json.dumps({"prompt": "cut", "n": 40, "interval_ms": 5}).encode(), long=True,
    ),
    Target("events", "GET", "/events?n=20&interval_ms=5&stream=cuts", long=True),
    Target("progress", "GET", "/progress?n=20&interval_ms=5", long=True),
    Target("trailers", "GET", "/trailers?n=40&interval_ms=5", long=True),
    Target("eventsource-page", "GET", "/pages/eventsource.html"),
    Target(
        "mcp-initialize", "POST", "/mcp",
        [("accept", "application/json, text/event-stream"), _JSON], _MCP_INIT,
    ),
)  # fmt: skip


# -- the client side: bytes out, the response read back -----------------------------


class Reader:
    """The response to one request, fed record by record."""

    started = False  # the status line / HEADERS arrived
    complete = False  # the whole response arrived
    broken: str | None = None  # how the server ended it before it was complete

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def to_send(self) -> bytes:
        """What the client owes the server now (HTTP/2: SETTINGS ACK, WINDOW_UPDATE)."""
        return b""


class _H1Reader(Reader):
    def __init__(self, client: h11.Connection) -> None:
        self.client = client

    def feed(self, data: bytes) -> None:
        self.client.receive_data(data)
        while (event := self.client.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.Response):
                self.started = True
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return
            elif event is h11.PAUSED:
                return


class _H2Reader(Reader):
    def __init__(self, client: h2.connection.H2Connection, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id

    def feed(self, data: bytes) -> None:
        for event in self.client.receive_data(data):
            if getattr(event, "stream_id", None) not in (None, self.stream_id):
                continue
            if isinstance(event, h2.events.ResponseReceived):
                self.started = True
            elif isinstance(event, h2.events.DataReceived):
                # Keep the window open: only a client that stops reading stops this.
                self.client.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.complete = True
            elif isinstance(event, h2.events.StreamReset) and not self.complete:
                self.broken = f"RST_STREAM({_code(event.error_code)})"
            elif (
                isinstance(event, h2.events.ConnectionTerminated)
                and event.error_code
                and not self.complete
            ):
                debug = (event.additional_data or b"").decode("latin-1")
                self.broken = f"GOAWAY({_code(event.error_code)}, {debug!r})"

    def to_send(self) -> bytes:
        return self.client.data_to_send()


def _code(code: object) -> str:
    return getattr(code, "name", str(code))


def build(protocol: str, target: Target) -> tuple[bytes, Reader]:
    """The whole request as the client writes it, and the reader of its response."""
    if not is_h2(protocol):
        client = h11.Connection(h11.CLIENT)
        fields = [("host", "127.0.0.1"), *target.headers]
        if target.body:
            fields.append(("content-length", str(len(target.body))))
        request = h11.Request(method=target.method, target=target.target, headers=fields)
        out = client.send(request) or b""
        if target.body:
            out += client.send(h11.Data(data=target.body)) or b""
        out += client.send(h11.EndOfMessage()) or b""
        return out, _H1Reader(client)
    conn = h2_client()
    sid = conn.get_next_available_stream_id()
    pseudo = [(":method", target.method), (":path", target.target), (":scheme", "http"),
              (":authority", "127.0.0.1")]  # fmt: skip
    conn.send_headers(sid, [*pseudo, *target.headers], end_stream=not target.body)
    if target.body:
        conn.send_data(sid, target.body, end_stream=True)
    return conn.data_to_send(), _H2Reader(conn, sid)


_H2_PREFACE_LEN: Final = 24
_FRAME_NAMES: Final = {0: "DATA", 1: "HEADERS", 4: "SETTINGS", 8: "WINDOW_UPDATE"}


def request_cuts(protocol: str, raw: bytes, has_body: bool) -> list[tuple[str, int]]:
    """(where, byte offset) for every place a request is cut: HTTP/1.1 after the request
    line, after each header line, after the blank line and in the middle of the body;
    HTTP/2 after the preface, after SETTINGS, in the middle of HEADERS, after HEADERS
    (when a body follows) and in the middle of DATA."""
    cuts: list[tuple[str, int]] = []
    if not is_h2(protocol):
        head_end = raw.index(b"\r\n\r\n") + 4
        line_end = raw.index(b"\r\n") + 2
        cuts.append(("after the request line", line_end))
        while line_end < head_end - 2:
            name = raw[line_end : raw.index(b":", line_end)].decode("ascii")
            line_end = raw.index(b"\r\n", line_end) + 2
            cuts.append((f"after header line {name!r}", line_end))
        cuts.append(("after the blank line", head_end))
        if has_body:
            cuts.append(("in the middle of the body", head_end + (len(raw) - head_end) // 2))
        return cuts
    cuts.append(("after the preface", _H2_PREFACE_LEN))
    for kind, start, end in _frames(raw, _H2_PREFACE_LEN):
        name = _FRAME_NAMES.get(kind, f"type-{kind}")
        if kind in (0, 1):  # DATA, HEADERS: cut inside their payload too
            cuts.append((f"in the middle of {name}", start + 9 + (end - start - 9) // 2))
        if end < len(raw):  # the last frame's end is the whole request: part (b)
            cuts.append((f"after {name}", end))
    return cuts


def _frames(raw: bytes, offset: int) -> Iterator[tuple[int, int, int]]:
    """(type, start, end) of each whole frame from ``offset`` on."""
    while offset + 9 <= len(raw):
        end = offset + 9 + int.from_bytes(raw[offset : offset + 3], "big")
        yield raw[offset + 3], offset, end
        offset = end


# -- the server side: handlers and tasks ----------------------------------------------

# Exceptions the servers raise *into* a handler when its client is gone (a send that
# failed): as much "the server stopped it" as trio.Cancelled is.
CLIENT_GONE: Final = frozenset({"_Abort", "Gone", "Stalled", "StreamClosedError"})


def outcome_of(exc: BaseException) -> str:
    """'cancelled', or 'raised <names of the exceptions>'."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None:
            return "cancelled"
        return "raised " + "+".join(sorted({type(leaf).__name__ for leaf in leaves(rest)}))
    if isinstance(exc, trio.Cancelled):
        return "cancelled"
    return f"raised {type(exc).__name__}"


def stopped_by_server(outcome: str) -> bool:
    """Did the handler end because the server stopped it (not by finishing)?"""
    if outcome == "cancelled":
        return True
    names = outcome.removeprefix("raised ").split("+")
    return outcome.startswith("raised ") and all(name in CLIENT_GONE for name in names)


@dataclass(eq=False)
class Tracker:
    """The lab's app, counting its handlers: how many run now, and how each one ended."""

    running: int = 0
    # (method, target, outcome): "returned", "cancelled" or "raised <exception names>".
    ended: list[tuple[str, str, str]] = field(default_factory=list)

    async def app(self, request: Request, response: ResponseStream) -> None:
        self.running += 1
        outcome = "returned"
        try:
            await lab_app(request, response)
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            self.running -= 1
            self.ended.append((request.method, request.target, outcome))


def server_tasks() -> list[str]:
    """The names of every trio task below the task that runs ``serve_tcp`` (its accept
    loop, connection tasks, their writers, watchers and handlers)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    found = [t for t in _descendants(root)
             if getattr(t.coro, "cr_code", None) is serve_tcp.__code__]  # fmt: skip
    assert len(found) == 1, f"{len(found)} tasks run serve_tcp"
    return [t.name for t in _descendants(found[0])]


def _descendants(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield child
            yield from _descendants(child)
