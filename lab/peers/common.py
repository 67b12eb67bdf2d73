"""What every peer app shares: the query knobs with their bounds, the token bodies, and the
counters behind ``/stats``.

Nothing here imports a framework, so each app imports only its own. The counters are
plain module globals: each peer is one process, and every app updates them from one
thread at a time (Werkzeug's threads only add to integers, which the GIL keeps whole).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Final

from lab.apps.params import MAX_N, MAX_PROMPT_CHARS
from lab.apps.tokens import DONE, tokens_for

__all__ = [
    "DEFAULT_PROMPT",
    "MAX_PEER_INTERVAL_MS",
    "STATS",
    "Knobs",
    "Stats",
    "knobs",
    "sse_end",
    "sse_event",
    "stats_json",
    "text_end",
]

DEFAULT_PROMPT: Final = "hi"
# The longest pause between two tokens: ten minutes, so that an idle stream (one event,
# then nothing) stays idle for as long as a memory measurement takes.
MAX_PEER_INTERVAL_MS: Final = 600_000


@dataclass(frozen=True, slots=True)
class Knobs:
    tokens: list[str]
    interval: float  # seconds between two tokens (none before the first)


def _bounded(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name) or ""
    value = int(raw) if raw.isdigit() else default
    return min(value, high)


def knobs(query: Mapping[str, str]) -> Knobs:
    """``n`` (at most the lab's MAX_N), ``interval_ms`` and ``prompt``, as the lab reads
    them; a value that is not a number falls back to the default."""
    n = _bounded(query, "n", 8, MAX_N)
    interval_ms = _bounded(query, "interval_ms", 25, MAX_PEER_INTERVAL_MS)
    prompt = (query.get("prompt") or DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    return Knobs(tokens_for(prompt, n), interval_ms / 1000)


def text_end() -> bytes:
    return f"\n{DONE}\n".encode()


def sse_event(token: str) -> bytes:
    # One data line; a reader strips the one space after the colon, leaving the token.
    return f"data: {token}\n\n".encode()


def sse_end() -> bytes:
    return f"data: {DONE}\n\n".encode()


@dataclass(slots=True)
class Stats:
    started: int = 0  # token generators that began
    finished: int = 0  # ... that sent their last byte
    closed: int = 0  # ... that were stopped before the end (the client left)
    produced: int = 0  # tokens handed to the framework, over all streams

    def begin(self) -> None:
        self.started += 1

    def end(self, complete: bool) -> None:
        if complete:
            self.finished += 1
        else:
            self.closed += 1


STATS = Stats()


def stats_json() -> bytes:
    return json.dumps(asdict(STATS)).encode()
