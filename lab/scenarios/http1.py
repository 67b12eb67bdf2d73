"""HTTP/1.1 scenarios: Content-Length against chunked coding, token streams, trailers,
keep-alive and pipelining, a client that hangs up, and a request-smuggling shape refused.
"""

from __future__ import annotations

import json

import trio

from lab.capture.tap import Recorder
from lab.client.http1 import open_connection
from lab.scenarios.runner import Scenario
from lab.server import Server

__all__ = ["HTTP1_SCENARIOS"]


async def _fixed(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/fixed?size=64")


async def _chunked(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/tokens?n=5&interval_ms=0&prompt=fixed")


async def _token_stream(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/tokens?n=6&interval_ms=40&prompt=stream")


async def _ndjson_chat(server: Server, rec: Recorder) -> None:
    body = json.dumps({"prompt": "chat", "n": 4, "interval_ms": 20}).encode()
    headers = [("content-type", "application/json"), ("accept", "application/x-ndjson")]
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("POST", "/chat", headers, body)


async def _trailers(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/trailers?n=4&interval_ms=10&prompt=sum", [("te", "trailers")])


async def _keep_alive(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.request("GET", "/fixed?size=16")
        await conn.request("GET", "/tokens?n=3&interval_ms=10&prompt=again")


async def _pipelined(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        host = f"{server.host}:{server.port}"
        # Both requests in one write, before any response: HTTP/1.1 pipelining.
        await conn.send_raw(
            f"GET /tokens?n=3&interval_ms=20&prompt=first HTTP/1.1\r\nhost: {host}\r\n\r\n"
            f"GET /fixed?size=8 HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode()
        )
        await conn.read_until_close()


async def _client_abort(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        await conn.send_request("GET", "/tokens?n=50&interval_ms=50&prompt=abort")
        # Three pieces of body, then hang up: the server must cancel the generator.
        await conn.read_response(stop_after_pieces=3)
    # The server notices the EOF and cancels the handler; wait for it so the capture's
    # story ("the server stopped") is true when the scenario returns.
    with trio.fail_after(5):
        await server.wait_no_connections()


async def _cl_te_rejected(server: Server, rec: Recorder) -> None:
    async with open_connection(server.host, server.port, recorder=rec) as conn:
        host = f"{server.host}:{server.port}"
        await conn.send_raw(
            f"POST /chat HTTP/1.1\r\nhost: {host}\r\ncontent-length: 4\r\n"
            "transfer-encoding: chunked\r\n\r\n0\r\n\r\n".encode()
        )
        await conn.read_until_close()


HTTP1_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "fixed-length", "GET /fixed: the whole body at once, framed by Content-Length",
        "The non-streaming baseline. The response head says Content-Length: 64, and the "
        "body is exactly that many bytes with nothing around it: the client knows where "
        "the body ends before it reads it, so the server had to have all of it first.",
        _fixed,
    ),
    Scenario(
        "chunked", "GET /tokens with no delay: the same kind of body in chunked coding",
        "No Content-Length: Transfer-Encoding: chunked instead. Each token is a chunk: a "
        "size line in hex, CRLF, the data, CRLF. The 0-size last-chunk and an empty line "
        "end the body. The server could start before it knew the length.",
        _chunked,
    ),
    Scenario(
        "token-stream", "GET /tokens with 40 ms between tokens: chunks arriving over time",
        "The same framing with a pause between tokens, as a model would produce them. "
        "Watch the timestamps: each chunk crosses the socket on its own, roughly one "
        "interval after the previous one.",
        _token_stream,
    ),
    Scenario(
        "ndjson-chat", "POST /chat with Accept: application/x-ndjson: one JSON line per chunk",
        "A JSON request body (Content-Length) and a streamed reply where every chunk is one "
        "newline-terminated JSON object: the framing many AI APIs use besides SSE.",
        _ndjson_chat,
    ),
    Scenario(
        "trailers", "GET /trailers: fields sent after the body (count and SHA-256)",
        "The head announces Trailer: x-token-count, x-body-sha256. After the last-chunk "
        "come two field lines, then the empty line: values the server only knew once the "
        "body was sent.",
        _trailers,
    ),
    Scenario(
        "keep-alive", "two requests, one after the other, on one connection",
        "One TCP connection (one connect, one close) carries two request/response pairs. "
        "The second request goes out only after the first response's end was read.",
        _keep_alive,
    ),
    Scenario(
        "pipelined", "two requests in one write before any response; answered in order",
        "Both requests leave in one send. The server answers the first (a slow stream) "
        "completely before the second: HTTP/1.1 responses come back in request order, "
        "so a slow response holds up every one behind it (head-of-line blocking).",
        _pipelined,
    ),
    Scenario(
        "client-abort", "the client hangs up after three chunks of a long stream",
        "The client closes the connection mid-response. The server notices the close and "
        "cancels the token generator: no more chunks are produced for nobody. The "
        "response has no last-chunk, so it is visibly incomplete.",
        _client_abort,
    ),
    Scenario(
        "cl-te-rejected", "Content-Length and Transfer-Encoding together: 400 and close",
        "A request carrying both Content-Length and Transfer-Encoding is the shape of a "
        "request-smuggling attack (RFC 9112 §6.1). h11 alone would accept it and keep the "
        "connection; the lab's server answers 400 and closes.",
        _cl_te_rejected,
    ),
)  # fmt: skip
