"""Clients that misbehave on purpose, over every way the lab serves: HTTP/1.1 and h2c on
plain TCP, and both inside TLS (chosen by ALPN). Requests are built by h11 / h2 as a
client (independent of the server's code) and sent as raw bytes, so a test can cut,
reset or stop reading at any byte."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h11
import trio

from lab.apps import Handler
from lab.apps import app as lab_app
from lab.server import Limits, Server, serve_tcp
from lab.server.tls import TLSConfig, make_tls
from tests.server.helpers import WAIT

# The four ways in: (TLS or not, the protocol spoken).
PROTOCOLS: Final = ("http/1.1", "h2c", "tls+http/1.1", "tls+h2")

Fields = list[tuple[str, str]]


@functools.cache
def tls_config() -> TLSConfig:
    return make_tls()


def uses_tls(protocol: str) -> bool:
    return protocol.startswith("tls+")


def is_h2(protocol: str) -> bool:
    return protocol in ("h2c", "tls+h2")


@asynccontextmanager
async def server_for(
    protocol: str, app: Handler = lab_app, limits: Limits | None = None
) -> AsyncIterator[Server]:
    """A lab server (TLS if ``protocol`` needs it) on 127.0.0.1 port 0."""
    tls = tls_config() if uses_tls(protocol) else None
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve_tcp(app, 0, limits=limits, tls=tls, task_status=task_status)
        )
        try:
            yield server
        finally:
            while _opened:
                await _opened.pop().close()
            nursery.cancel_scope.cancel()


# Client connections opened while a server_for block runs, closed when it ends.
_opened: list[Conn] = []


class Conn:
    """One client connection: the stream to write and read, and the socket under it."""

    def __init__(self, stream: trio.abc.Stream, sock: trio.SocketStream) -> None:
        self.stream = stream
        self.sock = sock

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_until_close(self, limit: int = 1 << 24) -> bytes:
        out = bytearray()
        with trio.fail_after(WAIT):
            try:
                while len(out) < limit and (data := await self.stream.receive_some(65536)):
                    out += data
            except trio.BrokenResourceError:
                pass  # a reset after the last bytes
        return bytes(out)

    async def close(self) -> None:
        """An orderly close (FIN; close_notify first over TLS)."""
        with (
            trio.move_on_after(1),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await self.stream.aclose()
        await self.sock.aclose()

    async def reset(self) -> None:
        """Leave with a TCP RST: SO_LINGER 0, then close."""
        self.sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.sock.aclose()


async def connect(server: Server, protocol: str) -> Conn:
    sock = await trio.open_tcp_stream("127.0.0.1", server.port)
    if not uses_tls(protocol):
        _opened.append(Conn(sock, sock))
        return _opened[-1]
    context = ssl.create_default_context(cadata=tls_config().ca_pem.decode("ascii"))
    context.set_alpn_protocols(["h2" if is_h2(protocol) else "http/1.1"])
    tls = trio.SSLStream(sock, context, server_hostname="127.0.0.1")
    _opened.append(Conn(tls, sock))
    with trio.fail_after(WAIT):
        await tls.do_handshake()
    return _opened[-1]


def h2_client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def _h2_pseudo(method: str, target: str) -> Fields:
    return [(":method", method), (":path", target), (":scheme", "http"),
            (":authority", "127.0.0.1")]  # fmt: skip


def request_bytes(
    protocol: str, method: str, target: str, headers: Fields | None = None, body: bytes = b"",
    *, reset_stream: bool = False,
) -> bytes:  # fmt: skip
    """One whole request as the client writes it (the h2 preface and SETTINGS first)."""
    headers = headers or []
    if not is_h2(protocol):
        client = h11.Connection(h11.CLIENT)
        fields = [("host", "127.0.0.1"), *headers]
        if body:
            fields.append(("content-length", str(len(body))))
        out = client.send(h11.Request(method=method, target=target, headers=fields)) or b""
        if body:
            out += client.send(h11.Data(data=body)) or b""
        return out + (client.send(h11.EndOfMessage()) or b"")
    conn = h2_client()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [*_h2_pseudo(method, target), *headers], end_stream=not body)
    if body:
        conn.send_data(sid, body, end_stream=True)
    if reset_stream:
        conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    return conn.data_to_send()


async def exchange(
    conn: Conn, protocol: str, method: str, target: str, headers: Fields | None = None
) -> tuple[int, bytes]:
    """Send one request on ``conn`` and read its whole response: (status, body)."""
    headers = headers or []
    status, body = 0, bytearray()
    with trio.fail_after(WAIT):
        if not is_h2(protocol):
            client = h11.Connection(h11.CLIENT)
            request = h11.Request(method=method, target=target, headers=[("host", "x"), *headers])
            await conn.send(
                (client.send(request) or b"") + (client.send(h11.EndOfMessage()) or b"")
            )
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await conn.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return status, bytes(body)
                else:
                    raise AssertionError(f"response cut short: {event!r}")
        client2 = h2_client()
        sid = client2.get_next_available_stream_id()
        client2.send_headers(sid, [*_h2_pseudo(method, target), *headers], end_stream=True)
        await conn.send(client2.data_to_send())
        while True:
            data = await conn.stream.receive_some(65536)
            assert data, "connection closed before the response ended"
            for event in client2.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers or [])[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data or b""
                    client2.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, bytes(body)
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event!r}")
            await conn.send(client2.data_to_send())


async def fetch(
    server: Server, protocol: str, target: str, method: str = "GET"
) -> tuple[int, bytes]:
    """A well-behaved request on a new connection: (status, body)."""
    conn = await connect(server, protocol)
    try:
        return await exchange(conn, protocol, method, target)
    finally:
        await conn.close()
