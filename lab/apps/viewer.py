"""The live wire viewer's endpoints, under ``/lab/``: the page, its feed, the downloads.

- ``GET /lab/``: the page (lab.apps.viewer_page), plain JavaScript on the browser's own
  EventSource.
- ``GET /lab/events``: the server's live feed (lab.capture.live) as Server-Sent Events
  (WHATWG HTML §9.2), the lab carrying its own wire on its own SSE. Every page gets its
  events through a bounded per-client queue (lab.apps.sse, the slow-reader policy): a page
  that stops reading is cut off, never buffered for. A page that reconnects sends the last
  id it saw (``Last-Event-ID``, §9.2.4) and gets what it missed from the feed's bounded
  log, or a fresh ``hello`` snapshot when the log no longer has it.
- ``GET /lab/connections/N.trace`` and ``.pcapng``: what the feed keeps of connection
  ``N``, as a trace file (lab.capture.fileformat) or annotated pcapng (lab.capture.pcapng).

Requests under ``/lab/`` never show in the feed: the feed drops a connection as soon as
it carries one (see lab.capture.live). A server without the viewer
(``Server(viewer=False)``, the default outside ``lab serve``) answers 404.
"""

from __future__ import annotations

import re
from typing import Final

import trio

from lab.apps.endpoints import FIXED_PIECE
from lab.apps.interface import HTTPError, Request, ResponseStream
from lab.apps.sse import open_event_channel
from lab.apps.viewer_page import VIEWER_HTML
from lab.capture.annotate import annotate
from lab.capture.fileformat import dumps
from lab.capture.live import VIEWER_PATH, FeedBusy, LiveFeed
from lab.capture.pcapng import to_pcapng
from lab.capture.trace import Trace

__all__ = ["BATCH_BYTES", "HEARTBEAT_MS", "QUEUE_BATCHES", "RETRY_MS", "viewer"]

# A comment when the feed is quiet, so that proxies keep the stream open (their idle
# timeouts are commonly 60 s).
HEARTBEAT_MS: Final = 15_000
# How long a page's EventSource waits before reconnecting (WHATWG HTML §9.2.6 "retry").
RETRY_MS: Final = 1000
# Feed events written at once (one chunk, one DATA frame): the feed makes an event per
# record, and a write per event cost the server three times the traffic it showed
# (one keep-alive connection of 200-token streams: 10 ms a request without a page, 30 ms
# with one reading event by event). A row event is at most ~30 KiB, so one always fits.
BATCH_BYTES: Final = 64 * 1024
# Writes queued for one page (lab.apps.sse's bounded queue, slow-reader policy): at most
# 8 x 64 KiB held for a page; one that leaves them unread for QUEUE_FULL_GRACE is cut off.
QUEUE_BATCHES: Final = 8
# A connection number in a download's path: at most 12 digits (a server accepts far
# fewer connections), so that no long number is ever converted.
_DOWNLOAD: Final = re.compile(rf"{VIEWER_PATH}/connections/(\d{{1,12}})\.(trace|pcapng)")


async def viewer(request: Request, response: ResponseStream) -> None:
    """Everything under ``/lab``: the page, the feed, the downloads."""
    path = request.path
    if path == VIEWER_PATH:
        # The page loads its feed and downloads relative to /lab/.
        await response.start(308, [("location", f"{VIEWER_PATH}/"), ("content-length", "0")])
        await response.end()
        return
    feed = request.feed
    if feed is None:
        raise HTTPError(
            404,
            "the live wire viewer is off on this server: Server(viewer=True) turns it on "
            "(lab serve does)\n",
        )
    if path == f"{VIEWER_PATH}/":
        body = VIEWER_HTML.encode("utf-8")
        await response.start(
            200,
            [
                ("content-type", "text/html; charset=utf-8"),
                ("content-length", str(len(body))),
                ("cache-control", "no-store"),
            ],
        )
        await response.send(body)
        await response.end()
    elif path == f"{VIEWER_PATH}/events":
        await _events(request, response, feed)
    elif match := _DOWNLOAD.fullmatch(path):
        await _download(response, feed, int(match[1]), match[2])
    else:
        raise HTTPError(404, f"nothing at {path}; the viewer is at {VIEWER_PATH}/\n")


async def _events(request: Request, response: ResponseStream, feed: LiveFeed) -> None:
    # Only subscribe() raises FeedBusy, before the response starts.
    try:
        with feed.subscribe():
            await _follow(request, response, feed)
    except FeedBusy as exc:
        raise HTTPError(503, f"{exc}\n", [("retry-after", "5")]) from None


async def _follow(request: Request, response: ResponseStream, feed: LiveFeed) -> None:
    seq, hello = feed.start(request.header("last-event-id"))
    async with open_event_channel(
        response, heartbeat_ms=HEARTBEAT_MS, queue_size=QUEUE_BATCHES
    ) as channel:
        await channel.put(f"retry: {RETRY_MS}\n\n".encode("ascii"))
        if hello:
            await channel.put(feed.hello())
        while not feed.closed:
            batch = feed.since(seq)
            if batch is None:
                # Fell behind the log: start again from what the server keeps.
                await channel.put(feed.hello())
                seq = feed.first_seq - 1
                continue
            if not batch:
                await feed.wait_beyond(seq)
                continue
            seq = batch[-1][0]
            pending: list[bytes] = []
            size = 0
            for _, data in batch:
                if pending and size + len(data) > BATCH_BYTES:
                    await channel.put(b"".join(pending))
                    pending, size = [], 0
                pending.append(data)
                size += len(data)
            await channel.put(b"".join(pending))


async def _download(response: ResponseStream, feed: LiveFeed, number: int, kind: str) -> None:
    live = feed.connection(number)
    if live is None:
        raise HTTPError(
            404,
            f"connection {number} is not kept by the live viewer (dropped over a limit, "
            "the viewer's own, or never accepted)\n",
        )
    trace = live.trace()
    try:
        with feed.download():
            await _send_file(response, trace, kind)
    except FeedBusy as exc:  # only download() raises it, before the response starts
        raise HTTPError(503, f"{exc}\n", [("retry-after", "1")]) from None


async def _send_file(response: ResponseStream, trace: Trace, kind: str) -> None:
    # Formatting is CPU work in proportion to the bytes kept: off the event loop.
    if kind == "trace":
        body = (await trio.to_thread.run_sync(dumps, trace)).encode("utf-8")
        content_type = "text/plain; charset=utf-8"
    else:
        body = await trio.to_thread.run_sync(_pcapng, trace)
        content_type = "application/octet-stream"
    await response.start(
        200,
        [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("content-disposition", f'attachment; filename="{trace.name}.{kind}"'),
            ("cache-control", "no-store"),
        ],
    )
    view = memoryview(body)
    for start in range(0, len(body), FIXED_PIECE):
        await response.send(bytes(view[start : start + FIXED_PIECE]))
    await response.end()


def _pcapng(trace: Trace) -> bytes:
    """The pcapng of ``trace``, each packet commented with what its bytes mean."""
    notes = {ac.index: ac.record_notes() for ac in annotate(trace)}

    def comment(conn_index: int, record_index: int) -> str | None:
        found = notes.get(conn_index, {}).get(record_index)
        return "; ".join(found) if found else None

    return to_pcapng(trace, annotations=comment)
