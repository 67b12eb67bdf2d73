"""The pace of the lab's token streams: one timer task for every stream of a server.

``await sleep_until(deadline)`` is ``trio.sleep_until(deadline)`` for the endpoints that
stream tokens and events at an interval (through :class:`Schedule`). ``trio.sleep`` wakes
each sleeper by cancelling its own timeout scope, which raises and catches an exception
every time: ~20 µs a token with 2,000 paced streams. Here the sleepers wait in one heap,
and one task per trio run (a system task, started on first use) sleeps until the earliest
deadline and reschedules every sleeper due by then. Deadlines are rounded up to ``TICK``,
so that sleepers due within the same tick wake together: each token is at most ``TICK``
later than ``trio.sleep`` would make it, and the timer's own wake-ups are at most one per
tick however many streams there are.

A pacing sleep is a checkpoint like ``trio.sleep``: cancelling a sleeper wakes it at once
with ``trio.Cancelled`` (its entry is left in the heap, marked, and dropped when due).

:class:`Schedule` paces a stream on a fixed grid: its ``k``-th tick is ``k`` intervals
after the first, however long the work between ticks took, so neither that work nor the
timer's rounding adds up over a long stream. A tick that comes late (the stream's task
did not get the CPU in time) is not made up by sending the next ones early: the grid
moves on from the late one.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Final

import trio
from trio.lowlevel import (
    Abort,
    ParkingLot,
    RunVar,
    Task,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    spawn_system_task,
    wait_task_rescheduled,
)

__all__ = ["TICK", "Schedule", "sleep_until"]

# The timer's resolution: how much later than asked a paced token may go out, at most. A
# millisecond is below what the lab measures token lateness in, and caps the timer at a
# thousand wake-ups a second.
TICK: Final = 0.001


class _Sleeper:
    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task: Task | None = task  # None once woken or cancelled


class _Timer:
    """The sleepers of one trio run, and the task that wakes them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Sleeper]] = []
        self._order = itertools.count()  # ties in deadline wake in the order they slept
        self._lot = ParkingLot()  # the timer task, waiting for the earliest deadline
        self._waiting_until = math.inf

    async def run(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._waiting_until = math.inf
                await self._lot.park()
                continue
            self._waiting_until = heap[0][0]
            with trio.move_on_at(self._waiting_until):
                await self._lot.park()  # woken early when an earlier deadline comes in
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                sleeper = heapq.heappop(heap)[2]
                if sleeper.task is not None:
                    reschedule(sleeper.task)
                    sleeper.task = None

    async def sleep_until(self, deadline: float) -> None:
        await checkpoint_if_cancelled()
        deadline = math.ceil(deadline / TICK) * TICK
        sleeper = _Sleeper(current_task())
        heapq.heappush(self._heap, (deadline, next(self._order), sleeper))
        if deadline < self._waiting_until:
            self._lot.unpark_all()

        def abort(_: object) -> Abort:
            sleeper.task = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)


_TIMER: RunVar[_Timer] = RunVar("lab.apps.pacing timer")


def _timer() -> _Timer:
    try:
        return _TIMER.get()
    except LookupError:
        timer = _Timer()
        _TIMER.set(timer)
        spawn_system_task(timer.run, name="lab.apps.pacing timer")
        return timer


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` (at most TICK after it) on the run's shared timer; a
    checkpoint, like ``trio.sleep_until``."""
    await _timer().sleep_until(deadline)


class Schedule:
    """Ticks ``interval`` seconds apart on a grid that starts at the first :meth:`tick`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: float | None = None  # when the last tick was due

    def start(self) -> None:
        """Start the grid now: the first :meth:`tick` is one interval from now."""
        self._next = trio.current_time()

    async def tick(self) -> None:
        """Return at the next tick: at once the first time (and always, for an interval
        of 0, without a checkpoint), then one interval after the previous tick was due,
        or at once when that time has passed."""
        now = trio.current_time()
        if self._next is None or not self.interval:
            self._next = now
            return
        self._next = max(self._next + self.interval, now)
        await sleep_until(self._next)
