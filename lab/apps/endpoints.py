"""The HTTP/1.1-era endpoints: index, fixed, tokens, chat, trailers.

Every endpoint streams through :class:`~lab.apps.interface.ResponseStream`, one ``send``
per token, so the framing (chunk or DATA frame) is the server's business.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

import trio

from lab.apps.interface import HTTPError, Request, ResponseStream
from lab.apps.params import (
    DEFAULT_INTERVAL_MS,
    DEFAULT_N,
    MAX_FIXED_SIZE,
    MAX_INTERVAL_MS,
    MAX_N,
    MAX_PROMPT_CHARS,
    int_param,
)
from lab.apps.sse import chat_sse
from lab.apps.tokens import DONE, tokens_for

__all__ = ["chat", "fixed", "tokens", "trailers"]

TEXT: Final = "text/plain; charset=utf-8"
NDJSON: Final = "application/x-ndjson"
JSON: Final = "application/json"
SSE: Final = "text/event-stream"
DEFAULT_PROMPT: Final = "hello"
# The framings POST /chat can answer with, in the order it prefers them when the client
# accepts several equally.
CHAT_TYPES: Final = ("text/plain", SSE, NDJSON, JSON)
_FILLER: Final = b"streamlab "


def _stream_knobs(request: Request) -> tuple[int, float]:
    n = int_param(request, "n", DEFAULT_N, 0, MAX_N)
    interval_ms = int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_INTERVAL_MS)
    return n, interval_ms / 1000


async def fixed(request: Request, response: ResponseStream) -> None:
    """A whole body with Content-Length: the non-streaming baseline."""
    size = int_param(request, "size", 64, 0, MAX_FIXED_SIZE)
    body = (_FILLER * (size // len(_FILLER) + 1))[:size]
    await response.start(200, [("content-type", TEXT), ("content-length", str(size))])
    await response.send(body)
    await response.end()


async def _pace(i: int, interval: float) -> None:
    # Wait between tokens, not before the first: the first byte goes out at once.
    if i and interval:
        await trio.sleep(interval)


async def tokens(request: Request, response: ResponseStream) -> None:
    """text/plain, one token per send, then a last send of ``\\n[DONE]\\n``."""
    n, interval = _stream_knobs(request)
    prompt = request.query.get("prompt", DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    await response.start(200, [("content-type", TEXT), ("cache-control", "no-store")])
    for i, token in enumerate(tokens_for(prompt, n)):
        await _pace(i, interval)
        await response.send(token.encode("utf-8"))
    await response.send(f"\n{DONE}\n".encode())
    await response.end()


async def trailers(request: Request, response: ResponseStream) -> None:
    """A token stream whose checksum and count follow the body as trailer fields.

    The classic use of trailers: a value only known once the body has been sent.
    """
    n, interval = _stream_knobs(request)
    prompt = request.query.get("prompt", DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    await response.start(
        200,
        [
            ("content-type", TEXT),
            ("trailer", "x-token-count, x-body-sha256"),
        ],
    )
    digest = hashlib.sha256()
    count = 0
    for i, token in enumerate(tokens_for(prompt, n)):
        await _pace(i, interval)
        data = token.encode("utf-8")
        digest.update(data)
        count += 1
        await response.send(data)
    await response.end([("x-token-count", str(count)), ("x-body-sha256", digest.hexdigest())])


def _accepted(accept: str | None) -> str:
    """Pick the framing for POST /chat from an Accept header (RFC 9110 §12.5.1).

    Media ranges with q=0 are refused; among the rest the highest q wins and ties go to
    the order of CHAT_TYPES. No Accept header means anything goes: text/plain.
    """
    if accept is None:
        return CHAT_TYPES[0]
    best: tuple[float, int] | None = None
    chosen = None
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        for rank, candidate in enumerate(CHAT_TYPES):
            major = candidate.split("/")[0]
            if q > 0 and media in (candidate, f"{major}/*", "*/*"):
                key_ = (q, -rank)
                if best is None or key_ > best:
                    best, chosen = key_, candidate
    if chosen is None:
        raise HTTPError(
            406,
            f"POST /chat can answer as {', '.join(CHAT_TYPES)}; Accept was {accept!r}\n",
        )
    return chosen


def _chat_body(request: Request) -> tuple[str, int, float]:
    try:
        payload = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, f"request body is not JSON: {exc}\n") from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "request body must be a JSON object\n")
    prompt = payload.get("prompt", DEFAULT_PROMPT)
    n = payload.get("n", DEFAULT_N)
    interval_ms = payload.get("interval_ms", DEFAULT_INTERVAL_MS)
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        raise HTTPError(400, f"prompt must be a string of at most {MAX_PROMPT_CHARS} chars\n")
    for name, value, high in (("n", n, MAX_N), ("interval_ms", interval_ms, MAX_INTERVAL_MS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise HTTPError(400, f"{name} must be an integer in 0..{high}\n")
    return prompt, n, interval_ms / 1000


async def chat(request: Request, response: ResponseStream) -> None:
    """The same deterministic reply, framed by what the request's Accept asks for."""
    media = _accepted(request.header("accept"))
    prompt, n, interval = _chat_body(request)
    words = tokens_for(prompt, n)
    if media == SSE:
        await chat_sse(response, words, interval)
        return
    if media == JSON:
        body = json.dumps({"prompt": prompt, "reply": "".join(words), "tokens": words})
        data = body.encode("utf-8") + b"\n"
        for i in range(len(words)):  # the reply is only whole once every token exists
            await _pace(i, interval)
        await response.start(200, [("content-type", JSON), ("content-length", str(len(data)))])
        await response.send(data)
        await response.end()
        return
    content_type = TEXT if media == "text/plain" else NDJSON
    await response.start(200, [("content-type", content_type), ("cache-control", "no-store")])
    for i, token in enumerate(words):
        await _pace(i, interval)
        if media == NDJSON:
            line = json.dumps({"index": i, "token": token}) + "\n"
            await response.send(line.encode("utf-8"))
        else:
            await response.send(token.encode("utf-8"))
    end = '{"done": true}\n' if media == NDJSON else f"\n{DONE}\n"
    await response.send(end.encode())
    await response.end()
