"""What the probe says to the server: one request over HTTP/1.1 or HTTP/2, or an EventSource.

One request (:func:`probe_once`) goes on one new connection (:mod:`lab.probe.connect`):

- HTTP/1.1 (RFC 9112) through the lab's raw client, :class:`lab.client.http1.ClientConnection`
  (on h11), which here lets ``-H`` replace its Host and User-Agent fields as curl does;
- HTTP/2 (RFC 9113) when TLS negotiated ``h2`` by ALPN or, on ``http://``, with prior
  knowledge (``--http2``, h2c, §3.3), through :class:`lab.client.http2.H2ClientConnection`
  (on h2): the SETTINGS exchange, then one stream whose ``:scheme`` is the URL's (§8.3.1),
  header names in lower case, the connection-specific fields HTTP/2 forbids left out
  (§8.2.2), the body sent as flow control allows; then GOAWAY.

With ``--sse`` (:func:`probe_event_source`) the probe is an EventSource (WHATWG HTML
§9.2), following the rules :mod:`lab.client.sse` implements, and with its limits: it asks
for ``text/event-stream`` with ``Cache-Control: no-cache``; a status other than 200 or
another Content-Type fails it, no reconnect (204 is a server's "stop"); when the body ends
or the connection breaks it reconnects after the reconnection time (3 s, or what the
stream's ``retry:`` said), sending ``Last-Event-ID`` once an event carried an id. Each
attempt is a new connection (a browser may reuse an HTTP/2 connection for it). It stops
after :data:`lab.client.sse.MAX_CONNECTIONS` connections or ``max_time`` seconds.

Every wait is bounded: each read by the clients' own timeouts
(:data:`lab.client.http1.CLIENT_TIMEOUT`), the whole run by ``max_time`` when given.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import h2.exceptions
import h11
import trio

from lab.capture.tap import Recorder
from lab.client.http1 import CLIENT_TIMEOUT, USER_AGENT, ClientConnection
from lab.client.http2 import H2ClientConnection, H2Response
from lab.client.sse import DEFAULT_RECONNECTION_MS, MAX_CONNECTIONS
from lab.probe.connect import Opened, ProbeError, Target, open_tapped
from lab.probe.live import LivePrinter
from lab.wire.sse import Dispatch, SSEDecoder

__all__ = [
    "H2_FORBIDDEN",
    "Answer",
    "Outcome",
    "Request",
    "Settings",
    "probe_event_source",
    "probe_once",
]

# Fields HTTP/2 forbids (RFC 9113 §8.2.2): they describe one HTTP/1.1 connection. Host
# becomes :authority (§8.3.1).
H2_FORBIDDEN: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
)

# A body piece seen: returns True to stop reading there.
OnPiece = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Settings:
    """How to connect: TLS context for https, h2c for http, the overall time limit."""

    context: ssl.SSLContext | None = None  # for https
    http2: bool = False  # prior knowledge on http:// (--http2)
    max_time: float | None = None
    max_connections: int = MAX_CONNECTIONS


@dataclass(slots=True)
class Answer:
    """One response, as far as it came."""

    protocol: str
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_bytes: int = 0
    complete: bool = False
    read: bool = True  # False: the body was left unread (--sse: a head that fails it)
    started: float = 0.0  # time.monotonic() when the request was sent
    first_byte: float | None = None  # ... when the head arrived
    ended: float | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass(slots=True)
class Outcome:
    answers: list[Answer] = field(default_factory=list)
    events: int = 0  # --sse: events dispatched
    stopped: str = ""  # --sse: why it stopped
    error: str = ""  # what went wrong after connecting, in one line, or ""


class _H1(ClientConnection):
    """The lab's HTTP/1.1 client, with Host and User-Agent only where ``-H`` gave none."""

    async def send_request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        names = {k.lower() for k, _ in headers}
        fields = [(k, v) for k, v in (("host", self._host), ("user-agent", USER_AGENT))
                  if k not in names]  # fmt: skip
        fields += headers
        if body and not names & {"content-length", "transfer-encoding"}:
            fields.append(("content-length", str(len(body))))
        data = self._h11.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            data += self._h11.send(h11.Data(data=body))
        data += self._h11.send(h11.EndOfMessage())
        with trio.fail_after(CLIENT_TIMEOUT):
            await self._stream.send_all(data)


# What a request's head is met with: True reads the body, False stops there (--sse: a
# status or Content-Type that fails the EventSource).
OnHead = Callable[[Answer], bool]


@dataclass(frozen=True, slots=True)
class _Run:
    """One probe run: where to, how, and where its records go."""

    where: Target
    settings: Settings
    recorder: Recorder
    printer: LivePrinter
    on_head: OnHead | None = None
    on_piece: OnPiece | None = None


async def _exchange_h1(run: _Run, opened: Opened, request: Request, answer: Answer) -> None:
    where, recorder, on_head, on_piece = run.where, run.recorder, run.on_head, run.on_piece
    conn = _H1(opened.stream, where.authority, recorder)
    answer.started = time.monotonic()
    await conn.send_request(request.method, where.target, request.headers, request.body)
    response = await conn.read_head()
    answer.first_byte = time.monotonic()
    answer.status, answer.reason, answer.headers = (
        response.status, response.reason, response.headers,
    )  # fmt: skip
    if on_head is not None and not on_head(answer):
        answer.read = False
        return

    def piece(data: bytes) -> bool:
        answer.body_bytes += len(data)
        return on_piece is not None and on_piece(data)

    await conn.read_body(response, piece)
    answer.complete = response.complete
    answer.ended = time.monotonic()


async def _exchange_h2(run: _Run, opened: Opened, request: Request, answer: Answer) -> None:
    where, recorder, on_head, on_piece = run.where, run.recorder, run.on_head, run.on_piece
    conn = H2ClientConnection(opened.stream, where.authority, recorder)
    await conn.handshake()
    answer.started = time.monotonic()
    sid = await _send_h2(conn, where, request)
    response = conn.responses[sid]
    seen = 0
    head_seen = False
    try:
        while not (response.ended or response.reset_code is not None):
            await conn.pump()
            if response.status and not head_seen:
                head_seen = True
                answer.first_byte = time.monotonic()
                answer.status = response.status
                answer.headers = [(k, v) for k, v in response.headers if not k.startswith(":")]
                if on_head is not None and not on_head(answer):
                    answer.read = False
                    return
            for _, data in response.frames[seen:]:
                seen += 1
                answer.body_bytes += len(data)
                if on_piece is not None and on_piece(data):
                    return
            if conn.closed or conn.h2_stopped or _refused(conn, sid):
                break
        answer.complete = response.ended
        answer.ended = time.monotonic()
        if response.reset_code is not None:
            raise ProbeError(f"the server reset the stream (RST_STREAM, error code "
                             f"{response.reset_code})")  # fmt: skip
        if conn.h2_stopped:
            raise ProbeError(f"HTTP/2 error: {conn.h2_stopped}")
        if not response.ended:
            raise ProbeError("the server closed the connection before the response ended")
    finally:
        if not conn.closed:
            with trio.move_on_after(CLIENT_TIMEOUT):
                await conn.close()  # GOAWAY(NO_ERROR), RFC 9113 §6.8


def _refused(conn: H2ClientConnection, sid: int) -> bool:
    """A GOAWAY that leaves our stream out: it will never be answered (RFC 9113 §6.8)."""
    return conn.goaway is not None and (conn.goaway.last_stream_id or 0) < sid


async def _send_h2(conn: H2ClientConnection, where: Target, request: Request) -> int:
    names = {k.lower() for k, _ in request.headers}
    authority = next((v for k, v in request.headers if k.lower() == "host"), where.authority)
    fields = [
        (":method", request.method), (":scheme", where.scheme), (":authority", authority),
        (":path", where.target),
    ]  # fmt: skip
    if "user-agent" not in names:
        fields.append(("user-agent", USER_AGENT))
    fields += [(k.lower(), v) for k, v in request.headers if k.lower() not in H2_FORBIDDEN]
    if request.body and "content-length" not in names:
        fields.append(("content-length", str(len(request.body))))
    sid: int = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(sid, fields, end_stream=not request.body)
    conn.responses[sid] = H2Response(sid)
    await conn.flush()
    body, sent = request.body, 0
    while sent < len(body):
        # Flow control (RFC 9113 §5.2): no more than the stream's and the connection's
        # window, in frames no larger than the server allows; wait for WINDOW_UPDATE.
        room = min(conn.conn.local_flow_control_window(sid), conn.conn.max_outbound_frame_size)
        if room <= 0:
            await conn.pump()
            if conn.closed:
                raise ProbeError("the server closed the connection while the body was sent")
            continue
        piece = body[sent : sent + room]
        sent += len(piece)
        conn.conn.send_data(sid, piece, end_stream=sent >= len(body))
        await conn.flush()
    return sid


def _h2(opened: Opened) -> bool:
    return opened.conn.protocol in ("h2", "h2c")


async def _one(run: _Run, request: Request, outcome: Outcome) -> None:
    """One connection, one request: raises :class:`ProbeError` for what went wrong."""
    printer = run.printer
    opened = await open_tapped(
        run.where, run.recorder, printer, context=run.settings.context,
        protocol="h2c" if run.settings.http2 else "http/1.1",
    )  # fmt: skip
    if opened.tls_version is not None:
        chosen = opened.alpn or "none: HTTP/1.1"
        printer.note(f"TLS: {opened.tls_version}, ALPN protocol chosen by the server: {chosen}")
    answer = Answer(opened.conn.protocol)
    outcome.answers.append(answer)
    exchange = _exchange_h2 if _h2(opened) else _exchange_h1
    try:
        await exchange(run, opened, request, answer)
    except trio.TooSlowError:
        raise ProbeError(f"no bytes from the server for {CLIENT_TIMEOUT:.0f} s") from None
    except trio.BrokenResourceError as exc:
        raise ProbeError(f"the connection broke: {exc.__cause__ or exc}") from None
    except OSError as exc:
        if type(exc) is ConnectionError:  # the h2 client's: closed during the handshake
            hint = " (an HTTP/1.1-only server does that to --http2's prior knowledge)"
            raise ProbeError(f"{exc}{hint if opened.conn.protocol == 'h2c' else ''}") from None
        raise ProbeError(f"the connection broke: {exc}") from None
    except (h11.ProtocolError, h2.exceptions.ProtocolError) as exc:
        raise ProbeError(f"{opened.conn.protocol}: {exc}") from None
    finally:
        with trio.CancelScope(shield=True):
            await opened.stream.aclose()
    if answer.status is not None and not answer.complete and run.on_piece is None:
        raise ProbeError("the response was cut short: the connection ended inside its body")


async def probe_once(
    where: Target, request: Request, settings: Settings, recorder: Recorder,
    printer: LivePrinter,
) -> Outcome:  # fmt: skip
    """One request on one connection, shown live; what happened."""
    outcome = Outcome()
    with trio.move_on_after(settings.max_time or float("inf")) as scope:
        try:
            await _one(_Run(where, settings, recorder, printer), request, outcome)
        except ProbeError as exc:
            outcome.error = str(exc)
    if scope.cancelled_caught:
        outcome.error = f"stopped after {settings.max_time:g} s (--max-time)"
    return outcome


def _is_event_stream(answer: Answer) -> bool:
    content_type = answer.header("content-type") or ""
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


async def probe_event_source(
    where: Target, request: Request, settings: Settings, recorder: Recorder,
    printer: LivePrinter,
) -> Outcome:  # fmt: skip
    """Read ``where`` as an EventSource does, reconnecting; what happened."""
    outcome = Outcome()
    last_event_id = ""
    reconnection_ms = DEFAULT_RECONNECTION_MS
    failed: list[str] = []  # why the EventSource failed (no reconnect), if it did

    def on_head(answer: Answer) -> bool:
        if answer.status == 204:
            failed.append("status 204: the server told the EventSource to stop; no reconnect")
        elif answer.status != 200:
            failed.append(f"status {answer.status}: the EventSource fails; no reconnect")
        elif not _is_event_stream(answer):
            ctype = answer.header("content-type")
            failed.append(f"Content-Type {ctype!r}: the EventSource fails; no reconnect")
        return not failed

    with trio.move_on_after(settings.max_time or float("inf")) as scope:
        for attempt in range(settings.max_connections):
            if attempt:
                printer.note(
                    f"reconnecting after {reconnection_ms} ms"
                    + (f", Last-Event-ID: {last_event_id}" if last_event_id else "")
                )
                await trio.sleep(reconnection_ms / 1000)
            decoder = SSEDecoder(last_event_id=last_event_id)

            def on_piece(data: bytes, decoder: SSEDecoder = decoder) -> bool:
                for seg in decoder.feed(data):
                    if isinstance(seg, Dispatch) and seg.event is not None:
                        outcome.events += 1
                return False

            headers = _event_source_headers(request.headers, last_event_id)
            try:
                run = _Run(where, settings, recorder, printer, on_head, on_piece)
                await _one(run, Request(request.method, headers, request.body), outcome)
                why = "the stream ended"
            except ProbeError as exc:
                if attempt == 0 and (not outcome.answers or outcome.answers[-1].status is None):
                    outcome.error = str(exc)  # never got anywhere: an error, not a retry
                    return outcome
                why = f"network error: {exc}"  # EventSource reconnects
            last_event_id = decoder.last_event_id
            if decoder.retry is not None:
                reconnection_ms = decoder.retry
            if failed:
                outcome.stopped = failed[0]
                return outcome
            printer.note(f"{why}; {outcome.events} events so far")
        outcome.stopped = f"gave up after {settings.max_connections} connections"
    if scope.cancelled_caught:
        outcome.stopped = f"{settings.max_time:g} s passed (--max-time)"
    return outcome


def _event_source_headers(
    given: tuple[tuple[str, str], ...], last_event_id: str
) -> tuple[tuple[str, str], ...]:
    names = {k.lower() for k, _ in given}
    fields = [(k, v) for k, v in (("accept", "text/event-stream"), ("cache-control", "no-cache"))
              if k not in names]  # fmt: skip
    fields += given
    if last_event_id:
        fields.append(("last-event-id", last_event_id))
    return tuple(fields)
