"""A WebSocket client on a raw connection, the independent peer the server's WebSocket is
tested by: over HTTP/1.1 the Upgrade request written by h11 as a client (RFC 6455 §4.1),
over HTTP/2 an extended CONNECT written by h2 as a client (RFC 8441 §4), and the frames by
lab.wire.websocket, masked as a client's must be (§5.3). Everything the server sends is
decoded with ``WebSocketDecoder("client")``, which refuses what a client must refuse (an
unmasked frame is required, a masked one fails), so a test sees the frames as they were
on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import h11
import trio

from lab.server import Server
from lab.wire.websocket import (
    Message,
    WebSocketDecoder,
    WebSocketFrame,
    check_response,
    close,
    make_key,
    ping,
    random_mask_key,
    request_headers,
    text,
)
from tests.server.helpers import WAIT
from tests.server.peers import Conn, connect, is_h2, uses_tls

Fields = list[tuple[str, str]]


@dataclass
class Refused(Exception):
    """The server answered the handshake with a plain HTTP response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None  # h2: the RST_STREAM code that followed the answer
    client: WSClient | None = None  # its connection, for the next request


def h1_request(target: str, key: str, headers: Fields | None = None) -> bytes:
    """The bytes of an opening handshake: ``headers`` replace the defaults of the same
    name (an empty value drops one)."""
    fields = {k.lower(): v for k, v in request_headers("127.0.0.1", key)}
    for name, value in headers or []:
        fields[name.lower()] = value
    client = h11.Connection(h11.CLIENT)
    wire = [(k, v) for k, v in fields.items() if v]
    head = client.send(h11.Request(method="GET", target=target, headers=wire)) or b""
    return head + (client.send(h11.EndOfMessage()) or b"")


def h2_client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def connect_headers(protocol: str, target: str, headers: Fields | None = None) -> Fields:
    """An extended CONNECT's header list (RFC 8441 §4, §5.1)."""
    fields = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https" if uses_tls(protocol) else "http"),
        (":path", target),
        (":authority", "127.0.0.1"),
        ("sec-websocket-version", "13"),
    ]
    # ``headers`` replace the defaults of the same name in place (an empty value drops
    # one), so that pseudo-header fields stay first (RFC 9113 §8.3); others go last.
    given = dict(headers or [])
    out = [(k, given.pop(k, v)) for k, v in fields]
    return [(k, v) for k, v in [*out, *given.items()] if v]


class WSClient:
    """One WebSocket over ``conn``; :meth:`open` makes one."""

    def __init__(self, conn: Conn, protocol: str) -> None:
        self.conn = conn
        self.protocol = protocol
        self.decoder = WebSocketDecoder("client")
        self.frames: list[WebSocketFrame] = []  # every frame received, in order
        self._unread: list[WebSocketFrame] = []
        self.ended = False  # HTTP/1.1: the server closed TCP; h2: END_STREAM or reset
        self.eof = False  # the server closed the connection
        self.reset: int | None = None  # h2: the RST_STREAM error code
        self.h2: h2.connection.H2Connection | None = None
        self.stream_id = 0
        self.settings: dict[int, int] = {}  # h2: the server's SETTINGS
        self.h2_events: list[h2.events.Event] = []  # h2: every event, in order
        self.goaway: list[int] = []  # h2: the error code of each GOAWAY
        # h2: the other streams' responses (status, body) by stream id, once ended.
        self.others: dict[int, tuple[int, bytes]] = {}
        self._other_parts: dict[int, tuple[int, bytearray]] = {}
        self._h2_buffer = bytearray()

    # -- the handshake ---------------------------------------------------------------

    @classmethod
    async def open(
        cls, server: Server, protocol: str, target: str, headers: Fields | None = None,
        *, early: bytes = b"",
    ) -> WSClient:  # fmt: skip
        """A WebSocket to ``target``; :class:`Refused` if the server answers otherwise.
        ``early``: WebSocket bytes sent with the request, before the server's answer (in
        the same write over HTTP/1.1, a DATA frame right after HEADERS over h2)."""
        client = cls(await connect(server, protocol), protocol)
        with trio.fail_after(WAIT):
            if is_h2(protocol):
                await client._open_h2(target, headers, early)
            else:
                await client._open_h1(target, headers, early)
        return client

    async def _open_h1(self, target: str, headers: Fields | None, early: bytes) -> None:
        key = make_key()
        await self.conn.send(h1_request(target, key, headers) + early)
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method="GET", target=target, headers=[
            ("host", "x"), ("upgrade", "websocket"), ("connection", "upgrade"),
        ]))  # fmt: skip
        parser.send(h11.EndOfMessage())
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await self.conn.stream.receive_some(65536))
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                fields = [(k.decode(), v.decode()) for k, v in event.headers]
                check_response(101, fields, key)
                rest, _ = parser.trailing_data
                self._feed(bytes(rest))
                return
            if isinstance(event, h11.Response):
                refused = Refused(event.status_code, _dict(event.headers), client=self)
                while not isinstance(event := parser.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        parser.receive_data(await self.conn.stream.receive_some(65536))
                    elif isinstance(event, h11.Data):
                        refused.body += event.data
                raise refused
            raise AssertionError(f"unexpected {event!r}")

    async def _open_h2(self, target: str, headers: Fields | None, early: bytes) -> None:
        self.h2 = h2_client()
        await self.conn.send(self.h2.data_to_send())
        # RFC 8441 §3: a client sends :protocol only once the server's SETTINGS allowed it.
        while not self.settings:
            await self._pump()
        self.stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(self.stream_id, connect_headers(self.protocol, target, headers))
        if early:
            self.h2.send_data(self.stream_id, early)
        await self.conn.send(self.h2.data_to_send())
        self._status = 0
        self._body = bytearray()
        while not self._status:
            await self._pump()
        if self._status != 200:
            while not self.ended:
                await self._pump()
            if self.reset is None and not self.eof:
                await self.until_reset()
            raise Refused(self._status, self._headers, bytes(self._body), self.reset, self)

    # -- the frames ------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        for segment in self.decoder.feed(data):
            if isinstance(segment, WebSocketFrame):
                self.frames.append(segment)
                self._unread.append(segment)

    async def _pump(self) -> None:
        """One read from the connection, fed through h2 (over HTTP/2) and the decoder."""
        data = b""
        if not self.eof:
            try:
                data = await self.conn.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
        if not data:
            self.eof = self.ended = True
            return
        if self.h2 is None:
            self._feed(bytes(data))
            return
        self._h2_buffer += data
        while len(self._h2_buffer) >= 9:
            end = 9 + int.from_bytes(self._h2_buffer[:3], "big")
            if len(self._h2_buffer) < end:
                break
            frame, self._h2_buffer = bytes(self._h2_buffer[:end]), self._h2_buffer[end:]
            if frame[3] == 0x7:
                # GOAWAY: kept from h2, which refuses every frame after one; the streams
                # in flight go on (RFC 9113 §6.8), as the lab's server lets them.
                self.goaway.append(int.from_bytes(frame[13:17], "big"))
                continue
            for event in self.h2.receive_data(frame):
                self._h2_event(event)
        await self.conn.send(self.h2.data_to_send())

    def _h2_event(self, event: h2.events.Event) -> None:
        assert self.h2 is not None
        self.h2_events.append(event)
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings.update({int(k): v.new_value for k, v in event.changed_settings.items()})
        sid = getattr(event, "stream_id", None)
        if sid and sid != self.stream_id:
            self._other_event(sid, event)
            return
        if sid != self.stream_id or not self.stream_id:
            return
        if isinstance(event, h2.events.ResponseReceived):
            self._headers = _dict(event.headers or [])
            self._status = int(self._headers[":status"])
        elif isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
            if self._status == 200:
                self._feed(event.data or b"")
            else:
                self._body += event.data or b""
        elif isinstance(event, h2.events.StreamEnded):
            self.ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.ended = True
            self.reset = int(event.error_code or 0)

    def _other_event(self, sid: int, event: h2.events.Event) -> None:
        assert self.h2 is not None
        status, body = self._other_parts.setdefault(sid, (0, bytearray()))
        if isinstance(event, h2.events.ResponseReceived):
            self._other_parts[sid] = (int(_dict(event.headers or [])[":status"]), body)
        elif isinstance(event, h2.events.DataReceived):
            body += event.data or b""
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded):
            self.others[sid] = (status, bytes(body))

    async def send_raw(self, data: bytes, *, end: bool = False) -> None:
        """WebSocket bytes as they are (HTTP/1.1: on the socket; h2: one DATA frame)."""
        if self.h2 is None:
            await self.conn.send(data)
            return
        with trio.fail_after(WAIT):
            while True:
                # Within the stream's flow-control window (RFC 9113 §6.9): wait for credit.
                window = min(
                    self.h2.local_flow_control_window(self.stream_id),
                    self.h2.max_outbound_frame_size,
                )
                if window <= 0 and data:
                    await self._pump()
                    continue
                piece, data = data[:window], data[window:]
                self.h2.send_data(self.stream_id, piece, end_stream=end and not data)
                await self.conn.send(self.h2.data_to_send())
                if not data:
                    return

    async def send_text(self, data: str) -> None:
        await self.send_raw(text(data, mask_key=random_mask_key()))

    async def send_ping(self, data: bytes) -> None:
        await self.send_raw(ping(data, mask_key=random_mask_key()))

    async def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        await self.send_raw(close(code, reason, mask_key=random_mask_key()))

    async def next_frame(self) -> WebSocketFrame | None:
        """The next frame from the server; None once it ended the connection (or stream)."""
        with trio.fail_after(WAIT):
            while not self._unread and not self.ended:
                await self._pump()
        return self._unread.pop(0) if self._unread else None

    async def until_close(self) -> tuple[list[Message], Message | None]:
        """The data messages up to the server's Close frame, and that frame's message
        (None if the connection ended without one). Pongs are in :attr:`frames`."""
        messages = []
        while (frame := await self.next_frame()) is not None:
            if frame.message is None:
                continue  # a fragment
            if frame.message.type == "close":
                return messages, frame.message
            if frame.message.type in ("text", "binary"):
                messages.append(frame.message)
        return messages, None

    async def until_reset(self) -> int:
        """h2: read until the server resets the stream; its error code."""
        with trio.fail_after(WAIT):
            while self.reset is None and not self.eof:
                await self._pump()
        assert self.reset is not None, "the connection ended, the stream was not reset"
        return self.reset

    async def until_end(self) -> list[WebSocketFrame]:
        """Frames until the server ends the connection (HTTP/1.1) or the stream (h2)."""
        rest = []
        while (frame := await self.next_frame()) is not None:
            rest.append(frame)
        return rest


def _dict(headers: list[tuple[bytes, bytes]] | list[tuple[str, str]]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k).lower(): (
            v.decode() if isinstance(v, bytes) else v
        )
        for k, v in headers
    }
