"""One writer per HTTP/2 connection: the only task that writes to the socket.

Handlers and the read loop only queue frames (whole frames, as h2 or the lab serialised
them); this task writes them, coalescing what several streams queued meanwhile. So frames
the server owes the peer (a PING ACK, a RST_STREAM, an error GOAWAY) are never lost to a
cancelled handler, and a write is never cut in the middle of a frame (RFC 9113 §4.1: a
receiver cannot resynchronise inside a frame).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from lab.server.limits import Limits

__all__ = ["FrameWriter", "Gone"]

log = logging.getLogger("lab.server")


class Gone(Exception):
    """The connection's writer failed: the client left, reset, or stopped reading."""


class FrameWriter:
    """A queue of bytes for the socket, and the task that writes it (:meth:`run`)."""

    def __init__(
        self, stream: trio.abc.Stream, limits: Limits, label: str,
        on_broken: Callable[[], None],
    ) -> None:  # fmt: skip
        self.stream = stream
        self.limits = limits
        self.label = label
        self._on_broken = on_broken  # the connection stops reading and cancels its streams
        self._out = bytearray()
        self.queued = 0  # bytes ever queued
        self.written = 0  # bytes ever written
        self._wake = trio.Event()
        self._progress = trio.Event()  # set (and replaced) after every write
        self.broken = False
        self.sealed = False  # an error GOAWAY was queued: nothing more is written

    @property
    def backlog(self) -> int:
        """Bytes queued and not yet handed to the socket."""
        return len(self._out)

    def queue(self, data: bytes) -> int:
        """Queue ``data`` (dropped once sealed); the queue position it ends at."""
        if self.sealed:
            return self.queued
        if data:
            self._out += data
            self.queued += len(data)
            self._wake.set()
        return self.queued

    async def written_to(self, target: int) -> None:
        """Wait until the socket took everything up to queue position ``target``
        (back-pressure); :class:`Gone` if the writer failed first.

        A caller cancelled while it waits loses nothing: the writer still sends it.
        """
        while self.written < target:
            if self.broken:
                raise Gone
            await self._progress.wait()

    async def drain(self) -> None:
        """Wait (bounded) until everything queued is written."""
        with trio.move_on_after(self.limits.send_timeout), contextlib.suppress(Gone):
            await self.written_to(self.queued)

    async def run(self) -> None:
        """Write whatever is queued, until cancelled or the socket fails."""
        while True:
            if not self._out:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            data = bytes(self._out)
            self._out.clear()
            try:
                with trio.fail_after(self.limits.send_timeout):
                    await self.stream.send_all(data)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if isinstance(exc, trio.TooSlowError):
                    log.info(
                        "%s: client too slow: no progress sending for %ss",
                        self.label, self.limits.send_timeout,
                    )  # fmt: skip
                self.broken = True
                self._progress.set()
                self._on_broken()
                return
            self.written += len(data)
            progress, self._progress = self._progress, trio.Event()
            progress.set()
