"""Where fuzzing starts: real bytes of every codec, from the golden captures and by hand.

The golden captures (``captures/*.trace``, written by ``lab capture --all``) hold what the
lab's server and clients really sent: HTTP/1.1 request and response streams, the chunked
bodies and event streams inside them, both directions of h2c connections and the HPACK
field blocks in their HEADERS frames. :func:`seeds` cuts each codec's inputs out of them
with the lab's own decoders, and adds a few written here for what no capture has (a
response that runs until the connection closes, an extension with a quoted string, a
padded HEADERS frame, a Huffman-coded literal, WebSocket frames). A mutation of a real
input reaches deep states that random bytes never do.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

from lab.capture.fileformat import load
from lab.capture.trace import ConnectionTrace
from lab.fuzz.mutate import MAX_INPUT_SIZE
from lab.wire import h2frames as h2f
from lab.wire import websocket as ws
from lab.wire.chunked import BodyEnd, ChunkData, ChunkSize, LastChunk
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import FrameDecoder, HeadersFrame
from lab.wire.http1 import BodyData, HeadEnd, HeaderField, MessageDecoder, StatusLine
from lab.wire.segment import Segment

__all__ = ["GOLDEN", "HANDWRITTEN", "seeds"]

# The repository's golden captures, beside the lab package (an editable install).
GOLDEN: Final = Path(__file__).resolve().parent.parent.parent / "captures"
# Seeds of one codec taken from the captures, at most: the captures repeat themselves
# (thirty traces of the same server), and each seed costs a run at the start.
MAX_CAPTURED_SEEDS: Final = 200

# RFC 6455 §5.7's masking key.
_KEY: Final = bytes.fromhex("37fa213d")
# A field block in RFC 7541 C.4.1 (a request, Huffman-coded) and a literal never indexed.
_HPACK_C41: Final = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
_HPACK_NEVER: Final = bytes.fromhex("100870617373776f726406736563726574")

HANDWRITTEN: Final[dict[str, tuple[bytes, ...]]] = {
    "chunked": (
        b"1a;foo=bar\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nExpires: never\r\n\r\n",
        b'5;a="q\\"s" ;b\r\nhello\r\n000\r\n\r\nGET / HTTP/1.1\r\n',
        b"0\r\n\r\n",
    ),
    "http1": (
        b"GET /tokens?n=2 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /chat HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\r\n"
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX: y\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: text/event-stream\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
        b"GET / HTTP/1.1\nHost: a\n\n",
    ),
    "sse": (
        b"\xef\xbb\xbf: keep-alive\nevent: token\nid: 41\nretry: 3000\n"
        b'data: {"token": "Hel"}\ndata: {"token": "lo"}\n\n',
        b"data\r\n\r\nid\rdata: a\r\rretry: x\n:\n\ndata: partial",
    ),
    "h2frames": (
        h2f.PREFACE + h2f.settings() + h2f.headers(1, _HPACK_C41, end_stream=True),
        h2f.headers(3, _HPACK_C41, end_headers=False, pad_length=2, depends_on=1)
        + h2f.continuation(3, _HPACK_NEVER)
        + h2f.data(3, b"data: x\n\n", pad_length=1)
        + h2f.window_update(0, 1)
        + h2f.goaway(3, 0, b"bye"),
    ),
    "hpack": (_HPACK_C41, _HPACK_NEVER, bytes.fromhex("3fe11f82")),
    # A client's frames (masked: the server reads them), then a server's (RFC 6455 §5.7's
    # examples, a message in fragments with a Pong between them, a Close with a reason).
    "websocket": (
        ws.text("Hello", mask_key=_KEY)
        + ws.ping(b"are you there", mask_key=_KEY)
        + ws.binary(bytes(130), mask_key=_KEY)
        + ws.close(1000, "bye", mask_key=_KEY),
        ws.text("Hel", fin=False)
        + ws.pong(b"are you there")
        + ws.continuation(b"lo \xf0\x9f")
        + ws.continuation(b"\x98\x80", fin=True)
        + ws.close(1000, "done"),
        ws.text("caf\u00e9", mask_key=_KEY, fin=False)
        + ws.continuation(b"!", mask_key=_KEY)
        + ws.close(mask_key=_KEY),
    ),
}


def _cut(data: bytes) -> bytes:
    return data[:MAX_INPUT_SIZE]


def _decode(decoder: MessageDecoder, stream: bytes) -> list[Segment]:
    try:
        return decoder.feed(stream) + decoder.eof()
    except ProtocolError as exc:
        return list(exc.segments)


def _http1(conn: ConnectionTrace, out: dict[str, list[bytes]]) -> None:
    requests, responses = conn.client_to_server(), conn.server_to_client()
    out["http1"] += [_cut(requests), _cut(responses)]
    body_start = -1
    event_stream = False
    sse = bytearray()
    for seg in [*_decode(MessageDecoder("response"), responses), None]:
        if seg is None or isinstance(seg, HeadEnd):
            if sse:
                out["sse"].append(_cut(bytes(sse)))
            sse.clear()
        elif isinstance(seg, StatusLine):
            event_stream = False
        elif isinstance(seg, HeaderField) and seg.name.lower() == "content-type":
            event_stream = seg.value.startswith("text/event-stream")
        elif isinstance(seg, ChunkSize | LastChunk) and body_start < 0:
            body_start = seg.start
        elif isinstance(seg, BodyEnd) and body_start >= 0:
            out["chunked"].append(_cut(responses[body_start : seg.end]))
            body_start = -1
        elif event_stream and isinstance(seg, BodyData | ChunkData):
            sse += seg.data


def _h2(conn: ConnectionTrace, out: dict[str, list[bytes]]) -> None:
    for stream, from_client in ((conn.client_to_server(), True), (conn.server_to_client(), False)):
        out["h2frames"].append(_cut(stream))
        decoder = FrameDecoder(expect_preface=from_client, decode_headers=True)
        try:
            frames = decoder.feed(stream)
        except ProtocolError as exc:
            frames = list(exc.segments)
        for frame in frames:
            if isinstance(frame, HeadersFrame) and frame.block is not None:
                out["hpack"].append(_cut(frame.block.data))


@functools.cache
def _captured() -> dict[str, tuple[bytes, ...]]:
    out: dict[str, list[bytes]] = {name: [] for name in HANDWRITTEN}
    for path in sorted(GOLDEN.glob("*.trace")) if GOLDEN.is_dir() else []:
        for conn in load(path).connections:
            if conn.protocol.startswith("http/1"):
                _http1(conn, out)
            elif conn.protocol in ("h2", "h2c"):
                _h2(conn, out)
    return {name: tuple(dict.fromkeys(found))[:MAX_CAPTURED_SEEDS] for name, found in out.items()}


def seeds(codec: str) -> list[bytes]:
    """The seed inputs of ``codec``: the hand-written ones, then the captured ones."""
    return [*HANDWRITTEN.get(codec, ()), *_captured().get(codec, ())]
