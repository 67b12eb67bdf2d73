"""What an event stream (WHATWG HTML §9.2) decodes into: events, segments and the error.

An :class:`Event` is what a browser's EventSource dispatches.
:class:`~lab.wire.sse.SSEDecoder` reports a stream as segments, one per line (§9.2.6): the
dropped byte order mark (:class:`BOM`), a comment (:class:`Comment`), a field with what it
did to the event being built (:class:`Field`), the blank line that dispatches it
(:class:`Dispatch`) and a partial line left at the end (:class:`Incomplete`); a stream over
the decoder's limits raises :class:`SSEError`. Also here: the words :attr:`Field.effect`
uses, and the fast constructors the decoder's hot path builds fields, dispatches and events
with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

# Notes quote field values up to this many characters, then "..."; the bytes are in view.
NOTE_VALUE_CHARS: Final = 60


def _shorten(text: str) -> str:
    """A value for a note: repr-quoted, cut to NOTE_VALUE_CHARS characters."""
    if len(text) > NOTE_VALUE_CHARS:
        return repr(text[:NOTE_VALUE_CHARS]) + "..."
    return repr(text)


# --------------------------------------------------------------------------------------
# Events, errors and segments


@dataclass(frozen=True, slots=True)
class Event:
    """One event as a browser's EventSource dispatches it: a ``MessageEvent`` with this
    ``type``, ``data`` and ``lastEventId``."""

    type: str
    data: str
    last_event_id: str


class SSEError(ProtocolError):
    """The event stream broke one of the decoder's limits at byte ``offset``.

    ``segments`` (from :class:`ProtocolError`) holds what the failing
    :meth:`~lab.wire.sse.SSEDecoder.feed` (or :meth:`~lab.wire.sse.SSEDecoder.eof`) call had
    already completed.
    """


@dataclass(frozen=True, slots=True)
class BOM(Segment):
    """The byte order mark U+FEFF at the very start of the stream, which UTF-8 decode drops."""

    kind: ClassVar[str] = "sse-bom"

    def note(self) -> str:
        return "byte order mark (U+FEFF): dropped by UTF-8 decode"


@dataclass(frozen=True, slots=True)
class Comment(Segment):
    """A line starting with ':', with its line ending; ``text`` is what follows the ':'."""

    text: str

    kind: ClassVar[str] = "sse-comment"

    def note(self) -> str:
        return f"comment {_shorten(self.text)}: ignored"


@dataclass(frozen=True, slots=True)
class Field(Segment):
    """One field line with its line ending.

    ``value`` is what follows the first ':' without its one leading space (empty for a line
    with no ':'). ``name_end`` is the offset of the ':' (or of the line ending when there is
    none), ``value_start`` of the value's first byte, ``value_end`` of the line ending: the
    name is ``[start, name_end)``, the ':' and its space ``[name_end, value_start)``, the
    value ``[value_start, value_end)`` and the line ending ``[value_end, end)``.

    ``effect`` says what the field did, one of: ``"appended to data"``, ``"event type
    set"``, ``"last event ID set"``, ``"last event ID reset"``, ``"ignored: id contains
    NUL"``, ``"reconnection time set to N ms"``, ``"ignored: retry is not all ASCII
    digits"``, ``"ignored: retry is empty"``, ``"ignored: unknown field"``.
    """

    name: str
    value: str
    effect: str
    name_end: int
    value_start: int
    value_end: int

    kind: ClassVar[str] = "sse-field"

    def note(self) -> str:
        note = f"field {_shorten(self.name)} = {_shorten(self.value)}: {self.effect}"
        if self.effect == _UNKNOWN and self.name.lower() in _FIELD_NAMES:
            note += f" (names are case-sensitive: this is not {self.name.lower()!r})"
        return note


@dataclass(frozen=True, slots=True)
class Dispatch(Segment):
    """The blank line (just a line ending) that ends an event.

    ``event`` is what a browser dispatches, or None when the data buffer was empty and
    nothing is. ``last_event_id`` is the event source's last event ID string afterwards
    (updated by every blank line, even one that dispatches nothing).
    """

    event: Event | None
    last_event_id: str

    kind: ClassVar[str] = "sse-dispatch"

    def note(self) -> str:
        last_id = f"last event ID {_shorten(self.last_event_id)}"
        if self.event is None:
            return f"blank line: nothing dispatched (the data buffer is empty); {last_id}"
        size = len(self.event.data)
        return (
            f"blank line: dispatch a {_shorten(self.event.type)} event,"
            f" {size} {'character' if size == 1 else 'characters'} of data; {last_id}"
        )


@dataclass(frozen=True, slots=True)
class Incomplete(Segment):
    """Bytes after the last line ending when the stream ended: not a line, never processed."""

    text: str

    kind: ClassVar[str] = "sse-incomplete"

    def note(self) -> str:
        return f"{_shorten(self.text)} discarded at end of stream: no line ending after it"


# --------------------------------------------------------------------------------------
# What a field did: the values of Field.effect (§9.2.6, "process the field")

_DATA_APPENDED: Final = "appended to data"
_TYPE_SET: Final = "event type set"
_ID_SET: Final = "last event ID set"
_ID_RESET: Final = "last event ID reset"
_ID_NUL: Final = "ignored: id contains NUL"
_RETRY_BAD: Final = "ignored: retry is not all ASCII digits"
_RETRY_EMPTY: Final = "ignored: retry is empty"
_UNKNOWN: Final = "ignored: unknown field"
_FIELD_NAMES: Final = frozenset({"data", "event", "id", "retry"})


# --------------------------------------------------------------------------------------
# Fast construction for the hot path. A frozen dataclass's __init__ sets every field with
# object.__setattr__ (its own __setattr__ refuses), several times what storing a slot
# costs. Each builder below is a subclass of Event, Field or Dispatch that adds no slots
# and takes back object's own __setattr__, __delattr__ and __init__, so it is made empty
# and an attribute store on it is a plain slot store. The decoder makes a builder, fills
# it in, then sets its ``__class__`` to the real class, which Python allows because the
# two have the same layout: from then on it is an ordinary frozen instance, the very
# object __init__ would have made (the tests compare the two).


def _twin(cls: type) -> Any:
    """A mutable subclass of ``cls`` with ``cls``'s layout, for building its instances."""
    namespace = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__init__": object.__init__,
    }
    return type(f"_{cls.__name__}Builder", (cls,), namespace)


_EventBuilder: Final = _twin(Event)
_FieldBuilder: Final = _twin(Field)
_DispatchBuilder: Final = _twin(Dispatch)


def _make_event(type_: str, data: str, last_event_id: str) -> Event:
    event = _EventBuilder()
    event.type = type_
    event.data = data
    event.last_event_id = last_event_id
    event.__class__ = Event
    return event  # type: ignore[no-any-return]


def _make_dispatch(start: int, end: int, event: Event | None, last_event_id: str) -> Dispatch:
    seg = _DispatchBuilder()
    seg.start = start
    seg.end = end
    seg.event = event
    seg.last_event_id = last_event_id
    seg.__class__ = Dispatch
    return seg  # type: ignore[no-any-return]


def _make_field(  # noqa: PLR0917 - Field's own fields, in Field's order
    start: int,
    end: int,
    name: str,
    value: str,
    effect: str,
    name_end: int,
    value_start: int,
    value_end: int,
) -> Field:
    seg = _FieldBuilder()
    seg.start = start
    seg.end = end
    seg.name = name
    seg.value = value
    seg.effect = effect
    seg.name_end = name_end
    seg.value_start = value_start
    seg.value_end = value_end
    seg.__class__ = Field
    return seg  # type: ignore[no-any-return]
