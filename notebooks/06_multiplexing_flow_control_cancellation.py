# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Multiplexing, flow control and cancellation
#
# Notebook 05 took one HTTP/2 connection apart frame by frame. This one uses what the
# frame layer makes possible, with real runs against the lab server:
#
# 1. **multiplexing**: several token streams on one connection, their DATA frames
#    interleaved, next to HTTP/1.1 pipelining, where the second response has to wait;
# 2. **flow control**: a receiver that allows only a few bytes at a time, and a server
#    that sends exactly that much and waits for WINDOW_UPDATE;
# 3. **cancellation**: RST_STREAM(CANCEL) stops one stream and leaves the others running;
# 4. **REFUSED_STREAM**: a stream over the server's concurrency limit is turned away on its
#    own, and the connection carries on.
#
# Every table below is computed from the traces the lab's clients recorded: which frame
# arrived (or left) when, decoded by `lab.capture.annotate`.

# %%
from itertools import pairwise

import h2.exceptions
import matplotlib.pyplot as plt
import trio
from h2.settings import SettingCodes

from lab.capture.annotate import annotate
from lab.capture.tap import Recorder
from lab.capture.trace import SEND, Trace
from lab.capture.views import DATA_KINDS
from lab.client.http1 import open_connection
from lab.client.http2 import open_h2_connection
from lab.notebook import run, start_server, stop_server
from lab.server import Limits
from lab.wire.h2frames import (
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
    error_name,
)
from lab.wire.http1 import StatusLine

server = start_server()  # a lab server in a background thread; re-running this is safe
print("lab server listening on", server.url)


def frames(trace):
    """(t, from_client, frame) for every frame of a one-connection HTTP/2 trace, in the
    order the client's socket sent or received them (t: seconds since connect)."""
    (connection,) = annotate(trace)
    return [
        (item.t, item.from_client, item.segment)
        for item in connection.items
        if isinstance(item.segment, Frame)
    ]


def short(frame, settings=("INITIAL_WINDOW_SIZE", "MAX_CONCURRENT_STREAMS")):
    """A frame's note, shortened: HEADERS without the HPACK details, SETTINGS with only
    the named settings (and how many others there were)."""
    if isinstance(frame, HeadersFrame) or (isinstance(frame, SettingsFrame) and frame.ack):
        return frame.note().split(":")[0]
    if isinstance(frame, SettingsFrame) and frame.settings:
        shown = [f"{s.name}={s.value}" for s in frame.settings if s.name in settings]
        others = len(frame.settings) - len(shown)
        return f"SETTINGS stream 0 (connection): {', '.join(shown)} and {others} more"
    return frame.note()


def print_frames(rows):
    """One line per frame: ms since connect, direction, what it is."""
    for t, from_client, frame in rows:
        arrow = "C→S" if from_client else "S→C"
        print(f"{t * 1000:8.2f} ms  {arrow}  {short(frame)}")


# %% [markdown]
# ## 1. Three token streams on one connection
#
# Three `GET /tokens` requests go out back to back on one connection, each with its own
# number of tokens and pause between tokens. Each gets a stream of its own (1, 3, 5), and
# the server runs their handlers at the same time; each `send` of each handler becomes a
# DATA frame on that handler's stream, as soon as it is made.

# %%
STREAMS = {  # prompt: (tokens, interval_ms)
    "fast": (8, 15),
    "medium": (5, 25),
    "slow": (3, 45),
}


async def three_streams():
    recorder = Recorder(Trace(name="h2-three-streams"))
    async with open_h2_connection(server.host, server.port, recorder=recorder) as conn:
        ids = {}
        for prompt, (n, interval_ms) in STREAMS.items():
            target = f"/tokens?n={n}&interval_ms={interval_ms}&prompt={prompt}"
            ids[await conn.request("GET", target)] = prompt
        await conn.finish(*ids)
        await conn.close()
    return ids, conn.responses, recorder.trace


stream_names, multi_responses, multi_trace = run(three_streams)
multi_frames = frames(multi_trace)
requests_at = next(t for t, c, f in multi_frames if c and isinstance(f, HeadersFrame))
data = [(t, f) for t, c, f in multi_frames if not c and isinstance(f, DataFrame)]

print(f"{'stream':>6} {'prompt':8} {'status':>6} {'DATA frames':>11} {'bytes':>5}")
for sid, prompt in stream_names.items():
    response = multi_responses[sid]
    print(
        f"{sid:6} {prompt:8} {response.status:6} {len(response.frames):11} {len(response.body):5}"
    )
order = [f.stream_id for _, f in data]
switches = sum(a != b for a, b in pairwise(order))
print("\nstream of each DATA frame, in the order they arrived:")
print(" ".join(str(s) for s in order))
print(f"{len(order)} DATA frames; the next frame is on another stream {switches} times")
# One stream after another would switch streams only len(stream_names) - 1 times.
print("interleaved:", switches > len(stream_names) - 1)

# %% [markdown]
# One row per stream, one marker per DATA frame at the time its read returned (ms since
# the requests were sent); the cross is the empty DATA frame with END_STREAM. Below, the
# bytes each stream had received so far.

# %%
fig, (ax_frames, ax_bytes) = plt.subplots(
    2, 1, figsize=(9, 4.5), sharex=True, height_ratios=[1, 1.4]
)
for row, (sid, prompt) in enumerate(stream_names.items()):
    n, interval_ms = STREAMS[prompt]
    mine = [(t, f) for t, f in data if f.stream_id == sid]
    xs = [(t - requests_at) * 1000 for t, f in mine if f.data]
    ends = [(t - requests_at) * 1000 for t, f in mine if "END_STREAM" in f.flag_names]
    color = f"C{row}"
    ax_frames.plot(xs, [row] * len(xs), "|", markersize=14, markeredgewidth=2, color=color)
    ax_frames.plot(ends, [row] * len(ends), "x", markersize=8, color=color)
    total, ys = 0, []
    for _, f in mine:
        total += len(f.data)
        ys.append(total)
    label = f"stream {sid} ({n} tokens, {interval_ms} ms apart)"
    times = [(t - requests_at) * 1000 for t, _ in mine]
    ax_bytes.step(times, ys, where="post", marker="o", markersize=3, color=color, label=label)
ax_frames.set_yticks(range(len(stream_names)), [f"stream {s}" for s in stream_names])
ax_frames.set_ylim(-0.7, len(stream_names) - 0.3)
ax_frames.set_title("DATA frames of three streams on one HTTP/2 connection")
ax_frames.grid(True, axis="x", alpha=0.3)
ax_bytes.set(xlabel="ms since the requests were sent", ylabel="bytes received")
ax_bytes.grid(True, alpha=0.3)
ax_bytes.legend(loc="upper left", fontsize="small")
plt.show()

# %% [markdown]
# Each stream keeps its own pace and ends when its handler ends; the fast stream does not
# wait for the slow one, nor the other way round. On the wire the frames of the three are
# simply mixed, each labelled with its stream identifier.
#
# ## 2. The same two replies: HTTP/1.1 pipelining and HTTP/2
#
# HTTP/1.1 can also send a second request before the first response has arrived
# (pipelining: here both requests go out in one write), but responses carry no stream
# identifier: they must come back in the order of the requests, each whole before the
# next starts. So the server holds the second reply back until the first is done, however
# ready it is. The same two requests, both ways:

# %%
N, INTERVAL_MS = 5, 25
PAIR = [f"/tokens?n={N}&interval_ms={INTERVAL_MS}&prompt={p}" for p in ("first", "second")]


async def pipelined():
    recorder = Recorder(Trace(name="http/1.1 pipelined"))
    async with open_connection(server.host, server.port, recorder=recorder) as conn:
        host = f"{server.host}:{server.port}"
        await conn.send_raw(
            f"GET {PAIR[0]} HTTP/1.1\r\nhost: {host}\r\n\r\n"
            f"GET {PAIR[1]} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode()
        )
        await conn.read_until_close()
    return recorder.trace


async def multiplexed():
    recorder = Recorder(Trace(name="h2 multiplexed"))
    async with open_h2_connection(server.host, server.port, recorder=recorder) as conn:
        ids = [await conn.request("GET", target) for target in PAIR]
        await conn.finish(*ids)
        await conn.close()
    return recorder.trace


def h1_arrivals(trace):
    """Per response, (t, size) of each piece of body data, and when the requests left."""
    (connection,) = annotate(trace)
    sent_at = next(r.t for r in connection.conn.records if r.kind == SEND)
    per_response = []
    for item in connection.items:
        if item.from_client:
            continue
        if isinstance(item.segment, StatusLine):
            per_response.append([])
        elif item.segment.kind in DATA_KINDS:
            per_response[-1].append((item.t, item.segment.nbytes))
    return sent_at, per_response


def h2_arrivals(trace):
    rows = frames(trace)
    sent_at = next(t for t, c, f in rows if c and isinstance(f, HeadersFrame))
    per_stream = {}
    for t, from_client, f in rows:
        if isinstance(f, HeadersFrame) and from_client:
            per_stream[f.stream_id] = []
        elif isinstance(f, DataFrame) and f.data:
            per_stream[f.stream_id].append((t, len(f.data)))
    return sent_at, list(per_stream.values())


compared = {
    "HTTP/1.1 pipelined": h1_arrivals(run(pipelined)),
    "HTTP/2 multiplexed": h2_arrivals(run(multiplexed)),
}
print(f"{'':20} {'response':>8} {'first byte ms':>13} {'last byte ms':>12} {'pieces':>6}")
for name, (sent_at, per_response) in compared.items():
    for i, arrivals in enumerate(per_response, 1):
        first, last = (arrivals[0][0] - sent_at) * 1000, (arrivals[-1][0] - sent_at) * 1000
        print(f"{name:20} {i:8} {first:13.1f} {last:12.1f} {len(arrivals):6}")
for name, (_, (one, two)) in compared.items():
    waited = two[0][0] >= one[-1][0]
    print(f"{name}: the second reply started after the first had ended: {waited}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True, sharex=True)
for ax, (name, (sent_at, per_response)) in zip(axes, compared.items(), strict=True):
    for i, arrivals in enumerate(per_response, 1):
        xs = [0.0] + [(t - sent_at) * 1000 for t, _ in arrivals]
        ys = [0]
        for _, size in arrivals:
            ys.append(ys[-1] + size)
        markers = list(range(1, len(xs)))  # not on the starting point
        ax.step(xs, ys, where="post", marker="o", markersize=3, markevery=markers)
        ax.lines[-1].set_label(f"response {i}")
    ax.set(title=name, xlabel="ms since the requests were sent")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
axes[0].set_ylabel("body bytes received")
plt.show()

# %% [markdown]
# On the left, the second response's line stays flat until the first one is complete:
# head-of-line blocking. Its tokens were no slower to make; the server had to hold them.
# On the right, both replies grow side by side from the start, and both are done at about
# the time one of them takes alone.
#
# ## 3. Flow control: a tiny window
#
# Every stream (and the connection as a whole) has a flow-control window: how many bytes
# of DATA the sender may still send. The receiver sets its initial size with
# `SETTINGS_INITIAL_WINDOW_SIZE`; each DATA frame uses up its length, and the receiver
# gives credit back with WINDOW_UPDATE frames. A reader that cannot keep up (a slow
# consumer, a proxy with a full buffer) stops the sender this way.
#
# The lab's client here announces a tiny window, turns off its automatic credit
# (`auto_window = False`), and asks for a fixed-size body. Each time the window is used
# up it reads on for a while (nothing should come), then opens the window by its initial
# size with `open_window`, which sends a WINDOW_UPDATE for the stream.

# %%
WINDOW = 16
SIZE = 40  # not a multiple of WINDOW: the last frame is a short one
QUIET_MS = 25  # how long the client reads with the window at 0 before opening it


async def read_for(conn, seconds):
    """Take whatever arrives on ``conn`` for ``seconds``."""
    with trio.move_on_after(seconds):
        while True:
            await conn.pump()


async def small_window():
    recorder = Recorder(Trace(name="h2-small-window"))
    settings = {SettingCodes.INITIAL_WINDOW_SIZE: WINDOW}
    async with open_h2_connection(
        server.host, server.port, recorder=recorder, settings=settings
    ) as conn:
        conn.auto_window = False
        sid = await conn.request("GET", f"/fixed?size={SIZE}")
        response = conn.responses[sid]
        credit = WINDOW
        while_closed = []  # bytes that arrived while the window was 0 (must be 0)
        while not response.ended:
            before = len(response.body)
            await conn.pump()
            credit -= len(response.body) - before
            if credit == 0 and not response.ended:
                before = len(response.body)
                await read_for(conn, QUIET_MS / 1000)
                while_closed.append(len(response.body) - before)
                await conn.open_window(sid, WINDOW)
                credit += WINDOW
        await conn.close()
    return response, while_closed, recorder.trace


fc_response, while_closed, fc_trace = run(small_window)
print(f"status {fc_response.status}, body {len(fc_response.body)} bytes: {fc_response.body!r}")
print(f"bytes that arrived during each {QUIET_MS} ms wait at window 0: {while_closed}")

# %% [markdown]
# The same run as a table, computed from the trace alone: the initial window is read
# from the client's SETTINGS frame; each DATA frame from the server takes its length off
# the stream's window and the connection's, and each WINDOW_UPDATE from the client adds
# its increment (to the stream's window, or the connection's on stream 0). The last
# column is the time since the previous WINDOW_UPDATE, for the first DATA frame after it.

# %%
fc_frames = frames(fc_trace)
client_settings = next(f for _, c, f in fc_frames if c and isinstance(f, SettingsFrame))
initial = {s.name: s.value for s in client_settings.settings}["INITIAL_WINDOW_SIZE"]
CONNECTION_WINDOW = 65_535  # RFC 9113 §6.9.2; SETTINGS do not change it
stream_window, connection_window = None, CONNECTION_WINDOW
fits = True
last_update = None
print(f"{'ms':>8}  dir  {'frame':56} {'stream':>6} {'conn':>6} {'after WU':>8}")
for t, from_client, frame in fc_frames:
    after = ""
    if isinstance(frame, HeadersFrame) and from_client:
        stream_window = initial  # a new stream starts with the initial window
    elif isinstance(frame, DataFrame) and not from_client:
        fits = fits and frame.length <= min(stream_window, connection_window)
        stream_window -= frame.length
        connection_window -= frame.length
        if last_update is not None and frame.length:
            after, last_update = f"{(t - last_update) * 1000:8.2f}", None
    elif isinstance(frame, WindowUpdateFrame) and from_client:
        if frame.stream_id:
            stream_window += frame.increment
        else:
            connection_window += frame.increment
        last_update = t
    window = "" if stream_window is None else stream_window
    arrow = "C→S" if from_client else "S→C"
    note = short(frame, settings=("INITIAL_WINDOW_SIZE",)).replace(" (connection)", "")
    print(f"{t * 1000:8.2f}  {arrow}  {note:56} {window!s:>6} {connection_window:6} {after:>8}")
print(f"\ninitial stream window from the client's SETTINGS: {initial}")
print(f"every DATA frame fit in the window it was sent into: {fits}")

# %% [markdown]
# The server sent exactly the window and stopped: the stream window column reaches 0 and
# stays there through the client's wait, and the next DATA frame comes only after the
# WINDOW_UPDATE, one loopback round trip later (the last column). The last piece is
# shorter than the window: the body was done. The empty DATA frame with END_STREAM needs
# no window. The connection window only goes down here: the client gave credit back for
# the stream alone, and the connection's window is far larger than this body.
#
# ## 4. Cancellation: RST_STREAM(CANCEL)
#
# A chat UI's "stop" button, or a user closing the tab, should stop the server generating
# tokens. In HTTP/1.1 the only way is to close the connection. In HTTP/2 the client resets
# just that stream with RST_STREAM, and the connection, with every other stream on it,
# carries on.
#
# Two streams: a long one that will be cancelled after three DATA frames, and a short one
# beside it. After the reset the client sends a PING and waits for its ACK. The server
# answers frames in order, so anything it sent before it read the RST_STREAM arrives
# before the PING's ACK; anything on the cancelled stream after the ACK would mean the
# server kept going.

# %%
LONG_N = 40
LONG = f"/tokens?n={LONG_N}&interval_ms=20&prompt=cancel-me"
SHORT = "/tokens?n=8&interval_ms=20&prompt=keep-going"


async def cancel_one():
    recorder = Recorder(Trace(name="h2-cancel"))
    async with open_h2_connection(server.host, server.port, recorder=recorder) as conn:
        doomed = await conn.request("GET", LONG)
        other = await conn.request("GET", SHORT)
        await conn.pump_until(lambda: len(conn.responses[doomed].frames) >= 3)
        await conn.reset(doomed)  # RST_STREAM(CANCEL)
        await conn.ping()  # PING, and read until its ACK
        await conn.finish(other)
        await conn.close()
    return conn.responses[doomed], conn.responses[other], recorder.trace


doomed, other, cancel_trace = run(cancel_one)
cancel_frames = frames(cancel_trace)
print_frames(cancel_frames)


# %%
def data_times(rows, stream_id):
    """When each DATA frame of ``stream_id`` arrived."""
    return [t for t, _, f in rows if isinstance(f, DataFrame) and f.stream_id == stream_id]


reset_at = next(t for t, c, f in cancel_frames if c and isinstance(f, RstStreamFrame))
ack_at = next(t for t, c, f in cancel_frames if not c and isinstance(f, PingFrame) and f.ack)
doomed_data = data_times(cancel_frames, doomed.stream_id)
other_data = data_times(cancel_frames, other.stream_id)
print(f"RST_STREAM(CANCEL) for stream {doomed.stream_id} sent at {reset_at * 1000:.2f} ms")
print(f"PING ACK received at {ack_at * 1000:.2f} ms")
before = sum(t < reset_at for t in doomed_data)
in_flight = sum(reset_at <= t <= ack_at for t in doomed_data)
late = sum(t > ack_at for t in doomed_data)
print(f"\nstream {doomed.stream_id}, the cancelled one:")
print(f"  DATA frames before the RST_STREAM: {before}")
print(f"  between the RST_STREAM and the PING ACK (already on their way): {in_flight}")
print(f"  after the PING ACK, DATA frames on the cancelled stream: {late}")
print(f"  body received: {doomed.body!r}, of a reply of {LONG_N} tokens")
after_reset = sum(t > reset_at for t in other_data)
print(f"\nstream {other.stream_id}, the other one:")
print(f"  DATA frames after the reset of stream {doomed.stream_id}: {after_reset}")
print(f"  status {other.status}, body {other.body!r}")
completed = other.ended and other.body.endswith(b"[DONE]\n")
print(f"stream {other.stream_id} completed: {completed}")

# %% [markdown]
# The lab's server cancels the handler of a reset stream (its `trio` cancel scope), so
# the generator stopped within one loopback round trip, while the other stream on the
# same connection ran to its END_STREAM.
#
# ## 5. REFUSED_STREAM: one stream too many
#
# `SETTINGS_MAX_CONCURRENT_STREAMS` limits how many streams the *other* side may have open
# at once. A second lab server is started with a low limit, `h2_max_concurrent_streams`
# in its `Limits` (`start_server` passes them on to the server). Its SETTINGS frame says
# so, and h2, the client's protocol library, obeys it: it will not even send a request
# over the limit.

# %%
limited = start_server("limited", limits=Limits(h2_max_concurrent_streams=2))
TARGET = "/tokens?n=3&interval_ms=20&prompt=limited"


async def over_the_limit():
    recorder = Recorder(Trace(name="h2-refused"))
    async with open_h2_connection(limited.host, limited.port, recorder=recorder) as conn:
        advertised = conn.conn.remote_settings.max_concurrent_streams
        print("the server's MAX_CONCURRENT_STREAMS:", advertised)
        ids = [await conn.request("GET", TARGET) for _ in range(2)]
        try:
            await conn.request("GET", TARGET)
        except h2.exceptions.TooManyStreamsError as exc:
            print(f"h2 will not open a third stream: {exc!r}")
        # A client that has not seen (or ignores) the server's SETTINGS: make h2 believe
        # the limit is higher, open the third stream, then put the real limit back.
        conn.conn.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 100
        conn.conn.remote_settings.acknowledge()
        ids.append(await conn.request("GET", TARGET))
        conn.conn.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = advertised
        conn.conn.remote_settings.acknowledge()
        await conn.finish(*ids)
        # The connection lives on: once the first two are done, the refused request is
        # safe to retry, on a new stream of the same connection.
        ids.append(await conn.request("GET", TARGET))
        await conn.finish(ids[-1])
        await conn.close()
    return [conn.responses[s] for s in ids], recorder.trace


refused_responses, refused_trace = run(over_the_limit)
refused_frames = frames(refused_trace)
print()
print_frames(refused_frames)

# %%
print(f"{'stream':>6} {'status':>6} {'reset by the server':20} body")
for response in refused_responses:
    reset = "-" if response.reset_code is None else error_name(response.reset_code)
    print(f"{response.stream_id:6} {response.status or '-':>6} {reset:20} {response.body!r}")
third, retry = refused_responses[2], refused_responses[3]
asked = next(
    t
    for t, c, f in refused_frames
    if c and isinstance(f, HeadersFrame) and f.stream_id == third.stream_id
)
rst_at, rst = next((t, f) for t, _, f in refused_frames if isinstance(f, RstStreamFrame))
print(f"\n{rst.note()}, {(rst_at - asked) * 1000:.2f} ms after the stream's HEADERS")
print(f"the retry, stream {retry.stream_id}, on the same connection: status {retry.status},")
print(f"  ended: {retry.ended}, body {retry.body!r}")

# %% [markdown]
# The refusal is a stream error, not a connection error: the two streams within the limit
# ran to their end, and the refused request, retried on the same connection once there
# was room, got its reply. REFUSED_STREAM promises that the server did nothing with the
# request (RFC 9113 §8.7), which is what makes the retry safe even for a non-idempotent
# request. (h2 on its own would answer one stream too many with GOAWAY, ending every
# stream on the connection; the lab's server enforces the limit per stream itself.)
#
# ## Clean up
#
# Stop both servers.

# %%
stop_server("limited")
stop_server()
