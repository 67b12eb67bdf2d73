"""The apps' costs are bounded by what they send, never by what a client asks for.

/fixed holds one piece of its body at a time; /events makes each event in constant work,
whatever id it resumes after; POST /chat refuses JSON it cannot parse safely with a 400.
Costs are counted (token computations, bytes per send, traced allocations), never timed.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Sequence

import h11
import pytest
import trio

import lab.apps.sse as sse_module
import lab.apps.tokens as tokens_module
from lab.apps import make_request
from lab.apps.endpoints import FIXED_PIECE, MAX_JSON_INT_DIGITS, fixed
from lab.apps.params import MAX_FIXED_SIZE, MAX_N
from lab.apps.sse import MAX_EVENT_ID, EventLog, events, parse_last_event_id
from lab.apps.tokens import token_at, tokens_for
from lab.wire.sse import Event, parse
from tests.server.h2client import H2Client
from tests.server.helpers import H11Client, lab_server, run


class FakeResponse:
    """A ResponseStream that keeps the head, the size of every send and (optionally) the
    body, so that a handler can be called directly."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.sizes: list[int] = []
        self.body = bytearray()
        self.ended = False

    async def start(self, status: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.status = status
        self.headers = list(headers)

    async def send(self, data: bytes) -> None:
        self.sizes.append(len(data))
        if self.keep:
            self.body += data

    async def end(self, trailers: Sequence[tuple[str, str]] = ()) -> None:
        self.ended = True


class TokenCounter:
    """Counts the tokens the token source computes; past ``budget`` it fails the handler,
    so that a regression to work proportional to an event id fails fast instead of
    exhausting memory. In force for every test here."""

    def __init__(self, budget: int) -> None:
        self.calls = 0
        self.budget = budget


@pytest.fixture(autouse=True)
def tokens_made(monkeypatch: pytest.MonkeyPatch) -> TokenCounter:
    counter = TokenCounter(budget=10 * MAX_N)
    real = tokens_module._token

    def counting(seed: bytes, i: int) -> str:
        counter.calls += 1
        if counter.calls > counter.budget:
            raise AssertionError(f"more than {counter.budget} tokens computed")
        return real(seed, i)

    monkeypatch.setattr(tokens_module, "_token", counting)
    return counter


@pytest.fixture(autouse=True)
def fresh_event_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse_module, "EVENT_LOG", EventLog())


def old_fixed_body(size: int) -> bytes:
    """The /fixed body as it was built before it was sent in pieces."""
    return (b"streamlab " * (size // len(b"streamlab ") + 1))[:size]


def h11_get(target: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[int, bytes]:
    """Status and body of one GET to a fresh lab server over HTTP/1.1."""

    async def main() -> tuple[int, bytes]:
        async with lab_server() as server:
            client = await H11Client.connect(server)
            fields = [(b"host", b"lab"), *headers]
            await client.send(
                h11.Request(method="GET", target=target, headers=fields), h11.EndOfMessage()
            )
            head, data, _ = await client.response()
            return head.status_code, b"".join(d.data for d in data)

    result: tuple[int, bytes] = run(main)
    return result


# -- /fixed: one piece at a time ---------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 9, 10, 11, FIXED_PIECE - 1, FIXED_PIECE, FIXED_PIECE + 1, 3 * FIXED_PIECE + 7],
)
def test_fixed_sends_pieces_of_at_most_fixed_piece_bytes_of_the_same_body(size: int) -> None:
    request = make_request("GET", f"/fixed?size={size}", [], b"", "http/1.1")
    response = FakeResponse()
    trio.run(fixed, request, response)
    assert response.status == 200
    assert ("content-length", str(size)) in response.headers
    assert bytes(response.body) == old_fixed_body(size)
    assert all(0 < n <= FIXED_PIECE for n in response.sizes)
    assert len(response.sizes) == -(-size // FIXED_PIECE)  # ceil: full pieces but the last
    assert response.ended


def test_fixed_holds_one_piece_not_the_whole_body() -> None:
    request = make_request("GET", f"/fixed?size={MAX_FIXED_SIZE}", [], b"", "http/1.1")
    response = FakeResponse(keep=False)

    async def main() -> int:
        tracemalloc.start()
        try:
            await fixed(request, response)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak = trio.run(main)
    assert sum(response.sizes) == MAX_FIXED_SIZE
    # A few pieces of slack for the interpreter; the whole body would be 1,024 pieces.
    assert peak < 4 * FIXED_PIECE, peak


def test_fixed_over_the_wire_is_the_same_bytes_over_http1_and_http2() -> None:
    size = 5 * FIXED_PIECE + 3  # several pieces, and more than HTTP/2's initial window

    status, body = h11_get(f"/fixed?size={size}")
    assert status == 200
    assert body == old_fixed_body(size)

    async def over_h2() -> None:
        async with lab_server() as server:
            client = await H2Client.connect(server)
            response = await client.get(f"/fixed?size={size}")
            assert response.status == 200
            assert response.headers["content-length"] == str(size)
            assert response.body == old_fixed_body(size)

    run(over_h2)


# -- the token source --------------------------------------------------------------------


def test_token_at_is_the_token_tokens_for_makes_at_that_index() -> None:
    words = tokens_for("where", 2000)
    assert [token_at("where", i) for i in range(2000)] == words
    with pytest.raises(ValueError, match="token index"):
        token_at("where", -1)


def test_tokens_for_is_linear(tokens_made: TokenCounter) -> None:
    assert len(tokens_for("count", MAX_N)) == MAX_N
    assert tokens_made.calls == MAX_N


# -- /events: each event in constant work ------------------------------------------------


def sse_events(body: bytes) -> list[Event]:
    return [e for e in parse(body) if e.type == "message"]


def test_a_stream_of_max_n_events_makes_one_token_per_event(tokens_made: TokenCounter) -> None:
    status, body = h11_get(f"/events?n={MAX_N}&interval_ms=0&stream=linear")
    assert status == 200
    got = sse_events(body)
    assert [int(e.last_event_id) for e in got] == list(range(1, MAX_N + 1))
    assert tokens_made.calls == MAX_N  # one token per event


def test_resuming_makes_the_same_events_a_fresh_stream_made_at_those_ids(
    tokens_made: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, fresh = h11_get(f"/events?n={MAX_N}&interval_ms=0&stream=same")
    by_id = {e.last_event_id: e.data for e in sse_events(fresh)}
    # A new log, so that the resumed events are made again rather than replayed.
    monkeypatch.setattr(sse_module, "EVENT_LOG", EventLog())
    tokens_made.calls = 0
    _, resumed = h11_get(
        "/events?n=4&interval_ms=0&stream=same", [(b"last-event-id", b"%d" % (MAX_N - 4))]
    )
    got = sse_events(resumed)
    assert [e.last_event_id for e in got] == [str(i) for i in range(MAX_N - 3, MAX_N + 1)]
    assert [e.data for e in got] == [by_id[e.last_event_id] for e in got]
    assert tokens_made.calls == 4


def test_resuming_after_id_10_to_the_15_costs_what_it_sends(tokens_made: TokenCounter) -> None:
    last = 10**15
    status, body = h11_get(
        "/events?n=3&interval_ms=0&stream=far", [(b"last-event-id", str(last).encode())]
    )
    assert tokens_made.calls == 3  # one per event sent, none for the 10**15 before
    assert status == 200
    got = sse_events(body)
    assert [int(e.last_event_id) for e in got] == [last + 1, last + 2, last + 3]
    for event in got:
        seq = int(event.last_event_id)
        data = json.loads(event.data)
        assert data == {"seq": seq, "stream": "far", "word": token_at("far", seq - 1).strip()}


def test_resuming_after_id_10_to_the_15_allocates_little(tokens_made: TokenCounter) -> None:
    request = make_request(
        "GET", "/events?n=3&interval_ms=0&stream=mem", [("last-event-id", str(10**15))], b"", "h2"
    )
    response = FakeResponse()

    async def main() -> int:
        tracemalloc.start()
        try:
            await events(request, response)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak = trio.run(main)
    assert [e.last_event_id for e in sse_events(bytes(response.body))] == [
        str(10**15 + i) for i in (1, 2, 3)
    ]
    # The channel, its tasks and three small events: tens of KiB, whatever the id.
    assert peak < 256 * 1024, peak


@pytest.mark.parametrize(
    ("value", "comment"),
    [
        (b"abc", b"is not one of ours"),
        (b"", b"is not one of ours"),
        (b"-1", b"is not one of ours"),
        (b"1.5", b"is not one of ours"),
        (b"\xb2", b"is not one of ours"),  # latin-1 superscript two: isdigit(), not an int
        (b"\xd9\xa1", b"is not one of ours"),  # bytes of an Arabic-Indic digit
        (str(MAX_EVENT_ID + 1).encode(), b"is beyond the last event id"),
        (b"9" * 10_000, b"is beyond the last event id"),  # past int()'s default digit limit
    ],
)
def test_a_malformed_or_too_large_last_event_id_starts_over_with_a_comment(
    value: bytes, comment: bytes, tokens_made: TokenCounter
) -> None:
    status, body = h11_get("/events?n=2&interval_ms=0&stream=odd", [(b"last-event-id", value)])
    assert status == 200
    note = body.split(b"\n: Last-Event-ID ", 1)[1].split(b"\n", 1)[0]
    assert comment in note
    assert note.endswith(b"; from the start")
    assert [e.last_event_id for e in sse_events(body)] == ["1", "2"]
    assert tokens_made.calls == 2


def test_parse_last_event_id() -> None:
    assert parse_last_event_id(None) == (0, None)
    assert parse_last_event_id("0") == (0, None)
    assert parse_last_event_id("0007") == (7, None)
    assert parse_last_event_id(str(MAX_EVENT_ID)) == (MAX_EVENT_ID, None)
    assert parse_last_event_id("0" * 100 + "5") == (5, None)
    last, note = parse_last_event_id("1" * 100_000)
    assert last == 0
    assert note is not None
    assert len(note) < 200  # the comment quotes a bounded prefix of the value


def test_the_last_event_id_ends_the_stream() -> None:
    status, body = h11_get(
        "/events?n=5&interval_ms=0&stream=end", [(b"last-event-id", b"%d" % (MAX_EVENT_ID - 1))]
    )
    assert status == 200
    assert [e.last_event_id for e in sse_events(body)] == [str(MAX_EVENT_ID)]
    status, body = h11_get(
        "/events?n=5&interval_ms=0&stream=end", [(b"last-event-id", b"%d" % MAX_EVENT_ID)]
    )
    assert (status, body) == (204, b"")


def test_a_far_resume_does_not_punch_a_gap_in_the_log_for_others() -> None:
    async def main() -> None:
        async with lab_server() as server:

            async def get(last: int | None) -> bytes:
                client = await H11Client.connect(server)
                fields = [(b"host", b"lab")]
                if last is not None:
                    fields.append((b"last-event-id", str(last).encode()))
                await client.send(
                    h11.Request(
                        method="GET", target="/events?n=3&interval_ms=0&stream=shared",
                        headers=fields,
                    ),
                    h11.EndOfMessage(),
                )  # fmt: skip
                _, data, _ = await client.response()
                return b"".join(d.data for d in data)

            await get(10**15)  # someone claims to be far ahead, before anyone else came
            first = await get(None)  # events 1..3
            body = await get(2)
            assert b"no longer in the log" not in body
            assert [e.last_event_id for e in sse_events(body)] == ["3", "4", "5"]
            # Event 3 is the logged one, byte for byte.
            assert first[first.index(b"id: 3\n") :] in body

    run(main)


def test_event_log_keeps_only_the_successor_of_its_newest() -> None:
    log = EventLog(size=4)
    log.record("s", 5, b"e5")  # not the first event of the stream
    assert log.newest("s") == 0
    for i in (1, 2, 10**15, 3):
        log.record("s", i, b"e%d" % i)
    assert log.since("s", 0) == ([(1, b"e1"), (2, b"e2"), (3, b"e3")], None)


# -- /progress and POST /chat as SSE: linear too ------------------------------------------


def test_progress_makes_each_token_once(tokens_made: TokenCounter) -> None:
    status, body = h11_get(f"/progress?n={MAX_N}&interval_ms=0")
    assert status == 200
    result = parse(body)[-1]
    assert result.type == "result"
    assert len(json.loads(result.data)["words"]) == MAX_N
    assert tokens_made.calls == MAX_N


async def h11_post_chat(
    server_port: int, body: bytes, accept: str = "text/event-stream"
) -> tuple[int, bytes]:
    client = H11Client(await trio.open_tcp_stream("127.0.0.1", server_port))
    try:
        await client.send(
            h11.Request(method="POST", target="/chat", headers=[
                ("host", "lab"), ("accept", accept), ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]),
            h11.Data(data=body), h11.EndOfMessage(),
        )  # fmt: skip
        head, data, _ = await client.response()
        return head.status_code, b"".join(d.data for d in data)
    finally:
        await client.stream.aclose()


def test_chat_as_sse_makes_each_token_once(tokens_made: TokenCounter) -> None:
    async def main() -> None:
        async with lab_server() as server:
            body = json.dumps({"prompt": "lin", "n": MAX_N, "interval_ms": 0}).encode()
            status, data = await h11_post_chat(server.port, body)
            assert status == 200
            got = parse(data)
            assert [json.loads(e.data)["token"] for e in got[:-1]] == tokens_for("lin", MAX_N)

    run(main)
    # MAX_N for the reply, MAX_N more for the reference list the test compared it with.
    assert tokens_made.calls == 2 * MAX_N


# -- POST /chat: JSON that cannot be parsed safely is a 400 -------------------------------

# Bodies within one HTTP/2 frame (16,384 bytes) so that the h2 client sends each whole.
HOSTILE_BODIES = [
    pytest.param(b"[" * 10_000, b"nested too deeply", id="deep-arrays"),
    pytest.param(b'{"a":' * 3_000, b"nested too deeply", id="deep-objects"),
    pytest.param(b'{"n": ' + b"1" * 10_000 + b"}", b"integer longer than", id="long-int"),
    pytest.param(
        b'{"prompt": "x", "extra": -' + b"9" * 5_000 + b"}", b"integer longer than", id="neg"
    ),
    pytest.param(
        b'{"n": ' + b"1" * (MAX_JSON_INT_DIGITS + 1) + b"}", b"integer longer than", id="edge"
    ),
]


@pytest.mark.parametrize(("body", "says"), HOSTILE_BODIES)
def test_hostile_json_is_a_400_over_http1(body: bytes, says: bytes) -> None:
    async def main() -> None:
        async with lab_server() as server:
            status, text = await h11_post_chat(server.port, body)
            assert status == 400
            assert says in text
            # The connection and the server are fine: the next request is answered.
            ok = json.dumps({"prompt": "p", "n": 2, "interval_ms": 0}).encode()
            status, _ = await h11_post_chat(server.port, ok, accept="application/json")
            assert status == 200

    run(main)


@pytest.mark.parametrize(("body", "says"), HOSTILE_BODIES)
def test_hostile_json_is_a_400_over_http2(body: bytes, says: bytes) -> None:
    async def main() -> None:
        async with lab_server() as server:
            client = await H2Client.connect(server)
            headers = [("accept", "text/event-stream"), ("content-type", "application/json")]
            sid = await client.request("POST", "/chat", headers, body)
            (response,) = await client.until_done(sid)
            assert response.status == 400
            assert says in response.body

    run(main)


def test_a_huge_json_number_over_http1_is_a_400() -> None:
    async def main() -> None:
        async with lab_server() as server:
            status, text = await h11_post_chat(server.port, b'{"n": ' + b"7" * 100_000 + b"}")
            assert status == 400
            assert b"integer longer than" in text
            status, text = await h11_post_chat(server.port, b"[" * 100_000)
            assert status == 400
            assert text == b"request body is JSON nested too deeply to parse\n"

    run(main)


def test_the_longest_accepted_integer_is_answered_with_the_range() -> None:
    async def main() -> None:
        async with lab_server() as server:
            body = b'{"n": ' + b"9" * MAX_JSON_INT_DIGITS + b"}"
            status, text = await h11_post_chat(server.port, body)
            assert status == 400
            assert text == f"n must be an integer in 0..{MAX_N}\n".encode()

    run(main)
