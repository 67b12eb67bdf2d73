"""`lab proxy` as a user runs it, the parts that need no proxy: the list, and the errors."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from lab.proxy.command import default_out
from lab.proxy.experiments import EXPERIMENTS

# Bound on one CLI run that starts no proxy: the interpreter and the imports.
CLI_TIMEOUT = 60


def lab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=cwd, check=False,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip


def test_list_names_every_experiment_and_configuration_with_its_probes() -> None:
    out = lab("proxy", "--list")
    assert out.returncode == 0, out.stderr
    for experiment in EXPERIMENTS:
        assert re.search(rf"^{re.escape(experiment.name)}: \S", out.stdout, re.M)
        for config in experiment.configurations:
            probes = ", ".join(p.label for p in config.probes)
            assert re.search(
                rf"^  {re.escape(config.name)} .*\[{re.escape(probes)}\]$", out.stdout, re.M
            )


def test_an_unknown_experiment_is_refused_naming_the_list() -> None:
    out = lab("proxy", "--experiment", "no-such-thing")
    assert out.returncode == 2
    assert "no proxy experiment 'no-such-thing'; `lab proxy --list` lists them" in out.stderr
    assert out.stdout == ""


def test_an_experiment_without_configurations_for_the_chosen_proxy_is_refused() -> None:
    out = lab("proxy", "--proxy", "haproxy", "--experiment", "buffering")
    assert out.returncode == 2
    assert "no haproxy configuration in buffering" in out.stderr


def test_the_default_output_directory_is_named_by_the_local_time() -> None:
    when = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))
    assert default_out(when) == Path("proxy-runs-20260102-030405")
