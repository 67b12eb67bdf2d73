"""lab.apps.pacing: sleepers wake at their deadline (never before, at most a tick after),
in deadline order, through one timer; a cancelled sleeper wakes at once and the rest are
not disturbed; sleepers due within one tick wake together."""

from __future__ import annotations

import trio
import trio.testing

from lab.apps.pacing import TICK, Schedule, sleep_until


def _run(fn: object) -> object:
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def test_each_sleeper_wakes_at_its_deadline_at_most_a_tick_late_in_order() -> None:
    async def main() -> list[tuple[float, float]]:
        start = trio.current_time()
        woke: list[tuple[float, float]] = []

        async def sleeper(seconds: float) -> None:
            await sleep_until(trio.current_time() + seconds)
            woke.append((seconds, trio.current_time() - start))

        async with trio.open_nursery() as nursery:
            for seconds in (0.5, 0.0125, 3.0, 0.0125, 0.25, 1.0):
                nursery.start_soon(sleeper, seconds)
        return woke

    woke = _run(main)
    assert [s for s, _ in woke] == sorted(s for s, _ in woke)  # type: ignore[union-attr]
    for seconds, at in woke:  # type: ignore[union-attr]
        assert seconds <= at <= seconds + TICK + 1e-9


def test_a_cancelled_sleeper_wakes_at_once_and_the_others_keep_their_time() -> None:
    async def main() -> tuple[float, float]:
        start = trio.current_time()
        other_at = 0.0

        async def other() -> None:
            nonlocal other_at
            await sleep_until(trio.current_time() + 2.0)
            other_at = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            with trio.move_on_after(0.3):
                await sleep_until(trio.current_time() + 60.0)
            cancelled_at = trio.current_time() - start
        return cancelled_at, other_at

    cancelled_at, other_at = _run(main)  # type: ignore[misc]
    assert 0.3 <= cancelled_at < 0.3 + TICK
    assert 2.0 <= other_at <= 2.0 + TICK + 1e-9


def test_sleepers_due_within_one_tick_wake_together() -> None:
    async def main() -> set[float]:
        woke: set[float] = set()

        async def sleeper(offset: float) -> None:
            await sleep_until(trio.current_time() + 1.0 + offset)
            woke.add(trio.current_time())

        async with trio.open_nursery() as nursery:
            await trio.sleep(TICK * 0.3)  # off a tick boundary: all round up to the next
            for i in range(1000):
                nursery.start_soon(sleeper, i * TICK / 2000)
        return woke

    assert len(_run(main)) == 1  # type: ignore[arg-type]


def test_a_sleep_that_is_already_due_is_a_checkpoint() -> None:
    async def main() -> bool:
        with trio.CancelScope() as scope:
            scope.cancel()
            await sleep_until(trio.current_time())
        return scope.cancelled_caught

    assert _run(main)


def test_a_schedule_ticks_on_its_grid_whatever_the_work_between_ticks() -> None:
    async def main() -> list[float]:
        schedule = Schedule(0.04)
        start = trio.current_time()
        ticks = []
        for work in (0.0, 0.013, 0.039, 0.0007, 0.02, 0.031):
            await schedule.tick()
            ticks.append(trio.current_time() - start)
            await trio.sleep(work)  # the time a token takes to make and send
        return ticks

    ticks = _run(main)
    for k, at in enumerate(ticks):  # type: ignore[arg-type]
        assert k * 0.04 <= at <= k * 0.04 + TICK + 1e-9  # no drift: the k-th on the grid


def test_a_late_tick_moves_the_grid_on_instead_of_hurrying_the_next() -> None:
    async def main() -> list[float]:
        schedule = Schedule(0.04)
        start = trio.current_time()
        ticks = []
        for work in (0.1, 0.0, 0.0, 0.0):
            await schedule.tick()
            ticks.append(trio.current_time() - start)
            await trio.sleep(work)
        return ticks

    first, late, after, last = _run(main)  # type: ignore[misc]
    assert first == 0
    assert 0.1 <= late <= 0.1 + TICK + 1e-9  # due at 0.04, but the work took until 0.1
    assert 0.14 <= after <= 0.14 + TICK + 1e-9  # one interval after the late one
    assert 0.18 <= last <= 0.18 + TICK + 1e-9


def test_a_started_schedule_waits_an_interval_before_its_first_tick() -> None:
    async def main() -> float:
        schedule = Schedule(0.5)
        schedule.start()
        start = trio.current_time()
        await schedule.tick()
        return trio.current_time() - start

    assert 0.5 <= _run(main) <= 0.5 + TICK + 1e-9  # type: ignore[operator]
