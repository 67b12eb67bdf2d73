"""Query and body knobs shared by the endpoints, each with a named bound."""

from __future__ import annotations

from typing import Final

from lab.apps.interface import HTTPError, Request

__all__ = [
    "DEFAULT_INTERVAL_MS",
    "DEFAULT_N",
    "MAX_FIXED_SIZE",
    "MAX_INTERVAL_MS",
    "MAX_N",
    "MAX_PROMPT_CHARS",
    "int_param",
]

# Small defaults so that tests and demos finish quickly but still show tokens arriving
# over time (8 tokens, 25 ms apart: a 200 ms reply).
DEFAULT_N: Final = 8
DEFAULT_INTERVAL_MS: Final = 25
# Upper bounds so that one request cannot tie a connection up forever or make the server
# build a huge body: 10,000 tokens at most, 10 s between two of them at most.
MAX_N: Final = 10_000
MAX_INTERVAL_MS: Final = 10_000
# The largest /fixed body: 16 MiB is plenty to compare against a stream. The body is sent
# in small pieces, so this bounds how long one request can keep a connection busy, not
# the memory it takes.
MAX_FIXED_SIZE: Final = 16 * 1024 * 1024
# A prompt only seeds the token source; 4,096 characters is far beyond any demo.
MAX_PROMPT_CHARS: Final = 4096


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name``, or 400 naming the parameter and its range."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise HTTPError(400, f"query parameter {name}={raw!r} is not an integer\n") from None
    if not low <= value <= high:
        raise HTTPError(400, f"query parameter {name}={value} is outside {low}..{high}\n")
    return value
