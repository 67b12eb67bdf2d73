"""The HTTP/2 server through real sockets, driven by an independent h2 client."""

from __future__ import annotations

import contextlib
import json

import h2.errors
import h2.events
import pytest
import trio
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, PingFrame

from lab.apps import Request, ResponseStream
from lab.apps.tokens import tokens_for
from lab.server import Limits
from tests.server.h2client import H2Client
from tests.server.helpers import H11Client, connect, lab_server, read_all, run

# Every endpoint, with a request that shows it off: (method, target, headers, body).
ENDPOINT_CASES = [
    ("GET", "/", [], b""),
    ("GET", "/fixed?size=100", [], b""),
    ("GET", "/tokens?n=5&interval_ms=0&prompt=both", [], b""),
    ("GET", "/trailers?n=3&interval_ms=0", [("te", "trailers")], b""),
    ("GET", "/events?n=3&interval_ms=0&stream=both-ways", [], b""),
    ("GET", "/progress?n=3&interval_ms=0", [], b""),
    ("GET", "/progress?n=3&interval_ms=0&fail_at=2", [], b""),
    ("GET", "/nowhere", [], b""),
    ("DELETE", "/tokens", [], b""),
    ("GET", "/tokens?n=abc", [], b""),
    *[
        ("POST", "/chat", [("accept", accept), ("content-type", "application/json")],
         json.dumps({"prompt": "both", "n": 4, "interval_ms": 0}).encode())
        for accept in ("text/plain", "text/event-stream", "application/x-ndjson",
                       "application/json", "image/png")
    ],
]  # fmt: skip


def _frames(data: bytes) -> list[Frame]:
    """Whole frames in ``data``, parsed by hyperframe (an independent parser)."""
    frames = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def _id(case: tuple[str, str, list[tuple[str, str]], bytes]) -> str:
    method, target, headers, _ = case
    accept = dict(headers).get("accept", "")
    return f"{method} {target} {accept}".strip()


@pytest.mark.parametrize("case", ENDPOINT_CASES, ids=[_id(c) for c in ENDPOINT_CASES])
def test_every_endpoint_answers_identically_over_both_protocols(
    case: tuple[str, str, list[tuple[str, str]], bytes],
) -> None:
    import h11

    method, target, headers, body = case

    async def main() -> None:
        async with lab_server() as server:
            h1 = await H11Client.connect(server)
            fields = [("host", "lab"), *headers]
            if body:
                fields.append(("content-length", str(len(body))))
            await h1.send(h11.Request(method=method, target=target, headers=fields))
            if body:
                await h1.send(h11.Data(data=body))
            await h1.send(h11.EndOfMessage())
            head, data, end = await h1.response()
            h1_headers = {k.decode(): v.decode() for k, v in head.headers}
            h1_body = b"".join(d.data for d in data)
            h1_trailers = {k.decode(): v.decode() for k, v in end.headers}

            h2c = await H2Client.connect(server)
            sid = await h2c.request(method, target, headers, body)
            (resp,) = await h2c.until_done(sid)
            assert resp.ended
            assert resp.status == head.status_code
            assert resp.body == h1_body
            assert resp.trailers == h1_trailers
            for name in ("content-type", "content-length", "cache-control", "allow", "trailer",
                         "x-accel-buffering"):  # fmt: skip
                assert resp.headers.get(name) == h1_headers.get(name), name
            # HTTP/1.1's connection management has no place in HTTP/2 (RFC 9113 §8.2.2).
            assert "transfer-encoding" not in resp.headers
            assert "connection" not in resp.headers

    run(main)


def test_one_data_frame_per_token_then_end_stream() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H2Client.connect(server)
            resp = await client.get("/tokens?n=6&interval_ms=5&prompt=frames")
            tokens = [t.encode() for t in tokens_for("frames", 6)]
            # Each send is one DATA frame; END_STREAM comes on an empty DATA frame.
            assert resp.frames == [*tokens, b"\n[DONE]\n", b""]

    run(main)


def test_two_streams_interleave_on_one_connection() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H2Client.connect(server)
            a = await client.request("GET", "/tokens?n=5&interval_ms=20&prompt=a")
            b = await client.request("GET", "/tokens?n=5&interval_ms=20&prompt=b")
            await client.until_done(a, b)
            order = [e.stream_id for e in client.events if isinstance(e, h2.events.DataReceived)]
            # Frames of both streams alternate instead of one stream's all coming first.
            first_b = order.index(b)
            assert a in order[first_b:]
            assert client.responses[a].body.startswith(tokens_for("a", 1)[0].encode())
            assert client.responses[b].body.endswith(b"[DONE]\n")

    run(main)


def test_the_server_waits_for_window_updates() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H2Client.connect(server, window=16)
            client.auto_ack = False
            sid = await client.request("GET", "/fixed?size=100")
            received = 0
            while received < 16:
                for event in await client.pump():
                    if isinstance(event, h2.events.DataReceived):
                        received += len(event.data or b"")
            assert received == 16  # exactly the window: the server stopped there
            with trio.move_on_after(0.2):
                while True:
                    events = await client.pump()
                    assert not any(isinstance(e, h2.events.DataReceived) for e in events)
            # Open the window: the rest arrives.
            client.auto_ack = True
            client.conn.acknowledge_received_data(16, sid)
            client.conn.increment_flow_control_window(200, stream_id=sid)
            await client.flush()
            (resp,) = await client.until_done(sid)
            assert len(resp.body) == 100
            assert all(len(f) <= 16 + 200 for f in resp.frames)

    run(main)


def test_a_reset_stream_cancels_its_handler_and_only_it() -> None:
    cancelled = trio.Event()

    async def endless(request: Request, response: ResponseStream) -> None:
        if request.path == "/short":
            await response.start(200, [("content-type", "text/plain")])
            await response.send(b"ok")
            return
        await response.start(200, [("content-type", "text/plain")])
        try:
            while True:
                await response.send(b"tick\n")
                await trio.sleep(0.01)
        except trio.Cancelled:
            cancelled.set()
            raise

    async def main() -> None:
        async with lab_server(app=endless) as server:
            client = await H2Client.connect(server)
            long_id = await client.request("GET", "/long")
            while not client.responses[long_id].frames:
                await client.pump()
            client.conn.reset_stream(long_id, h2.errors.ErrorCodes.CANCEL)
            await client.flush()
            with trio.fail_after(5):
                await cancelled.wait()
            resp = await client.get("/short")  # the connection lives on
            assert resp.body == b"ok"

    run(main)


def test_a_stream_over_the_limit_is_refused_not_the_connection() -> None:
    async def main() -> None:
        async with lab_server(limits=Limits(h2_max_concurrent_streams=2)) as server:
            client = await H2Client.connect(server)
            ids = [await client.request("GET", "/tokens?n=3&interval_ms=50") for _ in range(3)]
            responses = await client.until_done(*ids)
            assert [r.reset for r in responses] == [None, None, h2.errors.ErrorCodes.REFUSED_STREAM]
            assert all(r.ended for r in responses[:2])
            again = await client.get("/fixed?size=3")  # after the refusal, the connection works
            assert again.body == b"str"
            settings = [e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)]
            advertised = settings[0].changed_settings[
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
            ]
            assert advertised.new_value == 2

    run(main)


def test_shutdown_sends_goaway_and_lets_the_stream_finish() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H2Client.connect(server)
            sid = await client.request("GET", "/tokens?n=4&interval_ms=50")
            while not client.responses[sid].frames:
                await client.pump()
            server.shutdown()
            # h2 as a client stops processing at GOAWAY (it moves to CLOSED), so the rest
            # of the conversation is read raw and parsed frame by frame.
            frames = _frames(await read_all(client.stream))
            goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
            assert len(goaway) == 1
            assert goaway[0].last_stream_id == sid
            assert goaway[0].error_code == h2.errors.ErrorCodes.NO_ERROR
            after = frames[frames.index(goaway[0]) + 1 :]
            data = [f for f in after if isinstance(f, DataFrame) and f.stream_id == sid]
            assert data  # the stream went on after the GOAWAY ...
            assert "END_STREAM" in data[-1].flags  # ... to its end
            assert b"".join(f.data for f in data).endswith(b"[DONE]\n")

    run(main)


def test_a_ping_flood_gets_goaway_enhance_your_calm() -> None:
    async def main() -> None:
        async with lab_server(limits=Limits(h2_control_frames_per_second=50)) as server:
            client = await H2Client.connect(server)
            for i in range(200):
                client.conn.ping(i.to_bytes(8, "big"))
            await client.flush()
            with trio.fail_after(10):
                while not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events):
                    await client.pump()
            goaway = [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
            assert goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
            # h2 answers every PING of one read before the lab sees them; after the
            # GOAWAY the server answers nothing more.
            answered = sum(isinstance(e, h2.events.PingAckReceived) for e in client.events)
            more = b"".join(
                PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(200)
            )
            with contextlib.suppress(trio.BrokenResourceError):
                await client.stream.send_all(more)
            raw = await read_all(client.stream)
            assert answered <= 200
            assert b"\x06\x01" not in raw  # no PING ACK (type 6, flag 1) after the GOAWAY

    run(main)


def test_rapid_reset_is_stopped() -> None:
    async def main() -> None:
        async with lab_server(limits=Limits(h2_control_frames_per_second=100)) as server:
            client = await H2Client.connect(server)
            request = [(":method", "GET"), (":path", "/tokens?n=50"), (":scheme", "http"),
                       (":authority", "lab")]  # fmt: skip
            for _ in range(300):
                sid = client.conn.get_next_available_stream_id()
                client.conn.send_headers(sid, request)
                client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            await client.flush()
            with trio.fail_after(10):
                while not client.closed:
                    await client.pump()
            goaway = [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
            assert goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM

    run(main)


def test_one_port_serves_both_protocols() -> None:
    async def main() -> None:
        async with lab_server() as server:
            h1 = await connect(server)
            await h1.send_all(b"GET /fixed?size=2 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            assert (await read_all(h1)).endswith(b"\r\n\r\nst")
            client = await H2Client.connect(server)
            assert (await client.get("/fixed?size=2")).body == b"st"

    run(main)


def test_closed_stream_bookkeeping_is_bounded() -> None:
    from lab.server.http2 import _LabH2Connection

    conn = _LabH2Connection()
    assert conn._closed_streams._size_limit == 1024  # type: ignore[attr-defined]
    for i in range(1, 5000, 2):
        conn._closed_streams[i] = None
    assert len(conn._closed_streams) == 1024
