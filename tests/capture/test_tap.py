"""The tap, over real loopback sockets and through trio's generic stream checks."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing

from lab.capture.tap import Recorder, TappedStream, tap_socket_stream
from lab.capture.trace import (
    CLOSE,
    CONNECT,
    EOF,
    RECV,
    RESET,
    SEND,
    SHUTDOWN,
    ConnectionTrace,
    Record,
    Trace,
)

WAIT = 10  # seconds: a generous bound on any one loopback exchange, never reached when it works

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _start_server(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def _echo(stream: trio.abc.Stream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "unexpected EOF"
        data += chunk
    return data


def _kinds(conn: ConnectionTrace) -> list[str]:
    return [r.kind for r in conn.records]


def _collapse(kinds: list[str]) -> list[str]:
    """Kinds with runs of RECV collapsed: recv boundaries are the kernel's choice."""
    return [k for i, k in enumerate(kinds) if k != RECV or i == 0 or kinds[i - 1] != RECV]


def test_client_side_records_every_byte_in_order() -> None:
    messages: list[bytes | bytearray | memoryview] = [
        b"hello",
        bytearray(b"binary \x00\xff\r\n"),
        memoryview(b"x" * 100_000),
        b"",
    ]
    recorder = Recorder(Trace("echo"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await _start_server(nursery, _echo)
            with trio.fail_after(WAIT):
                stream = recorder.tap(await trio.open_tcp_stream("127.0.0.1", port), "client")
                for message in messages:
                    await stream.send_all(message)
                    assert await _receive_exactly(stream, len(message)) == message
                await stream.send_eof()
                assert await stream.receive_some() == b""
                await stream.aclose()
                await stream.aclose()  # idempotent, and recorded once
            nursery.cancel_scope.cancel()

    trio.run(main)
    (conn,) = recorder.trace.connections
    assert conn.side == "client"
    assert conn.peer[1] != conn.local[1]
    assert conn.local == ("127.0.0.1", conn.local[1])
    assert conn.protocol == "http/1.1"
    expected = b"".join(bytes(m) for m in messages)
    assert conn.sent() == expected
    assert conn.received() == expected
    assert [r.data for r in conn.records if r.kind == SEND] == [bytes(m) for m in messages]
    assert all(type(r.data) is bytes for r in conn.records)
    assert _collapse(_kinds(conn)) == [
        CONNECT,
        *[SEND, RECV] * 3,
        SEND,  # the empty send_all: recorded, nothing to receive back
        SHUTDOWN,
        EOF,
        CLOSE,
    ]
    times = [r.t for r in conn.records]
    assert times == sorted(times)
    assert times[0] == 0.0


def test_server_side_records_eof_and_close() -> None:
    recorder = Recorder(Trace("server side"))
    handled = trio.Event()

    async def tapped_echo(stream: trio.SocketStream) -> None:
        await _echo(recorder.tap(stream, "server"))
        handled.set()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await _start_server(nursery, tapped_echo)
            with trio.fail_after(WAIT):
                client = await trio.open_tcp_stream("127.0.0.1", port)
                await client.send_all(b"GET / HTTP/1.1\r\n")
                await client.send_all(b"\r\n")
                assert await _receive_exactly(client, 18) == b"GET / HTTP/1.1\r\n\r\n"
                await client.send_eof()
                assert await client.receive_some() == b""
                await client.aclose()
                await handled.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)
    (conn,) = recorder.trace.connections
    assert conn.side == "server"
    assert conn.local[0] == conn.peer[0] == "127.0.0.1"
    assert conn.client == conn.peer
    assert conn.client_to_server() == conn.server_to_client() == b"GET / HTTP/1.1\r\n\r\n"
    kinds = _kinds(conn)
    assert kinds[0] == CONNECT
    assert kinds[-2:] == [EOF, CLOSE]
    # An echo server answers each receive with a send of the same bytes.
    pairs = conn.records[1:-2]
    assert [r.kind for r in pairs] == [RECV, SEND] * (len(pairs) // 2)
    assert all(a.data == b.data for a, b in zip(pairs[::2], pairs[1::2], strict=True))


def _set_linger_zero(stream: trio.SocketStream) -> None:
    # SO_LINGER on with a timeout of 0: close() sends RST instead of FIN.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_reset_by_peer_is_recorded_and_reraised() -> None:
    recorder = Recorder(Trace("reset"))

    async def reset_after_ping(stream: trio.SocketStream) -> None:
        assert await _receive_exactly(stream, 4) == b"ping"
        _set_linger_zero(stream)
        await stream.aclose()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await _start_server(nursery, reset_after_ping)
            with trio.fail_after(WAIT):
                stream = recorder.tap(await trio.open_tcp_stream("127.0.0.1", port), "client")
                await stream.send_all(b"ping")
                with pytest.raises(trio.BrokenResourceError) as info:
                    await stream.receive_some()
                assert isinstance(info.value.__cause__, ConnectionResetError)
                with pytest.raises(trio.BrokenResourceError):
                    await stream.send_all(b"too late")  # EPIPE on a reset connection
                await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    (conn,) = recorder.trace.connections
    assert _kinds(conn) == [CONNECT, SEND, RESET, RESET, CLOSE]
    assert conn.sent() == b"ping", "the failed send_all is not recorded as sent"


def _tap_with_addresses(stream: trio.abc.Stream, trace: Trace) -> TappedStream:
    return Recorder(trace).tap(stream, "client", local=("127.0.0.1", 1), peer=("127.0.0.1", 2))


class _ResettingStream(trio.abc.HalfCloseableStream):
    """A stream whose peer has reset the connection, raising the bare OSError."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        raise ConnectionResetError(104, "Connection reset by peer")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        raise ConnectionResetError(104, "Connection reset by peer")

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        raise ConnectionResetError(104, "Connection reset by peer")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_connection_reset_error_is_recorded_too() -> None:
    trace = Trace("reset")
    stream = _tap_with_addresses(_ResettingStream(), trace)

    async def main() -> None:
        for call in (stream.send_all(b"x"), stream.receive_some(), stream.send_eof()):
            with pytest.raises(ConnectionResetError):
                await call

    trio.run(main)
    assert _kinds(trace.connections[0]) == [CONNECT, RESET, RESET, RESET]


def test_send_eof_needs_a_half_closeable_stream() -> None:
    conn = ConnectionTrace("client", ("127.0.0.1", 1), ("127.0.0.1", 2))
    stream = TappedStream(_PlainStream(), conn, lambda: 0.0)

    async def main() -> None:
        with pytest.raises(TypeError, match="cannot send EOF"):
            await stream.send_eof()

    trio.run(main)
    assert _kinds(conn) == [CONNECT]


class _PlainStream(trio.abc.Stream):
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_recorder_puts_connections_on_one_axis_and_names_the_protocol_later() -> None:
    ticks = iter([100.0, 100.5, 101.0, 102.0, 103.0, 104.0])
    recorder = Recorder(Trace("axis"), clock=lambda: next(ticks))
    a, b = trio.testing.memory_stream_pair()
    first = recorder.tap(a, "client", local=("127.0.0.1", 40000), peer=("127.0.0.1", 8080))
    second = recorder.tap(
        b,
        "server",
        local=("127.0.0.1", 8080),
        peer=("127.0.0.1", 40000),
        protocol="unknown",
        received=bytearray(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    )
    second.set_protocol("h2c")
    assert recorder.t0 == 100.0
    assert first.conn.records == [Record(0.0, CONNECT)]
    assert second.conn.records == [
        Record(0.5, CONNECT),
        Record(1.0, RECV, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ]
    assert recorder.trace.connections == [first.conn, second.conn]
    assert second.conn.protocol == "h2c"
    assert recorder.now() == 2.0


def test_tap_needs_addresses_for_non_socket_streams() -> None:
    a, _ = trio.testing.memory_stream_pair()
    with pytest.raises(TypeError, match="give local and peer"):
        Recorder().tap(a, "client")


def test_tap_socket_stream_reads_addresses_and_takes_t0() -> None:
    async def main() -> None:
        left, right = trio.socket.socketpair(socket.AF_UNIX)
        trace = Trace("pair")
        tapped = tap_socket_stream(trio.SocketStream(left), "client", trace, t0=-1.0)
        assert trace.connections == [tapped.conn]
        assert tapped.conn.records[0].t > 0.0  # time.monotonic() - (-1.0)
        assert tapped.conn.local == (str(left.getsockname()), 0)  # AF_UNIX: no port
        await tapped.send_all(b"x")
        await tapped.aclose()
        right.close()

    trio.run(main)


def test_sent_bytes_are_a_copy() -> None:
    buffer = bytearray(b"abc")
    a, b = trio.testing.memory_stream_pair()
    stream = _tap_with_addresses(a, Trace("copy"))

    async def main() -> None:
        await stream.send_all(buffer)
        buffer[0:3] = b"xyz"
        assert await b.receive_some() == b"abc"

    trio.run(main)
    assert stream.conn.sent() == b"abc"


# ---------------------------------------------------------------------------- trio's checks


async def _tapped_pair(
    maker: Callable[[], tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]],
) -> tuple[TappedStream, TappedStream]:
    await trio.lowlevel.checkpoint()
    a, b = maker()
    recorder = Recorder(Trace("check"))
    return (
        recorder.tap(a, "client", local=("127.0.0.1", 1), peer=("127.0.0.1", 2)),
        recorder.tap(b, "server", local=("127.0.0.1", 2), peer=("127.0.0.1", 1)),
    )


def test_tapped_memory_streams_pass_trios_stream_checks() -> None:
    async def main() -> None:
        maker = partial(_tapped_pair, trio.testing.memory_stream_pair)
        await trio.testing.check_half_closeable_stream(maker, None)

    trio.run(main)


def _socket_pair(*, clogged: bool = False) -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected pair; if ``clogged``, neither side can send until the other receives."""
    left, right = socket.socketpair()
    for sock in (left, right) if clogged else ():
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # small sends, so that the buffers end up really full
                sock.send(b"x" * 1024)
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(left)),
        trio.SocketStream(trio.socket.from_stdlib_socket(right)),
    )


def test_tapped_sockets_pass_trios_stream_checks() -> None:
    async def main() -> None:
        await trio.testing.check_half_closeable_stream(
            partial(_tapped_pair, _socket_pair),
            partial(_tapped_pair, partial(_socket_pair, clogged=True)),
        )

    trio.run(main)
