"""lab.apps.pacing: sleepers wake at their deadline (never before, at most a tick after),
in deadline order, through one timer; a cancelled sleeper wakes at once and the rest are
not disturbed; sleepers due within one tick wake together."""

from __future__ import annotations

import trio
import trio.testing

from lab.apps.pacing import TICK, pace


def _run(fn: object) -> object:
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def test_each_sleeper_wakes_at_its_deadline_at_most_a_tick_late_in_order() -> None:
    async def main() -> list[tuple[float, float]]:
        start = trio.current_time()
        woke: list[tuple[float, float]] = []

        async def sleeper(seconds: float) -> None:
            await pace(seconds)
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
            await pace(2.0)
            other_at = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            with trio.move_on_after(0.3):
                await pace(60.0)
            cancelled_at = trio.current_time() - start
        return cancelled_at, other_at

    cancelled_at, other_at = _run(main)  # type: ignore[misc]
    assert 0.3 <= cancelled_at < 0.3 + TICK
    assert 2.0 <= other_at <= 2.0 + TICK + 1e-9


def test_sleepers_due_within_one_tick_wake_together() -> None:
    async def main() -> set[float]:
        woke: set[float] = set()

        async def sleeper(offset: float) -> None:
            await pace(1.0 + offset)
            woke.add(trio.current_time())

        async with trio.open_nursery() as nursery:
            await trio.sleep(TICK * 0.3)  # off a tick boundary: all round up to the next
            for i in range(1000):
                nursery.start_soon(sleeper, i * TICK / 2000)
        return woke

    assert len(_run(main)) == 1  # type: ignore[arg-type]


def test_zero_is_a_checkpoint() -> None:
    async def main() -> bool:
        with trio.CancelScope() as scope:
            scope.cancel()
            await pace(0)
        return scope.cancelled_caught

    assert _run(main)
