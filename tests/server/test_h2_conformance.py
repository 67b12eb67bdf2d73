"""The HTTP/2 server against RFC 9113, frame by frame, over h2c and over TLS (ALPN h2).

Written the way h2's own tests are: the client side is raw frames (tests.server.h2raw),
and each test asserts the exact frames the server answers with, in order, then how the
connection ends. Everything the server sends must parse as a whole sequence of frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import hpack
import pytest
import trio
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from lab.apps import Request, ResponseStream
from lab.apps import app as lab_app
from lab.apps.tokens import tokens_for
from lab.server import Limits
from tests.server.h2raw import (
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_HEADER_LIST_SIZE,
    NO_ERROR,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    SETTINGS_ACK,
    Client,
    RawH2,
    client_start,
    data,
    describe,
    ends,
    frame,
    goaway,
    goaways,
    ping,
    priority,
    request_fields,
    rst_stream,
    server_settings,
    settings,
    split_frames,
    window_update,
)
from tests.server.helpers import WAIT, run
from tests.server.peers import server_for

pytestmark = pytest.mark.parametrize("protocol", ["h2c", "tls+h2"])

# The server must close at once after a connection error (RFC 9113 §5.4.1), not after
# its lingering read: with the linger this long, a close that waited for it would fail
# the PROMPT bound below by far.
LINGER_LONG = 30.0
PROMPT = 3.0


def settings_for(limits: Limits) -> tuple[str, bool, dict[int, int]]:
    return server_settings(limits.max_head_size, limits.h2_max_concurrent_streams)


def stream_frames(frames: list[Any], stream_id: int) -> list[tuple[Any, ...]]:
    """The described frames of one stream (DATA, HEADERS, RST_STREAM, but no
    WINDOW_UPDATE: those follow the client's own DATA)."""
    return [
        describe(f)
        for f in frames
        if f.stream_id == stream_id and isinstance(f, DataFrame | HeadersFrame | RstStreamFrame)
    ]


def body_of(frames: list[Any], stream_id: int) -> bytes:
    return b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id)


def is_goaway(d: tuple[Any, ...]) -> bool:
    return d[0] == "GOAWAY"


async def echo_app(request: Request, response: ResponseStream) -> None:
    """The lab's app, plus /echo: the request body's length."""
    if request.path == "/echo":
        await response.start(200, [("content-type", "text/plain")])
        await response.send(str(len(request.body)).encode())
        return
    await lab_app(request, response)


# -- the connection preface (§3.4) ---------------------------------------------------


def test_the_preface_exchange_byte_for_byte(protocol: str) -> None:
    """The server's first bytes: its SETTINGS, then the ACK of the client's."""
    limits = Limits()

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.until(lambda fs: len(fs) >= 2)
            expected = settings(
                (0x1, 4096), (0x2, 0), (0x4, 65535), (0x5, 16384), (0x8, 1),
                (0x6, limits.max_head_size), (0x3, limits.h2_max_concurrent_streams),
            ) + settings(ack=True)  # fmt: skip
            assert bytes(raw.raw) == expected
            # The advertised SETTINGS_MAX_HEADER_LIST_SIZE is the server's head limit.
            assert raw.described()[0] == settings_for(limits)

    run(main)


def test_a_preface_that_diverges_after_its_first_line(protocol: str) -> None:
    """A client that chose h2 by ALPN (or by prior knowledge) but sends something else
    after the preface's first line: SETTINGS, GOAWAY(PROTOCOL_ERROR), and a prompt close
    (§3.4: an invalid preface "MUST be treated as a connection error")."""
    limits = Limits(linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
            frames = await raw.clean_close(PROMPT)
            assert [describe(f) for f in frames] == [
                settings_for(limits), ("GOAWAY", 0, PROTOCOL_ERROR),
            ]  # fmt: skip

    run(main)


def test_http1_over_alpn_h2(protocol: str) -> None:
    """An HTTP/1.1 request on a connection that negotiated h2: the same connection error.
    Over cleartext there is nothing to negotiate, and it is simply HTTP/1.1."""
    if protocol == "h2c":

        async def plain() -> None:
            async with server_for(protocol) as server:
                raw = await RawH2.open(server, protocol, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                with trio.fail_after(5):
                    answer = await raw.conn.stream.receive_some(65536)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n")

        run(plain)
        return
    limits = Limits(linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            frames = await raw.clean_close(PROMPT)
            assert [describe(f) for f in frames] == [
                settings_for(limits), ("GOAWAY", 0, PROTOCOL_ERROR),
            ]  # fmt: skip

    run(main)


# -- connection errors (§5.4.1) and their codes (§7) --------------------------------

# (name, what the client sends after its preface and SETTINGS, the GOAWAY's error code)
CONNECTION_ERRORS = [
    # §4.3: a field block that cannot be decoded is a COMPRESSION_ERROR. An indexed field
    # with index 0 (RFC 7541 §6.1) ...
    ("hpack index 0", frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"), COMPRESSION_ERROR),
    # ... or with index 62, past the static table (61 entries) with an empty dynamic one.
    ("hpack index past the table", frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xbe"),
     COMPRESSION_ERROR),
    # §6.5: "Receipt of a SETTINGS frame with the ACK flag set and a length field value
    # other than 0 MUST be treated as a connection error of type FRAME_SIZE_ERROR."
    ("SETTINGS ACK with a payload", settings((0x1, 4096), ack=True), FRAME_SIZE_ERROR),
    # §8.4: "A client cannot push."
    ("PUSH_PROMISE from a client",
     frame(PUSH_PROMISE, END_HEADERS, 1, (2).to_bytes(4, "big") + b"\x82\x84\x86"),
     PROTOCOL_ERROR),
    # §6.1: DATA on stream 0.
    ("DATA on stream 0", data(0, b"x"), PROTOCOL_ERROR),
    # §6.9: a flow-control window increment of 0 on the connection.
    ("WINDOW_UPDATE of 0 on the connection", window_update(0, 0), PROTOCOL_ERROR),
    # §6.9.1: a window past 2^31-1 on the connection.
    ("connection window overflow", window_update(0, 0x7FFF_FFFF), FLOW_CONTROL_ERROR),
    # §5.1.1: a client stream identifier must be odd.
    ("HEADERS on an even stream", frame(HEADERS, END_HEADERS | END_STREAM, 2, b"\x82\x84\x86"),
     PROTOCOL_ERROR),
    # §6.2: a CONTINUATION that continues nothing.
    ("CONTINUATION without HEADERS", frame(0x9, END_HEADERS, 1, b"\x82"), PROTOCOL_ERROR),
    # §6.7: PING must be 8 octets.
    ("PING of 7 octets", frame(0x6, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "sent", "code"), CONNECTION_ERRORS, ids=[c[0] for c in CONNECTION_ERRORS]
)
def test_a_connection_error_is_one_goaway_then_a_prompt_close(
    protocol: str, what: str, sent: bytes, code: int
) -> None:
    limits = Limits(linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start() + sent)
            # FIN (or close_notify, then close, over TLS) well before the linger ends.
            frames = await raw.clean_close(PROMPT)
            assert [describe(f) for f in frames] == [
                settings_for(limits), SETTINGS_ACK, ("GOAWAY", 0, code),
            ]  # fmt: skip

    run(main)


def test_a_frame_too_large_is_refused_on_its_nine_header_bytes(protocol: str) -> None:
    """§4.2: a frame larger than SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR; the server
    says so as soon as the 9-byte header is in, without waiting for the payload."""
    limits = Limits(linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            header = (16_385).to_bytes(3, "big") + bytes([DATA, 0]) + (1).to_bytes(4, "big")
            raw = await RawH2.open(server, protocol, client_start() + header)
            frames = await raw.clean_close(PROMPT)
            assert [describe(f) for f in frames] == [
                settings_for(limits), SETTINGS_ACK, ("GOAWAY", 0, FRAME_SIZE_ERROR),
            ]  # fmt: skip

    run(main)


def test_a_connection_error_with_streams_in_flight_is_still_one_goaway(protocol: str) -> None:
    """The GOAWAY names the last stream processed; nothing follows it, not the streams'
    frames and not a second GOAWAY(NO_ERROR)."""
    limits = Limits(linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, endless_app, limits) as server:
            raw = await RawH2.open(server, protocol)
            await raw.send(client_start((INITIAL_WINDOW_SIZE, 1000)), raw.client.get(1, "/endless"))
            await raw.until(lambda fs: len(body_of(fs, 1)) == 1000)
            await raw.send(data(0, b"x"))
            frames = await raw.clean_close(PROMPT)
            described = [describe(f) for f in frames]
            assert goaways(frames) == [(1, PROTOCOL_ERROR)]
            assert described[-1] == ("GOAWAY", 1, PROTOCOL_ERROR)
            assert len(body_of(frames, 1)) == 1000

    run(main)


# -- frames owed are never lost (one writer per connection) --------------------------

cancelled_handlers: list[str] = []


async def endless_app(request: Request, response: ResponseStream) -> None:
    """/endless sends 100-byte pieces until cancelled; /partial gives up on a send that
    waits too long and returns; anything else is the lab's app."""
    if request.path == "/endless":
        await response.start(200, [("content-type", "text/plain")])
        try:
            while True:
                await response.send(b"x" * 100)
        except trio.Cancelled:
            cancelled_handlers.append(request.path)
            raise
    if request.path == "/partial":
        await response.start(200, [("content-type", "text/plain")])
        with trio.move_on_after(0.2):
            await response.send(b"y" * 3000)
        return
    await echo_app(request, response)


def test_a_ping_while_a_handler_is_cancelled_gets_its_ack(protocol: str) -> None:
    """RST_STREAM and PING in one write, while the stream's handler waits mid-send: the
    handler is cancelled (and sees a plain trio.Cancelled, not one wrapped in an exception
    group), the PING is answered, the stream gets nothing more (the client closed it,
    §5.4.2), and the connection goes on."""
    cancelled_handlers.clear()

    async def main() -> None:
        async with server_for(protocol, endless_app) as server:
            raw = await RawH2.open(server, protocol)
            await raw.send(client_start((INITIAL_WINDOW_SIZE, 1000)), raw.client.get(1, "/endless"))
            # The window (1,000 bytes) is spent: the handler waits inside send().
            await raw.until(lambda fs: len(body_of(fs, 1)) == 1000)
            await raw.send(rst_stream(1, CANCEL), ping(b"cancel!!"))
            await raw.until_frame(lambda d: d == ("PING", True, b"cancel!!"))
            await raw.send(raw.client.get(3, "/fixed?size=2"))
            frames = await raw.until_ended(3)
            assert cancelled_handlers == ["/endless"]
            assert stream_frames(frames, 1) == [
                ("HEADERS", 1, False), *[("DATA", 1, 100, False)] * 10,
            ]  # fmt: skip
            assert body_of(frames, 3) == b"st"
            assert not goaways(frames)
            split_frames(bytes(raw.raw))  # whole frames only

    run(main)


def test_end_stream_is_written_after_a_handler_cancelled_mid_send(protocol: str) -> None:
    """A handler whose send is cut by its own timeout and returns: the part that fitted
    the window, then END_STREAM."""

    async def main() -> None:
        async with server_for(protocol, endless_app) as server:
            raw = await RawH2.open(server, protocol)
            await raw.send(client_start((INITIAL_WINDOW_SIZE, 1000)), raw.client.get(1, "/partial"))
            frames = await raw.until_ended(1)
            assert stream_frames(frames, 1) == [
                ("HEADERS", 1, False), ("DATA", 1, 1000, False), ("DATA", 1, 0, True),
            ]  # fmt: skip
            split_frames(bytes(raw.raw))

    run(main)


def test_rst_stream_is_written_for_a_handler_cancelled_at_the_end_of_the_grace(
    protocol: str,
) -> None:
    """Shutdown: GOAWAY(NO_ERROR) at once; a stream still waiting mid-send when the grace
    ends is cancelled, and its RST_STREAM(CANCEL) is written before the close. (The
    connection is asked to close the way Server.shutdown asks each one, without the
    server-wide deadline that ends every task at the same moment.)"""
    limits = Limits(shutdown_grace=0.3)
    cancelled_handlers.clear()

    async def main() -> None:
        async with server_for(protocol, endless_app, limits) as server:
            raw = await RawH2.open(server, protocol)
            await raw.send(client_start((INITIAL_WINDOW_SIZE, 1000)), raw.client.get(1, "/endless"))
            await raw.until(lambda fs: len(body_of(fs, 1)) == 1000)
            (state,) = server.connections
            state.close_when_idle()
            frames = await raw.clean_close()
            described = [describe(f) for f in frames]
            assert described[-2:] == [("GOAWAY", 1, NO_ERROR), ("RST_STREAM", 1, CANCEL)]
            assert cancelled_handlers == ["/endless"]

    run(main)


# -- shutdown and the client's GOAWAY (§6.8) ------------------------------------------


def test_shutdown_is_one_goaway_no_error_on_an_idle_connection(protocol: str) -> None:
    limits = Limits(linger_timeout=1.0)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.send(raw.client.get(1, "/fixed?size=3"))
            await raw.until_ended(1)
            server.shutdown()
            frames = await raw.until_close()
            assert goaways(frames) == [(1, NO_ERROR)]
            assert describe(frames[-1]) == ("GOAWAY", 1, NO_ERROR)

    run(main)


def test_shutdown_lets_a_stream_finish_after_one_goaway(protocol: str) -> None:
    limits = Limits(linger_timeout=1.0)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.send(raw.client.get(1, "/tokens?n=5&interval_ms=50&prompt=bye"))
            await raw.until(lambda fs: bool(body_of(fs, 1)))
            server.shutdown()
            frames = await raw.until_close()
            described = [describe(f) for f in frames]
            assert goaways(frames) == [(1, NO_ERROR)]
            after = described[described.index(("GOAWAY", 1, NO_ERROR)) + 1 :]
            assert after
            assert after[-1] == ("DATA", 1, 0, True)  # the stream went on to its end
            tokens = "".join(tokens_for("bye", 5)) + "\n[DONE]\n"
            assert body_of(frames, 1) == tokens.encode()

    run(main)


def test_a_connection_error_after_shutdown_says_its_code(protocol: str) -> None:
    """GOAWAY(NO_ERROR) first; a connection error afterwards gets its own GOAWAY with the
    error code (§6.8: "Endpoints MAY send multiple GOAWAY frames if circumstances
    change"); the reverse, an error followed by NO_ERROR, never happens."""
    limits = Limits(linger_timeout=LINGER_LONG, shutdown_grace=10.0)

    async def main() -> None:
        async with server_for(protocol, endless_app, limits) as server:
            raw = await RawH2.open(server, protocol)
            await raw.send(client_start((INITIAL_WINDOW_SIZE, 1000)), raw.client.get(1, "/endless"))
            await raw.until(lambda fs: len(body_of(fs, 1)) == 1000)
            (state,) = server.connections
            state.close_when_idle()
            await raw.until_frame(is_goaway)
            await raw.send(window_update(0, 0))
            frames = await raw.clean_close(PROMPT)
            assert goaways(frames) == [(1, NO_ERROR), (1, PROTOCOL_ERROR)]
            assert describe(frames[-1]) == ("GOAWAY", 1, PROTOCOL_ERROR)

    run(main)


def test_after_the_clients_goaway_pings_are_answered_and_streams_finish(protocol: str) -> None:
    limits = Limits(linger_timeout=1.0)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.send(raw.client.get(1, "/tokens?n=6&interval_ms=50&prompt=away"))
            await raw.until(lambda fs: bool(body_of(fs, 1)))
            await raw.send(goaway(0, NO_ERROR), ping(b"still up"))
            frames = await raw.until_close()
            described = [describe(f) for f in frames]
            assert ("PING", True, b"still up") in described
            tokens = "".join(tokens_for("away", 6)) + "\n[DONE]\n"
            assert body_of(frames, 1) == tokens.encode()
            assert stream_frames(frames, 1)[-1] == ("DATA", 1, 0, True)
            # Then the server's own GOAWAY (§6.8: sent before closing) and the close.
            assert goaways(frames) == [(1, NO_ERROR)]
            assert described[-1] == ("GOAWAY", 1, NO_ERROR)

    run(main)


# -- the control-frame budget (CVE-2019-9512..9518, CVE-2023-44487) ------------------

BUDGET = 20
OVER = BUDGET + 30


def _flood(kind: str, raw: RawH2) -> tuple[bytes, Callable[[tuple[Any, ...]], bool], int]:
    """What a flood of ``kind`` sends after the preface, which of the server's frames
    answer its frames, and how many of those the budget allows.

    The client's SETTINGS spends one frame of the budget, so BUDGET - 1 flood frames
    are processed; the one after is over the budget, and nothing after it is read.
    """
    c = raw.client
    if kind == "PING":
        flood = b"".join(ping(i.to_bytes(8, "big")) for i in range(OVER))
        return flood, lambda d: d[0] == "PING" and d[1], BUDGET - 1
    if kind == "SETTINGS":
        flood = settings() * OVER  # each answered by an ACK; the first SETTINGS' included
        return flood, lambda d: d == SETTINGS_ACK, BUDGET
    if kind == "empty DATA":
        open_stream = c.headers(1, request_fields("/echo", "POST"), end_stream=False)
        return open_stream + data(1) * OVER, lambda d: False, 0
    if kind == "WINDOW_UPDATE":
        return window_update(0, 1) * OVER, lambda d: False, 0
    if kind == "PRIORITY":
        flood = b"".join(priority(2 * i + 1) for i in range(OVER))
        return flood, lambda d: False, 0
    if kind == "unknown type":
        return frame(0x20, 0, 0, b"?") * OVER, lambda d: False, 0
    if kind == "RST_STREAM":  # rapid reset
        flood = b"".join(
            c.get(2 * i + 1, "/fixed?size=1") + rst_stream(2 * i + 1) for i in range(OVER)
        )
        return flood, lambda d: d[0] in ("HEADERS", "DATA", "RST_STREAM"), 0
    if kind == "HEADERS over MAX_CONCURRENT_STREAMS":
        # Stream 1 holds the only slot; each later one is refused with RST_STREAM, and the
        # server's own resets spend from the budget.
        flood = c.get(1, "/tokens?n=1000&interval_ms=1000") + b"".join(
            c.get(2 * i + 3, "/fixed?size=1") for i in range(OVER)
        )
        return flood, lambda d: d[0] == "RST_STREAM" and d[2] == REFUSED_STREAM, BUDGET - 1
    if kind == "DATA on a reset stream":
        # Each one would make h2 answer with RST_STREAM(STREAM_CLOSED).
        flood = c.headers(1, request_fields("/echo", "POST"), end_stream=False) + rst_stream(1)
        flood += data(1, b"z") * OVER
        return flood, lambda d: d[0] == "RST_STREAM", BUDGET - 2
    raise AssertionError(kind)


FLOODS = [
    "PING", "SETTINGS", "empty DATA", "WINDOW_UPDATE", "PRIORITY", "unknown type",
    "RST_STREAM", "HEADERS over MAX_CONCURRENT_STREAMS", "DATA on a reset stream",
]  # fmt: skip


@pytest.mark.parametrize("kind", FLOODS)
def test_a_flood_is_stopped_at_the_budget_frame_by_frame(protocol: str, kind: str) -> None:
    limits = Limits(
        h2_control_frames_per_second=BUDGET, h2_max_concurrent_streams=1,
        linger_timeout=LINGER_LONG,
    )  # fmt: skip

    async def main() -> None:
        async with server_for(protocol, echo_app, limits) as server:
            raw = await RawH2.open(server, protocol)
            flood, answers, allowed = _flood(kind, raw)
            await raw.send_quietly(client_start(), flood)
            frames = await raw.clean_close(PROMPT)
            described = [describe(f) for f in frames]
            assert [g[1] for g in goaways(frames)] == [ENHANCE_YOUR_CALM]
            assert is_goaway(described[-1])
            # Exactly the frames within the budget were processed, in every case none
            # of those after the one that exceeded it (they came in the same write).
            assert sum(map(answers, described[1:])) == allowed

    run(main)


def test_a_stream_reset_in_the_read_of_its_headers_never_starts_a_handler(
    protocol: str,
) -> None:
    """Rapid reset under the budget: HEADERS and RST_STREAM arriving together cost the
    server no handler (and no task); the connection answers the next request."""
    started: list[str] = []

    async def counting_app(request: Request, response: ResponseStream) -> None:
        started.append(request.target)
        await lab_app(request, response)

    async def main() -> None:
        async with server_for(protocol, counting_app) as server:
            raw = await RawH2.open(server, protocol)
            pairs = b"".join(
                raw.client.get(2 * i + 1, "/fixed?size=1") + rst_stream(2 * i + 1)
                for i in range(10)
            )
            await raw.send(client_start(), pairs)
            await raw.sync()
            await raw.send(raw.client.get(21, "/fixed?size=2"))
            frames = await raw.until_ended(21)
            assert started == ["/fixed?size=2"]
            assert [f for f in frames if f.stream_id and f.stream_id < 21] == []
            assert body_of(frames, 21) == b"st"

    run(main)


def test_window_updates_that_acknowledge_data_are_not_a_flood(protocol: str) -> None:
    """A client that answers every DATA frame with WINDOW_UPDATEs for its stream and the
    connection sends far more of them than the budget during a fast download; they are
    the flow control working (§6.9), not a flood."""
    frames_sent = 10 * BUDGET
    size = frames_sent * 16_384

    async def main() -> None:
        limits = Limits(h2_control_frames_per_second=BUDGET)
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.send(raw.client.get(1, f"/fixed?size={size}"))
            seen = 0
            with trio.fail_after(WAIT):
                while not any(ends(1, describe(f)) for f in raw.frames):
                    frames = await raw.until(lambda fs, n=seen: len(fs) > n)
                    updates = b"".join(
                        window_update(1, len(f.data)) + window_update(0, len(f.data))
                        for f in frames[seen:]
                        if isinstance(f, DataFrame) and f.data
                    )
                    seen = len(frames)
                    if updates:
                        await raw.send(updates)
            frames = raw.frames
            assert len(body_of(frames, 1)) == size
            assert sum(isinstance(f, DataFrame) and bool(f.data) for f in frames) >= frames_sent
            assert not goaways(frames)
            # No silly window: credit returned frame by frame never splits a frame into
            # slivers, so every DATA frame is a whole 16 KiB piece of the body.
            assert {len(f.data) for f in frames if isinstance(f, DataFrame) and f.data} == {16_384}

    run(main)


def test_rapid_reset_over_several_connections_meets_the_address_budget(protocol: str) -> None:
    """Each connection stays under its own budget; together they are over the budget of
    their client address (Limits.h2_control_frames_per_address_per_second)."""
    per_connection = 80  # + the client's SETTINGS: 81 control frames, under 100
    limits = Limits(
        h2_control_frames_per_second=100, h2_control_frames_per_address_per_second=150,
        linger_timeout=1.0,
    )  # fmt: skip

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            conns = []
            for _ in range(4):  # 324 frames: over 150 in any one second they fall in
                raw = await RawH2.open(server, protocol)
                flood = b"".join(
                    raw.client.get(2 * i + 1, "/fixed?size=1") + rst_stream(2 * i + 1)
                    for i in range(per_connection)
                )
                await raw.send_quietly(client_start(), flood)
                conns.append(raw)
            codes = []
            for raw in conns:
                await raw.send_quietly(ping(b"probe..."))
                found = await raw.until_frame(
                    lambda d: is_goaway(d) or d == ("PING", True, b"probe...")
                )
                if isinstance(found, GoAwayFrame):
                    codes.append(found.error_code)
            assert codes
            assert set(codes) == {ENHANCE_YOUR_CALM}

    run(main)


# -- request heads and bodies ---------------------------------------------------------


def test_a_body_over_the_limit_is_413_then_rst_stream_no_error(protocol: str) -> None:
    limits = Limits(max_body_size=1000)

    async def main() -> None:
        async with server_for(protocol, echo_app, limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            c = raw.client
            await raw.send(
                c.headers(1, request_fields("/echo", "POST"), end_stream=False),
                data(1, b"a" * 600), data(1, b"b" * 600),
            )  # fmt: skip
            frames = await raw.until_ended(1)
            frames = await raw.until(lambda fs: any(describe(f)[0] == "RST_STREAM" for f in fs))
            head = next(f for f in frames if isinstance(f, HeadersFrame))
            assert c.decode(head)[":status"] == "413"
            on_1 = stream_frames(frames, 1)
            # §8.1: a response before the whole request, then RST_STREAM(NO_ERROR): stop
            # sending, there is nothing wrong (not REFUSED_STREAM: the request was seen).
            assert on_1[0] == ("HEADERS", 1, False)
            assert on_1[-2][-1] is True  # END_STREAM on the last DATA
            assert on_1[-1] == ("RST_STREAM", 1, NO_ERROR)
            # The client's late DATA on the stream does not hurt the connection.
            await raw.send(data(1, b"c" * 600, end_stream=True), raw.client.get(3, "/fixed?size=2"))
            frames = await raw.until_ended(3)
            assert body_of(frames, 3) == b"st"
            assert not goaways(frames)
            assert server.bodies.used == 0

    run(main)


def test_a_header_list_over_the_advertised_size_is_431_on_its_stream(protocol: str) -> None:
    limits = Limits(max_head_size=1000)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            frames = await raw.until(lambda fs: len(fs) >= 2)
            announced = describe(frames[0])[2]
            assert announced[MAX_HEADER_LIST_SIZE] == limits.max_head_size
            # The client acknowledges the server's SETTINGS, as every client does: the
            # advertised size is then in force.
            big = request_fields("/fixed?size=2", extra=[("x-big", "a" * 1500)])
            await raw.send(settings(ack=True), raw.client.headers(1, big))
            frames = await raw.until_ended(1)
            head = next(f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 1)
            assert raw.client.decode(head)[":status"] == "431"
            # The request was whole (END_STREAM on its HEADERS): no RST_STREAM needed.
            assert stream_frames(frames, 1)[-1][0] == "DATA"
            await raw.send(raw.client.get(3, "/fixed?size=2"))
            frames = await raw.until_ended(3)
            assert body_of(frames, 3) == b"st"
            assert not goaways(frames)

    run(main)


def test_a_header_list_over_the_hard_cap_is_a_connection_error(protocol: str) -> None:
    """Past the hard cap HPACK stops decoding mid-block: the compression state is lost
    for the whole connection, so only GOAWAY is left (§4.3)."""
    limits = Limits(max_head_size=1000, h2_header_list_hard_cap=4000, linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.until(lambda fs: len(fs) >= 2)
            huge = request_fields("/fixed?size=2", extra=[("x-huge", "a" * 5000)])
            await raw.send(settings(ack=True), raw.client.headers(1, huge))
            frames = await raw.clean_close(PROMPT)
            assert [describe(f) for f in frames] == [
                settings_for(limits), SETTINGS_ACK, ("GOAWAY", 0, ENHANCE_YOUR_CALM),
            ]  # fmt: skip

    run(main)


def test_a_body_that_never_comes_is_408_without_spinning(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.server import http2

    limits = Limits(body_timeout=1.0)
    calls = 0
    real = http2._H2Connection._expire_bodies

    def counted(self: http2._H2Connection) -> float:
        nonlocal calls
        calls += 1
        return real(self)

    monkeypatch.setattr(http2._H2Connection, "_expire_bodies", counted)

    async def main() -> None:
        nonlocal calls
        async with server_for(protocol, echo_app, limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            await raw.send(
                raw.client.headers(1, request_fields("/echo", "POST"), end_stream=False),
                data(1, b"half a body"),
            )  # fmt: skip
            calls = 0
            cpu = time.thread_time()
            frames = await raw.until(lambda fs: any(describe(f)[0] == "RST_STREAM" for f in fs))
            cpu = time.thread_time() - cpu
            head = next(f for f in frames if isinstance(f, HeadersFrame))
            assert raw.client.decode(head)[":status"] == "408"
            on_1 = stream_frames(frames, 1)
            assert on_1[-2][-1] is True  # END_STREAM
            assert on_1[-1] == ("RST_STREAM", 1, NO_ERROR)
            # A watchdog that woke on every loop turn would run thousands of times and
            # use most of the second; it wakes for the deadline instead. (Both bounds are
            # counts of work, generous by two orders of magnitude, not wall-clock claims.)
            assert calls <= 10, calls
            assert cpu < 0.5, cpu
            assert server.bodies.used == 0

    run(main)


def test_a_send_stalled_by_flow_control_is_cancelled_with_one_log_line(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits(send_timeout=0.5)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol)
            # The client's window is 0 and it never opens it.
            await raw.send(
                client_start((INITIAL_WINDOW_SIZE, 0)), raw.client.get(1, "/fixed?size=100")
            )
            frames = await raw.until_ended(1)
            assert stream_frames(frames, 1) == [("HEADERS", 1, False), ("RST_STREAM", 1, CANCEL)]
            # The connection goes on.
            await raw.send(ping(b"after..."))
            await raw.until_frame(lambda d: d == ("PING", True, b"after..."))

    with caplog.at_level(logging.DEBUG, logger="lab.server"):
        run(main)
    about = [r.getMessage() for r in caplog.records if "stream 1 " in r.getMessage()]
    # One line says why the stream was cancelled, then the request's own line says so too.
    assert len(about) == 2, about
    assert "flow-control" in about[0]
    assert about[1].endswith("(cut short)"), about[1]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info]


def test_bodies_over_the_server_budget_are_refused_and_returned(protocol: str) -> None:
    """The total of request bodies held, across connections (Limits.max_buffered_bodies):
    one more is refused with RST_STREAM(REFUSED_STREAM) (§8.7: safe to retry), and every
    byte reserved is given back."""
    limits = Limits(max_buffered_bodies=1000, max_body_size=800)

    async def main() -> None:
        async with server_for(protocol, echo_app, limits) as server:
            first = await RawH2.open(server, protocol, client_start())
            post = request_fields("/echo", "POST")
            await first.send(first.client.headers(1, post, end_stream=False), data(1, b"a" * 600))
            await first.sync()
            assert server.bodies.used == 600
            second = await RawH2.open(server, protocol, client_start())
            await second.send(second.client.headers(1, post, end_stream=False), data(1, b"b" * 600))
            frames = await second.until_ended(1)
            assert stream_frames(frames, 1) == [("RST_STREAM", 1, REFUSED_STREAM)]
            assert server.bodies.refused == 1
            # The first body completes and is answered; once its connection is done,
            # its bytes are back ...
            await first.send(data(1, b"a" * 100, end_stream=True))
            frames = await first.until_ended(1)
            assert body_of(frames, 1) == b"700"
            await first.conn.close()
            with trio.fail_after(5):
                await server.wait_connections(at_most=1)
            assert server.bodies.used == 0
            # ... so the retried one fits now.
            await second.send(second.client.headers(3, post, end_stream=False),
                              data(3, b"b" * 600, end_stream=True))  # fmt: skip
            frames = await second.until_ended(3)
            assert body_of(frames, 3) == b"600"
            await second.conn.close()
            with trio.fail_after(5):
                await server.wait_no_connections()
            assert server.bodies.used == 0

    run(main)


def test_bodies_held_by_a_connection_that_leaves_are_returned(protocol: str) -> None:
    limits = Limits(max_buffered_bodies=1000)

    async def main() -> None:
        async with server_for(protocol, echo_app, limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            post = request_fields("/echo", "POST")
            await raw.send(
                raw.client.headers(1, post, end_stream=False), data(1, b"a" * 300),
                raw.client.headers(3, post, end_stream=False), data(3, b"a" * 300),
            )  # fmt: skip
            await raw.sync()
            assert server.bodies.used == 600
            await raw.conn.reset()
            with trio.fail_after(5):
                await server.wait_no_connections()
            assert server.bodies.used == 0

    run(main)


# -- slowloris (§4: a frame or header block must arrive within the head timeout) ----


def test_a_frame_dribbled_past_the_head_timeout_ends_the_connection(protocol: str) -> None:
    """Reads keep coming, so the idle timeout never fires; the frame's own deadline does."""
    limits = Limits(head_timeout=0.5, linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            request = Client().get(1, "/")
            with trio.move_on_after(4 * limits.head_timeout):
                for byte in request[:-1]:  # never the last byte
                    await raw.send_quietly(bytes([byte]))
                    await trio.sleep(limits.head_timeout / 10)
            # Within PROMPT, far inside the 30 s idle timeout: the frame's deadline ended it.
            frames = await raw.clean_close(PROMPT)
            assert goaways(frames) == [(0, NO_ERROR)]
            assert frames[-1].additional_data.startswith(b"a frame or header block not complete")

    run(main)


def test_a_header_block_left_open_past_the_head_timeout_ends_the_connection(
    protocol: str,
) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the block."""
    limits = Limits(head_timeout=0.5, linger_timeout=LINGER_LONG)

    async def main() -> None:
        async with server_for(protocol, limits=limits) as server:
            raw = await RawH2.open(server, protocol, client_start())
            block = hpack.Encoder().encode(request_fields("/"))
            await raw.send(frame(HEADERS, END_STREAM, 1, block[:3]))
            with trio.move_on_after(4 * limits.head_timeout):
                for byte in block[3:-1]:
                    await raw.send_quietly(frame(CONTINUATION, 0, 1, bytes([byte])))
                    await trio.sleep(limits.head_timeout / 10)
            frames = await raw.clean_close(PROMPT)
            assert goaways(frames) == [(0, NO_ERROR)]

    run(main)
