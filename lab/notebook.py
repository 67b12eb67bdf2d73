"""Helpers for the notebooks: a lab server that outlives cells, and clients run from cells.

A Jupyter cell is ordinary synchronous code, and each cell that talks to the network runs
its own short ``trio.run`` (:func:`run`). A server must outlive those cells, so
:func:`start_server` runs it in a background thread with a ``trio.run`` of its own::

    srv = start_server()  # safe to re-run: the same name gives the running server
    exchange = run(fetch, srv.host, srv.port, "GET", "/tokens?n=4")
    show(exchange.trace)
    stop_server()

(IPython's ``%autoawait trio`` is not used: it runs each cell in a new trio run too, so a
server started in one cell would die with it.)

Servers are stopped the way the listener means them to be: ``Server.shutdown`` is called in
the server's own trio thread, and in-flight streams get the server's shutdown grace.
Whatever is still running when the interpreter exits is stopped by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, ParamSpec, TypeVar

import trio
from rich.console import Console
from rich.jupyter import JUPYTER_HTML_FORMAT

from lab.apps import app as lab_app
from lab.capture.trace import Trace
from lab.capture.views import render
from lab.server import Server, serve_tcp

__all__ = [
    "RUN_TIMEOUT",
    "STARTUP_TIMEOUT",
    "STOP_MARGIN",
    "ServerHandle",
    "run",
    "show",
    "start_server",
    "stop_all",
    "stop_server",
]

# How long start_server waits for the listener to be bound. Binding a loopback socket takes
# milliseconds; seconds of slack cover a loaded CI machine without hanging a notebook.
STARTUP_TIMEOUT: Final = 10.0
# stop_server waits the server's own shutdown grace (in-flight streams may finish) plus
# this much for the thread to unwind before it reports the server stuck.
STOP_MARGIN: Final = 5.0
# The longest a cell's client run may take: the demos take well under a second, and the
# client's per-read timeout alone would let a slow trickle run on for minutes.
RUN_TIMEOUT: Final = 60.0

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(eq=False, slots=True)
class ServerHandle:
    """A lab server running in a background thread."""

    name: str
    server: Server
    options: dict[str, Any] = field(repr=False)  # what it was started with
    _thread: threading.Thread = field(repr=False)
    _token: trio.lowlevel.TrioToken = field(repr=False)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` run in the server's own trio thread (to read or change its state)."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` run in the server's own trio thread."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def wait_no_connections(self, timeout: float = RUN_TIMEOUT) -> None:
        """Return once no connection is open and every connection's trace is written;
        TooSlowError after ``timeout`` seconds."""

        async def idle() -> None:
            with trio.fail_after(timeout):
                await self.server.wait_no_connections()

        self.call_async(idle)


@dataclass(eq=False, slots=True)
class _Startup:
    """What the server thread hands back to start_server."""

    ready: threading.Event = field(default_factory=threading.Event)
    server: Server | None = None
    token: trio.lowlevel.TrioToken | None = None
    error: BaseException | None = None


_servers: dict[str, ServerHandle] = {}
_lock = threading.Lock()


def _serve_in_thread(startup: _Startup, options: dict[str, Any]) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            startup.server = await nursery.start(functools.partial(serve_tcp, **options))
            startup.token = trio.lowlevel.current_trio_token()
            startup.ready.set()

    try:
        trio.run(main)
    except BaseException as exc:
        if startup.ready.is_set():
            # A crash after startup: the handle stops being `running`, and the thread's
            # excepthook reports the traceback.
            raise
        startup.error = exc  # start_server raises it in the caller's thread
        startup.ready.set()


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside trio's nursery ExceptionGroups, if there is just one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def start_server(name: str = "default", **serve_kwargs: Any) -> ServerHandle:
    """Start a lab server named ``name`` (127.0.0.1, a free port) or return the running one.

    ``serve_kwargs`` go to :func:`lab.server.serve_tcp` (``app``, ``limits``,
    ``trace_dir``, ...). Calling it again with the same name and arguments returns the
    running server, so re-running a notebook cell is safe; the same name with different
    arguments is a mistake and raises :class:`ValueError`.
    """
    options = {"app": lab_app, "host": "127.0.0.1", "port": 0, **serve_kwargs}
    with _lock:
        handle = _servers.get(name)
        if handle is not None and handle.running:
            if handle.options != options:
                raise ValueError(
                    f"server {name!r} is already running with {handle.options!r}; "
                    f"stop_server({name!r}) first to start it with {options!r}"
                )
            return handle
        startup = _Startup()
        thread = threading.Thread(
            target=_serve_in_thread,
            args=(startup, options),
            name=f"lab-server-{name}",
            # A daemon, so that a forgotten server never keeps the interpreter alive: the
            # atexit hook below still shuts it down cleanly first.
            daemon=True,
        )
        thread.start()
        if not startup.ready.wait(STARTUP_TIMEOUT):
            raise TimeoutError(f"server {name!r} did not start within {STARTUP_TIMEOUT} s")
        if startup.error is not None:
            thread.join(STOP_MARGIN)
            cause = _unwrap(startup.error)
            raise RuntimeError(f"server {name!r} failed to start: {cause}") from cause
        assert startup.server is not None
        assert startup.token is not None
        handle = ServerHandle(name, startup.server, options, thread, startup.token)
        _servers[name] = handle
        return handle


def stop_server(name: str = "default") -> bool:
    """Shut the server ``name`` down and wait for its thread; False if none was running."""
    with _lock:
        handle = _servers.pop(name, None)
    if handle is None:
        return False
    # RunFinishedError: it had already stopped (crashed), so there is nothing to shut down.
    with contextlib.suppress(trio.RunFinishedError):
        trio.from_thread.run_sync(handle.server.shutdown, trio_token=handle._token)
    timeout = handle.server.limits.shutdown_grace + STOP_MARGIN
    handle._thread.join(timeout)
    if handle._thread.is_alive():
        raise TimeoutError(f"server {name!r} did not stop within {timeout} s")
    return True


def stop_all() -> None:
    """Stop every server started here (also run at interpreter exit)."""
    with _lock:
        names = list(_servers)
    for name in names:
        stop_server(name)


atexit.register(stop_all)


def run(async_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a lab client coroutine to completion from an ordinary cell (a fresh trio run).

    ``run(fetch, host, port, "GET", "/", name="index")`` is ``await fetch(...)`` for a cell
    that is not async, bounded by :data:`RUN_TIMEOUT`.
    """

    async def bounded() -> T:
        with trio.fail_after(RUN_TIMEOUT):
            return await async_fn(*args, **kwargs)

    return trio.run(bounded)


def show(
    trace: Trace, view: str = "annotated", *, width: int | None = None, clock: str = "trace"
) -> None:
    """Show ``trace`` in one of :data:`lab.capture.views.VIEWS` in the cell's output, its
    times on one of :data:`lab.capture.views.CLOCKS`.

    Outside Jupyter the view is printed to the terminal. In Jupyter it becomes one output
    holding coloured HTML for the reader and the same view as plain text, without colour
    codes, for whatever reads the saved notebook (a diff, a test, a text-only viewer).
    """
    console = Console(highlight=False, width=width)
    if not console.is_jupyter:
        render(trace, view, console, clock=clock)
        return
    # Only ever needed inside a kernel (IPython is there); its display() has no annotations.
    from IPython.display import display  # noqa: PLC0415

    # Jupyter's default width unless one was given.
    display(_bundle(trace, view, console.width, clock), raw=True)  # type: ignore[no-untyped-call]


def _bundle(trace: Trace, view: str, width: int, clock: str = "trace") -> dict[str, str]:
    """The MIME bundle :func:`show` displays: the view ``width`` columns wide as coloured
    ``text/html`` (what a front end renders) and as ``text/plain`` (the same text)."""
    recorder = Console(
        record=True,
        file=io.StringIO(),
        width=width,
        highlight=False,
        force_terminal=True,
        force_jupyter=False,  # it only records; the bundle is the one output
        color_system="truecolor",
    )
    render(trace, view, recorder, clock=clock)
    # Both exports read the one recording: rich's export_* empty the record buffer unless
    # told clear=False, and a second export of an emptied buffer is an empty <pre>.
    return {
        "text/plain": recorder.export_text(clear=False),
        "text/html": recorder.export_html(
            inline_styles=True, code_format=JUPYTER_HTML_FORMAT, clear=False
        ),
    }
