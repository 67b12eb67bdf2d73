"""A lab server in a background thread, for tests whose peers block: browsers,
subprocesses, SDK clients. Built on :func:`lab.notebook.start_server`, so tests and
notebooks share one way of running a server beside synchronous code."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lab.notebook import ServerHandle, start_server, stop_server

__all__ = ["server_in_thread"]

_names = itertools.count()


@contextmanager
def server_in_thread(**serve_kwargs: Any) -> Iterator[ServerHandle]:
    """A lab server on 127.0.0.1, a free port (``serve_kwargs`` go to ``serve_tcp``: app,
    limits, trace_dir, tls ...), stopped and joined when the block ends."""
    name = f"test-{next(_names)}"
    handle = start_server(name, **serve_kwargs)
    try:
        yield handle
    finally:
        assert stop_server(name), "the lab server thread was already gone"
        assert not handle.running
