"""What follows an HTTP/2 frame header: each frame type's payload (RFC 9113 §6.1-§6.10)
decoded into its :class:`~lab.wire.h2segments.Frame` subclass, and the field block
sequence (§4.3, §6.10) that a HEADERS or PUSH_PROMISE opens and CONTINUATION frames carry on,
with HPACK decoding (RFC 7541) of each complete block.

:class:`_PayloadDecoder` is the half of :class:`~lab.wire.h2decoder.FrameDecoder` after the
framing: the decoder finds a whole frame and checks its header, then hands the header and
the payload to the builder for the frame's type (:data:`_BUILDERS`). What the payload can
break raises (padding that does not fit, a field block HPACK refuses); what is well formed
but invalid where it stands becomes :attr:`~lab.wire.h2segments.Frame.problem`, or raises in
strict mode. :mod:`lab.wire.h2decoder` lists both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from lab.wire.h2constants import (
    _SECTION,
    _SETTING,
    _STREAM_MASK,
    _U32,
    _U32X2,
    FRAME_TYPE_NAMES,
    ErrorCode,
    Flag,
    FrameType,
    _plural,
    _setting_complaint,
    _unknown,
    setting_name,
)
from lab.wire.h2errors import _frame_error
from lab.wire.h2segments import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    Setting,
    SettingsFrame,
    UnknownFrame,
    WindowUpdateFrame,
)
from lab.wire.hpack import HeaderBlock, HeaderBlockDecoder, HPACKError

__all__: list[str] = []


class _Head(NamedTuple):
    """A frame header, decoded: where the frame starts and its fields."""

    start: int
    length: int
    type: int
    flags: int
    stream_id: int
    reserved: bool

    def common(self, payload: bytes) -> tuple[int, int, int, int, int, int, bytes]:
        """The fields every Frame starts with, in order."""
        return (
            self.start, self.start + 9 + self.length, self.length, self.type, self.flags,
            self.stream_id, payload,
        )  # fmt: skip


_Builder = Callable[["_PayloadDecoder", _Head, bytes, "str | None"], Frame]


class _PayloadDecoder:
    """The payload half of :class:`~lab.wire.h2decoder.FrameDecoder`, which inherits it and
    sets its state: the strict flag, the HPACK context, and the open field block."""

    __slots__ = ("_block_size", "_fragments", "_hdec", "_open_block", "_strict")

    _strict: bool
    _hdec: HeaderBlockDecoder | None
    _open_block: tuple[int, int, int] | None
    _fragments: list[tuple[bytes, int]]
    _block_size: int

    def _problem(self, text: str, offset: int, code: ErrorCode) -> str:
        """A contextual problem: the note, or in strict mode the error."""
        if self._strict:
            raise _frame_error(text, offset, code)
        return text

    def _sequence(self, h: _Head) -> str | None:
        """§4.3, §6.10: a field block is HEADERS/PUSH_PROMISE then CONTINUATIONs of the same
        stream, nothing in between; a CONTINUATION only ever continues one."""
        open_block = self._open_block
        is_continuation = h.type == FrameType.CONTINUATION
        if open_block is not None:
            if is_continuation and h.stream_id == open_block[0]:
                return None
            self._open_block = None
            self._fragments = []
            name = FRAME_TYPE_NAMES.get(h.type) or _unknown(h.type)
            what = f"CONTINUATION of stream {h.stream_id}" if is_continuation else name
            return self._problem(
                f"{what} inside the field block of stream {open_block[0]} (opened by"
                f" {FRAME_TYPE_NAMES[open_block[2]]} at offset {open_block[1]}): a field block"
                " continues only in CONTINUATION frames of its own stream (RFC 9113 §4.3,"
                " §6.10); the block is dropped",
                h.start + 5 if is_continuation else h.start + 3,
                ErrorCode.PROTOCOL_ERROR,
            )
        if is_continuation:
            return self._problem(
                "CONTINUATION with no field block open: it must follow a HEADERS,"
                " PUSH_PROMISE or CONTINUATION without END_HEADERS on its stream"
                " (RFC 9113 §6.10)",
                h.start + 3,
                ErrorCode.PROTOCOL_ERROR,
            )
        return None

    def _field_block(self, h: _Head, fragment: bytes, frag_start: int) -> HeaderBlock | None:
        """Track (and with decode_headers, decode) the field block this fragment is part
        of; return the decoded block when this frame ends it."""
        hdec = self._hdec
        end_headers = h.flags & Flag.END_HEADERS
        if h.type == FrameType.CONTINUATION:
            if self._open_block is None:
                return None  # an orphan, already noted by _sequence
            if hdec is not None:
                self._add_fragment(fragment, frag_start, hdec)
            if not end_headers:
                return None
            self._open_block = None
            if hdec is None:
                return None
            pieces, self._fragments = self._fragments, []
            block = b"".join(piece for piece, _ in pieces)
            ranges = [(at, at + len(piece)) for piece, at in pieces]
            return hdec.decode(block, fragments=ranges)
        if not end_headers:
            self._open_block = (h.stream_id, h.start, h.type)
            self._fragments = []
            self._block_size = 0
            if hdec is not None:
                self._add_fragment(fragment, frag_start, hdec)
            return None
        if hdec is None:
            return None
        return hdec.decode(fragment, fragments=((frag_start, frag_start + len(fragment)),))

    def _add_fragment(self, fragment: bytes, frag_start: int, hdec: HeaderBlockDecoder) -> None:
        room = hdec.max_block_size - self._block_size
        if len(fragment) > room:
            raise HPACKError(
                f"field block longer than {hdec.max_block_size} bytes (MAX_FIELD_BLOCK_SIZE):"
                f" {ErrorCode.ENHANCE_YOUR_CALM.name}",
                frag_start + room,
                error_code=ErrorCode.ENHANCE_YOUR_CALM,
                status_hint=431,
            )
        self._block_size += len(fragment)
        self._fragments.append((fragment, frag_start))

    def _padding(self, h: _Head, pad_length: int, fixed: int) -> None:
        """The Pad Length octet, the type's fixed fields and the padding must all fit
        (§6.1, §6.2, §6.6: padding as long as the payload or longer is an error; for HEADERS
        with priority and for PUSH_PROMISE the fixed fields must fit too, §4.2)."""
        room = h.length - 1 - fixed
        if pad_length > room:
            fields = " and the fields before the fragment" if fixed else ""
            raise _frame_error(
                f"{FRAME_TYPE_NAMES[h.type]} Pad Length {pad_length}, but only"
                f" {_plural(room, 'octet')} of the {h.length}-octet payload remain after the"
                f" Pad Length octet{fields} (RFC 9113 {_SECTION[h.type]})",
                h.start + 9,
                ErrorCode.PROTOCOL_ERROR,
            )

    # ----------------------------------------------------------------------------------
    # One builder per frame type (§6). Each gets the header, the payload and the
    # field-block problem, checks what the payload can break, and returns the frame.

    def _data(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        pad_length = None
        body = payload
        if h.flags & Flag.PADDED:
            pad_length = payload[0]
            self._padding(h, pad_length, 0)
            body = payload[1 : h.length - pad_length]
        return DataFrame(*h.common(payload), pad_length, body, problem=problem, reserved=h.reserved)

    def _headers(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        i = 0
        pad_length = None
        if h.flags & Flag.PADDED:
            pad_length = payload[0]
            i = 1
            self._padding(h, pad_length, 5 if h.flags & Flag.PRIORITY else 0)
        exclusive: bool | None = None
        depends_on: int | None = None
        weight: int | None = None
        if h.flags & Flag.PRIORITY:
            (word,) = _U32.unpack_from(payload, i)
            exclusive, depends_on, weight = word > _STREAM_MASK, word & _STREAM_MASK, payload[i + 4]
            if depends_on == h.stream_id:
                problem = _join(problem, self._self_dependency(h, h.start + 9 + i))
            i += 5
        fragment = payload[i : h.length - (pad_length or 0)]
        block = self._field_block(h, fragment, h.start + 9 + i)
        return HeadersFrame(
            *h.common(payload), pad_length, exclusive, depends_on, weight, fragment,
            block=block, problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _self_dependency(self, h: _Head, offset: int) -> str:
        return self._problem(
            f"stream {h.stream_id} depends on itself (RFC 7540 §5.3.1, a stream error)",
            offset,
            ErrorCode.PROTOCOL_ERROR,
        )

    def _priority(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        (word,) = _U32.unpack_from(payload)
        depends_on = word & _STREAM_MASK
        if depends_on == h.stream_id:
            problem = _join(problem, self._self_dependency(h, h.start + 9))
        return PriorityFrame(
            *h.common(payload), word > _STREAM_MASK, depends_on, payload[4],
            problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _rst_stream(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        (code,) = _U32.unpack_from(payload)
        return RstStreamFrame(*h.common(payload), code, problem=problem, reserved=h.reserved)

    def _settings(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        values = []
        for i in range(0, h.length, 6):
            ident, value = _SETTING.unpack_from(payload, i)
            values.append(Setting(ident, setting_name(ident), value))
            complaint = _setting_complaint(ident, value)
            if complaint is not None:
                text, code = complaint
                problem = _join(problem, self._problem(text, h.start + 11 + i, code))
        return SettingsFrame(
            *h.common(payload), tuple(values), problem=problem, reserved=h.reserved
        )

    def _push_promise(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        i = 0
        pad_length = None
        if h.flags & Flag.PADDED:
            pad_length = payload[0]
            i = 1
            self._padding(h, pad_length, 4)
        promised = _U32.unpack_from(payload, i)[0] & _STREAM_MASK
        if not promised or promised % 2:
            problem = _join(
                problem,
                self._problem(
                    f"PUSH_PROMISE promises stream {promised}: a server-initiated stream has"
                    " an even, non-zero identifier (RFC 9113 §5.1.1, §6.6)",
                    h.start + 9 + i,
                    ErrorCode.PROTOCOL_ERROR,
                ),
            )
        i += 4
        fragment = payload[i : h.length - (pad_length or 0)]
        block = self._field_block(h, fragment, h.start + 9 + i)
        return PushPromiseFrame(
            *h.common(payload), pad_length, promised, fragment,
            block=block, problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _ping(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        return PingFrame(*h.common(payload), payload, problem=problem, reserved=h.reserved)

    def _goaway(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        last, code = _U32X2.unpack_from(payload)
        return GoAwayFrame(
            *h.common(payload), last & _STREAM_MASK, code, payload[8:],
            problem=problem, reserved=h.reserved,
        )  # fmt: skip

    def _window_update(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        increment = _U32.unpack_from(payload)[0] & _STREAM_MASK
        if not increment:
            which = "a stream error" if h.stream_id else "a connection error"
            problem = _join(
                problem,
                self._problem(
                    f"WINDOW_UPDATE with increment 0 ({which}; the increment is 1..2^31-1,"
                    " RFC 9113 §6.9)",
                    h.start + 9,
                    ErrorCode.PROTOCOL_ERROR,
                ),
            )
        return WindowUpdateFrame(
            *h.common(payload), increment, problem=problem, reserved=h.reserved
        )

    def _continuation(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        block = self._field_block(h, payload, h.start + 9)
        return ContinuationFrame(
            *h.common(payload), payload, block=block, problem=problem, reserved=h.reserved
        )

    def _unknown(self, h: _Head, payload: bytes, problem: str | None) -> Frame:
        return UnknownFrame(*h.common(payload), problem=problem, reserved=h.reserved)


_BUILDERS: Final[dict[int, _Builder]] = {
    FrameType.DATA: _PayloadDecoder._data,
    FrameType.HEADERS: _PayloadDecoder._headers,
    FrameType.PRIORITY: _PayloadDecoder._priority,
    FrameType.RST_STREAM: _PayloadDecoder._rst_stream,
    FrameType.SETTINGS: _PayloadDecoder._settings,
    FrameType.PUSH_PROMISE: _PayloadDecoder._push_promise,
    FrameType.PING: _PayloadDecoder._ping,
    FrameType.GOAWAY: _PayloadDecoder._goaway,
    FrameType.WINDOW_UPDATE: _PayloadDecoder._window_update,
    FrameType.CONTINUATION: _PayloadDecoder._continuation,
}


def _join(problem: str | None, more: str) -> str:
    return more if problem is None else f"{problem}; {more}"
