"""MCP Streamable HTTP at ``/mcp``: revisions 2025-11-25 (sessions) and 2026-07-28
(stateless), side by side on one endpoint.

- :mod:`~lab.apps.mcp.messages`: JSON-RPC messages and the protocol's constants (sans-IO);
- :mod:`~lab.apps.mcp.store`: the bounded event store that makes streams resumable;
- :mod:`~lab.apps.mcp.session`: sessions, their limits and expiry;
- :mod:`~lab.apps.mcp.server`: methods, tools and results per revision;
- :mod:`~lab.apps.mcp.checks`: the Host, Origin and media-type gates every request passes;
- :mod:`~lab.apps.mcp.runstate`: what an endpoint keeps per trio run, and :class:`McpStats`;
- :mod:`~lab.apps.mcp.transport`: the HTTP rules, and :class:`McpEndpoint`, the handler.

``endpoint`` is the handler the lab's router serves; build an :class:`McpEndpoint` of your
own for other limits or allowed hosts and origins.
"""

from lab.apps.mcp.checks import LOCAL_HOSTS
from lab.apps.mcp.messages import LEGACY_VERSIONS, MODERN_VERSIONS, SUPPORTED_VERSIONS
from lab.apps.mcp.runstate import McpStats
from lab.apps.mcp.server import SERVER_INFO, TOOLS
from lab.apps.mcp.session import McpLimits
from lab.apps.mcp.transport import McpEndpoint

__all__ = [
    "LEGACY_VERSIONS",
    "LOCAL_HOSTS",
    "MODERN_VERSIONS",
    "SERVER_INFO",
    "SUPPORTED_VERSIONS",
    "TOOLS",
    "McpEndpoint",
    "McpLimits",
    "McpStats",
    "endpoint",
]

endpoint = McpEndpoint()
