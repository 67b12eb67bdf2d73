"""The HTTP/2 server's own DATA frames (lab.server.h2state.H2State.queue_data) are what h2's
``send_data`` would have written, and leave h2's flow-control windows and stream states
where h2 would have; outside the plain case it leaves the frame to h2.

Each case runs twice from the same client bytes: once through the lab's path, once
through h2 alone, and the two servers' bytes and windows are compared frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable

import h2.config
import h2.connection
import h2.settings
import h2.stream
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.server.connection import ConnectionState
from lab.server.h2input import PREFACE
from lab.server.h2state import H2State
from lab.server.limits import Limits

_REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "lab")]


async def _no_app(*_: object) -> None:
    raise AssertionError("no handler runs here")


def _client_bytes(window: int, *, end_request: bool = True) -> bytes:
    """A client's preface, SETTINGS (initial window ``window``) and one GET on stream 1."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    client.send_headers(1, _REQUEST, end_stream=end_request)
    return client.data_to_send()


def _servers(
    window: int, *, end_request: bool = True
) -> tuple[H2State, h2.connection.H2Connection]:
    """The lab's connection state and a plain h2 server, both fed the same client bytes and
    both having answered stream 1's headers; their output so far is discarded."""
    lab = H2State(trio.testing.memory_stream_pair()[0], _no_app, Limits(), ConnectionState())
    plain = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    plain.initiate_connection()
    data = _client_bytes(window, end_request=end_request)
    lab.conn.receive_data(data[len(PREFACE) :])  # H2State took the preface itself
    plain.receive_data(data)
    for conn in (lab.conn, plain):
        conn.send_headers(1, [(":status", "200")])
        conn.data_to_send()
    lab.writer._out.clear()
    return lab, plain


def _in_trio(fn: Callable[[], None]) -> None:
    """Run ``fn`` inside trio (the server's state reads trio's clock)."""

    async def main() -> None:
        fn()

    trio.run(main)


def _windows(conn: h2.connection.H2Connection) -> tuple[int, int, object]:
    stream = conn.streams[1]
    return (
        conn.outbound_flow_control_window,
        stream.outbound_flow_control_window,
        stream.state_machine.state,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=40))
def test_the_lab_s_data_frames_are_h2_s_byte_for_byte(chunks: list[bytes]) -> None:
    def body() -> None:
        lab, plain = _servers(65_535)
        for chunk in chunks:
            fits = len(chunk) <= plain.local_flow_control_window(1)
            assert lab.queue_data(1, chunk) is fits
            if not fits:
                break  # beyond the window: h2's (and the sender's waiting) business
            plain.send_data(1, chunk)
            assert bytes(lab.writer._out) == plain.data_to_send()
            lab.writer._out.clear()
            assert _windows(lab.conn) == _windows(plain)

    _in_trio(body)


def test_h2_s_pending_frames_go_first() -> None:
    def body() -> None:
        lab, plain = _servers(65_535)
        for conn in (lab.conn, plain):
            conn.ping(b"12345678")  # queued by h2, not yet taken
        assert lab.queue_data(1, b"token")
        plain.send_data(1, b"token")
        assert bytes(lab.writer._out) == plain.data_to_send()

    _in_trio(body)


@pytest.mark.parametrize(
    ("case", "expected_state"),
    [
        ("ended", h2.stream.StreamState.HALF_CLOSED_LOCAL),
        ("reset", h2.stream.StreamState.CLOSED),
    ],
)
def test_a_stream_that_cannot_carry_data_is_left_to_h2(case: str, expected_state: object) -> None:
    def body() -> None:
        lab, _ = _servers(65_535, end_request=False)
        if case == "ended":
            lab.conn.end_stream(1)
        else:
            lab.conn.reset_stream(1)
        lab.conn.data_to_send()
        before = (lab.conn.outbound_flow_control_window, lab.conn.streams.get(1))
        assert not lab.queue_data(1, b"token")
        assert (lab.conn.outbound_flow_control_window, lab.conn.streams.get(1)) == before
        if lab.conn.streams.get(1) is not None:
            assert lab.conn.streams[1].state_machine.state is expected_state
        assert not lab.writer._out

    _in_trio(body)


def test_data_over_the_frame_size_or_a_window_is_left_to_h2() -> None:
    def body() -> None:
        lab, _ = _servers(10)
        assert not lab.queue_data(1, b"x" * 11)  # over the stream's window of 10
        assert lab.queue_data(1, b"x" * 10)
        assert not lab.queue_data(1, b"x")  # the window is spent
        big, _ = _servers(1 << 20)
        assert not big.queue_data(1, b"x" * (big.conn.max_outbound_frame_size + 1))

    _in_trio(body)
