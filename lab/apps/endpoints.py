"""The HTTP/1.1-era endpoints: index, fixed, tokens, chat, trailers.

Every endpoint streams through :class:`~lab.apps.interface.ResponseStream`, one ``send``
per token, so the framing (chunk or DATA frame) is the server's business.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from lab.apps.interface import HTTPError, Request, ResponseStream
from lab.apps.pacing import Schedule
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

__all__ = ["FIXED_PIECE", "MAX_JSON_INT_DIGITS", "chat", "fixed", "tokens", "trailers"]

TEXT: Final = "text/plain; charset=utf-8"
NDJSON: Final = "application/x-ndjson"
JSON: Final = "application/json"
SSE: Final = "text/event-stream"
DEFAULT_PROMPT: Final = "hello"
# The framings POST /chat can answer with, in the order it prefers them when the client
# accepts several equally.
CHAT_TYPES: Final = ("text/plain", SSE, NDJSON, JSON)
_FILLER: Final = b"streamlab "
# /fixed sends its body in pieces of this size, one send each, so that a request holds one
# piece in memory however large its body and however slowly (or not at all) the client
# reads. 16 KiB is the largest DATA frame payload every HTTP/2 peer accepts
# (SETTINGS_MAX_FRAME_SIZE's initial value, 2**14, RFC 9113 §6.5.2) and the largest TLS
# plaintext record (RFC 8446 §5.1): a piece fits one frame and one record, and the 1,024
# sends of the largest body (MAX_FIXED_SIZE) keep the per-send cost small.
FIXED_PIECE: Final = 16 * 1024
# The filler repeated a little past one piece: a piece starting at any offset into the
# filler (0..len(_FILLER) - 1) is one slice of it.
_FILLER_RUN: Final = _FILLER * (FIXED_PIECE // len(_FILLER) + 2)
# The longest integer accepted in a POST /chat body, in digits (RFC 8259 §9 lets a parser
# limit the range of numbers). Every number the body carries fits in 5 digits (MAX_N,
# MAX_INTERVAL_MS); 100 still lets an out-of-range value be answered with the allowed
# range, while a longer one is refused before int() converts it (that conversion is
# quadratic in the number of digits; Python's own cap, sys.get_int_max_str_digits(), can
# be raised or lifted by the host program).
MAX_JSON_INT_DIGITS: Final = 100


def _stream_knobs(request: Request) -> tuple[int, float]:
    n = int_param(request, "n", DEFAULT_N, 0, MAX_N)
    interval_ms = int_param(request, "interval_ms", DEFAULT_INTERVAL_MS, 0, MAX_INTERVAL_MS)
    return n, interval_ms / 1000


async def fixed(request: Request, response: ResponseStream) -> None:
    """A whole body with Content-Length: the non-streaming baseline.

    The body is ``size`` bytes of "streamlab streamlab ...", sent in pieces of at most
    FIXED_PIECE bytes: with a Content-Length the pieces are only how the server hands the
    bytes on, not framing (RFC 9112 §6.2), so the client sees one body either way.
    """
    size = int_param(request, "size", 64, 0, MAX_FIXED_SIZE)
    await response.start(200, [("content-type", TEXT), ("content-length", str(size))])
    sent = 0
    while sent < size:
        length = min(FIXED_PIECE, size - sent)
        phase = sent % len(_FILLER)
        await response.send(_FILLER_RUN[phase : phase + length])
        sent += length
    await response.end()


async def tokens(request: Request, response: ResponseStream) -> None:
    """text/plain, one token per send, then a last send of ``\\n[DONE]\\n``."""
    n, interval = _stream_knobs(request)
    prompt = request.query.get("prompt", DEFAULT_PROMPT)[:MAX_PROMPT_CHARS]
    await response.start(200, [("content-type", TEXT), ("cache-control", "no-store")])
    schedule = Schedule(interval)  # the first token at once, then on the grid
    for token in tokens_for(prompt, n):
        await schedule.tick()
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
    schedule = Schedule(interval)  # the first token at once, then on the grid
    for token in tokens_for(prompt, n):
        await schedule.tick()
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


class _IntTooLong(Exception):
    pass


def _json_int(digits: str) -> int:
    # json.loads hands every integer literal here (optional minus sign, then digits).
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _IntTooLong
    return int(digits)


def _chat_body(request: Request) -> tuple[str, int, float]:
    try:
        payload = json.loads(request.body or b"{}", parse_int=_json_int)
    except RecursionError:
        # The parser recurses once per nested array or object (RFC 8259 §9 lets a parser
        # limit the depth); a body like "[[[[..." is refused, not a crash.
        raise HTTPError(400, "request body is JSON nested too deeply to parse\n") from None
    except _IntTooLong:
        raise HTTPError(
            400, f"request body has an integer longer than {MAX_JSON_INT_DIGITS} digits\n"
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError among them
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
        schedule = Schedule(interval)  # the first token at once, then on the grid
        for _ in words:  # the reply is only whole once every token exists
            await schedule.tick()
        await response.start(200, [("content-type", JSON), ("content-length", str(len(data)))])
        await response.send(data)
        await response.end()
        return
    content_type = TEXT if media == "text/plain" else NDJSON
    await response.start(200, [("content-type", content_type), ("cache-control", "no-store")])
    schedule = Schedule(interval)  # the first token at once, then on the grid
    for i, token in enumerate(words):
        await schedule.tick()
        if media == NDJSON:
            line = json.dumps({"index": i, "token": token}) + "\n"
            await response.send(line.encode("utf-8"))
        else:
            await response.send(token.encode("utf-8"))
    end = '{"done": true}\n' if media == NDJSON else f"\n{DONE}\n"
    await response.send(end.encode())
    await response.end()
