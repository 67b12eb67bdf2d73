"""Helpers for tests that drive real third-party tools (tshark, curl, ...)."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require_tool"]

# Debian installs some tools outside a minimal PATH (tshark's helpers, sbin tools).
_EXTRA_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")


def require_tool(name: str, package: str) -> str:
    """The path of the command ``name``; fail the test (never skip it) if it is missing.

    An interop test that skips when its peer is missing would pass on a machine that checks
    nothing, so a missing tool is a failure that says how to install it.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {package}")
    return path
