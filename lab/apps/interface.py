"""The interface every endpoint is written against, where apps import it from.

It is defined beside the servers that implement it (lab.server.interface), so that the
layers import top-down: the servers never import the apps.
"""

from lab.server.interface import (
    AbortResponse,
    Background,
    Handler,
    Headers,
    HTTPError,
    Message,
    NoBackground,
    Request,
    ResponseStream,
    WebSocket,
    WebSocketClosed,
    make_request,
    send_text,
)

__all__ = [
    "AbortResponse",
    "Background",
    "HTTPError",
    "Handler",
    "Headers",
    "Message",
    "NoBackground",
    "Request",
    "ResponseStream",
    "WebSocket",
    "WebSocketClosed",
    "make_request",
    "send_text",
]
