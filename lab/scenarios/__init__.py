"""Named, reproducible experiments: a lab server, a client script, and the trace it leaves.

Each scenario runs against a lab server on 127.0.0.1 (started for it, port 0 unless one is
given) and returns the client's trace. ``lab capture`` writes these traces to
``captures/``; ``lab tour`` runs them all in order with the story of each.
"""

from __future__ import annotations

from lab.capture.trace import Trace
from lab.scenarios.http1 import HTTP1_SCENARIOS
from lab.scenarios.http2 import HTTP2_SCENARIOS
from lab.scenarios.mcp import MCP_SCENARIOS
from lab.scenarios.polling import POLLING_SCENARIOS
from lab.scenarios.runner import SCENARIO_DATE, Scenario, ScenarioFn, run_in_order, run_scenario
from lab.scenarios.sse import SSE_SCENARIOS
from lab.scenarios.websocket import WEBSOCKET_SCENARIOS

__all__ = [
    "SCENARIOS",
    "SCENARIO_DATE",
    "Scenario",
    "ScenarioFn",
    "get",
    "run_scenario",
    "run_scenarios",
]

# The order of `lab scenarios`, `lab tour` and captures/.
SCENARIOS: tuple[Scenario, ...] = (
    *HTTP1_SCENARIOS,
    *SSE_SCENARIOS,
    *HTTP2_SCENARIOS,
    *MCP_SCENARIOS,
    *WEBSOCKET_SCENARIOS,
    *POLLING_SCENARIOS,
)


def get(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    known = ", ".join(s.name for s in SCENARIOS)
    raise KeyError(f"no scenario {name!r}; known: {known}")


async def run_scenarios(names: list[str]) -> list[Trace]:
    """Run scenarios in order against one lab server."""
    return await run_in_order([get(n) for n in names])
