"""The protocol-neutral interface every endpoint is written against, and the servers implement.

An app is ``async def handler(request: Request, response: ResponseStream) -> None``. The
HTTP/1.1 server maps :class:`ResponseStream` onto h11 events (each ``send`` becomes one
chunk of a chunked body, or a slice of a Content-Length body); the HTTP/2 server maps it
onto HEADERS / DATA frames. An endpoint never sees which protocol carried it, which is what
lets the lab show the same reply framed both ways.

WebSocket is part of the same interface. A request that asks for one has
``request.upgrade == "websocket"``: an HTTP/1.1 ``GET`` with ``Upgrade: websocket`` (RFC
6455 §4.1), or an HTTP/2 extended CONNECT with ``:protocol websocket`` (RFC 8441 §4). A
handler that serves WebSockets calls ``ws = await response.accept_websocket()`` instead of
``start``: the server checks the handshake (a bad one raises :class:`HTTPError` 400, or
426 for a version other than 13), answers 101 or 200, and returns a :class:`WebSocket`.
Every other handler answers such a request as any other (404, 405, 426 ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlsplit

from lab.wire.websocket_segments import Message

if TYPE_CHECKING:
    from lab.capture.live import LiveFeed

__all__ = [
    "AbortResponse",
    "Background",
    "HTTPError",
    "Handler",
    "Message",
    "Request",
    "ResponseStream",
    "WebSocket",
    "WebSocketClosed",
    "make_request",
    "send_text",
]

Headers = Sequence[tuple[str, str]]


class Background(Protocol):
    """Where an app runs work that must outlive the request that started it.

    A lab server owns it: a task started here is not cancelled when the request's client
    goes away (its handler is), but :meth:`lab.server.Server.shutdown` cancels it within
    the shutdown grace. A task that fails is logged and ends alone.
    """

    def start_soon(self, fn: Callable[[], Awaitable[object]], *, name: str) -> None: ...


class NoBackground:
    """For a request made outside a server (tests of one handler): refuses background work."""

    def start_soon(self, fn: Callable[[], Awaitable[object]], *, name: str) -> None:
        raise RuntimeError(f"no server to run {name!r} in the background")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # as sent on the wire: path plus query
    path: str
    query: dict[str, str]  # first value wins for repeated names
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in wire order
    body: bytes
    protocol: str  # "http/1.1" or "h2"
    # The server's end of the connection, "host:port" as its socket has it (IPv6 in
    # brackets): which address the client reached, for virtual hosting and Host checks.
    local: str = ""
    peer: str = ""  # the client's end, "host:port"
    # "websocket" when the request asks for a WebSocket (an HTTP/1.1 Upgrade, RFC 6455
    # §4.1, or an HTTP/2 extended CONNECT, RFC 8441 §4): see ResponseStream.accept_websocket.
    upgrade: str = ""
    background: Background = field(default_factory=NoBackground, repr=False, compare=False)
    # The server's live feed when its wire viewer is on (lab.capture.live), else None.
    feed: LiveFeed | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


def make_request(
    method: str, target: str, headers: Headers, body: bytes, protocol: str,
    *, local: str = "", peer: str = "", background: Background | None = None,
    feed: LiveFeed | None = None, upgrade: str = "",
) -> Request:  # fmt: skip
    try:
        parts = urlsplit(target)
    except ValueError as exc:  # e.g. "http://[::1/x": an IP literal without its "]"
        raise HTTPError(400, f"request target {target[:200]!r} is not a URI: {exc}\n") from None
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, value)
    return Request(
        method=method,
        target=target,
        path=parts.path or "/",
        query=query,
        headers=tuple((k.lower(), v) for k, v in headers),
        body=body,
        protocol=protocol,
        local=local,
        peer=peer,
        upgrade=upgrade,
        background=background if background is not None else NoBackground(),
        feed=feed,
    )


class ResponseStream(Protocol):
    """What a handler writes its response to.

    ``start`` once, then any number of ``send`` (each is one wire unit: a chunk on HTTP/1.1,
    a DATA frame on HTTP/2; an empty ``send`` is ignored), then ``end``. A handler that
    returns without calling ``end`` is ended for it. Trailers need a streamed body.
    """

    async def start(self, status: int, headers: Headers = ()) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def end(self, trailers: Headers = ()) -> None: ...

    async def accept_websocket(self, headers: Headers = ()) -> WebSocket:
        """Accept the WebSocket ``request.upgrade`` asks for, instead of ``start``: 101 with
        Sec-WebSocket-Accept over HTTP/1.1 (RFC 6455 §4.2.2), 200 over HTTP/2 (RFC 8441
        §5), ``headers`` added. Raises :class:`HTTPError` (400; 426 with
        Sec-WebSocket-Version: 13 for another version) when the handshake is not valid, so
        the handler that lets it propagate answers it."""
        ...


class WebSocketClosed(Exception):
    """The WebSocket connection is closed, or closing: raised by every call on it after.

    ``code`` and ``reason`` are the Close frame's the peer sent (RFC 6455 §7.1.5, §7.1.6);
    when the server closed first and the peer's Close has not come, the server's own;
    1005 when the peer's Close carried no code; 1006 when the connection ended without
    one (the peer left, or stopped answering).
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"WebSocket closed: {self.code}" + (f" {self.reason!r}" if self.reason else "")


class WebSocket(Protocol):
    """An accepted WebSocket connection, the same over HTTP/1.1 and HTTP/2.

    The server reads it all the time: it answers a Ping with a Pong (§5.5.2), answers
    the peer's Close with a Close and closes the connection (§5.5.1, §7.1.2), fails the
    connection on bad input with the close code RFC 6455 names (1002, 1007, 1009), and
    closes one idle past ``Limits.ws_idle_timeout`` with 1001. Messages wait for
    :meth:`receive` in a bounded queue. Once the connection is closed every method but
    :meth:`close` raises :class:`WebSocketClosed`, and a handler still running is
    cancelled after ``Limits.ws_close_timeout``. A handler that returns with the
    connection open has it closed for it (1000); one that fails, with 1011.
    """

    async def receive(self) -> Message:
        """The next whole message: ``type`` "text" (``data`` a str) or "binary" (bytes)."""
        ...

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send Close (§5.5.1), wait for the peer's (at most ``Limits.ws_close_timeout``),
        then close the connection. Does nothing once it is closed."""
        ...


Handler = Callable[[Request, ResponseStream], Awaitable[None]]


async def send_text(
    response: ResponseStream, status: int, text: str, headers: Headers = ()
) -> None:
    """A whole text/plain response with Content-Length: error messages, the index."""
    body = text.encode("utf-8")
    await response.start(
        status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            *headers,
        ],
    )
    await response.send(body)
    await response.end()


class HTTPError(Exception):
    """Raised by a handler before ``start`` to answer with an error status and a text body."""

    def __init__(self, status: int, message: str, headers: Headers = ()) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


class AbortResponse(Exception):
    """Raised by a handler to cut its response off without a proper end.

    The client then sees a broken stream (no last-chunk on HTTP/1.1, RST_STREAM on HTTP/2)
    rather than a complete-looking short one; an EventSource reconnects. Used for the
    slow-reader policy. The server logs ``reason`` as information, not as a failure.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
