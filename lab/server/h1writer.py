"""The HTTP/1.1 response writer: a paced send is written at once; a burst is queued, and
one task writes what piled up.

A handler's ``send`` is written at once, in the handler's task, unless it is part of a
burst (``BURST_SENDS`` sends in a row, each within ``BURST_GAP`` of the one before): a
paced token stream goes out token by token with no other task involved. In a burst, the
framed bytes go into the response's buffer and ``send`` returns; a writer task, started
then, takes everything buffered and hands it to the socket in one ``send_all``. The
chunks that piled up go out together, each still its own chunk on the wire (RFC 9112
§7.1): the framing is never merged, only the system calls, and the handler no longer pays
a trip through the scheduler for every chunk.

Bounds: at most ``Limits.send_buffer_size`` bytes wait in the buffer (one more ``send``
waits until the writer has taken them, so a response holds at most twice that); a
handler that never waits for anything else still lets other tasks run every
``YIELD_EVERY`` sends; a write that makes no progress for ``Limits.send_timeout`` ends
the connection (the client does not read), as does a broken socket. Either way the
writer cancels the response's tasks, and the connection's task sees :attr:`failed`.

The send timeout costs nothing per write when another task watches the writer (the
HTTP/1.1 connection's disconnect watcher does): a write notes when it started, and only
the first write after a quiet spell asks the watcher (:attr:`arm`) to look, ``CHECK_AFTER``
later.
When the deadline comes, :meth:`next_check` says whether the write under way is overdue
(the connection is too slow), when to look again, or that nothing is being written (then
the next write asks again). A timeout scope around every write cost more than the write.
A check that finds nothing being written also retires the writer task (the next burst
starts another), so a stream that has gone quiet holds no task for its writer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

import trio

from lab.server.limits import YIELD_EVERY

__all__ = ["BURST_GAP", "BURST_SENDS", "CHECK_AFTER", "ResponseWriter"]

log = logging.getLogger("lab.server")

# How soon after a write the watcher first looks at the writer: a write still under way
# is then checked again at its send timeout; a writer with nothing to write is retired.
# A second: a stream that pauses longer than that holds no writer task meanwhile, and
# one that streams on starts a writer once a second, not once per token.
CHECK_AFTER: Final = 1.0
# Sends that follow each other within BURST_GAP, BURST_SENDS of them in a row, are a
# burst: from there the writer task batches them. Any other send is written at once in
# the handler's own task (the handler waited since its last send, so the socket is not
# behind): a paced stream needs no writer task, nor does a stream that sends its head and
# a first event or two and then waits, as an idle SSE stream does.
BURST_GAP: Final = 0.001
BURST_SENDS: Final = 8


class ResponseWriter:
    """One response's buffer and the task that empties it into ``stream``."""

    def __init__(self, stream: trio.abc.SendStream, *, limit: int, send_timeout: float) -> None:
        self._stream = stream
        self._limit = limit
        self._send_timeout = send_timeout
        # The response's scope, cancelled when a write fails (its tasks wait on a client
        # that is gone); None for a reply written outside a handler's nursery.
        self.cancel: trio.CancelScope | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._sends = 0
        self._writing = False  # a send_all is under way
        self._lot = trio.lowlevel.ParkingLot()  # the writer, waiting for bytes
        self._room = trio.lowlevel.ParkingLot()  # senders waiting for the buffer or a flush
        self._started = False
        # Why writing stopped ("client too slow", "client gone"), or None while it works.
        self.failed: str | None = None
        # Set by a task that watches this writer's send timeout: called with a deadline at
        # which it will call next_check(). None: each write has a timeout scope of its own.
        self.arm: Callable[[float], None] | None = None
        self._armed = False
        self._write_started: float | None = None
        self._retire = False  # the writer task is to end once the buffer is empty
        self._last_send = -math.inf  # when send() was last called
        self._quick = 0  # sends in a row, each within BURST_GAP of the one before

    @property
    def pending(self) -> int:
        """Bytes buffered and not yet handed to the socket."""
        return self._size

    def queue(self, *parts: bytes) -> None:
        """Buffer ``parts`` (to be written in this order) without waiting."""
        self._retire = False
        self._parts.extend(parts)
        self._size += sum(map(len, parts))
        if self._lot:
            self._lot.unpark()

    async def send(self, nursery: trio.Nursery, *parts: bytes) -> None:
        """Buffer ``parts``, start the writer if it is not running, and wait only when the
        buffer is full (or every YIELD_EVERY sends, to let other tasks run)."""
        if self.failed is not None:
            raise trio.BrokenResourceError(self.failed)
        if not self._started:  # (with a writer task running, all goes through it)
            now = trio.current_time()
            self._quick = self._quick + 1 if now - self._last_send < BURST_GAP else 0
            self._last_send = now
            if self._quick < BURST_SENDS and not self._parts:
                # Not a burst, and nothing else is being written: write this in the
                # handler's task, at once (a paced stream needs no writer task).
                self.queue(*parts)
                await self.flush()
                return
        self.queue(*parts)
        if not self._started:
            self._started = True
            nursery.start_soon(self._run, name="response writer")
        self._sends += 1
        if self._size >= self._limit:
            while self._size >= self._limit and self.failed is None:
                await self._room.park()
        elif self._sends % YIELD_EVERY == 0:
            await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        """Wait until everything buffered has been written (or writing failed); write it
        here when no writer task was started."""
        if not self._started:
            if self._parts:
                await self._write(self._take())
            else:
                await trio.lowlevel.checkpoint()
        else:
            while (self._parts or self._writing) and self.failed is None:
                await self._room.park()
        if self.failed is not None:
            raise trio.BrokenResourceError(self.failed)

    def _take(self) -> bytes:
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return data

    async def _write(self, data: bytes) -> None:
        self._writing = True
        try:
            if self.arm is None:
                with trio.fail_after(self._send_timeout):
                    await self._stream.send_all(data)
            else:
                self._write_started = now = trio.current_time()
                if not self._armed:
                    self._armed = True
                    self.arm(now + min(self._send_timeout, CHECK_AFTER))
                await self._stream.send_all(data)
        except trio.TooSlowError:
            self._fail("client too slow")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._fail("client gone")
        finally:
            self._writing = False
            self._write_started = None

    def next_check(self, now: float) -> float:
        """For the watching task, at the deadline it was given: when to look again
        (``math.inf``: not until a write asks). A write under way for the whole send
        timeout fails the writer ("client too slow") and cancels the response."""
        if self._write_started is None or self.failed is not None:
            self._armed = False
            if not self._parts and not self._writing and self._lot:
                self._retire = True  # quiet: the writer task ends; a burst starts another
                self._lot.unpark()
            return math.inf
        due = self._write_started + self._send_timeout
        if due > now:
            return due
        self._fail("client too slow")
        return math.inf

    def _fail(self, why: str) -> None:
        if self.failed is not None:
            return
        if why == "client too slow":
            log.info("client too slow: no progress sending for %ss", self._send_timeout)
        self.failed = why
        self._room.unpark_all()
        if self.cancel is not None:
            self.cancel.cancel()

    async def _run(self) -> None:
        while self.failed is None:
            if not self._parts:
                self._room.unpark_all()  # flush() waiters: all written
                if self._retire:
                    self._started = self._retire = False
                    self._quick = 0  # the next send is written at once again
                    return
                await self._lot.park()
                continue
            data = self._take()
            self._writing = True  # before waking flush(): these bytes are not out yet
            self._room.unpark_all()  # the buffer has room again
            await self._write(data)
