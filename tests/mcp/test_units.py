"""The sans-IO parts of /mcp: JSON-RPC parsing, event ids, the event store, the sessions."""

from __future__ import annotations

import base64
import math

import pytest
import trio
import trio.testing

from lab.apps.mcp.messages import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Notification,
    Request,
    Response,
    RpcError,
    decode_header_value,
    error_response,
    parse_message,
)
from lab.apps.mcp.session import (
    Call,
    McpLimits,
    Session,
    SessionsFull,
    SessionTable,
    new_session_id,
)
from lab.apps.mcp.store import EventStore, StreamLog, parse_event_id
from lab.wire.sse import parse
from tests.server.helpers import run


def test_parse_message_tells_the_three_shapes_apart() -> None:
    assert parse_message(b'{"jsonrpc":"2.0","id":"a","method":"ping"}') == Request("a", "ping")
    assert parse_message(b'{"jsonrpc":"2.0","method":"n","params":{"x":1}}') == Notification(
        "n", {"x": 1}
    )
    message = parse_message(b'{"jsonrpc":"2.0","id":3,"result":{}}')
    assert isinstance(message, Response)
    assert message.id == 3


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", PARSE_ERROR),
        (b"\xff\xfe{}", PARSE_ERROR),  # not UTF-8
        (b"[" * 100_000, PARSE_ERROR),  # nesting deep enough to exhaust the decoder
        (b"[]", INVALID_REQUEST),  # a batch
        (b'"ping"', INVALID_REQUEST),
        (b'{"id":1,"method":"ping"}', INVALID_REQUEST),  # no jsonrpc
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{}}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","result":{}}', INVALID_REQUEST),
    ],
)
def test_parse_message_rejects_with_the_json_rpc_code(body: bytes, code: int) -> None:
    with pytest.raises(RpcError) as info:
        parse_message(body)
    assert info.value.code == code


def test_an_error_without_a_request_id_has_no_id_member() -> None:
    assert error_response(None, -32700, "Parse error") == {
        "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"},
    }  # fmt: skip


def test_header_values_undo_the_base64_sentinel() -> None:
    encoded = "=?base64?" + base64.b64encode("Hello, 世界".encode()).decode() + "?="
    assert decode_header_value(encoded) == "Hello, 世界"
    assert decode_header_value("stream_tokens") == "stream_tokens"
    assert decode_header_value("=?base64?%%%?=") is None


def test_session_ids_are_random_visible_ascii() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and all(0x21 <= ord(c) <= 0x7E for c in i) for i in ids)


def test_event_ids_name_the_stream_and_the_place() -> None:
    assert parse_event_id("3-5") == (3, 5)
    for bad in ("", "3", "3-", "-5", "a-1", "1-2-3", "3 -5", "9999999999-1"):
        assert parse_event_id(bad) is None, bad


def test_a_stream_log_keeps_the_newest_events_and_says_what_is_gone() -> None:
    log = StreamLog(4, size=3)
    encoded = [log.append(f'{{"n":{i}}}') for i in range(1, 6)]
    assert [e.last_event_id for e in parse(b"".join(encoded))] == [f"4-{i}" for i in range(1, 6)]
    assert log.since(3) == ([(4, encoded[3]), (5, encoded[4])], None)
    kept, gone = log.since(0)
    assert [s for s, _ in kept] == [3, 4, 5]
    assert gone == 1
    log.close()
    with pytest.raises(RuntimeError):
        log.append("{}")


def test_the_store_drops_closed_streams_first_and_never_the_get_stream() -> None:
    store = EventStore(events_per_stream=4, max_streams=3)
    first, second = store.open(), store.open()
    assert (first.stream_id, second.stream_id) == (1, 2)
    first.close()
    third = store.open()  # over the limit: the closed stream 1 goes
    assert store.get(1) is None
    assert store.get(0) is store.get_stream
    fourth = store.open()  # nothing closed to drop: live streams stay
    assert {s.stream_id for s in (second, third, fourth)} <= {2, 3, 4}
    assert len(store) == 4
    assert store.live() == 3


def test_a_newer_reader_takes_a_stream_over() -> None:
    async def main() -> None:
        log = StreamLog(1, size=8)
        old = log.attach()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.wait_beyond, 0, old)
            await trio.testing.wait_all_tasks_blocked()
            new = log.attach()  # wakes the old reader, which has lost the stream
        assert log.reader == new
        log.detach(old)
        assert log.attached
        log.detach(new)
        assert not log.attached

    run(main)


def _established(table: SessionTable) -> Session:
    session = table.create("2025-11-25")
    session.initialized = session.used = True
    return session


def _call_on(session: Session, request_id: int) -> Call:
    call = Call(request_id, session.store.open(), timeout=30)
    session.calls[request_id] = call
    return call


def test_eviction_goes_by_class_then_least_recently_used() -> None:
    async def main() -> None:
        table = SessionTable(McpLimits(max_sessions=4))
        idle_old, idle_new = _established(table), _established(table)
        listening = _established(table)
        listening.readers = 1  # reads its GET stream
        new = table.create("2025-11-25")  # not established
        assert table.lookup(idle_old.id) is idle_old  # now more recent than idle_new
        order: list[Session] = []
        newcomers: list[Session] = []
        for _ in range(4):
            newcomers.append(_established(table))  # makes room, then finishes its handshake
            order.extend(s for s in (new, idle_new, idle_old, *newcomers)
                         if s.closed and s not in order)  # fmt: skip
        # The fourth newcomer evicts the first (idle) rather than the GET reader.
        assert order == [new, idle_new, idle_old, newcomers[0]]
        assert not listening.closed
        assert table.evicted == 4

    run(main)


def test_only_a_session_connected_to_a_call_is_never_evicted() -> None:
    async def main() -> None:
        table = SessionTable(McpLimits(max_sessions=2))
        a, b = _established(table), _established(table)
        for session in (a, b):
            _call_on(session, 1).stream.attach()  # a client reads the call's stream
        with pytest.raises(SessionsFull):
            table.create("2025-11-25")
        reader = b.calls[1].stream.reader
        b.calls[1].stream.detach(reader)  # b's client left; the call runs on
        assert b.busy
        assert not b.protected
        table.create("2025-11-25")
        assert b.closed
        assert b.calls[1].stopped  # ending a session stops its calls
        assert not a.closed

    run(main)


def test_sessions_expire_when_idle_but_not_while_busy() -> None:
    async def main() -> None:
        table = SessionTable(McpLimits(session_idle_timeout=60, new_session_timeout=10))
        idle, busy = _established(table), _established(table)
        new = table.create("2025-11-25")
        busy.readers = 1
        await trio.sleep(11)
        assert table.lookup(new.id) is None  # not established: the short timeout
        await trio.sleep(48)
        assert table.lookup(idle.id) is idle  # used: the clock starts again
        await trio.sleep(61)
        assert table.lookup(idle.id) is None
        assert table.lookup(busy.id) is busy
        assert table.expired == 2

    run(main, autojump=True)


def test_a_detached_call_has_a_deadline_only_while_no_one_reads_it() -> None:
    async def main() -> None:
        table = SessionTable(McpLimits())
        call = _call_on(table.create("2025-11-25"), 7)
        assert call.scope.deadline == trio.current_time() + 30  # set until a reader comes
        call.reader_came()
        assert call.scope.deadline == math.inf
        await trio.sleep(5)
        call.reader_left()
        assert call.scope.deadline == trio.current_time() + 30
        with call.scope:
            await trio.sleep_forever()
        assert call.abandoned
        other = _call_on(table.create("2025-11-25"), 8)
        other.stop()
        with other.scope:
            await trio.sleep_forever()
        assert not other.abandoned

    run(main, autojump=True)


def test_host_and_origin_naming_the_address_the_request_arrived_on_pass() -> None:
    from lab.apps import interface
    from lab.apps.mcp.checks import Reject, check_host, check_origin

    def request(
        host: str, origin: str | None = None, local: str = "127.0.0.5:8080"
    ) -> interface.Request:
        headers = [("host", host), *([("origin", origin)] if origin else [])]
        return interface.make_request("POST", "/mcp", headers, b"", "http/1.1", local=local)

    check_host(request("127.0.0.5:8080"), frozenset())
    check_host(request("[::1]:8080", local="[::1]:8080"), frozenset())
    check_origin(request("127.0.0.5:8080", "http://127.0.0.5:8080"), frozenset())
    for host in ("127.0.0.6:8080", "evil.example"):
        with pytest.raises(Reject) as refused:
            check_host(request(host), frozenset())
        assert refused.value.status == 421
    with pytest.raises(Reject) as refused:
        check_origin(request("127.0.0.5:8080", "http://127.0.0.6:8080"), frozenset())
    assert refused.value.status == 403
    # A request made outside a server has no local address: only the usual names pass.
    with pytest.raises(Reject):
        check_host(request("127.0.0.5:8080", local=""), frozenset())
