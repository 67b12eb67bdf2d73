"""HTTP/2 frames in, before h2 sees them: the client preface, frame splitting, and the
lab's own rules for each frame (RFC 9113 §3.4, §4, §6).

h2 parses frames and runs the state machine, but it has no rate limits and it buffers a
whole frame before looking at its length. So a read is split into whole frames here
(only the 9-byte headers are parsed, §4.1), and each frame is checked before it is fed
to h2, one at a time:

- a header announcing more than the advertised SETTINGS_MAX_FRAME_SIZE is refused with
  GOAWAY(FRAME_SIZE_ERROR) as soon as its 9 bytes are in (§4.2; the frames before it in
  the same read are still processed);
- a **control-frame budget** against floods of frames that cost the server work without
  giving the client data: PING, SETTINGS, RST_STREAM (rapid reset, CVE-2023-44487),
  WINDOW_UPDATE (beyond the two per DATA frame sent that acknowledge it), PRIORITY,
  empty DATA, unknown types, DATA or HEADERS on a stream that is over (h2 answers each
  with RST_STREAM), streams refused over the limit and the server's own resets
  (CVE-2019-9512, -9514, -9515, -9518). Each frame spends from the connection's budget
  and from its client address's, which every connection from that address shares
  (lab.server.budget), so that a flood spread over many connections is stopped too.
  Past either, GOAWAY(ENHANCE_YOUR_CALM); nothing after the frame that exceeds it is
  processed;
- error codes h2 gets wrong: a SETTINGS ACK with a payload is FRAME_SIZE_ERROR (§6.5; h2
  says PROTOCOL_ERROR), a GOAWAY on a stream PROTOCOL_ERROR and a short one
  FRAME_SIZE_ERROR (§6.8).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import h2.errors

from lab.server.budget import RateBudget
from lab.server.connection import ConnectionState
from lab.server.limits import Limits

__all__ = [
    "PREFACE",
    "FrameRules",
    "FrameSplitter",
    "H2ConnectionError",
    "RawFrame",
    "header_list_size",
]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ErrorCodes = h2.errors.ErrorCodes
# Frame types (RFC 9113 §6) and the flags the lab looks at.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION: Final = 9
FLAG_END_STREAM: Final = 0x1
FLAG_ACK: Final = 0x1
FLAG_END_HEADERS: Final = 0x4
# Frame types that cost the server work without carrying request data; each one spends
# from the control-frame budget. HEADERS and CONTINUATION are bounded by the stream limit
# and the header-list size instead; DATA only when empty (checked per frame).
_CONTROL_TYPES: Final = frozenset({PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE})
_KNOWN_TYPES: Final = frozenset(range(10))
# A client may answer each DATA frame with two WINDOW_UPDATEs, its stream's and the
# connection's (RFC 9113 §6.9); those are not counted as control frames.
_UPDATES_PER_DATA_FRAME: Final = 2
_TYPE_NAMES: Final = {
    DATA: "empty DATA", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM", SETTINGS: "SETTINGS",
    PING: "PING", WINDOW_UPDATE: "WINDOW_UPDATE",
}  # fmt: skip


class H2ConnectionError(Exception):
    """The peer broke the protocol: GOAWAY with ``code``, then close (RFC 9113 §5.4.1)."""

    def __init__(self, code: ErrorCodes, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class RawFrame(NamedTuple):
    """One whole frame as it came: its header fields and its bytes (header included)."""

    kind: int
    flags: int
    stream_id: int
    length: int
    raw: bytes


def header_list_size(fields: list[tuple[bytes, bytes]]) -> int:
    # RFC 9113 §6.5.2: each field counts its name and value octets plus 32.
    return sum(len(name) + len(value) + 32 for name, value in fields)


class FrameSplitter:
    """Sans-IO: bytes in, whole frames out; checks the client preface and frame lengths.

    Only the 9-byte frame header is parsed (RFC 9113 §4.1); the frame itself is handed to
    h2 unparsed. At most one frame's bytes are kept.
    """

    def __init__(self, max_frame_size: int, preface_done: bool) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._preface_done = preface_done
        # A frame header announcing too large a frame: the connection error to raise
        # once the frames before it (returned by the same feed) have been processed.
        self.failed: H2ConnectionError | None = None

    def feed(self, data: bytes) -> list[RawFrame]:
        """Every frame ``data`` completes, up to a frame header that announces too large a
        frame (then ``failed`` is set and nothing more is split)."""
        if self.failed is not None:
            return []
        self._buffer += data
        buf = self._buffer
        if not self._preface_done:
            seen = bytes(buf[: len(PREFACE)])
            if not PREFACE.startswith(seen):
                raise H2ConnectionError(
                    ErrorCodes.PROTOCOL_ERROR, f"invalid client preface {seen!r} (RFC 9113 §3.4)"
                )
            if len(seen) < len(PREFACE):
                return []
            del buf[: len(PREFACE)]
            self._preface_done = True
        frames: list[RawFrame] = []
        start = 0
        while len(buf) - start >= 9:
            length = int.from_bytes(buf[start : start + 3], "big")
            if length > self.max_frame_size:
                self.failed = H2ConnectionError(
                    ErrorCodes.FRAME_SIZE_ERROR,
                    f"frame of {length} bytes; SETTINGS_MAX_FRAME_SIZE is {self.max_frame_size}",
                )
                self._buffer = bytearray()
                return frames
            end = start + 9 + length
            if len(buf) < end:
                break
            kind, flags = buf[start + 3], buf[start + 4]
            stream_id = int.from_bytes(buf[start + 5 : start + 9], "big") & 0x7FFF_FFFF
            frames.append(RawFrame(kind, flags, stream_id, length, bytes(buf[start:end])))
            start = end
        if start:
            del buf[:start]
        return frames

    @property
    def incomplete(self) -> bool:
        """Part of the preface or of a frame is in, the rest not yet."""
        return not self._preface_done or bool(self._buffer)


class FrameRules:
    """The lab's own rules for each frame of one connection, before h2 sees it."""

    def __init__(self, limits: Limits, state: ConnectionState) -> None:
        self.state = state
        self.budget = RateBudget(limits.h2_control_frames_per_second)
        # WINDOW_UPDATEs the client has earned by receiving DATA, which do not spend from
        # the budget: a client that acknowledges every DATA frame of a fast download
        # sends thousands a second. Banked up to two seconds' worth of the budget.
        self._update_credit = 0
        self._update_credit_max = 2 * limits.h2_control_frames_per_second
        # A header block runs from HEADERS to the frame with END_HEADERS (§4.3).
        self.header_block_open = False

    def sent_data_frame(self) -> None:
        """The server sent a DATA frame: the client may acknowledge it for free."""
        self._update_credit = min(
            self._update_credit + _UPDATES_PER_DATA_FRAME, self._update_credit_max
        )

    def check(self, frame: RawFrame, on_closed_stream: bool) -> None:
        """Spend from the budgets for ``frame`` and check what h2 does not; raises
        :class:`H2ConnectionError`. ``on_closed_stream``: DATA or HEADERS for a stream
        that is over."""
        kind, flags, stream_id, length, _ = frame
        if kind in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self.header_block_open = not flags & FLAG_END_HEADERS
        if kind == WINDOW_UPDATE and self._update_credit:
            self._update_credit -= 1  # answers DATA the server sent: not a flood
        elif (
            kind in _CONTROL_TYPES
            or kind not in _KNOWN_TYPES
            or (kind == DATA and length == 0 and not flags & FLAG_END_STREAM)
        ):
            self.spend(_TYPE_NAMES.get(kind, f"type-{kind}"))
        elif kind in (DATA, HEADERS) and on_closed_stream:
            # A frame on a stream that is over: no request data, and h2 answers each one
            # on a reset stream with RST_STREAM(STREAM_CLOSED) (CVE-2019-9514).
            self.spend(f"{'DATA' if kind == DATA else 'HEADERS'} on a closed stream")
        if kind == SETTINGS and flags & FLAG_ACK and length:
            raise H2ConnectionError(
                ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload (RFC 9113 §6.5)"
            )
        if kind == GOAWAY:
            if stream_id:
                raise H2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "GOAWAY on a stream (§6.8)")
            if length < 8:
                raise H2ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")

    def spend(self, what: str) -> None:
        error = self.overspent(what)
        if error is not None:
            raise error

    def overspent(self, what: str) -> H2ConnectionError | None:
        """Spend one control frame from this connection's budget and from its client
        address's (shared by every connection from there); the error if either is over."""
        own = self.budget.spend()
        shared = self.state.addresses.spend(self.state.peer_host)
        if not own:
            return H2ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"too many {what} frames: over {self.budget.per_second} control frames a second",
            )
        if not shared:
            return H2ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"too many {what} frames from {self.state.peer_host}: over "
                f"{self.state.addresses.per_second} control frames a second from one address",
            )
        return None
