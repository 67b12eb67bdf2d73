"""The client side of each probe: the lab's own clients, tapped into the probe's trace.

Every client here records into the :class:`~lab.capture.tap.Recorder` it is given, the
one the relay records the upstream leg into, so both legs are on one clock. What is
measured is read from that trace afterwards (:mod:`lab.proxy.verdicts`); a probe returns
only what the trace cannot say (the events an EventSource dispatched, why it stopped).

- ``stream``: one request, its response read to the end (HTTP/1.1: the raw client of
  :mod:`lab.client.http1`; h2c: :mod:`lab.client.http2`);
- ``quiet``: the same, on an event stream with a long gap; a cut shows as a response
  that never completed;
- ``resume``: :func:`lab.client.sse.event_source`, which reconnects with
  ``Last-Event-ID`` after a cut, as a browser's EventSource does, until the server's 204;
- ``abort``: the client leaves :data:`~lab.proxy.experiments.ABORT_AFTER` seconds after
  its request: over HTTP/1.1 it closes the connection (what a browser does when a fetch
  is aborted on an HTTP/1.1 connection), over HTTP/2 it sends RST_STREAM(CANCEL) and
  keeps the connection open (what a browser does there); then it waits, bounded, for
  the proxy to end the upstream connection or for the upstream to finish.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

from lab.capture.relay import Relay
from lab.capture.tap import Recorder
from lab.client.http1 import open_connection
from lab.client.http2 import open_h2_connection
from lab.client.sse import event_source
from lab.proxy.experiments import (
    ABORT_AFTER,
    ABORT_INTERVAL_MS,
    ABORT_TOKENS,
    RESUME_EVENTS,
    Probe,
)

__all__ = ["ABORT_SETTLE", "PROBE_TIMEOUT", "ProbeOutcome", "run_probe"]

# The longest any probe may take: the longest (the resuming EventSource) takes about
# three seconds; a proxy that holds a response for ever is cut off here.
PROBE_TIMEOUT: Final = 30.0
# After an abort: the rest of the upstream's stream, plus two seconds for the proxy to
# close a connection it no longer needs. A proxy that keeps the upstream connection open
# longer is reported as not having passed the abort on.
ABORT_SETTLE: Final = ABORT_TOKENS * ABORT_INTERVAL_MS / 1000 + 2.0
# Connections the resuming EventSource may make: one per event, the 204, and a spare.
RESUME_CONNECTIONS: Final = RESUME_EVENTS + 2


@dataclass(slots=True)
class ProbeOutcome:
    """What the client saw that the trace does not hold."""

    error: str = ""  # the client's own error, if it stopped on one
    events: list[str] = field(default_factory=list)  # resume: ids of the events dispatched
    stopped: str = ""  # resume: why the EventSource stopped
    timed_out: bool = False  # the probe ran into PROBE_TIMEOUT


def _unique(target: str) -> str:
    """``stream=NAME`` made unique to this run: the lab's event log is per stream name,
    and a second run must not find the first run's events to replay."""
    return target.replace("&stream=", f"&stream=proxy-{secrets.token_hex(4)}-")


async def run_probe(
    probe: Probe, host: str, port: int, recorder: Recorder, relay: Relay
) -> ProbeOutcome:
    outcome = ProbeOutcome()
    with trio.move_on_after(PROBE_TIMEOUT) as scope:
        try:
            if probe.kind == "resume":
                await _resume(probe, host, port, recorder, outcome)
            elif probe.kind == "abort":
                await _abort(probe, host, port, recorder, relay)
            elif probe.http2:
                await _h2_request(probe, host, port, recorder)
            else:
                await _h1_request(probe, host, port, recorder)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.timed_out = scope.cancelled_caught
    return outcome


async def _h1_request(probe: Probe, host: str, port: int, recorder: Recorder) -> None:
    async with open_connection(host, port, recorder=recorder) as conn:
        await conn.send_request(probe.method, _unique(probe.target), probe.headers, probe.body)
        await conn.read_response()


async def _h2_request(probe: Probe, host: str, port: int, recorder: Recorder) -> None:
    async with open_h2_connection(host, port, recorder=recorder) as conn:
        sid = await conn.request(probe.method, _unique(probe.target), probe.headers, probe.body)
        await conn.finish(sid)
        await conn.close()


async def _resume(
    probe: Probe, host: str, port: int, recorder: Recorder, outcome: ProbeOutcome
) -> None:
    result = await event_source(
        host,
        port,
        _unique(probe.target),
        headers=probe.headers,
        max_connections=RESUME_CONNECTIONS,
        recorder=recorder,
    )
    outcome.events = [event.last_event_id for event in result.events]
    outcome.stopped = result.stopped


async def _settle(relay: Relay, before: int) -> None:
    """Wait, bounded, until the proxy stops sending on one more upstream connection than
    ``before`` (its FIN or a reset: it gave up on the upstream), or no upstream connection
    is left."""
    await relay.wait_until(lambda: not relay.open or relay.peer_finished > before, ABORT_SETTLE)


async def _abort(probe: Probe, host: str, port: int, recorder: Recorder, relay: Relay) -> None:
    target = _unique(probe.target)
    if probe.http2:
        async with open_h2_connection(host, port, recorder=recorder) as h2:
            sid = await h2.request(probe.method, target, probe.headers)
            with trio.move_on_after(ABORT_AFTER):
                await h2.finish(sid)
            before = relay.peer_finished
            await h2.reset(sid)
            # The connection stays open, as a browser's does for its other streams.
            await _settle(relay, before)
            await h2.close()
        return
    async with open_connection(host, port, recorder=recorder) as conn:
        await conn.send_request(probe.method, target, probe.headers)
        with trio.move_on_after(ABORT_AFTER):
            await conn.read_response()
        before = relay.peer_finished
    await _settle(relay, before)
