"""Every attack the lab is tested against: what it sends, what stops it, what it gets.

Each attack is bounded in count and time and stops by itself; it returns one outcome per
attacking connection or stream ("HTTP 408", "GOAWAY ENHANCE_YOUR_CALM", "status 413",
"RST_STREAM CANCEL", "closed", "cut", "open"). An attack passes when every outcome is one
it ``allows`` and each outcome it ``needs`` occurs. They run against ``lab serve`` with
:data:`ATTACK_LIMITS` (shorter timeouts than the defaults, so the suite is quick; the
defaults are the same mechanisms with longer waits).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from lab.attacks.wire import (
    h1_request,
    h1_status,
    h2_headers,
    h2_hello,
    h2_outcomes,
    open_conn,
    read_until_close,
)

__all__ = ["ATTACKS", "ATTACK_LIMITS", "Attack"]

# The server's limits while attacked: the default mechanisms with short waits.
ATTACK_LIMITS: Final = (
    "head_timeout=1", "body_timeout=1", "send_timeout=2", "idle_timeout=5",
    "linger_timeout=0.5", "shutdown_grace=1", "max_body_size=32768",
)  # fmt: skip
# The largest response /fixed makes: what a non-reading client asks for.
HUGE: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class Attack:
    name: str
    what: str  # what the attacker does
    stopped_by: str  # the limit(s) that stop it (lab.server.Limits fields, or the rule)
    answer: str  # what the attacker gets, as the README's table says it
    run: Callable[[int], Awaitable[list[str]]]
    allows: frozenset[str]
    needs: frozenset[str]
    rss_bound_mib: int  # the server's peak RSS while attacked stays under this

    def judge(self, outcomes: list[str]) -> list[str]:
        """What is wrong with ``outcomes`` (nothing when the attack was answered right)."""
        wrong = sorted({o for o in outcomes if o not in self.allows})
        missing = sorted(self.needs - set(outcomes))
        return [f"unexpected {o!r}" for o in wrong] + [f"never {o!r}" for o in missing]


async def _each(count: int, one: Callable[[int], Awaitable[list[str]]]) -> list[str]:
    """``one(i)`` for i in range(count), all at once; their outcomes together."""
    results: list[list[str]] = [[] for _ in range(count)]

    async def run(i: int) -> None:
        results[i] = await one(i)

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(run, i)
    return [o for r in results for o in r]


async def _h1_once(port: int, data: bytes) -> list[str]:
    stream = await open_conn(port)
    async with stream:
        await stream.send_all(data)
        return [h1_status(await read_until_close(stream))]


async def _h2_once(port: int, data: bytes, *, wait: float = 20.0) -> list[str]:
    stream = await open_conn(port)
    async with stream:
        # The server may stop reading and close: what it said is still readable.
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(data)
        return h2_outcomes(await read_until_close(stream, wait=wait))


# -- HTTP/1.1 ------------------------------------------------------------------------


async def slowloris_http1(port: int) -> list[str]:
    async def one(i: int) -> list[str]:
        stream = await open_conn(port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
            with trio.move_on_after(20):
                while True:
                    try:
                        await stream.send_all(b"a")
                    except trio.BrokenResourceError:
                        break
                    data = b""
                    with trio.move_on_after(0.3):
                        data = await stream.receive_some(65536)
                    if data:  # the answer has begun: read the rest of it
                        return [h1_status(data + await read_until_close(stream))]
            return ["never answered"]

    return await _each(200, one)


# Requests two parsers could frame differently (RFC 9112 §6.1, §6.3, §5.1, §3.2). obs-fold
# and a bare LF are not here: RFC 9112 §5.2 and §2.2 let a server accept them (h11 does),
# and the lab does.
SMUGGLING: Final = (
    h1_request("/", [("content-length", "5"), ("transfer-encoding", "chunked")], "POST",
               b"0\r\n\r\n"),
    h1_request("/", [("content-length", "5"), ("content-length", "6")], "POST", b"hello!"),
    h1_request("/", [("transfer-encoding", "chunked")], "POST", b"zz\r\nhello\r\n0\r\n\r\n"),
    h1_request("/", [("transfer-encoding", "gzip, chunked")], "POST", b"0\r\n\r\n"),
    b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
)  # fmt: skip


async def smuggling(port: int) -> list[str]:
    return await _each(len(SMUGGLING), lambda i: _h1_once(port, SMUGGLING[i]))


async def oversized_head_http1(port: int) -> list[str]:
    request = h1_request("/", [("x-big", "a" * 64 * 1024)])
    return await _each(20, lambda i: _h1_once(port, request))


async def oversized_body_http1(port: int) -> list[str]:
    body = b"a" * 2 * 1024 * 1024
    request = h1_request("/chat", [("content-length", str(len(body)))], "POST", body)

    async def one(i: int) -> list[str]:
        stream = await open_conn(port)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):  # refused before the end
                await stream.send_all(request)
            return [h1_status(await read_until_close(stream))]

    return await _each(20, one)


async def silent_body_http1(port: int) -> list[str]:
    request = h1_request("/chat", [("content-length", "100")], "POST")
    return await _each(50, lambda i: _h1_once(port, request))


async def non_readers_http1(port: int) -> list[str]:
    async def one(i: int) -> list[str]:
        stream = await open_conn(port)
        async with stream:
            await stream.send_all(h1_request(f"/fixed?size={HUGE}"))
            await trio.sleep(6)  # never read, past the server's send timeout
            got = len(await read_until_close(stream, keep=HUGE + 4096))
            return ["complete" if got > HUGE else "cut"]

    return await _each(50, one)


# -- HTTP/2 --------------------------------------------------------------------------


async def slowloris_preface(port: int) -> list[str]:
    async def one(i: int) -> list[str]:
        stream = await open_conn(port)
        async with stream:
            with trio.move_on_after(20):
                for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n":
                    try:
                        await stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        break
                    with trio.move_on_after(0.3):
                        data = await stream.receive_some(65536)
                        return ["closed" if not data else "answered"]
            return ["never closed"]

    return await _each(100, one)


async def slowloris_h2(port: int) -> list[str]:
    frame = h2_headers(1, "/")

    async def one(i: int) -> list[str]:
        stream = await open_conn(port)
        async with stream:
            await stream.send_all(h2_hello())
            seen = b""
            with trio.move_on_after(20):
                for byte in frame:  # the request's HEADERS frame, a byte per 0.3 s
                    try:
                        await stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        break
                    with trio.move_on_after(0.3):
                        while data := await stream.receive_some(65536):
                            seen += data  # SETTINGS, its ACK ... and then?
                        return h2_outcomes(seen)  # closed: what came before the close
                return ["never closed"]
            return ["never closed"]

    return await _each(100, one)


def _rapid_reset(count: int, first: int = 1) -> bytes:
    frames = b""
    for i in range(count):
        sid = first + 2 * i
        frames += h2_headers(sid, "/tokens?n=50")
        frames += RstStreamFrame(sid, error_code=8).serialize()  # CANCEL
    return frames


async def rapid_reset_one(port: int) -> list[str]:
    return await _h2_once(port, h2_hello() + _rapid_reset(5000))


async def rapid_reset_many(port: int) -> list[str]:
    # Each connection stays under its own budget (1,000 a second); together they pass
    # the per-address budget (2,000 a second).
    data = h2_hello() + _rapid_reset(900)
    return await _each(10, lambda i: _h2_once(port, data))


def _flood(frame: bytes, count: int = 5000) -> Callable[[int], Awaitable[list[str]]]:
    async def attack(port: int) -> list[str]:
        return await _h2_once(port, h2_hello() + frame * count)

    return attack


_UNKNOWN_FRAME: Final = b"\x00\x00\x04\xfa\x00\x00\x00\x00\x00abcd"  # type 0xfa, 4 bytes
_EMPTY_DATA_ON_1: Final = h2_headers(1, "/chat", end_stream=False, method="POST")


async def empty_data_flood(port: int) -> list[str]:
    empty = DataFrame(1).serialize()
    return await _h2_once(port, h2_hello() + _EMPTY_DATA_ON_1 + empty * 5000)


async def continuation_flood(port: int) -> list[str]:
    first = h2_headers(1, "/", end_headers=False)
    one = ContinuationFrame(1, b"\x00").serialize()  # never END_HEADERS
    return await _h2_once(port, h2_hello() + first + one * 10_000)


async def hpack_bomb(port: int) -> list[str]:
    # One 4,000-byte field into the dynamic table (literal with incremental indexing,
    # RFC 7541 §6.2.1), then 100 one-byte references to it: a 4 KiB block that decodes
    # to 400 KB of header list.
    name, value = b"x-bomb", b"a" * 4000
    literal = b"\x40" + bytes([len(name)]) + name + b"\x7f" + _hpack_int(len(value) - 127) + value
    block = literal + b"\xbe" * 100  # index 62: the newest dynamic entry
    pseudo = h2_headers(1, "/")[9:]  # the request's own fields, then the bomb
    frame = HeadersFrame(1, pseudo + block)
    frame.flags.add("END_STREAM")
    frame.flags.add("END_HEADERS")
    return await _h2_once(port, h2_hello() + frame.serialize())


def _hpack_int(value: int) -> bytes:
    """The continuation bytes of an HPACK integer past its prefix (RFC 7541 §5.1)."""
    out = b""
    while value >= 128:
        out += bytes([value % 128 + 128])
        value //= 128
    return out + bytes([value])


async def oversized_head_h2(port: int) -> list[str]:
    big = h2_headers(1, "/", extra=[("x-big", "a" * 20_000)], end_headers=False)
    length = int.from_bytes(big[:3], "big")
    block = big[9 : 9 + length]
    first = HeadersFrame(1, block[:16_000])
    first.flags.add("END_STREAM")
    rest = ContinuationFrame(1, block[16_000:])
    rest.flags.add("END_HEADERS")
    then = h2_headers(3, "/fixed?size=2")  # the connection goes on
    return await _h2_once(port, h2_hello() + first.serialize() + rest.serialize() + then, wait=3)


async def oversized_body_h2(port: int) -> list[str]:
    body = b"a" * 60_000  # within the initial window, over max_body_size (32 KiB here)
    data = h2_hello() + h2_headers(1, "/chat", end_stream=False, method="POST")
    for start in range(0, len(body), 16_000):
        frame = DataFrame(1, body[start : start + 16_000])
        if start + 16_000 >= len(body):
            frame.flags.add("END_STREAM")
        data += frame.serialize()
    return await _h2_once(port, data, wait=3)


async def lying_length(port: int) -> list[str]:
    header = (16 * 1024 * 1024 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    return await _h2_once(port, h2_hello() + header, wait=5)


async def zero_window(port: int) -> list[str]:
    data = h2_hello({SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    data += b"".join(h2_headers(1 + 2 * i, f"/fixed?size={HUGE}") for i in range(100))
    return await _h2_once(port, data, wait=8)


async def stream_limit(port: int) -> list[str]:
    idle = "/events?n=2&interval_ms=600000&heartbeat_ms=600000"
    data = h2_hello() + b"".join(h2_headers(1 + 2 * i, idle) for i in range(300))
    return await _h2_once(port, data, wait=3)


async def silent_body_h2(port: int) -> list[str]:
    data = h2_hello() + b"".join(
        h2_headers(1 + 2 * i, "/chat", end_stream=False, method="POST") for i in range(50)
    )
    return await _h2_once(port, data, wait=4)


# -- MCP -----------------------------------------------------------------------------


async def mcp_sessions(port: int) -> list[str]:
    body = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "attacker", "version": "0"}},
    }).encode()  # fmt: skip
    headers = [("accept", "application/json, text/event-stream"),
               ("content-type", "application/json"), ("content-length", str(len(body))),
               ("connection", "close")]  # fmt: skip
    request = h1_request("/mcp", headers, "POST", body)
    outcomes: list[str] = []
    for _ in range(300):  # one after another: each takes a slot in the session table
        outcomes += await _h1_once(port, request)
    legit = await _h1_once(port, request)  # a newcomer still gets a session
    return [*outcomes, f"newcomer {legit[0]}"]


# -- many idle streams ---------------------------------------------------------------


IDLE_STREAMS: Final = 10_000


async def idle_streams(port: int) -> list[str]:
    """10,000 SSE streams open at once, each read to its first event, then closed."""
    target = "/events?n=2&interval_ms=600000&heartbeat_ms=600000&stream=idle"
    request = h1_request(target)
    opened: list[trio.SocketStream] = []
    limit = trio.CapacityLimiter(200)  # connecting at most this many at once

    async def one(i: int) -> list[str]:
        async with limit:
            stream = await open_conn(port)
            opened.append(stream)
            await stream.send_all(request)
            seen = b""
            with trio.move_on_after(30):
                while b"id: 1\n" not in seen:
                    data = await stream.receive_some(65536)
                    if not data:
                        return ["closed"]
                    seen += data
                return ["open"]
            return ["no first event"]

    try:
        return await _each(IDLE_STREAMS, one)
    finally:
        for stream in opened:
            await stream.aclose()


def _a(  # noqa: PLR0917 - a table row
    name: str, what: str, stopped_by: str, answer: str,
    run: Callable[[int], Awaitable[list[str]]], allows: set[str], needs: set[str] | None = None,
    rss: int = 160,
) -> Attack:  # fmt: skip
    return Attack(name, what, stopped_by, answer, run, frozenset(allows),
                  frozenset(allows if needs is None else needs), rss)  # fmt: skip


EYC: Final = "GOAWAY ENHANCE_YOUR_CALM"
ATTACKS: Final = (
    _a("slowloris-http1", "200 connections dribble a request head, a byte per 0.3 s",
       "head_timeout (one deadline for the whole head)", "408, then close",
       slowloris_http1, {"HTTP 408"}),
    _a("slowloris-preface", "100 connections dribble the HTTP/2 client preface",
       "head_timeout (counted from the first byte)", "close, no HTTP/1.1 reply",
       slowloris_preface, {"closed"}),
    _a("slowloris-h2", "100 connections dribble a HEADERS frame, a byte per 0.3 s",
       "head_timeout (for a frame or header block, from its first byte)", "GOAWAY(NO_ERROR), "
       "then close", slowloris_h2, {"GOAWAY NO_ERROR"}),
    _a("smuggling", "CL+TE, two Content-Lengths, a bad chunk size, an unknown coding, "
       "space before the colon, a negative length, two Hosts, no Host",
       "h11's parser; CL+TE refused by the lab (RFC 9112 §6.1)", "400 (501 for an unknown "
       "coding), then close", smuggling, {"HTTP 400", "HTTP 501"}, {"HTTP 400"}),
    _a("oversized-head-http1", "20 requests with a 64 KiB header", "max_head_size",
       "431, then close", oversized_head_http1, {"HTTP 431"}),
    _a("oversized-body-http1", "20 requests with a 2 MiB body", "max_body_size",
       "413, then close", oversized_body_http1, {"HTTP 413"}),
    _a("silent-body-http1", "50 requests announce a body and send none", "body_timeout",
       "408, then close", silent_body_http1, {"HTTP 408"}),
    _a("non-readers-http1", "50 clients ask for 16 MiB and never read", "send_timeout",
       "the response is cut off", non_readers_http1, {"cut"}, rss=200),
    _a("rapid-reset", "5,000 HEADERS + RST_STREAM pairs on one connection",
       "h2_control_frames_per_second", "GOAWAY(ENHANCE_YOUR_CALM)", rapid_reset_one,
       {EYC, "status 200"}, {EYC}),
    _a("rapid-reset-many", "10 connections x 900 HEADERS + RST_STREAM from one address",
       "h2_control_frames_per_address_per_second", "GOAWAY(ENHANCE_YOUR_CALM)",
       rapid_reset_many, {EYC, "status 200", "closed", "GOAWAY NO_ERROR"}, {EYC}),
    _a("ping-flood", "5,000 PINGs", "h2_control_frames_per_second",
       "GOAWAY(ENHANCE_YOUR_CALM)", _flood(PingFrame(0).serialize()), {EYC}),
    _a("settings-flood", "5,000 SETTINGS", "h2_control_frames_per_second",
       "GOAWAY(ENHANCE_YOUR_CALM)", _flood(SettingsFrame(0).serialize()), {EYC}),
    _a("window-update-flood", "5,000 WINDOW_UPDATEs", "h2_control_frames_per_second",
       "GOAWAY(ENHANCE_YOUR_CALM)", _flood(WindowUpdateFrame(0, window_increment=1).serialize()),
       {EYC}),
    _a("priority-flood", "5,000 PRIORITY frames", "h2_control_frames_per_second",
       "GOAWAY(ENHANCE_YOUR_CALM)", _flood(PriorityFrame(1, depends_on=3).serialize()),
       {EYC}),
    _a("unknown-frame-flood", "5,000 frames of an unknown type", "h2_control_frames_per_second",
       "GOAWAY(ENHANCE_YOUR_CALM)", _flood(_UNKNOWN_FRAME), {EYC}),
    _a("empty-data-flood", "5,000 empty DATA frames on one stream",
       "h2_control_frames_per_second", "GOAWAY(ENHANCE_YOUR_CALM)", empty_data_flood, {EYC}),
    _a("continuation-flood", "10,000 CONTINUATION frames without END_HEADERS",
       "h2's CONTINUATION backlog", "GOAWAY(PROTOCOL_ERROR)", continuation_flood,
       {"GOAWAY PROTOCOL_ERROR", EYC}, {"GOAWAY PROTOCOL_ERROR"}),
    _a("hpack-bomb", "a 4 KiB header block that decodes to 400 KB",
       "h2_header_list_hard_cap", "GOAWAY(ENHANCE_YOUR_CALM)", hpack_bomb, {EYC}),
    _a("oversized-head-h2", "a 20 KB header field", "max_head_size (advertised as "
       "SETTINGS_MAX_HEADER_LIST_SIZE)", "431 on that stream; the connection goes on",
       oversized_head_h2, {"status 431", "status 200", "GOAWAY NO_ERROR"},
       {"status 431", "status 200"}),
    _a("oversized-body-h2", "a 60 KB body where 32 KiB is the limit", "max_body_size",
       "413 (then RST_STREAM(NO_ERROR) if the body is still coming)", oversized_body_h2,
       {"status 413", "RST_STREAM NO_ERROR", "GOAWAY NO_ERROR"}, {"status 413"}),
    _a("lying-length", "a frame header announcing 16 MiB", "SETTINGS_MAX_FRAME_SIZE, "
       "checked on the 9-byte header", "GOAWAY(FRAME_SIZE_ERROR)", lying_length,
       {"GOAWAY FRAME_SIZE_ERROR"}),
    _a("zero-window", "100 streams of 16 MiB with a window of 0", "send_timeout",
       "RST_STREAM(CANCEL) per stream", zero_window,
       {"status 200", "RST_STREAM CANCEL", "GOAWAY NO_ERROR"},
       {"status 200", "RST_STREAM CANCEL"}),
    _a("stream-limit", "300 streams at once on one connection", "h2_max_concurrent_streams",
       "RST_STREAM(REFUSED_STREAM) past 100", stream_limit,
       {"status 200", "RST_STREAM REFUSED_STREAM", "GOAWAY NO_ERROR"},
       {"status 200", "RST_STREAM REFUSED_STREAM"}),
    _a("silent-body-h2", "50 streams announce a body and send none", "body_timeout",
       "408, then RST_STREAM(NO_ERROR)", silent_body_h2,
       {"status 408", "RST_STREAM NO_ERROR", "GOAWAY NO_ERROR"},
       {"status 408", "RST_STREAM NO_ERROR"}),
    _a("mcp-sessions", "300 MCP initialize requests, one after another",
       "McpLimits.max_sessions and its eviction order", "a session or 503; a newcomer still "
       "gets one", mcp_sessions, {"HTTP 200", "HTTP 503", "newcomer HTTP 200"},
       {"HTTP 200", "newcomer HTTP 200"}),
    _a("idle-streams", f"{IDLE_STREAMS:,} idle SSE streams at once", "max_connections",
       "served: each stream costs memory, not CPU", idle_streams, {"open"}, rss=700),
)  # fmt: skip
