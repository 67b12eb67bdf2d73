"""Polling scenarios: the transports before streaming, on the lab's ``/poll`` and
``/longpoll`` (:mod:`lab.apps.poll`), read by the clients ``lab compare`` uses
(:mod:`lab.client.transports`).

A poll stream produces token ``i`` at ``start + i * interval_ms`` on the server's clock,
from the first request that names it, whoever asks; every request is one whole JSON answer
on one keep-alive connection (RFC 9112 §9.3). The schedules here keep every request far
from the moment a token is produced (:data:`SHORT_POLL_MS` against :data:`INTERVAL_MS`), so
each answer holds the same tokens on every run.

The server keeps a poll stream by its name for two minutes, on the clock of the run that
started it; a scenario run twice in one process must not find the first run's stream, so
each run names its stream afresh: ``poll-short.<8 hex digits>``, the digits replaced when
traces are compared (:mod:`lab.capture.normalize`).
"""

from __future__ import annotations

import secrets
from typing import Final

from lab.capture.tap import Recorder
from lab.client.transports import StreamSpec, long_poll, short_poll
from lab.scenarios.runner import Scenario
from lab.server import Server

__all__ = ["INTERVAL_MS", "POLLING_SCENARIOS", "SHORT_POLL_MS"]

# Three tokens 300 ms apart: produced at 0, 300 and 600 ms. Short polls at 0, 180, 360,
# 540 and 720 ms: each at least 60 ms from a token's moment, so polls 2 and 4 find
# nothing new and 1, 3 and 5 one token each.
N: Final = 3
INTERVAL_MS: Final = 300
SHORT_POLL_MS: Final = 180


def _spec(name: str, prompt: str) -> StreamSpec:
    return StreamSpec(
        prompt=prompt, n=N, interval_ms=INTERVAL_MS, stream=f"{name}.{secrets.token_hex(4)}",
        poll_interval_ms=SHORT_POLL_MS,
    )  # fmt: skip


async def _short(server: Server, rec: Recorder) -> None:
    run = await short_poll(server.host, server.port, _spec("poll-short", "poll"), rec)
    if len(run.tokens) != N:
        raise ConnectionError(f"short polling read {len(run.tokens)} tokens of {N}")


async def _long(server: Server, rec: Recorder) -> None:
    run = await long_poll(server.host, server.port, _spec("poll-long", "poll"), rec)
    if len(run.tokens) != N:
        raise ConnectionError(f"long polling read {len(run.tokens)} tokens of {N}")


POLLING_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "poll-short", "Short polling: GET /poll on a fixed schedule, new tokens or nothing",
        "The client asks every 180 ms for what is new since its cursor; the tokens come every "
        "300 ms. Every answer is a whole JSON body with Content-Length and Cache-Control: "
        "no-store, at once: two of the five hold no token at all, and a token waits on the "
        "server until the next poll, up to a poll interval. Each request repeats the whole "
        "head: the cost of asking, paid whether or not there is news.",
        _short,
    ),
    Scenario(
        "poll-long", "Long polling: GET /longpoll held until the next token is produced",
        "The same stream, but the server holds each request until a token past the cursor "
        "exists (or timeout_ms passes) and the client asks again at once: one request per "
        "token, none answered empty, each token sent the moment it is produced. Still a "
        "whole request and response head per token, and between answers the client has no "
        "request open, so the server could not send anything new then.",
        _long,
    ),
)  # fmt: skip
