"""Sans-IO codecs that turn bytes into annotated segments and back. No I/O imports here."""

from lab.wire.errors import ProtocolError
from lab.wire.segment import Segment

__all__ = ["ProtocolError", "Segment"]
