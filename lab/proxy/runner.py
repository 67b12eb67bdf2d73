"""Run proxy configurations: one lab server, one relay, a proxy per probe, one trace each.

::

    runs = trio.run(run_all, configurations(("buffering",)))
    for run in runs:
        print(run.row.configuration, run.row.max_tokens_per_read)
    save_runs(runs, Path("proxy-runs"))

:func:`run_all` starts the lab's server in-process on 127.0.0.1 (``serve_tcp(lab.apps.app,
0)``) and a recording relay (:class:`lab.capture.relay.Relay`) in front of it. For each
probe of each configuration it starts the proxy with the configuration's settings,
pointed at the relay, runs the probe through it with a client tapped into a new
:class:`~lab.capture.tap.Recorder`, and hands the relay the same recorder, so both legs
of the probe land in one trace on one clock. The proxy is stopped after each probe
(:mod:`lab.proxy.harness`), which also ends any upstream connection it kept alive, so a
probe's trace holds its own connections, all of them ended.

The version of each proxy is asked before anything starts, so a missing binary stops the
run at once with :class:`~lab.proxy.harness.MissingProxy`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from lab.apps import app as lab_app
from lab.capture.relay import Relay
from lab.capture.store import write_capture
from lab.capture.tap import Recorder
from lab.capture.trace import Trace
from lab.progress import Reporter, silent
from lab.proxy.configs import ProxyKind
from lab.proxy.experiments import Configuration, Experiment, Probe
from lab.proxy.harness import proxy_version, running_proxy
from lab.proxy.probes import ProbeOutcome, run_probe
from lab.proxy.verdicts import Row, measure
from lab.server import serve_tcp

__all__ = ["SETTLE_TIMEOUT", "Run", "run_all", "run_configurations", "save_runs"]

# After the proxy stopped, how long its upstream connections may take to end at the relay:
# a stopped proxy's sockets close at once, so this is only ever reached if something hangs.
SETTLE_TIMEOUT: Final = 5.0


@dataclass(slots=True)
class Run:
    """One probe through one configuration: its trace, its verdict row, and what the
    proxy ran with."""

    experiment: Experiment
    configuration: Configuration
    probe: Probe
    trace: Trace
    outcome: ProbeOutcome
    row: Row
    config_text: str  # the proxy's configuration file, as written
    proxy_log: str  # nginx's error log / HAProxy's stderr, for the curious


def _describe(config: Configuration, probe: Probe, version: str) -> str:
    settings = "; ".join(config.settings) or "(defaults)"
    client = "h2c" if probe.http2 else "HTTP/1.1"
    return (
        f"{probe.describe()} over {client} through {version} ({config.name}: {settings}). "
        f"Connections tapped at the client (side client) are the client <-> {config.kind} "
        f"leg; those tapped at the recording relay in front of the lab server (side server) "
        f"are the {config.kind} <-> upstream leg. One clock for both."
    )


async def _run_one(
    experiment: Experiment,
    config: Configuration,
    probe: Probe,
    relay: Relay,
    *,
    version: str,
    search_path: str | None,
) -> Run:
    name = f"{config.name}-{probe.label}"
    recorder = Recorder(Trace(name=name, description=_describe(config, probe, version)))
    relay.recorder = recorder
    async with running_proxy(
        config.spec(probe), ("127.0.0.1", relay.port), search_path=search_path
    ) as proxy:
        outcome = await run_probe(probe, proxy.host, proxy.port, recorder, relay)
        config_text, proxy_log = proxy.config, proxy.error_log()
    await relay.wait_idle(SETTLE_TIMEOUT)
    row = Row(
        experiment=experiment.name,
        configuration=config.name,
        proxy=config.kind,
        version=version,
        settings=list(config.settings),
        client_protocol="h2c" if probe.http2 else "http/1.1",
        probe=probe.label,
        kind=probe.kind,
        request=probe.describe(),
        content_type=probe.accept,
        trace=f"{name}.trace",
    )
    measure(row, recorder.trace, outcome)
    return Run(experiment, config, probe, recorder.trace, outcome, row, config_text, proxy_log)


async def run_configurations(
    selected: Sequence[tuple[Experiment, Configuration]],
    *,
    report: Reporter = silent,
    search_path: str | None = None,
) -> list[Run]:
    """Every probe of every selected configuration, in order (see the module docstring)."""
    kinds: list[ProxyKind] = sorted({config.kind for _, config in selected})
    versions = {kind: proxy_version(kind, search_path) for kind in kinds}
    runs: list[Run] = []
    total = sum(len(config.probes) for _, config in selected)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve_tcp, lab_app, 0))
        relay = Relay(("127.0.0.1", server.port), Recorder())
        await nursery.start(relay.serve)
        with report(total, "proxy") as step:
            for experiment, config in selected:
                for probe in config.probes:
                    step(f"{config.name} {probe.label}")
                    run = await _run_one(
                        experiment, config, probe, relay,
                        version=versions[config.kind], search_path=search_path,
                    )  # fmt: skip
                    runs.append(run)
        nursery.cancel_scope.cancel()
    return runs


async def run_all(
    selected: Sequence[tuple[Experiment, Configuration]],
    report: Reporter = silent,
    search_path: str | None = None,
) -> list[Run]:
    """:func:`run_configurations` with positional arguments, for ``trio.run``."""
    return await run_configurations(selected, report=report, search_path=search_path)


def save_runs(runs: Sequence[Run], out: Path) -> list[Path]:
    """Write each run's ``NAME.trace`` and ``NAME.pcapng`` into ``out``; the trace paths."""
    return [write_capture(run.trace, out)[0] for run in runs]
