"""The probe's connections: a URL, TCP, TLS with ALPN, the live tap, and errors in one line.

:func:`open_tapped` makes one connection for :mod:`lab.probe.exchange`:

- TCP to the URL's host and port (:data:`CONNECT_TIMEOUT`);
- for ``https``, TLS (RFC 8446) with ALPN offering ``h2`` then ``http/1.1`` (RFC 7301;
  RFC 9113 §3.2 names ``h2``), the server's certificate checked against the system's CAs,
  against ``--cacert`` instead, or not at all with ``-k`` (:func:`client_context`);
  the handshake is bounded by :data:`HANDSHAKE_TIMEOUT`;
- the tap on top, recording into the probe's trace with the live printer as its sink, so
  a TLS connection is recorded above TLS: its decrypted bytes, and the trace says so.

Every way this can fail becomes a :class:`ProbeError` whose message is one line: the name
does not resolve, nothing listens, no answer in time, the TLS handshake failed (and why:
the certificate's verification, a protocol version).
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import trio

from lab.capture.records import ConnectionTrace
from lab.capture.tap import Recorder, TappedStream, socket_addresses
from lab.probe.live import LivePrinter

__all__ = [
    "ALPN_OFFER",
    "CONNECT_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "Opened",
    "ProbeError",
    "Target",
    "client_context",
    "open_tapped",
    "parse_url",
]

# How long to wait for the TCP connection: a remote server a continent away answers in
# well under a second; past this the host is down or a firewall drops the SYNs.
CONNECT_TIMEOUT: Final = 15.0
# How long the TLS handshake may take once TCP is up: two round trips and a signature.
HANDSHAKE_TIMEOUT: Final = 15.0
# What the probe offers in ALPN, in its order of preference, as browsers and curl do.
ALPN_OFFER: Final = ("h2", "http/1.1")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class ProbeError(Exception):
    """Why the probe could not go on, in one line."""


@dataclass(frozen=True, slots=True)
class Target:
    """What the probe connects to, from its URL."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    target: str  # the request target: path and query (RFC 9112 §3.2.1, origin-form)

    @property
    def authority(self) -> str:
        """Host and port as the Host header / :authority says them (the port only when it
        is not the scheme's default, RFC 9110 §7.2)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme]
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"


def parse_url(text: str) -> Target:
    """``http[s]://host[:port][/path][?query]``; :class:`ValueError` says what is wrong."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r}: the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{text!r}: no host in the URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number from 0 to 65535") from None
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return Target(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], target)


def client_context(*, verify: bool = True, cafile: Path | None = None) -> ssl.SSLContext:
    """A client TLS context offering :data:`ALPN_OFFER`: the system's CAs, or ``cafile``'s
    instead; ``verify=False`` checks neither the chain nor the name (``-k``)."""
    if cafile is not None:
        try:
            context = ssl.create_default_context(cafile=str(cafile))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ProbeError(f"cannot use {cafile} as CA certificates: {reason}") from None
    else:
        context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # HTTP/2 over TLS needs TLS 1.2 or later (RFC 9113 §9.2).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(ALPN_OFFER))
    return context


@dataclass(slots=True)
class Opened:
    """A connection, tapped, and what its handshake chose."""

    stream: TappedStream
    conn: ConnectionTrace
    alpn: str | None  # None: no TLS, or the server chose no protocol
    tls_version: str | None


async def open_tapped(
    where: Target,
    recorder: Recorder,
    printer: LivePrinter,
    *,
    context: ssl.SSLContext | None,
    protocol: str,
) -> Opened:
    """Connect to ``where`` (TLS with ``context`` for https), tap it as a connection of
    ``recorder``'s trace with ``printer`` live, and return it. ``protocol`` names the
    bytes when TLS does not (``"http/1.1"`` or ``"h2c"``); ALPN's ``h2`` makes it "h2"."""
    name = f"{where.host}:{where.port}"
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            sock = await trio.open_tcp_stream(where.host, where.port)
    except trio.TooSlowError:
        raise ProbeError(f"no connection to {name} within {CONNECT_TIMEOUT:.0f} s") from None
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {where.host}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {name}: {_connect_reason(exc)}") from None
    local, peer = socket_addresses(sock)
    stream: trio.abc.Stream = sock
    alpn = version = None
    if context is not None:
        tls = trio.SSLStream(sock, context, server_hostname=where.host, https_compatible=True)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await tls.do_handshake()
        except trio.TooSlowError:
            await sock.aclose()
            raise ProbeError(
                f"TLS handshake with {name} not done within {HANDSHAKE_TIMEOUT:.0f} s"
            ) from None
        except trio.BrokenResourceError as exc:
            await sock.aclose()
            raise ProbeError(f"TLS handshake with {name} failed: {_tls_reason(exc)}") from None
        alpn = tls.selected_alpn_protocol()
        version = tls.version()
        stream = tls
        if alpn == "h2":
            protocol = "h2"
        elif protocol == "h2c":
            protocol = "h2"  # prior knowledge inside TLS
    conn = ConnectionTrace(
        side="client", local=local, peer=peer, protocol=protocol, tls=context is not None
    )
    recorder.trace.connections.append(conn)
    tapped = TappedStream(
        stream, conn, recorder.now, connected_at=recorder.now(), sink=printer.sink(conn)
    )
    return Opened(tapped, conn, alpn, version)


def _connect_reason(exc: BaseException) -> str:
    """The first errno-carrying cause: trio wraps each address's failure in one OSError
    whose cause is a group of them."""
    found = _strerror(exc)
    return found.lower() if found else str(exc)


def _strerror(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if found := _strerror(inner):
                return found
    return _strerror(exc.__cause__ or exc.__context__)


def _tls_reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    if cause is not None:
        return str(cause) or type(cause).__name__
    return str(exc) or "the connection broke during the handshake"
