"""JSON-RPC 2.0 as MCP uses it: one message per HTTP body, parsed and built here (sans-IO).

Every MCP message is a JSON object of one of three shapes (the schema's ``JSONRPCRequest``,
``JSONRPCNotification`` and ``JSONRPCResponse``)::

    {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {...}}     request
    {"jsonrpc": "2.0", "method": "notifications/initialized"}                notification
    {"jsonrpc": "2.0", "id": 7, "result": {...}}                             response
    {"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "..."}} error response

MCP narrows JSON-RPC: an id is a string or an integer, never null; ``params`` is an
object; batches (a JSON array) were removed in 2025-06-18. An error about a message whose
id could not be read carries no ``id`` at all (transports.mdx: "a JSON-RPC error response
that has no id"; the schema makes ``JSONRPCErrorResponse.id`` optional), where plain
JSON-RPC would write ``"id": null``.

This module also names the protocol's constants in one place: revisions, HTTP header
names, ``_meta`` keys and error codes, each as the specification spells it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

__all__ = [
    "DEFAULT_LEGACY_VERSION",
    "HEADER_LAST_EVENT_ID",
    "HEADER_METHOD",
    "HEADER_MISMATCH",
    "HEADER_NAME",
    "HEADER_PROTOCOL_VERSION",
    "HEADER_SESSION_ID",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LATEST_LEGACY_VERSION",
    "LEGACY_VERSIONS",
    "META_CLIENT_CAPABILITIES",
    "META_CLIENT_INFO",
    "META_LOG_LEVEL",
    "META_PROTOCOL_VERSION",
    "META_SERVER_INFO",
    "METHOD_NOT_FOUND",
    "MODERN_VERSIONS",
    "PARSE_ERROR",
    "SUPPORTED_VERSIONS",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "Message",
    "Notification",
    "Request",
    "RequestId",
    "Response",
    "RpcError",
    "decode_header_value",
    "dumps",
    "error_response",
    "is_request_id",
    "notification",
    "parse_message",
    "result_response",
]

RequestId = str | int

# -- revisions ----------------------------------------------------------------------------

# Handshake-era revisions this server negotiates through `initialize` (Streamable HTTP was
# introduced in 2025-03-26; the older HTTP+SSE transport is not served).
LEGACY_VERSIONS: Final = ("2025-03-26", "2025-06-18", "2025-11-25")
LATEST_LEGACY_VERSION: Final = "2025-11-25"
# 2025-11-25 transports §"Protocol Version Header": with no MCP-Protocol-Version header and
# no other way to tell, a server SHOULD assume 2025-03-26.
DEFAULT_LEGACY_VERSION: Final = "2025-03-26"
# Stateless revisions: the version travels in every request's `_meta`.
MODERN_VERSIONS: Final = ("2026-07-28",)
SUPPORTED_VERSIONS: Final = (*MODERN_VERSIONS, *reversed(LEGACY_VERSIONS))  # newest first

# -- HTTP header names (compared case-insensitively; the lab's Request lower-cases them) --

HEADER_SESSION_ID: Final = "mcp-session-id"
HEADER_PROTOCOL_VERSION: Final = "mcp-protocol-version"
HEADER_METHOD: Final = "mcp-method"  # 2026-07-28: mirrors the body's `method`
HEADER_NAME: Final = "mcp-name"  # 2026-07-28: mirrors `params.name` or `params.uri`
HEADER_LAST_EVENT_ID: Final = "last-event-id"

# -- `_meta` keys of 2026-07-28 (basic/index.mdx, "Per-request protocol fields") ----------

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"

# -- error codes --------------------------------------------------------------------------

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# 2026-07-28 reserves -32020..-32099 for the specification itself.
HEADER_MISMATCH: Final = -32020
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022


class RpcError(Exception):
    """A JSON-RPC error to answer with: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def response(self, request_id: RequestId | None) -> dict[str, Any]:
        return error_response(request_id, self.code, self.message, self.data)


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        """``params._meta``, or an empty dict when absent or not an object."""
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def progress_token(self) -> RequestId | None:
        """``_meta.progressToken`` if it is a string or an integer (progress.mdx)."""
        token = self.meta.get("progressToken")
        return token if is_request_id(token) else None


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    id: RequestId
    payload: dict[str, Any]  # the whole message: `result` or `error` is in it


Message = Request | Notification | Response


def is_request_id(value: object) -> TypeGuard[RequestId]:
    # bool is an int in Python, and not an id in JSON.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(body: bytes) -> Message:
    """The one JSON-RPC message in ``body``.

    Raises :class:`RpcError` with PARSE_ERROR for anything that is not UTF-8 JSON (MCP
    messages MUST be UTF-8; transports.mdx), and INVALID_REQUEST for JSON that is not one
    message: a batch, a wrong ``jsonrpc``, a null or fractional id, non-object params.
    """
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: thousands of nested brackets exhaust the decoder's stack; that
        # is malformed input, not a server fault.
        raise RpcError(PARSE_ERROR, f"Parse error: {type(exc).__name__}") from None
    if isinstance(value, list):
        raise RpcError(INVALID_REQUEST, "Invalid Request: batches are not part of MCP")
    if not isinstance(value, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: not a JSON object")
    if value.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
    params = value.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: params must be an object")
    method = value.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise RpcError(INVALID_REQUEST, "Invalid Request: method must be a string")
        if "id" not in value:
            return Notification(method, params)
        if not is_request_id(value["id"]):
            raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
        return Request(value["id"], method, params)
    if is_request_id(value.get("id")) and ("result" in value) != ("error" in value):
        return Response(value["id"], value)
    raise RpcError(
        INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response"
    )


def result_response(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_response(
    request_id: RequestId | None, code: int, message: str, data: object = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    out: dict[str, Any] = {"jsonrpc": "2.0"}
    if request_id is not None:
        out["id"] = request_id
    out["error"] = error
    return out


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def dumps(message: dict[str, Any]) -> str:
    """One line of JSON: an SSE ``data:`` line or an ``application/json`` body."""
    return json.dumps(message, separators=(",", ":"))


def decode_header_value(value: str) -> str | None:
    """A 2026-07-28 ``Mcp-Name`` / ``Mcp-Param-*`` value, with the Base64 sentinel undone.

    Values a header cannot carry plainly travel as ``=?base64?<base64 of UTF-8>?=``
    (streamable-http.mdx, "Value Encoding"); None when such a value does not decode.
    """
    if value.startswith("=?base64?") and value.endswith("?=") and len(value) >= 11:
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value
