"""The recording relay over real loopback sockets: bytes both ways, half-closes, a target
that refuses, one recorder per experiment, one clock with a client's tap."""

from __future__ import annotations

import functools
import socket

import trio

from lab.capture.relay import Relay
from lab.capture.tap import Recorder
from lab.capture.trace import CLOSE, CONNECT, EOF, RECV, SEND, SHUTDOWN, Trace

WAIT = 10  # seconds: a generous bound on any one loopback exchange, never reached when it works


async def _serve(nursery: trio.Nursery, handler: object) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def _shout(stream: trio.SocketStream) -> None:
    """Upper-cases what it gets; after the peer's EOF it says goodbye and closes."""
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data.upper())
        await stream.send_all(b"bye")


async def _read_all(stream: trio.SocketStream) -> bytes:
    out = b""
    while data := await stream.receive_some():
        out += data
    return out


def _kinds(records: list[object]) -> list[str]:
    return [r.kind for r in records]  # type: ignore[attr-defined]


def test_relay_copies_both_ways_and_records_the_accepted_connection() -> None:
    async def main() -> None:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                target = await _serve(nursery, _shout)
                recorder = Recorder(Trace("relay"))
                relay = Relay(("127.0.0.1", target), recorder)
                await nursery.start(relay.serve)
                client = await trio.open_tcp_stream("127.0.0.1", relay.port)
                client_port = client.socket.getsockname()[1]
                await client.send_all(b"hello")
                assert await client.receive_some() == b"HELLO"
                await client.send_eof()  # the half-close crosses the relay
                assert await _read_all(client) == b"bye"
                await client.aclose()
                assert await relay.wait_idle(WAIT)
                nursery.cancel_scope.cancel()
        (conn,) = recorder.trace.connections
        assert conn.side == "server"
        assert conn.local == ("127.0.0.1", relay.port)
        assert conn.peer == ("127.0.0.1", client_port)
        assert conn.received() == b"hello"  # what the peer sent
        assert conn.sent() == b"HELLObye"  # what the target sent
        kinds = _kinds(conn.records)
        assert kinds[0] == CONNECT
        # The peer's FIN (EOF), then the target's goodbye, its FIN passed on, the close.
        assert kinds.index(EOF) < max(i for i, k in enumerate(kinds) if k == SEND)
        assert kinds[-2:] == [SHUTDOWN, CLOSE]
        assert (relay.accepted, relay.peer_finished, relay.open) == (1, 1, 0)

    trio.run(main)


def test_a_target_that_refuses_closes_the_peer_and_is_counted() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, nobody listening
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    async def main() -> None:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                recorder = Recorder(Trace("refused"))
                relay = Relay(("127.0.0.1", closed_port), recorder)
                await nursery.start(relay.serve)
                client = await trio.open_tcp_stream("127.0.0.1", relay.port)
                assert await _read_all(client) == b""
                await client.aclose()
                assert await relay.wait_idle(WAIT)
                nursery.cancel_scope.cancel()
        assert relay.failed_connects == 1
        (conn,) = recorder.trace.connections
        assert _kinds(conn.records) == [CONNECT, CLOSE]

    trio.run(main)


def test_each_connection_goes_to_the_recorder_current_when_it_was_accepted() -> None:
    async def main() -> None:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                target = await _serve(nursery, _shout)
                first, second = Recorder(Trace("first")), Recorder(Trace("second"))
                relay = Relay(("127.0.0.1", target), first)
                await nursery.start(relay.serve)
                for recorder, word in ((first, b"one"), (second, b"two")):
                    relay.recorder = recorder
                    client = await trio.open_tcp_stream("127.0.0.1", relay.port)
                    await client.send_all(word)
                    await client.send_eof()
                    assert await _read_all(client) == word.upper() + b"bye"
                    await client.aclose()
                    assert await relay.wait_idle(WAIT)
                nursery.cancel_scope.cancel()
        assert [c.received() for c in first.trace.connections] == [b"one"]
        assert [c.received() for c in second.trace.connections] == [b"two"]

    trio.run(main)


def test_a_shared_recorder_puts_the_client_and_the_relay_on_one_clock() -> None:
    async def main() -> None:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                target = await _serve(nursery, _shout)
                recorder = Recorder(Trace("both legs"))
                relay = Relay(("127.0.0.1", target), recorder)
                await nursery.start(relay.serve)
                sock = await trio.open_tcp_stream("127.0.0.1", relay.port)
                client = recorder.tap(sock, "client")
                await client.send_all(b"x")
                assert await client.receive_some() == b"X"
                await client.aclose()
                assert await relay.wait_idle(WAIT)
                nursery.cancel_scope.cancel()
        # Whichever was tapped first (the relay may accept before the client's tap is
        # made) starts the clock at 0.
        sides = {c.side: c for c in recorder.trace.connections}
        client_conn, relayed = sides["client"], sides["server"]
        assert min(c.records[0].t for c in sides.values()) == 0.0
        sent = next(r for r in client_conn.records if r.kind == SEND)
        got = next(r for r in relayed.records if r.kind == RECV)
        echoed = next(r for r in relayed.records if r.kind == SEND)
        back = next(r for r in client_conn.records if r.kind == RECV)
        # Causality on the one clock: the client sent before it read the answer, and the
        # relay got the request before it passed the answer on. (The relay's SEND is
        # stamped when send_all returns, so it may come after the client's RECV.)
        assert sent.t <= back.t
        assert got.t <= echoed.t
        assert (got.data, echoed.data, back.data) == (b"x", b"X", b"X")

    trio.run(main)
