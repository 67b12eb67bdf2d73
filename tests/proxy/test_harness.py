"""Starting and stopping the real proxies: a missing binary names its Debian package, a
bad configuration is reported in the proxy's own words, and nothing is left behind (no
process, no temporary directory) however the run ends."""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import trio

from lab.apps import app
from lab.client.http1 import fetch
from lab.progress import silent
from lab.proxy import harness
from lab.proxy.configs import ProxySpec, haproxy_config, nginx_config
from lab.proxy.experiments import EXPERIMENTS, configurations
from lab.proxy.harness import MissingProxy, ProxyStartError, find_binary, running_proxy
from lab.proxy.runner import run_all
from lab.server import serve_tcp
from tests.tools import require_tool

WAIT = 30  # seconds: a bound on one proxy's whole life here; each takes well under one


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The harness's temporary directories go here, so the test can see them go."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(("kind", "package"), [("nginx", "nginx"), ("haproxy", "haproxy")])
def test_a_missing_binary_names_the_debian_package(tmp_path: Path, kind: str, package: str) -> None:
    with pytest.raises(MissingProxy, match=rf"install the Debian package {package} "):
        find_binary(kind, search_path=str(tmp_path))  # type: ignore[arg-type]


def test_a_run_without_the_proxy_stops_before_starting_anything(own_tmp: Path) -> None:
    selected = configurations(("nginx-default",))
    with pytest.raises(MissingProxy, match=r"apt-get install nginx"):
        trio.run(run_all, selected, silent, str(own_tmp))
    assert list(own_tmp.iterdir()) == []


async def _with_server(body: object) -> None:
    """``body(port)`` with a lab server on ``port``; what it raises comes out as itself."""
    try:
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(functools.partial(serve_tcp, app, 0))
                await body(server.port)  # type: ignore[operator]
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # trio's nursery wraps even a lone error
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _gone(pid: int) -> bool:
    """No process is left in the proxy's process group (its own session)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_the_proxy_starts_forwards_and_stops_leaving_nothing(own_tmp: Path, kind: str) -> None:
    require_tool(kind, kind)
    seen: dict[str, object] = {}

    async def body(upstream: int) -> None:
        async with running_proxy(ProxySpec(kind), ("127.0.0.1", upstream)) as proxy:  # type: ignore[arg-type]
            seen["proxy"] = proxy
            assert proxy.directory.parent == own_tmp
            assert proxy.directory.is_dir()
            assert f"127.0.0.1:{proxy.port}" in proxy.config
            exchange = await fetch(proxy.host, proxy.port, "GET", "/tokens?n=3&interval_ms=0")
            assert exchange.response.status == 200
            assert exchange.response.complete
            assert exchange.response.body.endswith(b"\n[DONE]\n")

    trio.run(_with_server, body)
    proxy = seen["proxy"]
    assert not proxy.directory.exists()  # type: ignore[attr-defined]
    assert _gone(proxy.pid)  # type: ignore[attr-defined]
    assert list(own_tmp.iterdir()) == []


@pytest.mark.interop
def test_an_error_inside_still_stops_the_proxy_and_removes_its_directory(own_tmp: Path) -> None:
    require_tool("nginx", "nginx")
    seen: dict[str, int] = {}

    async def body(upstream: int) -> None:
        async with running_proxy(ProxySpec("nginx"), ("127.0.0.1", upstream)) as proxy:
            seen["pid"] = proxy.pid
            raise RuntimeError("the experiment failed")

    with pytest.raises(RuntimeError, match="the experiment failed"):
        trio.run(_with_server, body)
    assert _gone(seen["pid"])
    assert list(own_tmp.iterdir()) == []


@pytest.mark.interop
@pytest.mark.parametrize(
    ("kind", "setting", "message"),
    [
        ("nginx", "proxy_bufering off", r'\[emerg\] .*unknown directive "proxy_bufering"'),
        ("haproxy", "timeout sever 1s", r"\[ALERT\].*timeout"),
    ],
)
def test_a_bad_configuration_is_reported_in_the_proxys_own_words(
    own_tmp: Path, kind: str, setting: str, message: str
) -> None:
    require_tool(kind, kind)

    async def body(upstream: int) -> None:
        async with running_proxy(ProxySpec(kind, (setting,)), ("127.0.0.1", upstream)):  # type: ignore[arg-type]
            raise AssertionError("the proxy should not have started")

    with pytest.raises(ProxyStartError) as caught:
        trio.run(_with_server, body)
    error = caught.value
    assert "did not start" in str(error)
    assert re.search(message, error.message), error.message
    assert list(own_tmp.iterdir()) == []


@pytest.mark.interop
def test_a_port_taken_before_the_proxy_binds_it_is_tried_again(
    own_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("nginx", "nginx")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real = harness._free_port
    monkeypatch.setattr(harness, "_free_port", lambda: ports.pop() if ports else real())

    async def body(upstream: int) -> None:
        async with running_proxy(ProxySpec("nginx"), ("127.0.0.1", upstream)) as proxy:
            assert proxy.port != taken.getsockname()[1]
            exchange = await fetch(proxy.host, proxy.port, "GET", "/tokens?n=1&interval_ms=0")
            assert exchange.response.status == 200

    try:
        trio.run(_with_server, body)
    finally:
        taken.close()
    assert not ports  # the taken port was offered first
    assert list(own_tmp.iterdir()) == []


@pytest.mark.interop
def test_every_configuration_of_the_experiments_is_valid_for_the_installed_proxies(
    tmp_path: Path,
) -> None:
    nginx, haproxy = require_tool("nginx", "nginx"), require_tool("haproxy", "haproxy")
    for experiment in EXPERIMENTS:
        for config in experiment.configurations:
            for probe in config.probes:
                spec = config.spec(probe)
                if spec.kind == "nginx":
                    conf = tmp_path / "nginx.conf"
                    conf.write_text(nginx_config(spec, tmp_path, 1, ("127.0.0.1", 2)))
                    command = [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf)]
                else:
                    conf = tmp_path / "haproxy.cfg"
                    conf.write_text(haproxy_config(spec, 1, ("127.0.0.1", 2)))
                    command = [haproxy, "-c", "-f", str(conf)]
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=WAIT, check=False
                )
                assert done.returncode == 0, f"{config.name}/{probe.label}: {done.stderr}"
