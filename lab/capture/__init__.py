"""Traces: the tap that records a trio stream, the trace file, annotation, views, pcapng."""

from lab.capture.annotate import AnnotatedConnection, annotate
from lab.capture.fileformat import load
from lab.capture.pcapng import export_pcapng
from lab.capture.store import write_capture
from lab.capture.tap import Recorder, TappedStream
from lab.capture.trace import ConnectionTrace, Record, Trace

__all__ = [
    "AnnotatedConnection",
    "ConnectionTrace",
    "Record",
    "Recorder",
    "TappedStream",
    "Trace",
    "annotate",
    "export_pcapng",
    "load",
    "write_capture",
]
