#!/usr/bin/env python3
"""Set up streamlab on a fresh machine and run it: `python3 dev.py tour`, `python3 dev.py
notebooks` or `python3 dev.py test`.

Needs only Python 3.11+ with pip. It makes `.venv/` and installs the project into it
(again only when pyproject.toml changed): for `tour` only what the tour runs, for
`notebooks` the `notebooks` extra too (JupyterLab, the kernel, the plots), for `test` the
`test` extra too (the suite, its peers, the notebooks' kernel, the linters); and for
`test` the Debian packages of the tools the interop tests drive, when it runs as root.
`notebooks` then opens the lessons in JupyterLab on 127.0.0.1 (`python -m lab.lessons`;
arguments after it go there, e.g. `--port 8890`). Extra arguments after `test` go to
pytest, e.g. for the fast tier: `python3 dev.py test -m "not interop and not fuzz and not
attacks"`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".streamlab-installed"
# The command-line tools the interop tests drive, and the Debian package of each.
SYSTEM_TOOLS = {
    "curl": "curl",
    "tshark": "tshark",
    "dumpcap": "wireshark-common",  # captures real traffic for `lab show` on pcapng
    "chromium": "chromium",
    "nghttp": "nghttp2-client",
    "h2load": "nghttp2-client",
    # The reverse proxies `lab proxy` runs (bookworm's nginx package holds the binary;
    # nginx-light only adds a module to it).
    "nginx": "nginx",
    "haproxy": "haproxy",
}


def run(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)  # type: ignore[call-overload]


def ensure_venv(extras: str) -> None:
    """The venv with the project installed, and ``extras`` ("", "[notebooks]" or
    "[test]") with it."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit(f"streamlab needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    # One line per install done for this pyproject.toml; the test install covers the tour.
    done = STAMP.read_text().split("\n") if STAMP.exists() else []
    if f"{digest} {extras}" in done or f"{digest} [test]" in done:
        return
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}{extras}")
    STAMP.write_text(
        "\n".join([*(line for line in done if line.startswith(digest)), f"{digest} {extras}"])
    )


def ensure_system_tools() -> None:
    missing = sorted({pkg for tool, pkg in SYSTEM_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        print(
            f"not root, so not installing {' '.join(missing)}: the tests that need them "
            "will fail naming the package",
            file=sys.stderr,
        )
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-q", env=env)
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def open_notebooks(args: list[str]) -> int:
    """JupyterLab on the lessons, until it stops; Control-C is for it to handle."""
    proc = subprocess.Popen([str(BIN / "python"), "-m", "lab.lessons", *args], cwd=ROOT)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to JupyterLab too: it asks whether to stop (a second
            # Control-C stops it) and shuts its kernels down, so wait for it to decide.
            continue


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("tour", "notebooks", "test"):
        print(__doc__)
        return 2
    ensure_venv({"tour": "", "notebooks": "[notebooks]", "test": "[test]"}[argv[0]])
    if argv[0] == "tour":
        return subprocess.call([str(BIN / "lab"), "tour", *argv[1:]], cwd=ROOT)
    if argv[0] == "notebooks":
        return open_notebooks(argv[1:])
    ensure_system_tools()
    os.chdir(ROOT)
    for check in (
        [BIN / "ruff", "check", "lab", "tests", "notebooks", "dev.py"],
        [BIN / "ruff", "format", "--check", "lab", "tests", "notebooks", "dev.py"],
        [BIN / "mypy"],
    ):
        run(*check)
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *argv[1:]])


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        raise SystemExit(exc.returncode) from None
