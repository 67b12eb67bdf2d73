"""WebSocket frames (RFC 6455 §5) decoded into annotated segments, and the opening handshake
(§4; RFC 8441 over HTTP/2).

After the opening handshake, each direction of the connection is a sequence of frames: two
octets (FIN, RSV1-3, the opcode; MASK, the payload length), an extended length when the
payload is 126 octets or more, a masking key on every frame a client sends, then the
payload. A client saying hello, pinging and closing, and a server answering (each line one
:class:`WebSocketFrame`, with its :meth:`WebSocketFrame.note`)::

    818537fa213d7f9f4d5158  TEXT [FIN, MASK] 5 bytes: text message, 5 characters: 'Hello'
    898d0badf00d6adf952d72  PING [FIN, MASK] 13 bytes: 'are you there'
    8886a1b2c3d4a25aa7bbcf  CLOSE [FIN, MASK] 6 bytes: close 1000 NORMAL_CLOSURE, reason...

    010348656c              TEXT 3 bytes, first fragment of a text message: 'Hel'
    8a0d61726520796f752074  PONG [FIN] 13 bytes: 'are you there'; between the fragments...
    80026c6f                CONTINUATION [FIN] 2 bytes, fragment 2, the last, of a text m...
    880603e8646f6e65        CLOSE [FIN] 6 bytes: close 1000 NORMAL_CLOSURE, reason 'done'

How to use it: make a :class:`WebSocketDecoder` for the endpoint that receives the bytes
(``"server"`` for what a client sends, ``"client"`` for what a server sends, as in
wsproto), hand it bytes as they arrive with :meth:`WebSocketDecoder.feed`, and it returns
each frame that became complete, followed by its fields (FIN, RSV1-3, opcode, MASK, the
payload length in its 7-, 16- or 64-bit form, the masking key, the payload masked and
unmasked, a Close frame's code and reason) as :class:`~lab.wire.segment.Nested` segments
(:mod:`lab.wire.websocket_fields`). Frames are atomic: one comes out once all its bytes
are in. The frame that ends a message carries it (:attr:`WebSocketFrame.message`, a
:class:`Message`: type and data, like SSE's ``Event``), reassembled from its fragments;
every control frame carries its own. :func:`parse` returns the messages of a whole
capture. :func:`encode_frame` and the helpers (:func:`text`, :func:`close`, ...
:func:`message`) go the other way; :func:`accept_key`, :func:`check_accept` and the
request and response checks are the handshake.

The code is in modules of its own, each re-exported here:

- :mod:`lab.wire.websocket_segments`: limits, opcodes and close codes with their names,
  :class:`WebSocketError`, :class:`Message` and :class:`WebSocketFrame`;
- :mod:`lab.wire.websocket_decoder`: :class:`WebSocketDecoder`, :func:`parse`, and the
  incremental UTF-8 check;
- :mod:`lab.wire.websocket_fields`: the fields of a frame (§5.2) as segments;
- :mod:`lab.wire.websocket_encode`: :func:`encode_frame`, the helpers, masking (§5.3);
- :mod:`lab.wire.websocket_handshake`: the opening handshake (§4), and RFC 8441's.

What the decoder refuses
------------------------

Everything §5 tells a receiver to fail the connection for raises :class:`WebSocketError`,
naming the byte offset and the close code the receiver fails with (§7.1.7, §7.4.1). After
an error the decoder refuses more input.

==========================================================  =====  ======================
Input                                                       Code   Offset
==========================================================  =====  ======================
reserved opcode 0x3-0x7 or 0xB-0xF (§5.2)                   1002   first octet
RSV bit set and no extension gives it a meaning (§5.2)      1002   first octet
control frame without FIN (§5.4, §5.5)                      1002   first octet
CONTINUATION with no message in progress (§5.4)             1002   first octet
TEXT or BINARY while a message is in progress (§5.4)        1002   first octet
data frame after the Close frame (§5.5.1)                   1002   first octet
unmasked frame to a server, masked frame to a client (§5.1) 1002   second octet
control frame with an extended length, over 125 (§5.5)      1002   second octet
length in the 16- or 64-bit form when a shorter fits (§5.2) 1002   extended length
64-bit length with its most significant bit set (§5.2)      1002   extended length
message over ``max_message_size`` (§10.4)                   1009   the length
invalid UTF-8 in a text message (§5.6, §8.1)                1007   the bad octet
text message ending inside a character (§5.6, §8.1)         1007   end of the frame
Close body of 1 octet (§5.5.1)                              1002   the body
close code never sent, reserved or out of range (§7.4)      1002   the code
Close reason not UTF-8 (§5.5.1)                             1007   the bad octet
input ending inside a frame (:meth:`~WebSocketDecoder.eof`) 1006   end of input
==========================================================  =====  ======================

UTF-8 is checked as each fragment arrives: a character cut at the end of a fragment is
fine (the next fragment completes it), an octet that no continuation can make valid is
refused at once (``ED A0``, the start of a surrogate, included). The close codes a Close
frame may carry are 1000-1003, 1007-1014 (1012-1014 from the IANA registry of §11.7) and
3000-4999.

Not checked, because it needs both directions or the application: that a Ping is
answered, that the closing handshake completes, what a subprotocol means.

Where this decoder differs from wsproto 1.3.2
---------------------------------------------

Measured through ``wsproto.frame_protocol.FrameProtocol`` (no extensions), the frame layer
wsproto's ``Connection`` runs on; the fuzz tests check that on every other input both give
the same messages and the same close code, or both accept. Each row has a test.

===  =================================  ==========================  =========================
#    Input                              wsproto                     here
===  =================================  ==========================  =========================
1    Close frame with code 1014         refused, 1002               accepted: 1014 BAD_GATEWAY
2    anything after a Close frame       never read                  data frame: refused, 1002;
                                                                    control frame: decoded
3    text fragment ending ``ED A0-BF``  accepted until the next     refused at once, 1007
                                        fragment's first octet
4    input ending inside a frame        header: waits for all of    header: refused at the
                                        it, then checks it          first bad octet, 1002;
                                        text: checks the octets     text: waits for the whole
                                        so far, 1007                frame; ended, 1006
5    message over ``max_message_size``  accepted (no limit)         refused, 1009
===  =================================  ==========================  =========================

1. **1014** is registered with IANA (Bad Gateway), in the registry §11.7 set up, beside
   1012 and 1013; wsproto knows those two and refuses 1014 as an unknown code of the
   range §7.4.2 reserves.
2. **After Close**: wsproto's frame reader stops at the Close frame. §5.5.1 forbids data
   frames after it, so a viewer should say so; a Ping or Pong after it breaks no rule and
   is shown, marked as discarded by the receiver (§1.4).
3. **Surrogates**: wsproto decodes text with CPython's incremental UTF-8 decoder, which
   holds ``ED A0``..``ED BF`` at the end of its input waiting for a third octet, though no
   third octet makes it valid (U+D800-U+DFFF are not scalar values, RFC 3629 §3). So a
   Ping between that fragment and the next is delivered by wsproto before it fails, and
   not here.
4. **When each part is checked**: wsproto checks a header once all of it is in (RSV bits
   and the MASK bit only after the extended length), and passes a data frame's payload
   on as it arrives; here the header is checked octet by octet, and a frame's payload
   once the frame is whole (frames are atomic). On whole frames both reach the same
   verdict; only input that ends inside a frame tells them apart.
5. **A limit**: RFC 6455 lets a frame announce 2^63-1 octets and leaves limits to the
   implementation (§10.4). wsproto has none; this decoder refuses a frame from its header
   alone once its message would pass :data:`MAX_MESSAGE_SIZE`.

Nesting it under HTTP
---------------------

Over HTTP/1.1 the frames start right after the heads: after the 101 response's empty
line for the server's direction (``WebSocketDecoder("client", offset=...)``), and after
the request's empty line for the client's direction (``WebSocketDecoder("server", ...)``,
once the server has answered 101; any other answer keeps the connection HTTP). Over
HTTP/2 (RFC 8441) the frames are the data of the extended CONNECT stream's DATA frames,
one decoder per direction, fed the DATA payloads in order; a WebSocket frame may straddle
DATA frames, so :class:`~lab.wire.nested.BodyContent` places it on the wire as it places
SSE lines, its nested fields with it (lab.wire.http1 and lab.wire.h2messages do both).
:func:`extended_connect_problems` tells such a stream apart.
"""

from __future__ import annotations

from lab.wire.websocket_decoder import Utf8Checker, WebSocketDecoder, parse
from lab.wire.websocket_encode import (
    binary,
    close,
    continuation,
    encode_frame,
    mask,
    message,
    ping,
    pong,
    random_mask_key,
    text,
)
from lab.wire.websocket_fields import (
    CloseCodeField,
    CloseReasonField,
    FinField,
    FrameField,
    LengthField,
    MaskBitField,
    MaskingKeyField,
    OpcodeField,
    PayloadField,
    RsvField,
    frame_bytes,
    frame_fields,
)
from lab.wire.websocket_handshake import (
    GUID,
    VERSION,
    HandshakeError,
    accept_key,
    check_accept,
    check_request,
    check_response,
    extended_connect_problems,
    extended_connect_response_problems,
    key_problem,
    make_key,
    request_headers,
    request_problems,
    response_headers,
    response_problems,
)
from lab.wire.websocket_segments import (
    MAX_CONTROL_PAYLOAD,
    MAX_MESSAGE_SIZE,
    CloseCode,
    Message,
    MessageType,
    Opcode,
    Role,
    WebSocketError,
    WebSocketFrame,
    close_code_meaning,
    close_code_name,
    close_code_problem,
    is_control,
    opcode_meaning,
    opcode_name,
)

__all__ = [
    "GUID",
    "MAX_CONTROL_PAYLOAD",
    "MAX_MESSAGE_SIZE",
    "VERSION",
    "CloseCode",
    "CloseCodeField",
    "CloseReasonField",
    "FinField",
    "FrameField",
    "HandshakeError",
    "LengthField",
    "MaskBitField",
    "MaskingKeyField",
    "Message",
    "MessageType",
    "Opcode",
    "OpcodeField",
    "PayloadField",
    "Role",
    "RsvField",
    "Utf8Checker",
    "WebSocketDecoder",
    "WebSocketError",
    "WebSocketFrame",
    "accept_key",
    "binary",
    "check_accept",
    "check_request",
    "check_response",
    "close",
    "close_code_meaning",
    "close_code_name",
    "close_code_problem",
    "continuation",
    "encode_frame",
    "extended_connect_problems",
    "extended_connect_response_problems",
    "frame_bytes",
    "frame_fields",
    "is_control",
    "key_problem",
    "make_key",
    "mask",
    "message",
    "opcode_meaning",
    "opcode_name",
    "parse",
    "ping",
    "pong",
    "random_mask_key",
    "request_headers",
    "request_problems",
    "response_headers",
    "response_problems",
    "text",
]
