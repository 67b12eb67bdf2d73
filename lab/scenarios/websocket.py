"""WebSocket scenarios: the token stream as messages over HTTP/1.1 (RFC 6455: an Upgrade
answered 101) and over HTTP/2 (RFC 8441: an extended CONNECT answered 200), a client that
stops the stream, a ping answered by a pong, and a closing handshake the client starts.

The client here is the lab's own, written for captures that reproduce byte for byte:

- its ``Sec-WebSocket-Key`` is RFC 6455's sample nonce (§1.3, :data:`KEY`) and every frame
  it sends is masked with the key of §5.7's examples (:data:`MASK_KEY`). A real client
  picks both at random, a key per connection (§4.1) and a masking key per frame (§5.3);
  the server cannot tell, and masking with a known key changes nothing it checks;
- it never races the server: it answers a Close only once the server's Close has come
  (§5.5.1), and it sends ``stop``, a ping or its own Close only between two tokens, which
  come :data:`INTERVAL_MS` apart, so the order of the bytes on the wire is the same on
  every run;
- what it reads is decoded with the lab's :class:`~lab.wire.websocket.WebSocketDecoder`
  (role ``"client"``: unmasked frames only, §5.1); over HTTP/1.1 the handshake's answer
  is read with h11.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Protocol

import h11
import trio

from lab.capture.tap import Recorder, TappedStream
from lab.client.http2 import H2ClientConnection, H2Response, open_h2_connection
from lab.client.transports import CLIENT_TIMEOUT, RECEIVE_SIZE, USER_AGENT, Budget
from lab.scenarios.runner import Scenario, ScenarioFn
from lab.server import Server
from lab.wire.websocket import (
    Message,
    WebSocketDecoder,
    WebSocketFrame,
    check_response,
    close,
    extended_connect_response_problems,
    ping,
    request_headers,
    text,
)

__all__ = ["INTERVAL_MS", "KEY", "MASK_KEY", "WEBSOCKET_SCENARIOS"]

# RFC 6455 §1.3: "the sample nonce" of the handshake's example, and §5.7's masking key.
KEY: Final = "dGhlIHNhbXBsZSBub25jZQ=="
MASK_KEY: Final = bytes.fromhex("37fa213d")
# Between two tokens: long enough that what the client sends after one token reaches the
# server, and is answered, well before the next token is due.
INTERVAL_MS: Final = 60


class _Socket(Protocol):
    """One WebSocket, over either HTTP version: frames out, messages in."""

    async def send(self, frame: bytes) -> None: ...
    async def receive(self) -> list[Message]: ...
    async def finish(self) -> None: ...


class _Messages:
    """The server's frames, decoded as they come, to the messages they complete."""

    def __init__(self) -> None:
        self.decoder = WebSocketDecoder("client", fields=False)
        self.budget = Budget()

    def feed(self, data: bytes) -> list[Message]:
        frames = self.decoder.feed(self.budget.take(data))
        return [f.message for f in frames if isinstance(f, WebSocketFrame) and f.message]


class _H1Socket:
    def __init__(self, stream: TappedStream, leftover: bytes) -> None:
        self.stream = stream
        self.messages = _Messages()
        self.pending = self.messages.feed(leftover)

    async def send(self, frame: bytes) -> None:
        with trio.fail_after(CLIENT_TIMEOUT):
            await self.stream.send_all(frame)

    async def receive(self) -> list[Message]:
        while not self.pending:
            with trio.fail_after(CLIENT_TIMEOUT):
                data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ConnectionError("the server closed the TCP connection")
            self.pending = self.messages.feed(data)
        out, self.pending = self.pending, []
        return out

    async def finish(self) -> None:
        # §7.1.1: after the closing handshake the server closes the TCP connection first.
        with trio.fail_after(CLIENT_TIMEOUT):
            while await self.stream.receive_some(RECEIVE_SIZE):
                pass


class _H2Socket:
    def __init__(self, conn: H2ClientConnection, response: H2Response) -> None:
        self.conn = conn
        self.response = response
        self.sid = response.stream_id
        self.messages = _Messages()
        self.seen = 0

    async def send(self, frame: bytes) -> None:
        self.conn.conn.send_data(self.sid, frame)
        await self.conn.flush()

    async def receive(self) -> list[Message]:
        out: list[Message] = []
        while not out:  # each read bounded in time (pump), the whole by the budget
            for _, data in self.response.frames[self.seen :]:
                out += self.messages.feed(data)
            self.seen = len(self.response.frames)
            if out:
                break
            if self.response.ended or self.response.reset_code is not None or self.conn.closed:
                raise ConnectionError("the WebSocket's stream ended")
            await self.conn.pump()
        return out

    async def finish(self) -> None:
        # RFC 8441 §4: the stream's END_STREAM is the TCP close of RFC 6455; the server
        # ends its half after the closing handshake, then the client ends its own.
        await self.conn.pump_until(lambda: self.response.ended)
        self.conn.conn.end_stream(self.sid)
        await self.conn.flush()
        await self.conn.close()


@asynccontextmanager
async def _ws_h1(server: Server, rec: Recorder, target: str) -> AsyncIterator[_Socket]:
    """GET with Upgrade: websocket (RFC 6455 §4.1), the 101 checked (§4.2.2)."""
    with trio.fail_after(CLIENT_TIMEOUT):
        sock = await trio.open_tcp_stream(server.host, server.port)
    stream = rec.tap(sock, "client")
    try:
        client = h11.Connection(h11.CLIENT)
        fields = [*request_headers(f"{server.host}:{server.port}", KEY), ("User-Agent", USER_AGENT)]
        data = client.send(h11.Request(method="GET", target=target, headers=fields)) or b""
        with trio.fail_after(CLIENT_TIMEOUT):
            await stream.send_all(data + (client.send(h11.EndOfMessage()) or b""))
            while (event := client.next_event()) is h11.NEED_DATA:
                client.receive_data(await stream.receive_some(RECEIVE_SIZE))
        if not isinstance(event, h11.InformationalResponse) or event.status_code != 101:
            raise ConnectionError(f"the handshake was not answered 101: {event!r}")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        check_response(101, headers, KEY)
        yield _H1Socket(stream, bytes(client.trailing_data[0]))
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


@asynccontextmanager
async def _ws_h2(server: Server, rec: Recorder, target: str) -> AsyncIterator[_Socket]:
    """An extended CONNECT on an h2c stream (RFC 8441 §4), the 200 checked (§5)."""
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        if not conn.conn.remote_settings.enable_connect_protocol:
            raise ConnectionError("no SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)")
        sid = conn.conn.get_next_available_stream_id()
        conn.conn.send_headers(
            sid,
            [
                (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                (":path", target), (":authority", f"{server.host}:{server.port}"),
                ("sec-websocket-version", "13"), ("user-agent", USER_AGENT),
            ],
        )  # fmt: skip
        response = conn.responses[sid] = H2Response(sid)
        await conn.flush()
        await conn.pump_until(lambda: bool(response.status) or response.ended)
        problems = extended_connect_response_problems(response.status)
        if problems:
            raise ConnectionError("; ".join(problems))
        yield _H2Socket(conn, response)


async def _until_close(ws: _Socket, seen: list[Message]) -> Message:
    """Read until the server's Close; every message before it goes to ``seen``."""
    while True:
        for message in await ws.receive():
            if message.type == "close":
                return message
            seen.append(message)


async def _echo_close(ws: _Socket, theirs: Message) -> None:
    """Answer the server's Close with the same code (§5.5.1), then let it close."""
    await ws.send(close(theirs.code, mask_key=MASK_KEY))
    await ws.finish()


async def _tokens(ws: _Socket) -> None:
    await _echo_close(ws, await _until_close(ws, []))


async def _stop(ws: _Socket) -> None:
    # Two tokens, then the text message `stop`: the server sends no more and closes.
    got = 0
    while got < 2:
        got += sum(1 for m in await ws.receive() if m.type == "text")
    await ws.send(text("stop", mask_key=MASK_KEY))
    await _echo_close(ws, await _until_close(ws, []))


async def _ping(ws: _Socket) -> None:
    # A ping after the first token; its pong comes back before the second.
    await ws.receive()
    await ws.send(ping(b"lab-ping", mask_key=MASK_KEY))
    seen: list[Message] = []
    theirs = await _until_close(ws, seen)
    if not any(m.type == "pong" and m.data == b"lab-ping" for m in seen):
        raise ConnectionError("the server did not answer the ping with its data (§5.5.2)")
    await _echo_close(ws, theirs)


async def _client_close(ws: _Socket) -> None:
    # Two tokens, then the client's own Close: the server answers it with a Close and
    # closes the TCP connection (§5.5.1, §7.1.1).
    got = 0
    while got < 2:
        got += sum(1 for m in await ws.receive() if m.type == "text")
    await ws.send(close(1000, "enough", mask_key=MASK_KEY))
    await _until_close(ws, [])
    await ws.finish()


Opener = Callable[[Server, Recorder, str], AbstractAsyncContextManager[_Socket]]


def _script(opener: Opener, query: str, body: Callable[[_Socket], Awaitable[None]]) -> ScenarioFn:
    async def script(server: Server, rec: Recorder) -> None:
        async with opener(server, rec, f"/ws/tokens?{query}&interval_ms={INTERVAL_MS}") as ws:
            await body(ws)

    return script


WEBSOCKET_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "ws-h1-tokens", "WebSocket over HTTP/1.1: the Upgrade handshake, then a token per message",
        "A GET with Upgrade: websocket and a Sec-WebSocket-Key; the server answers 101 "
        "Switching Protocols with the Sec-WebSocket-Accept that proves it read the key (RFC "
        "6455 §4.2.2), and from the byte after the 101's empty line neither side speaks HTTP. "
        "Each token is one unmasked TEXT frame (2 bytes of header, then the text), then "
        "[DONE] and a Close 1000; the client answers with its own Close, masked like every "
        "frame a client sends, and the server closes the TCP connection.",
        _script(_ws_h1, "n=4&prompt=ws", _tokens),
    ),
    Scenario(
        "ws-h2-tokens", "WebSocket over HTTP/2 (RFC 8441): an extended CONNECT, frames in DATA",
        "The server's SETTINGS carry ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3), so the client "
        "opens stream 1 with :method CONNECT and :protocol websocket; a 200 accepts it. The "
        "same WebSocket frames as over HTTP/1.1 then travel as the data of that stream's DATA "
        "frames: two framings, one inside the other. The stream's END_STREAM in each "
        "direction is what closing the TCP connection is over HTTP/1.1.",
        _script(_ws_h2, "n=4&prompt=ws", _tokens),
    ),
    Scenario(
        "ws-stop", "WebSocket: the client sends `stop` mid-stream; the server stops and closes",
        "After two tokens the client sends the text message stop, masked. The server sends "
        "no more tokens and no [DONE]: its Close 1000 says in its reason how many tokens it "
        "sent. Over one connection, both directions at once: what SSE cannot do without a "
        "second request.",
        _script(_ws_h1, "n=10&prompt=stop", _stop),
    ),
    Scenario(
        "ws-ping", "WebSocket: a ping from the client, answered by a pong with the same data",
        "A PING control frame (opcode 0x9) carrying lab-ping goes up between two tokens; the "
        "server answers at once with a PONG (0xA) carrying the same bytes (RFC 6455 §5.5.2), "
        "before the next token. Control frames may come between the frames of a message.",
        _script(_ws_h1, "n=3&prompt=ping", _ping),
    ),
    Scenario(
        "ws-close", "WebSocket: the client starts the closing handshake mid-stream",
        "After two tokens the client sends Close 1000 with the reason enough. The server "
        "sends no more data frames: it answers with a Close of its own (RFC 6455 §5.5.1) and, "
        "having both, closes the TCP connection (§7.1.1). The client never closes first.",
        _script(_ws_h1, "n=10&prompt=close", _client_close),
    ),
)  # fmt: skip
