"""Hand-built trio servers: HTTP/1.1 on h11 (HTTP/2 on h2 joins on the same listener)."""

from lab.server.limits import Limits
from lab.server.listener import ConnectionState, Server, serve_tcp

__all__ = ["ConnectionState", "Limits", "Server", "serve_tcp"]
