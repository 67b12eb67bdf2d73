"""The HTTP/1.1 response writer (lab.server.h1writer): a burst goes out in few writes, each
chunk still its own chunk; a paced stream is written chunk by chunk; the buffer is bounded;
a handler that never waits still lets others run; a stuck or broken socket ends the
response."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import trio

from lab.apps.interface import Request, ResponseStream
from lab.apps.tokens import DONE, tokens_for
from lab.capture import load
from lab.capture.records import SEND
from lab.server import Limits
from lab.server.h1writer import BURST_SENDS, CHECK_AFTER, ResponseWriter
from lab.server.limits import YIELD_EVERY
from lab.wire.chunked import ChunkedDecoder
from lab.wire.chunked_segments import ChunkData
from tests.server.helpers import WAIT, H11Client, lab_server, run
from tests.server.test_trace_dir import traced_server


class _Recording(trio.abc.SendStream):
    """A send stream that records each send_all; ``gate`` (when set) holds every write
    until it is set; ``broken`` makes every write fail."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.gate: trio.Event | None = None
        self.broken = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.broken:
            raise trio.BrokenResourceError("peer reset")
        self.writes.append(bytes(data))
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def _into_a_burst(writer: ResponseWriter, nursery: trio.Nursery) -> None:
    """BURST_SENDS sends in a row, each written at once; the next one is a burst's."""
    for _ in range(BURST_SENDS):
        await writer.send(nursery, b"h")


def test_a_burst_is_written_in_few_writes_in_order() -> None:
    async def main() -> list[bytes]:
        stream = _Recording()
        writer = ResponseWriter(stream, limit=1 << 20, send_timeout=5)
        async with trio.open_nursery() as nursery:
            for i in range(1000):
                await writer.send(nursery, b"%d," % i)
            await writer.flush()
            nursery.cancel_scope.cancel()  # the writer waits for more until its response ends
        return stream.writes

    writes = run(main)
    assert b"".join(writes) == b"".join(b"%d," % i for i in range(1000))
    # The first sends went out at once; the burst after them in one write per YIELD_EVERY
    # sends at most (the handler let the writer run that often), and the flush.
    assert len(writes) <= BURST_SENDS + 1000 // YIELD_EVERY + 2


def test_the_buffer_is_bounded_while_the_socket_does_not_take_it() -> None:
    async def main() -> tuple[int, int]:
        stream = _Recording()
        writer = ResponseWriter(stream, limit=1000, send_timeout=60)
        most = sent = 0
        async with trio.open_nursery() as nursery:
            await _into_a_burst(writer, nursery)
            stream.gate = trio.Event()  # from now on the socket takes nothing

            async def produce() -> None:
                nonlocal most, sent
                while True:
                    await writer.send(nursery, b"x" * 100)
                    sent += 1
                    most = max(most, writer.pending)

            nursery.start_soon(produce)
            await trio.sleep(1)  # the socket takes nothing meanwhile
            nursery.cancel_scope.cancel()
        return most, sent

    most, sent = run(main, autojump=True)
    # The first write took what was buffered and hangs; then the buffer fills to its limit
    # and the producer waits there: at most twice the limit is held.
    assert 900 <= most < 1000
    assert 10 <= sent <= 20


def test_a_handler_that_never_waits_still_lets_others_run() -> None:
    async def main() -> int:
        stream = _Recording()
        writer = ResponseWriter(stream, limit=1 << 30, send_timeout=60)
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            await _into_a_burst(writer, nursery)
            stream.gate = trio.Event()  # nothing more is written: only yields let others run
            nursery.start_soon(other)
            await trio.lowlevel.checkpoint()
            before = ticks
            for _ in range(10 * YIELD_EVERY):
                await writer.send(nursery, b"t")
            ran = ticks - before
            nursery.cancel_scope.cancel()
        return ran

    # Ten yields: the other task ran after each (the last one's turn may come after the
    # count), so at least nine times; without the yields it would not run at all.
    assert run(main) >= 9


def test_a_write_with_no_progress_for_the_send_timeout_ends_the_response() -> None:
    async def main() -> tuple[str | None, bool, str]:
        stream = _Recording()
        stream.gate = trio.Event()
        writer = ResponseWriter(stream, limit=1 << 20, send_timeout=7)
        error = ""
        with trio.CancelScope() as response:
            writer.cancel = response
            async with trio.open_nursery() as nursery:
                try:
                    await writer.send(nursery, b"head")  # written at once, and hangs
                except trio.BrokenResourceError as exc:
                    error = str(exc)
        assert trio.current_time() >= 7
        return writer.failed, response.cancel_called, error

    failed, cancelled, error = run(main, autojump=True)
    assert failed == "client too slow"
    assert cancelled
    assert error == "client too slow"


def test_a_broken_socket_stops_the_sender() -> None:
    async def main() -> list[str]:
        errors = []
        for paced in (True, False):
            stream = _Recording()
            writer = ResponseWriter(stream, limit=1 << 20, send_timeout=5)
            async with trio.open_nursery() as nursery:
                await writer.send(nursery, b"a")
                stream.broken = True
                if paced:  # written at once, in the sender's task
                    await trio.sleep(0.01)
                    with pytest.raises(trio.BrokenResourceError) as first:
                        await writer.send(nursery, b"b")
                    errors.append(str(first.value))
                else:  # a burst: the writer task finds the socket broken
                    stream.broken = False
                    await _into_a_burst(writer, nursery)
                    stream.broken = True
                    await writer.send(nursery, b"b")
                    await trio.sleep(0.01)
                with pytest.raises(trio.BrokenResourceError) as later:
                    await writer.send(nursery, b"c")
                errors.append(str(later.value))
                nursery.cancel_scope.cancel()
        return errors

    assert run(main) == ["client gone"] * 3


def _server_writes(tmp_path: Path, target: str) -> tuple[bytes, list[bytes]]:
    """The body the client read for GET target, and the server's writes (its trace)."""

    async def main() -> bytes:
        async with traced_server(tmp_path) as server:
            client = await H11Client.connect(server)
            await client.get(target)
            with trio.fail_after(WAIT):
                await client.response()
            await client.stream.aclose()
        return bytes(client.raw)

    raw = run(main)
    (trace,) = [load(p).connections[0] for p in tmp_path.glob("*.trace")]
    return raw.partition(b"\r\n\r\n")[2], [r.data for r in trace.records if r.kind == SEND]


def _chunks(body: bytes) -> list[bytes]:
    return [s.data for s in ChunkedDecoder().feed(body) if isinstance(s, ChunkData)]


def test_a_burst_goes_out_in_few_writes_and_each_token_is_its_own_chunk(tmp_path: Path) -> None:
    n = 5000
    body, writes = _server_writes(tmp_path, f"/tokens?n={n}&interval_ms=0&prompt=p")
    assert _chunks(body) == [t.encode() for t in [*tokens_for("p", n), f"\n{DONE}\n"]]
    assert b"".join(writes).endswith(body)
    # Far fewer writes than chunks: the tokens that piled up went out together.
    assert len(writes) <= n // YIELD_EVERY + 2


def test_a_paced_stream_is_written_chunk_by_chunk(tmp_path: Path) -> None:
    body, writes = _server_writes(tmp_path, "/tokens?n=5&interval_ms=30&prompt=p")
    tokens = [t.encode() for t in tokens_for("p", 5)]
    assert _chunks(body)[:5] == tokens
    # The head went out at once; every token in a write of its own as it came, the last one
    # (maybe) with the end of the body, which followed it at once.
    assert writes[0].startswith(b"HTTP/1.1 200 ")
    assert writes[0].endswith(b"\r\n\r\n")  # the head alone
    assert [_chunks(w) for w in writes[1:6]] == [[t] for t in tokens]
    assert writes[-1].endswith(b"0\r\n\r\n")
    assert len(writes) <= 8  # and the [DONE] chunk and the last chunk


def test_a_watched_writer_asks_for_one_check_and_fails_only_after_the_whole_timeout() -> None:
    async def main() -> None:
        stream = _Recording()
        stream.gate = trio.Event()
        writer = ResponseWriter(stream, limit=1 << 20, send_timeout=10)
        asked: list[float] = []
        writer.arm = asked.append
        start = trio.current_time()
        with trio.CancelScope() as response:
            writer.cancel = response
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.send, nursery, b"a")  # written at once; hangs
                await trio.sleep(4)
                assert asked == [start + CHECK_AFTER]
                assert writer.next_check(trio.current_time()) == start + 10
                assert writer.failed is None
                await trio.sleep(6)
                assert writer.next_check(trio.current_time()) == math.inf
        assert writer.failed == "client too slow"
        assert response.cancelled_caught

    run(main, autojump=True)


def test_writes_that_complete_ask_for_a_check_once_per_quiet_spell() -> None:
    async def main() -> None:
        stream = _Recording()
        writer = ResponseWriter(stream, limit=1 << 20, send_timeout=10)
        asked: list[float] = []
        writer.arm = asked.append
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                await writer.send(nursery, b"a")
                await trio.sleep(CHECK_AFTER / 4)
            assert len(asked) == 1  # three writes, one check
            # At the check nothing is being written: no more checks until the next write.
            assert writer.next_check(trio.current_time()) == math.inf
            await writer.send(nursery, b"b")
            await trio.sleep(1)
            assert len(asked) == 2
            nursery.cancel_scope.cancel()
        assert len(stream.writes) == 4

    run(main, autojump=True)


async def _floods(request: Request, response: ResponseStream) -> None:
    await response.start(200, [("content-type", "application/octet-stream")])
    while True:
        await response.send(b"x" * 65536)


def test_a_client_that_stops_reading_a_stream_is_cut_after_the_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeout = 0.5

    async def main() -> float:
        async with lab_server(_floods, Limits(send_timeout=timeout)) as server:
            client = await H11Client.connect(server)
            await client.get("/")  # and never reads
            started = trio.current_time()
            with trio.fail_after(WAIT):
                await server.wait_connections(at_most=0)
            return trio.current_time() - started

    with caplog.at_level(logging.INFO, logger="lab.server"):
        elapsed = run(main)
    assert f"client too slow: no progress sending for {timeout}s" in caplog.text
    assert "(cut short)" in caplog.text
    assert elapsed >= timeout


def test_a_quiet_writer_retires_its_task_and_a_later_burst_starts_another() -> None:
    async def main() -> None:
        stream = _Recording()
        writer = ResponseWriter(stream, limit=1 << 20, send_timeout=10)
        writer.arm = lambda deadline: None
        async with trio.open_nursery() as nursery:
            await writer.send(nursery, b"a")  # written at once
            assert not nursery.child_tasks
            await trio.sleep(1)
            await _into_a_burst(writer, nursery)
            await writer.send(nursery, b"b")  # in a burst: for a writer task
            await trio.sleep(1)
            assert len(nursery.child_tasks) == 1  # the writer, waiting for more
            writer.next_check(trio.current_time())  # nothing being written: quiet
            await trio.sleep(1)
            assert not nursery.child_tasks
            await writer.send(nursery, b"c")  # after a wait: written at once
            assert not nursery.child_tasks
            await trio.sleep(1)
            await _into_a_burst(writer, nursery)
            await writer.send(nursery, b"d")
            await writer.flush()
            assert len(nursery.child_tasks) == 1
            nursery.cancel_scope.cancel()
        burst = [b"h"] * BURST_SENDS
        assert stream.writes == [b"a", *burst, b"b", b"c", *burst, b"d"]

    run(main, autojump=True)
