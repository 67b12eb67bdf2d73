"""What the MCP endpoint *means*: its methods, its tools, and their results per revision.

Transport-free: :func:`handle` takes a parsed request and a :class:`CallContext` (where
notifications about the request go) and returns the ``result`` object or raises
:class:`~lab.apps.mcp.messages.RpcError`. Which revision the client speaks changes the
method set and the shape of results:

=================  ==================  ==================
method             2025-11-25          2026-07-28
=================  ==================  ==================
initialize         yes (+ session)     no (legacy only)
ping               yes                 removed
logging/setLevel   yes (per session)   removed: ``_meta`` logLevel per request
server/discover    no                  yes
tools/list         yes                 yes, + ``ttlMs`` / ``cacheScope``
tools/call         yes                 yes
=================  ==================  ==================

Every 2026-07-28 result also carries ``resultType: "complete"`` and the server's identity
in ``_meta`` (basic/index.mdx, "Per-response protocol fields").

The tools are an honest subset: ``stream_tokens`` streams the lab's deterministic reply
as ``notifications/progress`` (one per token, the token as the progress message) and
returns the whole text; ``fail`` reports a tool execution error the way tools.mdx says
(a result with ``isError: true``, not a JSON-RPC error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from lab.apps.mcp.messages import (
    INVALID_PARAMS,
    LATEST_LEGACY_VERSION,
    LEGACY_VERSIONS,
    META_SERVER_INFO,
    METHOD_NOT_FOUND,
    SUPPORTED_VERSIONS,
    Request,
    RpcError,
    notification,
)
from lab.apps.mcp.session import LOG_LEVELS, Session
from lab.apps.params import MAX_PROMPT_CHARS
from lab.apps.tokens import tokens_for

__all__ = [
    "LEGACY_METHODS",
    "MODERN_METHODS",
    "SERVER_INFO",
    "TOOLS",
    "CallContext",
    "Tool",
    "handle",
    "initialize",
    "streams_response",
]

SERVER_INFO: Final = {"name": "streamlab", "title": "streamlab MCP endpoint", "version": "0.1.0"}
INSTRUCTIONS: Final = (
    "A protocol lab, not a useful server: stream_tokens streams a deterministic reply as "
    "progress notifications; fail always fails."
)
# The tool list never changes while the server runs, so a client may cache it; a minute
# keeps a long-lived client from missing a restart with new tools for long.
TOOLS_TTL_MS: Final = 60_000
# stream_tokens bounds: at most 1,000 tokens at most 1 s apart, so one call ends on its
# own in under 17 minutes. That is also the longest a connected client can hold a session
# slot with one call (a call no one reads is stopped sooner: McpLimits.
# detached_call_timeout).
DEFAULT_TOOL_TOKENS: Final = 8
MAX_TOOL_TOKENS: Final = 1000
DEFAULT_TOOL_INTERVAL_MS: Final = 25
MAX_TOOL_INTERVAL_MS: Final = 1000

LEGACY_METHODS: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "tools/list", "tools/call"}
)
MODERN_METHODS: Final = frozenset({"server/discover", "tools/list", "tools/call"})


@dataclass(eq=False)
class CallContext:
    """Where a request's side messages go.

    ``send`` puts a notification on the stream that carries the request's response (a
    progress notification must relate to its request). ``log_sink`` takes a log message;
    the transport routes it by revision: to the session's GET stream (2025-11-25), or to
    the request's own stream if the request asked for logs in ``_meta`` (2026-07-28).
    """

    progress_token: str | int | None
    send: Callable[[dict[str, Any]], Awaitable[None]]
    log_sink: Callable[[str, dict[str, Any]], Awaitable[None]]

    async def progress(self, progress: int, total: int, message: str) -> None:
        # progress.mdx: only for a request that carried a progressToken, and increasing.
        if self.progress_token is None:
            return
        params: dict[str, Any] = {
            "progressToken": self.progress_token, "progress": progress, "total": total,
            "message": message,
        }  # fmt: skip
        await self.send(notification("notifications/progress", params))

    async def log(self, level: str, data: dict[str, Any]) -> None:
        await self.log_sink(level, data)


# -- tools --------------------------------------------------------------------------------


class ToolInputError(Exception):
    """Arguments the tool cannot use: reported as a tool execution error (tools.mdx)."""


ToolFn = Callable[[dict[str, Any], CallContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    streams: bool  # answer tools/call with an SSE stream (it sends notifications)
    run: ToolFn

    def listing(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "inputSchema": self.input_schema,
        }  # fmt: skip


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


def _int_arg(args: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's integer includes 8.0
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ToolInputError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def _str_arg(args: dict[str, Any], name: str, default: str, max_chars: int) -> str:
    value = args.get(name, default)
    if not isinstance(value, str) or len(value) > max_chars:
        raise ToolInputError(f"{name} must be a string of at most {max_chars} characters")
    return value


async def _stream_tokens(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    prompt = _str_arg(args, "prompt", "hello", MAX_PROMPT_CHARS)
    n = _int_arg(args, "n", DEFAULT_TOOL_TOKENS, 1, MAX_TOOL_TOKENS)
    interval = _int_arg(args, "interval_ms", DEFAULT_TOOL_INTERVAL_MS, 0, MAX_TOOL_INTERVAL_MS)
    words = tokens_for(prompt, n)
    await ctx.log("info", {"tool": "stream_tokens", "event": "started", "n": n})
    for i, word in enumerate(words, 1):
        if i > 1 and interval:
            await trio.sleep(interval / 1000)
        await ctx.progress(i, n, word)
    await ctx.log("info", {"tool": "stream_tokens", "event": "finished", "n": n})
    return _text("".join(words))


async def _fail(args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    message = _str_arg(args, "message", "this tool always fails", MAX_PROMPT_CHARS)
    await ctx.log("error", {"tool": "fail", "message": message})
    return _text(f"fail: {message}", error=True)


_PROMPT: Final = {"type": "string", "maxLength": MAX_PROMPT_CHARS, "description": "seeds the reply"}
TOOLS: Final = {
    tool.name: tool
    for tool in (
        Tool(
            "stream_tokens", "Stream tokens",
            "A deterministic reply to `prompt`, one notifications/progress per token (the token "
            "is the progress message), then the whole text.",
            {
                "type": "object",
                "properties": {
                    "prompt": _PROMPT,
                    "n": {"type": "integer", "minimum": 1, "maximum": MAX_TOOL_TOKENS},
                    "interval_ms": {
                        "type": "integer", "minimum": 0, "maximum": MAX_TOOL_INTERVAL_MS,
                    },
                },
            },
            streams=True, run=_stream_tokens,
        ),
        Tool(
            "fail", "Fail",
            "Always fails, as a tool execution error (isError: true) with `message`.",
            {"type": "object", "properties": {"message": {"type": "string"}}},
            streams=False, run=_fail,
        ),
    )
}  # fmt: skip


def streams_response(request: Request) -> bool:
    """Whether this request is answered with an SSE stream (else one JSON object)."""
    if request.method != "tools/call":
        return False
    tool = TOOLS.get(str(request.params.get("name")))
    return tool is not None and tool.streams


# -- methods ------------------------------------------------------------------------------


def _capabilities() -> dict[str, Any]:
    return {"tools": {"listChanged": False}, "logging": {}}


def initialize(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The negotiated version and the InitializeResult (lifecycle.mdx, "Version Negotiation":
    the client's version if supported, else the latest this server speaks)."""
    requested = params.get("protocolVersion")
    version = requested if requested in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
    assert isinstance(version, str)
    return version, {
        "protocolVersion": version,
        "capabilities": _capabilities(),
        "serverInfo": SERVER_INFO,
        "instructions": INSTRUCTIONS,
    }


async def _call_tool(params: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    name = params.get("name")
    tool = TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        # tools.mdx, "Error Handling": an unknown tool is a protocol error.
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {str(name)[:100]}")
    arguments = params.get("arguments", {})
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "tools/call arguments must be an object")
    try:
        return await tool.run(arguments, ctx)
    except ToolInputError as exc:
        return _text(f"{tool.name}: {exc}", error=True)


async def handle(
    request: Request, ctx: CallContext, *, modern: bool, session: Session | None = None
) -> dict[str, Any]:
    """The ``result`` for ``request``; raises RpcError for a JSON-RPC error.

    ``initialize`` is the transport's (it creates the session) and never comes here.
    """
    method = request.method
    if method not in (MODERN_METHODS if modern else LEGACY_METHODS) or method == "initialize":
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method[:100]}")
    result: dict[str, Any]
    if method == "ping":
        result = {}
    elif method == "logging/setLevel":
        level = request.params.get("level")
        if level not in LOG_LEVELS:
            raise RpcError(INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}")
        assert session is not None
        assert isinstance(level, str)
        session.log_level = level
        result = {}
    elif method == "server/discover":
        result = {
            "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": _capabilities(),
            "instructions": INSTRUCTIONS,
            "ttlMs": TOOLS_TTL_MS, "cacheScope": "public",
        }  # fmt: skip
    elif method == "tools/list":
        result = {"tools": [tool.listing() for tool in TOOLS.values()]}
        if modern:
            result |= {"ttlMs": TOOLS_TTL_MS, "cacheScope": "public"}
    else:
        result = await _call_tool(request.params, ctx)
    if modern:
        result = {"resultType": "complete", **result, "_meta": {META_SERVER_INFO: SERVER_INFO}}
    return result
