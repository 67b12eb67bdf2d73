"""``lab fuzz CODEC`` as a user runs it: every codec for a few seconds with no failure, and
codecs broken on purpose caught, written out and replayed. Marked ``fuzz``.

A broken codec is the real one with a fault put in by a small prelude (a monkeypatch)
before the command line runs in the same process; the fuzzing child of the atheris engine
is forked from it, so it fuzzes the broken codec too. ``--replay`` with the same prelude
still fails; without it, the real codec passes the saved input.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.decode import CODECS
from lab.fuzz.libfuzzer import available

pytestmark = pytest.mark.fuzz

# Seconds each codec is fuzzed for, and the bound on one command (start-up, the child's
# instrumentation, shrinking what failed).
SECONDS = 3
CLI_TIMEOUT = 120
ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
SUMMARY = re.compile(
    r"^fuzz (?P<codec>\w+): (?P<execs>[\d,]+) execs in [\d.]+ s \((?P<rate>[\d,]+)/s\), "
    r"corpus (?P<corpus>\d+), (cov|features) (?P<coverage>\d+), (?P<failures>\d+) failures$",
    re.MULTILINE,
)
PROGRESS = re.compile(r"^\[\d+/\d+\] fuzz \w+ [\d,]+ execs, [\d,]+/s, corpus \d+", re.MULTILINE)


def lab(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``lab ARGS`` in a fresh interpreter, after ``prelude`` (Python) has run in it."""
    code = f"import sys\n{prelude}\nfrom lab.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip


def summary(out: subprocess.CompletedProcess[str]) -> dict[str, int]:
    found = SUMMARY.search(out.stdout)
    assert found is not None, out.stdout + out.stderr
    return {k: int(v.replace(",", "")) for k, v in found.groupdict().items() if k != "codec"}


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_runs_clean(codec: str, tmp_path: Path) -> None:
    corpus, findings = tmp_path / "corpus", tmp_path / "findings"
    out = lab(
        "fuzz", codec, "--seconds", str(SECONDS), "--seed", "1",
        "--corpus", str(corpus), "--out", str(findings),
    )  # fmt: skip
    numbers = summary(out)
    assert out.returncode == 0, out.stdout
    assert numbers["failures"] == 0
    assert numbers["execs"] > 0
    assert numbers["coverage"] > 0
    assert not findings.exists()
    assert list(corpus.iterdir()), "no input was kept in the corpus"
    assert PROGRESS.search(out.stderr), out.stderr  # a line a second in a pipe


def test_the_builtin_engine_stops_at_runs() -> None:
    out = lab("fuzz", "sse", "--engine", "builtin", "--runs", "500", "--seed", "3")
    assert out.returncode == 0, out.stdout
    assert summary(out)["execs"] == 500
    assert "built-in mutations" in out.stdout


@pytest.mark.skipif(not available(), reason="atheris is not installed")
def test_the_default_engine_is_coverage_guided() -> None:
    out = lab("fuzz", "hpack", "--seconds", "2", "--seed", "2")
    assert out.returncode == 0, out.stdout
    assert "libFuzzer through atheris, coverage-guided" in out.stdout
    assert re.search(r", cov \d+, ", out.stdout)


# Chunk data one byte short whenever a read holds more than 8 bytes: a decoder that drops
# a byte, which only some splits of some inputs show.
DROPS_A_BYTE = """
from lab.wire.chunked import ChunkedDecoder
_feed = ChunkedDecoder.feed
ChunkedDecoder.feed = lambda self, data: _feed(self, data[:-1] if len(data) > 8 else data)
"""
# Every SSE field value upper-cased after the decoder made its events: the invariants all
# hold and the events are right; only what httpx-sse reads from the lines differs.
FIELDS_UPPER_CASED = """
import dataclasses
from lab.wire.sse import Field, SSEDecoder
_feed = SSEDecoder.feed
def feed(self, data):
    return [dataclasses.replace(s, value=s.value.upper()) if isinstance(s, Field) else s
            for s in _feed(self, data)]
SSEDecoder.feed = feed
"""


@pytest.mark.parametrize(
    ("codec", "prelude", "check"),
    [("chunked", DROPS_A_BYTE, r"split|tiling"), ("sse", FIELDS_UPPER_CASED, r"httpx-sse")],
    ids=["chunked drops a byte", "sse misreads field values"],
)
def test_a_broken_codec_is_caught_written_and_replayed(
    codec: str, prelude: str, check: str, tmp_path: Path
) -> None:
    out = lab(
        "fuzz", codec, "--seconds", str(SECONDS), "--seed", "1", "--out", str(tmp_path),
        prelude=prelude,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert summary(out)["failures"] >= 1
    inputs = sorted(tmp_path.glob(f"{codec}-*.bin"))
    assert inputs
    for path in inputs:
        text = path.with_suffix(".txt").read_text()
        assert f"lab fuzz {codec}: the " in text
        assert f"lab fuzz {codec} --replay {path}" in text
        assert repr(path.read_bytes()) in text
        assert f"replay: lab fuzz {codec} --replay {path}" in out.stdout
    assert any(re.search(check, p.with_suffix(".txt").read_text()) for p in inputs)

    replayed = lab("fuzz", codec, "--replay", str(inputs[0]), prelude=prelude)
    assert replayed.returncode == 1, replayed.stdout
    assert "FAILED" in replayed.stdout
    assert "[0, " in replayed.stdout  # the annotated view of the input
    fixed = lab("fuzz", codec, "--replay", str(inputs[0]))
    assert fixed.returncode == 0, fixed.stdout
    assert "passes" in fixed.stdout


def test_a_corpus_is_read(tmp_path: Path) -> None:
    """An input only a corpus file holds (the fault below fires on nothing else) is run."""
    marker = b"only-in-the-corpus-9f3c"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "planted").write_bytes(b"5\r\n" + marker)
    prelude = f"""
from lab.wire.chunked import ChunkedDecoder
_feed = ChunkedDecoder.feed
def feed(self, data):
    if {marker!r} in data:
        raise RuntimeError("planted")
    return _feed(self, data)
ChunkedDecoder.feed = feed
"""
    args = ["fuzz", "chunked", "--engine", "builtin", "--runs", "50", "--seed", "1"]
    out = lab(*args, "--corpus", str(corpus), "--out", str(tmp_path / "out"), prelude=prelude)
    assert out.returncode == 1, out.stdout
    assert "FAILED crash: RuntimeError: planted" in out.stdout
    alone = lab(*args, "--out", str(tmp_path / "alone"), prelude=prelude)
    assert alone.returncode == 0, alone.stdout
