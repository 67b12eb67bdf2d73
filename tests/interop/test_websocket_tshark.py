"""tshark reads the WebSocket frames of the lab's exported captures as the lab annotates
them: frame by frame, the same FIN bit, opcode, MASK bit, payload length, masking key and
text (RFC 6455 §5.2), and its packet comments carry the lab's notes of the frames.

The captures are the golden ones of the WebSocket scenarios (``captures/ws-*.pcapng``, the
export of ``captures/ws-*.trace``), dissected as HTTP on the server's port, so tshark
follows the 101 into WebSocket itself (RFC 6455 §4.2.2).

Over HTTP/2, tshark 4.0 marks the DATA of an RFC 8441 stream as "tunneled data" and does
not dissect WebSocket inside it. There the comparison is in two steps, each with a peer of
its own: tshark's DATA payloads of the stream, joined, are the bytes the lab places its
WebSocket frames on; and wsproto's frame parser (wsproto 1.3.2, the reference of the
lab's WebSocket fuzzing) reads those bytes into the same frames as the lab.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import pytest
from wsproto.frame_protocol import FrameProtocol

from lab.capture.annotate import AnnotatedConnection, annotate
from lab.capture.fileformat import load
from lab.wire.segment import Nested
from lab.wire.websocket import WebSocketFrame
from tests.tools import require_tool

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"
TOOL_TIMEOUT = 60
H1_SCENARIOS: Final = ("ws-h1-tokens", "ws-stop", "ws-ping", "ws-close")

# tshark 4.0's WebSocket fields (`tshark -G fields`). A packet with several frames lists
# each field's values comma-separated, in frame order; a field a frame lacks (a masking
# key of a server's frame, the text of a control frame) is left out of the list, so those
# two are read per packet as a whole.
_FIELDS: Final = (
    "tcp.srcport",
    "websocket.fin",
    "websocket.opcode",
    "websocket.mask",
    "websocket.payload_length",
)
# (from the client, FIN, opcode, MASK, payload length)
Frame = tuple[bool, bool, int, bool, int]


def _tshark(tshark: str, pcap: Path, port: int, protocol: str, *fields: str) -> list[list[str]]:
    args = [arg for name in fields for arg in ("-e", name)]
    out = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-d", f"tcp.port=={port},{protocol}", "-T", "fields",
         "-E", "occurrence=a", *args],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT, text=True,
    ).stdout  # fmt: skip
    return [line.split("\t") for line in out.splitlines()]


def _flag(value: str) -> bool:
    return value in ("1", "True")


def _tshark_frames(rows: list[list[str]], port: int) -> list[Frame]:
    frames = []
    for src, *columns in rows:
        if not columns[0]:
            continue  # no WebSocket frame in this packet
        values = [column.split(",") for column in columns]
        assert len({len(v) for v in values}) == 1, columns
        for fin, opcode, masked, length in zip(*values, strict=True):
            frames.append((int(src) != port, _flag(fin), int(opcode), _flag(masked), int(length)))
    return frames


def _lab_frames(ac: AnnotatedConnection) -> list[WebSocketFrame]:
    out = []
    for item in ac.items:
        seg = item.segment
        unit = seg.unit if isinstance(seg, Nested) else seg
        if isinstance(unit, WebSocketFrame):
            out.append(unit)
    return out


def _from_client(ac: AnnotatedConnection) -> dict[int, bool]:
    return {
        id(s.unit if isinstance(s, Nested) else s): a.from_client
        for a in ac.items
        for s in (a.segment,)
    }


@pytest.mark.parametrize("name", H1_SCENARIOS)
def test_tshark_dissects_the_same_websocket_frames_as_the_annotation(name: str) -> None:
    tshark = require_tool("tshark", "tshark")
    trace = load(CAPTURES / f"{name}.trace")
    pcap = CAPTURES / f"{name}.pcapng"
    port = trace.connections[0].server[1]
    (ac,) = annotate(trace)
    frames = _lab_frames(ac)
    direction = _from_client(ac)
    lab = [(direction[id(f)], f.fin, f.opcode, f.masked, f.length) for f in frames]
    theirs = _tshark_frames(_tshark(tshark, pcap, port, "http", *_FIELDS), port)
    assert theirs == lab
    # Both directions, a masked frame from the client and a Close each way.
    assert {f[0] for f in lab} == {True, False}
    assert all(f[3] == f[0] for f in lab)
    assert sum(1 for f in lab if f[2] == 0x8) == 2
    # The masking keys and the texts, in order (fields a frame may lack: per packet).
    rows = _tshark(tshark, pcap, port, "http", "websocket.masking_key", "websocket.payload.text")
    keys = [k for row in rows for k in row[0].split(",") if k]
    texts = [t for row in rows for t in row[1].split(",") if t]
    assert keys == [f.mask_key.hex() for f in frames if f.mask_key is not None]
    assert texts == [f.data.decode() for f in frames if f.opcode == 0x1]
    # Wireshark shows the lab's note of each frame as the comment of its packet.
    comments = [c for row in _tshark(tshark, pcap, port, "http", "frame.comment") for c in row]
    for frame in frames:
        assert any(frame.note() in c for c in comments), frame.note()
    print(f"\ntshark {name}: {len(lab)} WebSocket frames, the same as the lab's")


def test_tshark_and_wsproto_read_the_websocket_of_the_h2_capture_as_the_lab_does() -> None:
    tshark = require_tool("tshark", "tshark")
    name = "ws-h2-tokens"
    trace = load(CAPTURES / f"{name}.trace")
    pcap = CAPTURES / f"{name}.pcapng"
    port = trace.connections[0].server[1]
    (ac,) = annotate(trace)
    frames = _lab_frames(ac)
    direction = _from_client(ac)
    rows = _tshark(
        tshark, pcap, port, "http2", "tcp.srcport", "http2.streamid", "http2.type",
        "http2.data.data", "websocket.opcode",
    )  # fmt: skip
    assert not any(row[4] for row in rows), "tshark now dissects WebSocket over HTTP/2"
    streams: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
    for src, sids, types, datas, _ in rows:
        if not types:
            continue
        # One value per frame in sids and types; data only for DATA frames ("<MISSING>"
        # for an empty one), so the DATA frames' values are matched in order.
        data_values = iter(datas.split(",")) if datas else iter(())
        for sid, ftype in zip(sids.split(","), types.split(","), strict=True):
            if ftype == "0":
                value = next(data_values, "")
                if sid == "1" and value not in ("", "<MISSING>"):
                    streams[int(src) != port] += bytes.fromhex(value)
    for from_client in (True, False):
        ours = [f for f in frames if direction[id(f)] == from_client]
        placed = b"".join(
            s.data
            for s in ac.segments(from_client=from_client, nested=True)
            if isinstance(s, Nested) and isinstance(s.unit, WebSocketFrame)
        )
        assert bytes(streams[from_client]) == placed  # tshark's tunneled bytes, all framed
        # wsproto reads the bytes tshark extracted: a client reads the server's frames.
        parser = FrameProtocol(client=not from_client, extensions=[])
        parser.receive_bytes(bytes(streams[from_client]))
        theirs = [
            (int(f.opcode), f.frame_finished, len(f.payload)) for f in parser.received_frames()
        ]
        assert theirs == [(f.opcode, f.fin, f.length) for f in ours]
        assert ours
    print(f"\ntshark + wsproto {name}: {len(frames)} WebSocket frames, the same as the lab's")
