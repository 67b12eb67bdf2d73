"""captures/ holds the golden trace and pcapng of every scenario, and they are current."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lab.capture.fileformat import load
from lab.capture.normalize import normalized_text
from lab.capture.store import write_capture
from lab.scenarios import SCENARIOS, run_scenarios

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
REGENERATE = "python -m lab capture --all --out captures"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("captures")
    for trace in trio.run(run_scenarios, [s.name for s in SCENARIOS]):
        write_capture(trace, out)
    return out


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_golden_trace_matches_a_fresh_run(fresh: Path, name: str) -> None:
    golden = CAPTURES / f"{name}.trace"
    assert golden.exists(), f"{golden} is missing: run `{REGENERATE}`"
    assert normalized_text(load(fresh / f"{name}.trace")) == normalized_text(load(golden)), (
        f"scenario {name} no longer produces its golden bytes; if the change is meant, "
        f"run `{REGENERATE}` and review the diff"
    )


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_golden_pcapng_is_the_export_of_the_golden_trace(tmp_path: Path, name: str) -> None:
    golden = CAPTURES / f"{name}.pcapng"
    assert golden.exists(), f"{golden} is missing: run `{REGENERATE}`"
    _, again = write_capture(load(CAPTURES / f"{name}.trace"), tmp_path)
    assert again.read_bytes() == golden.read_bytes()


def test_no_stray_captures() -> None:
    names = {s.name for s in SCENARIOS}
    for path in CAPTURES.iterdir():
        if path.suffix in (".trace", ".pcapng"):
            assert path.stem in names, f"{path.name} belongs to no scenario"
