"""A plain h2 client on a raw socket: the independent peer the HTTP/2 server is tested by."""

from __future__ import annotations

from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio

from lab.server import Server
from tests.server.helpers import WAIT, connect


@dataclass
class H2Response:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[bytes] = field(default_factory=list)  # one entry per DATA frame
    trailers: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code, if the server reset it

    @property
    def body(self) -> bytes:
        return b"".join(self.frames)

    @property
    def status(self) -> int:
        return int(self.headers[":status"])


class H2Client:
    def __init__(self, stream: trio.SocketStream, window: int | None = None) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        if window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.conn.initiate_connection()
        self.responses: dict[int, H2Response] = {}
        self.events: list[h2.events.Event] = []  # everything, in order
        self.auto_ack = True  # acknowledge DATA (send WINDOW_UPDATE) as it arrives
        self.closed = False

    @classmethod
    async def connect(cls, server: Server, window: int | None = None) -> H2Client:
        client = cls(await connect(server), window)
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def request(
        self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> int:  # fmt: skip
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "lab")]
        fields += headers or []
        self.conn.send_headers(sid, fields, end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.responses[sid] = H2Response(sid)
        await self.flush()
        return sid

    async def pump(self) -> list[h2.events.Event]:
        """One read; the events it produced."""
        with trio.fail_after(WAIT):
            data = await self.stream.receive_some(65536)
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            self.events.append(event)
            response = self.responses.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.ResponseReceived) and response:
                response.headers = {str(k): str(v) for k, v in event.headers or []}
            elif isinstance(event, h2.events.DataReceived) and response:
                response.frames.append(event.data or b"")
                if self.auto_ack and event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, h2.events.TrailersReceived) and response:
                response.trailers = {str(k): str(v) for k, v in event.headers or []}
            elif isinstance(event, h2.events.StreamEnded) and response:
                response.ended = True
            elif isinstance(event, h2.events.StreamReset) and response:
                response.reset = int(event.error_code or 0)
        await self.flush()
        return events

    async def until_done(self, *stream_ids: int) -> list[H2Response]:
        ids = stream_ids or tuple(self.responses)
        with trio.fail_after(WAIT):
            while not all(
                self.responses[s].ended or self.responses[s].reset is not None for s in ids
            ):
                await self.pump()
                if self.closed:
                    break
        return [self.responses[s] for s in ids]

    async def get(self, path: str, headers: list[tuple[str, str]] | None = None) -> H2Response:
        sid = await self.request("GET", path, headers)
        (response,) = await self.until_done(sid)
        return response
