"""One token stream over HTTP/1.1 and over HTTP/2 (h2c), side by side: chunks per second.

Both protocols are driven by the same C client, h2load from nghttp2 (``--h1`` for
HTTP/1.1), against one ``lab serve`` process, so the client costs the same and little.
Rounds alternate between the protocols and the best of each is kept; on a shared machine
only the ratio means much.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Final

from lab.apps.params import MAX_N
from lab.progress import Reporter, Step, progress, silent

__all__ = ["run", "table"]

TOKENS: Final = MAX_N  # the longest /tokens stream
START_TIMEOUT: Final = 30.0
RUN_TIMEOUT: Final = 120.0
_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s),")
_SUCCEEDED = re.compile(r"requests: 1 total, 1 started, 1 done, 1 succeeded")
_UNIT: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _h2load(url: str, *, h1: bool) -> float:
    tool = shutil.which("h2load")
    if tool is None:
        raise RuntimeError("h2load not found: install the Debian package nghttp2-client")
    args = [tool, *(["--h1"] if h1 else []), "-n", "1", "-c", "1", url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=True)
    if not _SUCCEEDED.search(out.stdout):
        raise RuntimeError(f"h2load's request did not succeed:\n{out.stdout}")
    match = _FINISHED.search(out.stdout)
    if match is None:
        raise RuntimeError(f"no time in h2load's output:\n{out.stdout}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def run(
    rounds: int = 5, n: int = TOKENS, report: Reporter = silent
) -> list[dict[str, float | str]]:
    """Best of ``rounds`` for each protocol; ``report`` gets a step for the start and one
    per measured stream."""
    with report(1 + 2 * rounds, "bench protocols") as step:
        return _run(rounds, n, step)


def _run(rounds: int, n: int, step: Step) -> list[dict[str, float | str]]:
    best = {"HTTP/1.1": float("inf"), "HTTP/2 (h2c)": float("inf")}
    step("start the server, warm up")
    with subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if not match:
                raise RuntimeError(f"lab serve did not start: {line!r}")
            url = f"{match.group(0)}/tokens?n={n}&interval_ms=0"
            _h2load(url.replace(f"n={n}", "n=10"), h1=True)  # warm up
            for r in range(rounds):
                for name, so_far in best.items():
                    step(f"round {r + 1} of {rounds}, {name}")
                    best[name] = min(so_far, _h2load(url, h1=name == "HTTP/1.1"))
        finally:
            proc.terminate()
            proc.wait(START_TIMEOUT)
    rows: list[dict[str, float | str]] = []
    for name, seconds in best.items():
        row: dict[str, float | str] = {"protocol": name, "chunks_per_s": (n + 1) / seconds}
        if name != "HTTP/1.1":
            row["ratio"] = best["HTTP/1.1"] / seconds
        rows.append(row)
    return rows


def table(rows: list[dict[str, float | str]]) -> str:
    lines = [f"{'protocol':<16}{'chunks/s':>12}{'vs HTTP/1.1':>13}"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(f"{row['protocol']!s:<16}{row['chunks_per_s']:>12,.0f}{ratio:>13}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(report=progress)))
