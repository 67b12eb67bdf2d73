"""Interpreting the lines of an event stream: WHATWG HTML §9.2.6, "process the line",
"process the field" and "dispatch the event".

:class:`~lab.wire.sse.SSEDecoder` finds the lines; the methods here, which it inherits,
give each line its meaning and its segment, and keep the three buffers of §9.2.6 (data,
event type, last event ID) and the event source's state. :meth:`LineInterpreter._line`
takes one line at a time, exactly as the standard words it, and checks the data buffer's
limit. :meth:`LineInterpreter._lines_fast` takes a whole read's lines at once when they
cannot break a limit, interpreting the common lines (blank, ``data``, ``event``, ``id``)
itself and handing the others to ``_line``; it must give exactly what ``_line`` gives
(tests/wire/test_sse_paths.py holds it to that).
"""

from __future__ import annotations

from typing import NoReturn

from lab.wire.segment import Segment
from lab.wire.sse_segments import (
    _DATA_APPENDED,
    _ID_NUL,
    _ID_RESET,
    _ID_SET,
    _RETRY_BAD,
    _RETRY_EMPTY,
    _TYPE_SET,
    _UNKNOWN,
    Comment,
    Dispatch,
    Event,
    Field,
    SSEError,
    _DispatchBuilder,
    _EventBuilder,
    _FieldBuilder,
    _make_dispatch,
    _make_event,
    _make_field,
)

__all__ = ["LineInterpreter"]

_SP = 0x20


class LineInterpreter:
    """The §9.2.6 state and line processing of :class:`~lab.wire.sse.SSEDecoder`, which
    sets these attributes up."""

    __slots__ = (
        "_data",
        "_data_size",
        "_id_buffer",
        "_last_event_id",
        "_max_data",
        "_retry",
        "_type",
    )

    # The three buffers of §9.2.6; the data buffer as its values, LFs implied, and the
    # UTF-8 size of what it holds (values plus LFs), for the limit.
    _data: list[str]
    _data_size: int
    _type: str
    _id_buffer: str
    # The event source's state: last event ID string and reconnection time.
    _last_event_id: str
    _retry: int | None
    _max_data: int

    def _lines_fast(self, lines: list[bytes], here: int, eol: int, out: list[Segment]) -> int:
        """Process whole lines that cannot break a limit, each followed by an ``eol``-byte
        line ending, the first at absolute offset ``here``; return the offset after the
        last. Blank lines, and ``data``, ``event`` and ``id`` fields with a ':', are
        processed right here exactly as :meth:`_dispatch` and :meth:`_line` would; other
        lines go to :meth:`_line`. The segments are built through their mutable twins
        (see :mod:`lab.wire.sse_segments`)."""
        append = out.append
        parts = self._data  # the data buffer; _line appends to this same list
        data_size = self._data_size
        try:
            for line in lines:
                if not line:
                    # A blank line: dispatch the event (§9.2.6, as in _dispatch).
                    end = here + eol
                    seg = _DispatchBuilder()
                    seg.start = here
                    seg.end = end
                    seg.last_event_id = last_id = self._last_event_id = self._id_buffer
                    if parts:
                        event = _EventBuilder()
                        event.type = self._type or "message"
                        event.data = "\n".join(parts)  # one part: that very str
                        event.last_event_id = last_id
                        event.__class__ = Event
                        seg.event = event
                        parts.clear()
                        data_size = 0
                    else:
                        seg.event = None
                    self._type = ""
                    seg.__class__ = Dispatch
                    append(seg)
                    here = end
                    continue
                size = len(line)
                end = here + size + eol
                head = line[:6]
                value_start = 6 if head == b"data: " else 5 if head[:5] == b"data:" else 0
                if value_start:
                    # "data": append the value and an LF to the data buffer.
                    name_end = 4
                    raw = line[value_start:]
                    try:
                        value = raw.decode()
                    except UnicodeDecodeError:
                        value = raw.decode("utf-8", "replace")
                    parts.append(value)
                    data_size += size - value_start + 1
                    name, effect = "data", _DATA_APPENDED
                elif head == b"event:" or (head[:3] == b"id:" and b"\x00" not in line):
                    # "event": set the event type buffer. "id": set the last event ID
                    # buffer, unless the value contains U+0000 NULL (then _line ignores it).
                    name_end = 5 if head == b"event:" else 2
                    value_start = name_end + 1
                    if line[value_start : value_start + 1] == b" ":
                        value_start += 1
                    raw = line[value_start:]
                    try:
                        value = raw.decode()
                    except UnicodeDecodeError:
                        value = raw.decode("utf-8", "replace")
                    if name_end == 5:
                        self._type = value
                        name, effect = "event", _TYPE_SET
                    else:
                        self._id_buffer = value
                        name, effect = "id", _ID_SET if value else _ID_RESET
                else:
                    # Anything else: a comment, another field, a line with no ':'.
                    self._data_size = data_size
                    self._line(line, here, eol, out)
                    data_size = self._data_size
                    here = end
                    continue
                seg = _FieldBuilder()
                seg.start = here
                seg.end = end
                seg.name = name
                seg.value = value
                seg.effect = effect
                seg.name_end = here + name_end
                seg.value_start = here + value_start
                seg.value_end = here + size
                seg.__class__ = Field
                append(seg)
                here = end
        finally:
            self._data_size = data_size
        return here

    def _line(self, line: bytes, start: int, ending: int, out: list[Segment]) -> None:
        """Process one line: ``line`` is its bytes without the line ending, ``start`` the
        absolute offset of its first byte, ``ending`` the length of its line ending."""
        end = start + len(line) + ending
        if not line:
            # "If the line is empty (a blank line): dispatch the event."
            self._dispatch(start, end, out)
            return
        colon = line.find(b":")
        if colon == 0:
            # "If the line starts with a U+003A COLON character (:): ignore the line."
            out.append(Comment(start, end, line[1:].decode("utf-8", "replace")))
            return
        if colon < 0:
            # "Otherwise, the string is not empty but does not contain a U+003A COLON":
            # the whole line is the field name, the value is the empty string.
            name_end = value_start = len(line)
        else:
            # "If the line contains a U+003A COLON": name before the first one, value
            # after it, and "if value starts with a U+0020 SPACE character, remove it".
            name_end = colon
            value_start = colon + 1
            if value_start < len(line) and line[value_start] == _SP:
                value_start += 1
        raw_name = line[:name_end]
        raw_value = line[value_start:]
        value = raw_value.decode("utf-8", "replace")
        # "Process the field": names compared literally, no case folding.
        if raw_name == b"data":
            size = self._data_size + len(raw_value) + 1
            if size > self._max_data:
                self._data_too_long(start + value_start, raw_value)
            self._data.append(value)  # the LF after it is implied: see _dispatch
            self._data_size = size
            name, effect = "data", _DATA_APPENDED
        elif raw_name == b"event":
            self._type = value
            name, effect = "event", _TYPE_SET
        elif raw_name == b"id":
            # "If the field value does not contain U+0000 NULL, then set the last event
            # ID buffer to the field value. Otherwise, ignore the field."
            name = "id"
            if b"\x00" in raw_value:
                effect = _ID_NUL
            else:
                self._id_buffer = value
                effect = _ID_SET if value else _ID_RESET
        elif raw_name == b"retry":
            # "If the field value consists of only ASCII digits, then interpret the field
            # value as an integer in base ten" and set the reconnection time to it.
            name = "retry"
            if not raw_value:
                effect = _RETRY_EMPTY
            elif not raw_value.isdigit():  # bytes.isdigit() knows only ASCII digits
                effect = _RETRY_BAD
            else:
                self._retry = int(raw_value)
                effect = f"reconnection time set to {self._retry} ms"
        else:
            name, effect = raw_name.decode("utf-8", "replace"), _UNKNOWN
        out.append(
            _make_field(
                start,
                end,
                name,
                value,
                effect,
                start + name_end,
                start + value_start,
                start + len(line),
            )
        )

    def _dispatch(self, start: int, end: int, out: list[Segment]) -> None:
        """A blank line: dispatch the event (§9.2.6, the steps for web browsers)."""
        last_id = self._last_event_id = self._id_buffer  # step a
        parts = self._data
        if not parts:  # step b
            self._type = ""
            out.append(_make_dispatch(start, end, None, last_id))
            return
        # The buffer is every value followed by an LF; step c removes the last LF.
        data = parts[0] if len(parts) == 1 else "\n".join(parts)
        event = _make_event(self._type or "message", data, last_id)  # step d
        parts.clear()  # step e (the same list: _lines_fast holds it)
        self._data_size = 0
        self._type = ""
        out.append(_make_dispatch(start, end, event, last_id))

    def _data_too_long(self, value_start: int, raw_value: bytes) -> NoReturn:
        """Refuse a data line that does not fit in the data buffer, at its first byte past
        the limit (at its line ending, if only the LF it appends does not fit)."""
        room = self._max_data - self._data_size
        raise SSEError(
            f"event data longer than {self._max_data} bytes (MAX_DATA_SIZE)",
            value_start + min(room, len(raw_value)),
        )
