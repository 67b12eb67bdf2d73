"""/mcp sessions under pressure (revision 2025-11-25), through real sockets: what a call
may hold once its client has left, how sessions expire, and which session a full table
evicts. Time is trio's MockClock (autojump): every duration here is virtual.
"""

from __future__ import annotations

from typing import Any

import trio

from lab.apps.mcp import McpEndpoint, McpLimits
from lab.server import Limits, Server, serve_tcp
from tests.mcp.helpers import (
    CLIENT_INFO,
    Stream,
    app_for,
    body_json,
    establish,
    initialize,
    legacy_headers,
    open_stream,
    post,
    rpc,
    stream_call,
)
from tests.server.helpers import WAIT, lab_server, run

# Virtual seconds the server may take to notice that a client hung up: a stream_tokens
# call whose tokens are 1 s apart notices at one of its next sends.
NOTICE = 5
# A call that would run for about 17 minutes if nothing stopped it (the tool's maximum).
LONG = {"n": 1000, "interval_ms": 1000}
# How long a shutdown may take: the streams' grace, then closing.
GRACE = Limits().shutdown_grace + Limits().close_timeout
INIT_PARAMS = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO}


def _lab(fn: Any, endpoint: McpEndpoint) -> None:
    async def main() -> None:
        async with lab_server(app_for(endpoint)) as server:
            await fn(server)

    run(main, autojump=True)


async def _bare_initialize(port: int) -> str:
    """initialize and nothing else: a session that is never established."""
    response = await post(port, rpc("initialize", INIT_PARAMS))
    assert response.status == 200
    session = response.header("mcp-session-id")
    assert session is not None
    return session


async def _ping(port: int, session: str) -> int:
    return (await post(port, rpc("ping", id="p"), legacy_headers(session))).status


async def _call_and_hang_up(port: int, session: str, id: str, events: int = 2) -> None:
    """Start a long stream_tokens call, read ``events`` events of it, hang up."""
    body = stream_call(LONG["n"], LONG["interval_ms"], id=id)
    async with open_stream(port, "POST", legacy_headers(session), body) as call:
        await call.read(lambda got: len(got) >= events)


async def _until_detached(endpoint: McpEndpoint, session_id: str) -> None:
    """Give the server time to notice that no client reads any call of the session."""
    await trio.sleep(NOTICE)
    session = endpoint.sessions.peek(session_id)
    assert session is not None
    assert not session.protected


async def _read_to_end(stream: Stream) -> None:
    """Read a long response to its end, each event within the helpers' WAIT."""
    while not stream.ended:
        seen = len(stream.events)
        await stream.read(lambda got: len(got) > seen)  # noqa: B023 - used at once


# -- what a call holds after its client left ---------------------------------------------


def test_a_call_whose_client_left_is_stopped_after_the_detached_timeout() -> None:
    endpoint = McpEndpoint(McpLimits(detached_call_timeout=30))

    async def check(server: Server) -> None:
        session = await establish(server.port)
        headers = legacy_headers(session)
        await _call_and_hang_up(server.port, session, "long", events=3)
        left = trio.current_time()
        with trio.fail_after(30 + 2 * NOTICE):
            await endpoint.stats.wait_until(lambda stats: stats.calls_running == 0)
        assert 30 <= trio.current_time() - left <= 30 + NOTICE
        stats = endpoint.stats
        assert (stats.calls_abandoned, stats.calls_cancelled) == (1, 0)
        # A late resumption gets what was stored, then the error that ends the request
        # (rather than a stream that ends without a response, forever).
        async with open_stream(server.port, "GET", [*headers, ("last-event-id", "1-2")]) as rest:
            await rest.read()
        assert rest.ended
        *progress, last = rest.messages()
        assert {m["method"] for m in progress} == {"notifications/progress"}
        assert 28 <= len(progress) <= 30 + NOTICE  # one a second, for as long as it ran
        assert (last["id"], last["error"]["code"]) == ("long", -32603)
        assert "30 s" in last["error"]["message"]
        assert await _ping(server.port, session) == 200  # the session itself lives on

    _lab(check, endpoint)


def test_a_call_resumed_in_time_runs_to_its_end() -> None:
    endpoint = McpEndpoint(McpLimits(detached_call_timeout=30))

    async def check(server: Server) -> None:
        session = await establish(server.port)
        headers = legacy_headers(session)
        # 200 tokens 250 ms apart: 50 s, longer than the detached timeout.
        body = stream_call(200, 250, id="r")
        async with open_stream(server.port, "POST", headers, body) as cut:
            await cut.read(lambda got: len(got) >= 3)
        left = trio.current_time()
        await trio.sleep(20)
        async with open_stream(server.port, "GET", [*headers, ("last-event-id", "1-2")]) as rest:
            await _read_to_end(rest)
        assert trio.current_time() - left > 30  # ran past the timeout: it was resumed
        assert rest.messages()[-1]["result"]["isError"] is False
        assert [m["params"]["progress"] for m in rest.messages()[:-1]] == list(range(3, 201))
        assert (endpoint.stats.calls_abandoned, endpoint.stats.calls_cancelled) == (0, 0)

    _lab(check, endpoint)


def test_64_clients_that_left_long_calls_do_not_lock_new_sessions_out() -> None:
    # The default table has 64 slots. Each client initializes, starts a call that would
    # run for 17 minutes, and hangs up: before, every slot stayed "busy" until the calls
    # ended, and every new initialize got 503 meanwhile.
    endpoint = McpEndpoint()
    slots = endpoint.limits.max_sessions

    async def check(server: Server) -> None:
        sessions = [await establish(server.port) for _ in range(slots)]
        for i, session in enumerate(sessions):
            await _call_and_hang_up(server.port, session, f"c{i}")
        await trio.sleep(NOTICE)  # the server notices that every client hung up
        assert not any(s and s.protected for s in map(endpoint.sessions.peek, sessions))
        newcomer = await initialize(server.port)
        assert await _ping(server.port, newcomer) == 200
        assert endpoint.sessions.evicted == 1
        assert await _ping(server.port, sessions[0]) == 404  # least recently used
        # What the others left behind is stopped after the detached timeout.
        timeout = endpoint.limits.detached_call_timeout
        with trio.fail_after(timeout + NOTICE):
            await endpoint.stats.wait_until(lambda stats: stats.calls_running == 0)
        assert endpoint.stats.calls_abandoned == slots - 1
        assert endpoint.stats.calls_cancelled == 1  # the evicted session's call

    _lab(check, endpoint)


# -- expiry -------------------------------------------------------------------------------


def test_a_session_never_established_expires_after_the_short_timeout() -> None:
    endpoint = McpEndpoint(McpLimits(new_session_timeout=60, session_idle_timeout=600))

    async def check(server: Server) -> None:
        bare = await _bare_initialize(server.port)  # no notifications/initialized
        half = await initialize(server.port)  # the handshake, then nothing
        used = await establish(server.port)
        await trio.sleep(61)
        assert await _ping(server.port, bare) == 404
        assert await _ping(server.port, half) == 404
        assert await _ping(server.port, used) == 200
        assert endpoint.sessions.expired == 2
        await trio.sleep(599)
        assert await _ping(server.port, used) == 200  # the idle clock starts again
        await trio.sleep(601)
        assert await _ping(server.port, used) == 404
        assert endpoint.sessions.expired == 3

    _lab(check, endpoint)


def test_a_session_does_not_expire_while_its_get_stream_is_read() -> None:
    endpoint = McpEndpoint(McpLimits(session_idle_timeout=300))

    async def check(server: Server) -> None:
        session = await establish(server.port)
        async with open_stream(server.port, "GET", legacy_headers(session)) as get:
            await get.read(lambda got: len(got) >= 1)
            await trio.sleep(400)
            assert await _ping(server.port, session) == 200

    _lab(check, endpoint)


# -- eviction -----------------------------------------------------------------------------


def test_a_full_table_refuses_only_while_every_client_is_connected_to_a_call() -> None:
    endpoint = McpEndpoint(McpLimits(max_sessions=2))

    async def check(server: Server) -> None:
        a, b = await establish(server.port), await establish(server.port)
        body_a = stream_call(LONG["n"], LONG["interval_ms"], id="a")
        async with open_stream(server.port, "POST", legacy_headers(a), body_a) as call_a:
            await call_a.read(lambda got: len(got) >= 2)
            body_b = stream_call(LONG["n"], LONG["interval_ms"], id="b")
            async with open_stream(server.port, "POST", legacy_headers(b), body_b) as call_b:
                await call_b.read(lambda got: len(got) >= 2)
                refused = await post(server.port, rpc("initialize", INIT_PARAMS, 9))
                assert refused.status == 503
                assert refused.header("retry-after") == "10"
                assert body_json(refused)["id"] == 9
            await _until_detached(endpoint, b)
            # b's client left: its session makes room at once, before its call's timeout.
            assert (await post(server.port, rpc("initialize", INIT_PARAMS))).status == 200
            assert await _ping(server.port, b) == 404
            await call_a.read(lambda got: len(got) >= 4)  # a's call was not disturbed
        assert endpoint.stats.calls_cancelled == 1  # b's, by the end of its session

    _lab(check, endpoint)


def test_bare_initializes_evict_each_other_before_an_established_session() -> None:
    endpoint = McpEndpoint(McpLimits(max_sessions=2))

    async def check(server: Server) -> None:
        kept = await establish(server.port)
        for _ in range(5):
            await _bare_initialize(server.port)
        assert await _ping(server.port, kept) == 200
        assert endpoint.sessions.evicted == 4
        # What eviction does not protect: an idle established session goes when clients
        # that complete the handshake fill the table (least recently used first).
        other = await establish(server.port)  # takes the last bare session's slot
        await establish(server.port)  # takes kept's: other was used more recently
        assert await _ping(server.port, kept) == 404
        assert await _ping(server.port, other) == 200

    _lab(check, endpoint)


def test_a_session_only_reading_its_get_stream_can_be_evicted() -> None:
    endpoint = McpEndpoint(McpLimits(max_sessions=1))

    async def check(server: Server) -> None:
        listener = await establish(server.port)
        async with open_stream(server.port, "GET", legacy_headers(listener)) as get:
            await get.read(lambda got: len(got) >= 1)
            await establish(server.port)
            with trio.fail_after(WAIT):
                await get.read()
        assert get.ended  # the session's end ends its stream properly
        assert await _ping(server.port, listener) == 404

    _lab(check, endpoint)


def test_shutdown_cancels_a_call_whose_client_hung_up() -> None:
    # The call runs in the server's nursery (request.background): it outlives its client
    # (so that the client can resume it), and the server's shutdown ends it.
    endpoint = McpEndpoint()

    async def main() -> None:
        with trio.fail_after(WAIT + LONG["n"]):  # virtual seconds: a hang fails
            async with trio.open_nursery() as nursery:
                server: Server = await nursery.start(serve_tcp, app_for(endpoint), 0)
                headers = legacy_headers(await establish(server.port))
                async with open_stream(server.port, "POST", headers, stream_call(**LONG)) as call:
                    await call.read(lambda events: len(events) >= 2)
                await trio.sleep(NOTICE)
                assert endpoint.stats.calls_running == 1  # the client left; the call did not
                begun = trio.current_time()
                server.shutdown()
            assert trio.current_time() - begun <= GRACE
            assert endpoint.stats.calls_running == 0
            assert endpoint.stats.calls_cancelled == 1

    run(main, autojump=True)
