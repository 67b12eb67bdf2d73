"""``GET /stats``: what the servers of this process hold right now, as JSON.

Servers register a function that reports on themselves (lab.server.listener does, for as
long as it serves); the endpoint lists every report. The attack tests and ``lab bench
attacks`` read it from outside the server's process to check that connections, tasks and
buffered bytes return to their baseline after each attack.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lab.apps.interface import Request, ResponseStream

__all__ = ["register", "stats", "unregister"]

Report = Callable[[], dict[str, Any]]
_reports: list[Report] = []


def register(report: Report) -> None:
    _reports.append(report)


def unregister(report: Report) -> None:
    _reports.remove(report)


async def stats(request: Request, response: ResponseStream) -> None:
    body = json.dumps({"servers": [report() for report in _reports]}, indent=1).encode()
    await response.start(
        200,
        [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
        ],
    )
    await response.send(body)
    await response.end()
