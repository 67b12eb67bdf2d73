"""The annotated view, live: each record's protocol units printed as soon as it is recorded.

``lab show`` lays a whole trace out as a table (:mod:`lab.capture.views.annotated`),
which needs every row before it prints the first. ``lab probe`` cannot wait: a stream
may run for minutes, and seeing its first chunk arrive is the point. So the probe taps
its connections with :meth:`LivePrinter.sink` as the tap's sink
(:class:`lab.capture.tap.TappedStream`): each record is appended to the trace and, at
once, fed to that direction's decoder from :mod:`lab.wire` (the same decoders the
annotated view uses); every unit the record completed is printed on a line of its own,
with the same columns: time on the trace's clock in ms, direction, byte range, the bytes
(text escaped, binary as hex, capped as in the annotated view) and what they mean.

Under a unit, what is nested in it gets lines marked ``↳``: HPACK fields, SSE lines, and
an HTTP/2 frame's payload fields (its setting values, error code, data). A frame's four
header fields are left out: the frame's own line says them. Bytes a decoder refuses are
printed as unparsed with the decoder's error, as ``lab show`` does, and so is the rest of
that direction, a record at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from rich.console import Console
from rich.text import Text

from lab.capture.annotate import Unparsed
from lab.capture.records import (
    CLOSE,
    CONNECT,
    EOF,
    RECV,
    RESET,
    SEND,
    SHUTDOWN,
    ConnectionTrace,
    Record,
)
from lab.capture.requestlog import widen_limits
from lab.capture.views import (
    EVENT_STYLES,
    MAX_SHOWN_BYTES,
    MAX_SHOWN_HEX_BYTES,
    escape_bytes,
    hex_bytes,
    is_text,
    kind_style,
)
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import SettingsFrame
from lab.wire.h2messages import H2Decoder
from lab.wire.http1 import MessageDecoder, RequestLine
from lab.wire.segment import Nested, Segment

__all__ = ["HIDDEN_FIELD_KINDS", "LivePrinter"]

# The fields of an HTTP/2 frame's header (RFC 9113 §4.1), and the raw fragment of a field
# block: the frame's line says the first, the HPACK fields under it decode the second.
HIDDEN_FIELD_KINDS: Final = frozenset(
    {"h2-length", "h2-type", "h2-flags", "h2-stream-id", "h2-fragment"}
)
# Kinds whose bytes are content: text when they are text, else hex (as in lab show).
_CONTENT_KINDS: Final = frozenset(
    {"chunk-data", "body-data", "h2-data", "h2-debug-data", "unparsed"}
)
_DIM: Final = "grey50"


@dataclass(slots=True)
class _Direction:
    decoder: MessageDecoder | H2Decoder
    data: bytearray = field(default_factory=bytearray)  # every byte so far, for slicing
    failed: str = ""  # the decoder's error, once it refused a byte
    ended: bool = False
    covered: int = 0  # end of the last unit handed out

    def cover(self, segs: list[Segment]) -> None:
        self.covered = max([self.covered, *(s.end for s in segs if not isinstance(s, Nested))])


class _Connection:
    """One connection being printed: its decoders, created at its first bytes."""

    def __init__(self, conn: ConnectionTrace, index: int) -> None:
        self.conn = conn
        self.index = index
        self.sides: dict[bool, _Direction] = {}
        self.last: bool | None = None  # the direction of the last unit printed

    def side(self, from_client: bool) -> _Direction:
        if not self.sides:
            if self.conn.protocol in ("h2", "h2c"):
                self.sides = {
                    True: _Direction(H2Decoder(from_client=True)),
                    False: _Direction(H2Decoder(from_client=False)),
                }
            else:
                self.sides = {
                    True: _Direction(MessageDecoder("request")),
                    False: _Direction(MessageDecoder("response")),
                }
        return self.sides[from_client]


class LivePrinter:
    """Prints the records of the connections it taps as they come, on ``console``.

    ``show`` False records without printing (another view is shown at the end).
    """

    def __init__(self, console: Console, *, show: bool = True) -> None:
        self.console = console
        self.show = show
        self._count = 0

    def sink(self, conn: ConnectionTrace) -> Callable[[Record], None]:
        """The tap's sink for ``conn``: appends each record, then prints what it made."""
        state = _Connection(conn, self._count)
        self._count += 1
        append = conn.records.append

        def take(record: Record) -> None:
            append(record)
            if self.show:
                self._record(state, record)

        return take

    def note(self, text: str, style: str = "italic") -> None:
        """A line of the probe's own (``* ...``), between the records."""
        self.console.print(Text(f"* {text}", style=style), soft_wrap=True)

    # -- records -------------------------------------------------------------------------

    def _record(self, state: _Connection, record: Record) -> None:
        conn = state.conn
        if record.kind == CONNECT:
            self._heading(state)
        if record.kind in (SEND, RECV):
            from_client = conn.is_from_client(record)
            side = state.side(from_client)
            start = len(side.data)
            side.data += record.data
            if side.failed:
                end = len(side.data)
                self._row(state, record.t, from_client, Unparsed(start, end, side.failed))
                return
            self._segments(state, record.t, from_client, self._feed(side, record.data))
            return
        self._event(record)
        if record.kind in (EOF, SHUTDOWN):
            # EOF: the peer (the server) finished sending; SHUTDOWN: the client did.
            from_client = (conn.side == "server") == (record.kind == EOF)
            self._end(state, record.t, from_client)
        elif record.kind in (CLOSE, RESET) and state.sides:
            for from_client in (True, False):
                self._end(state, record.t, from_client)

    def _feed(self, side: _Direction, data: bytes) -> list[Segment]:
        try:
            segs = side.decoder.feed(data)
        except ProtocolError as exc:
            side.failed = str(exc)
            side.cover(exc.segments)
            return [*exc.segments, Unparsed(side.covered, len(side.data), side.failed)]
        side.cover(segs)
        return segs

    def _end(self, state: _Connection, t: float, from_client: bool) -> None:
        side = state.sides.get(from_client)
        if side is None or side.ended or side.failed:
            return
        side.ended = True
        try:
            segs = side.decoder.eof()
        except ProtocolError as exc:
            side.failed = str(exc)
            side.cover(exc.segments)
            segs = [*exc.segments, Unparsed(side.covered, len(side.data), side.failed)]
        self._segments(state, t, from_client, segs)

    def _segments(
        self, state: _Connection, t: float, from_client: bool, segs: list[Segment]
    ) -> None:
        for seg in segs:
            if isinstance(seg, SettingsFrame) and not seg.ack and seg.problem is None:
                other = state.sides[not from_client].decoder
                if isinstance(other, H2Decoder):
                    widen_limits(other, seg)
            if from_client and isinstance(seg, RequestLine):
                responses = state.sides[False].decoder
                if isinstance(responses, MessageDecoder):
                    responses.expect(seg.method)  # a response to HEAD has no body
            if isinstance(seg, Nested) and seg.unit.kind in HIDDEN_FIELD_KINDS:
                continue
            self._row(state, t, from_client, seg)

    # -- lines ---------------------------------------------------------------------------

    def _heading(self, state: _Connection) -> None:
        conn = state.conn
        text = Text(f"connection {state.index}", style="bold")
        text.append(f"  client {_addr(conn.client)} → server {_addr(conn.server)}")
        text.append(f"  {conn.protocol}", style="bold")
        if conn.tls:
            text.append("  above TLS: the decrypted bytes", style="italic")
        self.console.print(text, soft_wrap=True)

    def _event(self, record: Record) -> None:
        words = {
            CONNECT: ("C→S", "connect: connection established"),
            EOF: ("S→C", "EOF: the server finished sending (FIN)"),
            SHUTDOWN: ("C→S", "shutdown: the client finished sending (FIN), still reading"),
            CLOSE: ("C→S", "close: the client closed the connection"),
            RESET: ("C×S", "reset: the connection broke under the client"),
        }
        arrow, what = words.get(record.kind, ("   ", record.kind))
        line = Text(f"{_ms(record.t)}  {arrow}  {'':>16}  ", style=_DIM)
        line.append(what, style=EVENT_STYLES.get(record.kind, "italic"))
        self.console.print(line, soft_wrap=True)

    def _row(self, state: _Connection, t: float, from_client: bool, seg: Segment) -> None:
        side = state.sides[from_client]
        nested = isinstance(seg, Nested)
        if isinstance(seg, Nested):
            unit, data, total = seg.unit, seg.data, len(seg.data)
        else:
            unit, total = seg, seg.nbytes
            data = bytes(side.data[seg.start : min(seg.end, seg.start + MAX_SHOWN_BYTES)])
        style = kind_style(unit.kind)
        if state.last is not None and state.last != from_client:
            self.console.print()  # a blank line where the direction changes, as lab show
        state.last = from_client
        line = Text(f"{_ms(t)}  ", style=_DIM)
        line.append("   " if nested else ("C→S" if from_client else "S→C"))
        line.append(f"  {f'[{seg.start}, {seg.end})':>16}  ", style=_DIM)
        if nested:
            line.append("↳ ", style=_DIM)
        line.append_text(_shown(unit, data, total, style))
        line.append("  ")
        note_style = style if unit.kind in ("sse-dispatch", "unparsed") else ""
        line.append(seg.note(), style=note_style)
        self.console.print(line, soft_wrap=True)


def _shown(seg: Segment, data: bytes, total: int, style: str) -> Text:
    """The first bytes of a unit, as escaped text or hex, saying how many are left out."""
    if seg.binary or (seg.kind in _CONTENT_KINDS and not is_text(data)):
        stop = min(len(data), MAX_SHOWN_HEX_BYTES)
        text = Text(hex_bytes(data[:stop]), style=style)
    else:
        stop = min(len(data), MAX_SHOWN_BYTES)
        text = Text(escape_bytes(data[:stop]), style=style)
    if total > stop:
        text.append(f" … (+{total - stop} bytes)", style=_DIM)
    return text


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:>10.3f}"


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
