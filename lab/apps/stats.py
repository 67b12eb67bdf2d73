"""``GET /stats``: what the servers of this process hold right now, as JSON (the reports
of lab.server.reports)."""

from __future__ import annotations

import json

from lab.server.interface import Request, ResponseStream
from lab.server.reports import register, reports, unregister

__all__ = ["register", "stats", "unregister"]


async def stats(request: Request, response: ResponseStream) -> None:
    body = json.dumps({"servers": reports()}, indent=1).encode()
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
