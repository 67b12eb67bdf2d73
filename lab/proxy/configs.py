"""The configuration files the lab writes for nginx and HAProxy.

A :class:`ProxySpec` names the proxy and the settings under test: directive lines exactly
as an operator writes them in nginx's ``location`` block (``proxy_buffering off``) or in
HAProxy's ``defaults`` section (``timeout server 1s``). Everything around them is the
least a proxy needs to run unprivileged inside a temporary directory, on 127.0.0.1 only:

nginx (``nginx -p PREFIX -c PREFIX/nginx.conf -g 'daemon off;'``):

- the pid file, the error and access logs and every temp path (client bodies, proxy
  buffers spilled to disk, and the fastcgi/uwsgi/scgi ones nginx creates at start) are
  inside the prefix, so nothing outside the temporary directory is written;
- ``user`` only when the lab runs as root: the workers then drop to ``nobody``
  (nginx's ``user`` directive; a non-root nginx cannot switch users and warns if told to);
- ``worker_processes 1``: one worker, so one process's buffers explain every byte;
- ``listen 127.0.0.1:PORT``, with ``http2`` for HTTP/2 by prior knowledge (nginx 1.22
  takes h2c on a ``listen ... http2`` without ``ssl``; the ``http2`` directive came in
  1.25.1);
- ``location / { proxy_pass http://127.0.0.1:UPSTREAM; SETTINGS }``.

HAProxy (``haproxy -f PREFIX/haproxy.cfg -db``): ``mode http`` with one frontend on
127.0.0.1 (``proto h2`` for h2c) and one backend server; ``timeout connect``, ``client``
and ``server`` get defaults unless the settings set them (HAProxy warns without them).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "HAPROXY_DEFAULT_TIMEOUTS",
    "NGINX_TEMP_PATHS",
    "ProxyKind",
    "ProxySpec",
    "haproxy_config",
    "nginx_config",
    "unprivileged_user",
]

ProxyKind = Literal["nginx", "haproxy"]

# The temp paths nginx creates at start-up (each *_temp_path directive); the compiled-in
# defaults are under /var/lib/nginx, which is not ours to write.
NGINX_TEMP_PATHS: Final = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# HAProxy's timeouts when the settings do not set them: long enough never to cut an
# experiment's stream (the longest runs a few seconds), so that only the timeout under
# test cuts anything. (HAProxy's documentation: "timeout client", "timeout server",
# "timeout connect".)
HAPROXY_DEFAULT_TIMEOUTS: Final = (
    ("connect", "5s"),
    ("client", "30s"),
    ("server", "30s"),
)
# A connection or two per experiment: a handful of worker connections is plenty, and it
# keeps the worker's memory small.
_WORKER_CONNECTIONS: Final = 64


@dataclass(frozen=True, slots=True)
class ProxySpec:
    """Which proxy, with which settings, spoken to how.

    ``settings`` are directive lines without the trailing ``;`` (nginx) as a person
    writes them; ``http2`` makes the listening side HTTP/2 by prior knowledge (h2c).
    """

    kind: ProxyKind
    settings: tuple[str, ...] = ()
    http2: bool = False

    def describe(self) -> str:
        """The settings in one line, as the verdict table shows them."""
        return "; ".join(self.settings) if self.settings else "(defaults)"


def unprivileged_user() -> tuple[str, str]:
    """The user and group nginx's workers drop to when the lab runs as root: ``nobody``
    and its primary group (``nogroup`` on Debian)."""
    entry = pwd.getpwnam("nobody")
    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def _directive(line: str) -> str:
    line = line.strip()
    return line if line.endswith(("}", ";")) else f"{line};"


def nginx_config(
    spec: ProxySpec,
    prefix: Path,
    port: int,
    upstream: tuple[str, int],
    *,
    as_root: bool | None = None,
) -> str:
    """nginx.conf for ``spec``: listen on 127.0.0.1:``port``, proxy to ``upstream``."""
    root = os.geteuid() == 0 if as_root is None else as_root
    lines = [f"# written by streamlab (lab.proxy) for: {spec.describe()}"]
    if root:
        user, group = unprivileged_user()
        lines.append(f"user {user} {group};")
    lines += [
        "worker_processes 1;",
        f"pid {prefix / 'nginx.pid'};",
        f"error_log {prefix / 'error.log'} info;",
        f"events {{ worker_connections {_WORKER_CONNECTIONS}; }}",
        "http {",
        f"    access_log {prefix / 'access.log'};",
        *(f"    {name}_temp_path {prefix / name};" for name in NGINX_TEMP_PATHS),
        "    server {",
        f"        listen 127.0.0.1:{port}{' http2' if spec.http2 else ''};",
        "        location / {",
        f"            proxy_pass http://{upstream[0]}:{upstream[1]};",
        *(f"            {_directive(line)}" for line in spec.settings),
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _sets(settings: Sequence[str], timeout: str) -> bool:
    return any(line.split()[:2] == ["timeout", timeout] for line in settings)


def haproxy_config(spec: ProxySpec, port: int, upstream: tuple[str, int]) -> str:
    """haproxy.cfg for ``spec``: a frontend on 127.0.0.1:``port``, one backend server."""
    defaults = [
        f"timeout {name} {value}"
        for name, value in HAPROXY_DEFAULT_TIMEOUTS
        if not _sets(spec.settings, name)
    ]
    lines = [
        f"# written by streamlab (lab.proxy) for: {spec.describe()}",
        "global",
        "    log stderr format raw local0 info",
        "defaults",
        "    mode http",
        "    log global",
        *(f"    {line}" for line in [*defaults, *spec.settings]),
        "frontend lab",
        f"    bind 127.0.0.1:{port}{' proto h2' if spec.http2 else ''}",
        "    default_backend upstream",
        "backend upstream",
        f"    server lab {upstream[0]}:{upstream[1]}",
    ]
    return "\n".join(lines) + "\n"
