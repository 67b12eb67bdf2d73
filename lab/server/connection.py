"""What every protocol's connection task shares with the listener: the per-connection
state, the server's name, and the Date header's clock.

The listener makes one :class:`ConnectionState` per accepted connection and hands it to
the HTTP/1.1 or HTTP/2 module; both read and set it, and the listener reads it back for
shutdown, logging and ``GET /stats``. It lives here, below all three, so that the layers
import top-down.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import trio

from lab.capture.live import LiveFeed
from lab.server.budget import AddressBudgets, ServerBudget
from lab.server.interface import Background, NoBackground

__all__ = ["SERVER_NAME", "ConnectionState", "http_date"]

# The Server header's value (RFC 9110 §10.2.4) on every response.
SERVER_NAME: Final = b"streamlab/0.1"

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The Date header value (RFC 9110 §6.6.1), formatted at most once a second."""
    global _date_cache  # noqa: PLW0603 - a one-entry cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


@dataclass(eq=False, slots=True)
class ConnectionState:
    """What the server and one connection's task share."""

    closing: bool = False  # the server is shutting down: finish the response, then close
    client_gone: bool = False  # the client left while a response was streaming
    _idle_scope: trio.CancelScope | None = field(default=None, repr=False)
    # Set with ``closing``, for a connection that must act at once (HTTP/2: GOAWAY).
    closing_event: trio.Event = field(default_factory=trio.Event, repr=False)
    # The Date header's value (RFC 9110 §6.6.1): the real clock, or a fixed value for
    # reproducible captures (HPACK-compressed dates cannot be normalised afterwards).
    date_source: Callable[[], bytes] = field(default=http_date, repr=False)
    number: int = 0  # the server's count of accepted connections, from 1
    peer: str = ""  # "host:port" of the client
    peer_host: str = ""  # the client's address alone: what per-address budgets key on
    # Shared by every connection of the server (lab.server.budget).
    bodies: ServerBudget = field(default_factory=lambda: ServerBudget(0), repr=False)
    addresses: AddressBudgets = field(default_factory=lambda: AddressBudgets(0, 1), repr=False)
    protocol: str = ""  # what the listener chose: "http/1.1", "h2c" or "h2"
    local: str = ""  # "host:port" of the server's end (IPv6 in brackets)
    # Where apps run work that outlives a request: the server's (lab.server.background).
    background: Background = field(default_factory=NoBackground, repr=False)
    # The first request's method and target (its trace file is named after them).
    first_method: str = ""
    first_target: str = ""
    # Told each request's method and target as it is read, before its handler runs.
    on_request: Callable[[str, str], None] | None = field(default=None, repr=False)
    # The server's live feed, when its wire viewer is on (handed to apps with each request).
    feed: LiveFeed | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How log lines name this connection."""
        return f"connection {self.number} from {self.peer} ({self.protocol or 'unknown'})"

    def request_read(self, method: str, target: str) -> None:
        """The protocol module read a request (HTTP/1.1) or a stream's request (HTTP/2)."""
        if not self.first_method:
            self.first_method, self.first_target = method, target
        if self.on_request is not None:
            self.on_request(method, target)

    @contextmanager
    def idle(self) -> Iterator[trio.CancelScope]:
        """Mark a wait between requests, which shutdown may cut short."""
        with trio.CancelScope() as scope:
            self._idle_scope = scope
            if self.closing:
                scope.cancel()
            try:
                yield scope
            finally:
                self._idle_scope = None

    def close_when_idle(self) -> None:
        self.closing = True
        self.closing_event.set()
        if self._idle_scope is not None:
            self._idle_scope.cancel()
