"""What an :class:`~lab.apps.mcp.transport.McpEndpoint` keeps during one trio run: the
session table and :class:`McpStats`, the counters tests and notebooks read. (Calls that
outlive their request run in the server's nursery, ``request.background``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from lab.apps.mcp.session import SessionTable

__all__ = ["McpStats", "RunState"]


@dataclass
class McpStats:
    """Counters for tests and notebooks, and a way to wait for them to change."""

    calls_started: int = 0
    calls_running: int = 0
    # Stopped before their response: notifications/cancelled, a closed stream (2026-07-28)
    # or the end of the session.
    calls_cancelled: int = 0
    # Stopped because no connection read their stream for detached_call_timeout.
    calls_abandoned: int = 0
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)

    def started(self) -> None:
        self.calls_started += 1
        self.calls_running += 1
        self._wake()

    def ended(self, *, cancelled: bool, abandoned: bool = False) -> None:
        self.calls_running -= 1
        self.calls_cancelled += cancelled
        self.calls_abandoned += abandoned
        self._wake()

    async def wait_until(self, condition: Callable[[McpStats], bool]) -> None:
        """Return once ``condition(self)`` holds (checked at each change)."""
        while not condition(self):
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@dataclass(eq=False)
class RunState:
    """What one endpoint keeps during one trio run."""

    sessions: SessionTable
    stats: McpStats = field(default_factory=McpStats)
