"""lab.lessons: ``lab notebooks`` opens the lessons in JupyterLab on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import pytest

from lab.lessons import (
    HOST,
    NOTEBOOK_DIR,
    has_display,
    lab_url,
    open_notebooks,
    server_argv,
)

# Starting JupyterLab (importing it, loading its extensions) takes a few seconds here;
# a loaded machine may take many more.
START_TIMEOUT: Final = 90.0
# Any one HTTP request to it.
REQUEST_TIMEOUT: Final = 10.0
# SIGTERM to exit: Jupyter stops its extensions and (here, none) kernels.
STOP_TIMEOUT: Final = 30.0

_URL = re.compile(r"^JupyterLab: (http://127\.0\.0\.1:(\d+)/lab\?token=(\w+))$")


def test_missing_jupyterlab_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "jupyterlab", None)
    monkeypatch.setitem(sys.modules, "jupyterlab.labapp", None)
    assert open_notebooks(["--no-browser"]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing started, no URL
    assert "JupyterLab is not installed" in err
    assert "python3 dev.py notebooks" in err
    assert f"{sys.executable} -m pip install -e '.[notebooks]'" in err


def test_bad_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert open_notebooks(["--port", "eighty"]) == 2
    assert "usage: lab notebooks" in capsys.readouterr().err
    assert open_notebooks(["--help"]) == 0
    assert "--no-browser" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", False),  # a server, a container, an ssh session
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"DISPLAY": ""}, "linux", False),
        ({}, "darwin", True),
        ({}, "win32", True),
    ],
)
def test_has_display(environ: dict[str, str], platform: str, expected: bool) -> None:
    assert has_display(environ, platform) is expected


def test_server_options() -> None:
    argv = server_argv(8888, open_browser=False)
    assert "--ServerApp.ip=127.0.0.1" in argv
    assert "--ServerApp.port=8888" in argv
    assert f"--ServerApp.root_dir={NOTEBOOK_DIR}" in argv
    assert "--ServerApp.open_browser=False" in argv
    assert "--ServerApp.open_browser=True" in server_argv(0, open_browser=True)


def test_lab_url() -> None:
    assert lab_url(8888, "abc") == "http://127.0.0.1:8888/lab?token=abc"
    assert lab_url(8888, "") == "http://127.0.0.1:8888/lab"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def _wait_for_url(lines: queue.Queue[str], proc: subprocess.Popen[str]) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(left, 1.0))
        except queue.Empty:
            assert proc.poll() is None, f"lab.lessons exited with {proc.returncode}: {seen}"
            continue
        seen.append(line)
        if match := _URL.match(line):
            return match
    pytest.fail(f"no JupyterLab URL within {START_TIMEOUT} s; stdout: {seen}")


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as reply:
        return reply.status, reply.read()


def _wait_for_http(url: str, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            status, body = _get(url)
        except (urllib.error.URLError, ConnectionError) as exc:
            assert proc.poll() is None, f"lab.lessons exited with {proc.returncode}"
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within {START_TIMEOUT} s: {exc}")
            time.sleep(0.2)
            continue
        assert status == 200
        return json.loads(body)


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port``, from Linux's
    /proc/net/tcp and tcp6 (proc(5): hex address and port; state 0A is LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def jupyter_dirs(tmp_path: Path) -> dict[str, str]:
    """An environment whose Jupyter files (runtime, config, data, settings, workspaces)
    are all in the test's temporary directory, and with no display."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for name in (
        "JUPYTER_RUNTIME_DIR",
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTERLAB_SETTINGS_DIR",
        "JUPYTERLAB_WORKSPACES_DIR",
    ):
        env[name] = str(tmp_path / name.lower())
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("JUPYTER_TOKEN", None)
    return env


@pytest.fixture
def lessons_server(
    jupyter_dirs: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``python -m lab.lessons --port PORT`` run from another directory; killed if the test
    left it running. It fails, not skips, without JupyterLab (the test extra has it)."""
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.lessons", "--port", str(_free_port())],
            cwd=tmp_path,  # it serves notebooks/ whatever the working directory
            env=jupyter_dirs,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        yield proc, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(STOP_TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.interop
@pytest.mark.timeout(START_TIMEOUT * 2 + STOP_TIMEOUT + 30)
def test_jupyterlab_serves_the_notebooks(
    lessons_server: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, stderr = lessons_server
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    url, port, token = _wait_for_url(lines, proc).groups()
    api = f"http://{HOST}:{port}/api"

    status = _wait_for_http(f"{api}/status?token={token}", proc)
    assert "started" in status
    # It listens on the loopback address only (127.0.0.1 is 0100007F in /proc/net/tcp).
    assert _listening_addresses(int(port)) == {"0100007F"}
    # The root of Jupyter's contents API is notebooks/: every lesson is there.
    contents = _wait_for_http(f"{api}/contents?token={token}", proc)
    listed = {entry["name"] for entry in contents["content"]}
    lessons = {p.name for p in NOTEBOOK_DIR.glob("[0-9]*.ipynb")}
    assert lessons, f"no notebooks in {NOTEBOOK_DIR}"
    assert lessons <= listed
    # The printed URL opens JupyterLab; without the token the API refuses.
    status_code, page = _get(url)
    assert status_code == 200
    assert b"JupyterLab" in page
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{api}/contents")
    refused.value.close()
    assert refused.value.code == 403

    proc.terminate()  # SIGTERM: Jupyter shuts down cleanly
    assert proc.wait(STOP_TIMEOUT) == 0
    log = stderr.read_text()
    assert "Traceback" not in log, log
    assert "web browser" not in log  # no display, so no browser was tried
