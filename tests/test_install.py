"""What each README command installs: the tour runs on the project's own dependencies
alone, so `python3 dev.py tour` installs none of the extras (`pyproject.toml`).

The test simulates the tour's install inside this venv (which has every extra): a child
interpreter refuses to import any installed distribution outside the transitive closure
of ``[project].dependencies``, then runs the whole tour.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# Bound on the tour (it runs every scenario on loopback).
TOUR_TIMEOUT = 300
# Installed by venv itself or by the build, never imported by the lab.
_ALWAYS = {"pip", "setuptools", "streamlab"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _core_closure() -> set[str]:
    """Canonical names of the core dependencies and everything they require."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = _canonical(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo.extend(Requirement(r) for r in md.requires(req.name) or [])
    return seen


def _modules_outside(closure: set[str]) -> list[str]:
    """Top-level import names of every installed distribution outside ``closure``."""
    inside = {
        module
        for module, dists in md.packages_distributions().items()
        if any(_canonical(d) in closure | _ALWAYS for d in dists)
    }
    return sorted(
        module
        for module, dists in md.packages_distributions().items()
        if module not in inside
        and not all(_canonical(d) in closure | _ALWAYS for d in dists)
        and module.isidentifier()
    )


_CHILD = """
import importlib.abc, sys
BLOCKED = frozenset({blocked})
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not installed by the tour", name=name)
        return None
sys.meta_path.insert(0, Refuse())
from lab.cli import main
raise SystemExit(main(["tour"]))
"""


def test_the_core_closure_leaves_the_extras_out() -> None:
    closure = _core_closure()
    assert {"h11", "h2", "trio", "rich"} <= closure
    for extra in ("matplotlib", "pytest", "playwright", "mcp", "jupytext", "httpx"):
        assert extra not in closure


def test_the_tour_runs_without_any_extra() -> None:
    blocked = _modules_outside(_core_closure())
    assert {"matplotlib", "pytest", "playwright", "mcp", "httpx"} <= set(blocked)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(blocked=json.dumps(blocked))],
        capture_output=True, text=True, timeout=TOUR_TIMEOUT, cwd=ROOT, check=False,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "summary (all figures read off this run's traces)" in out.stdout
