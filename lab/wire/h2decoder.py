"""The HTTP/2 frame decoder (RFC 9113 §3.4, §4): :class:`FrameDecoder` turns one direction
of a connection, fed in pieces of any size, into :class:`~lab.wire.h2segments.Preface` and
:class:`~lab.wire.h2segments.Frame` segments; :func:`parse` does a whole capture at once.
It does the framing (the preface, buffering, the checks on the 9-octet header, §4.1-§4.2);
the payload of each type is decoded by the half it inherits from
:mod:`lab.wire.h2payloads`.

Offsets are absolute, from the first byte fed (plus ``offset``), and an error's offset is
the field that is wrong: the Length field (the frame's first byte) for a size that the type
or the limit forbids, the Stream Identifier (5 bytes in) for a frame on the wrong stream, the
Pad Length octet for padding that does not fit, the first byte that differs from the
preface. The same bad bytes give the same offset however they are split into reads.

The frame header is checked as soon as its 9 bytes are in, before a byte of the payload is
buffered. h2 (the library) waits for the whole frame first, so a header claiming 16 MiB makes
it hold 16 MiB before it says no; this decoder holds at most ``9 + max_frame_size`` bytes,
and nothing at all of a frame whose header is refused.

What raises, and what is only a problem note
--------------------------------------------

A lab viewer has to keep showing a connection after a frame that a real endpoint would
answer with GOAWAY: that frame is the interesting one. So the decoder splits invalid input
in two.

**It raises** :class:`H2FrameError` when the bytes cannot be laid out as the frame they
claim to be, or when the frame header alone breaks a rule of §6 that makes the connection
unusable. After either, the decoder refuses more input. These are:

- the client preface is not ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` (§3.4, PROTOCOL_ERROR);
- Length over ``max_frame_size`` (§4.2, FRAME_SIZE_ERROR);
- a payload size the type forbids (FRAME_SIZE_ERROR): PRIORITY not 5 octets (§6.3),
  RST_STREAM not 4 (§6.4), SETTINGS not a multiple of 6 or an ACK with a payload (§6.5),
  PING not 8 (§6.7), GOAWAY under 8 (§6.8), WINDOW_UPDATE not 4 (§6.9), and any frame too
  short for its mandatory fields (§4.2): a Pad Length octet, HEADERS priority fields, the
  PUSH_PROMISE promised stream ID;
- a frame on the wrong stream (PROTOCOL_ERROR): DATA, HEADERS, PRIORITY, RST_STREAM,
  PUSH_PROMISE or CONTINUATION on stream 0; SETTINGS, PING or GOAWAY on any other;
- padding that does not fit in the payload beside the frame's other fields (§6.1, §6.2,
  §6.6, PROTOCOL_ERROR);
- with ``decode_headers``, a field block HPACK cannot decode (§4.3, COMPRESSION_ERROR), or
  one over the decoder's size limits (ENHANCE_YOUR_CALM): the decompression context is
  lost, so no later block could be decoded either.

One deliberate overreach: §6.3 makes a PRIORITY frame of the wrong size only a *stream*
error. Its fields cannot be decoded, so it is refused like the others; h2 does the same
(it tears down the connection with FRAME_SIZE_ERROR).

**It decodes the frame and sets** :attr:`Frame.problem` when the frame is well formed but
invalid for what it says or where it is. With ``strict=True`` these raise instead, at the
offset of the offending field:

- WINDOW_UPDATE with increment 0 (§6.9: a stream error, or a connection error on stream 0,
  of type PROTOCOL_ERROR). The frame is perfectly well formed; what is wrong is asking for
  nothing, so it is shown, with the note;
- PUSH_PROMISE promising stream 0 or an odd (client-side) stream (§5.1.1, §6.6);
- SETTINGS values out of range: ENABLE_PUSH or ENABLE_CONNECT_PROTOCOL not 0 or 1,
  INITIAL_WINDOW_SIZE over 2^31-1 (FLOW_CONTROL_ERROR), MAX_FRAME_SIZE outside
  2^14..2^24-1 (§6.5.2; RFC 8441 §3);
- a stream made to depend on itself, in PRIORITY or HEADERS (RFC 7540 §5.3.1, a scheme RFC
  9113 §5.3.2 deprecates);
- the field block sequence (§4.3, §6.10): a CONTINUATION with no block open, and any frame
  other than a CONTINUATION of the same stream while a block is open. The open block is
  dropped (with ``decode_headers`` its fragments are never decoded).

Not checked here at all, because they need more than the frames of one direction: stream
states (§5.1), the order of stream IDs, flow-control windows, pseudo-header rules (§8).
That is h2's job; a viewer built on this decoder shows what h2 would refuse.
"""

from __future__ import annotations

from collections.abc import Callable

from lab.wire.h2constants import (
    _EXACT_SIZE,
    _HEADER,
    _ON_A_STREAM,
    _ON_STREAM_0,
    _SECTION,
    _STREAM_MASK,
    DEFAULT_MAX_FRAME_SIZE,
    FRAME_TYPE_NAMES,
    MAX_FRAME_SIZE_LIMIT,
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    _plural,
)
from lab.wire.h2errors import H2FrameError, _frame_error
from lab.wire.h2payloads import _BUILDERS, _Head, _PayloadDecoder
from lab.wire.h2segments import DataFrame, Frame, Preface
from lab.wire.hpack import HeaderBlockDecoder
from lab.wire.segment import Segment

__all__ = ["FrameDecoder", "parse"]


# --------------------------------------------------------------------------------------
# Fast construction for the hot path. A frozen dataclass's __init__ sets every field through
# object.__setattr__ (to get past its own frozen __setattr__), which costs about twice as
# much as writing the slots directly. The decoder builds unpadded DATA frames, the bulk of
# any stream, this way; tests compare them with frames made by __init__.

_new = object.__new__


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The setter of slot ``name``, which the frozen __setattr__ does not guard."""
    setter: Callable[[object, object], None] = vars(cls)[name].__set__
    return setter


_set_start, _set_end = _setter(Segment, "start"), _setter(Segment, "end")
_set_length, _set_type = _setter(Frame, "length"), _setter(Frame, "type")
_set_flags, _set_stream = _setter(Frame, "flags"), _setter(Frame, "stream_id")
_set_payload, _set_problem = _setter(Frame, "payload"), _setter(Frame, "problem")
_set_reserved = _setter(Frame, "reserved")
_set_pad, _set_data = _setter(DataFrame, "pad_length"), _setter(DataFrame, "data")


class FrameDecoder(_PayloadDecoder):
    """Turns one direction of an HTTP/2 connection, fed in pieces of any size, into
    :class:`Preface` and :class:`Frame` segments.

    ``expect_preface``: the bytes start with the client connection preface (the
    client-to-server direction). ``offset`` is the absolute offset of the first byte you
    will feed. ``max_frame_size`` is the largest payload accepted: the SETTINGS_MAX_FRAME_SIZE
    the receiving side advertised (settable later through :attr:`max_frame_size`).
    ``decode_headers`` decodes field blocks with a :class:`HeaderBlockDecoder`
    (:attr:`header_decoder`). ``strict`` raises for what is otherwise a
    :attr:`Frame.problem`. The bytes held between feeds are one incomplete frame, at most
    ``9 + max_frame_size``; with ``decode_headers``, also the fragments of an open field
    block, at most ``MAX_FIELD_BLOCK_SIZE``.
    """

    # The state of the payload half (strict, the HPACK context, the open field block) is in
    # the slots of _PayloadDecoder.
    __slots__ = (
        "_buf",
        "_buf_start",
        "_error",
        "_max_frame_size",
        "_offset",
        "_preface_left",
    )

    def __init__(
        self,
        expect_preface: bool = False,
        *,
        offset: int = 0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        decode_headers: bool = False,
        strict: bool = False,
    ) -> None:
        self._max_frame_size = 0
        self.max_frame_size = max_frame_size
        self._offset = offset  # absolute offset of the next byte to be fed
        self._preface_left = len(PREFACE) if expect_preface else 0
        self._buf = bytearray()  # an incomplete frame, nothing else
        self._buf_start = offset  # absolute offset of self._buf[0]
        self._strict = strict
        self._hdec = HeaderBlockDecoder() if decode_headers else None
        # The open field block (§4.3): (stream id, offset of the frame that opened it, its
        # type), and with decode_headers its fragments so far as (bytes, wire start).
        self._open_block: tuple[int, int, int] | None = None
        self._fragments: list[tuple[bytes, int]] = []
        self._block_size = 0
        self._error: H2FrameError | None = None

    # ----------------------------------------------------------------------------------
    # Public surface

    @property
    def max_frame_size(self) -> int:
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        # §6.5.2: SETTINGS_MAX_FRAME_SIZE is 2^14..2^24-1; every endpoint takes 2^14.
        if not DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError(
                f"max_frame_size must be {DEFAULT_MAX_FRAME_SIZE}..{MAX_FRAME_SIZE_LIMIT}"
                " (RFC 9113 §6.5.2)"
            )
        self._max_frame_size = value

    @property
    def header_decoder(self) -> HeaderBlockDecoder | None:
        """The HPACK context used with ``decode_headers`` (None without it)."""
        return self._hdec

    @property
    def offset(self) -> int:
        """Absolute offset just past the last byte fed."""
        return self._offset

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete frame are held."""
        return len(self._buf)

    @property
    def field_block_open(self) -> bool:
        """True between a HEADERS or PUSH_PROMISE without END_HEADERS and the end of its
        CONTINUATIONs."""
        return self._open_block is not None

    def feed(self, data: bytes) -> list[Segment]:
        """Take the next bytes; return the segments they completed (:class:`Preface` once,
        then :class:`Frame` objects). ``feed(b"")`` does nothing: the end is :meth:`eof`."""
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
            pos = 0
            if self._preface_left:
                pos = self._preface(data, base, out)
            if self._buf and pos < len(data):
                pos = self._finish_buffered(data, pos, base, out)
            if pos < len(data):
                pos = self._parse(data, pos, base, out)
                if pos < len(data):
                    self._buf = bytearray(data[pos:])
                    self._buf_start = base + pos
        except H2FrameError as exc:
            exc.segments = out
            self._error = exc
            self._buf = bytearray()
            raise
        return out

    def eof(self) -> None:
        """The input has ended: raise :class:`H2FrameError` if it ended inside the preface
        or a frame. (An open field block is not a framing error; see
        :attr:`field_block_open`.)"""
        if self._error is not None:
            raise self._refusal()
        where = None
        if self._preface_left:
            where = "the input ended inside the client connection preface"
        elif len(self._buf) >= 9:
            length = int.from_bytes(self._buf[:3], "big")
            missing = 9 + length - len(self._buf)
            where = f"the input ended inside a frame ({_plural(missing, 'more byte')} announced)"
        elif self._buf:
            where = "the input ended inside a frame header"
        if where is not None:
            self._error = H2FrameError(where, self._offset)
            raise self._error

    # ----------------------------------------------------------------------------------
    # Framing

    def _refusal(self) -> H2FrameError:
        assert self._error is not None
        return H2FrameError(
            f"the decoder already failed: {self._error.message}",
            self._error.offset,
            error_code=self._error.error_code,
        )

    def _preface(self, data: bytes, base: int, out: list[Segment]) -> int:
        """Match the client preface (§3.4) as it arrives; nothing is buffered."""
        done = len(PREFACE) - self._preface_left
        take = min(self._preface_left, len(data))
        expected = PREFACE[done : done + take]
        if data[:take] != expected:
            i = next(i for i in range(take) if data[i] != expected[i])
            raise _frame_error(
                f"not the HTTP/2 client preface: byte {done + i} is {data[i : i + 1]!r},"
                f" expected {expected[i : i + 1]!r} (PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n,"
                " RFC 9113 §3.4)",
                base + i,
                ErrorCode.PROTOCOL_ERROR,
            )
        self._preface_left -= take
        if not self._preface_left:
            out.append(Preface(base + take - len(PREFACE), base + take))
        return take

    def _finish_buffered(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Complete the frame held in the buffer from the head of ``data``. Returns where
        ``data``'s next frame starts, or ``len(data)`` if the frame is still incomplete."""
        buf = self._buf
        n = len(data)
        if len(buf) < 9:
            take = min(9 - len(buf), n - pos)
            buf += data[pos : pos + take]
            pos += take
            if len(buf) < 9:
                return pos
            word, flags, sid = _HEADER.unpack_from(buf)
            self._check_header(self._buf_start, word >> 8, word & 0xFF, flags, sid)
        total = 9 + int.from_bytes(buf[:3], "big")
        take = min(total - len(buf), n - pos)
        buf += data[pos : pos + take]
        pos += take
        if len(buf) < total:
            return pos
        self._buf = bytearray()
        self._parse(bytes(buf), 0, self._buf_start, out)
        return pos

    def _parse(self, data: bytes, pos: int, base: int, out: list[Segment]) -> int:
        """Decode whole frames from ``data[pos:]``; return the index of the first byte of
        an incomplete frame (``len(data)`` if none). ``base`` is data[0]'s offset."""
        n = len(data)
        append = out.append
        unpack = _HEADER.unpack_from
        max_size = self._max_frame_size
        while n - pos >= 9:
            word, flags, sid = unpack(data, pos)
            length = word >> 8
            if length > max_size:
                # §4.2, before a byte of the payload is held: the early length check.
                raise self._too_long(base + pos, length)
            ftype = word & 0xFF
            end = pos + 9 + length
            if (
                ftype == 0
                and not flags & 0x08
                and 0 < sid <= _STREAM_MASK
                and self._open_block is None
            ):
                # The common case, unpadded DATA on a stream outside a field block: nothing
                # to check but the length, nothing to decode. Built slot by slot.
                if end > n:
                    break
                payload = data[pos + 9 : end]
                frame: DataFrame = _new(DataFrame)
                _set_start(frame, base + pos)
                _set_end(frame, base + end)
                _set_length(frame, length)
                _set_type(frame, 0)
                _set_flags(frame, flags)
                _set_stream(frame, sid)
                _set_payload(frame, payload)
                _set_problem(frame, None)
                _set_reserved(frame, False)
                _set_pad(frame, None)
                _set_data(frame, payload)
                append(frame)
                pos = end
                continue
            start = base + pos
            self._check_header(start, length, ftype, flags, sid)
            if end > n:
                break
            head = _Head(start, length, ftype, flags, sid & _STREAM_MASK, sid > _STREAM_MASK)
            problem = self._sequence(head)
            build = _BUILDERS.get(ftype, FrameDecoder._unknown)
            append(build(self, head, data[pos + 9 : end], problem))
            pos = end
        return pos

    def _check_header(self, start: int, length: int, ftype: int, flags: int, sid: int) -> None:
        """Everything the 9-octet header alone can break (§6), checked before the payload
        is buffered. The size rules come first (offset: the Length field), then the stream
        rules (offset: the Stream Identifier)."""
        if length > self._max_frame_size:
            raise self._too_long(start, length)
        if ftype not in _SECTION:
            return  # unknown types: no rules (§5.5)
        name = FRAME_TYPE_NAMES[ftype]
        section = _SECTION[ftype]
        exact = _EXACT_SIZE.get(ftype)
        too_short = None
        if exact is not None and length != exact:
            raise _frame_error(
                f"{name} frame with Length {length}: its payload is exactly"
                f" {_plural(exact, 'octet')} (RFC 9113 {section})",
                start,
                ErrorCode.FRAME_SIZE_ERROR,
            )
        if ftype == FrameType.SETTINGS:
            if flags & Flag.ACK and length:
                raise _frame_error(
                    f"SETTINGS ACK with Length {length}: an acknowledgement has an empty"
                    " payload (RFC 9113 §6.5)",
                    start,
                    ErrorCode.FRAME_SIZE_ERROR,
                )
            if length % 6:
                raise _frame_error(
                    f"SETTINGS frame with Length {length}: settings are 6 octets each, so"
                    " the Length is a multiple of 6 (RFC 9113 §6.5)",
                    start,
                    ErrorCode.FRAME_SIZE_ERROR,
                )
        elif ftype == FrameType.GOAWAY and length < 8:
            too_short = "the last stream ID and the error code (8 octets)"
        elif ftype in (FrameType.DATA, FrameType.HEADERS, FrameType.PUSH_PROMISE):
            fields = []
            if flags & Flag.PADDED:
                fields.append(("the Pad Length octet", 1))
            if ftype == FrameType.HEADERS and flags & Flag.PRIORITY:
                fields.append(("the priority fields", 5))
            if ftype == FrameType.PUSH_PROMISE:
                fields.append(("the promised stream ID", 4))
            need = sum(size for _, size in fields)
            if length < need:
                what = " and ".join(text for text, _ in fields)
                too_short = f"{what} ({_plural(need, 'octet')})"
        if too_short is not None:
            raise _frame_error(
                f"{name} frame with Length {length} has no room for {too_short}"
                " (RFC 9113 §4.2, " + section + ")",
                start,
                ErrorCode.FRAME_SIZE_ERROR,
            )
        stream = sid & _STREAM_MASK
        if ftype in _ON_A_STREAM and not stream:
            raise _frame_error(
                f"{name} frame on stream 0: {name} belongs to a stream (RFC 9113 {section})",
                start + 5,
                ErrorCode.PROTOCOL_ERROR,
            )
        if ftype in _ON_STREAM_0 and stream:
            raise _frame_error(
                f"{name} frame on stream {stream}: {name} is for the connection, stream 0"
                f" (RFC 9113 {section})",
                start + 5,
                ErrorCode.PROTOCOL_ERROR,
            )

    def _too_long(self, start: int, length: int) -> H2FrameError:
        return _frame_error(
            f"frame Length {length} is over the maximum frame size {self._max_frame_size}"
            " (RFC 9113 §4.2; the receiver's SETTINGS_MAX_FRAME_SIZE)",
            start,
            ErrorCode.FRAME_SIZE_ERROR,
        )


def parse(data: bytes, *, decode_headers: bool = False) -> list[Frame]:
    """Every frame of one direction of a connection, given whole: an optional client
    preface first, then whole frames. Raises :class:`H2FrameError` if anything is invalid
    or the input ends inside a frame.

    The preface is expected when the input starts with ``P``: as a frame header that byte
    would announce a payload over 5 MiB, far past the default maximum frame size.
    """
    decoder = FrameDecoder(data[:1] == PREFACE[:1], decode_headers=decode_headers)
    segments = decoder.feed(data)
    decoder.eof()
    return [s for s in segments if isinstance(s, Frame)]
