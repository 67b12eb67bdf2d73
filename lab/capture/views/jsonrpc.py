"""JSON-RPC 2.0 messages in a body, summed up in a few words for the sequence view.

MCP speaks JSON-RPC 2.0 (JSON-RPC 2.0 specification §4, §5): a request has a ``method``
and an ``id``, a notification a ``method`` and no ``id``, a response an ``id`` and either a
``result`` or an ``error``. What a reader of a trace wants from each is which one it is:
``tools/call id=2``, ``notifications/progress``, ``result id=2 (tools/call)``,
``error id=7 -32601 (tools/list)``. A response names no method, so :class:`Methods`
remembers each request's method by its id and the direction it went, and a response in the
other direction is matched to it.

:func:`messages` reads a body's bytes (a Content-Length body, a chunk, an SSE event's
data, a DATA frame) as one message or a batch (§6), and returns nothing for anything else.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["MAX_JSONRPC_BYTES", "Methods", "details", "messages", "summary"]

# Bodies longer than this are not parsed as JSON-RPC: every MCP message of the lab's
# scenarios is well under it, and parsing a megabyte body only to find it is not
# JSON-RPC would make the sequence view slow for nothing.
MAX_JSONRPC_BYTES: Final = 64 * 1024

_Message = dict[str, Any]


def messages(data: bytes | str) -> list[_Message]:
    """The JSON-RPC 2.0 messages ``data`` holds (one, or a batch), or [] if it is not
    exactly that."""
    if not data or len(data) > MAX_JSONRPC_BYTES:
        return []
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    batch = value if isinstance(value, list) else [value]
    if not batch or not all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in batch):
        return []
    return batch


def _id(message: _Message) -> str:
    return json.dumps(message.get("id"), ensure_ascii=False)


class Methods:
    """The method of every request seen, by (the direction it went, its id)."""

    def __init__(self) -> None:
        self._methods: dict[tuple[bool, str], str] = {}

    def saw(self, from_client: bool | None, batch: list[_Message]) -> None:
        for m in batch:
            if isinstance(m.get("method"), str) and "id" in m:
                self._methods[(bool(from_client), _id(m))] = m["method"]

    def answered(self, from_client: bool | None, message: _Message) -> str | None:
        """The method of the request a response going ``from_client`` answers."""
        return self._methods.get((not from_client, _id(message)))


def _one(message: _Message, from_client: bool | None, methods: Methods) -> str:
    method = message.get("method")
    if isinstance(method, str):
        return f"{method} id={_id(message)}" if "id" in message else method
    what = "error" if "error" in message else "result"
    text = f"{what} id={_id(message)}"
    error = message.get("error")
    if isinstance(error, dict) and "code" in error:
        text += f" {error['code']}"
    asked = methods.answered(from_client, message)
    return f"{text} ({asked})" if asked else text


def summary(batch: list[_Message], from_client: bool | None, methods: Methods) -> str:
    """``batch`` in words: each message's method and id, or what kind of response it is."""
    text = ", ".join(_one(m, from_client, methods) for m in batch)
    return f"batch [{text}]" if len(batch) > 1 else text


def details(batch: list[_Message]) -> bytes:
    """What a lone message carries, as compact JSON: a request's or notification's
    ``params``, a response's ``result`` or ``error``; empty for a batch or none."""
    if len(batch) != 1:
        return b""
    for key in ("params", "result", "error"):
        if key in batch[0]:
            return json.dumps(batch[0][key], separators=(",", ":"), ensure_ascii=False).encode()
    return b""
