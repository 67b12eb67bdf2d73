"""WebSocket on the lab's server after the handshake, over HTTP/1.1, h2c and both over TLS,
with a raw client (tests.server.wsclient) that checks every frame as it was on the wire.

- ``/ws/tokens``: the token stream as text messages, ``[DONE]``, close 1000; ``stop``;
- Ping answered by Pong (RFC 6455 §5.5.2), frames sent with the handshake are read;
- the closing handshake both ways (§5.5.1, §7.1.2), and a peer that never answers the
  server's Close, cut after ``ws_close_timeout`` (MockClock: no wall clock);
- idle (1001), shutdown (1001), a failing handler (1011), a handler that returns with the
  WebSocket open (1000);
- bad input fails the connection with the Close code RFC 6455 names (§7.4.1): 1002
  (unmasked frame, reserved opcode), 1007 (invalid UTF-8), 1009 (too big, too many frames);
- over HTTP/2: END_STREAM after the closing handshake, RST_STREAM(NO_ERROR) after a failure
  (the client's side still open), RST_STREAM(CANCEL) for a peer that stopped answering
  (RFC 8441 §6, RFC 9113 §8.1); flow control holds a client back while the handler does
  not read; the control-frame budget applies to the stream's DATA frames.
"""

from __future__ import annotations

import logging
from typing import Final

import pytest
import trio
import trio.testing

from lab.apps import AbortResponse, Handler, Request, ResponseStream
from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.server import Limits, Server
from lab.wire.websocket import (
    Opcode,
    continuation,
    encode_frame,
    ping,
    random_mask_key,
    text,
)
from tests.server.helpers import run
from tests.server.peers import PROTOCOLS, is_h2, server_for
from tests.server.wsclient import WSClient

H2_PROTOCOLS: Final = [p for p in PROTOCOLS if is_h2(p)]
CANCEL: Final = 0x8
NO_ERROR: Final = 0x0
# A stream long enough to still be running whatever the test does meanwhile.
LONG: Final = "/ws/tokens?n=10000&interval_ms=20&prompt=long"


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin, random_mask_key())


async def ended(ws: WSClient, server: Server) -> None:
    """The server ended the connection (HTTP/1.1) or the stream (h2); every connection
    closes once the client closes its own (bounded)."""
    assert await ws.until_end() == []
    await ws.conn.close()
    with trio.fail_after(5):
        await server.wait_no_connections()


# -- the token stream --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_token_stream_then_done_then_close_1000(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, "/ws/tokens?n=12&interval_ms=1&prompt=ws")
            messages, close = await ws.until_close()
            assert [(m.type, m.data) for m in messages] == [
                ("text", t) for t in [*tokens_for("ws", 12), "[DONE]"]
            ]
            assert close is not None
            assert (close.code, close.reason) == (1000, "")
            # Every frame as the server sent it: whole (FIN), unmasked (§5.1).
            assert all(f.fin and not f.masked for f in ws.frames)
            await ws.send_close(1000)
            await ended(ws, server)
            assert ws.reset is None  # h2: END_STREAM, no RST_STREAM (RFC 8441 §6)

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stop_ends_the_stream_early_with_close_1000_and_a_reason(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, LONG)
            for _ in range(3):
                assert (await ws.next_frame()) is not None
            await ws.send_text("ignored: only 'stop' stops it")
            await ws.send_text("stop")
            messages, close = await ws.until_close()
            sent = 3 + len(messages)
            assert [m.data for m in messages] == tokens_for("long", sent)[3:]
            assert close is not None
            assert (close.code, close.reason) == (1000, f"stopped after {sent} of 10000 tokens")
            await ws.send_close(1000)
            await ended(ws, server)

    run(main)


# -- ping, early frames ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_ping_is_answered_with_a_pong_carrying_its_data(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, "/ws/tokens?n=4&interval_ms=50&prompt=p")
            await ws.next_frame()
            await ws.send_ping(b"are you there")
            messages, close = await ws.until_close()
            pongs = [f for f in ws.frames if f.opcode == Opcode.PONG]
            assert [p.data for p in pongs] == [b"are you there"]
            assert [m.data for m in messages if m.type == "text"][-1] == "[DONE]"
            assert close is not None
            assert close.code == 1000
            await ws.send_close(1000)
            await ended(ws, server)

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_frames_sent_with_the_handshake_are_read(protocol: str) -> None:
    # Over HTTP/1.1 the ping and "stop" are in h11's buffer when it switches protocols
    # (its trailing data); over h2 they wait in the stream's inbox until the handler
    # accepts.
    early = ping(b"early", mask_key=random_mask_key()) + text("stop", mask_key=random_mask_key())

    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, LONG, early=early)
            messages, close = await ws.until_close()
            # (The handler may send its first token before the reader gets to them.)
            assert [f.data for f in ws.frames if f.opcode == Opcode.PONG] == [b"early"]
            assert len(messages) <= 2
            assert close is not None
            assert close.code == 1000
            assert close.reason == f"stopped after {len(messages)} of 10000 tokens"
            await ws.send_close(1000)
            await ended(ws, server)

    run(main)


# -- the closing handshake ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("code", "reason"), [(1001, "bye"), (4000, "private"), (None, "")])
def test_the_peers_close_is_answered_then_the_connection_closed(
    protocol: str, code: int | None, reason: str
) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, LONG)
            await ws.next_frame()
            await ws.send_close(code, reason)
            messages, close = await ws.until_close()
            assert all(m.type == "text" for m in messages)  # tokens already in flight
            # §5.5.1: the answer echoes the code (none for none).
            assert close is not None
            assert (close.code, close.reason) == (code, "")
            await ended(ws, server)
            assert ws.reset is None

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_peer_that_never_answers_close_is_cut_after_the_close_timeout(protocol: str) -> None:
    limits = Limits(ws_close_timeout=3.0)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            ws = await WSClient.open(server, protocol, "/ws/tokens?n=2&interval_ms=0&prompt=q")
            messages, close = await ws.until_close()
            closed_at = trio.current_time()
            assert [m.data for m in messages] == [*tokens_for("q", 2), "[DONE]"]
            assert close is not None
            assert close.code == 1000
            # No answer: the server waits ws_close_timeout, then cuts the connection off.
            assert await ws.until_end() == []
            assert trio.current_time() - closed_at >= limits.ws_close_timeout
            if is_h2(protocol):
                assert ws.reset == CANCEL  # RFC 8441 §6: RST_STREAM(CANCEL) is the TCP RST
            else:
                assert ws.eof
            await ws.conn.close()
            with trio.fail_after(5):
                await server.wait_no_connections()

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_idle_websocket_is_closed_with_1001(protocol: str) -> None:
    limits = Limits(ws_idle_timeout=7.0)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            ws = await WSClient.open(server, protocol, "/ws/tokens?n=2&interval_ms=10000&prompt=i")
            started = trio.current_time()
            messages, close = await ws.until_close()
            assert len(messages) == 1  # the second token was 10 s away
            assert close is not None
            assert (close.code, close.reason) == (1001, "idle for 7 s")
            assert trio.current_time() - started >= limits.ws_idle_timeout
            await ws.send_close(1001)
            await ended(ws, server)

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_closes_websockets_with_1001(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            ws = await WSClient.open(server, protocol, LONG)
            await ws.next_frame()
            server.shutdown()
            _, close = await ws.until_close()
            assert close is not None
            assert (close.code, close.reason) == (
                1001,
                "server shutting down",
            )
            await ws.send_close(1001)
            await ended(ws, server)

    run(main)


# -- handlers ------------------------------------------------------------------------------


async def special(request: Request, response: ResponseStream) -> None:
    """The lab's app, plus WebSocket handlers that fail, return open, or cut off."""
    if request.path == "/ws/fails":
        ws = await response.accept_websocket()
        await ws.send_text("about to fail")
        raise RuntimeError("a handler bug")
    if request.path == "/ws/returns":
        ws = await response.accept_websocket()
        await ws.send_text("returning")
        return
    if request.path == "/ws/cut":
        ws = await response.accept_websocket()
        await ws.send_text("cutting")
        raise AbortResponse("cut off on purpose")
    if request.path == "/ws/echo":
        ws = await response.accept_websocket([("x-echo", "1")])
        while True:
            message = await ws.receive()
            if message.type == "text":
                await ws.send_text(message.data if isinstance(message.data, str) else "")
            else:
                await ws.send_bytes(bytes(message.data) if isinstance(message.data, bytes) else b"")
    await lab_app(request, response)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("path", "code", "reason"), [
    ("/ws/fails", 1011, "internal error"), ("/ws/returns", 1000, ""),
])  # fmt: skip
def test_a_handler_that_fails_or_returns_gets_its_websocket_closed(
    protocol: str, path: str, code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with server_for(protocol, special) as server:
            ws = await WSClient.open(server, protocol, path)
            messages, close = await ws.until_close()
            assert len(messages) == 1
            assert close is not None
            assert (close.code, close.reason) == (code, reason)
            await ws.send_close(code)
            await ended(ws, server)

    with caplog.at_level(logging.INFO, "lab.server"):
        run(main)
    failed = [r.getMessage() for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failed) == (path == "/ws/fails")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_abort_response_cuts_the_websocket_off(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol, special) as server:
            ws = await WSClient.open(server, protocol, "/ws/cut")
            messages, close = await ws.until_close()
            assert [m.data for m in messages] == ["cutting"]
            assert close is None  # no Close frame: cut, as an HTTP response is
            assert ws.reset == CANCEL if is_h2(protocol) else ws.eof
            await ws.conn.close()
            with trio.fail_after(5):
                await server.wait_no_connections()

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_echo_of_fragmented_and_binary_messages(protocol: str) -> None:
    key = random_mask_key

    async def main() -> None:
        async with server_for(protocol, special) as server:
            ws = await WSClient.open(server, protocol, "/ws/echo")
            assert ws.frames == []
            # A text message in three fragments, a character cut between two of them
            # (§5.6), with a Ping between the fragments (§5.4).
            word = "naïve".encode()
            await ws.send_raw(
                masked(Opcode.TEXT, word[:3], fin=False)
                + ping(b"between", mask_key=key())
                + continuation(word[3:5], fin=False, mask_key=key())
                + continuation(word[5:], mask_key=key())
                + masked(Opcode.BINARY, bytes(range(256)))
            )
            got = [await ws.next_frame() for _ in range(3)]
            assert [(f.opcode, f.data) for f in got if f is not None] == [
                (Opcode.PONG, b"between"), (Opcode.TEXT, word), (Opcode.BINARY, bytes(range(256))),
            ]  # fmt: skip
            await ws.send_close(1000)
            messages, close = await ws.until_close()
            assert messages == []
            assert close is not None
            assert close.code == 1000
            await ended(ws, server)

    run(main)


# -- bad input -----------------------------------------------------------------------------

BAD_INPUT: Final = {
    "unmasked frame (§5.1)": (text("hi"), 1002),
    "reserved opcode (§5.2)": (masked(0x3, b""), 1002),
    "RSV1 without an extension (§5.2)": (
        encode_frame(Opcode.TEXT, b"x", True, random_mask_key(), rsv=4), 1002,
    ),
    "fragmented control frame (§5.5)": (masked(Opcode.PING, b"", fin=False), 1002),
    "continuation with nothing to continue (§5.4)": (masked(Opcode.CONTINUATION, b"x"), 1002),
    "invalid UTF-8 (§8.1)": (masked(Opcode.TEXT, b"caf\xc3("), 1007),
    "a Close reason not UTF-8 (§5.5.1)": (masked(Opcode.CLOSE, b"\x03\xe8\xff"), 1007),
    "close code 1005, never sent (§7.4.1)": (masked(Opcode.CLOSE, b"\x03\xed"), 1002),
    "too big (§10.4)": (masked(Opcode.BINARY, b"x" * 2049), 1009),
    "too many frames": (
        masked(Opcode.TEXT, b"a", fin=False) + masked(Opcode.CONTINUATION, b"", fin=False) * 8,
        1009,
    ),
}  # fmt: skip
SMALL: Final = Limits(ws_max_message_size=2048, ws_max_frames_per_message=8)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_the_connection_with_its_close_code(protocol: str, case: str) -> None:
    data, code = BAD_INPUT[case]

    async def main() -> None:
        async with server_for(protocol, limits=SMALL) as server:
            ws = await WSClient.open(server, protocol, LONG)
            await ws.next_frame()
            await ws.send_raw(data)
            messages, close = await ws.until_close()
            assert all(m.type == "text" for m in messages)
            assert close is not None
            assert close.code == code, close
            # §7.1.7: the server does not wait for an answer; it closes at once.
            if is_h2(protocol):
                # END_STREAM after the Close, then RST_STREAM(NO_ERROR): the client's
                # side is still open (RFC 9113 §8.1).
                assert await ws.until_reset() == NO_ERROR
            else:
                assert await ws.until_end() == []
            await ws.conn.close()
            with trio.fail_after(5):
                await server.wait_no_connections()

    run(main)


# -- HTTP/2 only ---------------------------------------------------------------------------


UPLOAD: Final = 40 * 8192  # five times the stream's flow-control window


def slow_reader(gate: trio.Event) -> Handler:
    """Accepts, reads nothing until ``gate``, then reads it all and says how much."""

    async def handler(request: Request, response: ResponseStream) -> None:
        ws = await response.accept_websocket()
        await gate.wait()
        total = 0
        while total < UPLOAD:
            message = await ws.receive()
            total += len(message.data)
        await ws.send_text(str(total))
        await ws.close()

    return handler


@pytest.mark.parametrize("protocol", H2_PROTOCOLS)
def test_a_handler_that_does_not_read_holds_the_client_back_by_flow_control(
    protocol: str,
) -> None:
    limits = Limits(ws_max_queued_messages=1)

    async def main() -> None:
        gate = trio.Event()
        async with server_for(protocol, slow_reader(gate), limits) as server:
            ws = await WSClient.open(server, protocol, "/ws/slow")
            assert ws.h2 is not None
            frames = [masked(Opcode.BINARY, b"x" * 8192) for _ in range(40)]
            sent_all = trio.Event()

            async def send() -> None:
                for frame in frames:
                    await ws.send_raw(frame)
                sent_all.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                # Everyone waits: the handler for the gate, the server's reader for room
                # in the queue, the client for flow-control window (RFC 9113 §6.9): the
                # stream's window is only credited back as the WebSocket reads.
                await trio.testing.wait_all_tasks_blocked(cushion=0.1)
                assert ws.h2.local_flow_control_window(ws.stream_id) == 0
                assert not sent_all.is_set()
                # The connection's window was credited at once: other streams go on.
                assert ws.h2.outbound_flow_control_window > 0
                gate.set()
            messages, close = await ws.until_close()
            assert [m.data for m in messages] == [str(UPLOAD)]
            assert close is not None
            assert close.code == 1000
            await ws.send_close(1000)
            await ended(ws, server)

    run(main)


def never_reads(gate: trio.Event) -> Handler:
    """Accepts, then waits for ``gate`` without reading."""

    async def handler(request: Request, response: ResponseStream) -> None:
        await response.accept_websocket()
        await gate.wait()

    return handler


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_handler_that_leaves_its_queue_full_gets_1011(protocol: str) -> None:
    limits = Limits(ws_max_queued_messages=2, ws_idle_timeout=9.0)

    async def main() -> None:
        gate = trio.Event()
        async with server_for(protocol, never_reads(gate), limits) as server:
            ws = await WSClient.open(server, protocol, "/ws/never")
            for i in range(4):  # two queued, one waiting for room, one not read at all
                await ws.send_text(f"message {i}")
            started = trio.current_time()
            messages, close = await ws.until_close()
            assert messages == []
            assert close is not None
            assert (close.code, close.reason) == (1011, "the handler read no message for 9 s")
            assert trio.current_time() - started >= limits.ws_idle_timeout
            gate.set()
            if is_h2(protocol):
                assert await ws.until_reset() == NO_ERROR
            else:
                assert await ws.until_end() == []
            await ws.conn.close()
            with trio.fail_after(5):
                await server.wait_no_connections()

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", H2_PROTOCOLS)
def test_empty_data_frames_on_a_websocket_stream_spend_the_control_budget(
    protocol: str,
) -> None:
    limits = Limits(h2_control_frames_per_second=50)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            ws = await WSClient.open(server, protocol, LONG)
            assert ws.h2 is not None
            for _ in range(200):
                ws.h2.send_data(ws.stream_id, b"")
            await ws.conn.send(ws.h2.data_to_send())
            await ws.until_end()
            assert ws.goaway == [0xB]  # ENHANCE_YOUR_CALM

    run(main)
