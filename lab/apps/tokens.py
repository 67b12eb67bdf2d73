"""A deterministic token source: the same prompt always gives the same reply.

Stands in for a language model so that captures are reproducible byte for byte. The words
are picked by a SHA-256 of the prompt, so different prompts give different replies.

Token ``i`` depends only on the prompt and ``i``: :func:`token_at` computes it directly, in
constant time whatever ``i`` is, so a consumer that needs one late token (an SSE stream
resumed at event 10**15, say) never builds the tokens before it.
"""

from __future__ import annotations

import hashlib

__all__ = ["DONE", "token_at", "tokens_for"]

DONE = "[DONE]"

_WORDS = [
    "bytes",
    "stream",
    "over",
    "the",
    "wire",
    "in",
    "chunks",
    "while",
    "the",
    "model",
    "thinks",
    "and",
    "each",
    "token",
    "arrives",
    "as",
    "soon",
    "as",
    "it",
    "is",
    "ready",
    "so",
    "the",
    "reader",
    "sees",
    "the",
    "answer",
    "grow",
    "one",
    "piece",
    "at",
    "a",
    "time",
    "instead",
    "of",
    "waiting",
    "for",
    "the",
    "whole",
    "reply",
    "to",
    "finish",
]


def _seed(prompt: str) -> bytes:
    return hashlib.sha256(prompt.encode("utf-8")).digest()


def _token(seed: bytes, i: int) -> str:
    word = _WORDS[(seed[i % len(seed)] + 7 * i) % len(_WORDS)]
    return word if i == 0 else " " + word


def token_at(prompt: str, i: int) -> str:
    """Token ``i`` (from 0) of the reply to ``prompt``: the same string as
    ``tokens_for(prompt, i + 1)[i]``, without making the ``i`` tokens before it."""
    if i < 0:
        raise ValueError(f"token index must be >= 0, not {i}")
    return _token(_seed(prompt), i)


def tokens_for(prompt: str, n: int) -> list[str]:
    """``n`` tokens for ``prompt``: words, each but the first with its leading space.

    Linear in ``n`` (one hash of the prompt, then constant work per token); the list is
    the caller's to bound, and every endpoint bounds ``n`` by ``MAX_N``.
    """
    seed = _seed(prompt)
    return [_token(seed, i) for i in range(n)]
