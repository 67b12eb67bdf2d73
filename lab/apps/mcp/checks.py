"""The gates in front of the MCP endpoint: ``Host``, ``Origin`` and the media types.

Every request to ``/mcp`` passes :func:`check_host` and :func:`check_origin` before its
revision is looked at (gates 1 and 2 of :mod:`lab.apps.mcp.transport`), and every POST
:func:`check_post_media`. A failed check raises :class:`Reject`, which the endpoint
answers with its status and a JSON-RPC error body.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from lab.apps.interface import Request
from lab.apps.mcp.messages import INVALID_REQUEST, error_response, is_request_id

__all__ = [
    "JSON",
    "LOCAL_HOSTS",
    "SSE",
    "Reject",
    "check_host",
    "check_origin",
    "check_post_media",
    "media_types",
    "parse_host",
]

JSON: Final = "application/json"
SSE: Final = "text/event-stream"
# Host names that reach this machine only, as parse_host normalises them (lower case, an
# IPv6 literal compressed, in brackets). A DNS-rebinding page talks to 127.0.0.1 under its
# own name (evil.example), which is what the Host check catches; any port is allowed
# because the handler does not see which port the server is bound to. Only the addresses
# the lab binds: other 127.0.0.0/8 addresses do not reach a socket bound to 127.0.0.1.
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})
# RFC 3986 §3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims ). An IPv4address
# matches it too (and is compared as written: "127.000.000.001" is not "127.0.0.1").
_REG_NAME: Final = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*")
# The characters an IPv6address may have (RFC 3986 §3.2.2); ipaddress checks the rest. No
# "%": a zone id (RFC 6874) names an interface of the client, never this server.
_IPV6_CHARS: Final = re.compile(r"[0-9A-Fa-f:.]+")
# RFC 3986 §3.2.3: port = *DIGIT.
_PORT: Final = re.compile(r"[0-9]*")


class Reject(Exception):
    """Answer with ``status`` and a JSON-RPC error body (transports.mdx: an error status
    MAY carry a JSON-RPC error response; without a request id it has no ``id``)."""

    def __init__(
        self, status: int, code: int, message: str, *, request_id: object = None,
        data: object = None, headers: tuple[tuple[str, str], ...] = (),
    ) -> None:  # fmt: skip
        super().__init__(status, message)
        self.status = status
        rid = request_id if is_request_id(request_id) else None
        self.body = error_response(rid, code, message, data)
        self.headers = headers


def media_types(header: str | None) -> set[str]:
    """The media types an Accept header lists with a q above 0 (RFC 9110 §12.5.1)."""
    out: set[str] = set()
    for item in (header or "").split(","):
        media, *params = (p.strip() for p in item.split(";"))
        weights = [p[2:].strip() for p in params if p.lower().startswith("q=")]
        if weights and weights[0].replace(".", "", 1).isdigit() and float(weights[0]) == 0:
            continue  # q=0: "not acceptable"
        out.add(media.lower())
    return out


def parse_host(value: str) -> tuple[str, str | None] | None:
    """A ``Host`` value, ``uri-host [":" port]`` (RFC 9110 §7.2), as ``(host, port)``;
    None if it is not one.

    ``uri-host`` is RFC 3986 §3.2.2: an IP-literal in brackets, or a reg-name (which an
    IPv4 address also is); ``port`` is digits only (§3.2.3). The host comes back normalised
    as :data:`LOCAL_HOSTS` spells names: lower case, an IPv6 address compressed
    (``[0:0:0:0:0:0:0:1]`` -> ``[::1]``). An IPvFuture literal counts as malformed (this
    server has no such address). ``[::1]anything`` is malformed, not ``[::1]``.
    """
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not _IPV6_CHARS.fullmatch(value[1:end]):
            return None
        try:
            host = f"[{ipaddress.IPv6Address(value[1:end]).compressed}]"
        except ValueError:
            return None
        rest = value[end + 1 :]
    else:
        name = value.partition(":")[0]
        if not _REG_NAME.fullmatch(name):
            return None
        host, rest = name.lower(), value[len(name) :]
    if not rest:
        return host, None
    if rest[0] != ":" or not _PORT.fullmatch(rest[1:]):
        return None
    return host, rest[1:]


def own_address(request: Request) -> str | None:
    """The IP address the request arrived on, as a Host would name it ("[::1]" for IPv6).

    A Host or Origin naming it is as safe as "127.0.0.1": DNS rebinding (the attack the
    MCP transport's security warning is about, 2025-11-25 basic/transports) needs a DNS
    name, and an IP literal is none. So ``lab serve --host 127.0.0.5`` answers
    ``Host: 127.0.0.5:PORT`` without an ``allowed_hosts`` entry.
    """
    host, sep, _ = request.local.rpartition(":")
    return host.lower() if sep and host else None


def check_host(request: Request, allowed_hosts: frozenset[str]) -> None:
    """Gate 1: one well-formed ``Host`` (400) naming this machine or an allowed host (421)."""
    values = [value.strip(" \t") for name, value in request.headers if name == "host"]
    if request.protocol == "h2":
        # The server gives :authority as Host; a Host field beside it must agree
        # (RFC 9113 §8.3.1).
        values = list(dict.fromkeys(values))
    parsed = parse_host(values[0]) if len(values) == 1 else None
    if parsed is None:
        # RFC 9112 §3.2: 400 for a request that lacks Host, has more than one, or
        # one "with an invalid field value".
        shown = ", ".join(repr(v[:100]) for v in values[:2]) or "none"
        raise Reject(400, INVALID_REQUEST, f"Bad Request: Host {shown}")
    host, port = parsed
    if (
        host in LOCAL_HOSTS
        or host == own_address(request)
        or host in allowed_hosts
        or (port is not None and f"{host}:{port}" in allowed_hosts)
    ):
        return
    # RFC 9110 §15.5.20: 421 Misdirected Request, "not able to produce a response
    # for this combination of scheme and authority".
    raise Reject(421, INVALID_REQUEST, f"Misdirected Request: Host {values[0][:100]!r}")


def check_origin(request: Request, allowed_origins: frozenset[str]) -> None:
    """Gate 2: an ``Origin``, when present, that is local or allowed (403)."""
    origin = request.header("origin")
    if origin is None:
        return  # not a browser: nothing to check (DNS rebinding needs a browser)
    if origin in allowed_origins:
        return
    # RFC 6454 §6.2: scheme "://" host [":" port], nothing more (no userinfo, no path).
    scheme, sep, authority = origin.partition("://")
    parsed = parse_host(authority) if sep and scheme.lower() in ("http", "https") else None
    if parsed is not None and (parsed[0] in LOCAL_HOSTS or parsed[0] == own_address(request)):
        return
    raise Reject(403, INVALID_REQUEST, f"Forbidden: Origin {origin[:100]!r}")


def check_post_media(request: Request) -> None:
    """A POST sends ``application/json`` (415) and accepts both answers (406)."""
    ctype = (request.header("content-type") or "").split(";")[0].strip().lower()
    if ctype != JSON:
        raise Reject(415, INVALID_REQUEST, "Unsupported Media Type: send application/json")
    accepted = media_types(request.header("accept"))
    if JSON not in accepted or SSE not in accepted:
        raise Reject(
            406, INVALID_REQUEST,
            "Not Acceptable: Accept must list application/json and text/event-stream",
        )  # fmt: skip
