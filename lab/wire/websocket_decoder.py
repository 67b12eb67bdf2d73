"""The WebSocket frame decoder (RFC 6455 §5): :class:`WebSocketDecoder` turns one direction
of a connection, fed in pieces of any size, into :class:`~lab.wire.websocket_segments.
WebSocketFrame` segments, each followed by its fields (:mod:`lab.wire.websocket_fields`);
:func:`parse` gives the messages of a whole capture at once.

It checks everything §5 asks of a receiver, as soon as the bytes that break a rule are in:
the frame header octet by octet (a reserved opcode, RSV bits, a fragmented control frame
and the message sequence at the first octet; the MASK bit and a control frame's length at
the second; a non-minimal or too large length at the extended length), then the payload
once the whole frame is in (UTF-8 of text, the Close frame's body). Offsets are absolute,
from the first byte fed (plus ``offset``), and name the field or the payload byte that is
wrong; the same bad bytes give the same offset however they are split into reads.

The bytes held between feeds are one incomplete frame, at most its header (14 octets) and
``max_message_size`` of payload, and the fragments of the message in progress, at most
``max_message_size`` together.
"""

from __future__ import annotations

import codecs
from typing import Final, Literal, NamedTuple

from lab.wire.segment import Segment
from lab.wire.websocket_encode import mask
from lab.wire.websocket_fields import frame_fields
from lab.wire.websocket_segments import (
    MAX_CONTROL_PAYLOAD,
    MAX_MESSAGE_SIZE,
    CloseCode,
    Message,
    Opcode,
    Role,
    WebSocketError,
    WebSocketFrame,
    _error,
    _plural,
    close_code_problem,
    opcode_name,
)

__all__ = ["WebSocketDecoder", "parse"]

# The longest frame header: 2 octets, an 8-octet extended length, a 4-octet masking key.
MAX_HEADER_SIZE: Final = 14
_RSV_NAMES: Final = ("RSV1", "RSV2", "RSV3")
_OPCODES: Final = frozenset(int(op) for op in Opcode)


# --------------------------------------------------------------------------------------
# UTF-8, checked as it arrives (§5.6, §8.1)

# For each lead octet of a well-formed UTF-8 sequence (RFC 3629 §4, the table of valid
# octet sequences): how many continuation octets follow, and the range the first of them
# must be in (the ranges that rule out overlong forms, surrogates and code points past
# U+10FFFF). The later continuation octets are always 80..BF. None: not a lead octet.
_LEADS: Final[tuple[tuple[int, int, int] | None, ...]] = tuple(
    (0, 0, 0)
    if b < 0x80
    else (1, 0x80, 0xBF)
    if 0xC2 <= b <= 0xDF
    else (2, 0xA0, 0xBF)
    if b == 0xE0
    else (2, 0x80, 0x9F)
    if b == 0xED
    else (2, 0x80, 0xBF)
    if 0xE1 <= b <= 0xEF
    else (3, 0x90, 0xBF)
    if b == 0xF0
    else (3, 0x80, 0xBF)
    if 0xF1 <= b <= 0xF3
    else (3, 0x80, 0x8F)
    if b == 0xF4
    else None
    for b in range(256)
)


class Utf8Checker:
    """Checks UTF-8 fed in pieces: :meth:`feed` names the first octet that makes the text
    invalid, the moment it arrives. A character cut at the end of a piece waits for the
    next one; :attr:`complete` says whether the text so far ends on a character boundary.

    The bulk is checked by the C UTF-8 decoder; only the first invalid character, and a
    character cut at the end of a piece, are walked octet by octet. That walk is what
    finds ``ED A0`` (the start of a surrogate) invalid at once, where the C decoder waits
    for a third octet.
    """

    __slots__ = ("_hi", "_lo", "_need")

    def __init__(self) -> None:
        self._need = 0  # continuation octets still to come for the character in progress
        self._lo, self._hi = 0x80, 0xBF  # the range of the next one

    @property
    def complete(self) -> bool:
        return self._need == 0

    def feed(self, data: bytes) -> int | None:
        """Take the next octets; return the index in ``data`` of the first octet that
        cannot be part of well-formed UTF-8 after what came before, or None."""
        n = len(data)
        pos = 0
        while self._need and pos < n:
            if not self._lo <= data[pos] <= self._hi:
                return pos
            self._need -= 1
            self._lo, self._hi = 0x80, 0xBF
            pos += 1
        if pos == n:
            return None
        view = memoryview(data)[pos:]
        try:
            _, consumed = codecs.utf_8_decode(view, "strict", False)
        except UnicodeDecodeError as exc:
            consumed = exc.start
        return self._walk(data, pos + consumed)

    def _walk(self, data: bytes, pos: int) -> int | None:
        """Octet by octet from ``pos``, a character boundary with well-formed text before
        it: the index of the first bad octet, or None (a cut character is kept)."""
        n = len(data)
        while pos < n:
            lead = _LEADS[data[pos]]
            if lead is None:
                return pos
            need, lo, hi = lead
            pos += 1
            while need:
                if pos == n:
                    self._need, self._lo, self._hi = need, lo, hi
                    return None
                if not lo <= data[pos] <= hi:
                    return pos
                need -= 1
                lo, hi = 0x80, 0xBF
                pos += 1
        return None


# --------------------------------------------------------------------------------------
# The decoder


class _Head(NamedTuple):
    """A frame header whose fields up to the payload length are in and checked."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length: int
    length_octets: int

    @property
    def size(self) -> int:
        return 2 + self.length_octets + (4 if self.masked else 0)


class WebSocketDecoder:
    """Turns one direction of a WebSocket connection, fed in pieces of any size, into
    :class:`WebSocketFrame` segments, each followed by its fields (``fields=True``) as
    :class:`~lab.wire.segment.Nested` segments.

    ``role`` is the endpoint that *receives* these bytes, as in wsproto: ``"server"``
    reads what a client sent, whose frames must all be masked (§5.1); ``"client"`` reads
    what a server sent, whose frames must not be. ``offset`` is the absolute offset of the
    first byte you will feed. ``max_message_size`` bounds a reassembled message and so
    every frame's payload (1009 past it); ``rsv_allowed`` is the RSV bits (RSV1 = 4,
    RSV2 = 2, RSV3 = 1) a negotiated extension gives a meaning (§5.2, §9), 0 when none
    was negotiated: a message whose first frame sets one is that extension's data and is
    not checked as UTF-8.
    """

    __slots__ = (
        "_buf",
        "_buf_start",
        "_close_seen",
        "_error",
        "_fields",
        "_max_message",
        "_msg_ext",
        "_msg_frames",
        "_msg_parts",
        "_msg_size",
        "_msg_type",
        "_offset",
        "_role",
        "_rsv_allowed",
        "_utf8",
    )

    def __init__(
        self,
        role: Role,
        *,
        offset: int = 0,
        max_message_size: int = MAX_MESSAGE_SIZE,
        rsv_allowed: int = 0,
        fields: bool = True,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        if max_message_size < MAX_CONTROL_PAYLOAD:
            # A control frame may always carry 125 octets (§5.5); the limit is for data.
            raise ValueError(f"max_message_size must be at least {MAX_CONTROL_PAYLOAD}")
        if not 0 <= rsv_allowed <= 7:
            raise ValueError("rsv_allowed is 3 bits: RSV1 = 4, RSV2 = 2, RSV3 = 1")
        self._role = role
        self._max_message = max_message_size
        self._rsv_allowed = rsv_allowed
        self._fields = fields
        self._offset = offset  # absolute offset of the next byte to be fed
        self._buf = bytearray()  # an incomplete frame, nothing else
        self._buf_start = offset  # absolute offset of self._buf[0]
        # The message in progress (§5.4): its type, its fragments so far, their size.
        self._msg_type: Literal["text", "binary"] | None = None
        self._msg_parts: list[bytes] = []
        self._msg_size = 0
        self._msg_frames = 0
        self._msg_ext = False  # its first frame set an RSV bit an extension defines
        self._utf8: Utf8Checker | None = None
        self._close_seen = False
        self._error: WebSocketError | None = None

    # ----------------------------------------------------------------------------------
    # Public surface

    @property
    def role(self) -> Role:
        return self._role

    @property
    def offset(self) -> int:
        """Absolute offset just past the last byte fed."""
        return self._offset

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete frame are held: at most MAX_HEADER_SIZE plus
        ``max_message_size``."""
        return len(self._buf)

    @property
    def message_open(self) -> bool:
        """True between a data frame without FIN and the CONTINUATION with FIN."""
        return self._msg_type is not None

    @property
    def close_received(self) -> bool:
        """True once a Close frame has been decoded (§5.5.1)."""
        return self._close_seen

    def feed(self, data: bytes) -> list[Segment]:
        """Take the next bytes; return the frames they completed, each followed by its
        fields. ``feed(b"")`` does nothing: the end is :meth:`eof`."""
        if self._error is not None:
            raise self._refusal()
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return []
        out: list[Segment] = []
        base = self._offset  # absolute offset of data[0]
        self._offset += len(data)
        try:
            pos = self._finish_buffered(data, base, out) if self._buf else 0
            if pos < len(data):
                pos = self._parse(data, pos, base, out)
                if pos < len(data):
                    self._buf = bytearray(data[pos:])
                    self._buf_start = base + pos
        except WebSocketError as exc:
            exc.segments = out
            self._error = exc
            self._buf = bytearray()
            raise
        return out

    def eof(self) -> list[Segment]:
        """The input has ended. Raises :class:`WebSocketError` (close code 1006, abnormal
        closure) if it ended inside a frame; otherwise returns ``[]`` (every byte is in a
        frame already). A message left open is not a framing error: see
        :attr:`message_open` and :attr:`close_received`."""
        if self._error is not None:
            raise self._refusal()
        if self._buf:
            head = self._header(self._buf, 0, len(self._buf), self._buf_start)
            if head is None or len(self._buf) < head.size:
                where = "the input ended inside a frame header"
            else:
                missing = head.size + head.length - len(self._buf)
                where = (
                    f"the input ended inside a frame ({_plural(missing, 'more byte')} announced)"
                )
            self._error = _error(where + " (§7.1.5)", self._offset, CloseCode.ABNORMAL_CLOSURE)
            raise self._error
        return []

    # ----------------------------------------------------------------------------------
    # Framing

    def _refusal(self) -> WebSocketError:
        assert self._error is not None
        return WebSocketError(
            f"the decoder already failed: {self._error.message}",
            self._error.offset,
            close_code=self._error.close_code,
        )

    def _finish_buffered(self, data: bytes, base: int, out: list[Segment]) -> int:
        """Complete the frame held in the buffer from the head of ``data``. Returns where
        ``data``'s next frame starts, or ``len(data)`` if the frame is still incomplete.
        Header octets are taken a field at a time, so a frame shorter than the longest
        header never swallows the next frame's first octets."""
        buf = self._buf
        n = len(data)
        pos = 0
        head = self._header(buf, 0, len(buf), self._buf_start)
        while head is None:
            want = 2 if len(buf) < 2 else (4 if buf[1] & 0x7F == 126 else 10)
            take = min(want - len(buf), n - pos)
            buf += data[pos : pos + take]
            pos += take
            head = self._header(buf, 0, len(buf), self._buf_start)
            if head is None and pos == n:
                return n
        assert head is not None
        total = head.size + head.length
        take = min(total - len(buf), n - pos)
        buf += data[pos : pos + take]
        pos += take
        if len(buf) < total:
            return pos
        self._buf = bytearray()
        self._frame(head, bytes(buf), self._buf_start, out)
        return pos

    def _parse(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Decode whole frames from ``data[pos:]``; return the index of the first byte of
        an incomplete frame (``len(data)`` if none). ``base`` is data[0]'s offset."""
        n = len(data)
        while pos < n:
            head = self._header(data, pos, n, base + pos)
            if head is None:
                break
            end = pos + head.size + head.length
            if end > n:
                break
            self._frame(head, data[pos:end], base + pos, out)
            pos = end
        return pos

    def _header(self, data: bytes | bytearray, pos: int, n: int, start: int) -> _Head | None:
        """Check the header octets in ``data[pos:n]`` (``start`` is the absolute offset of
        ``data[pos]``), as far as they go; return the header once the payload length is
        in, None before. Raises at the first field that breaks a rule."""
        b0 = data[pos]
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0xF
        self._check_first_octet(fin, rsv, opcode, start)
        if n - pos < 2:
            return None
        b1 = data[pos + 1]
        masked, length = bool(b1 & 0x80), b1 & 0x7F
        control = bool(opcode & 0x8)
        if control and length > MAX_CONTROL_PAYLOAD:
            raise _error(
                f"{opcode_name(opcode)} frame with Payload len {length}, an extended"
                f" length: a control frame carries at most {MAX_CONTROL_PAYLOAD} octets"
                " (§5.5)",
                start + 1,
            )
        if masked != (self._role == "server"):
            if masked:
                text = "a masked frame from the server: a server never masks (§5.1)"
            else:
                text = "an unmasked frame from the client: a client masks every frame (§5.1, §5.3)"
            raise _error(text, start + 1)
        octets = 0
        if length >= 126:
            octets = 2 if length == 126 else 8
            if n - pos < 2 + octets:
                return None
            length = int.from_bytes(data[pos + 2 : pos + 2 + octets], "big")
            if octets == 8 and length >> 63:
                raise _error(
                    "64-bit payload length with its most significant bit set: it must be 0 (§5.2)",
                    start + 2,
                )
            if length < (126 if octets == 2 else 0x10000):
                form = "16-bit" if octets == 2 else "64-bit"
                raise _error(
                    f"payload length {length} in the {form} form: the minimal number of"
                    " octets must be used (§5.2)",
                    start + 2,
                )
        if not control and self._msg_size + length > self._max_message:
            so_far = (
                f", after {_plural(self._msg_size, 'byte')} of its message"
                if self._msg_size
                else ""
            )
            raise _error(
                f"frame payload of {_plural(length, 'byte')}{so_far}: over the decoder's"
                f" limit of {self._max_message} bytes per message (max_message_size, §10.4)",
                start + (2 if octets else 1),
                CloseCode.MESSAGE_TOO_BIG,
            )
        return _Head(fin, rsv, opcode, masked, length, octets)

    def _check_first_octet(self, fin: bool, rsv: int, opcode: int, start: int) -> None:
        """FIN, RSV1-3 and the opcode (§5.2), and whether a frame of this opcode may come
        now (§5.4, §5.5.1)."""
        name = opcode_name(opcode)
        if opcode not in _OPCODES:
            kind = "control" if opcode & 0x8 else "non-control"
            raise _error(
                f"reserved opcode 0x{opcode:x}: reserved for further {kind} frames (§5.2)",
                start,
            )
        extra = rsv & ~self._rsv_allowed
        if extra:
            bits = ", ".join(n for i, n in enumerate(_RSV_NAMES) if extra & (4 >> i))
            raise _error(f"{bits} set with no extension negotiated that defines it (§5.2)", start)
        if opcode & 0x8:
            if not fin:
                raise _error(
                    f"{name} frame without FIN: control frames are not fragmented (§5.4, §5.5)",
                    start,
                )
            return
        if self._close_seen:
            raise _error(
                f"{name} frame after the Close frame: no data frame may follow it (§5.5.1)",
                start,
            )
        if opcode == Opcode.CONTINUATION and self._msg_type is None:
            raise _error("CONTINUATION frame with no fragmented message in progress (§5.4)", start)
        if opcode != Opcode.CONTINUATION and self._msg_type is not None:
            raise _error(
                f"{name} frame while a fragmented {self._msg_type} message is in progress:"
                " its fragments must come first, as CONTINUATION frames (§5.4)",
                start,
            )

    # ----------------------------------------------------------------------------------
    # Whole frames

    def _frame(self, head: _Head, raw: bytes, start: int, out: list[Segment]) -> None:
        """One whole frame ``raw`` at ``start``, its header already checked."""
        size = head.size
        key = raw[size - 4 : size] if head.masked else None
        payload = raw[size:]
        data = mask(payload, key) if key is not None else payload
        payload_start = start + size
        message: Message | None = None
        message_type: Literal["text", "binary"] | None = None
        fragment = 0
        interleaved = after_close = False
        if head.opcode & 0x8:
            interleaved = self._msg_type is not None
            after_close = self._close_seen
            message = self._control(head.opcode, data, payload_start)
        else:
            message_type, fragment, message = self._data(head, data, payload_start)
        frame = WebSocketFrame(
            start,
            start + len(raw),
            head.fin,
            head.rsv,
            head.opcode,
            head.masked,
            head.length,
            head.length_octets,
            key,
            payload,
            data,
            message_type,
            fragment,
            message,
            interleaved,
            after_close,
        )
        out.append(frame)
        if self._fields:
            out.extend(frame_fields(frame, raw))

    def _control(self, opcode: int, data: bytes, payload_start: int) -> Message:
        if opcode == Opcode.PING:
            return Message("ping", data)
        if opcode == Opcode.PONG:
            return Message("pong", data)
        self._close_seen = True
        if not data:
            return Message("close", data)
        if len(data) == 1:
            raise _error(
                "Close frame with a 1-octet body: a body starts with a 2-octet close code (§5.5.1)",
                payload_start,
            )
        code = int.from_bytes(data[:2], "big")
        problem = close_code_problem(code)
        if problem is not None:
            raise _error(f"Close frame: {problem}", payload_start)
        reason = data[2:]
        checker = Utf8Checker()
        bad = checker.feed(reason)
        if bad is None and not checker.complete:
            bad = len(reason)
        if bad is not None:
            raise _error(
                f"Close frame: the reason is not UTF-8 at octet {bad} (§5.5.1, §8.1)",
                payload_start + 2 + bad,
                CloseCode.INVALID_PAYLOAD_DATA,
            )
        return Message("close", data, code, reason.decode("utf-8"))

    def _data(
        self, head: _Head, data: bytes, payload_start: int
    ) -> tuple[Literal["text", "binary"], int, Message | None]:
        """A TEXT, BINARY or CONTINUATION frame: its place in its message, and the message
        if it ends here (§5.4, §6.2)."""
        if head.opcode != Opcode.CONTINUATION:
            self._msg_type = "text" if head.opcode == Opcode.TEXT else "binary"
            self._msg_ext = bool(head.rsv)
            self._utf8 = Utf8Checker() if self._msg_type == "text" and not head.rsv else None
        message_type = self._msg_type
        assert message_type is not None
        self._msg_frames += 1
        fragment = self._msg_frames
        if self._utf8 is not None:
            bad = self._utf8.feed(data)
            if bad is None and head.fin and not self._utf8.complete:
                raise _error(
                    "the text message ends inside a UTF-8 character (§5.6, §8.1)",
                    payload_start + len(data),
                    CloseCode.INVALID_PAYLOAD_DATA,
                )
            if bad is not None:
                raise _error(
                    f"invalid UTF-8 in a text message, at octet {bad} of this frame's"
                    " payload (§5.6, §8.1)",
                    payload_start + bad,
                    CloseCode.INVALID_PAYLOAD_DATA,
                )
        if data:
            self._msg_parts.append(data)
            self._msg_size += len(data)
        if not head.fin:
            return message_type, fragment, None
        whole = b"".join(self._msg_parts)
        text = message_type == "text" and not self._msg_ext
        message = Message(message_type, whole.decode("utf-8") if text else whole)
        self._msg_type = None
        self._msg_parts = []
        self._msg_size = 0
        self._msg_frames = 0
        self._msg_ext = False
        self._utf8 = None
        return message_type, fragment, message


def parse(data: bytes, role: Role) -> list[Message]:
    """Every message and control frame, in order, of one direction of a connection given
    whole (``role`` receives it, as for :class:`WebSocketDecoder`). Raises
    :class:`WebSocketError` if anything is invalid or the input ends inside a frame."""
    decoder = WebSocketDecoder(role, fields=False)
    segments = decoder.feed(data)
    decoder.eof()
    return [s.message for s in segments if isinstance(s, WebSocketFrame) and s.message]
