"""lab.client.sse.event_source against the lab server: EventSource semantics, byte for byte."""

from __future__ import annotations

import json

import trio

from lab.apps import AbortResponse, Request, ResponseStream
from lab.apps.sse import open_event_channel
from lab.apps.tokens import tokens_for
from lab.client.sse import event_source
from lab.wire.sse import encode_event
from tests.server.helpers import lab_server, run


def _requests(result: object) -> list[bytes]:
    trace = result.trace  # type: ignore[attr-defined]
    return [c.client_to_server() for c in trace.connections]


def test_reconnects_with_last_event_id_until_204() -> None:
    async def main() -> None:
        async with lab_server() as server:
            result = await event_source(
                server.host, server.port, "/events?n=2&total=5&interval_ms=0&retry_ms=20&stream=c1"
            )
            assert [e.last_event_id for e in result.events] == ["1", "2", "3", "4", "5"]
            assert [r.status for r in result.responses] == [200, 200, 200, 204]
            assert result.reconnection_ms == 20  # the stream's retry: field took effect
            assert "status 204" in result.stopped
            sent = _requests(result)
            assert b"last-event-id" not in sent[0]
            assert [
                b"last-event-id: %d\r\n" % k in req
                for k, req in zip((2, 4, 5), sent[1:], strict=True)
            ] == [True] * 3
            # One trace, one time axis, every connection in order.
            starts = [c.records[0].t for c in result.trace.connections]
            assert starts == sorted(starts)
            assert starts[1] - starts[0] >= 0.02  # waited the reconnection time

    run(main)


def test_a_wrong_status_or_content_type_fails_the_connection_for_good() -> None:
    async def main() -> None:
        async with lab_server() as server:
            result = await event_source(server.host, server.port, "/nowhere", reconnection_ms=1)
            assert [r.status for r in result.responses] == [404]
            assert "status 404" in result.stopped
            result = await event_source(
                server.host, server.port, "/fixed?size=3", reconnection_ms=1
            )
            assert len(result.responses) == 1
            assert "Content-Type 'text/plain; charset=utf-8'" in result.stopped

    run(main)


def test_a_broken_stream_is_resumed_from_the_last_id() -> None:
    attempts: list[str | None] = []

    async def flaky(request: Request, response: ResponseStream) -> None:
        attempts.append(request.header("last-event-id"))
        async with open_event_channel(response) as channel:
            if len(attempts) == 1:
                await channel.put(encode_event("one", id="1"))
                await channel.put(b"data: half an ev")  # then the connection breaks
                await trio.sleep(0.01)
                raise AbortResponse("simulated failure mid-event")
            await channel.put(encode_event("two", id="2"))

    async def main() -> None:
        async with lab_server(app=flaky) as server:
            result = await event_source(
                server.host, server.port, "/", reconnection_ms=5, max_connections=2
            )
            assert [e.data for e in result.events] == ["one", "two"]
            assert attempts == [None, "1"]  # the half event was never dispatched

    run(main)


def test_the_last_event_id_survives_a_connection_without_ids() -> None:
    served: list[str | None] = []

    async def no_ids_second_time(request: Request, response: ResponseStream) -> None:
        served.append(request.header("last-event-id"))
        async with open_event_channel(response) as channel:
            if len(served) == 1:
                await channel.put(encode_event("a", id="7"))
            else:
                await channel.put(encode_event("b"))  # no id: the last event ID stays 7

    async def main() -> None:
        async with lab_server(app=no_ids_second_time) as server:
            result = await event_source(
                server.host, server.port, "/", reconnection_ms=1, max_connections=3
            )
            assert served == [None, "7", "7"]
            assert [e.last_event_id for e in result.events] == ["7", "7", "7"]

    run(main)


def test_post_mode_reads_a_chat_reply_and_stops_on_done() -> None:
    async def main() -> None:
        async with lab_server() as server:
            body = json.dumps({"prompt": "p", "n": 3, "interval_ms": 0}).encode()
            result = await event_source(
                server.host, server.port, "/chat", method="POST", body=body,
                headers=[("content-type", "application/json")],
                until=lambda e: e.data == "[DONE]",
            )  # fmt: skip
            assert len(result.responses) == 1
            assert result.responses[0].complete  # read to its end, then no reconnect
            tokens = [json.loads(e.data)["token"] for e in result.events[:-1]]
            assert tokens == tokens_for("p", 3)
            assert _requests(result)[0].startswith(b"POST /chat HTTP/1.1\r\n")

    run(main)


def test_max_events_hangs_up_at_once() -> None:
    async def main() -> None:
        async with lab_server() as server:
            result = await event_source(
                server.host, server.port, "/events?n=50&interval_ms=50&stream=c2", max_events=2
            )
            assert len(result.events) == 2
            assert not result.responses[0].complete
            assert result.trace.connections[0].records[-1].kind == "close"

    run(main)
