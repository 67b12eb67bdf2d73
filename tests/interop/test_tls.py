"""TLS with ALPN: h2 and http/1.1 chosen in the handshake; traces taken above TLS."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lab.apps.tokens import tokens_for
from lab.capture.fileformat import load
from tests.tools import require_tool

pytestmark = pytest.mark.interop

TOOL_TIMEOUT = 60


@pytest.fixture
def tls_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    ca = tmp_path / "ca.pem"
    traces = tmp_path / "traces"
    with subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--port", "0", "--tls", "--ca-out", str(ca),
         "--trace-dir", str(traces)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            match = re.search(r"https://127\.0\.0\.1:(\d+)", first)
            assert match, first
            yield match.group(0), ca, traces, proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


Server = tuple[str, Path, Path, "subprocess.Popen[str]"]


def test_httpx_negotiates_h2_and_http1_by_alpn(tls_server: Server) -> None:
    url, ca, _, _ = tls_server
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context, http2=True, timeout=10) as client:
        response = client.get(f"{url}/tokens?n=3&interval_ms=0&prompt=tls")
        assert response.http_version == "HTTP/2"
        assert response.text == "".join(tokens_for("tls", 3)) + "\n[DONE]\n"
    with httpx.Client(verify=context, http2=False, timeout=10) as client:
        response = client.get(f"{url}/fixed?size=5")
        assert response.http_version == "HTTP/1.1"
        assert response.text == "strea"


def test_curl_over_tls_and_the_trace_says_above_tls(tls_server: Server) -> None:
    curl = require_tool("curl", "curl")
    url, ca, traces, proc = tls_server
    out = subprocess.run(
        [curl, "-sS", "--http2", "--cacert", str(ca), "-w", "%{http_version}",
         f"{url}/fixed?size=4"],
        capture_output=True, check=True, timeout=TOOL_TIMEOUT, text=True,
    ).stdout  # fmt: skip
    assert out == "stre2"
    # Without the run's CA the certificate is refused: it was made for this run.
    refused = subprocess.run(
        [curl, "-sS", f"{url}/fixed?size=4"],
        check=False,
        capture_output=True,
        timeout=TOOL_TIMEOUT,
    )
    assert refused.returncode != 0
    # The server-side trace is of the decrypted bytes, and says so. Stopping the server
    # first: by the time it exits, every connection's trace is written.
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    conn = load(sorted(traces.glob("*.trace"))[0]).connections[0]
    assert conn.tls
    assert conn.protocol == "h2"
    assert conn.received().startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
