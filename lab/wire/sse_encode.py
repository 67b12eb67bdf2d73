"""Writing an event stream (WHATWG HTML §9.2): :func:`encode_event` and :func:`encode_comment`.

Both refuse what the format cannot carry (a line break inside a line, NUL in an ``id``), so
:class:`~lab.wire.sse.SSEDecoder` reads back the event or comment that was written (CR and
CRLF inside an event's data come back as LF).
"""

from __future__ import annotations

import re
from typing import Final

# --------------------------------------------------------------------------------------
# The encoder

_LINE_ENDINGS: Final = ("\n", "\r\n", "\r")
_LINE_BREAK_RE: Final = re.compile(r"\r\n|\r|\n")


def _check_line_ending(line_ending: str) -> None:
    if line_ending not in _LINE_ENDINGS:
        raise ValueError(f"line_ending must be '\\n', '\\r\\n' or '\\r', not {line_ending!r}")


def _check_no_line_break(what: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} {value!r} contains CR or LF: it would end the line")


def encode_event(
    data: str = "",
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    line_ending: str = "\n",
) -> bytes:
    """One event: ``event``, ``id`` and ``retry`` lines if given, one ``data`` line per line
    of ``data``, then the blank line that dispatches it.

    Every line of ``data`` is written as ``data: `` + the line, so a line that starts with
    a space keeps it (the decoder removes exactly one). Data always gets at least one data
    line, so ``data=""`` writes ``data:`` and the browser dispatches an event with empty
    data (the MCP "priming event"). CRLF, CR and LF inside ``data`` all break lines and
    all come back as LF: an event's data cannot carry a CR. ``event=""`` writes ``event:``,
    which leaves the type ``message``; ``id=""`` writes ``id:``, which resets the last event
    ID.

    Raises ValueError for what the format cannot carry: CR or LF in ``event`` or ``id``,
    NUL in ``id`` (the decoder would ignore the field), a negative ``retry``, a lone
    surrogate anywhere (UnicodeEncodeError), a line ending other than LF, CRLF or CR.
    """
    _check_line_ending(line_ending)
    lines = []
    if event is not None:
        _check_no_line_break("event type", event)
        lines.append("event: " + event if event else "event:")
    if id is not None:
        _check_no_line_break("id", id)
        if "\x00" in id:
            raise ValueError(f"id {id!r} contains NUL: a browser would ignore the field")
        lines.append("id: " + id if id else "id:")
    if retry is not None:
        if type(retry) is not int:
            raise TypeError(f"retry must be an int (milliseconds), not {type(retry).__name__}")
        if retry < 0:
            raise ValueError(f"retry must not be negative, got {retry}")
        lines.append(f"retry: {retry}")
    pieces = data.split("\n") if "\r" not in data else _LINE_BREAK_RE.split(data)
    lines.extend("data: " + piece if piece else "data:" for piece in pieces)
    lines.append("")
    lines.append("")
    return line_ending.join(lines).encode("utf-8")


def encode_comment(text: str = "", *, line_ending: str = "\n") -> bytes:
    """A comment line, ``:`` + ``text``: ignored by the receiver, it keeps proxies from
    dropping an idle stream. ``text`` is written as is (``encode_comment(" ping")`` is
    ``: ping``), so :attr:`Comment.text` gives it back exactly."""
    _check_line_ending(line_ending)
    _check_no_line_break("comment", text)
    return (":" + text + line_ending).encode("utf-8")
