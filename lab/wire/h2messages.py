"""One direction of an HTTP/2 connection as annotated segments, for showing a byte stream.

The HTTP/2 counterpart of :class:`lab.wire.http1.MessageDecoder`. Frames come from
:class:`lab.wire.h2frames.FrameDecoder` (with HPACK decoding: one HPACK context per
direction, as on the wire). Under each frame it nests, as
:class:`~lab.wire.segment.Nested` segments placed at their wire ranges:

- the frame's fields (:func:`lab.wire.h2fields.frame_fields`): the header's Length, Type,
  Flags and Stream Identifier (RFC 9113 §4.1), then the payload's own fields (each
  setting, the error code, the increment, the padding, the data or field block fragment);
- after a Field Block Fragment that ends a field block, one segment per HPACK
  representation (``:status: 200 — indexed (static 8)``), placed at its wire range inside
  the fragment (or fragments, when CONTINUATION frames carried the block);
- for a response whose ``content-type`` is ``text/event-stream``, the SSE lines carried in
  that stream's DATA frames, placed on the wire across frame headers like SSE lines
  across chunk framing in HTTP/1.1.

Streams are many and interleaved, so there is one body decoder per stream, bounded by
:data:`MAX_TRACKED_STREAMS`.
"""

from __future__ import annotations

from typing import Final

from lab.wire.errors import ProtocolError
from lab.wire.h2fields import FragmentField, frame_fields
from lab.wire.h2frames import (
    ContinuationFrame,
    DataFrame,
    Frame,
    FrameDecoder,
    HeadersFrame,
    PushPromiseFrame,
)
from lab.wire.nested import BodyContent
from lab.wire.segment import Nested, Segment
from lab.wire.sse import SSEDecoder

__all__ = ["MAX_TRACKED_STREAMS", "H2Decoder"]

# Event streams decoded at once per direction. A viewer follows at most this many open
# SSE streams; more (an odd trace) are shown as frames only.
MAX_TRACKED_STREAMS: Final = 1024
_END_STREAM: Final = 0x1


class H2Decoder:
    """Frames of one direction, with their fields, HPACK fields and SSE lines nested under
    them."""

    def __init__(self, *, from_client: bool) -> None:
        self.from_client = from_client
        self.frames = FrameDecoder(expect_preface=from_client, decode_headers=True)
        self._bodies: dict[int, BodyContent] = {}

    def feed(self, data: bytes) -> list[Segment]:
        try:
            segs = self.frames.feed(data)
        except ProtocolError as exc:
            exc.segments = self._expand(exc.segments)
            raise
        return self._expand(segs)

    def eof(self) -> list[Segment]:
        self.frames.eof()
        out: list[Segment] = []
        for body in self._bodies.values():
            out.extend(body.end())
        self._bodies.clear()
        return out

    def _expand(self, segs: list[Segment]) -> list[Segment]:
        out: list[Segment] = []
        for seg in segs:
            out.append(seg)
            if not isinstance(seg, Frame):
                continue
            for field in frame_fields(seg):
                out.append(field)
                if isinstance(field.unit, FragmentField):
                    out.extend(self._hpack(seg))
            if isinstance(seg, HeadersFrame | ContinuationFrame) and seg.block is not None:
                self._maybe_event_stream(seg)
            elif isinstance(seg, DataFrame):
                body = self._bodies.get(seg.stream_id)
                if body is not None:
                    # The data sits after the Pad Length octet and before the padding.
                    data_start = seg.end - (seg.pad_length or 0) - len(seg.data)
                    out.extend(body.feed(data_start, seg.data))
                    if seg.flags & _END_STREAM:
                        out.extend(self._bodies.pop(seg.stream_id).end())
        return out

    @staticmethod
    def _hpack(frame: Frame) -> list[Segment]:
        """The HPACK representations of the field block ``frame`` ends, if it ends one."""
        if not isinstance(frame, HeadersFrame | ContinuationFrame | PushPromiseFrame):
            return []
        block = frame.block
        if block is None:
            return []
        out: list[Segment] = []
        for rep in block.representations:
            ranges = block.wire_ranges(rep.start, rep.end)
            if not ranges:
                continue
            out.append(Nested(ranges[0][0], ranges[-1][1], rep, block.data[rep.start : rep.end]))
        return out

    def _maybe_event_stream(self, frame: HeadersFrame | ContinuationFrame) -> None:
        if self.from_client or frame.block is None:
            return
        headers = dict(frame.block.headers)
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        ends = isinstance(frame, HeadersFrame) and frame.flags & _END_STREAM
        room = len(self._bodies) < MAX_TRACKED_STREAMS
        if content_type == b"text/event-stream" and not ends and room:
            self._bodies[frame.stream_id] = BodyContent(SSEDecoder())
