"""Raw trio clients that send requests and return the decoded response and the trace."""

from lab.client.http1 import ClientConnection, Exchange, Response, fetch, open_connection

__all__ = ["ClientConnection", "Exchange", "Response", "fetch", "open_connection"]
