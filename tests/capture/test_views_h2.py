"""HTTP/2 in the views: frames as hex, split into their fields, on the golden traces of
the h2 scenarios (real exchanges between the lab's client and server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.capture.annotate import AnnotatedConnection, annotate
from lab.capture.fileformat import load
from lab.capture.trace import Trace
from lab.capture.views import (
    MAX_SHOWN_HEX_BYTES,
    escape_bytes,
    hex_bytes,
    render_annotated,
    render_hex,
    render_html,
)
from lab.scenarios import SCENARIOS
from lab.wire.h2frames import (
    DataFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from tests.capture.test_views import color_at, kind_color, same_color, shown

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"
H2_SCENARIOS = [s.name for s in SCENARIOS if s.name.startswith("h2-")]


def golden(name: str) -> Trace:
    return load(CAPTURES / f"{name}.trace")


def frames(ac: AnnotatedConnection, from_client: bool) -> list[Frame]:
    return [s for s in ac.segments(from_client=from_client) if isinstance(s, Frame)]


def row(plain: str, start: int, end: int) -> str:
    """The annotated view's row for byte range [start, end) (one direction's rows only
    are searched by the callers, through the offsets they pass)."""
    return next(line for line in plain.splitlines() if f" [{start}, {end}) " in line)


def test_h2_scenarios_exist() -> None:
    assert {"h2-settings-ping", "h2-flow-control", "h2-goaway", "h2-reset"} <= set(H2_SCENARIOS)


def test_settings_frame_is_hex_with_its_header_fields_and_each_setting() -> None:
    trace = golden("h2-settings-ping")
    plain = shown(render_annotated, trace, width=400).plain
    (ac,) = annotate(trace)
    # The client's SETTINGS, the first frame after the preface, carries settings.
    frame = frames(ac, True)[0]
    assert isinstance(frame, SettingsFrame)
    assert frame.settings
    wire = ac.conn.client_to_server()[frame.start : frame.end]
    s = frame.start
    # The frame's own row: its first bytes in hex, and how many it leaves to the fields.
    assert f"{hex_bytes(wire[:MAX_SHOWN_HEX_BYTES])} … (+{len(wire) - MAX_SHOWN_HEX_BYTES}" in row(
        plain, s, frame.end
    )
    length = row(plain, s, s + 3)
    assert f"↳ {hex_bytes(wire[0:3])} " in length
    assert f"Length {frame.length}: " in length
    assert int.from_bytes(wire[0:3]) == frame.length == len(wire) - 9
    kind = row(plain, s + 3, s + 4)
    assert "↳ 04 " in kind
    assert "Type SETTINGS (0x04)" in kind
    assert "↳ 00 " in row(plain, s + 4, s + 5)
    assert "Flags 0x00: ACK clear" in row(plain, s + 4, s + 5)
    stream = row(plain, s + 5, s + 9)
    assert "↳ 00 00 00 00 " in stream
    assert "Stream Identifier 0: " in stream
    at = s + 9
    for setting in frame.settings:
        line = row(plain, at, at + 6)
        assert f"↳ {hex_bytes(wire[at - s : at - s + 6])} " in line
        assert f"setting {setting.name} (0x{setting.id:x}) = {setting.value}: " in line
        at += 6
    assert at == frame.end


@pytest.mark.parametrize("name", H2_SCENARIOS)
def test_no_binary_frame_is_shown_as_escaped_bytes(name: str) -> None:
    trace = golden(name)
    plain = shown(render_annotated, trace, width=400).plain
    assert "\\x" not in plain
    # Every frame's row starts with its 9-octet header in hex.
    for ac in annotate(trace):
        for d in (True, False):
            stream = ac.conn.client_to_server() if d else ac.conn.server_to_client()
            for frame in frames(ac, d):
                assert hex_bytes(stream[frame.start : frame.start + 9]) in row(
                    plain, frame.start, frame.end
                )


def test_data_is_text_under_a_hex_frame() -> None:
    trace = golden("h2-token-stream")
    plain = shown(render_annotated, trace, width=400).plain
    (ac,) = annotate(trace)
    pieces = [f for f in frames(ac, False) if isinstance(f, DataFrame) and f.data]
    assert pieces
    for frame in pieces:
        line = row(plain, frame.end - len(frame.data), frame.end)
        assert f"↳ {escape_bytes(frame.data)} " in line
        assert f"Data, {len(frame.data)} octet" in line


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("h2-reset", RstStreamFrame),
        ("h2-goaway", GoAwayFrame),
        ("h2-flow-control", WindowUpdateFrame),
        ("h2-settings-ping", PingFrame),
    ],
)
def test_payload_fields_of_control_frames(name: str, cls: type[Frame]) -> None:
    trace = golden(name)
    plain = shown(render_annotated, trace, width=400).plain
    seen = 0
    for ac in annotate(trace):
        for d in (True, False):
            stream = ac.conn.client_to_server() if d else ac.conn.server_to_client()
            for frame in frames(ac, d):
                p = frame.start + 9
                if isinstance(frame, RstStreamFrame) and cls is RstStreamFrame:
                    line = row(plain, p, p + 4)
                    assert f"Error Code {frame.error_name} (0x{frame.error_code:x})" in line
                elif isinstance(frame, GoAwayFrame) and cls is GoAwayFrame:
                    line = row(plain, p, p + 4)
                    assert f"Last-Stream-ID {frame.last_stream_id}: " in line
                    code = row(plain, p + 4, p + 8)
                    assert f"Error Code {frame.error_name} (0x{frame.error_code:x})" in code
                    assert f"↳ {hex_bytes(stream[p + 4 : p + 8])}" in code
                elif isinstance(frame, WindowUpdateFrame) and cls is WindowUpdateFrame:
                    line = row(plain, p, p + 4)
                    assert f"Window Size Increment {frame.increment}: " in line
                elif isinstance(frame, PingFrame) and cls is PingFrame:
                    line = row(plain, p, p + 8)
                    assert f"Opaque Data {frame.opaque_data.hex()} " in line
                else:
                    continue
                assert f"↳ {hex_bytes(stream[p : p + 4])}" in line
                seen += 1
    assert seen


def test_hexdump_colours_each_field_of_a_frame_header() -> None:
    trace = golden("h2-settings-ping")
    text = shown(render_hex, trace)
    plain = text.plain
    (ac,) = annotate(trace)
    # The server's first recv starts with its SETTINGS frame: offset 0 of S→C.
    frame = frames(ac, False)[0]
    assert frame.start == 0
    assert isinstance(frame, SettingsFrame)
    dump = re.search(r"recv \d+ bytes  S→C  \[0, \d+\)\n00000000  ", plain)
    assert dump is not None
    at = dump.end()
    octets = plain[at : at + 16 * 3]
    assert octets.startswith(hex_bytes(ac.conn.server_to_client()[:8]))
    expected = ["h2-length"] * 3 + ["h2-type", "h2-flags"] + ["h2-stream-id"] * 3
    for i, kind in enumerate(expected):  # the first 8 octets of the line, "xx " each
        assert same_color(color_at(text, plain[at + 3 * i], at + 3 * i), kind_color(kind)), i
    legend = next(line for line in plain.splitlines() if line.startswith("kinds: "))
    for kind in ("h2-length", "h2-type", "h2-flags", "h2-stream-id", "h2-field"):
        assert f"■ {kind}" in legend
    assert "■ h2-frame" not in legend  # every frame is shown by its fields
    assert "■ hpack-field" not in legend  # the nested HPACK layer is the annotated view's


def test_html_page_shows_the_fields() -> None:
    trace = golden("h2-settings-ping")
    page = render_html(trace)
    (ac,) = annotate(trace)
    frame = frames(ac, False)[0]
    header = ac.conn.server_to_client()[frame.start : frame.start + 9]
    assert hex_bytes(header[:3]) in page  # the Length field's row
    assert "Stream Identifier 0: " in page
    assert "Type SETTINGS (0x04)" in page


def test_pcapng_comments_keep_to_the_frames() -> None:
    # A frame's fields stay out of the packet comments: Wireshark dissects them itself,
    # and the frame's note already says what they hold.
    (ac,) = annotate(golden("h2-settings-ping"))
    notes = [n for ns in ac.record_notes().values() for n in ns]
    assert any(n.startswith("SETTINGS stream 0") for n in notes)
    assert not any(n.startswith(("Length ", "Type ", "Stream Identifier ")) for n in notes)
