"""The WebSocket opening handshake (RFC 6455 §4), and its HTTP/2 form (RFC 8441).

Over HTTP/1.1 the client sends a GET with ``Upgrade: websocket`` and a random
``Sec-WebSocket-Key``; the server answers ``101 Switching Protocols`` with
``Sec-WebSocket-Accept``, the base64 of the SHA-1 of the key followed by a fixed GUID
(§1.3, §4.2.2). From the next octet on, both directions carry frames (§5). The example of
§1.3::

    GET /chat HTTP/1.1                          HTTP/1.1 101 Switching Protocols
    Host: server.example.com                    Upgrade: websocket
    Upgrade: websocket                          Connection: Upgrade
    Connection: Upgrade                         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
    Sec-WebSocket-Version: 13

Here: :func:`make_key` and :func:`accept_key` (the computation), :func:`check_accept`;
:func:`request_headers` and :func:`response_headers` (what each side sends);
:func:`request_problems` (what a server checks, §4.2.1) and :func:`response_problems`
(what a client checks, §4.1), each a list of what is wrong, citing the section, and
:func:`check_request` / :func:`check_response`, which raise :class:`HandshakeError` with
them.

Over HTTP/2 (RFC 8441) there is no Upgrade: once the server has sent
SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3), the client opens a stream with an
extended CONNECT (``:method CONNECT``, ``:protocol websocket``, ``:scheme``, ``:path``,
``:authority``), the server answers 200, and the frames travel in that stream's DATA
frames. No key and no accept are exchanged (RFC 8441 §4). :func:`extended_connect_problems`
and :func:`extended_connect_response_problems` check that form.

Headers are given as (name, value) pairs of ``str`` or ``bytes`` (Latin-1), in the order
they came; names are compared without case, and a field repeated on several lines counts
as one comma-separated list where its grammar allows that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Final

from lab.wire.errors import ProtocolError

__all__ = [
    "GUID",
    "KEY_NONCE_SIZE",
    "VERSION",
    "HandshakeError",
    "accept_key",
    "check_accept",
    "check_request",
    "check_response",
    "extended_connect_problems",
    "extended_connect_response_problems",
    "key_problem",
    "make_key",
    "request_headers",
    "request_problems",
    "response_headers",
    "response_problems",
]

# §1.3, §4.2.2: the GUID the server appends to the key before hashing. Fixed by the RFC;
# an endpoint "unlikely to be used by network endpoints that do not understand" WebSocket.
GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# §4.1 item 9: the only version RFC 6455 defines.
VERSION: Final = "13"
# §4.1 item 7: the key is the base64 of a 16-octet random nonce.
KEY_NONCE_SIZE: Final = 16

Headers = Iterable[tuple[str | bytes, str | bytes]]


class HandshakeError(ProtocolError):
    """A handshake the checking side refuses. ``problems`` lists each thing wrong, citing
    its section; ``status_hint`` is what a server answers a bad request with: 426 Upgrade
    Required (with ``Sec-WebSocket-Version: 13``) for a version it does not speak (§4.2.2,
    §4.4), else 400. ``offset`` is where the head starts, if the caller knows it."""

    def __init__(self, problems: Sequence[str], offset: int = 0, *, status_hint: int = 400) -> None:
        super().__init__("; ".join(problems), offset, status_hint=status_hint)
        self.problems = list(problems)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _fields(headers: Headers) -> list[tuple[str, str]]:
    return [(_text(name).lower(), _text(value).strip()) for name, value in headers]


def _values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for field, value in fields if field == name]


def _tokens(fields: list[tuple[str, str]], name: str) -> list[str]:
    """The comma-separated elements of every ``name`` line, lower-cased (RFC 9110 §5.6.1
    lists; a field on several lines is one list)."""
    return [t.strip().lower() for v in _values(fields, name) for t in v.split(",") if t.strip()]


# --------------------------------------------------------------------------------------
# The key and the accept value (§4.1, §4.2.2)


def make_key(nonce: bytes | None = None) -> str:
    """A ``Sec-WebSocket-Key``: the base64 of a 16-octet nonce, random unless given
    (§4.1 item 7: "randomly selected" for each connection)."""
    if nonce is None:
        nonce = os.urandom(KEY_NONCE_SIZE)
    if len(nonce) != KEY_NONCE_SIZE:
        raise ValueError(f"the nonce is {KEY_NONCE_SIZE} octets, not {len(nonce)}")
    return base64.b64encode(nonce).decode("ascii")


def key_problem(key: str | bytes) -> str | None:
    """Why ``key`` is not a valid ``Sec-WebSocket-Key`` (§4.1 item 7), or None."""
    text = _text(key).strip()
    try:
        nonce = base64.b64decode(text.encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        return f"Sec-WebSocket-Key {text!r} is not base64 (§4.1)"
    if len(nonce) != KEY_NONCE_SIZE:
        return (
            f"Sec-WebSocket-Key {text!r} decodes to {len(nonce)} octets, not"
            f" {KEY_NONCE_SIZE} (§4.1)"
        )
    return None


def accept_key(key: str | bytes) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: base64(SHA-1(key + GUID)), the key taken as
    the string it is on the wire, without surrounding whitespace, never base64-decoded
    (§4.2.2 item 5.4)."""
    raw = _text(key).strip().encode("latin-1") + GUID.encode("ascii")
    return base64.b64encode(hashlib.sha1(raw).digest()).decode("ascii")


def check_accept(key: str | bytes, accept: str | bytes) -> bool:
    """Whether ``accept`` (surrounding whitespace ignored) is the value the server had to
    compute from ``key`` (§4.1, the client's check 4)."""
    return _text(accept).strip() == accept_key(key)


# --------------------------------------------------------------------------------------
# HTTP/1.1 (§4.1, §4.2)


def request_headers(
    host: str,
    key: str,
    *,
    protocols: Sequence[str] = (),
    origin: str | None = None,
) -> list[tuple[str, str]]:
    """The header fields of a client's opening handshake (§4.1 items 4-10); the request
    line is ``GET <resource> HTTP/1.1``."""
    fields = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", VERSION),
    ]
    if origin is not None:
        fields.append(("Origin", origin))
    if protocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    return fields


def response_headers(key: str, *, protocol: str | None = None) -> list[tuple[str, str]]:
    """The header fields of a server's ``101 Switching Protocols`` (§4.2.2 item 5)."""
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if protocol is not None:
        fields.append(("Sec-WebSocket-Protocol", protocol))
    return fields


def _version_problem(fields: list[tuple[str, str]]) -> str | None:
    versions = _values(fields, "sec-websocket-version")
    if len(versions) != 1 or versions[0] != VERSION:
        shown = ", ".join(repr(v) for v in versions) or "none"
        return (
            f"Sec-WebSocket-Version must be {VERSION}, once (got {shown}) (§4.1 item 9,"
            " §4.2.1 item 6, §11.3.5)"
        )
    return None


def request_problems(method: str, headers: Headers, *, http_version: str = "1.1") -> list[str]:
    """What a server finds wrong with an opening handshake request (§4.2.1), empty when
    it may accept it."""
    fields = _fields(headers)
    problems = []
    if method != "GET":
        problems.append(f"the method is {method!r}: the handshake is a GET (§4.1 item 2)")
    try:
        major, minor = (int(part) for part in http_version.split("."))
        old = (major, minor) < (1, 1)
    except ValueError:
        old = True
    if old:
        problems.append(f"HTTP/{http_version}: the handshake needs HTTP/1.1 or later (§4.1 item 2)")
    if not _values(fields, "host"):
        problems.append("no Host header field (§4.1 item 4, §4.2.1 item 2)")
    if "websocket" not in _tokens(fields, "upgrade"):
        problems.append("Upgrade does not include 'websocket' (§4.1 item 5, §4.2.1 item 3)")
    if "upgrade" not in _tokens(fields, "connection"):
        problems.append(
            "Connection does not include the token 'Upgrade' (§4.1 item 6, §4.2.1 item 4)"
        )
    keys = _values(fields, "sec-websocket-key")
    if len(keys) != 1:
        problems.append(f"{len(keys)} Sec-WebSocket-Key fields: exactly one (§4.1 item 7, §11.3.1)")
    else:
        problem = key_problem(keys[0])
        if problem is not None:
            problems.append(problem)
    version = _version_problem(fields)
    if version is not None:
        problems.append(version)
    return problems


def check_request(
    method: str, headers: Headers, *, http_version: str = "1.1", offset: int = 0
) -> str:
    """Return the request's ``Sec-WebSocket-Key``, or raise :class:`HandshakeError` with
    every problem of :func:`request_problems` (status 426 when the only trouble is the
    version, §4.2.2)."""
    headers = list(headers)
    problems = request_problems(method, headers, http_version=http_version)
    if problems:
        only_version = problems == [_version_problem(_fields(headers))]
        raise HandshakeError(problems, offset, status_hint=426 if only_version else 400)
    return _values(_fields(headers), "sec-websocket-key")[0]


def response_problems(
    status: int,
    headers: Headers,
    key: str,
    *,
    protocols: Sequence[str] = (),
    extensions: Sequence[str] = (),
) -> list[str]:
    """What a client that sent ``key``, offering ``protocols`` and ``extensions``, finds
    wrong with the server's response (§4.1, the client's checks 1-6); empty when the
    connection is established."""
    fields = _fields(headers)
    problems = []
    if status != 101:
        problems.append(f"status {status}: a server accepts with 101 (§4.1 check 1, §4.2.2)")
    upgrades = _tokens(fields, "upgrade")
    if upgrades != ["websocket"]:
        problems.append(
            f"Upgrade is {upgrades or 'missing'}: it must be 'websocket' (§4.1 check 2)"
        )
    if "upgrade" not in _tokens(fields, "connection"):
        problems.append("Connection does not include the token 'Upgrade' (§4.1 check 3)")
    accepts = _values(fields, "sec-websocket-accept")
    if len(accepts) != 1:
        problems.append(
            f"{len(accepts)} Sec-WebSocket-Accept fields: exactly one (§4.1 check 4, §11.3.3)"
        )
    elif not check_accept(key, accepts[0]):
        problems.append(
            f"Sec-WebSocket-Accept {accepts[0]!r} is not {accept_key(key)!r},"
            " base64(SHA-1(key + GUID)) (§4.1 check 4, §4.2.2)"
        )
    offered_ext = {e.split(";")[0].strip().lower() for e in extensions}
    for ext in _tokens(fields, "sec-websocket-extensions"):
        name = ext.split(";")[0].strip()
        if name not in offered_ext:
            problems.append(f"extension {name!r} was not offered (§4.1 check 5, §9.1)")
    chosen = _values(fields, "sec-websocket-protocol")
    if chosen and (len(chosen) > 1 or chosen[0] not in protocols):
        problems.append(
            f"subprotocol {', '.join(chosen)!r} was not offered, or more than one"
            " (§4.1 check 6, §11.3.4)"
        )
    return problems


def check_response(
    status: int,
    headers: Headers,
    key: str,
    *,
    protocols: Sequence[str] = (),
    extensions: Sequence[str] = (),
    offset: int = 0,
) -> None:
    """Raise :class:`HandshakeError` with every problem of :func:`response_problems`: the
    client must then _Fail the WebSocket Connection_ (§4.1, §7.1.7)."""
    problems = response_problems(status, headers, key, protocols=protocols, extensions=extensions)
    if problems:
        raise HandshakeError(problems, offset)


# --------------------------------------------------------------------------------------
# HTTP/2: extended CONNECT (RFC 8441)


def extended_connect_problems(headers: Headers) -> list[str]:
    """What is wrong with an HTTP/2 request that opens a WebSocket (RFC 8441 §4, §5),
    pseudo-header fields included; empty when it is one."""
    fields = _fields(headers)

    def one(name: str) -> str | None:
        values = _values(fields, name)
        return values[0] if len(values) == 1 else None

    problems = []
    if one(":method") != "CONNECT":
        problems.append(":method must be CONNECT (RFC 8441 §4)")
    if one(":protocol") != "websocket":
        problems.append(":protocol must be 'websocket' (RFC 8441 §4, §5)")
    if one(":scheme") not in ("http", "https"):
        problems.append(":scheme must be 'http' (ws) or 'https' (wss) (RFC 8441 §4, §5)")
    if not one(":path"):
        problems.append(":path must be present: the resource (RFC 8441 §4, §5)")
    if not one(":authority"):
        problems.append(":authority must be present: the host (RFC 8441 §4, §5)")
    for name in ("connection", "upgrade"):
        if _values(fields, name):
            problems.append(
                f"{name} must not be sent: HTTP/2 has no Upgrade mechanism (RFC 8441 §4)"
            )
    return problems


def extended_connect_response_problems(status: int) -> list[str]:
    """What is wrong with the response to an extended CONNECT: the server accepts the
    WebSocket with a 2xx, 200 (RFC 8441 §5); anything else refuses it."""
    if 200 <= status <= 299:
        return []
    return [f"status {status}: a server accepts an extended CONNECT with 200 (RFC 8441 §5)"]
