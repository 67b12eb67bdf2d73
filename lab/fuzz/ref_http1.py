"""The HTTP/1.1 codecs against h11 0.16.0: chunked bodies, and messages' heads and framing.

**chunked** (:mod:`lab.wire.chunked`): the body goes to an h11 server ``Connection`` after a
``POST`` head with ``Transfer-Encoding: chunked``, in one read. Where both finish the body
they must agree on its data, its trailer fields and the bytes after it. Where they disagree
about accepting it, the disagreement must be one of the numbered differences of
:mod:`lab.wire.chunked`'s docstring: when h11 accepts and the lab refuses, the lab's error
message names a rule h11 does not check (points 1 and 3 to 8); when the lab accepts and h11
refuses, the body has whitespace before a ``;`` (point 2) or a framing field among its
trailers (point 9; where h11 accepts one, it reports it rewritten: point 6 below). A lab
decoder that finished a body h11 is still reading is always a failure: that is where the
next message would start in two different places.

**http1** (:mod:`lab.wire.http1`): a request stream goes to an h11 server ``Connection``; a
response stream (bytes starting ``HTTP/``) to an h11 client ``Connection`` that sent
``GET /``, followed by the end of the input (a response may run until the connection
closes). h11 reads one request, or the interim responses and one final response; the lab's
messages up to that point are compared with them. Where both accept a message they must
agree on its start line, every header field (name as sent, value without surrounding
whitespace), its body bytes, its trailer fields and whether it ended. That is the framing:
two parsers that agree on it cannot be smuggled past each other.

The lab's HTTP/1.1 decoder is a viewer's (it shows the heads a server refuses), so it
accepts more than h11. Measured with this fuzzer, the differences, each a rule one of them
checks and the other does not:

1. **What h11 validates and the viewer shows anyway** (h11 refuses, the lab decodes):
   bytes outside the grammar of a request line, a status line or a field line ("illegal
   request line", "illegal status line", "illegal header line": a method that is not a
   token, a control byte in a target or a field value, a version that is not
   ``HTTP/1.x``, a status below 100); a missing or repeated ``Host`` (RFC 9112 §3.2); a
   response transfer coding other than chunked (h11 supports no other; the lab reads the
   body until the connection closes, as RFC 9112 §6.3 rule 4 says); a malformed
   ``Content-Length`` beside ``Transfer-Encoding: chunked`` (which overrides it, §6.3 rule
   3, so the lab does not read it). When h11 refuses the input, nothing more is compared.
2. **Empty lines before a request line**: RFC 9112 §2.2 says a server SHOULD ignore at
   least one; the lab does, h11 refuses them ("no request line received").
3. **Obsolete line folding** (a field line starting with SP or HTAB, RFC 9112 §5.2): h11
   joins it to the previous value; the lab refuses it.
4. **A head of mixed line endings**: both accept lines ending in LF (RFC 9112 §2.2); h11
   also ends a head at LF CRLF, where the lab looks for CRLF CRLF or LF LF, so the lab
   waits for more (and at the end of the input says so) where h11 has read a head.
5. **Chunked bodies**: what :mod:`lab.wire.chunked` documents (above) holds inside a
   message too.
6. **What h11 reports**: ``Transfer-Encoding`` values lower-cased, and all the
   ``Content-Length`` fields (which must agree) as one field, where the first was, in the
   head and, as it treats trailer fields like header fields (point 9 of the chunked list),
   among the trailers too; the lab's fields are compared after the same rewriting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

import h11

from lab.decode import Decoded
from lab.wire.chunked import BodyEnd, ChunkData, ChunkSize, LastChunk, TrailerField
from lab.wire.http1 import BodyData, EmptyLine, HeadEnd, HeaderField, RequestLine, StatusLine
from lab.wire.segment import Segment

__all__ = ["compare_chunked", "compare_http1"]

H11_HEAD: Final = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

# Our errors for bodies h11 0.16.0 accepts, with the point of lab.wire.chunked's list each
# one falls under.
STRICTER_THAN_H11: Final = (
    (r"whitespace before CRLF", "1/3 whitespace after the size or an extension"),
    (r"without an extension (name|value)", "3 malformed extension"),
    (r"unexpected .* in the chunk-size line", "3 malformed extension"),
    (r"control byte .* in a chunk extension", "3 control byte in an extension"),
    (r"unterminated quoted string", "3 malformed extension"),
    (r"bare CR in the chunk-size line", "3 bare CR inside an extension"),
    (r"more than \d+ hex digits", "4 digit limit"),
    (r"chunk extensions longer|trailer section longer", "5 size limits"),
    (r"lone LF (ends a trailer field line|in the trailer section)", "6 lone LF"),
    (r"obsolete line folding", "7 obs-fold"),
    (r"control byte .* in a trailer field value", "8 control byte in a trailer"),
)
FRAMING_NAMES: Final = (b"content-length", b"transfer-encoding")


@dataclass(slots=True)
class _Body:
    """One side's reading of a chunked body or a message: "ok", "error" or "incomplete"."""

    status: str
    data: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    unused: bytes = b""
    message: str = ""


def _lab_status(decoded: Decoded) -> str:
    if decoded.error is None:
        return "ok"
    return "incomplete" if decoded.at_eof else "error"


def _h11_body(body: bytes) -> _Body:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(H11_HEAD)
    conn.next_event()
    data = bytearray()
    trailers: list[tuple[bytes, bytes]] = []
    try:
        if body:  # an empty read is the end of the input to h11
            conn.receive_data(body)
        while conn.their_state is h11.SEND_BODY:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                trailers = list(event.headers.raw_items())
    except h11.RemoteProtocolError as exc:
        return _Body("error", message=str(exc))
    if conn.their_state is h11.DONE:
        return _Body("ok", bytes(data), trailers, bytes(conn.trailing_data[0]))
    return _Body("incomplete", bytes(data))


def _bws_before_semicolon(data: bytes, segments: list[Segment]) -> bool:
    """Point 2: a size line with whitespace between the size and its ';'."""
    for s in segments:
        if isinstance(s, ChunkSize | LastChunk):
            after = s.start + len(s.size_text)
            if data[after : after + 1] in (b" ", b"\t"):
                return True
    return False


def compare_chunked(data: bytes, decoded: Decoded) -> str | None:
    theirs = _h11_body(data)
    status = _lab_status(decoded)
    segments = decoded.top
    if status == "ok" and theirs.status == "ok":
        trailers = [
            (_latin(s.name), _latin(s.value)) for s in segments if isinstance(s, TrailerField)
        ]
        ours = _Body(
            "ok",
            b"".join(s.data for s in segments if isinstance(s, ChunkData)),
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in _as_h11_reports(trailers)],
            data[len(data) - decoded.unused :],
        )
        for what in ("data", "trailers", "unused"):
            if getattr(ours, what) != getattr(theirs, what):
                return f"both accept, {what} differ: lab {getattr(ours, what)!r} / h11 " + repr(
                    getattr(theirs, what)
                )
        return None
    if theirs.status == "ok":
        message = decoded.error.message if decoded.error is not None else ""
        if status == "error" and any(re.search(p, message) for p, _ in STRICTER_THAN_H11):
            return None
        return f"h11 accepts the body, the lab says {status}: {message!r}"
    if status != "error" and theirs.status == "error":
        framing = any(
            isinstance(s, TrailerField) and s.name.lower() in FRAMING_NAMES for s in segments
        )
        if _bws_before_semicolon(data, segments) or framing:
            return None
        return f"the lab says {status}, h11 refuses: {theirs.message!r}"
    if status == "ok" and theirs.status == "incomplete":
        return "the lab finished the body where h11 is still reading it"
    return None


# -- messages ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    start: tuple[str, ...]  # (method, target, version) or (version, status)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    head_done: bool = False
    ended: bool = False
    length: int = -1  # a Content-Length body's size


def _latin(data: bytes | bytearray) -> str:
    return bytes(data).decode("latin-1")


def _h11_messages(data: bytes, response: bool) -> tuple[list[_Message], str]:
    """h11's messages: one request, or the interim responses and one final response; and
    "ok", "incomplete" or "error: ..." for how reading them ended."""
    conn = h11.Connection(h11.CLIENT if response else h11.SERVER)
    if response:
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
    out: list[_Message] = []
    try:
        conn.receive_data(data)
        if response:
            conn.receive_data(b"")
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return out, "incomplete"
            if isinstance(event, h11.Request):
                version = "HTTP/" + _latin(event.http_version)
                start: tuple[str, ...] = (_latin(event.method), _latin(event.target), version)
                out.append(_Message(start, _raw_headers(event.headers)))
            elif isinstance(event, h11.InformationalResponse | h11.Response):
                start = ("HTTP/" + _latin(event.http_version), str(event.status_code))
                ended = isinstance(event, h11.InformationalResponse)
                out.append(_Message(start, _raw_headers(event.headers), ended=ended))
            elif isinstance(event, h11.Data):
                out[-1].body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                out[-1].trailers = _raw_headers(event.headers)
                out[-1].ended = True
                return out, "ok"
            elif isinstance(event, h11.ConnectionClosed):
                return out, "incomplete"
    except h11.RemoteProtocolError as exc:
        if "without sending complete message body" in str(exc):
            return out, "incomplete"
        return out, f"error: {exc}"


def _raw_headers(headers: h11._headers.Headers) -> list[tuple[str, str]]:
    return [(_latin(name), _latin(value)) for name, value in headers.raw_items()]


_LONE_LF: Final = re.compile(rb"(?<!\r)\n")
_LENGTH: Final = re.compile(r"of (\d+) bytes \(Content-Length\)")


def _lab_messages(decoded: Decoded) -> list[_Message]:
    """The lab's messages, from its segments, each saying whether its head and the whole
    of it were read."""
    out: list[_Message] = []
    for seg in decoded.top:
        if isinstance(seg, RequestLine | StatusLine | EmptyLine) and out:
            out[-1].ended = True
        if isinstance(seg, RequestLine):
            out.append(_Message((seg.method, seg.target, seg.version)))
        elif isinstance(seg, StatusLine):
            out.append(_Message((seg.version, str(seg.status))))
        elif not out or isinstance(seg, EmptyLine):
            continue
        elif isinstance(seg, HeaderField):
            out[-1].headers.append((seg.name, seg.value))
        elif isinstance(seg, HeadEnd):
            out[-1].head_done = True
            length = _LENGTH.search(seg.framing)
            out[-1].length = int(length.group(1)) if length else -1
            out[-1].ended = seg.framing.startswith("absent") or out[-1].length == 0
        elif isinstance(seg, BodyData | ChunkData):
            out[-1].body += seg.data
            out[-1].ended = len(out[-1].body) == out[-1].length
        elif isinstance(seg, TrailerField):
            out[-1].trailers.append((_latin(seg.name), _latin(seg.value)))
        elif isinstance(seg, BodyEnd):
            out[-1].ended = True
    if out and decoded.error is None:
        out[-1].ended = True
    return out


def compare_http1(data: bytes, decoded: Decoded) -> str | None:
    response = data.startswith(b"HTTP/")
    theirs, how = _h11_messages(data, response)
    if how.startswith("error"):
        return None  # points 1 and 2: h11 refuses what the viewer shows
    ours = _lab_messages(decoded)
    error = decoded.error
    message = error.message if error is not None else ""
    # Point 4: h11 found the end of a head of mixed line endings; the lab waits for more.
    mixed = decoded.at_eof and _LONE_LF.search(data) is not None and b"\r\n" in data
    for i, their in enumerate(theirs):
        if i >= len(ours) or not ours[i].head_done:
            if mixed:
                return None
            return _refused(message, f"the lab did not read the head of message {i + 1}")
        mine = ours[i]
        for what in ("start", "headers"):
            a, b = getattr(mine, what), getattr(their, what)
            if what == "headers":
                a = _as_h11_reports(a)
            if a != b:
                return f"message {i + 1}: {what} differ: lab {a!r} / h11 {b!r}"
        if mine.ended and not their.ended:
            return f"message {i + 1}: the lab ended it where h11 is still reading it"
        if their.ended and not mine.ended:
            if error is not None and not decoded.at_eof:
                return _refused(message, f"the lab did not read the body of message {i + 1}")
            return f"message {i + 1}: h11 ended it where the lab is still reading it"
        for what in ("body", "trailers") if mine.ended else ("body",):
            a, b = getattr(mine, what), getattr(their, what)
            if what == "trailers":
                a = _as_h11_reports(a)
            if a != b and not (what == "body" and not mine.ended and b.startswith(a)):
                return f"message {i + 1}: {what} differ: lab {a!r} / h11 {b!r}"
    return None


def _as_h11_reports(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Point 6: the fields as h11 reports them: Transfer-Encoding lower-cased, and every
    Content-Length field (all with the same value, or h11 refuses) one field of one value,
    where the first was."""
    out: list[tuple[str, str]] = []
    seen_length = False
    for name, value in headers:
        key = name.lower()
        if key == "transfer-encoding":
            out.append((name, value.lower()))
        elif key != "content-length":
            out.append((name, value))
        elif not seen_length:
            seen_length = True
            out.append((name, value.split(",")[0].strip()))
    return out


# Our errors for messages h11 0.16.0 reads, with the point of the list above they fall under.
_REFUSALS: Final = ((r"malformed header field line ['\"]( |\\t)", "3 obs-fold"),)


def _refused(message: str, what: str) -> str | None:
    """None if the lab's error ``message`` is a documented refusal, else the failure."""
    for pattern, _ in (*_REFUSALS, *STRICTER_THAN_H11):
        if re.search(pattern, message):
            return None
    return f"h11 reads it, {what}: {message!r}"
