"""/poll, /longpoll and /sse/tokens over HTTP/1.1 and h2c, on trio's MockClock.

Time is virtual (autojump): a poll stream's schedule is checked to the exact moment, and a
long poll's hold and timeout take no real time. The requests are made by the independent
h11 / h2 peers of tests/server/peers.py.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import trio

from lab.apps.poll import (
    LONGPOLL_MAX_TIMEOUT_MS,
    MAX_STREAM_ID,
    PollStream,
    PollStreams,
)
from lab.apps.tokens import tokens_for
from lab.server import Server
from lab.wire.sse import parse
from tests.server.helpers import run
from tests.server.peers import connect, exchange, server_for

PROTOCOLS = ("http/1.1", "h2c")


def target(path: str, stream: str = "bad", **extra: str | int) -> str:
    fields: dict[str, str | int] = {"stream": stream, "prompt": "poll", "n": 4}
    fields.update(extra)
    return f"{path}?{urlencode(fields)}"


async def ask(server: Server, protocol: str, target: str) -> dict[str, object]:
    """One GET on a connection of its own (the h2 peer speaks one exchange per
    connection); the JSON answer."""
    status, body = await exchange(await connect(server, protocol), protocol, "GET", target)
    assert status == 200, body
    parsed = json.loads(body)
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_short_polls_return_what_the_schedule_has_produced(protocol: str) -> None:
    words = tokens_for("poll", 4)

    def poll(cursor: int) -> str:
        return target("/poll", "a", interval_ms=1000, cursor=cursor)

    async def main() -> None:
        async with server_for(protocol) as server:
            start = trio.current_time()
            # The first request starts the stream: token 0 exists at once.
            first = await ask(server, protocol, poll(0))
            assert first == {"tokens": words[:1], "cursor": 1, "done": False}
            # 2.5 s later tokens 1 (due at 1 s) and 2 (due at 2 s) exist, 3 does not.
            await trio.sleep_until(start + 2.5)
            second = await ask(server, protocol, poll(1))
            assert second == {"tokens": words[1:3], "cursor": 3, "done": False}
            # Asked again at once: nothing new, the same cursor.
            assert await ask(server, protocol, poll(3)) == {
                "tokens": [], "cursor": 3, "done": False,
            }  # fmt: skip
            await trio.sleep_until(start + 3.0)
            last = await ask(server, protocol, poll(3))
            assert last == {"tokens": words[3:], "cursor": 4, "done": True}

    run(main, autojump=True)


def test_every_client_of_a_stream_sees_one_schedule_over_either_protocol() -> None:
    words = tokens_for("poll", 4)

    async def main() -> None:
        async with server_for("http/1.1") as server:
            start = trio.current_time()
            await ask(server, "http/1.1", target("/poll", "shared", interval_ms=1000))
            await trio.sleep_until(start + 1.5)
            # A second client, over HTTP/2, joins the stream the first one started.
            late = await ask(server, "h2c", target("/poll", "shared", interval_ms=1000))
            assert late == {"tokens": words[:2], "cursor": 2, "done": False}
            # Another stream id is another stream: it starts now, with token 0 only.
            other = await ask(server, "h2c", target("/poll", "other", interval_ms=1000))
            assert other == {"tokens": words[:1], "cursor": 1, "done": False}

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_poll_is_held_until_the_next_token_is_produced(protocol: str) -> None:
    words = tokens_for("poll", 4)

    async def main() -> None:
        async with server_for(protocol) as server:
            start = trio.current_time()
            got: list[str] = []
            times = []
            cursor = 0
            for _ in range(10):  # 4 tokens: 4 answers; the bound only stops a runaway
                body = await ask(
                    server, protocol,
                    target("/longpoll", "lp", interval_ms=1000, cursor=cursor, timeout_ms=20_000),
                )  # fmt: skip
                times.append(trio.current_time() - start)
                tokens = body["tokens"]
                assert isinstance(tokens, list)
                assert len(tokens) == 1  # one token per answer: each was awaited
                got += tokens
                cursor = int(str(body["cursor"]))
                if body["done"]:
                    break
            assert got == words
            # Each answer came when its token was produced (0 s, 1 s, 2 s, 3 s), not sooner.
            assert times == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-6)

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_poll_times_out_with_no_tokens_and_the_same_cursor(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            await ask(server, protocol, target("/poll", "slow", interval_ms=10_000))
            asked = trio.current_time()
            body = await ask(
                server, protocol,
                target("/longpoll", "slow", interval_ms=10_000, cursor=1, timeout_ms=2500),
            )  # fmt: skip
            assert body == {"tokens": [], "cursor": 1, "done": False}
            assert trio.current_time() - asked == pytest.approx(2.5, abs=1e-6)

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_long_poll_on_a_finished_stream_answers_at_once(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            asked = trio.current_time()
            body = await ask(
                server, protocol,
                target("/longpoll", "done", interval_ms=10_000, cursor=4, timeout_ms=20_000),
            )  # fmt: skip
            assert body == {"tokens": [], "cursor": 4, "done": True}
            assert trio.current_time() == asked

    run(main, autojump=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("path", "extra", "word"),
    [
        ("/longpoll", {"timeout_ms": LONGPOLL_MAX_TIMEOUT_MS + 1}, "timeout_ms"),
        ("/poll", {"cursor": 5}, "cursor"),
        ("/poll", {"cursor": -1}, "cursor"),
        ("/poll", {"interval_ms": "soon"}, "interval_ms"),
        ("/poll", {"stream": "x" * (MAX_STREAM_ID + 1)}, "stream"),
    ],
)
def test_bad_parameters_are_refused_with_400_naming_them(
    protocol: str, path: str, extra: dict[str, str | int], word: str
) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            conn = await connect(server, protocol)
            status, body = await exchange(conn, protocol, "GET", target(path, **extra))
            assert status == 400
            assert word in body.decode()

    run(main)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sse_tokens_carries_the_token_stream_as_events_then_done(protocol: str) -> None:
    async def main() -> None:
        async with server_for(protocol) as server:
            conn = await connect(server, protocol)
            status, body = await exchange(
                conn, protocol, "GET", "/sse/tokens?prompt=poll&n=4&interval_ms=0"
            )
            assert status == 200
            events = parse(body)
            assert [json.loads(e.data)["token"] for e in events[:-1]] == tokens_for("poll", 4)
            assert [json.loads(e.data)["index"] for e in events[:-1]] == [0, 1, 2, 3]
            assert events[-1].data == "[DONE]"

    run(main)


# -- the schedule and the table, without a server ---------------------------------------


def test_produced_counts_exactly_the_tokens_due_by_then() -> None:
    stream = PollStream(("s", "p", 5, 30), start=100.0, last_seen=100.0)
    due = [stream.due(i) for i in range(5)]
    for i, t in enumerate(due):
        assert stream.produced(t) == i + 1  # token i exists from its due time on
        assert stream.produced(t - 1e-9) == i
    assert stream.produced(99.0) == 0
    assert stream.produced(1e9) == 5
    at_once = PollStream(("s", "p", 5, 0), start=100.0, last_seen=100.0)
    assert at_once.produced(100.0) == 5


def test_the_table_drops_the_least_recently_asked_and_the_expired() -> None:
    table = PollStreams(capacity=2, expiry=10.0)
    a = table.get(("a", "p", 4, 10), now=0.0)
    table.get(("b", "p", 4, 10), now=1.0)
    assert table.get(("a", "p", 4, 10), now=2.0) is a  # asked again: kept, same start
    table.get(("c", "p", 4, 10), now=3.0)  # b is the least recently asked: dropped
    assert table.lookup(("b", "p", 4, 10)) is None
    assert len(table) == 2
    # 10 s after its last request a stream is forgotten; asked again, it starts again.
    assert table.lookup(("a", "p", 4, 10)) is a
    fresh = table.get(("a", "p", 4, 10), now=12.5)
    assert fresh is not a
    assert fresh.start == 12.5


def test_a_stream_dropped_while_a_long_poll_held_it_is_kept_by_the_answer() -> None:
    table = PollStreams(capacity=1, expiry=60.0)
    held = table.get(("held", "p", 4, 10), now=0.0)
    table.get(("other", "p", 4, 10), now=1.0)  # drops "held" while its request waits
    table.touch(held, now=2.0)
    assert table.lookup(("held", "p", 4, 10)) is held
    assert table.lookup(("other", "p", 4, 10)) is None
