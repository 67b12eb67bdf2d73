"""``lab decode CODEC [FILE|-]``, run as a user runs it: bytes on stdin (raw, --hex,
--escaped) or in a file, the annotated rows on stdout, a refusal on stderr with its offset.

What each row must say is taken from the codec itself (the notes of the segments the lab's
decoder returns for the same bytes), so the tests check that the command shows every unit,
in order, at its byte range, and nothing else decides the expected text.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.decode import CODECS, InputError, decode, read_input
from lab.wire import h2frames as h2f
from lab.wire import websocket as ws
from lab.wire.segment import Nested

# Bound on one CLI run.
CLI_TIMEOUT = 60
ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


def lab_decode(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "decode", *args, "--color", "never"],
        input=stdin, capture_output=True, timeout=CLI_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip


def rows_in_order(out: str, codec: str, data: bytes) -> None:
    """Every segment the codec makes of ``data`` is a row of ``out``, in order, with its
    byte range and its note."""
    at = 0
    for seg in decode(CODECS[codec], data).segments:
        row = f"[{seg.start}, {seg.end})"
        found = out.find(row, at)
        assert found >= 0, f"no row {row} after offset {at} for {seg.note()!r}:\n{out}"
        line_end = out.find("\n", found)
        assert seg.note()[:40] in out[found:line_end], (seg.note(), out[found:line_end])
        at = line_end


KEY = bytes.fromhex("37fa213d")  # RFC 6455 §5.7
CHUNKED = b"1a;foo=bar\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nExpires: never\r\n\r\n"


def test_raw_bytes_on_stdin_are_shown_unit_by_unit() -> None:
    out = lab_decode("chunked", stdin=CHUNKED)
    assert out.returncode == 0, out.stderr
    assert out.stderr == b""
    rows_in_order(out.stdout.decode(), "chunked", CHUNKED)


def test_a_file_argument_and_nested_units(tmp_path: Path) -> None:
    """An SSE response: HTTP/1.1 framing rows, with the SSE lines nested under them."""
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked"
        b"\r\n\r\n10\r\nid: 1\ndata: hi\n\n\r\n0\r\n\r\n"
    )
    path = tmp_path / "response.bin"
    path.write_bytes(response)
    out = lab_decode("http1", str(path))
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    rows_in_order(text, "http1", response)
    nested = [s for s in decode(CODECS["http1"], response).segments if isinstance(s, Nested)]
    assert nested
    assert text.count("↳") == len(nested)


def test_hex_input_ignores_spaces_and_line_breaks() -> None:
    frames = h2f.settings() + h2f.headers(1, bytes.fromhex("828684"), end_stream=True)
    spaced = frames.hex(" ")
    pasted = "\n".join(spaced[i : i + 24] for i in range(0, len(spaced), 24)) + "\n"
    out = lab_decode("h2frames", "--hex", stdin=pasted.encode())
    assert out.returncode == 0, out.stderr
    rows_in_order(out.stdout.decode(), "h2frames", frames)


@pytest.mark.parametrize(
    "pasted",
    [
        b"data: a\\r\\ndata: b\\r\\n\\r\\n\n",  # a line break typed after the escapes
        b"b'data: a\\r\\ndata: b\\r\\n\\r\\n'",  # a bytes literal, quotes and all
        b'b"data: a\\r\\ndata: \\x62\\r\\n\\r\\n"',
    ],
)
def test_escaped_input(pasted: bytes) -> None:
    stream = b"data: a\r\ndata: b\r\n\r\n"
    assert read_input(pasted, "escaped") == stream
    out = lab_decode("sse", "--escaped", stdin=pasted)
    assert out.returncode == 0, out.stderr
    rows_in_order(out.stdout.decode(), "sse", stream)


def test_every_codec_has_a_row_per_unit() -> None:
    inputs = {
        "chunked": CHUNKED,
        "http1": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "sse": b"event: x\ndata: y\n\n",
        "h2frames": h2f.PREFACE + h2f.settings() + h2f.ping(),
        "hpack": bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
        "websocket": ws.text("Hello", mask_key=KEY) + ws.close(1000, mask_key=KEY),
    }
    assert set(inputs) == set(CODECS)
    for codec, data in inputs.items():
        out = lab_decode(codec, "--hex", stdin=data.hex().encode())
        assert out.returncode == 0, (codec, out.stderr)
        rows_in_order(out.stdout.decode(), codec, data)


def test_a_refusal_names_its_offset_and_exits_1() -> None:
    smuggled = b"3\r\nxxx__1a\r\n"  # two bytes that are not the CRLF after chunk data
    out = lab_decode("chunked", stdin=smuggled)
    assert out.returncode == 1
    error = decode(CODECS["chunked"], smuggled).error
    assert error is not None
    assert error.offset == smuggled.index(b"__")
    assert out.stderr.decode().splitlines() == [f"lab decode chunked: {error}"]
    text = out.stdout.decode()
    rows_in_order(text, "chunked", smuggled)
    assert f"[{error.offset}, {len(smuggled)})" in text  # the bytes no unit took
    assert "not parsed" in text


def test_input_cut_short_is_an_error_at_its_end() -> None:
    cut = CHUNKED[:20]
    out = lab_decode("chunked", stdin=cut)
    assert out.returncode == 1
    assert f"(at byte offset {len(cut)})" in out.stderr.decode()


@pytest.mark.parametrize(
    ("mode", "pasted", "words"),
    [
        ("--hex", b"00 0g", "not a hex digit: 'g'"),
        ("--hex", b"000", "odd number of hex digits"),
        ("--escaped", b"abc\\q", "unknown escape"),
        ("--escaped", b"\\x4", "unknown escape"),
    ],
)
def test_input_that_is_not_what_the_option_says(mode: str, pasted: bytes, words: str) -> None:
    with pytest.raises(InputError, match=words):
        read_input(pasted, mode.removeprefix("--"))
    out = lab_decode("chunked", mode, stdin=pasted)
    assert out.returncode == 2
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1
    assert words in lines[0]
    assert out.stdout == b""
