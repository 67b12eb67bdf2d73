"""WebSocket endpoints: ``/ws/tokens``, the token stream as WebSocket messages.

Written once against :class:`~lab.apps.interface.ResponseStream` and
:class:`~lab.apps.interface.WebSocket`: the same handler runs over HTTP/1.1 (an Upgrade
answered 101, RFC 6455 §4) and HTTP/2 (an extended CONNECT answered 200, RFC 8441), and
never knows which.
"""

from __future__ import annotations

from typing import Final

import trio

from lab.apps.interface import HTTPError, Request, ResponseStream, WebSocket, WebSocketClosed
from lab.apps.params import (
    DEFAULT_INTERVAL_MS,
    DEFAULT_N,
    MAX_INTERVAL_MS,
    MAX_N,
    MAX_PROMPT_CHARS,
    int_param,
)
from lab.apps.tokens import DONE, tokens_for

__all__ = ["STOP", "ws_tokens"]

# The text message a client sends to stop the stream early.
STOP: Final = "stop"
DEFAULT_PROMPT: Final = "hello"


async def ws_tokens(request: Request, response: ResponseStream) -> None:
    """One text message per token (``tokens_for(prompt, n)``, ``interval_ms`` apart), then
    ``[DONE]``, then a normal close (1000). A text message ``stop`` from the client ends
    the stream early: no more tokens, no ``[DONE]``, a close 1000 whose reason says how
    many tokens were sent. Any other message is ignored.

    A request that is not a WebSocket handshake gets 426 Upgrade Required, naming the
    protocol to upgrade to (RFC 9110 §15.5.22).
    """
    n = int_param(request, "n", DEFAULT_N, 0, MAX_N)
    interval = int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_INTERVAL_MS) / 1000
    prompt = request.query.get("prompt", DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    if request.upgrade != "websocket":
        raise HTTPError(
            426,
            f"{request.path} is a WebSocket endpoint: GET with Upgrade: websocket"
            " (RFC 6455 §4.1), or an HTTP/2 extended CONNECT (RFC 8441 §4)\n",
            [("upgrade", "websocket"), ("connection", "upgrade"), ("sec-websocket-version", "13")],
        )
    ws = await response.accept_websocket()
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_listen_for_stop, ws, stop)
            sent = await _stream_tokens(ws, tokens_for(prompt, n), interval, stop)
            if stop.is_set():
                await ws.close(1000, f"stopped after {sent} of {n} tokens")
            else:
                await ws.send_text(DONE)
                await ws.close(1000)
            nursery.cancel_scope.cancel()
    except* WebSocketClosed:
        pass  # the client closed, or left: nothing more to send


async def _stream_tokens(
    ws: WebSocket, tokens: list[str], interval: float, stop: trio.Event
) -> int:
    """Send ``tokens``, ``interval`` apart, until ``stop``; how many were sent."""
    for i, token in enumerate(tokens):
        if i and interval:
            with trio.move_on_after(interval):
                await stop.wait()
        if stop.is_set():
            return i
        await ws.send_text(token)
    return len(tokens)


async def _listen_for_stop(ws: WebSocket, stop: trio.Event) -> None:
    """Read the client's messages until ``stop`` or the end of the connection."""
    try:
        while True:
            message = await ws.receive()
            if message.type == "text" and message.data == STOP:
                stop.set()
                return
    except WebSocketClosed:
        stop.set()  # nothing more to send to a client that closed
