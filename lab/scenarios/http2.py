"""HTTP/2 scenarios: a token stream in frames, multiplexing, flow control, RST_STREAM,
SETTINGS and PING, GOAWAY, and Server-Sent Events in DATA frames.
"""

from __future__ import annotations

import h2.settings
import trio

from lab.capture.tap import Recorder
from lab.client.http2 import open_h2_connection
from lab.scenarios.runner import Scenario, serve_for_scenarios
from lab.server import Server

__all__ = ["HTTP2_SCENARIOS"]


async def _h2_tokens(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        await conn.finish(await conn.request("GET", "/tokens?n=5&interval_ms=30&prompt=h2"))
        await conn.close()


async def _h2_multiplex(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        first = await conn.request("GET", "/tokens?n=4&interval_ms=60&prompt=first")
        # Start the second stream half an interval later, so frames alternate clearly.
        await conn.pump_until(lambda: bool(conn.responses[first].frames))
        await trio.sleep(0.03)
        second = await conn.request("GET", "/tokens?n=4&interval_ms=60&prompt=second")
        await conn.finish(first, second)
        await conn.close()


async def _h2_flow_control(server: Server, rec: Recorder) -> None:
    # A 16-byte stream window: the server may send 16 bytes, then must wait.
    settings: dict[int, int] = {int(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE): 16}
    async with open_h2_connection(
        server.host, server.port, recorder=rec, settings=settings
    ) as conn:
        conn.auto_window = False
        sid = await conn.request("GET", "/fixed?size=40")
        response = conn.responses[sid]
        while not response.ended:
            await conn.pump()
            if not response.ended and response.body and len(response.body) % 16 == 0:
                # The window is used up: give back what was read (h2 sends the
                # WINDOW_UPDATE for it).
                conn.conn.acknowledge_received_data(16, sid)
                await conn.flush()
        await conn.close()


async def _h2_reset(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        sid = await conn.request("GET", "/tokens?n=50&interval_ms=50&prompt=reset")
        # The headers and three tokens, then RST_STREAM(CANCEL): the server stops.
        await conn.pump_until(lambda: len(conn.responses[sid].frames) >= 3)
        await conn.reset(sid)
        await conn.ping()  # a round trip, so the capture shows nothing more came
        await conn.close()


async def _h2_settings_ping(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        await conn.ping(b"lab-ping")
        await conn.close()


async def _h2_goaway(server: Server, rec: Recorder) -> None:
    # Its own server, to shut it down mid-stream: GOAWAY names the last stream it will
    # still answer, and that stream runs to its end.
    async with trio.open_nursery() as nursery:
        own = await nursery.start(serve_for_scenarios)
        async with open_h2_connection(own.host, own.port, recorder=rec) as conn:
            sid = await conn.request("GET", "/tokens?n=4&interval_ms=40&prompt=bye")
            await conn.pump_until(lambda: bool(conn.responses[sid].frames))
            own.shutdown()
            with trio.fail_after(10):
                while not conn.closed:
                    await conn.pump(answer=False)


async def _h2_sse(server: Server, rec: Recorder) -> None:
    async with open_h2_connection(server.host, server.port, recorder=rec) as conn:
        await conn.finish(await conn.request("GET", "/events?n=3&interval_ms=20&stream=h2"))
        await conn.close()


HTTP2_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "h2-token-stream", "HTTP/2: one token stream: HEADERS, a DATA frame per token, END_STREAM",
        "After the connection preface and the SETTINGS exchange, the request is one HEADERS "
        "frame on stream 1 (HPACK-compressed), the reply a HEADERS frame, one DATA frame per "
        "token and an empty DATA frame carrying END_STREAM. No chunk sizes: every frame has "
        "a 9-byte header with its length.",
        _h2_tokens,
    ),
    Scenario(
        "h2-multiplex", "HTTP/2: two token streams interleaved on one connection",
        "Streams 1 and 3 share one TCP connection; their DATA frames alternate as tokens "
        "become ready. With HTTP/1.1 the second response would wait for the first.",
        _h2_multiplex,
    ),
    Scenario(
        "h2-flow-control", "HTTP/2: a 16-byte window; the server pauses for WINDOW_UPDATE",
        "The client's SETTINGS give each stream a 16-byte window. The server sends 16 bytes of "
        "DATA and must stop until the client's WINDOW_UPDATE frames give credit back.",
        _h2_flow_control,
    ),
    Scenario(
        "h2-reset", "HTTP/2: the client resets its stream mid-reply; the server stops",
        "RST_STREAM(CANCEL) ends one stream without closing the connection. The server "
        "cancels the token generator; a PING round trip afterwards shows no DATA followed.",
        _h2_reset,
    ),
    Scenario(
        "h2-settings-ping", "HTTP/2: the SETTINGS exchange and a PING round trip",
        "Each side sends SETTINGS and acknowledges the other's with an empty SETTINGS ACK; "
        "PING carries 8 opaque bytes and comes back with the ACK flag.",
        _h2_settings_ping,
    ),
    Scenario(
        "h2-goaway", "HTTP/2: the server shuts down mid-stream with GOAWAY",
        "GOAWAY(NO_ERROR) with last-stream-id 1: no new streams, but stream 1 is still "
        "answered to its END_STREAM before the connection closes.",
        _h2_goaway,
    ),
    Scenario(
        "h2-sse", "HTTP/2: Server-Sent Events in DATA frames",
        "The same event stream as over HTTP/1.1, now one DATA frame per event on stream 1: no "
        "chunked coding, the frame header gives the length.",
        _h2_sse,
    ),
)  # fmt: skip
