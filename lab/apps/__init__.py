"""The endpoints, written once against a protocol-neutral request/response-stream interface."""

from lab.apps.interface import (
    AbortResponse,
    Handler,
    HTTPError,
    Request,
    ResponseStream,
    make_request,
)
from lab.apps.router import ENDPOINTS, app, index_text

__all__ = [
    "ENDPOINTS",
    "AbortResponse",
    "HTTPError",
    "Handler",
    "Request",
    "ResponseStream",
    "app",
    "index_text",
    "make_request",
]
