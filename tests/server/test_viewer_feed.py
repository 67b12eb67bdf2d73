"""The live feed behind the wire viewer, read the way a page reads it: ``GET /lab/events``
decoded as Server-Sent Events, and the downloads under ``/lab/connections/``."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
import trio

from lab.apps import AbortResponse, make_request
from lab.apps import app as lab_app
from lab.apps.tokens import DONE, tokens_for
from lab.apps.viewer import QUEUE_BATCHES, viewer
from lab.capture import load
from lab.capture.fileformat import loads
from lab.capture.live import CONNECTION_COST, SINCE_BATCH, FeedLimits, LiveFeed
from lab.capture.records import CLOSE, CONNECT, RECV, SEND, Record
from lab.server import Limits, Server
from lab.server.interface import Headers
from lab.wire.sse_segments import Event
from tests.server.h2client import H2Client
from tests.server.helpers import WAIT, H11Client, run
from tests.server.viewerclient import FeedReader, data, held_tokens, viewer_server

PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")


async def _get(server: Server, target: str) -> tuple[H11Client, int, bytes]:
    """GET ``target`` on a new connection; (the client, status, body)."""
    client = await H11Client.connect(server)
    await client.get(target)
    head, parts, _ = await client.response()
    return client, head.status_code, b"".join(p.data for p in parts)


def test_each_record_reaches_the_viewer_while_the_stream_runs() -> None:
    gate = trio.Event()

    async def main() -> None:
        async with viewer_server(held_tokens(gate)) as server:
            reader = await FeedReader.open(server)  # connection 1: the viewer's own
            assert reader.status == 200
            assert (await reader.next()).type == "hello"
            client = await H11Client.connect(server)  # connection 2
            await client.get("/tokens?n=5&interval_ms=0")
            # The first token is out and the handler holds the second: the stream runs.
            first = await reader.until(
                lambda e: e.type == "row" and any(s["k"] == "chunk-size" for s in data(e)["segs"])
            )
            assert not any(
                s["k"] == "last-chunk" for e in first if e.type == "row" for s in data(e)["segs"]
            )
            gate.set()
            _, parts, _ = await client.response()
            await client.stream.aclose()
            rest = await reader.until(lambda e: e.type == "close")
        events = first + rest
        assert {data(e)["n"] for e in events} == {2}  # the viewer's connection is not there
        conn = data(events[0])
        assert (events[0].type, conn["method"], conn["target"]) == (
            "conn", "GET", "/tokens?n=5&interval_ms=0",
        )  # fmt: skip
        rows = [data(e) for e in events if e.type == "row"]
        assert [r["i"] for r in rows] == list(range(len(rows)))
        segs = [s for r in rows for s in r["segs"]]
        tokens = tokens_for("hello", 5)
        sizes = [s["note"] for s in segs if s["k"] == "chunk-size"]
        assert sizes == [
            f"chunk size 0x{len(t):x} = {len(t)} bytes" for t in [*tokens, f"\n{DONE}\n"]
        ]
        assert [s["k"] for s in segs].count("last-chunk") == 1
        body = b"".join(p.data for p in parts).decode()
        assert "".join(text for r in rows for _, text in r["text"]) == body
        assert sum(r["size"] for r in rows if r["kind"] == "send") == len(client.raw)

    run(main)


def test_h2c_frames_carry_their_stream_id() -> None:
    async def main() -> None:
        async with viewer_server() as server:
            reader = await FeedReader.open(server)
            await reader.next()  # hello
            h2 = await H2Client.connect(server)
            one = await h2.request("GET", "/tokens?n=2&interval_ms=0")
            three = await h2.request("GET", "/fixed?size=7")
            await h2.until_done(one, three)
            done: set[int] = set()

            def both_done(event: Event) -> bool:
                if event.type == "row":
                    done.update(data(event)["done"])
                return {1, 3} <= done

            events = await reader.until(both_done)
        frames = [s for e in events if e.type == "row" for s in data(e)["segs"] if "sid" in s]
        data_frames = {
            (s["sid"], "END_STREAM" in s["flags"]) for s in frames if s["type"] == "DATA"
        }
        assert {(1, True), (3, True)} <= data_frames
        requests = [tuple(q) for e in events if e.type == "row" for q in data(e)["req"]]
        assert requests == [(1, "GET", "/tokens?n=2&interval_ms=0"), (3, "GET", "/fixed?size=7")]
        texts: dict[int, str] = {}
        for e in events:
            if e.type == "row":
                for sid, text in data(e)["text"]:
                    texts[sid] = texts.get(sid, "") + text
        assert texts[1] == "".join(tokens_for("hello", 2)) + f"\n{DONE}\n"
        assert len(texts[3]) == 7

    run(main)


def test_a_page_that_reconnects_resumes_after_its_last_event_id() -> None:
    async def main() -> None:
        async with viewer_server() as server:
            first = await FeedReader.open(server)
            await first.next()  # hello
            await _get(server, "/fixed?size=3")
            seen = await first.until(lambda e: e.type == "row")
            last_id = seen[-1].last_event_id
            await first.client.stream.aclose()
            await _get(server, "/fixed?size=4")
            again = await FeedReader.open(server, last_id)
            resumed = await again.next()
            stranger = await FeedReader.open(server, "another-run-7")
            restarted = await stranger.next()
        epoch, _, seq = last_id.partition("-")
        # No snapshot: the very next event, from the feed's log.
        assert resumed.type != "hello"
        assert resumed.last_event_id == f"{epoch}-{int(seq) + 1}"
        assert restarted.type == "hello"
        assert data(restarted)["epoch"] == epoch

    run(main)


def test_connections_over_the_limit_are_dropped_oldest_first_and_the_page_is_told() -> None:
    async def main() -> None:
        async with viewer_server(limits=Limits(viewer_connections=2)) as server:
            for size in range(1, 5):  # connections 1..4
                client, _, _ = await _get(server, f"/fixed?size={size}")
                await client.stream.aclose()
            with trio.fail_after(WAIT):
                await server.wait_connections(0)
            reader = await FeedReader.open(server)  # connection 5: never counted
            hello = data(await reader.next())
            events = await reader.until(lambda e: e.type == "close" and data(e)["n"] == 4)
            statuses = {n: (await _get(server, f"/lab/connections/{n}.trace"))[1] for n in (1, 4)}
        assert [d["n"] for d in hello["dropped"]] == [1, 2]
        assert hello["dropped"][0]["reason"] == "over the limit of connections"
        assert [data(e)["n"] for e in events if e.type == "conn"] == [3, 4]
        assert statuses == {1: 404, 4: 200}

    run(main)


def test_bytes_over_the_total_drop_the_oldest_connections() -> None:
    # Room for about two small connections: the rest go, the oldest first.
    limits = Limits(viewer_total_bytes=2 * CONNECTION_COST + 4096)

    async def main() -> None:
        async with viewer_server(limits=limits) as server:
            reader = await FeedReader.open(server)
            await reader.next()
            for size in range(1, 5):
                client, _, _ = await _get(server, f"/fixed?size={size}")
                await client.stream.aclose()
            events = await reader.until(lambda e: e.type == "close" and data(e)["n"] == 5)
        dropped = [data(e)["n"] for e in events if e.type == "dropped"]
        assert dropped, "nothing was dropped"
        assert dropped == sorted(dropped)
        reasons = {data(e)["reason"] for e in events if e.type == "dropped"}
        assert reasons == {f"over {limits.viewer_total_bytes} bytes kept for all connections"}
        assert 5 not in dropped  # the newest stays

    run(main)


def test_a_busy_connection_keeps_its_beginning_and_the_page_is_told(tmp_path: Path) -> None:
    limits = Limits(viewer_records_per_connection=6)

    async def main() -> tuple[list[Event], bytes]:
        async with viewer_server(limits=limits, trace_dir=tmp_path) as server:
            reader = await FeedReader.open(server)
            await reader.next()
            # Paced, so that each token is its own write (a burst goes out in one).
            client, _, _ = await _get(server, "/tokens?n=20&interval_ms=1")
            await client.stream.aclose()
            events = await reader.until(lambda e: e.type == "close")
            download, status, text = await _get(server, "/lab/connections/2.trace")
            assert status == 200
            await download.stream.aclose()
            with trio.fail_after(WAIT):
                await server.wait_connections(1)  # the viewer's is left
            return events, text

    events, text = run(main)
    (limit,) = [data(e) for e in events if e.type == "limit"]
    assert limit["records"] == 6
    close = data(events[-1])
    full = load(next(tmp_path.glob("*-c00002-*.trace"))).connections[0]
    assert close["lost_records"] == len(full.records) - 6
    kept = loads(text.decode()).connections[0]
    assert kept.records == full.records[:6]
    assert [r["i"] for e in events if e.type == "row" for r in [data(e)]] == list(range(6))


def test_downloads_hold_exactly_the_recorded_bytes(tmp_path: Path) -> None:
    async def main() -> dict[str, tuple[int, dict[str, str], bytes]]:
        async with viewer_server(trace_dir=tmp_path) as server:
            client, _, _ = await _get(server, "/tokens?n=4&interval_ms=0")
            sent_by_client = b"GET /tokens?n=4&interval_ms=0 HTTP/1.1\r\nhost: lab\r\n\r\n"
            received_by_client = bytes(client.raw)
            await client.stream.aclose()
            with trio.fail_after(WAIT):
                await server.wait_connections(0)
            out = {}
            for kind in ("trace", "pcapng"):
                fetch = await H11Client.connect(server)
                await fetch.get(f"/lab/connections/1.{kind}")
                head, parts, _ = await fetch.response()
                headers = {k.decode(): v.decode() for k, v in head.headers}
                out[kind] = (head.status_code, headers, b"".join(p.data for p in parts))
            out["client"] = (0, {}, sent_by_client + b"|" + received_by_client)
            return out

    got = run(main)
    status, headers, text = got["trace"]
    assert status == 200
    assert "GET-tokens-n-4-interval_ms-0.trace" in headers["content-disposition"]
    path = tmp_path / "downloaded.trace"
    path.write_bytes(text)
    conn = load(path).connections[0]
    sent_by_client, received_by_client = got["client"][2].split(b"|", 1)
    assert conn.received() == sent_by_client
    assert conn.sent() == received_by_client
    assert conn.records[0].kind == CONNECT
    # The same records the server's own trace file has (trace_dir, written at close).
    (written,) = tmp_path.glob("*-c00001-*.trace")
    assert conn.records == load(written).connections[0].records
    status, headers, pcapng = got["pcapng"]
    assert status == 200
    assert pcapng.startswith(PCAPNG_MAGIC)
    assert sent_by_client in pcapng
    assert b"chunk size 0x" in pcapng


def test_too_many_viewers_get_503_and_a_server_without_the_viewer_404() -> None:
    async def main() -> None:
        async with viewer_server(limits=Limits(viewer_clients=1)) as server:
            first = await FeedReader.open(server)
            second = await FeedReader.open(server)
            assert (first.status, second.status) == (200, 503)
        plain = Server(lab_app)  # viewer=False
        async with trio.open_nursery() as nursery:
            await nursery.start(plain.serve)
            _, status, body = await _get(plain, "/lab/")
            nursery.cancel_scope.cancel()
        assert status == 404
        assert b"viewer is off" in body

    run(main)


def test_a_connection_that_comes_to_carry_the_viewer_is_withdrawn() -> None:
    async def main() -> None:
        async with viewer_server() as server:
            reader = await FeedReader.open(server)
            await reader.next()
            client, _, _ = await _get(server, "/fixed?size=2")  # connection 2: shown
            shown = await reader.until(lambda e: e.type == "row" and data(e)["done"])
            await client.get("/lab/connections/2.trace")  # the same connection, now a viewer's
            await client.response()
            gone = await reader.until(lambda e: e.type == "gone")
        assert shown[0].type == "conn"
        assert data(gone[-1])["n"] == 2
        assert all(e.type != "row" for e in gone)  # not one byte of the download is shown

    run(main)


def test_shutdown_ends_the_feed_so_the_viewer_connection_closes() -> None:
    async def main() -> None:
        async with viewer_server() as server:
            reader = await FeedReader.open(server)
            await reader.next()
            server.shutdown()
            with pytest.raises(EOFError):
                await _drain(reader)
            with trio.fail_after(WAIT):
                await server.wait_no_connections()

    run(main, autojump=True)


async def _drain(reader: FeedReader) -> None:
    while True:
        await reader.next()


class _NeverReads:
    """A response whose client stopped reading: the first write blocks for good."""

    def __init__(self) -> None:
        self.started = 0

    async def start(self, status: int, headers: Headers = ()) -> None:
        self.started = status

    async def send(self, data: bytes) -> None:
        await trio.sleep_forever()

    async def end(self, trailers: Headers = ()) -> None:
        await trio.sleep_forever()


def test_a_viewer_that_never_reads_is_cut_off_not_buffered_for() -> None:
    feed = LiveFeed(
        FeedLimits(
            connections=8, records_per_connection=4096, bytes_per_connection=1 << 20,
            total_bytes=1 << 22, log_events=4096, log_bytes=1 << 22, clients=2, downloads=1,
        )
    )  # fmt: skip
    response = _NeverReads()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            live = feed.open(1, local=("127.0.0.1", 80), peer=("127.0.0.1", 5000), tls=False,
                             opened=0.0)  # fmt: skip
            live.set_protocol("http/1.1")
            live.add(Record(0.0, RECV, b"GET /tokens HTTP/1.1\r\nhost: lab\r\n\r\n"))
            live.request("GET", "/tokens")
            live.add(Record(0.0, SEND, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"))
            # Far more rows than one viewer's queue holds, however they are batched.
            for k in range((QUEUE_BATCHES + 4) * SINCE_BATCH):
                live.add(Record(0.001 * k, SEND, b"5\r\ntoken\r\n"))
            request = make_request("GET", "/lab/events", [], b"", "http/1.1", feed=feed)
            with trio.fail_after(60), pytest.raises(AbortResponse, match="client too slow"):
                await viewer(request, response)
            assert feed.clients == 0
            # The feed goes on for everyone else.
            live.add(Record(1.0, CLOSE))
            live.end()
            nursery.cancel_scope.cancel()

    run(main, autojump=True)
    assert response.started == 200


def test_a_viewer_that_leaves_mid_stream_disturbs_no_one() -> None:
    gate = trio.Event()

    async def main() -> None:
        async with viewer_server(held_tokens(gate)) as server:
            leaving = await FeedReader.open(server)
            staying = await FeedReader.open(server)
            await leaving.next()
            await staying.next()
            client = await H11Client.connect(server)
            await client.get("/tokens?n=3&interval_ms=0")
            await leaving.until(lambda e: e.type == "row" and data(e)["text"])
            # The viewer goes away with a reset, in the middle of the stream it watches.
            sock = leaving.client.stream.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await leaving.client.stream.aclose()
            gate.set()
            _, parts, _ = await client.response()
            events = await staying.until(lambda e: e.type == "row" and data(e)["done"])
            with trio.fail_after(WAIT):
                await server.wait_connections(2)  # the staying viewer and the client
            assert server.feed is not None
            assert server.feed.clients == 1
        body = b"".join(p.data for p in parts).decode()
        assert body == "".join(tokens_for("hello", 3)) + f"\n{DONE}\n"
        shown = "".join(t for e in events if e.type == "row" for _, t in data(e)["text"])
        assert shown == body

    run(main)
