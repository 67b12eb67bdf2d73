"""``lab notebooks``: the lessons in ``notebooks/``, opened in JupyterLab on this machine.

JupyterLab runs in this process (so Control-C reaches it and it shuts its kernels down
itself), serves the repository's ``notebooks/`` directory, and listens on 127.0.0.1 only:
nothing outside this machine can reach it, and on this machine its token guards it. The
kernels it starts run on this interpreter, which has the lab installed.

It is an optional part: JupyterLab comes with the ``notebooks`` extra
(``pip install -e '.[notebooks]'``, or ``python3 dev.py notebooks``, which installs it and
then runs this module).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

__all__ = ["DEFAULT_PORT", "HOST", "NOTEBOOK_DIR", "open_notebooks"]

# Where the lessons are: beside the lab package in the repository (an editable install).
NOTEBOOK_DIR: Final = Path(__file__).resolve().parent.parent / "notebooks"
# The only address JupyterLab listens on.
HOST: Final = "127.0.0.1"
# Jupyter's own default; when it is taken, Jupyter tries the next ports
# (ServerApp.port_retries) and the URL printed is the one it got.
DEFAULT_PORT: Final = 8888

INSTALL_HINT: Final = (
    "JupyterLab is not installed for {python}.\n"
    "Install it with the project's notebooks extra, from the repository:\n"
    "    python3 dev.py notebooks                          "
    "(installs it into .venv and opens the lessons)\n"
    "or, into the Python that runs the lab:\n"
    "    {python} -m pip install -e '.[notebooks]'"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab notebooks",
        description=(
            f"Open the lessons ({NOTEBOOK_DIR}) in JupyterLab, listening on {HOST} only. "
            "Stop it with Control-C (twice to skip the question)."
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the port to listen on (default {DEFAULT_PORT}, or the next free one; "
        "0 for any free port)",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser (none is opened anyway when there is no display)",
    )
    return parser


def has_display(environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> bool:
    """Whether a browser opened here would have a screen to show on.

    macOS and Windows always have one; elsewhere (Linux, the BSDs) a graphical browser
    needs an X11 or Wayland display, named by ``DISPLAY`` or ``WAYLAND_DISPLAY``. Without
    one, Python's :mod:`webbrowser` would fall back to a text browser in this terminal.
    """
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def server_argv(port: int, *, open_browser: bool, root: Path = NOTEBOOK_DIR) -> list[str]:
    """The Jupyter Server options ``lab notebooks`` starts JupyterLab with.

    Given on the command line, they override any Jupyter configuration file.
    """
    argv = [
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.open_browser={open_browser}",
    ]
    # Jupyter refuses to run as root unless told; containers often are root, and the
    # server is on loopback only, behind a token.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")
    return argv


def lab_url(port: int, token: str) -> str:
    """The address of JupyterLab on ``port``, with the token that logs the browser in."""
    query = f"?{urlencode({'token': token})}" if token else ""
    return f"http://{HOST}:{port}/lab{query}"


def open_notebooks(argv: list[str]) -> int:
    """Run ``lab notebooks [--port PORT] [--no-browser]``; return the exit status.

    Starts JupyterLab in this process with ``notebooks/`` as its root directory, listening
    on 127.0.0.1 only (``--port``, default 8888 or the next free port; 0 for any free
    port). Before serving it prints to stdout the line ``JupyterLab: <url>``, the URL with
    the login token (``http://127.0.0.1:PORT/lab?token=...``). It opens a browser only
    when there is a display (:func:`has_display`) and ``--no-browser`` was not given.

    Blocks until the server stops (Control-C twice, or SIGTERM), then returns 0. Returns
    1, having printed why to stderr, when JupyterLab is not installed (the message names
    ``python3 dev.py notebooks`` and ``pip install -e '.[notebooks]'``) or the lessons'
    directory is missing; 2 for bad arguments (argparse's message); Jupyter's own status
    when it exits early (it cannot bind the port, for one). ``--help`` prints the usage
    and returns 0.
    """
    try:
        options = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        labapp = importlib.import_module("jupyterlab.labapp")
    except ImportError:
        print(INSTALL_HINT.format(python=sys.executable), file=sys.stderr)
        return 1
    if not NOTEBOOK_DIR.is_dir():
        print(
            f"the lessons are not here ({NOTEBOOK_DIR} is missing): they live in the "
            "repository, so install the lab from a clone with pip install -e",
            file=sys.stderr,
        )
        return 1
    open_browser = has_display() and not options.no_browser
    try:
        return _serve(labapp.LabApp, server_argv(options.port, open_browser=open_browser))
    except SystemExit as exc:  # Jupyter's app.exit(), for one when no port is free
        return exc.code if isinstance(exc.code, int) else 1


def _serve(lab_app: Any, argv: list[str]) -> int:
    # What jupyterlab.labapp.LabApp.launch_instance does (Jupyter Server's ExtensionApp),
    # with the URL printed between initialising, which picks the port, and starting.
    serverapp = lab_app.initialize_server(argv=argv)
    print(f"JupyterLab: {lab_url(serverapp.port, serverapp.identity_provider.token)}")
    print(f"serving {NOTEBOOK_DIR}; stop it with Control-C (twice)", flush=True)
    serverapp.start()  # returns once the server has stopped
    return 0


if __name__ == "__main__":
    raise SystemExit(open_notebooks(sys.argv[1:]))
