"""The WebSocket codec against wsproto 1.3.2's frame layer.

The bytes are one direction of a connection after the handshake: a client's (the first
frame masked; the decoder reads as the server) or a server's (the first frame not masked;
read as the client), the way ``lab decode websocket`` reads them. wsproto's
``FrameProtocol`` (no extensions), what its ``Connection`` runs on, reads the same bytes.
Both must report the same messages (a text or binary message reassembled from its
fragments, each Ping, Pong and Close with its code and reason) and fail with the same close
code, or neither fails, unless the input falls under one of the five numbered differences
of :mod:`lab.wire.websocket`'s docstring (:func:`documented_difference`, judged from the
bytes and the decoder's answer); then it must differ exactly that way:

1. a Close with code 1014: wsproto refuses it (1002), and the messages before agree;
2. bytes after a Close frame: wsproto reads none of them, and the messages up to the
   Close agree;
3. a text fragment ending ``ED A0``-``ED BF``: the decoder refuses it at once (1007);
   wsproto delivers the same messages, perhaps a control frame more, then fails or waits;
4. input ending inside a frame: the decoder fails (1002, 1006 or 1009), wsproto waits or
   fails with 1007 or the same code, and the messages agree;
5. a message over the decoder's limit: a frame that announces it is refused from its
   header (1009), which on a fuzzer's short inputs is point 4.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final, cast

from wsproto.frame_protocol import FrameProtocol, ParseFailed
from wsproto.frame_protocol import Opcode as WsOpcode

from lab.decode import Decoded, websocket_role
from lab.wire.websocket import Message, MessageType, WebSocketError, WebSocketFrame

__all__ = ["compare_wsproto", "documented_difference"]

_CLOSE_1014: Final = struct.pack("!H", 1014)


@dataclass(frozen=True, slots=True)
class _Raw:
    """A frame read with no check at all, to tell which difference applies."""

    start: int
    end: int
    fin: bool
    opcode: int
    data: bytes


def _raw_frames(data: bytes) -> list[_Raw]:
    out: list[_Raw] = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        size, at = b1 & 0x7F, pos + 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, at = int.from_bytes(data[at : at + width], "big"), at + width
        masked = bool(b1 & 0x80)
        key = data[at : at + 4] if masked else b""
        at += 4 if masked else 0
        if at + size > len(data):
            break
        body = data[at : at + size]
        if key:
            body = bytes(b ^ key[i % 4] for i, b in enumerate(body))
        out.append(_Raw(pos, at + size, bool(b0 & 0x80), b0 & 0xF, body))
        pos = at + size
    return out


def wsproto_messages(data: bytes, role: str) -> tuple[list[Message], int | None]:
    """wsproto's frame layer (what its Connection runs) over ``data`` as ``role``: the
    whole messages as lab.wire reports them, and the close code of its ParseFailed (None
    if it accepted everything)."""
    proto = FrameProtocol(client=role == "client", extensions=[])
    proto.receive_bytes(data)
    messages: list[Message] = []
    parts: list[Any] = []
    kind = "binary"
    try:
        for f in proto.received_frames():
            if f.opcode in (WsOpcode.TEXT, WsOpcode.BINARY, WsOpcode.CONTINUATION):
                if f.opcode != WsOpcode.CONTINUATION:
                    kind = "text" if f.opcode == WsOpcode.TEXT else "binary"
                parts.append(f.payload)
                if f.message_finished:
                    whole = "".join(parts) if kind == "text" else b"".join(parts)
                    messages.append(Message(kind, whole))  # type: ignore[arg-type]
                    parts = []
            elif f.opcode == WsOpcode.CLOSE:
                payload: Any = f.payload  # (code, reason) for a Close
                messages.append(Message("close", b"", int(payload[0]), str(payload[1])))
            else:
                name: MessageType = "ping" if f.opcode == WsOpcode.PING else "pong"
                messages.append(Message(name, bytes(cast(bytes, f.payload))))
    except ParseFailed as exc:
        return messages, int(exc.code)
    return messages, None


def as_wsproto(message: Message) -> Message:
    """A message as wsproto reports it: a Close as its code (1005 for none) and reason."""
    if message.type == "close":
        code = 1005 if message.code is None else message.code
        return Message("close", b"", code, message.reason)
    return message


def _ours(decoded: Decoded) -> tuple[list[Message], int | None, set[int]]:
    frames = [s for s in decoded.segments if isinstance(s, WebSocketFrame)]
    messages = [as_wsproto(f.message) for f in frames if f.message is not None]
    error = decoded.error
    code = error.close_code if isinstance(error, WebSocketError) and not decoded.at_eof else None
    return messages, code, {f.start for f in frames}


def _text_upto(frames: list[_Raw], frame: _Raw, upto: int) -> bytes:
    """The octets of ``frame``'s message up to ``frame.data[upto]`` included."""
    i = frames.index(frame)
    own = [frame]
    while own[0].opcode == 0 and i > 0:
        i -= 1
        if frames[i].opcode in (0, 1, 2):
            own.insert(0, frames[i])
    return b"".join(g.data for g in own[:-1]) + frame.data[: upto + 1]


def documented_difference(data: bytes, decoded: Decoded) -> int | None:
    """The point of the list above ``data`` falls under (the first in stream order)."""
    frames = _raw_frames(data)
    _, _, decoded_starts = _ours(decoded)
    error = decoded.error
    failed_at = error.offset if error is not None else None
    code = error.close_code if isinstance(error, WebSocketError) else None
    for f in frames:
        if f.opcode != 0x8:
            continue
        in_reason = code == 1007 and failed_at is not None and f.end - len(f.data) <= failed_at
        if f.start not in decoded_starts and not (in_reason and failed_at <= f.end):  # type: ignore[operator]
            break
        if f.data[:2] == _CLOSE_1014:
            return 1
        if f.start in decoded_starts and f.end < len(data):
            return 2
        break
    if error is not None and code == 1007 and failed_at is not None and not decoded.at_eof:
        frame = next((f for f in frames if f.start <= failed_at <= f.end), None)
        if frame is not None:
            bad = failed_at - (frame.end - len(frame.data))
            last = frame.opcode in (0, 1) and not frame.fin and bad == len(frame.data) - 1
            if last and _text_upto(frames, frame, bad)[-2:-1] == b"\xed":
                return 3
    # A refusal at or after the end of the last whole frame, of a kind only a frame cut
    # short shows (a text message ending inside a character, 1007, at the end of the last
    # whole frame is not one: both decoders see that frame whole).
    last_end = frames[-1].end if frames else 0
    cut_short = last_end < len(data) and failed_at is not None and failed_at >= last_end
    if cut_short and code in (1002, 1006, 1009):
        return 4
    return None


def compare_wsproto(data: bytes, decoded: Decoded) -> str | None:
    role = websocket_role(data)
    mine, code, _ = _ours(decoded)  # code: a refusal's, not the end of input's
    error = decoded.error
    any_code = error.close_code if isinstance(error, WebSocketError) else None
    theirs, their_code = wsproto_messages(data, role)
    point = documented_difference(data, decoded)
    if point is None:
        if (theirs, their_code) != (mine, code):
            return (
                f"as the {role}: lab {mine!r} closing {code} / wsproto {theirs!r} closing "
                f"{their_code}"
            )
        return None
    ok = {
        1: their_code == 1002
        and theirs == mine[: len(theirs)]
        and all(m.type != "close" for m in theirs),
        2: their_code is None and theirs == mine[: 1 + next(
            (i for i, m in enumerate(mine) if m.type == "close"), len(mine)
        )],
        3: their_code in (None, 1002, 1007)
        and theirs[: len(mine)] == mine
        and all(m.type in ("ping", "pong", "close") for m in theirs[len(mine) :]),
        4: any_code in (1002, 1006, 1009)
        and their_code in (None, 1007, any_code)
        and theirs == mine,
    }[point]  # fmt: skip
    if not ok:
        return (
            f"point {point} of the documented differences, but not as documented: lab "
            f"{mine!r} closing {code} / wsproto {theirs!r} closing {their_code}"
        )
    return None
