"""The codecs under fuzzing, one entry each: codec, references, seeds, tokens, modules.

Adding a codec is one entry in :data:`TARGETS` (its decoder is in :data:`lab.decode.CODECS`;
its comparison with a reference library in a ``ref_*`` module of this package).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from lab.decode import CODECS
from lab.fuzz.checks import Reference, Target
from lab.fuzz.ref_h2 import compare_fragments, compare_hpack, compare_hyperframe
from lab.fuzz.ref_http1 import compare_chunked, compare_http1
from lab.fuzz.ref_sse import compare_httpx_sse, compare_small_limits, compare_whatwg
from lab.fuzz.ref_websocket import compare_wsproto
from lab.fuzz.seeds import seeds
from lab.wire import h2frames as h2f

__all__ = ["TARGETS"]

# Words of each grammar for the mutator (libFuzzer's dictionary): the bytes that make a
# random edit land on a rule.
_HTTP1_TOKENS: Final = (
    b"\r\n", b"\r\n\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b"=", b'"', b"\\", b",",
    b"HTTP/1.1", b"HTTP/1.0", b"GET ", b"HEAD ", b"POST ", b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 204 No Content\r\n", b"Host: a\r\n",
    b"Content-Length: ", b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n",
    b"Content-Type: text/event-stream\r\n", b"0\r\n\r\n", b"5\r\nhello\r\n", b"\x00", b"\x7f",
    b"\xff", b"0" * 16, b"data: x\n\n",
)  # fmt: skip
_SSE_TOKENS: Final = (
    b"data", b"data:", b"data: ", b"event", b"id", b"retry", b"Data", b":", b" ", b"\n",
    b"\r", b"\r\n", b"\n\n", b"\xef\xbb\xbf", b"\xef\xbb", b"\x00", b"\xff", b"\xe2\x82",
    b"1000", b"-1", b"message",
)  # fmt: skip
_H2_TOKENS: Final = (
    h2f.PREFACE, h2f.settings(), h2f.settings(ack=True), h2f.ping(), h2f.data(1, b"x"),
    h2f.headers(1, b"\x82\x84\x86"), h2f.headers(1, b"\x82", end_headers=False),
    h2f.continuation(1, b"\x82"), h2f.window_update(0, 1), h2f.rst_stream(1, 8),
    h2f.goaway(0, 0), b"\x00\x00\x00", b"\x00\x40\x00", b"\x00\x00\x00\x01", b"\x80\x00\x00\x00",
    b"\x08", b"\x20", b"\x01", b"\x04", b"\x05", b"\x09", b"\x0a",
)  # fmt: skip
_HPACK_TOKENS: Final = (
    b"\x82", b"\x84", b"\xbe", b"\xff", b"\x40", b"\x00", b"\x10", b"\x20", b"\x3f\xe1\x1f",
    b"\x7f", b"\x80", b"\x8c", b"\x01a", b"\x03abc", b"\x7f\x80\x80\x80\x80\x80",
)  # fmt: skip

_WEBSOCKET_TOKENS: Final = (
    b"\x81", b"\x01", b"\x80", b"\x82", b"\x88", b"\x89", b"\x8a", b"\xc1", b"\x8b", b"\x00",
    b"\x7e\x00\x7e", b"\x7f" + bytes(7) + b"\x80", b"\x85\x37\xfa\x21\x3d", b"\x03\xe8",
    b"\x03\xf6", b"\xed\xa0", b"\xf0\x9f\x98", b"\xff",
)  # fmt: skip


def _seeds(name: str) -> Callable[[], list[bytes]]:
    return lambda: seeds(name)


TARGETS: Final[dict[str, Target]] = {
    t.name: t
    for t in (
        Target(
            CODECS["chunked"], (Reference("h11 0.16.0", compare_chunked),), _seeds("chunked"),
            _HTTP1_TOKENS, ("lab.wire.chunked", "h11"),
        ),
        Target(
            CODECS["http1"], (Reference("h11 0.16.0", compare_http1),), _seeds("http1"),
            _HTTP1_TOKENS, ("lab.wire.http1", "lab.wire.chunked", "lab.wire.nested", "h11"),
        ),
        Target(
            CODECS["sse"],
            (
                Reference("WHATWG HTML §9.2.6", compare_whatwg),
                Reference("small limits", compare_small_limits),
                Reference("httpx-sse 0.4.3", compare_httpx_sse),
            ),
            _seeds("sse"), _SSE_TOKENS, ("lab.wire.sse", "httpx_sse"),
        ),
        Target(
            CODECS["h2frames"], (Reference("hyperframe 6.1.0", compare_hyperframe),),
            _seeds("h2frames"), _H2_TOKENS + _HPACK_TOKENS,
            ("lab.wire.h2", "lab.wire.hpack", "lab.wire.nested", "hyperframe"),
        ),
        Target(
            CODECS["hpack"],
            (Reference("hpack 4.2.0", compare_hpack), Reference("fragments", compare_fragments)),
            _seeds("hpack"), _HPACK_TOKENS, ("lab.wire.hpack", "hpack"),
        ),
        Target(
            CODECS["websocket"], (Reference("wsproto 1.3.2", compare_wsproto),),
            _seeds("websocket"), _WEBSOCKET_TOKENS, ("lab.wire.websocket", "wsproto"),
        ),
    )
}  # fmt: skip
