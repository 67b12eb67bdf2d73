"""Where running servers report what they hold (``GET /stats`` lists the reports).

A :class:`lab.server.Server` registers its ``stats`` function for as long as it serves;
the ``/stats`` endpoint (lab.apps.stats) reads every report. The attack tests and ``lab
bench attacks`` read it from outside the server's process to check that connections,
tasks and buffered bytes return to their baseline after each attack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Report", "register", "reports", "unregister"]

Report = Callable[[], dict[str, Any]]
_reports: list[Report] = []


def register(report: Report) -> None:
    _reports.append(report)


def unregister(report: Report) -> None:
    _reports.remove(report)


def reports() -> list[dict[str, Any]]:
    """Every registered server's report, now."""
    return [report() for report in _reports]
