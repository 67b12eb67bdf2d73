"""The baseline: a plain trio + h11 server with nothing else in the way. One task per
connection, one ``send_all`` per token, keep-alive, and no reading while a response
streams (so a client that left is noticed at the next send that fails).

``python -m lab.peers.trio_h11 PORT``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

from lab.peers.common import STATS, knobs, sse_end, sse_event, stats_json, text_end

__all__ = ["main", "serve"]

RECEIVE_SIZE: Final = 64 * 1024
# A request head must arrive within this long, or the connection is dropped.
HEAD_TIMEOUT: Final = 30.0


async def _stream(
    stream: trio.SocketStream,
    conn: h11.Connection,
    query: dict[str, str],
    *,
    content_type: str,
    each: Callable[[str], bytes],
    last: bytes,
) -> None:
    k = knobs(query)
    headers = [("content-type", content_type), ("cache-control", "no-store")]
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
    STATS.begin()
    complete = False
    try:
        for i, token in enumerate(k.tokens):
            if i and k.interval:
                await trio.sleep(k.interval)
            STATS.produced += 1
            await stream.send_all(conn.send(h11.Data(data=each(token))))
        await stream.send_all(conn.send(h11.Data(data=last)) + conn.send(h11.EndOfMessage()))
        complete = True
    finally:
        STATS.end(complete)


async def _respond(stream: trio.SocketStream, conn: h11.Connection, target: str) -> None:
    url = urlsplit(target)
    query = dict(parse_qsl(url.query))
    if url.path == "/tokens":
        await _stream(
            stream, conn, query, content_type="text/plain", each=str.encode, last=text_end()
        )
        return
    if url.path == "/sse":
        await _stream(
            stream, conn, query, content_type="text/event-stream", each=sse_event, last=sse_end()
        )
        return
    status, body, kind = (200, stats_json(), "application/json")
    if url.path != "/stats":
        status, body, kind = (404, b"not found\n", "text/plain")
    headers = [("content-type", kind), ("content-length", str(len(body)))]
    data = conn.send(h11.Response(status_code=status, headers=headers))
    await stream.send_all(data + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))


async def _connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event: object = conn.next_event()
            if event is h11.NEED_DATA:
                with trio.move_on_after(HEAD_TIMEOUT) as scope:
                    data = await stream.receive_some(RECEIVE_SIZE)
                if scope.cancelled_caught:
                    return
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                await _respond(stream, conn, event.target.decode("latin-1"))
                while conn.their_state is not h11.DONE:
                    if conn.next_event() is h11.NEED_DATA:
                        return  # no request bodies here
                if conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            else:
                return  # the client closed, or something this server does not do
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return
    finally:
        await stream.aclose()


async def serve(port: int) -> None:
    await trio.serve_tcp(_connection, port, host="127.0.0.1")


def main(argv: list[str]) -> None:
    trio.run(partial(serve, int(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
