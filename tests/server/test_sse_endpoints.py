"""The SSE endpoints through real sockets: fields, resume, 204, heartbeats, slow readers."""

from __future__ import annotations

import json
import socket
import struct

import h11
import pytest
import trio

from lab.apps import AbortResponse, Request, ResponseStream
from lab.apps.sse import EventLog, open_event_channel
from lab.apps.tokens import tokens_for
from lab.wire.sse import encode_event, parse
from tests.server.helpers import H11Client, connect, lab_server, read_all, run


async def _get(
    server_port: int, target: str, headers: list[tuple[str, str]] | None = None
) -> tuple[h11.Response, bytes]:
    client = H11Client(await trio.open_tcp_stream("127.0.0.1", server_port))
    try:
        await client.get(target, headers)
        head, data, _ = await client.response()
        return head, b"".join(d.data for d in data)
    finally:
        await client.stream.aclose()


def test_events_have_ids_retry_and_the_sse_headers() -> None:
    async def main() -> None:
        async with lab_server() as server:
            head, body = await _get(server.port, "/events?n=3&interval_ms=0&retry_ms=700&stream=t1")
            headers = dict(head.headers)
            assert headers[b"content-type"] == b"text/event-stream"
            assert headers[b"cache-control"] == b"no-store"
            assert headers[b"x-accel-buffering"] == b"no"
            assert body.startswith(b"retry: 700\n\n")
            events = parse(body)
            assert [e.last_event_id for e in events] == ["1", "2", "3"]
            assert [json.loads(e.data)["seq"] for e in events] == [1, 2, 3]
            assert all(e.type == "message" for e in events)

    run(main)


def test_resume_after_last_event_id_and_204_at_the_end() -> None:
    async def main() -> None:
        async with lab_server() as server:
            target = "/events?n=2&total=5&interval_ms=0&stream=t2"
            _, first = await _get(server.port, target)
            assert [e.last_event_id for e in parse(first)] == ["1", "2"]
            _, second = await _get(server.port, target, [("last-event-id", "2")])
            assert [e.last_event_id for e in parse(second)] == ["3", "4"]
            # The replay of a logged event is byte for byte what was sent the first time.
            _, again = await _get(server.port, target, [("last-event-id", "1")])
            assert again.split(b"\n\n", 1)[1].startswith(first.split(b"\n\n", 2)[2][:20])
            _, last = await _get(server.port, target, [("last-event-id", "4")])
            assert [e.last_event_id for e in parse(last)] == ["5"]
            head, body = await _get(server.port, target, [("last-event-id", "5")])
            assert head.status_code == 204
            assert body == b""

    run(main)


def test_a_foreign_last_event_id_restarts_with_a_comment() -> None:
    async def main() -> None:
        async with lab_server() as server:
            _, body = await _get(server.port, "/events?n=1&stream=t3", [("last-event-id", "abc")])
            assert b": Last-Event-ID 'abc' is not one of ours; from the start\n" in body
            assert [e.last_event_id for e in parse(body)] == ["1"]

    run(main)


def test_multiline_data_takes_several_data_lines() -> None:
    async def main() -> None:
        async with lab_server() as server:
            _, body = await _get(server.port, "/events?n=1&multiline=1&stream=t4")
            assert body.count(b"\ndata: ") >= 4
            (event,) = parse(body)
            assert json.loads(event.data)["seq"] == 1
            assert "\n" in event.data

    run(main)


def test_heartbeats_fill_the_quiet_between_events() -> None:
    async def main() -> None:
        async with lab_server() as server:
            target = "/events?n=2&interval_ms=1000&heartbeat_ms=300&stream=t5"
            _, body = await _get(server.port, target)
            # 300, 600 and 900 ms after event 1; event 2 at 1000 ms.
            between = body.split(b"id: 1\n", 1)[1].split(b"id: 2\n", 1)[0]
            assert between.count(b": heartbeat\n") == 3
            assert len(parse(body)) == 2  # comments dispatch nothing

    run(main, autojump=True)


def test_event_log_bounds_and_gaps() -> None:
    log = EventLog(size=3, streams=2)
    for i in range(1, 6):
        log.record("a", i, b"e%d" % i)
    assert log.since("a", 3) == ([(4, b"e4"), (5, b"e5")], None)
    kept, gone_from = log.since("a", 0)
    assert [i for i, _ in kept] == [3, 4, 5]
    assert gone_from == 1  # events 1 and 2 fell out of the log
    log.record("b", 1, b"b1")
    log.record("c", 1, b"c1")  # a third stream: the least recently used ("a") goes
    assert log.newest("a") == 0


def test_a_resume_older_than_the_log_says_what_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.apps.sse as sse_module

    monkeypatch.setattr(sse_module, "EVENT_LOG", EventLog(size=2))

    async def main() -> None:
        async with lab_server() as server:
            await _get(server.port, "/events?n=5&interval_ms=0&stream=t6")
            _, body = await _get(
                server.port, "/events?n=5&interval_ms=0&stream=t6", [("last-event-id", "1")]
            )
            assert b": events 2..3 are no longer in the log\n" in body
            assert [e.last_event_id for e in parse(body)][:2] == ["4", "5"]

    run(main)


def test_progress_then_result_or_an_error_event() -> None:
    async def main() -> None:
        async with lab_server() as server:
            _, body = await _get(server.port, "/progress?n=3&interval_ms=0")
            events = parse(body)
            assert [e.type for e in events] == ["progress"] * 3 + ["result"]
            assert [json.loads(e.data)["percent"] for e in events[:3]] == [33, 66, 100]
            assert json.loads(events[-1].data)["words"] == tokens_for("progress", 3)
            _, body = await _get(server.port, "/progress?n=5&interval_ms=0&fail_at=2")
            events = parse(body)
            assert [e.type for e in events] == ["progress", "error"]
            assert "step 2 failed" in json.loads(events[-1].data)["message"]

    run(main)


def test_chat_as_sse_is_one_data_line_per_token_then_done() -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H11Client.connect(server)
            body = json.dumps({"prompt": "s", "n": 3, "interval_ms": 0}).encode()
            await client.send(
                h11.Request(method="POST", target="/chat", headers=[
                    ("host", "a"), ("accept", "text/event-stream"),
                    ("content-type", "application/json"), ("content-length", str(len(body))),
                ]),
                h11.Data(data=body), h11.EndOfMessage(),
            )  # fmt: skip
            head, data, _ = await client.response()
            assert dict(head.headers)[b"content-type"] == b"text/event-stream"
            events = parse(b"".join(d.data for d in data))
            assert [json.loads(e.data)["token"] for e in events[:-1]] == tokens_for("s", 3)
            assert events[-1].data == "[DONE]"

    run(main)


# -- slow readers and disconnects ------------------------------------------------------

BIG = 64 * 1024


def test_a_client_that_does_not_read_is_cut_off_and_memory_stays_bounded() -> None:
    outcome: dict[str, object] = {}
    cut = trio.Event()

    async def firehose(request: Request, response: ResponseStream) -> None:
        try:
            async with open_event_channel(response, queue_size=8) as channel:
                for i in range(100_000):
                    await channel.put(encode_event("x" * BIG, id=str(i)))
                    outcome["high_water"] = channel.queued_high_water
                    await trio.sleep(0.001)  # the source's own pace, not the client's
        except AbortResponse as exc:
            outcome["cut"] = exc.reason
            cut.set()
            raise

    async def main() -> None:
        async with lab_server(app=firehose) as server:
            stream = await connect(server)
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            await stream.send_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            with trio.fail_after(30):
                await cut.wait()
            raw = await read_all(stream)  # drain: the server closed after what it had sent
            assert not raw.endswith(b"0\r\n\r\n")  # cut off: no last-chunk
            assert "client too slow: 8 events queued" in str(outcome["cut"])
            high_water = outcome["high_water"]
            assert isinstance(high_water, int)
            assert high_water <= 8

    run(main)


def test_a_fast_producer_does_not_cut_off_a_reading_client() -> None:
    async def burst(request: Request, response: ResponseStream) -> None:
        async with open_event_channel(response, queue_size=4) as channel:
            for i in range(2000):  # no pause at all between events
                await channel.put(encode_event(str(i)))

    async def main() -> None:
        async with lab_server(app=burst) as server:
            _, body = await _get(server.port, "/")
            assert [e.data for e in parse(body)] == [str(i) for i in range(2000)]

    run(main)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_that_leaves_stops_its_handler_within_one_heartbeat(how: str) -> None:
    stopped: list[float] = []
    heartbeat = 2.0

    async def quiet(request: Request, response: ResponseStream) -> None:
        try:
            async with open_event_channel(response, heartbeat_ms=int(heartbeat * 1000)) as channel:
                await channel.put(encode_event("hello"))
                await trio.sleep_forever()  # a source with nothing more to say
        finally:
            stopped.append(trio.current_time())

    async def main() -> None:
        async with lab_server(app=quiet) as server:
            client = await H11Client.connect(server)
            await client.get("/")
            assert isinstance(await client.next_event(), h11.Response)
            assert isinstance(await client.next_event(), h11.Data)
            if how == "reset":
                client.stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            left = trio.current_time()
            await client.stream.aclose()
            with trio.fail_after(10 * heartbeat):
                await server.wait_no_connections()
            assert stopped
            assert stopped[0] - left <= heartbeat

    run(main, autojump=True)
