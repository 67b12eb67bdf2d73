"""HTTP/2 frames (RFC 9113 §4, §6) decoded into annotated segments; HPACK field blocks
(RFC 7541) decoded representation by representation.

Everything on an HTTP/2 connection is a frame: a 9-octet header, then a payload whose layout
the frame's type decides. A client opening an h2c connection and getting a streamed reply
looks like this (client to server, then server to client; the notes are
:meth:`Frame.note`)::

    PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n  client connection preface (RFC 9113 §3.4); a SETT...
    000006 04 00 00000000 0003...   SETTINGS stream 0 (connection): MAX_CONCURRENT_STREAMS=100
    00000e 01 05 00000001 8244...   HEADERS stream 1 [END_STREAM, END_HEADERS]: 14 bytes of fie...

    000000 04 01 00000000           SETTINGS stream 0 (connection) [ACK]: acknowledges the peer...
    00000a 01 04 00000001 885f...   HEADERS stream 1 [END_HEADERS]: 10 bytes of field block
    000020 00 00 00000001 7b22...   DATA stream 1: 32 bytes
    000000 00 01 00000001           DATA stream 1 [END_STREAM]: 0 bytes

How to use it: make a :class:`FrameDecoder` (``expect_preface=True`` for the client-to-server
direction), hand it bytes as they arrive with :meth:`FrameDecoder.feed`, and it returns a
:class:`Frame` for every frame that became complete (a subclass per type:
:class:`DataFrame`, :class:`HeadersFrame`, ... :class:`UnknownFrame`). Frames are atomic:
a frame comes out once all its bytes are in, never in pieces. ``decode_headers=True`` also
runs every complete field block through a :class:`HeaderBlockDecoder`, and the frame that
ends the block carries the result (:attr:`HeadersFrame.block`, :attr:`HeadersFrame.fields`).
:func:`parse` does a whole capture at once; :func:`encode_frame` and the per-type helpers
(:func:`data`, :func:`headers`, ...) go the other way.

The code is in modules of its own, each re-exported here:

- :mod:`lab.wire.h2constants`: limits, the preface, frame types, flags, error codes and
  settings with their names (RFC 9113 §3.4, §4.2, §6, §7);
- :mod:`lab.wire.h2errors`: :class:`H2FrameError`, with its §7 error code;
- :mod:`lab.wire.h2segments`: :class:`Preface`, :class:`Frame` and a subclass per type,
  and the layout of the frame header (§4.1);
- :mod:`lab.wire.h2decoder`: :class:`FrameDecoder` and :func:`parse`, the framing, and
  which invalid input raises and which becomes a :attr:`Frame.problem`;
- :mod:`lab.wire.h2payloads`: each type's payload (§6) and the field block sequence (§4.3);
- :mod:`lab.wire.hpack`: HPACK field blocks (RFC 7541), :class:`HeaderBlockDecoder`;
- :mod:`lab.wire.h2encode`: :func:`encode_frame` and the per-type helpers.

Where this decoder differs from hyperframe 6.1.0
------------------------------------------------

Measured by running hyperframe the way h2 drives it (``Frame.parse_frame_header`` on the
9-octet header, then ``parse_body`` on the payload); each point has a test showing both,
and the fuzz tests check that every other frame gets the same fields from both, or is
rejected by both. Both reject every payload-size and stream-association error listed in
:mod:`lab.wire.h2decoder`.

1. **Frame size**: ``parse_frame_header`` does not look at the length at all (h2 checks it
   after buffering the whole frame). We refuse a Length over ``max_frame_size`` at once.
2. **Reserved bits in payload fields**: hyperframe keeps the reserved bit as part of the
   PUSH_PROMISE promised stream ID and the GOAWAY last stream ID, and rejects a
   WINDOW_UPDATE whose reserved bit is set (the increment then reads as 2^31 or more). The
   RFC says the bit is ignored on receipt (§6.6, §6.8, §6.9), so we mask it.
3. **HEADERS padding**: hyperframe measures Pad Length against the payload minus the Pad
   Length octet, so it rejects a padded HEADERS whose fragment is empty (``pad_length ==
   length - 1``), which §6.2 allows; and it does not count the priority fields, so it
   accepts a PADDED+PRIORITY HEADERS whose padding overlaps them (slicing an empty
   fragment out of the overlap). We accept the first and reject the second.
4. **PUSH_PROMISE padding**: likewise hyperframe accepts padding that overlaps the
   promised stream ID as long as it is shorter than the payload; we reject it.
5. **ALTSVC (0xa)**: hyperframe decodes RFC 7838's ALTSVC frame and rejects a malformed one;
   RFC 9113 does not define type 0xa, so we keep it raw as UNKNOWN(0x0a).
6. **Contextual rules as problems**: hyperframe rejects a WINDOW_UPDATE of 0 and a
   PUSH_PROMISE promising stream 0 or an odd stream; we decode them with a
   :attr:`Frame.problem` (``strict=True`` rejects them, as hyperframe does). hyperframe
   does not check SETTINGS values, self-dependencies or the field block sequence.
7. **Repeated settings**: hyperframe stores SETTINGS in a dict (the last value of a
   repeated identifier wins, in the place of the first); we keep every setting in wire
   order, duplicates included.
"""

from __future__ import annotations

from lab.wire.h2constants import (
    DEFAULT_MAX_FRAME_SIZE,
    ERROR_CODE_NAMES,
    FRAME_FLAGS,
    FRAME_TYPE_NAMES,
    MAX_FRAME_SIZE_LIMIT,
    MAX_STREAM_ID,
    PREFACE,
    SETTING_NAMES,
    ErrorCode,
    Flag,
    FrameType,
    SettingId,
    error_name,
    setting_name,
)
from lab.wire.h2decoder import FrameDecoder, parse
from lab.wire.h2encode import (
    continuation,
    data,
    encode_frame,
    goaway,
    headers,
    ping,
    preface,
    priority,
    push_promise,
    rst_stream,
    settings,
    window_update,
)
from lab.wire.h2errors import H2FrameError
from lab.wire.h2segments import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    Preface,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    Setting,
    SettingsFrame,
    UnknownFrame,
    WindowUpdateFrame,
)
from lab.wire.hpack import (
    DEFAULT_HEADER_TABLE_SIZE,
    MAX_FIELD_BLOCK_SIZE,
    MAX_HEADER_LIST_SIZE,
    MAX_HPACK_INTEGER_OCTETS,
    HeaderBlock,
    HeaderBlockDecoder,
    HeaderRepresentation,
    HPACKError,
    Representation,
)

__all__ = [
    "DEFAULT_HEADER_TABLE_SIZE",
    "DEFAULT_MAX_FRAME_SIZE",
    "ERROR_CODE_NAMES",
    "FRAME_FLAGS",
    "FRAME_TYPE_NAMES",
    "MAX_FIELD_BLOCK_SIZE",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_HEADER_LIST_SIZE",
    "MAX_HPACK_INTEGER_OCTETS",
    "MAX_STREAM_ID",
    "PREFACE",
    "SETTING_NAMES",
    "ContinuationFrame",
    "DataFrame",
    "ErrorCode",
    "Flag",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GoAwayFrame",
    "H2FrameError",
    "HPACKError",
    "HeaderBlock",
    "HeaderBlockDecoder",
    "HeaderRepresentation",
    "HeadersFrame",
    "PingFrame",
    "Preface",
    "PriorityFrame",
    "PushPromiseFrame",
    "Representation",
    "RstStreamFrame",
    "Setting",
    "SettingId",
    "SettingsFrame",
    "UnknownFrame",
    "WindowUpdateFrame",
    "continuation",
    "data",
    "encode_frame",
    "error_name",
    "goaway",
    "headers",
    "parse",
    "ping",
    "preface",
    "priority",
    "push_promise",
    "rst_stream",
    "setting_name",
    "settings",
    "window_update",
]
