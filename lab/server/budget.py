"""Budgets shared by every connection of one server: what no single client may exhaust.

Per-connection and per-stream limits (lab.server.limits) bound what one connection can
make the server hold; these bound the sum, and what many connections from one address
can do together:

- **Request bodies buffered in total.** Each request body is read whole before its
  handler runs (at most ``Limits.max_body_size``); across all connections together at
  most ``Limits.max_buffered_bodies`` bytes. Past it a new body is refused (503 with
  Retry-After on HTTP/1.1, RST_STREAM(REFUSED_STREAM) on HTTP/2, both safe to retry)
  before memory grows.
- **Control frames per client address.** The HTTP/2 control-frame budget is per
  connection; rapid reset spread over many connections from one address (CVE-2023-44487
  as seen in the wild) is bounded by a second budget per address, so that the server's
  CPU stays with the clients that send data.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["AddressBudgets", "ServerBudget"]


@dataclass(eq=False, slots=True)
class ServerBudget:
    """Bytes reserved across every connection, against one total."""

    total: int
    used: int = 0
    refused: int = 0  # reservations turned down, for logs, tests and benchmarks

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes if they fit; False (nothing taken) if not."""
        if self.used + n > self.total:
            self.refused += 1
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n
        assert self.used >= 0, "released more than reserved"


@dataclass(eq=False, slots=True)
class AddressBudgets:
    """A count per client address per one-second window, for ``max_addresses`` addresses
    at most (the least recently seen is forgotten first, so that a scan of spoofed-looking
    addresses cannot grow the table)."""

    per_second: int
    max_addresses: int
    _windows: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)

    def spend(self, address: str, n: int = 1) -> bool:
        """Count ``n`` for ``address``; False once its budget of this second is exceeded."""
        now = int(time.monotonic())
        window, count = self._windows.pop(address, (now, 0))
        if window != now:
            window, count = now, 0
        count += n
        self._windows[address] = (window, count)
        if len(self._windows) > self.max_addresses:
            self._windows.popitem(last=False)
        return count <= self.per_second
