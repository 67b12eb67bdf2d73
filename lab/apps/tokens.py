"""A deterministic token source: the same prompt always gives the same reply.

Stands in for a language model so that captures are reproducible byte for byte. The words
are picked by a SHA-256 of the prompt, so different prompts give different replies.
"""

from __future__ import annotations

import hashlib

__all__ = ["DONE", "tokens_for"]

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


def tokens_for(prompt: str, n: int) -> list[str]:
    """``n`` tokens for ``prompt``: words, each but the first with its leading space."""
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    out: list[str] = []
    for i in range(n):
        word = _WORDS[(seed[i % len(seed)] + 7 * i) % len(_WORDS)]
        out.append(word if i == 0 else " " + word)
    return out
