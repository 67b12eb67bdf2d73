"""Writing a scenario's capture: the ``.trace`` and its annotated ``.pcapng`` side by side."""

from __future__ import annotations

from pathlib import Path

from lab.capture.annotate import annotate
from lab.capture.pcapng import export_pcapng
from lab.capture.trace import Trace

__all__ = ["write_capture"]


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
