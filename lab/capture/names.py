"""File names for the traces of single connections: when, which connection, what it asked.

A server that writes one trace per connection (``lab serve --trace-dir``) names each file
by the time the connection was accepted, the connection's number and its first request::

    20261206T053012.345Z-c00001-GET-tokens-n-5.trace

- the time is UTC, in ISO 8601's basic format to the millisecond, so that a directory
  listing sorts the files in the order the connections came (local time would go back an
  hour once a year);
- ``c`` and the server's count of accepted connections, five digits and more;
- the method and the request target, every run of characters other than ASCII letters,
  digits, ``.`` and ``_`` made one ``-``, cut to :data:`TARGET_CHARS` characters; a
  connection that never sent a whole request says ``no-request``.

:func:`claim_stem` never reuses a name: if ``NAME.trace`` or ``NAME.pcapng`` is there
already (a second run into the same directory), it takes ``NAME-2``, ``NAME-3`` ...
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Final

__all__ = ["MAX_SUFFIX", "TARGET_CHARS", "claim_stem", "connection_stem", "utc_stamp"]

# Characters of the sanitised request target kept in a file name: enough to tell
# /tokens?n=5 from /events?n=5&stream=x at a glance, short enough that the whole name
# stays far below the 255 bytes file systems allow.
TARGET_CHARS: Final = 40
# How many names claim_stem tries (NAME, NAME-2 ... NAME-1000) before it gives up: a
# thousand connections with the same millisecond, number and target is a directory
# someone fills on purpose.
MAX_SUFFIX: Final = 1000
# Method names are tokens (RFC 9110 §9.1); a name keeps at most this much of one.
_METHOD_CHARS: Final = 16
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._]+")


def utc_stamp(wall: float) -> str:
    """``wall`` (seconds since the epoch) as ``YYYYMMDDTHHMMSS.mmmZ``."""
    seconds = int(wall)
    millis = int((wall - seconds) * 1000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _safe(text: str, limit: int) -> str:
    return _UNSAFE.sub("-", text).strip("-.")[:limit].rstrip("-.")


def connection_stem(number: int, method: str, target: str, wall: float | None = None) -> str:
    """The file name (without suffix) of connection ``number``'s trace.

    ``method`` and ``target`` are its first request's ("" if it made none); ``wall`` is
    when it was accepted, or None to leave the time out.
    """
    parts = [] if wall is None else [utc_stamp(wall)]
    parts.append(f"c{number:05d}")
    request = "-".join(p for p in (_safe(method, _METHOD_CHARS), _safe(target, TARGET_CHARS)) if p)
    parts.append(request if method else "no-request")
    return "-".join(parts)


def claim_stem(directory: Path, base: str) -> str:
    """A stem no ``.trace`` or ``.pcapng`` in ``directory`` has yet, made ours at once by
    creating its ``.trace`` empty (so that a writer beside us cannot take it too)."""
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(1, MAX_SUFFIX + 1):
        stem = base if k == 1 else f"{base}-{k}"
        if (directory / f"{stem}.pcapng").exists():
            continue
        try:
            with (directory / f"{stem}.trace").open("x", encoding="utf-8"):
                pass
        except FileExistsError:
            continue
        return stem
    raise FileExistsError(f"{directory}: {base}.trace and {MAX_SUFFIX - 1} more names are taken")
