"""TLS for the lab server: a throwaway CA and certificate made at start-up, ALPN h2/http1.1.

Browsers speak HTTP/2 only over TLS, choosing it by ALPN (RFC 7301) in the handshake, so
the lab can serve TLS too. The certificate is issued by a CA that exists only for this
run (trustme); a client trusts it through the CA file the server writes. Traces of a TLS
connection are taken *above* TLS: they hold the decrypted application bytes, and say so.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

import trustme

__all__ = ["ALPN_PROTOCOLS", "TLSConfig", "make_tls"]

# What the server offers in ALPN, in its order of preference (RFC 9113 §3.2: "h2").
ALPN_PROTOCOLS: Final = ("h2", "http/1.1")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    context: ssl.SSLContext
    ca_pem: bytes  # the CA certificate a client must trust


def make_tls(hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TLSConfig:
    """A server context with a fresh certificate for ``hosts`` and ALPN h2, http/1.1."""
    ca = trustme.CA()
    cert = ca.issue_cert(*hosts)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # RFC 9113 §9.2: HTTP/2 over TLS needs TLS 1.2 or later.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert.configure_cert(context)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return TLSConfig(context, ca.cert_pem.bytes())
