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
  across chunk framing in HTTP/1.1;
- on a WebSocket stream (RFC 8441: an extended CONNECT, ``:method CONNECT`` with
  ``:protocol websocket``, §4), the WebSocket frames carried in its DATA frames (RFC 6455
  §5), each followed by its fields, placed on the wire the same way: a WebSocket frame
  may straddle DATA frames. The client's direction decodes them from the request on (as
  :func:`opens_websocket` tells); the server's once the server has accepted with a 2xx
  (RFC 8441 §5), which its decoder can only know from the other direction: whoever reads
  both calls :meth:`H2Decoder.expect_websocket` with the stream of each such request.

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
from lab.wire.websocket_decoder import WebSocketDecoder

__all__ = ["MAX_TRACKED_STREAMS", "H2Decoder", "opens_websocket"]

# Bodies decoded at once per direction. A viewer follows at most this many open SSE or
# WebSocket streams; more (an odd trace) are shown as frames only.
MAX_TRACKED_STREAMS: Final = 1024
_END_STREAM: Final = 0x1


class H2Decoder:
    """Frames of one direction, with their fields, HPACK fields and SSE lines nested under
    them."""

    def __init__(self, *, from_client: bool) -> None:
        self.from_client = from_client
        self.frames = FrameDecoder(expect_preface=from_client, decode_headers=True)
        self._bodies: dict[int, BodyContent] = {}
        self._websockets: set[int] = set()  # extended CONNECTs whose answer is to come

    def expect_websocket(self, stream_id: int) -> None:
        """The client opened a WebSocket on ``stream_id`` (an extended CONNECT): a 2xx
        answer on it makes its DATA WebSocket frames (server direction only)."""
        if not self.from_client and len(self._websockets) < MAX_TRACKED_STREAMS:
            self._websockets.add(stream_id)

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
                self._maybe_body(seg)
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

    def _maybe_body(self, frame: HeadersFrame | ContinuationFrame) -> None:
        """Start decoding the stream's DATA if the field block says what they carry."""
        if frame.block is None:
            return
        sid = frame.stream_id
        ends = isinstance(frame, HeadersFrame) and frame.flags & _END_STREAM
        if ends or len(self._bodies) >= MAX_TRACKED_STREAMS or sid in self._bodies:
            self._websockets.discard(sid)
            return
        headers = dict(frame.block.headers)
        if self.from_client:
            if opens_websocket(frame):
                self._bodies[sid] = BodyContent(WebSocketDecoder("server"))  # a client's
            return
        if sid in self._websockets:
            status = headers.get(b":status", b"")
            if status.startswith(b"1"):
                return  # an interim response (RFC 9113 §8.1): the answer is still to come
            self._websockets.discard(sid)
            if status.startswith(b"2"):  # accepted (RFC 8441 §5)
                self._bodies[sid] = BodyContent(WebSocketDecoder("client"))  # a server's
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"text/event-stream":
            self._bodies[sid] = BodyContent(SSEDecoder())


def opens_websocket(frame: Frame) -> bool:
    """Whether ``frame`` ends a request's field block that opens a WebSocket: an extended
    CONNECT (``:method CONNECT``, ``:protocol websocket``: RFC 8441 §4)."""
    if not isinstance(frame, HeadersFrame | ContinuationFrame) or frame.block is None:
        return False
    headers = dict(frame.block.headers)
    return headers.get(b":method") == b"CONNECT" and headers.get(b":protocol") == b"websocket"
