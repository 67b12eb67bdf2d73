"""The server-owned nursery for work an app starts that outlives a request.

A handler runs in its connection's nursery and is cancelled when its client goes away,
as it should be. Some work must go on regardless: an MCP 2025-11-25 tool call keeps
running when the connection carrying its stream drops, so that the client can resume the
stream with ``Last-Event-ID``. Such work runs here (``request.background.start_soon``),
in a nursery the :class:`lab.server.Server` holds: it survives its request, and
``Server.shutdown()`` cancels it within the shutdown grace like everything else the
server owns. Each task is a fault boundary of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from lab.server.faults import boundary

__all__ = ["ServerTasks"]


class ServerTasks:
    """:class:`lab.server.interface.Background` on a nursery the server runs (:meth:`run`)."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self.running = 0  # tasks started and not yet ended
        self.started = 0  # tasks ever started

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery until cancelled (the server cancels it at shutdown)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def start_soon(self, fn: Callable[[], Awaitable[object]], *, name: str) -> None:
        if self._nursery is None:
            raise RuntimeError(f"the server is not running: cannot start {name!r}")
        self.started += 1
        self.running += 1
        self._nursery.start_soon(self._guarded, fn, name, name=name)

    async def _guarded(self, fn: Callable[[], Awaitable[object]], name: str) -> None:
        try:
            with boundary(f"background task {name}"):
                await fn()
        finally:
            self.running -= 1
