"""The attack suite: every attack in lab.attacks, against ``lab serve`` in its own process.

For each attack, bounded in count and time: the process lives; the attacker gets the
right status, RST_STREAM or GOAWAY code; the server's peak RSS stays under the attack's
stated bound; its connections, tasks and file descriptors return to their baseline; and
a bystander -- a token stream opened before the attack, and short requests during it --
is served whole. How long the bystander waited is reported by ``lab bench attacks``,
not asserted here.
"""

from __future__ import annotations

import pytest
import trio

from lab.attacks import ATTACK_LIMITS, ATTACKS, Attack
from lab.attacks.bystander import Bystander
from lab.attacks.process import LabProcess

pytestmark = pytest.mark.attacks


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_the_server_survives_and_answers_right(attack: Attack) -> None:
    with LabProcess(list(ATTACK_LIMITS)) as lab:
        baseline = lab.snapshot()
        with Bystander(lab.port) as bystander:
            outcomes = trio.run(attack.run, lab.port)
        assert lab.alive(), "the server process died"
        assert attack.judge(outcomes) == [], sorted(set(outcomes))
        after = lab.settle(baseline)
        assert after.connections == baseline.connections
        assert after.tasks == baseline.tasks
        assert after.fds == baseline.fds
        assert after.buffered_body_bytes == 0
        assert after.peak_rss_kib < attack.rss_bound_mib * 1024, (
            f"peak RSS {after.peak_rss_kib // 1024} MiB"
        )
        report = bystander.report
        assert report.stream_complete, report.stream_error
        assert report.failures == []
        assert report.first_byte_ms, "the bystander's short requests never got through"


def test_lab_bench_attacks_prints_the_verdict_and_the_bystander_ratio() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "lab", "bench", "attacks", "--attack", "lying-length"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    header, row = out.splitlines()[-2:]
    assert header.split()[:3] == ["attack", "answered", "verdict"]
    assert "p50 ratio" in header
    assert row.startswith("lying-length ")
    assert "GOAWAY FRAME_SIZE_ERROR" in row
    assert " ok " in row
