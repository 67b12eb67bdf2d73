"""Server-sent events (``text/event-stream``), decoded exactly as WHATWG HTML §9.2 says.

An event stream is the body of a ``200`` response with ``Content-Type: text/event-stream``.
It is UTF-8 text made of lines; a blank line ends each event. This is what a streamed chat
reply looks like once HTTP has delivered the body::

    \\xef\\xbb\\xbf               BOM         byte order mark, dropped
    : keep-alive\\n               Comment     ignored
    event: token\\n               Field       event type set
    id: 41\\n                     Field       last event ID set
    retry: 3000\\n                Field       reconnection time set to 3000 ms
    data: {"token": "Hel"}\\n     Field       appended to data
    data: {"token": "lo"}\\n      Field       appended to data
    \\n                           Dispatch    a 'token' event, lastEventId '41'

The grammar (§9.2.5; ``any-char`` is any scalar value but CR and LF, ``name-char`` any but
CR, LF and ':')::

    stream      = [ bom ] *event
    event       = *( comment / field ) end-of-line
    comment     = ":" *any-char end-of-line
    field       = 1*name-char [ ":" [ " " ] *any-char ] end-of-line
    end-of-line = ( CR LF / CR / LF )

A browser does not check that grammar: §9.2.6 gives an algorithm that accepts every byte
sequence, and this decoder is that algorithm, step for step:

1. **Decode** the bytes with UTF-8 decode: one leading BOM is dropped (a :class:`BOM`
   segment), anything that is not UTF-8 becomes U+FFFD. Decoding is done line by line on
   the bytes between line ends; CR, LF and ':' are ASCII and a UTF-8 decoder never swallows
   an ASCII byte into an error, so this is exactly decoding the whole stream first. A
   character split across two reads waits in the line buffer with the rest of its line.
2. **Split into lines** at CRLF, at an LF, and at a CR not followed by LF. A line's segment
   includes its line ending.
3. **Process each line**, in order:

   - empty (a blank line): *dispatch the event* (below) - a :class:`Dispatch`;
   - starts with ':': a comment, ignored - a :class:`Comment`;
   - contains ':': the field name is what comes before the first ':', the value what comes
     after it, minus ONE leading space if there is one - a :class:`Field`;
   - otherwise: the whole line is the field name and the value is empty - a :class:`Field`.

4. **Process the field** (names compared exactly: ``Data`` is not ``data``):

   - ``event``: set the event type buffer to the value;
   - ``data``: append the value and one LF to the data buffer;
   - ``id``: set the last event ID buffer to the value, unless it contains U+0000 NULL
     (then ignore the field); an empty value therefore resets it;
   - ``retry``: if the value is ASCII digits only, set the reconnection time to it, in
     milliseconds (:attr:`SSEDecoder.retry`); otherwise ignore the field;
   - anything else: ignored.

5. **Dispatch the event** (the steps for web browsers):

   a. set the event source's last event ID string to the last event ID buffer. The buffer
      is not reset, so the ID carries over to later events until an ``id`` field changes
      it; this happens even when nothing is dispatched (step b);
   b. if the data buffer is empty, empty the event type buffer too and stop: no event;
   c. remove the data buffer's last character, which is always the LF from step 4;
   d. the event's type is the event type buffer, or ``message`` if that is empty; its
      ``lastEventId`` is the event source's last event ID string;
   e. empty the data buffer and the event type buffer.

6. **At the end of the stream**, an event with no blank line after it is discarded.

Edge cases, and what this decoder does with them
------------------------------------------------

- **A CR at the end of a read.** It ends a line, but whether the line ending is CR or CRLF
  depends on the next byte. The decoder keeps that line (CR included) until the next byte
  arrives: an LF joins the line's segment, anything else starts the next line. At
  :meth:`SSEDecoder.eof` the CR is a whole line ending. So segments, offsets and events are
  the same however the stream is split. The cost: that one line comes out one read later.
  A browser acts on the CR at once and skips an LF if one follows, so when a read ends
  right after the CR of a blank line (a CRLF split between reads, or any event of a
  stream whose line ends are bare CRs), the browser has the event one read earlier than
  :meth:`SSEDecoder.feed` returns it. The events themselves are the same.
- **The BOM.** Only the first three bytes of the stream can be a BOM, and only one is
  dropped: ``\\ufeff\\ufeffdata: x`` is a field named ``\\ufeffdata``, ignored. If the stream
  starts with one or two bytes of a BOM, the decoder waits for the third before it decides.
- **Empty data.** ``data:`` appends an empty value and an LF, so the buffer is ``"\\n"``,
  not empty, and the blank line dispatches an event whose data is ``""``. A blank line after
  only ``event:``, ``id:`` or ``retry:`` fields (or after nothing: two blank lines in a
  row) dispatches nothing, though an ``id`` still updates the last event ID.
- **retry.** ``retry:`` (empty) and ``retry`` are ignored: "only ASCII digits" is
  vacuously true of an empty value, but there is no integer in it to interpret. There is
  no upper bound here (Python integers have none); a browser stores it in a fixed-size
  integer.
- **The end of the stream.** A partial line (bytes after the last line ending) becomes an
  :class:`Incomplete` segment, so every byte fed is in exactly one segment; it is not
  processed (it is not a line). Fields of an event that never got its blank line were
  already reported as they arrived; their event is dropped and its ``id`` never reaches
  :attr:`SSEDecoder.last_event_id`.

Errors: WHATWG accepts every byte sequence, so the only :class:`SSEError` is a limit. A
line longer than :data:`MAX_LINE_SIZE` fails at its first byte past the limit, and an event
whose data would exceed :data:`MAX_DATA_SIZE` fails at the first byte that does not fit,
however the stream is split. A browser has neither limit.

The segments, :class:`Event` and :class:`SSEError` are in :mod:`lab.wire.sse_segments`, steps
3 to 5 (what each line means) in :mod:`lab.wire.sse_lines`, the encoder in
:mod:`lab.wire.sse_encode`; every name of this module's ``__all__`` works from here.

Where httpx-sse 0.4.3 differs
-----------------------------

Measured through ``httpx_sse.EventSource`` on an ``httpx.Response``; each point has a test.

1. **A blank line dispatches whenever anything was set**: httpx-sse yields an event when
   the event type, data, last event ID or retry is set, where WHATWG needs data. So
   ``event: x\\n\\n``, ``id: 1\\n\\n`` and ``retry: 5\\n\\n`` each give it an event with data
   ``""``; and once any ``id`` has been seen, every further blank line (``\\n\\n\\n``) gives
   one more empty ``message`` event.
2. **retry goes through int()**, which accepts ``" 1000"``, ``"+5"``, ``"-1"``, ``"1_000"``
   and non-ASCII digits such as ``"١٢"``; WHATWG accepts ASCII digits only. (Its retry is a
   per-event attribute, not the stream's reconnection time; not a difference in events.)
3. **The BOM is kept**: httpx decodes the body with the ``utf-8`` codec, not UTF-8 decode
   (``utf-8-sig`` would strip it), so a leading BOM becomes part of the first field name
   and the first event's ``data`` line is ignored.
4. **The charset parameter is obeyed**: ``Content-Type: text/event-stream;
   charset=latin-1`` makes httpx decode as Latin-1; WHATWG always decodes UTF-8.
"""

from __future__ import annotations

from typing import Final

from lab.wire.segment import Segment
from lab.wire.sse_encode import encode_comment, encode_event
from lab.wire.sse_lines import LineInterpreter
from lab.wire.sse_segments import (
    BOM,
    NOTE_VALUE_CHARS,  # noqa: F401 - importable from here as before
    Comment,
    Dispatch,
    Event,
    Field,
    Incomplete,
    SSEError,
)

__all__ = [
    "BOM",
    "MAX_DATA_SIZE",
    "MAX_LINE_SIZE",
    "Comment",
    "Dispatch",
    "Event",
    "Field",
    "Incomplete",
    "SSEDecoder",
    "SSEError",
    "encode_comment",
    "encode_event",
    "parse",
]

# --------------------------------------------------------------------------------------
# Limits. WHATWG sets none and browsers have none in practice; a lab decoder is bounded.

# The longest line held while waiting for its line ending, line ending not counted. One
# ``data:`` line usually carries one whole JSON document (OpenAI, Anthropic and MCP all
# send one message per line), and the big ones are base64: OpenAI's image generation
# streams partial images as base64 in single data lines, and an MCP tool result may embed
# an image (5 MB of image is 6.7 MB of base64). 1 MiB would refuse those streams; Go's
# bufio.Scanner default of 64 KiB is the cautionary tale (SSE clients built on it fail with
# "token too long"). 8 MiB takes them all and still stops a stream with no line ends.
MAX_LINE_SIZE: Final = 8 * 1024 * 1024

# The data buffer of one event: the UTF-8 bytes of its data values plus one LF per data
# line. The line limit alone does not bound memory: a million short ``data:`` lines make
# one huge event. Twice the line limit, so an event of two maximal lines still passes.
MAX_DATA_SIZE: Final = 2 * MAX_LINE_SIZE

_LF, _CR = 0x0A, 0x0D
# A read whose first _SAMPLE bytes hold _SHORT_LINES line ends or more is split with
# bytes.split, which walks it byte by byte; one with longer lines with bytes.find.
_SAMPLE, _SHORT_LINES = 1024, 4
_BOM: Final = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------------------
# The decoder


class SSEDecoder(LineInterpreter):
    """Turns an event stream, fed in pieces of any size, into :class:`Segment` objects.

    ``offset`` is the absolute offset of the first byte you will feed. Events come out
    inside :class:`Dispatch` segments. The bytes held between feeds are one incomplete line
    (at most ``max_line_size`` bytes plus a CR), and the pending event's data buffer holds
    at most ``max_data_size`` bytes.

    ``last_event_id`` is where a reconnection starts: the :attr:`last_event_id` the previous
    connection left. Both the event source's string and the stream's last event ID buffer
    start from it, so a resumed stream's events that carry no ``id`` keep the old one, and
    a connection that ends before its first blank line does not lose it. That is what
    Chromium does (its parser is built with the EventSource's last event ID); §9.2.6's
    text starts every stream's buffer empty, which is the default here.
    """

    __slots__ = (  # and LineInterpreter's
        "_at_start",
        "_buf",
        "_ended",
        "_error",
        "_held_cr",
        "_line_start",
        "_max_line",
        "_offset",
    )

    def __init__(
        self,
        offset: int = 0,
        *,
        last_event_id: str = "",
        max_line_size: int = MAX_LINE_SIZE,
        max_data_size: int = MAX_DATA_SIZE,
    ) -> None:
        if max_line_size < 1 or max_data_size < 1:
            raise ValueError("limits must be positive")
        self._max_line = max_line_size
        self._max_data = max_data_size
        self._offset = offset  # absolute offset of the next byte to be fed
        self._at_start = True  # no byte past a possible BOM has been looked at yet
        self._buf = bytearray()  # an incomplete line (or up to 2 bytes of a BOM)
        self._line_start = offset  # absolute offset of self._buf[0]
        self._held_cr = False  # self._buf is a whole line ending in CR; is an LF next?
        # The three buffers of §9.2.6; the data buffer as its values, LFs implied.
        self._data: list[str] = []
        self._data_size = 0
        self._type = ""
        self._id_buffer = last_event_id
        # The event source's state: last event ID string and reconnection time.
        self._last_event_id = last_event_id
        self._retry: int | None = None
        self._ended = False
        self._error: SSEError | None = None

    # ----------------------------------------------------------------------------------
    # Public surface

    @property
    def last_event_id(self) -> str:
        """The event source's last event ID string: what a reconnection would send as
        ``Last-Event-ID``. Set by each blank line from the ``id`` fields before it."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time the stream set, in milliseconds (None: never set)."""
        return self._retry

    @property
    def offset(self) -> int:
        """Absolute offset just past the last byte fed."""
        return self._offset

    @property
    def buffered(self) -> int:
        """How many bytes are held waiting for the rest of their line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Segment]:
        """Take the next bytes of the stream; return the segments they completed.

        A line waits in the buffer until its line ending arrives (a line ending in CR until
        the byte after the CR). ``feed(b"")`` does nothing: the end is :meth:`eof`.
        """
        if self._error is not None:
            raise self._refusal()
        if self._ended:
            raise RuntimeError("the event stream has already ended (eof() was called)")
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return []
        out: list[Segment] = []
        try:
            self._feed(data, out)
        except SSEError as exc:
            self._fail(exc, out)
            raise
        return out

    def eof(self) -> list[Segment]:
        """The stream has ended: finish a line held for its CR, and account for a partial
        line as :class:`Incomplete`. The pending event, if any, is discarded (§9.2.6).
        Calling it again returns ``[]``."""
        if self._error is not None:
            raise self._refusal()
        if self._ended:
            return []
        self._ended = True
        out: list[Segment] = []
        buf = self._buf
        try:
            if self._held_cr:
                # A CR with nothing after it is a whole line ending (end-of-line = CR).
                self._line(bytes(buf[:-1]), self._line_start, 1, out)
            elif buf:
                text = buf.decode("utf-8", "replace")
                out.append(Incomplete(self._line_start, self._line_start + len(buf), text))
        except SSEError as exc:
            self._fail(exc, out)
            raise
        self._buf = bytearray()
        self._held_cr = False
        # "Once the end of the file is reached, any pending data must be discarded."
        self._data = []
        self._data_size = 0
        self._type = ""
        return out

    # ----------------------------------------------------------------------------------
    # Finding lines

    def _fail(self, exc: SSEError, out: list[Segment]) -> None:
        exc.segments = out
        self._error = exc
        self._buf = bytearray()
        self._held_cr = False

    def _refusal(self) -> SSEError:
        assert self._error is not None
        return SSEError(f"the decoder already failed: {self._error.message}", self._error.offset)

    def _too_long(self, line_start: int) -> SSEError:
        return SSEError(
            f"line longer than {self._max_line} bytes (MAX_LINE_SIZE)",
            line_start + self._max_line,
        )

    def _feed(self, data: bytes, out: list[Segment]) -> None:
        base = self._offset  # absolute offset of data[0]
        self._offset += len(data)
        pos = 0
        if self._at_start:
            # UTF-8 decode drops one leading BOM (§9.2.6, and the Encoding Standard's
            # "UTF-8 decode").
            if self._buf:
                base -= len(self._buf)
                data = bytes(self._buf) + data
                self._buf = bytearray()
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._buf = bytearray(data)  # too early to tell
                self._line_start = base
                return
            self._at_start = False
            if data.startswith(_BOM):
                out.append(BOM(base, base + len(_BOM)))
                pos = len(_BOM)
        elif self._buf:
            pos = self._finish_line(data, base, out)
            if pos < 0:
                return
        if data.find(b"\r", pos) < 0:
            pos = self._scan_lf(data, pos, base, out)
        else:
            pos = self._scan_crlf(data, pos, base, out)
            if pos < 0:
                return  # a line ending in CR is held
        n = len(data)
        if n - pos > self._max_line:
            raise self._too_long(base + pos)
        if pos < n:
            self._buf = bytearray(data[pos:])
            self._line_start = base + pos

    def _finish_line(self, data: bytes, base: int, out: list[Segment]) -> int:
        """Complete the line held in the buffer with the head of ``data``. Returns where
        ``data``'s next line starts, or -1 if the line is still incomplete."""
        buf = self._buf
        start = self._line_start
        if self._held_cr:
            # The held line ended in CR: CRLF if an LF comes next, a lone CR otherwise.
            self._held_cr = False
            line = bytes(buf[:-1])
            self._buf = bytearray()
            after = 1 if data[0] == _LF else 0
            self._line(line, start, 1 + after, out)
            return after
        lf = data.find(b"\n")
        cr = data.find(b"\r")
        if lf < 0 and cr < 0:
            if len(buf) + len(data) > self._max_line:
                raise self._too_long(start)
            buf += data
            return -1
        eol = lf if cr < 0 or 0 <= lf < cr else cr
        if len(buf) + eol > self._max_line:
            raise self._too_long(start)
        if eol == cr and cr + 1 == len(data):
            buf += data
            self._held_cr = True
            return -1
        ending = 2 if eol == cr and data[cr + 1] == _LF else 1
        line = bytes(buf) + data[:eol]
        self._buf = bytearray()
        self._line(line, start, ending, out)
        return eol + ending

    def _scan_lf(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """The common case, no CR at all: every line ends in LF. Returns where the
        unfinished last line starts.

        A read that cannot break a limit (no longer than a line may be, and small enough
        that all of it would fit in the data buffer) goes to :meth:`_lines_fast`, split by
        ``bytes.split`` when its lines are short and by ``bytes.find`` (memchr) when they
        are long. Otherwise each line's length is checked here and the line processed by
        :meth:`_line`, which checks the data buffer's."""
        n = len(data)
        lf = data.find(b"\n", pos)
        if lf < 0:
            return pos
        if n - pos > self._max_line or self._data_size + n - pos > self._max_data:
            max_line = self._max_line
            while lf >= 0:
                if lf - pos > max_line:
                    raise self._too_long(base + pos)
                self._line(data[pos:lf], base + pos, 1, out)
                pos = lf + 1
                lf = data.find(b"\n", pos)
            return pos
        if data.count(b"\n", pos, pos + _SAMPLE) >= _SHORT_LINES:
            lines = data[pos:].split(b"\n") if pos else data.split(b"\n")
            lines.pop()  # what follows the last LF: an unfinished line, or nothing
        else:
            lines = []
            start = pos
            while lf >= 0:
                lines.append(data[start:lf])
                start = lf + 1
                lf = data.find(b"\n", start)
        return self._lines_fast(lines, base + pos, 1, out) - base

    def _scan_crlf(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Lines with a CR among them. When the lines are short, each CR and each LF is
        part of a CRLF (the usual line ending of some servers), none of them is the read's
        last byte, and the read cannot break a limit, the lines go to :meth:`_lines_fast`;
        otherwise to :meth:`_scan_any`. Returns as :meth:`_scan_any` does."""
        n = len(data)
        if (
            data[-1] != _CR
            and n - pos <= self._max_line
            and self._data_size + n - pos <= self._max_data
            and data.count(b"\n", pos, pos + _SAMPLE) >= _SHORT_LINES
        ):
            lines = data[pos:].split(b"\r\n") if pos else data.split(b"\r\n")
            tail = lines.pop()
            joined = b"".join(lines)
            if not (b"\r" in joined or b"\n" in joined or b"\r" in tail or b"\n" in tail):
                return self._lines_fast(lines, base + pos, 2, out) - base
        return self._scan_any(data, pos, base, out)

    def _scan_any(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Lines ending in CRLF, LF or CR, in any mixture. Each byte is searched once: the
        next LF and the next CR are found ahead and reused. Returns where the unfinished
        last line starts, or -1 when a line ending in CR was held."""
        n = len(data)
        max_line = self._max_line
        line = self._line
        lf = data.find(b"\n", pos)
        cr = data.find(b"\r", pos)
        while lf >= 0 or cr >= 0:
            if cr < 0 or 0 <= lf < cr:
                eol = lf
                ending = 1
            else:
                eol = cr
                if cr + 1 == n:
                    # CR or CRLF? The next feed (or eof) will tell: hold the line.
                    if eol - pos > max_line:
                        raise self._too_long(base + pos)
                    self._buf = bytearray(data[pos:])
                    self._line_start = base + pos
                    self._held_cr = True
                    return -1
                ending = 2 if data[cr + 1] == _LF else 1
            if eol - pos > max_line:
                raise self._too_long(base + pos)
            line(data[pos:eol], base + pos, ending, out)
            pos = eol + ending
            if 0 <= lf < pos:
                lf = data.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = data.find(b"\r", pos)
        return pos


def parse(stream: bytes) -> list[Event]:
    """Every event a browser would dispatch for this whole response body, in order.

    Raises :class:`SSEError` only if a line or an event is over the decoder's limits.
    """
    decoder = SSEDecoder()
    segments = decoder.feed(stream)
    segments += decoder.eof()
    return [s.event for s in segments if type(s) is Dispatch and s.event is not None]
