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

__all__ = ["AddressBudgets", "RateBudget", "ServerBudget"]


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


class RateBudget:
    """A count per one-second window, for one connection or one client address.

    A window starts with the first count after the previous one ended, so that a burst
    is counted whole in one window (with windows aligned to clock seconds, a burst that
    straddles a second boundary would be allowed twice the budget).
    """

    __slots__ = ("_count", "_window", "per_second")

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window = float("-inf")
        self._count = 0

    def spend(self, n: int = 1) -> bool:
        """Count ``n``; False once the budget of this window is exceeded."""
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._count = now, 0
        self._count += n
        return self._count <= self.per_second


@dataclass(eq=False, slots=True)
class AddressBudgets:
    """A :class:`RateBudget` per client address, for ``max_addresses`` addresses at most
    (the least recently seen is forgotten first, so that many addresses cannot grow the
    table)."""

    per_second: int
    max_addresses: int
    _budgets: OrderedDict[str, RateBudget] = field(default_factory=OrderedDict)

    def spend(self, address: str, n: int = 1) -> bool:
        """Count ``n`` for ``address``; False once its budget of this window is exceeded."""
        budget = self._budgets.pop(address, None) or RateBudget(self.per_second)
        self._budgets[address] = budget
        if len(self._budgets) > self.max_addresses:
            self._budgets.popitem(last=False)
        return budget.spend(n)
