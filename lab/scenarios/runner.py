"""What a scenario is, and how scenarios run: against a lab server on 127.0.0.1 that
sends a fixed Date, one recorder per scenario, one trace each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from lab.apps import app as lab_app
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.server import Server, serve_tcp

__all__ = [
    "SCENARIO_DATE",
    "Scenario",
    "ScenarioFn",
    "run_in_order",
    "run_scenario",
    "serve_for_scenarios",
]

ScenarioFn = Callable[[Server, Recorder], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str  # one line, for `lab scenarios`
    story: str  # what to look at, for `lab tour`
    script: ScenarioFn


# Scenario servers send this Date instead of the clock's, so that captures reproduce byte
# for byte: in HTTP/1.1 a date could be normalised afterwards, but in HTTP/2 it is inside
# HPACK-compressed (Huffman-coded) header blocks. `lab serve` uses the real clock.
SCENARIO_DATE = b"Thu, 01 Jan 1970 00:00:00 GMT"


def _scenario_date() -> bytes:
    return SCENARIO_DATE


async def serve_for_scenarios(*, task_status: trio.TaskStatus[Server]) -> None:
    await serve_tcp(lab_app, date_source=_scenario_date, task_status=task_status)


async def run_scenario(scenario: Scenario, server: Server | None = None) -> Trace:
    """Run one scenario and return the client's trace (starts a server if not given)."""
    trace = Trace(name=scenario.name, description=scenario.summary)
    rec = Recorder(trace)
    if server is not None:
        await scenario.script(server, rec)
        return trace
    async with trio.open_nursery() as nursery:
        own = await nursery.start(serve_for_scenarios)
        await scenario.script(own, rec)
        own.shutdown()
    return trace


async def run_in_order(chosen: Sequence[Scenario]) -> list[Trace]:
    """Run scenarios in order against one lab server."""
    traces = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_for_scenarios)
        for scenario in chosen:
            traces.append(await run_scenario(scenario, server))
        server.shutdown()
    return traces
