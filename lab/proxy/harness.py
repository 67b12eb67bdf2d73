"""Start a real reverse proxy (Debian's nginx or HAProxy) for one experiment, and stop it.

::

    async with running_proxy(ProxySpec("nginx", ("proxy_buffering off",)), upstream) as proxy:
        ...  # talk to 127.0.0.1:proxy.port; proxy.config is the file it runs with

:func:`running_proxy` writes the configuration (:mod:`lab.proxy.configs`) into a new
temporary directory, starts the proxy in the foreground in a session of its own, waits
until it accepts connections on its port, and on the way out stops it and removes the
directory, whatever happened inside, including a proxy that never started:

- the binary is looked up on ``PATH`` plus ``/usr/sbin`` and ``/sbin`` (where Debian
  installs both, and which a non-root ``PATH`` lacks); a missing one raises
  :class:`MissingProxy` naming the Debian package that has it;
- the proxy has started when it holds a socket listening on its port (read from
  /proc, so another process on that port cannot pass for it);
- a proxy that exits before listening (a bad directive, say) raises
  :class:`ProxyStartError` carrying the proxy's own message (nginx's ``[emerg]`` line,
  HAProxy's ``[ALERT]`` lines);
- stopping sends SIGTERM (nginx: fast shutdown; HAProxy: hard stop) to the process the
  lab started, waits, and only then kills that process's group, which holds the proxy's
  workers and nothing else.

The port is found free by binding port 0 and letting go of it; another process could take
it in between, so a proxy that reports the address in use is started again on a new port
(at most :data:`START_ATTEMPTS` times).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from lab.proxy.configs import ProxyKind, ProxySpec, haproxy_config, nginx_config

__all__ = [
    "BINARIES",
    "DEBIAN_PACKAGES",
    "START_ATTEMPTS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "MissingProxy",
    "ProxyError",
    "ProxyStartError",
    "RunningProxy",
    "find_binary",
    "proxy_version",
    "running_proxy",
]

# The command of each proxy, and the Debian package that installs it (bookworm: the
# ``nginx`` package holds /usr/sbin/nginx; nginx-light and the like only add modules).
BINARIES: Final[Mapping[ProxyKind, str]] = {"nginx": "nginx", "haproxy": "haproxy"}
DEBIAN_PACKAGES: Final[Mapping[ProxyKind, str]] = {"nginx": "nginx", "haproxy": "haproxy"}
# Where Debian installs them, searched after PATH: a non-root user's PATH has no sbin.
SBIN_DIRS: Final = ("/usr/sbin", "/sbin")
# How long a proxy may take to listen: both start in tens of milliseconds; ten seconds
# covers a loaded CI machine, and a proxy that has not listened by then is reported.
START_TIMEOUT: Final = 10.0
# How often the harness checks, while starting, whether the proxy listens or has exited.
START_POLL: Final = 0.02
# A free port can be taken by another process between the lab finding it and the proxy
# binding it; three tries make that race practically impossible to lose.
START_ATTEMPTS: Final = 3
# How long SIGTERM may take before the process group is killed: both proxies stop in
# milliseconds when nothing is in flight, and close what is in flight at once.
STOP_TIMEOUT: Final = 5.0
# The state of a listening socket in /proc/net/tcp (TCP_LISTEN in the kernel's tcp_states.h).
_TCP_LISTEN: Final = "0A"
# The proxy's own messages kept in an error: its last lines (a config error is one line).
MESSAGE_LINES: Final = 20


class ProxyError(RuntimeError):
    """The proxy could not be run."""


class MissingProxy(ProxyError):
    """The proxy's binary is not installed."""


class ProxyStartError(ProxyError):
    """The proxy exited (or never listened) when started; ``message`` is its own output."""

    def __init__(self, text: str, message: str) -> None:
        super().__init__(f"{text}\n{message}" if message else text)
        self.message = message


@dataclass(frozen=True, slots=True)
class RunningProxy:
    spec: ProxySpec
    port: int
    pid: int
    directory: Path  # the temporary directory: config, logs, pid file
    config: str  # the configuration file's text
    binary: str

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def error_log(self) -> str:
        """nginx's error log so far (HAProxy logs to its stderr, kept as stderr.log)."""
        name = "error.log" if self.spec.kind == "nginx" else "stderr.log"
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""


def find_binary(kind: ProxyKind, search_path: str | None = None) -> str:
    """The path of the proxy's command; :class:`MissingProxy` naming its Debian package.

    ``search_path`` replaces ``PATH`` plus :data:`SBIN_DIRS` (a test gives one without
    the proxy)."""
    name = BINARIES[kind]
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    found = shutil.which(name, path=search_path)
    if found is None:
        package = DEBIAN_PACKAGES[kind]
        raise MissingProxy(
            f"{name} not found (searched {search_path}): install the Debian package "
            f"{package} (apt-get install {package}; `python3 dev.py test` does it as root)"
        )
    return found


def proxy_version(kind: ProxyKind, search_path: str | None = None) -> str:
    """The proxy's version line, e.g. ``nginx/1.22.1`` or ``HAProxy 2.6.12``."""
    binary = find_binary(kind, search_path)
    done = subprocess.run(
        [binary, "-v"], check=False, capture_output=True, text=True, timeout=START_TIMEOUT
    )
    text = (done.stdout + done.stderr).strip()
    if kind == "nginx":
        return text.removeprefix("nginx version: ").split()[0]
    words = text.split()
    return f"HAProxy {words[2]}" if len(words) > 2 else text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(kind: ProxyKind, binary: str, directory: Path) -> list[str]:
    if kind == "nginx":
        conf = directory / "nginx.conf"
        return [binary, "-p", f"{directory}/", "-c", str(conf), "-g", "daemon off;"]
    return [binary, "-f", str(directory / "haproxy.cfg"), "-db"]


def _write_config(spec: ProxySpec, directory: Path, port: int, upstream: tuple[str, int]) -> str:
    if spec.kind == "nginx":
        text = nginx_config(spec, directory, port, upstream)
        (directory / "nginx.conf").write_text(text)
    else:
        text = haproxy_config(spec, port, upstream)
        (directory / "haproxy.cfg").write_text(text)
    return text


def _messages(directory: Path) -> str:
    """What the proxy said: its stderr, then (nginx) its error log, last lines only."""
    lines: list[str] = []
    for name in ("stderr.log", "stdout.log", "error.log"):
        path = directory / name
        if path.exists():
            lines += [line for line in path.read_text(errors="replace").splitlines() if line]
    return "\n".join(lines[-MESSAGE_LINES:])


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on 127.0.0.1:``port``, from the kernel's table."""
    wanted = f"0100007F:{port:04X}"  # /proc/net/tcp: little-endian address, hex port
    found = set()
    with open("/proc/net/tcp") as table:
        next(table)  # the column names
        for line in table:
            fields = line.split()
            if fields[1] == wanted and fields[3] == _TCP_LISTEN:
                found.add(fields[9])
    return found


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on 127.0.0.1:``port``.

    A connection to the port would not tell: it succeeds whoever listens there, so a
    proxy that lost the port to another process would seem to have started. (Linux's
    /proc; the lab's proxies are Debian's.)"""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
    except OSError:  # the process is gone, or went away while being looked at
        return False
    return any(link == f"socket:[{inode}]" for link in links for inode in inodes)


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
    # The proxy's workers are in its process group (its own session): whatever of it
    # is left after SIGTERM, or a worker its master left behind, is killed by that id.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with trio.move_on_after(STOP_TIMEOUT):
        await process.wait()


async def _start(
    kind: ProxyKind, binary: str, directory: Path, port: int
) -> tuple[trio.Process, str]:
    """Start the proxy and wait until it listens; (process, "") or (exited process, its
    messages). The caller stops the process either way."""
    with (
        (directory / "stdout.log").open("wb") as out,
        (directory / "stderr.log").open("wb") as err,
    ):
        process = await trio.lowlevel.open_process(
            _command(kind, binary, directory),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=directory,
            start_new_session=True,
        )
    with trio.move_on_after(START_TIMEOUT):
        while True:
            if process.poll() is not None:
                return process, _messages(directory)
            if _listens(process.pid, port):
                return process, ""
            await trio.sleep(START_POLL)
    return process, f"did not listen on 127.0.0.1:{port} within {START_TIMEOUT} s"


@asynccontextmanager
async def running_proxy(
    spec: ProxySpec,
    upstream: tuple[str, int],
    *,
    search_path: str | None = None,
) -> AsyncIterator[RunningProxy]:
    """Run the proxy of ``spec`` in front of ``upstream`` for the ``async with`` body."""
    binary = find_binary(spec.kind, search_path)
    directory = Path(tempfile.mkdtemp(prefix=f"lab-{spec.kind}-"))
    process: trio.Process | None = None
    try:
        if spec.kind == "nginx" and os.geteuid() == 0:
            # The workers run as nobody (see lab.proxy.configs) and must reach the temp
            # paths inside: traverse, not list.
            os.chmod(directory, 0o711)
        for attempt in range(1, START_ATTEMPTS + 1):
            port = _free_port()
            config = _write_config(spec, directory, port, upstream)
            process, failure = await _start(spec.kind, binary, directory, port)
            if not failure:
                break
            await _stop(process)
            if "in use" not in failure or attempt == START_ATTEMPTS:
                command = " ".join(_command(spec.kind, binary, directory))
                raise ProxyStartError(f"{spec.kind} did not start ({command}):", failure)
        assert process is not None  # the loop ran at least once
        yield RunningProxy(spec, port, process.pid, directory, config, binary)
    finally:
        with trio.CancelScope(shield=True):
            if process is not None:
                await _stop(process)
        shutil.rmtree(directory, ignore_errors=True)
