"""Any bytes through one of the lab's decoders, shown as annotated segments.

``lab decode CODEC [FILE|-]`` hands bytes (a file, or stdin) to one decoder of
:mod:`lab.wire` and prints one row per protocol unit: its byte range, its bytes, and what
they mean, with the units nested in it (an HTTP/2 frame's fields, HPACK fields, SSE lines
in a body) on rows of their own. Where the decoder refuses the input, the rest of the bytes
show as one unparsed row and the :class:`~lab.wire.errors.ProtocolError` names the byte
offset. It is the tool for "this body broke my parser": paste it and see where.

The bytes can be given three ways (:func:`read_input`):

- as they are, from a file or a pipe
  (``printf '5\\r\\nhello\\r\\n0\\r\\n\\r\\n' | lab decode chunked``);
- ``--hex``: hex digits, with spaces and line breaks ignored (``00 00 04 08 00 ...``, as a
  hexdump or Wireshark's "copy as hex stream" gives them);
- ``--escaped``: Python-style escapes, as a log or ``repr()`` shows bytes
  (``5\\r\\nhello\\r\\n0\\r\\n\\r\\n``, ``\\x00``); a ``b'...'`` literal may keep its quotes, and
  line breaks typed in the text are ignored (write ``\\n`` for a newline byte).

The codecs (:data:`CODECS`), one entry each; the fuzzers (:mod:`lab.fuzz`) feed the same
entries, so what ``lab decode`` shows is exactly what a fuzzing run checked:

=============  ================================================================================
``chunked``    an HTTP/1.1 chunked body (RFC 9112 §7.1), :class:`~lab.wire.chunked.ChunkedDecoder`
``http1``      HTTP/1.1 messages (RFC 9112): requests, or responses when the bytes start
               ``HTTP/``; bodies framed as §6.3 says, SSE lines nested in an event stream;
               after a response's 101, WebSocket frames (RFC 6455 §4.2.2)
``sse``        an event stream (WHATWG HTML §9.2), :class:`~lab.wire.sse.SSEDecoder`
``h2frames``   HTTP/2 frames (RFC 9113 §4, §6) with their fields and HPACK fields nested; the
               client's direction (the connection preface first) when the bytes start ``P``
``hpack``      one HPACK field block (RFC 7541), decoded in a fresh context
``websocket``  WebSocket frames (RFC 6455 §5) with their fields nested: what a client sends
               (the server reads it) when the first frame is masked, else a server's
=============  ================================================================================
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.capture.annotate import Unparsed
from lab.capture.views import MAX_SHOWN_BYTES, MAX_SHOWN_HEX_BYTES, escape_bytes, hex_bytes
from lab.capture.views import kind_style as _kind_style
from lab.wire.chunked import ChunkedDecoder, ChunkedError
from lab.wire.errors import ProtocolError
from lab.wire.h2frames import H2FrameError, HeaderBlockDecoder, HPACKError
from lab.wire.h2messages import H2Decoder
from lab.wire.http1 import HTTP1Error, MessageDecoder
from lab.wire.segment import Nested, Segment
from lab.wire.sse import SSEDecoder, SSEError
from lab.wire.websocket import Role, WebSocketDecoder, WebSocketError

__all__ = [
    "CODECS",
    "INPUT_MODES",
    "Codec",
    "Decoded",
    "InputError",
    "decode",
    "load_input",
    "read_input",
    "render_decoded",
    "websocket_role",
]

INPUT_MODES: Final = ("raw", "hex", "escaped")
# Rows printed before the rest of a long input is summed up in one line: pages of units
# are more than a person reads, and a 10 MB paste must not print a million rows.
MAX_ROWS: Final = 2000
# The most input read: what breaks a parser is a body or a capture's stream, not a disk
# image; past this the input is refused rather than held in memory.
MAX_INPUT_BYTES: Final = 64 * 1024 * 1024


class _Session(Protocol):
    """One run of a decoder over one input: ``feed`` pieces, then ``finish``."""

    def feed(self, data: bytes) -> list[Segment]: ...
    def finish(self) -> list[Segment]: ...
    def unused(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Codec:
    """A decoder of :mod:`lab.wire` as ``lab decode`` and ``lab fuzz`` run it.

    ``start`` makes a session for an input (it may look at the whole input, as the HTTP/2
    codec looks at the first byte for the connection preface). ``errors`` are the only
    exceptions the decoder may raise on bad input. ``late_errors``: errors whose offset may
    lie inside units already returned (an HPACK block spread over several frames fails
    where decoding stopped, perhaps in an earlier frame). ``split_kinds``: segment kinds a
    decoder hands out in pieces as bytes arrive (chunk data), joined before two runs over
    different reads are compared.
    """

    name: str
    what: str
    start: Callable[[bytes], _Session]
    errors: tuple[type[ProtocolError], ...]
    late_errors: tuple[type[ProtocolError], ...] = ()
    split_kinds: frozenset[str] = frozenset()


class _ChunkedSession:
    def __init__(self, data: bytes) -> None:
        self.decoder = ChunkedDecoder()

    def feed(self, data: bytes) -> list[Segment]:
        return self.decoder.feed(data)

    def finish(self) -> list[Segment]:
        self.decoder.eof()
        return []

    def unused(self) -> int:
        return len(self.decoder.unused_data)


class _Decoder(Protocol):
    def feed(self, data: bytes) -> list[Segment]: ...
    def eof(self) -> list[Segment]: ...


class _StreamSession:
    """A session over a decoder with ``feed`` / ``eof`` that keeps no unused bytes."""

    def __init__(self, decoder: _Decoder) -> None:
        self.decoder = decoder

    def feed(self, data: bytes) -> list[Segment]:
        return self.decoder.feed(data)

    def finish(self) -> list[Segment]:
        return self.decoder.eof()

    def unused(self) -> int:
        return 0


def _http1_session(data: bytes) -> _StreamSession:
    return _StreamSession(MessageDecoder("response" if data.startswith(b"HTTP/") else "request"))


def _sse_session(data: bytes) -> _StreamSession:
    return _StreamSession(SSEDecoder())


def _h2_session(data: bytes) -> _StreamSession:
    return _StreamSession(H2Decoder(from_client=data[:1] == b"P"))


def websocket_role(data: bytes) -> Role:
    """Who receives these WebSocket frames: the server when the first is masked (a
    client's frames are, RFC 6455 §5.1), else the client."""
    return "server" if len(data) > 1 and data[1] & 0x80 else "client"


def _websocket_session(data: bytes) -> _StreamSession:
    return _StreamSession(WebSocketDecoder(websocket_role(data)))


class _HPACKSession:
    """HPACK decodes whole blocks: the pieces are joined, the block decoded at the end."""

    def __init__(self, data: bytes) -> None:
        self.block = bytearray()

    def feed(self, data: bytes) -> list[Segment]:
        self.block += data
        return []

    def finish(self) -> list[Segment]:
        return list(HeaderBlockDecoder().decode(bytes(self.block)).representations)

    def unused(self) -> int:
        return 0


# One entry per codec; lab.fuzz's targets name these.
CODECS: Final[dict[str, Codec]] = {
    c.name: c
    for c in (
        Codec(
            "chunked", "an HTTP/1.1 chunked body (RFC 9112 §7.1)", _ChunkedSession,
            (ChunkedError,), split_kinds=frozenset({"chunk-data"}),
        ),
        Codec(
            "http1", "HTTP/1.1 requests, or responses if it starts HTTP/ (RFC 9112)",
            _http1_session, (HTTP1Error, ChunkedError, WebSocketError),
            split_kinds=frozenset({"chunk-data", "body-data", "upgraded-data"}),
        ),
        Codec("sse", "an event stream (WHATWG HTML §9.2)", _sse_session, (SSEError,)),
        Codec(
            "h2frames", "HTTP/2 frames, the client's side if it starts P (RFC 9113)",
            _h2_session, (H2FrameError,), late_errors=(HPACKError,),
        ),
        Codec("hpack", "one HPACK field block (RFC 7541)", _HPACKSession, (HPACKError,)),
        Codec(
            "websocket", "WebSocket frames, a client's if the first is masked (RFC 6455)",
            _websocket_session, (WebSocketError,),
        ),
    )
}  # fmt: skip


# -- decoding ----------------------------------------------------------------------------


@dataclass(slots=True)
class Decoded:
    """What a codec made of some bytes.

    ``segments`` in the order the decoder returned them (nested ones after their carrier);
    ``error`` the decoder's refusal, if any, and ``at_eof`` whether it came at the end of
    the input (a unit cut short) rather than at a bad byte; ``unused`` bytes after the end
    of what the codec decodes (a chunked body's end, then the next message).
    """

    codec: Codec
    size: int
    segments: list[Segment] = field(default_factory=list)
    error: ProtocolError | None = None
    at_eof: bool = False
    unused: int = 0

    @property
    def top(self) -> list[Segment]:
        """The segments that tile the input (not the nested ones)."""
        return [s for s in self.segments if not isinstance(s, Nested)]

    @property
    def covered(self) -> int:
        """Where the last top-level segment ends (0 if there is none)."""
        return max((s.end for s in self.top), default=0)


def pieces(data: bytes, cuts: Sequence[int] = ()) -> list[bytes]:
    """``data`` cut at the given indexes (any order, repeats, 0 and the end allowed), no
    empty piece (an empty read is the end of the input)."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def decode(codec: Codec, data: bytes, cuts: Sequence[int] = ()) -> Decoded:
    """Feed ``data`` to a fresh session of ``codec`` in the pieces ``cuts`` makes, then
    end the input. Only the codec's own errors are caught: anything else is a bug and
    propagates."""
    session = codec.start(data)
    out = Decoded(codec, len(data))
    try:
        for piece in pieces(data, cuts):
            out.segments += session.feed(piece)
    except ProtocolError as exc:
        out.segments += exc.segments
        out.error = exc
        return out
    try:
        out.segments += session.finish()
    except ProtocolError as exc:
        out.segments += exc.segments
        out.error = exc
        out.at_eof = True
        return out
    out.unused = session.unused()
    return out


# -- input -------------------------------------------------------------------------------


class InputError(ValueError):
    """Text that is not the hex or escaped bytes it was said to be; the message names the
    place."""


_ESCAPES: Final = {
    "\\": 0x5C, "'": 0x27, '"': 0x22, "a": 0x07, "b": 0x08, "f": 0x0C, "n": 0x0A,
    "r": 0x0D, "t": 0x09, "v": 0x0B, "0": 0x00,
}  # fmt: skip
_LITERAL: Final = re.compile(r"""\A\s*b(['"])(.*)\1\s*\Z""", re.DOTALL)


def _from_hex(text: str) -> bytes:
    digits = "".join(text.split())
    bad = re.search(r"[^0-9a-fA-F]", digits)
    if bad is not None:
        raise InputError(f"not a hex digit: {bad.group()!r} (hex digit {bad.start() + 1})")
    if len(digits) % 2:
        raise InputError(f"an odd number of hex digits ({len(digits)}): a byte is two")
    return bytes.fromhex(digits)


def _from_escaped(text: str) -> bytes:
    literal = _LITERAL.match(text)
    if literal is not None:
        text = literal.group(2)
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char in "\r\n":
            i += 1  # a line break typed in the text; \n is the newline byte
            continue
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        code = text[i + 1 : i + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            shown = text[i : i + 4]
            raise InputError(
                f"unknown escape {shown!r} at character {i + 1}: use \\r \\n \\t \\\\ \\0 "
                "or \\xNN (two hex digits)"
            )
    return bytes(out)


def load_input(source: BinaryIO, mode: str) -> bytes:
    """Read ``source`` (a file, stdin) and turn it into bytes as ``mode`` says; refuse more
    than :data:`MAX_INPUT_BYTES`."""
    raw = source.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError(f"more than {MAX_INPUT_BYTES} bytes of input (MAX_INPUT_BYTES)")
    return read_input(raw, mode)


def read_input(raw: bytes, mode: str) -> bytes:
    """The bytes ``raw`` stands for: itself (``raw``), its hex digits (``hex``) or its
    escapes (``escaped``); :class:`InputError` if it is not what ``mode`` says."""
    if mode == "raw":
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"--{mode} input is not UTF-8 text (byte {exc.start})") from None
    return _from_hex(text) if mode == "hex" else _from_escaped(text)


# -- the view ----------------------------------------------------------------------------

_DIM: Final = "grey50"


def _shown(seg: Segment, data: bytes, style: str) -> Text:
    if seg.binary:
        text = Text(hex_bytes(data[:MAX_SHOWN_HEX_BYTES]), style=style)
        cut = max(0, len(data) - MAX_SHOWN_HEX_BYTES)
    else:
        text = Text(escape_bytes(data[:MAX_SHOWN_BYTES]), style=style)
        cut = max(0, len(data) - MAX_SHOWN_BYTES)
    if cut:
        text.append(f" … (+{cut} bytes)", style=_DIM)
    return text


def render_decoded(decoded: Decoded, data: bytes, console: Console) -> None:
    """One row per segment (nested ones marked ↳), then the bytes no unit took."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("[start, end)", justify="right", no_wrap=True, style=_DIM)
    table.add_column("bytes", overflow="fold")
    table.add_column("meaning", overflow="fold")
    kinds: dict[str, None] = {}
    for row, seg in enumerate(decoded.segments):
        if row == MAX_ROWS:
            left = len(decoded.segments) - row
            table.add_row("", Text(f"… {left} more segments not shown", style=_DIM), "")
            break
        if isinstance(seg, Nested):
            style = _kind_style(seg.unit.kind)
            kinds[seg.unit.kind] = None
            shown = Text("↳ ", style=_DIM)
            shown.append_text(_shown(seg.unit, seg.data, style))
            table.add_row(f"[{seg.start}, {seg.end})", shown, seg.note())
            continue
        style = _kind_style(seg.kind)
        kinds[seg.kind] = None
        shown = _shown(seg, data[seg.start : seg.end], style)
        table.add_row(f"[{seg.start}, {seg.end})", shown, seg.note())
    rest = decoded.size - decoded.unused
    if decoded.error is not None and decoded.covered < decoded.size:
        unparsed = Unparsed(decoded.covered, decoded.size, str(decoded.error))
        style = _kind_style(unparsed.kind)
        kinds[unparsed.kind] = None
        shown = _shown(unparsed, data[unparsed.start :], style)
        table.add_row(f"[{unparsed.start}, {unparsed.end})", shown, Text(unparsed.note(), style))
    elif decoded.unused:
        shown = _shown(Unparsed(rest, decoded.size, ""), data[rest:], _DIM)
        table.add_row(
            f"[{rest}, {decoded.size})", shown,
            Text(f"{decoded.unused} bytes after the end: not {decoded.codec.name}", _DIM),
        )  # fmt: skip
    console.print(table)
    if kinds:
        legend = Text("kinds: ", style=_DIM)
        for i, kind in enumerate(kinds):
            legend.append(("  " if i else "") + "■ " + kind, style=_kind_style(kind))
        console.print(legend)
