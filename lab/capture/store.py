"""Writing a scenario's capture: the ``.trace`` and its annotated ``.pcapng`` side by side,
and keeping the files already there when they hold the same capture but for run-to-run
noise (:mod:`lab.capture.normalize`), so that regenerating the golden files makes no churn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.capture.annotate import annotate
from lab.capture.fileformat import load
from lab.capture.normalize import normalized_text
from lab.capture.pcapng import export_pcapng
from lab.capture.trace import Trace

__all__ = ["NOISE", "Saved", "save_capture", "unchanged", "write_capture"]

# What two honest runs of one scenario differ by, in words, for messages about kept files.
NOISE = "times, ports, dates, session ids and read boundaries"


@dataclass(frozen=True, slots=True)
class Saved:
    """Where a capture is, and whether this run wrote it (False: the old files were kept)."""

    trace_path: Path
    pcap_path: Path
    written: bool


def write_capture(trace: Trace, out: Path) -> tuple[Path, Path]:
    """Write ``NAME.trace`` and ``NAME.pcapng`` (the annotation as packet comments)."""
    out.mkdir(parents=True, exist_ok=True)
    trace_path = out / f"{trace.name}.trace"
    pcap_path = out / f"{trace.name}.pcapng"
    trace.save(trace_path)
    notes = {ac.index: ac.record_notes() for ac in annotate(trace)}

    def comment(conn_index: int, record_index: int) -> str | None:
        found = notes.get(conn_index, {}).get(record_index)
        return "; ".join(found) if found else None

    export_pcapng(trace, pcap_path, annotations=comment)
    return trace_path, pcap_path


def unchanged(trace: Trace, out: Path) -> bool:
    """Whether ``out`` already holds both files of this capture, the same but for
    :data:`NOISE`."""
    old = out / f"{trace.name}.trace"
    if not old.exists() or not (out / f"{trace.name}.pcapng").exists():
        return False
    try:
        return normalized_text(load(old)) == normalized_text(trace)
    except ValueError:
        return False  # an unreadable old file is replaced


def save_capture(trace: Trace, out: Path, *, force: bool = False) -> Saved:
    """Write the capture unless ``out`` holds it :func:`unchanged` (``force``: always)."""
    if not force and unchanged(trace, out):
        return Saved(out / f"{trace.name}.trace", out / f"{trace.name}.pcapng", written=False)
    return Saved(*write_capture(trace, out), written=True)
