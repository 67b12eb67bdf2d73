"""The HTTP/2 codecs against hyperframe 6.1.0 and hpack 4.2.0.

**hyperframe** (``h2frames``): the input (after the client connection preface, when it
starts with one) is cut into whole frames by their Length fields, and each frame goes
through hyperframe the way h2 drives it (``Frame.parse_frame_header`` on the 9-octet header,
``parse_body`` on the payload) and through a fresh lab :class:`~lab.wire.h2frames.
FrameDecoder`. Both must decode the same fields (type, flags, stream, every payload field,
SETTINGS as a dictionary), or both refuse the frame, unless the frame falls under one of the
seven numbered differences of :mod:`lab.wire.h2frames`'s docstring, judged from its bytes
alone (:func:`documented_difference`); then the frame must differ exactly that way.

**hpack** (``hpack``): the input is one field block, decoded twice in a row in one context
(the second time it may refer to the entries the first added), by ``hpack.Decoder`` and by
the lab's :class:`~lab.wire.h2frames.HeaderBlockDecoder`. Both accept and agree on every
field (name, value, whether it was never-indexed) and on the dynamic table after each
block (entries, size, maximum size), or both refuse. Then **fragments**: the block is sent
as a HEADERS frame and CONTINUATION frames, cut at a few places, and the frame decoder must
decode it to the same representations, or fail at the wire offset of the same block byte:
a field block is one thing however it is fragmented (RFC 9113 §4.3).
"""

from __future__ import annotations

import itertools
import random
import struct
import zlib
from typing import Final

import hpack
from hyperframe import frame as hf
from hyperframe.exceptions import HyperframeError

from lab.decode import Decoded
from lab.wire import h2frames as h2f
from lab.wire.h2frames import (
    ContinuationFrame,
    Frame,
    FrameDecoder,
    FrameType,
    H2FrameError,
    HeaderBlockDecoder,
    HeadersFrame,
    HPACKError,
    SettingsFrame,
)

__all__ = [
    "compare_fragments",
    "compare_hpack",
    "compare_hyperframe",
    "documented_difference",
]

_U32: Final = struct.Struct(">L")
_MASK: Final = 0x7FFFFFFF
_DEFAULT_MAX_FRAME: Final = 16_384
# Places a block is cut into fragments for the CONTINUATION check: a HEADERS frame and up
# to this many CONTINUATIONs.
MAX_FRAGMENT_CUTS: Final = 4


def _whole_frames(data: bytes) -> list[bytes]:
    if data.startswith(h2f.PREFACE):
        data = data[len(h2f.PREFACE) :]
    out: list[bytes] = []
    pos = 0
    while len(data) - pos >= 9:
        end = pos + 9 + int.from_bytes(data[pos : pos + 3], "big")
        if end > len(data):
            break
        out.append(data[pos:end])
        pos = end
    return out


def _hyperframe(raw: bytes) -> dict[str, object] | None:
    """hyperframe's fields of one whole frame, named as the lab names them; None if it
    refuses the frame."""
    try:
        frame, length = hf.Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9 : 9 + length]))
    except (HyperframeError, ValueError):
        return None
    return hyperframe_view(frame, length)


def hyperframe_view(frame: hf.Frame, length: int) -> dict[str, object]:
    """The fields hyperframe decoded, named as the lab names them."""
    out: dict[str, object] = {"type": frame.type, "stream_id": frame.stream_id, "length": length}
    if isinstance(frame, hf.ExtensionFrame):
        out.update(flags=frame.flag_byte, payload=frame.body)
        return out
    out["flag_names"] = frozenset(frame.flags)
    padded = "PADDED" in frame.flags
    pad = {"pad_length": getattr(frame, "pad_length", None) if padded else None}
    if isinstance(frame, hf.DataFrame):
        out.update(data=frame.data, **pad)
    elif isinstance(frame, hf.HeadersFrame):
        out.update(fragment=frame.data, **pad)
        if "PRIORITY" in frame.flags:
            out.update(exclusive=frame.exclusive, depends_on=frame.depends_on,
                       weight=frame.stream_weight)  # fmt: skip
    elif isinstance(frame, hf.PriorityFrame):
        out.update(exclusive=frame.exclusive, depends_on=frame.depends_on,
                   weight=frame.stream_weight)  # fmt: skip
    elif isinstance(frame, hf.RstStreamFrame):
        out.update(error_code=frame.error_code)
    elif isinstance(frame, hf.SettingsFrame):
        out.update(settings=dict(frame.settings))
    elif isinstance(frame, hf.PushPromiseFrame):
        out.update(promised_stream_id=frame.promised_stream_id, fragment=frame.data, **pad)
    elif isinstance(frame, hf.PingFrame):
        out.update(opaque_data=frame.opaque_data)
    elif isinstance(frame, hf.GoAwayFrame):
        out.update(last_stream_id=frame.last_stream_id, error_code=frame.error_code,
                   debug_data=frame.additional_data)  # fmt: skip
    elif isinstance(frame, hf.WindowUpdateFrame):
        out.update(increment=frame.window_increment)
    elif isinstance(frame, hf.ContinuationFrame):
        out.update(fragment=frame.data)
    return out


def _lab(raw: bytes, *, strict: bool = False) -> Frame | None:
    try:
        segments = FrameDecoder(strict=strict).feed(raw)
    except H2FrameError:
        return None
    frame = segments[0]
    assert isinstance(frame, Frame)
    return frame


def lab_view(frame: Frame, like: dict[str, object]) -> dict[str, object]:
    """The keys of ``like``, from the lab's frame (SETTINGS as a dict: the last value wins)."""
    out: dict[str, object] = {}
    for key in like:
        if key == "flag_names":
            out[key] = frozenset(frame.flag_names)
        elif key == "settings":
            assert isinstance(frame, SettingsFrame)
            out[key] = {s.id: s.value for s in frame.settings}
        else:
            out[key] = getattr(frame, key)
    return out


def documented_difference(raw: bytes) -> str | None:
    """The numbered difference of :mod:`lab.wire.h2frames` this whole frame falls under,
    from its bytes alone; None when the two decoders must agree."""
    length, ftype, flags = int.from_bytes(raw[:3], "big"), raw[3], raw[4]
    payload = raw[9:]
    sid = _U32.unpack(raw[5:9])[0] & _MASK
    if length > _DEFAULT_MAX_FRAME:
        return "1 frame size"
    if ftype == 0xA:
        return "5 ALTSVC"
    if not payload:
        return None
    padded = bool(flags & 0x08)
    if ftype == FrameType.WINDOW_UPDATE and length == 4:
        if payload[0] & 0x80:
            return "2 reserved bit"
        if not _U32.unpack(payload)[0] & _MASK:
            return "6 increment 0"
    if ftype == FrameType.GOAWAY and length >= 8 and sid == 0 and payload[0] & 0x80:
        return "2 reserved bit"
    if ftype == FrameType.PUSH_PROMISE and sid and length >= 4 + padded:
        promised = _U32.unpack_from(payload, 1 if padded else 0)[0]
        if promised > _MASK:
            return "2 reserved bit"
        pad = payload[0] if padded else 0
        ours_refuse = padded and pad > length - 5
        theirs_refuse = not promised or promised % 2 or (pad and pad >= length)
        if ours_refuse and not theirs_refuse:
            return "4 PUSH_PROMISE padding"
        if not ours_refuse and (not promised or promised % 2):
            return "6 promised stream"
    if ftype == FrameType.HEADERS and sid and padded:
        priority = 5 if flags & 0x20 else 0
        if length >= 1 + priority:
            pad = payload[0]
            if (bool(pad) and pad >= length - 1) != (pad > length - 1 - priority):
                return "3 HEADERS padding"
    return None


def _one_frame(raw: bytes) -> str | None:
    theirs, ours = _hyperframe(raw), _lab(raw)
    difference = documented_difference(raw)
    if difference is None:
        if theirs is None or ours is None:
            if theirs is None and ours is None:
                return None
            who = "hyperframe" if theirs is None else "the lab"
            return f"{who} refuses frame {raw.hex(' ')}, the other decodes it"
        mine = lab_view(ours, theirs)
        if mine != theirs:
            keys = [k for k in theirs if mine[k] != theirs[k]]
            return f"frame {raw[:9].hex(' ')}: {keys} differ: lab {mine} / hyperframe {theirs}"
        return None
    if difference.startswith("6"):
        if theirs is not None or ours is None or ours.problem is None:
            return f"frame {raw.hex(' ')} should be point {difference}"
        if _lab(raw, strict=True) is not None:
            return f"frame {raw.hex(' ')}: strict mode decodes a point {difference} frame"
    elif difference.startswith("2") and ours is not None and theirs is not None:
        fields = {FrameType.WINDOW_UPDATE: "increment", FrameType.GOAWAY: "last_stream_id"}
        key = fields.get(FrameType(ours.type), "promised_stream_id")
        if theirs[key] != getattr(ours, key) | 0x80000000:
            return f"frame {raw.hex(' ')}: point 2, but {key} is not the masked value"
    elif difference.startswith(("3", "4")) and (ours is None) == (theirs is None):
        return f"frame {raw.hex(' ')} should be point {difference}: one decoder refuses it"
    return None


def compare_hyperframe(data: bytes, decoded: Decoded) -> str | None:
    for raw in _whole_frames(data):
        difference = _one_frame(raw)
        if difference is not None:
            return difference
    return None


# -- HPACK -------------------------------------------------------------------------------

_Fields = list[tuple[bytes, bytes, bool]]
_Table = tuple[list[tuple[bytes, bytes]], int, int]


def _hpack(blocks: list[bytes]) -> list[tuple[_Fields, _Table]] | None:
    decoder = hpack.Decoder()
    out: list[tuple[_Fields, _Table]] = []
    try:
        for block in blocks:
            headers = decoder.decode(block, raw=True)
            fields = [
                (bytes(h[0]), bytes(h[1]), isinstance(h, hpack.NeverIndexedHeaderTuple))
                for h in headers
            ]
            table = decoder.header_table
            out.append((fields, (list(table.dynamic_entries), table._current_size, table.maxsize)))
    except hpack.HPACKError:
        return None
    return out


def _lab_hpack(blocks: list[bytes]) -> list[tuple[_Fields, _Table]] | None:
    decoder = HeaderBlockDecoder()
    out: list[tuple[_Fields, _Table]] = []
    try:
        for block in blocks:
            decoded = decoder.decode(block)
            fields = [
                (r.name, r.value, r.representation is h2f.Representation.NEVER_INDEXED)
                for r in decoded.representations
                if r.representation is not h2f.Representation.SIZE_UPDATE
            ]
            table = (list(decoded.table), decoded.table_size, decoded.table_max_size)
            out.append((fields, table))
    except HPACKError:
        return None
    return out


def compare_hpack(data: bytes, decoded: Decoded) -> str | None:
    blocks = [data, data]
    theirs, ours = _hpack(blocks), _lab_hpack(blocks)
    if theirs is None or ours is None:
        if (theirs is None) != (ours is None):
            who = "hpack" if theirs is None else "the lab"
            return f"{who} refuses the block (decoded twice), the other decodes it"
        return None
    for i, (mine, their) in enumerate(zip(ours, theirs, strict=True)):
        if mine[0] != their[0]:
            return f"block {i + 1}: fields differ: lab {mine[0]!r} / hpack {their[0]!r}"
        if mine[1] != their[1]:
            return f"block {i + 1}: tables differ: lab {mine[1]!r} / hpack {their[1]!r}"
    return None


def compare_fragments(data: bytes, decoded: Decoded) -> str | None:
    if not data or len(data) > _DEFAULT_MAX_FRAME:
        return None
    rng = random.Random(zlib.crc32(data))
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, MAX_FRAGMENT_CUTS)))
    bounds = [0, *cuts, len(data)]
    parts = [data[a:b] for a, b in itertools.pairwise(bounds)]
    wire = h2f.headers(1, parts[0], end_headers=len(parts) == 1)
    ranges = [(9, 9 + len(parts[0]))]
    for i, part in enumerate(parts[1:], 1):
        ranges.append((len(wire) + 9, len(wire) + 9 + len(part)))
        wire += h2f.continuation(1, part, end_headers=i == len(parts) - 1)
    frames = FrameDecoder(decode_headers=True)
    try:
        segments = frames.feed(wire)
    except HPACKError as exc:
        if decoded.error is None:
            return f"in {len(parts)} fragments the block fails: {exc}; whole it decodes"
        expected = _wire_offset(ranges, decoded.error.offset)
        if exc.offset != expected or exc.message != decoded.error.message:
            return f"in {len(parts)} fragments: {exc} / whole: {decoded.error} (wire {expected})"
        return None
    last = segments[-1]
    assert isinstance(last, HeadersFrame | ContinuationFrame)
    if decoded.error is not None:
        return f"in {len(parts)} fragments the block decodes; whole it fails: {decoded.error}"
    if last.block is None or list(last.block.representations) != decoded.segments:
        return f"in {len(parts)} fragments the block decodes to other representations"
    return None


def _wire_offset(ranges: list[tuple[int, int]], at: int) -> int:
    """Block offset ``at`` on the wire: in its fragment, or the end of the last one."""
    for start, end in ranges:
        if at < end - start:
            return start + at
        at -= end - start
    return ranges[-1][1] + at
