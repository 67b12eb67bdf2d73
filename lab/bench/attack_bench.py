"""``lab bench attacks``: what each attack costs a bystander, and the server's memory.

For each attack in :mod:`lab.attacks`, against a fresh ``lab serve`` process: the
bystander's time to first byte with no attack (the reference, same process, just before),
then during the attack; the ratio of the two medians and of the two 99th percentiles; the
server's peak RSS; whether the attacker got the answer it should. Ratios measured side
by side in one run are what this compares; the absolute figures move with the machine.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Final

import trio

from lab.attacks import ATTACK_LIMITS, ATTACKS, Attack
from lab.attacks.bystander import Bystander, unloaded
from lab.attacks.process import LabProcess
from lab.progress import Reporter, progress, silent

__all__ = ["run", "table"]

# How long the reference bystander runs before each attack.
REFERENCE_SECONDS: Final = 1.0

Row = dict[str, str | float]


def _one(attack: Attack) -> Row:
    with LabProcess(list(ATTACK_LIMITS)) as lab:
        reference = unloaded(lab.port, REFERENCE_SECONDS)
        with Bystander(lab.port) as bystander:
            outcomes = trio.run(attack.run, lab.port)
        snapshot = lab.snapshot()
        alive = lab.alive()
    during = bystander.report
    counts = Counter(outcomes)
    return {
        "attack": attack.name,
        "answered": ", ".join(f"{n}x {o}" for o, n in counts.most_common(3)),
        "verdict": "ok" if alive and not attack.judge(outcomes) else "WRONG",
        "peak RSS MiB": snapshot.peak_rss_kib / 1024,
        "probes": float(len(during.first_byte_ms)),
        "bystander p50 ms": during.median_ms(),
        "p50 ratio": during.median_ms() / reference.median_ms(),
        "bystander p99 ms": during.p99_ms(),
        "p99 ratio": during.p99_ms() / reference.p99_ms(),
        "stream late ms": during.worst_lateness_ms(),
        "late ratio": during.worst_lateness_ms() / max(reference.worst_lateness_ms(), 1.0),
        "stream whole": "yes" if during.stream_complete else "NO",
    }


def run(names: list[str] | None = None, report: Reporter = silent) -> list[Row]:
    """One row per attack (all, or those named); ``report`` gets a step per attack."""
    chosen = [a for a in ATTACKS if not names or a.name in names]
    rows = []
    with report(len(chosen), "bench attacks") as step:
        for attack in chosen:
            step(attack.name)
            rows.append(_one(attack))
    return rows


def table(rows: list[Row]) -> str:
    columns = list(rows[0]) if rows else []
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    """The README's table: each attack, what stops it, what it gets, what it cost."""
    by_name = {a.name: a for a in ATTACKS}
    lines = [
        "| attack | what it sends | stopped by | the attacker gets | peak RSS | "
        "new request p50 / p99 ratio | stream's worst token ms (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        attack = by_name[str(row["attack"])]
        ratio = f"{_cell(row['p50 ratio'])} / {_cell(row['p99 ratio'])}"
        late = f"{_cell(row['stream late ms'])} ({_cell(row['late ratio'])})"
        rss = f"{_cell(row['peak RSS MiB'])} MiB"
        verdict = "" if row["verdict"] == "ok" else " (**answered wrong in this run**)"
        lines.append(
            f"| {attack.name} | {attack.what} | {attack.stopped_by} | {attack.answer}{verdict} "
            f"| {rss} | {ratio} | {late} |"
        )
    return "\n".join(lines)


def _cell(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return "-" if math.isnan(value) else f"{value:,.1f}"


if __name__ == "__main__":
    print(table(run(report=progress)))
