"""The official MCP Python SDK (the ``mcp`` package) as the client of the lab's /mcp.

The lab server runs in a background thread (its own trio run); the SDK runs on asyncio in
the test's thread, as any user of it would. Both connect modes are driven:
``mode="legacy"`` (the 2025-11-25 initialize handshake, a session, the GET stream) and
the default ``"auto"`` (``server/discover`` first, which this server answers, so the SDK
stays on 2026-07-28). Each lists the tools and calls the streaming tool with a progress
callback; the progress notifications must arrive, one per token, before the result. And
a 2025-11-25 stream that the server cuts mid-call is resumed by the SDK on its own (GET
with Last-Event-ID) without losing or repeating a progress notification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from lab.apps import AbortResponse, Request, ResponseStream
from lab.apps.interface import Headers
from lab.apps.mcp import McpEndpoint
from lab.apps.tokens import tokens_for
from lab.notebook import ServerHandle
from tests.serverthread import server_in_thread

pytestmark = pytest.mark.interop

# Bound on each SDK conversation: the calls below take well under a second.
TIMEOUT = 30.0


def _require_sdk() -> None:
    """Fail, never skip, without the SDK: an interop test that skips checks nothing."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        pytest.fail('the official MCP SDK is missing: pip install "mcp>=2.3,<3"')


class _CutAfter:
    """A ResponseStream that breaks the connection after ``sends`` pieces of body, the way
    a network failure or the server's slow-reader policy would."""

    def __init__(self, inner: ResponseStream, sends: int) -> None:
        self.inner = inner
        self.left = sends

    async def start(self, status: int, headers: Headers = ()) -> None:
        await self.inner.start(status, headers)

    async def send(self, data: bytes) -> None:
        if not self.left:
            raise AbortResponse("cut by the test")
        self.left -= 1
        await self.inner.send(data)

    async def end(self, trailers: Headers = ()) -> None:
        await self.inner.end(trailers)


@dataclass(eq=False)
class Running:
    handle: ServerHandle
    endpoint: McpEndpoint
    requests: list[Request]

    @property
    def url(self) -> str:
        return f"{self.handle.url}/mcp"

    def on_server(self, fn: Any) -> Any:
        """``fn()`` run in the server's trio thread (its per-run state lives there)."""
        return self.handle.call(fn)


@pytest.fixture
def lab() -> Iterator[Running]:
    endpoint = McpEndpoint()
    seen: list[Request] = []

    async def app(request: Request, response: ResponseStream) -> None:
        seen.append(request)
        if b'"cut-me"' in request.body:
            # The priming event and two progress events get through, then the cut.
            await endpoint(request, _CutAfter(response, 3))
            return
        await endpoint(request, response)

    with server_in_thread(app=app) as handle:
        yield Running(handle, endpoint, seen)


Mode = Literal["legacy", "auto"]


async def _converse(url: str, mode: Mode) -> dict[str, Any]:
    from mcp import Client

    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        result = await client.call_tool(
            "stream_tokens", {"prompt": "sdk", "n": 6, "interval_ms": 5},
            progress_callback=on_progress,
        )  # fmt: skip
        failed = await client.call_tool("fail", {"message": "on purpose"})
        return {
            "version": client.protocol_version,
            "tools": sorted(t.name for t in tools.tools),
            "text": [c.text for c in result.content if c.type == "text"],
            "is_error": result.is_error,
            "failed": (failed.is_error, [c.text for c in failed.content if c.type == "text"]),
            "progress": progress,
        }


def _run(url: str, mode: Mode) -> dict[str, Any]:
    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(_converse(url, mode), TIMEOUT)

    _require_sdk()
    return asyncio.run(bounded())


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
def test_sdk_client_lists_tools_and_streams_progress(
    lab: Running, mode: Mode, version: str
) -> None:
    outcome = _run(lab.url, mode)
    words = tokens_for("sdk", 6)
    assert outcome["version"] == version
    assert outcome["tools"] == ["fail", "stream_tokens"]
    assert outcome["text"] == ["".join(words)]
    assert outcome["is_error"] is False
    assert outcome["progress"] == [(i, 6, word) for i, word in enumerate(words, 1)]
    assert outcome["failed"] == (True, ["fail: on purpose"])
    methods = [r.method for r in lab.requests]
    if mode == "legacy":
        # The handshake, a session on every later request, the GET stream, and DELETE.
        posts = [r for r in lab.requests if r.method == "POST"]
        assert posts[0].header("mcp-session-id") is None
        assert all(r.header("mcp-session-id") for r in lab.requests[1:])
        assert "GET" in methods
        assert methods[-1] == "DELETE"
        assert lab.on_server(lambda: len(lab.endpoint.sessions)) == 0
    else:
        # Stateless: POST only, every request names its version and method in headers.
        assert set(methods) == {"POST"}
        assert lab.requests[0].header("mcp-method") == "server/discover"
        assert all(r.header("mcp-protocol-version") == version for r in lab.requests)
        assert all(r.header("mcp-session-id") is None for r in lab.requests)
        calls = [r for r in lab.requests if r.header("mcp-method") == "tools/call"]
        assert [r.header("mcp-name") for r in calls] == ["stream_tokens", "fail"]


def test_sdk_client_resumes_a_cut_stream_with_last_event_id(lab: Running) -> None:
    async def converse() -> tuple[list[tuple[float, str | None]], list[str]]:
        from mcp import Client

        progress: list[tuple[float, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, message))

        async with Client(lab.url, mode="legacy") as client:
            result = await client.call_tool(
                "stream_tokens", {"prompt": "cut-me", "n": 8, "interval_ms": 20},
                progress_callback=on_progress,
            )  # fmt: skip
            return progress, [c.text for c in result.content if c.type == "text"]

    async def bounded() -> tuple[list[tuple[float, str | None]], list[str]]:
        return await asyncio.wait_for(converse(), TIMEOUT)

    _require_sdk()
    progress, text = asyncio.run(bounded())
    words = tokens_for("cut-me", 8)
    assert progress == list(enumerate(words, 1))
    assert text == ["".join(words)]
    resumes = [r.header("last-event-id") for r in lab.requests if r.header("last-event-id")]
    assert resumes == ["1-2"]  # the cut POST stream, from its last event
