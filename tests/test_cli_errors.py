"""Mistakes on the command line get a message, not a traceback: one line on stderr naming
what is wrong, and a non-zero exit status (2 for a usage error, as argparse has it; 1 when
the command was right but the file, the port or the input was not).

Each runs ``python -m lab`` as a user runs it.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lab.capture.fileformat import TraceFormatError, load

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "captures"
# Bound on one CLI run (each of these fails fast; a hang is the bug).
CLI_TIMEOUT = 60
ENV = {"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False, env=ENV,
    )  # fmt: skip


def one_line_error(out: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    """The run failed with ``status`` and one line on stderr holding every one of
    ``words``; that line."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert out.returncode == status, (out.returncode, lines[0])
    return lines[0]


def test_show_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.trace"
    one_line_error(lab("show", str(missing)), 1, "lab show", str(missing), "No such file")


def test_show_a_directory(tmp_path: Path) -> None:
    one_line_error(lab("show", str(tmp_path)), 1, "lab show", str(tmp_path), "Is a directory")


def test_show_a_corrupted_trace_names_the_line(tmp_path: Path) -> None:
    lines = (GOLDEN / "chunked.trace").read_text().splitlines(keepends=True)
    bad = next(i for i, line in enumerate(lines) if line.startswith("  00000010"))
    offset, first_byte, rest = lines[bad].split(maxsplit=2)
    lines[bad] = f"  {offset}  zz {rest}"  # where the first byte was, no hex at all
    assert first_byte != "zz"
    broken = tmp_path / "broken.trace"
    broken.write_text("".join(lines))
    with pytest.raises(TraceFormatError) as info:
        load(broken)
    assert info.value.lineno == bad + 1
    line = one_line_error(lab("show", str(broken)), 1, "lab show", str(broken))
    assert f"line {bad + 1}:" in line


def test_show_a_pcapng_shows_its_connections(tmp_path: Path) -> None:
    """A packet capture is read by its content (pcapng's Section Header Block), whatever
    its name, and shown as a trace."""
    pcapng = tmp_path / "chunked.bin"
    shutil.copy(GOLDEN / "chunked.pcapng", pcapng)
    assert pcapng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # a Section Header Block
    out = lab("show", str(pcapng), "--color", "never")
    assert (out.returncode, out.stderr) == (0, "")
    assert "pcapng capture: 12 packets, 1 TCP connection" in out.stdout
    assert "chunk size 0x6 = 6 bytes" in out.stdout


def _pcap(*packets: bytes) -> bytes:
    """A pcap file (libpcap format, microseconds, raw IP link type 101) of ``packets``."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    records = [struct.pack("<IIII", 1_700_000_000, i, len(p), len(p)) + p
               for i, p in enumerate(packets)]  # fmt: skip
    return header + b"".join(records)


# An IPv4 header (RFC 791) of 28 bytes' total length around an 8-byte UDP header, to 53.
UDP_PACKET = bytes.fromhex("4500001c00000000401100000a0000010a000002") + bytes.fromhex(
    "d431003500080000"
)


def test_show_a_capture_without_tcp(tmp_path: Path) -> None:
    capture = tmp_path / "dns.pcap"
    capture.write_bytes(_pcap(UDP_PACKET, UDP_PACKET))
    one_line_error(lab("show", str(capture)), 1, f"lab show: {capture}: no TCP connection",
                   "pcap capture", "2 packets (2 UDP)")  # fmt: skip


def test_show_a_truncated_capture(tmp_path: Path) -> None:
    capture = tmp_path / "cut.pcapng"
    capture.write_bytes((GOLDEN / "chunked.pcapng").read_bytes()[:-100])
    one_line_error(lab("show", str(capture)), 1, f"lab show: {capture}:", "truncated")


def test_serve_on_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = lab("serve", "--port", str(port))
    one_line_error(out, 1, "lab serve", f"127.0.0.1:{port}", "Address already in use")


@pytest.mark.parametrize("port", ["65536", "70000", "-1", "http"])
def test_serve_on_a_port_out_of_range(port: str) -> None:
    """argparse refuses it before anything listens (it used to pick another port)."""
    one_line_error(lab("serve", "--port", port), 2, "lab serve", "--port", port)


def test_capture_an_unknown_scenario(tmp_path: Path) -> None:
    out = lab("capture", "no-such-scenario", "--out", str(tmp_path))
    one_line_error(out, 2, "lab capture", "no scenario 'no-such-scenario'")
    assert not list(tmp_path.iterdir())


def test_capture_with_no_scenario(tmp_path: Path) -> None:
    one_line_error(lab("capture", "--out", str(tmp_path)), 2, "lab capture", "--all")


@pytest.mark.parametrize("count", ["0", "-5"])
def test_bench_idle_with_no_streams(count: str) -> None:
    one_line_error(lab("bench", "idle", "--count", count), 2, "lab bench", "--count", count)


def test_an_unknown_command_and_option() -> None:
    one_line_error(lab("serv"), 2, "lab", "invalid choice: 'serv'")
    one_line_error(lab("show", "--view", "3d", "x.trace"), 2, "lab show", "--view")


def test_decode_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "body.bin"
    one_line_error(lab("decode", "chunked", str(missing)), 1, "lab decode", "No such file")


@pytest.mark.parametrize("option", [("--seconds", "0"), ("--runs", "0"), ("--seconds", "x")])
def test_fuzz_with_nothing_to_run(option: tuple[str, str]) -> None:
    one_line_error(lab("fuzz", "chunked", *option), 2, "lab fuzz", option[0])


def test_fuzz_replay_of_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "chunked-0.bin"
    out = lab("fuzz", "chunked", "--replay", str(missing))
    one_line_error(out, 1, "lab fuzz", str(missing), "No such file")
