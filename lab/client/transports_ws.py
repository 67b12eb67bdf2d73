"""The token stream over WebSocket: RFC 6455 on an HTTP/1.1 connection, and RFC 8441's
extended CONNECT on an h2c stream. Companions of :mod:`lab.client.transports`, with the
same :class:`~lab.client.transports.TransportRun` back.

Both ask for ``/ws/tokens?prompt=&n=&interval_ms=``. Whether the server offers it is found
out on the wire, never assumed: over HTTP/1.1 anything but ``101 Switching Protocols``
(RFC 6455 §4.1: a 404, say) makes the run *not served*, with the status as its note; over
HTTP/2 so does a server that does not send ``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`` (RFC
8441 §3: a client must not send an extended CONNECT without it) or a CONNECT answered
with anything but 2xx (RFC 8441 §5). The handshake's bytes are in the trace either way.

What the server sends is read with the lab's decoder (:class:`WebSocketDecoder`, role
``"client"``: unmasked frames only, §5.1). Each text message is one token: the token's
text itself (what the lab's ``/ws/tokens`` sends), or a JSON object ``{"index": i,
"token": "..."}`` (``{"token": ...}`` without an index counts in order); ``[DONE]`` or
``{"done": true}`` ends the stream. A token is
decoded when the frame that ends its message has been read. Then the client starts the
closing handshake (§5.5.1: a masked Close 1000) and reads until the server's Close.
"""

from __future__ import annotations

import json
from typing import Final

import h11
import trio

from lab.capture.tap import Recorder, TappedStream
from lab.client.http2 import H2ClientConnection, H2Response, open_h2_connection
from lab.client.transports import (
    CLIENT_TIMEOUT,
    DONE,
    RECEIVE_SIZE,
    USER_AGENT,
    Budget,
    Received,
    StreamSpec,
    TransportError,
    TransportRun,
)
from lab.wire.websocket import (
    Message,
    WebSocketDecoder,
    WebSocketError,
    WebSocketFrame,
    check_response,
    close,
    extended_connect_response_problems,
    make_key,
    random_mask_key,
    request_headers,
)

__all__ = ["WS_PATH", "ws_h1", "ws_h2"]

WS_PATH: Final = "/ws/tokens"
# What a refusal's body may add to the note: enough for "no endpoint at /ws/tokens".
NOTE_BODY_CHARS: Final = 80


class _Reader:
    """Messages to tokens, and whether the stream is over."""

    def __init__(self) -> None:
        self.decoder = WebSocketDecoder("client", fields=False)
        self.budget = Budget()
        self.tokens: list[Received] = []
        self.done = False  # [DONE] arrived: the client closes
        self.closed = False  # the server's Close arrived

    def feed(self, data: bytes, t: float) -> None:
        try:
            segments = self.decoder.feed(self.budget.take(data))
        except WebSocketError as exc:
            raise TransportError(f"the server's frames: {exc}") from None
        for seg in segments:
            if isinstance(seg, WebSocketFrame) and seg.message is not None:
                self._message(seg.message, t)

    def _message(self, message: Message, t: float) -> None:
        if message.type == "close":
            self.closed = True
            return
        if message.type != "text" or not isinstance(message.data, str):
            return  # ping, pong, binary: no token
        text = message.data
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if text == DONE or (isinstance(payload, dict) and payload.get("done") is True):
            self.done = True
        elif isinstance(payload, dict) and "token" in payload:
            index = int(payload.get("index", len(self.tokens)))
            self.tokens.append(Received(index, str(payload["token"]), t))
        else:
            self.tokens.append(Received(len(self.tokens), text, t))


def _close_frame() -> bytes:
    return close(1000, mask_key=random_mask_key())


def _not_served(recorder: Recorder, name: str, why: str) -> TransportRun:
    return TransportRun(name, recorder.trace, served=False, note=f"not served: {why}")


async def ws_h1(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    """RFC 6455 over HTTP/1.1: ``GET`` with ``Upgrade: websocket``, then frames."""
    key = make_key()
    authority = f"{host}:{port}"
    client = h11.Connection(h11.CLIENT)
    with trio.fail_after(CLIENT_TIMEOUT):
        sock = await trio.open_tcp_stream(host, port)
    stream = recorder.tap(sock, "client")
    try:
        fields = [*request_headers(authority, key), ("User-Agent", USER_AGENT)]
        target = f"{WS_PATH}?{spec.query()}"
        data = client.send(h11.Request(method="GET", target=target, headers=fields)) or b""
        data += client.send(h11.EndOfMessage()) or b""
        reader = _Reader()
        with trio.fail_after(CLIENT_TIMEOUT):
            await stream.send_all(data)
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(RECEIVE_SIZE))
                    continue
                if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
                    check_response(101, headers, key)
                    break
                if isinstance(event, h11.InformationalResponse):
                    continue  # 100 Continue and the like
                if isinstance(event, h11.Response):
                    body = await _rest_of_body(client, stream)
                    why = f"status {event.status_code} {body[:NOTE_BODY_CHARS]!r}"
                    return _not_served(recorder, "ws-h1", why)
                raise TransportError(f"expected the handshake's answer, got {event!r}")
        leftover, _ = client.trailing_data
        reader.feed(bytes(leftover), recorder.now())
        await _frames_h1(stream, reader, recorder)
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
    return TransportRun("ws-h1", recorder.trace, reader.tokens)


async def _rest_of_body(client: h11.Connection, stream: TappedStream) -> str:
    body = bytearray()
    budget = Budget()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(budget.take(await stream.receive_some(RECEIVE_SIZE)))
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            return body.decode("utf-8", "replace").strip()


async def _frames_h1(stream: TappedStream, reader: _Reader, recorder: Recorder) -> None:
    sent_close = False
    while not reader.closed:  # bounded by the bytes the reader may take
        if reader.done and not sent_close:
            await stream.send_all(_close_frame())
            sent_close = True
        with trio.fail_after(CLIENT_TIMEOUT):
            data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            break  # the server closed the TCP connection after its Close (§7.1.1)
        reader.feed(data, recorder.now())
    if not reader.done:
        raise TransportError("the WebSocket closed before [DONE]")
    if not sent_close:
        await stream.send_all(_close_frame())  # the server closed first: echo it (§5.5.1)


async def ws_h2(host: str, port: int, spec: StreamSpec, recorder: Recorder) -> TransportRun:
    """RFC 8441: an extended CONNECT on an h2c stream, then frames in DATA frames."""
    async with open_h2_connection(host, port, recorder=recorder) as conn:
        if not conn.conn.remote_settings.enable_connect_protocol:
            await conn.close()
            why = "no SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 from the server (RFC 8441 §3)"
            return _not_served(recorder, "ws-h2", why)
        sid = conn.conn.get_next_available_stream_id()
        conn.conn.send_headers(
            sid,
            [
                (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                (":path", f"{WS_PATH}?{spec.query()}"), (":authority", f"{host}:{port}"),
                ("sec-websocket-version", "13"), ("user-agent", USER_AGENT),
            ],
            end_stream=False,
        )  # fmt: skip
        response = conn.responses[sid] = H2Response(sid)
        await conn.flush()
        with trio.fail_after(CLIENT_TIMEOUT):
            while not (response.status or _over(conn, response)):
                await conn.pump()
        problems = extended_connect_response_problems(response.status)
        if response.reset_code is not None or problems:
            body = response.body.decode("utf-8", "replace").strip()[:NOTE_BODY_CHARS]
            what = f"status {response.status} {body!r}" if response.status else "no answer"
            await conn.close()
            return _not_served(recorder, "ws-h2", what)
        reader = await _frames_h2(conn, response, sid)
        await conn.close()
    return TransportRun("ws-h2", recorder.trace, reader.tokens)


def _over(conn: H2ClientConnection, response: H2Response) -> bool:
    return response.ended or response.reset_code is not None or conn.closed


async def _frames_h2(conn: H2ClientConnection, response: H2Response, sid: int) -> _Reader:
    reader = _Reader()
    seen = 0
    sent_close = False
    while True:  # each read bounded in time (pump), the whole by the reader's bytes
        for t, data in response.frames[seen:]:
            reader.feed(data, t)
        seen = len(response.frames)
        if reader.done and not sent_close:
            conn.conn.send_data(sid, _close_frame())
            await conn.flush()
            sent_close = True
        if reader.closed or _over(conn, response):
            break
        await conn.pump()
    if not reader.done:
        raise TransportError("the WebSocket closed before [DONE]")
    if not response.ended and response.reset_code is None:
        # The Close handshake is done: end our half of the stream (RFC 8441 §4 maps the
        # TCP close onto END_STREAM).
        conn.conn.end_stream(sid)
        await conn.flush()
    return reader
