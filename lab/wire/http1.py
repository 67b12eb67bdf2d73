"""HTTP/1.1 message framing as annotated segments (RFC 9112), for showing a byte stream.

:class:`MessageDecoder` reads one direction of a connection: request heads and bodies
(``role="request"``) or response heads and bodies (``role="response"``). It finds each
message's start line, header fields and the empty line that ends the head, then delimits
the body the way RFC 9112 §6.3 says: chunked (through :class:`lab.wire.chunked.
ChunkedDecoder`), Content-Length, or (responses only) until the connection closes.

It is a viewer's decoder, not a server's: the servers use h11. It is strict where
framing is concerned (a bad length or a bad chunk raises :class:`HTTP1Error` with the
offset) and keeps every byte accounted for in some segment.

Switching protocols (RFC 9110 §7.8, §15.2.2): after a ``101 Switching Protocols`` the
connection no longer carries HTTP/1.1. The response direction switches right after the
101's empty line; for ``Upgrade: websocket`` what follows is WebSocket frames (RFC 6455
§4.2.2), decoded by :class:`lab.wire.websocket_decoder.WebSocketDecoder` (role
``"client"``: what a server sends), each frame followed by its fields; any other protocol
is shown as :class:`UpgradedData`. The request direction cannot tell on its own: a request
asking to upgrade may be answered 101 or with an ordinary response. So the two directions'
decoders are paired, ``MessageDecoder("response", requests=request_decoder)``: after a
request with an ``Upgrade`` field (and ``Connection: upgrade``) the request decoder holds
the bytes that follow (:attr:`MessageDecoder.awaiting_answer`) until the response decoder
has read the answer's head; on a 101 they are the new protocol's from the end of that
request (WebSocket frames, role ``"server"``), on any final status HTTP/1.1 again. They
come out of the request decoder's next :meth:`~MessageDecoder.feed` (``feed(b"")`` asks
for them) or its :meth:`~MessageDecoder.eof`, which reads anything still held as HTTP/1.1.
A WebSocket client sends nothing between its request and the 101 (RFC 6455 §4.1), so in a
well-behaved trace nothing is ever held. A request decoder without a partner holds nothing
and reads on as HTTP/1.1.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from lab.wire.chunked import ChunkData, ChunkedDecoder
from lab.wire.errors import ProtocolError
from lab.wire.nested import BodyContent
from lab.wire.segment import Segment
from lab.wire.sse import SSEDecoder
from lab.wire.websocket_decoder import WebSocketDecoder
from lab.wire.websocket_segments import Role

_DIGITS: Final = re.compile(r"[0-9]+")

__all__ = [
    "MAX_HEAD_SIZE",
    "BodyData",
    "EmptyLine",
    "HTTP1Error",
    "HeadEnd",
    "HeaderField",
    "MessageDecoder",
    "RequestLine",
    "StatusLine",
    "UpgradedData",
]

# A viewer shows heads that a server refused too (the 431 experiments send 16 KiB+), so
# its limit is well above any server's; it only keeps a broken stream from buffering
# without end.
MAX_HEAD_SIZE: Final = 256 * 1024
_TOKEN: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class HTTP1Error(ProtocolError):
    """Bad HTTP/1.1 framing at a byte offset."""


def _show(data: bytes) -> str:
    return data.decode("latin-1")


@dataclass(frozen=True, slots=True)
class RequestLine(Segment):
    method: str
    target: str
    version: str
    kind: ClassVar[str] = "request-line"

    def note(self) -> str:
        return f"request line: method {self.method}, target {self.target}, {self.version}"


@dataclass(frozen=True, slots=True)
class StatusLine(Segment):
    version: str
    status: int
    reason: str
    kind: ClassVar[str] = "status-line"

    def note(self) -> str:
        return f"status line: {self.version} {self.status} {self.reason!r}"


@dataclass(frozen=True, slots=True)
class HeaderField(Segment):
    name: str
    value: str
    kind: ClassVar[str] = "header-field"

    def note(self) -> str:
        return f"header field {self.name}: {self.value}"


@dataclass(frozen=True, slots=True)
class HeadEnd(Segment):
    framing: str  # how the body that follows is delimited, in words
    kind: ClassVar[str] = "head-end"

    def note(self) -> str:
        return f"empty line: end of head; body {self.framing}"


@dataclass(frozen=True, slots=True)
class EmptyLine(Segment):
    kind: ClassVar[str] = "empty-line"

    def note(self) -> str:
        return "empty line before a request line: ignored (RFC 9112 §2.2)"


@dataclass(frozen=True, slots=True)
class BodyData(Segment):
    data: bytes
    kind: ClassVar[str] = "body-data"

    def note(self) -> str:
        return f"{len(self.data)} bytes of body"


@dataclass(frozen=True, slots=True)
class UpgradedData(Segment):
    protocol: str
    data: bytes
    kind: ClassVar[str] = "upgraded-data"

    def note(self) -> str:
        return (
            f"{len(self.data)} bytes of {self.protocol!r} after 101 Switching Protocols "
            "(RFC 9110 §15.2.2): the lab does not decode it here"
        )


class _Opaque:
    """The bytes of a protocol the lab does not decode after a 101, as they come."""

    def __init__(self, protocol: str, offset: int) -> None:
        self.protocol = protocol
        self.offset = offset

    def feed(self, data: bytes) -> list[Segment]:
        if not data:
            return []
        start, self.offset = self.offset, self.offset + len(data)
        return [UpgradedData(start, self.offset, self.protocol, data)]

    def eof(self) -> list[Segment]:
        return []


_Framing = Literal["none", "length", "chunked", "close"]


class MessageDecoder:
    """Incremental decoder for one direction of an HTTP/1.1 connection.

    For ``role="response"``, call :meth:`expect` with each request's method in order
    (a response to HEAD has no body). Without it, responses are read as answers to GET.
    ``requests`` (responses only) pairs it with the decoder of the same connection's
    requests, which then switches protocols with it (see the module docstring).
    """

    def __init__(
        self, role: Literal["request", "response"], *, requests: MessageDecoder | None = None
    ) -> None:
        self.role: Literal["request", "response"] = role
        if requests is not None and (role != "response" or requests.role != "request"):
            raise ValueError("requests= pairs a response decoder with a request decoder")
        self._requests = requests
        self._paired = False  # a request decoder whose response decoder tells it the answers
        if requests is not None:
            requests._paired = True
        self._buf = bytearray()
        self._offset = 0  # absolute offset of _buf[0]
        self._framing: _Framing | None = None  # None: reading a head
        self._remaining = 0  # Content-Length bytes still to come
        self._chunked: ChunkedDecoder | None = None
        self._methods: deque[str] = deque()
        self._content: BodyContent | None = None  # the body's own format, if the lab knows it
        self._upgrade_asked: str | None = None  # the Upgrade field of the request being read
        self._waiting: str | None = None  # that field, while its answer is not known
        self._switched: str | None = None  # the protocol after a 101
        self._upgraded: WebSocketDecoder | _Opaque | None = None

    def expect(self, method: str) -> None:
        self._methods.append(method)

    @property
    def awaiting_answer(self) -> str | None:
        """The ``Upgrade`` field value of a request whose answer the paired response
        decoder has not read yet: the bytes after it are held. None otherwise."""
        return self._waiting

    @property
    def protocol(self) -> str | None:
        """The protocol this direction switched to (``"websocket"``), or None while it
        carries HTTP/1.1."""
        return self._switched

    def _answered(self, status: int, protocol: str) -> None:
        """The paired response decoder read the answer to the request that asked to
        upgrade: a 101 switches this direction to ``protocol`` at the end of that request,
        a final status keeps it HTTP/1.1. The held bytes are read at the next feed."""
        if self._waiting is not None and (status == 101 or status >= 200):
            self._waiting = None
            if status == 101:
                self._switch(protocol)

    def feed(self, data: bytes) -> list[Segment]:
        if self._upgraded is not None and not self._buf:
            return self._upgraded.feed(data)
        self._buf += data
        out: list[Segment] = []
        try:
            while self._step(out):
                pass
        except ProtocolError as exc:
            # Keep what this feed completed before the failure (a chunked decoder's own
            # partial work comes after it).
            exc.segments = out + exc.segments
            raise
        return out

    def eof(self) -> list[Segment]:
        """End of this direction: ends a close-delimited body; anything else left is an
        error (a message cut short)."""
        if self._upgraded is not None:
            return self.feed(b"") + self._upgraded.eof()
        out: list[Segment] = []
        while self._waiting is not None:  # never answered: what was held is HTTP/1.1
            self._waiting = None
            out += self.feed(b"")
        out += self.feed(b"")
        if self._framing == "close":
            self._end_message(out)
        elif self._framing is not None or self._buf:
            raise HTTP1Error("connection ended inside a message", self._offset + len(self._buf))
        return out

    # -- internals -------------------------------------------------------------------

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._offset += n
        return data

    def _end_message(self, out: list[Segment]) -> None:
        if self._content is not None:
            out.extend(self._content.end())
        self._framing = None
        self._chunked = None
        self._content = None
        if self._upgrade_asked is not None and self._paired:
            # The request asked to switch protocols: what follows it depends on the answer.
            self._waiting = self._upgrade_asked
        self._upgrade_asked = None

    def _switch(self, protocol: str) -> None:
        """From the next byte on, this direction carries ``protocol``."""
        self._switched = protocol
        if protocol == "websocket":
            # The role is who reads these bytes: the server reads the requests' direction.
            reader: Role = "server" if self.role == "request" else "client"
            self._upgraded = WebSocketDecoder(reader, offset=self._offset)
        else:
            self._upgraded = _Opaque(protocol, self._offset)

    def _body(self, out: list[Segment], segs: list[Segment]) -> None:
        """Body segments out, each followed by what the body's own format makes of it."""
        for seg in segs:
            out.append(seg)
            if self._content is not None and isinstance(seg, ChunkData | BodyData):
                out.extend(self._content.feed(seg.start, seg.data))

    def _step(self, out: list[Segment]) -> bool:
        if self._upgraded is not None:
            if self._buf:  # the bytes after the 101's head, in the same read
                out.extend(self._upgraded.feed(self._take(len(self._buf))))
            return False
        if self._waiting is not None:
            return False  # held until the answer to the upgrade request is known
        if self._framing is None:
            return self._head(out)
        if self._framing == "length":
            if not self._buf or not self._remaining:
                if not self._remaining:
                    self._end_message(out)
                    return True
                return False
            n = min(self._remaining, len(self._buf))
            start = self._offset
            self._body(out, [BodyData(start, start + n, self._take(n))])
            self._remaining -= n
            return True
        if self._framing == "close":
            if not self._buf:
                return False
            start, n = self._offset, len(self._buf)
            self._body(out, [BodyData(start, start + n, self._take(n))])
            return False
        assert self._chunked is not None
        if not self._buf:
            return False
        data = self._take(len(self._buf))
        try:
            segs = self._chunked.feed(data)
        except ProtocolError as exc:
            done: list[Segment] = []
            self._body(done, exc.segments)
            exc.segments = done
            raise
        self._body(out, segs)
        if self._chunked.done:
            rest = self._chunked.unused_data
            # Give back what belongs to the next message.
            self._buf[:0] = rest
            self._offset -= len(rest)
            self._end_message(out)
            return True
        return False

    def _head(self, out: list[Segment]) -> bool:
        if self.role == "request" and self._buf.startswith((b"\r", b"\n")):
            # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received
            # before a request line (some clients send one after a POST body).
            size = 2 if self._buf.startswith(b"\r\n") else 1 if self._buf[:1] == b"\n" else 0
            if size == 0:
                return False  # a lone CR so far: wait for the next byte
            start = self._offset
            self._take(size)
            out.append(EmptyLine(start, start + size))
            return True
        end = self._buf.find(b"\r\n\r\n")
        lf_end = self._buf.find(b"\n\n")
        if end < 0 and lf_end < 0:
            if len(self._buf) > MAX_HEAD_SIZE:
                raise HTTP1Error(f"head longer than {MAX_HEAD_SIZE} bytes", self._offset)
            return False
        base = self._offset
        lines: list[tuple[int, int, bytes]] = []  # (start, end incl. line ending, content)
        pos = 0
        while True:
            nl = self._buf.find(b"\n", pos)
            if nl < 0:
                return False
            content_end = nl - 1 if nl > pos and self._buf[nl - 1] == 0x0D else nl
            line = bytes(self._buf[pos:content_end])
            if b"\r" in line:
                raise HTTP1Error("bare CR in a head line", base + pos + line.index(b"\r"))
            lines.append((base + pos, base + nl + 1, line))
            pos = nl + 1
            if not line:
                break
        first_start, first_end, first = lines[0]
        segs: list[Segment] = [self._start_line(first_start, first_end, first)]
        headers: list[tuple[str, str]] = []
        for start, stop, line in lines[1:-1]:
            name, colon, value = line.partition(b":")
            if not colon or not name or any(c not in _TOKEN for c in name):
                raise HTTP1Error(f"malformed header field line {_show(line)!r}", start)
            field = HeaderField(start, stop, _show(name), _show(value.strip(b" \t")))
            headers.append((field.name.lower(), field.value))
            segs.append(field)
        framing, words = self._framing_for(segs[0], headers, base)
        switching = isinstance(segs[0], StatusLine) and segs[0].status == 101
        upgrade = _upgrade(headers, switching)
        if switching:
            if upgrade == "websocket":
                what, rfcs = "WebSocket frames", "RFC 9110 §15.2.2, RFC 6455 §4.2.2"
            else:
                what, rfcs = repr(upgrade or ""), "RFC 9110 §15.2.2"
            words = f"absent; from the next byte on the connection carries {what} (101: {rfcs})"
        elif upgrade and self.role == "request":
            self._upgrade_asked = upgrade
            words += f"; asks to switch to {upgrade} (RFC 9110 §7.8): a 101 switches after it"
        blank_start, blank_end, _ = lines[-1]
        segs.append(HeadEnd(blank_start, blank_end, words))
        out.extend(segs)
        self._take(pos)
        if self._requests is not None and isinstance(segs[0], StatusLine):
            self._requests._answered(segs[0].status, upgrade or "")
        if switching:
            self._switch(upgrade or "")
            return True
        if framing != "none" and self.role == "response":
            content_type = next((v for k, v in headers if k == "content-type"), "")
            if content_type.split(";")[0].strip().lower() == "text/event-stream":
                self._content = BodyContent(SSEDecoder())
        if framing == "none":
            self._end_message(out)
        elif framing == "chunked":
            self._framing = "chunked"
            self._chunked = ChunkedDecoder(offset=self._offset)
        else:
            self._framing = framing
        return True

    def _start_line(self, start: int, end: int, line: bytes) -> Segment:
        parts = line.split(b" ", 2)
        if self.role == "request":
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                raise HTTP1Error(f"malformed request line {_show(line)!r}", start)
            return RequestLine(start, end, _show(parts[0]), _show(parts[1]), _show(parts[2]))
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise HTTP1Error(f"malformed status line {_show(line)!r}", start)
        reason = _show(parts[2]) if len(parts) == 3 else ""
        return StatusLine(start, end, _show(parts[0]), int(parts[1]), reason)

    def _framing_for(
        self, first: Segment, headers: list[tuple[str, str]], offset: int
    ) -> tuple[_Framing, str]:
        """RFC 9112 §6.3, in the order it gives."""
        te = [v for k, v in headers if k == "transfer-encoding"]
        cl = [v for k, v in headers if k == "content-length"]
        if isinstance(first, StatusLine):
            if 100 <= first.status < 200:
                # An interim response: the final one to the same request is still to come.
                return "none", "absent (interim 1xx response)"
            method = self._methods.popleft() if self._methods else "GET"
            if method == "HEAD" or first.status in (204, 304):
                return "none", f"absent ({first.status} to {method})"
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",")]
            if codings[-1] == "chunked":
                if cl:
                    # RFC 9112 §6.3 rule 3: Transfer-Encoding overrides Content-Length,
                    # and the message is a smuggling suspect; a server must close after.
                    return "chunked", (
                        "in chunked coding: Transfer-Encoding overrides Content-Length "
                        "(RFC 9112 §6.3; suspect message, the connection must close)"
                    )
                return "chunked", "in chunked coding (Transfer-Encoding: chunked)"
            if self.role == "request":
                raise HTTP1Error("request Transfer-Encoding does not end in chunked", offset)
            return "close", "runs until the connection closes (non-chunked coding)"
        if cl:
            values = {v.strip() for c in cl for v in c.split(",")}
            # 1*DIGIT, ASCII digits only (RFC 9110 §8.6): str.isdigit() also takes "²".
            if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
                raise HTTP1Error(f"invalid Content-Length {cl!r}", offset)
            self._remaining = int(values.pop())
            return "length", f"of {self._remaining} bytes (Content-Length)"
        if self.role == "request":
            return "none", "absent (no Content-Length, no Transfer-Encoding)"
        return "close", "runs until the connection closes (no length given)"


def _upgrade(headers: list[tuple[str, str]], switching: bool) -> str | None:
    """The first protocol an ``Upgrade`` field names, lower-cased (without a version).

    A request asks to upgrade only when ``Connection`` also carries the ``upgrade``
    option (RFC 9110 §7.8: a server ignores an Upgrade field without it); a 101
    (``switching``) has switched whatever its fields say. None: no protocol named."""
    options = {o.strip().lower() for k, v in headers if k == "connection" for o in v.split(",")}
    offered = [p.strip() for k, v in headers if k == "upgrade" for p in v.split(",")]
    if not offered or not offered[0] or not (switching or "upgrade" in options):
        return None
    return offered[0].split("/")[0].lower()
