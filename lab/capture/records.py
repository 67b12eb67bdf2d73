"""The records of one connection: the kinds of record, :class:`Record`, and
:class:`ConnectionTrace`.

This is the bottom of the trace model: :mod:`lab.capture.trace` builds :class:`Trace` on
it (and re-exports every name here), :mod:`lab.capture.filewriter` writes it as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "CLOSE",
    "CONNECT",
    "EOF",
    "RECORD_KINDS",
    "RECV",
    "RESET",
    "SEND",
    "SHUTDOWN",
    "ConnectionTrace",
    "Record",
    "Side",
]

CONNECT: Final = "connect"  # the TCP connection was established
SEND: Final = "send"  # one send_all() of ``data`` by the tapped side
RECV: Final = "recv"  # one receive_some() that returned ``data``
EOF: Final = "eof"  # receive_some() returned b"": the peer closed its sending side
CLOSE: Final = "close"  # the tapped side closed the connection
RESET: Final = "reset"  # the connection broke (reset, broken pipe) under the tapped side
SHUTDOWN: Final = "shutdown"  # the tapped side sent EOF (send_eof(): a FIN, still receiving)
RECORD_KINDS: Final = (CONNECT, SEND, RECV, EOF, CLOSE, RESET, SHUTDOWN)

Side = Literal["client", "server"]


@dataclass(frozen=True, slots=True)
class Record:
    t: float  # seconds since the trace's first connect
    kind: str  # one of RECORD_KINDS
    data: bytes = b""  # only for SEND and RECV


@dataclass(slots=True)
class ConnectionTrace:
    """One TCP connection seen from one side (``side`` is whose socket was tapped)."""

    side: Side
    local: tuple[str, int]
    peer: tuple[str, int]
    protocol: str = "http/1.1"  # what the listener chose: "http/1.1", "h2c", "h2" (TLS) ...
    records: list[Record] = field(default_factory=list)
    # The tap sat above TLS: the records are the decrypted application bytes, not what
    # crossed the wire (which was TLS records), and a pcapng export of them is a
    # reconstruction of the plaintext conversation.
    tls: bool = False

    @property
    def client(self) -> tuple[str, int]:
        return self.local if self.side == "client" else self.peer

    @property
    def server(self) -> tuple[str, int]:
        return self.peer if self.side == "client" else self.local

    def sent(self) -> bytes:
        return b"".join(r.data for r in self.records if r.kind == SEND)

    def received(self) -> bytes:
        return b"".join(r.data for r in self.records if r.kind == RECV)

    def client_to_server(self) -> bytes:
        """Every byte the client sent, in order (whichever side the tap was on)."""
        return self.sent() if self.side == "client" else self.received()

    def server_to_client(self) -> bytes:
        return self.received() if self.side == "client" else self.sent()

    def is_from_client(self, record: Record) -> bool:
        """Whether a SEND/RECV record carried client-to-server bytes."""
        return (record.kind == SEND) == (self.side == "client")
