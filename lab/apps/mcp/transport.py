"""MCP Streamable HTTP: the HTTP rules of both revisions, on one endpoint path.

The handler is protocol-neutral (:mod:`lab.apps.interface`), so the same code answers
over HTTP/1.1 and HTTP/2. Every request passes the same gates first, then the revision
the client speaks decides the rest:

1. ``Host`` must be one well-formed value (RFC 9112 §3.2, grammar RFC 9110 §7.2 and
   RFC 3986 §3.2.2-3.2.3) -> 400, naming this machine's loopback (``localhost``,
   ``127.0.0.1``, ``[::1]``) or an allowed host -> 421. A DNS-rebinding page reaches the
   server under its own name; the check backs up the next one;
2. ``Origin``, when present, must be a local ``http``/``https`` origin or an allowed one
   (2025-11-25 transports.mdx §"Security Warning", 2026-07-28 streamable-http.mdx
   §"Security & Endpoint": "Servers MUST validate the Origin header") -> 403;
3. the revision. A POST is *modern* (2026-07-28) when its ``MCP-Protocol-Version``
   header names a modern revision, or when it is a request other than ``initialize``
   carrying ``_meta["io.modelcontextprotocol/protocolVersion"]``; everything else is
   *legacy* (2025-11-25 and the earlier handshake revisions). So ``initialize`` under a
   2026-07-28 header gets that revision's answer for a removed method (-32601, 404). A
   GET or DELETE is legacy when it carries ``Mcp-Session-Id`` or a legacy
   ``MCP-Protocol-Version``; otherwise it is modern, and 2026-07-28 has no GET or
   DELETE: 405.

POST, both revisions: ``Content-Type`` must be ``application/json`` (415); ``Accept`` must
list both ``application/json`` and ``text/event-stream`` (406; listed explicitly, as the
spec words it: ``*/*`` is not enough); the body at most
:attr:`~lab.apps.mcp.session.McpLimits.max_message_size` (413); one JSON-RPC message (a
parse error is ``-32700`` with 400). A notification or a response gets 202 and no body. A
request gets ``application/json``, or, for a call that sends notifications
(``stream_tokens``), ``text/event-stream`` ending after the response.

Legacy (2025-11-25): ``initialize`` creates a session (``Mcp-Session-Id`` on the reply);
every later request must carry the id (400 without, 404 for an unknown or ended one) and
a supported ``MCP-Protocol-Version`` (absent: 2025-03-26 is assumed; unsupported: 400).
Every SSE event has an id ``<stream>-<n>`` and the stream opens with a priming event (the
id, a ``retry`` field, empty data). Calls run outside the HTTP request, so a dropped
connection does not cancel them at once; ``GET`` with ``Last-Event-ID`` resumes the cut
stream. ``GET`` without it opens the session's notification stream (log messages), one
reader at a time (409); ``DELETE`` ends the session; ``notifications/cancelled`` stops a
call. A call that no connection reads for
:attr:`~lab.apps.mcp.session.McpLimits.detached_call_timeout` is stopped, and its stream
ends with an error response. Too many calls in flight in one session: 429 with
``Retry-After``.

Modern (2026-07-28): no session, no handshake. Every request carries its version, client
capabilities and (optionally) log level in ``_meta``, mirrored in headers that must agree
with the body (``-32020`` HeaderMismatch, 400); an unsupported version is ``-32022`` with
the supported list (400); an unknown method ``-32601`` with 404. Any other JSON-RPC error
(an unknown tool, arguments that are not an object: ``-32602``) answers a well-formed
request, with 200. SSE events have no ids (resumption was removed), and closing the
stream cancels the call: it runs inside the HTTP request, which the servers cancel when
the client goes away.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from lab.apps.interface import AbortResponse, Request, ResponseStream
from lab.apps.mcp.checks import (
    JSON,
    LOCAL_HOSTS,
    SSE,
    Reject,
    check_host,
    check_origin,
    check_post_media,
    media_types,
    parse_host,
)
from lab.apps.mcp.messages import (
    DEFAULT_LEGACY_VERSION,
    HEADER_LAST_EVENT_ID,
    HEADER_METHOD,
    HEADER_MISMATCH,
    HEADER_NAME,
    HEADER_PROTOCOL_VERSION,
    HEADER_SESSION_ID,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LEGACY_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    SUPPORTED_VERSIONS,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
    Notification,
    RpcError,
    decode_header_value,
    dumps,
    error_response,
    is_request_id,
    notification,
    parse_message,
    result_response,
)
from lab.apps.mcp.messages import (
    Request as RpcRequest,
)
from lab.apps.mcp.runstate import McpStats, RunState
from lab.apps.mcp.server import CallContext, handle, initialize, streams_response
from lab.apps.mcp.session import (
    LOG_LEVELS,
    Call,
    McpLimits,
    Session,
    SessionsFull,
    SessionTable,
)
from lab.apps.mcp.store import StreamLog, event_id, parse_event_id
from lab.apps.sse import open_event_channel
from lab.wire.sse import encode_comment, encode_event

__all__ = ["LOCAL_HOSTS", "McpEndpoint", "McpStats", "parse_host"]

log = logging.getLogger("lab.mcp")

# The reconnection time sent in every priming event (`retry:`), in ms: the SDK's own
# default; browsers wait about 3 s without one.
RECONNECT_MS: Final = 1000
# Seconds a client refused for a full session table is told to wait (Retry-After): about
# how long a demo tool call runs, after which its session may be idle and evictable.
SESSIONS_FULL_RETRY_AFTER: Final = 10
# Seconds a client refused for too many calls in flight in its session is told to wait
# (Retry-After, RFC 9110 §10.2.3; RFC 6585 §4 "MAY include a Retry-After header"). A
# default stream_tokens call (8 tokens, 25 ms apart) ends within 1 s, the smallest
# delay-seconds above 0.
CALLS_FULL_RETRY_AFTER: Final = 1
# Requests whose `params` carry the value `Mcp-Name` mirrors (streamable-http.mdx,
# "Standard Request Headers").
NAME_PARAMS: Final = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
# 2026-07-28: the HTTP status of a JSON-RPC error raised by a method; anything not listed
# is 200. streamable-http.mdx fixes 404 for an unknown method (§"Protocol Version
# Header"). It fixes 400 only for errors of the envelope, which _check_envelope answers
# before any method runs: -32020 (§"Server Validation"), -32022 (§"Protocol Version
# Header"), and -32602 for a missing required `_meta` field (basic/index.mdx
# §"Per-request protocol fields"). Every other error answers a well-formed request, which
# gets application/json or text/event-stream (§"Sending Messages"), 200 as in §"Message
# Flow": an unknown tool and arguments that are not an object are such protocol errors
# (tools.mdx §"Error Handling", -32602), as is a tool execution error (a result).
MODERN_ERROR_STATUS: Final = {METHOD_NOT_FOUND: 404}


async def _reply(
    response: ResponseStream, status: int, message: dict[str, Any] | None,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:  # fmt: skip
    """A whole response: a JSON body, or none (202, 204)."""
    body = dumps(message).encode("utf-8") if message is not None else b""
    fields = [("content-type", JSON)] if message is not None else []
    if status != 204:
        fields.append(("content-length", str(len(body))))
    await response.start(status, [*fields, ("cache-control", "no-store"), *headers])
    await response.send(body)
    await response.end()


class McpEndpoint:
    """The ``/mcp`` handler: ``await endpoint(request, response)``.

    ``allowed_hosts`` (``name`` or ``name:port``) and ``allowed_origins``
    (``scheme://host[:port]``) extend the local defaults, e.g. for a server bound to a LAN
    address. State (sessions, background calls) is kept per trio run, so one endpoint
    object can serve run after run, as the lab's tests and notebooks do.
    """

    def __init__(
        self,
        limits: McpLimits | None = None,
        *,
        allowed_hosts: frozenset[str] = frozenset(),
        allowed_origins: frozenset[str] = frozenset(),
    ) -> None:
        self.limits = limits or McpLimits()
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self.allowed_origins = allowed_origins
        self._run_state: trio.lowlevel.RunVar[RunState] = trio.lowlevel.RunVar(
            f"lab.mcp.endpoint-{id(self):x}"
        )

    def state(self) -> RunState:
        """This run's sessions, background tasks and counters."""
        try:
            return self._run_state.get()
        except LookupError:
            state = RunState(SessionTable(self.limits))
            self._run_state.set(state)
            return state

    @property
    def sessions(self) -> SessionTable:
        return self.state().sessions

    @property
    def stats(self) -> McpStats:
        return self.state().stats

    async def __call__(self, request: Request, response: ResponseStream) -> None:
        state = self.state()
        try:
            check_host(request, self.allowed_hosts)
            check_origin(request, self.allowed_origins)
            if request.method == "POST":
                await self._post(state, request, response)
            elif self._modern_get_or_delete(request):
                raise Reject(
                    405, INVALID_REQUEST,
                    f"Method Not Allowed: 2026-07-28 has no {request.method} on the MCP endpoint",
                    headers=(("allow", "POST"),),
                )  # fmt: skip
            elif request.method == "GET":
                await self._get(state, request, response)
            elif request.method == "DELETE":
                self._legacy_session(state, request)
                state.sessions.end(request.header(HEADER_SESSION_ID) or "")
                await _reply(response, 204, None)
            else:
                raise Reject(405, INVALID_REQUEST, "Method Not Allowed",
                             headers=(("allow", "POST, GET, DELETE"),))  # fmt: skip
        except Reject as exc:
            await _reply(response, exc.status, exc.body, exc.headers)

    # -- gates shared by every request -------------------------------------------------

    @staticmethod
    def _modern_get_or_delete(request: Request) -> bool:
        version = request.header(HEADER_PROTOCOL_VERSION)
        if version in MODERN_VERSIONS:
            return True
        return request.header(HEADER_SESSION_ID) is None and version not in LEGACY_VERSIONS

    def _read_message(self, request: Request) -> Message:
        check_post_media(request)
        if len(request.body) > self.limits.max_message_size:
            limit = self.limits.max_message_size
            raise Reject(413, INVALID_REQUEST, f"Content Too Large: over {limit} bytes")
        try:
            return parse_message(request.body)
        except RpcError as exc:
            raise Reject(400, exc.code, exc.message) from None

    async def _post(self, state: RunState, request: Request, response: ResponseStream) -> None:
        message = self._read_message(request)
        header_version = request.header(HEADER_PROTOCOL_VERSION)
        if isinstance(message, RpcRequest) and (
            header_version in MODERN_VERSIONS
            or (message.method != "initialize" and META_PROTOCOL_VERSION in message.meta)
        ):
            await self._modern_request(state, request, message, response)
        elif header_version in MODERN_VERSIONS:
            if not isinstance(message, Notification):
                raise Reject(400, INVALID_REQUEST, "2026-07-28 clients send no responses")
            await _reply(response, 202, None)  # nothing to do: 2026-07-28 defines none
        elif isinstance(message, RpcRequest) and message.method == "initialize":
            await self._initialize(state, message, response)
        else:
            await self._legacy_post(state, request, message, response)

    # -- 2025-11-25 ----------------------------------------------------------------------

    def _legacy_session(self, state: RunState, request: Request) -> Session:
        """The request's session; checks its id and its MCP-Protocol-Version."""
        session_id = request.header(HEADER_SESSION_ID)
        if session_id is None:
            raise Reject(400, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        session = state.sessions.lookup(session_id)
        if session is None:
            raise Reject(404, INVALID_REQUEST, "Session not found")
        version = request.header(HEADER_PROTOCOL_VERSION) or DEFAULT_LEGACY_VERSION
        if version not in LEGACY_VERSIONS:
            raise Reject(
                400, INVALID_REQUEST,
                f"Bad Request: unsupported MCP-Protocol-Version {version[:40]!r}",
                data={"supported": list(SUPPORTED_VERSIONS), "requested": version[:40]},
            )  # fmt: skip
        return session

    async def _initialize(
        self, state: RunState, message: RpcRequest, response: ResponseStream
    ) -> None:
        version, result = initialize(message.params)
        try:
            session = state.sessions.create(version)
        except SessionsFull:
            raise Reject(
                503, INVALID_REQUEST, "Service Unavailable: every session slot is busy",
                request_id=message.id, headers=(("retry-after", str(SESSIONS_FULL_RETRY_AFTER)),),
            ) from None  # fmt: skip
        await _reply(response, 200, result_response(message.id, result),
                     ((HEADER_SESSION_ID, session.id),))  # fmt: skip

    async def _legacy_post(
        self, state: RunState, request: Request, message: Message, response: ResponseStream
    ) -> None:
        session = self._legacy_session(state, request)
        if isinstance(message, Notification) and message.method == "notifications/initialized":
            session.initialized = True
        else:
            session.used = True
        if not isinstance(message, RpcRequest):
            if isinstance(message, Notification) and message.method == "notifications/cancelled":
                # cancellation.mdx: unknown or finished ids are ignored.
                rid = message.params.get("requestId")
                if is_request_id(rid) and session.cancel(rid):
                    log.info("MCP call %r cancelled: %s", rid, message.params.get("reason"))
            await _reply(response, 202, None)
            return
        if message.id in session.calls:
            raise Reject(400, INVALID_REQUEST, "Invalid Request: this id is already in flight",
                         request_id=message.id)  # fmt: skip
        if not streams_response(message):
            ctx = CallContext(message.progress_token, _drop, self._session_logger(session))
            try:
                reply = result_response(
                    message.id, await handle(message, ctx, modern=False, session=session)
                )
            except RpcError as exc:
                reply = exc.response(message.id)
            await _reply(response, 200, reply)
            return
        if len(session.calls) >= self.limits.max_calls_per_session:
            raise Reject(429, INVALID_REQUEST, "Too Many Requests: calls in flight",
                         request_id=message.id,
                         headers=(("retry-after", str(CALLS_FULL_RETRY_AFTER)),))  # fmt: skip
        call = Call(message.id, session.store.open(), self.limits.detached_call_timeout)
        session.calls[message.id] = call
        state.stats.started()

        async def run() -> None:
            await self._run_call(state, session, message, call)

        # The server's nursery: the call outlives this request when its client hangs up
        # (to be resumed with Last-Event-ID), and ends with the server's shutdown.
        request.background.start_soon(run, name=f"mcp call {message.id!r}")
        await self._read_stream(session, call.stream, 0, response)

    @staticmethod
    def _session_logger(session: Session) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        async def log_message(level: str, data: dict[str, Any]) -> None:
            # 2025-11-25: log messages are not about one request; they go on the stream
            # the client opened with GET (stored even while no one reads it, for resume).
            if session.closed or not session.wants(level):
                return
            params = {"level": level, "logger": "streamlab", "data": data}
            session.store.get_stream.append(dumps(notification("notifications/message", params)))

        return log_message

    async def _run_call(
        self, state: RunState, session: Session, message: RpcRequest, call: Call
    ) -> None:
        stream = call.stream

        async def send(note: dict[str, Any]) -> None:
            if not stream.closed:
                stream.append(dumps(note))

        ctx = CallContext(message.progress_token, send, self._session_logger(session))
        stopped = False  # by the server's shutdown (the call's own scope was not cancelled)
        try:
            with call.scope:
                try:
                    reply = result_response(
                        message.id, await handle(message, ctx, modern=False, session=session)
                    )
                except RpcError as exc:
                    reply = exc.response(message.id)
                await send(reply)
        except trio.Cancelled:
            stopped = True
            raise
        finally:
            # A call the client cancelled sends no response (cancellation.mdx); its stream
            # just ends. One the server gave up on answers with an error, so that a client
            # resuming late learns the request's fate instead of reconnecting for a
            # response that will never come.
            abandoned = call.abandoned
            if abandoned and not stream.closed:
                timeout = self.limits.detached_call_timeout
                stream.append(dumps(error_response(
                    message.id, INTERNAL_ERROR,
                    f"Request abandoned: no connection read its stream for {timeout:g} s",
                )))  # fmt: skip
            state.stats.ended(cancelled=(call.scope.cancelled_caught or stopped) and not abandoned,
                              abandoned=abandoned)  # fmt: skip
            session.calls.pop(message.id, None)
            stream.close()

    async def _get(self, state: RunState, request: Request, response: ResponseStream) -> None:
        if SSE not in media_types(request.header("accept")):
            raise Reject(406, INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
        session = self._legacy_session(state, request)
        session.used = True
        last = request.header(HEADER_LAST_EVENT_ID)
        if last is None:
            stream = session.store.get_stream
            if stream.attached:
                raise Reject(409, INVALID_REQUEST, "Conflict: the GET stream is already open")
            await self._read_stream(session, stream, stream.last_seq, response)
            return
        parsed = parse_event_id(last)
        if parsed is None:
            raise Reject(400, INVALID_REQUEST, f"Bad Request: Last-Event-ID {last[:40]!r}")
        stream_or_none = session.store.get(parsed[0])
        if stream_or_none is None:
            raise Reject(410, INVALID_REQUEST, f"Gone: stream {parsed[0]} is not in the store")
        if parsed[1] > stream_or_none.last_seq:
            raise Reject(
                400, INVALID_REQUEST, f"Bad Request: Last-Event-ID {last!r} was never sent"
            )
        await self._read_stream(session, stream_or_none, parsed[1], response)

    async def _read_stream(
        self, session: Session, stream: StreamLog, after: int, response: ResponseStream
    ) -> None:
        """Carry ``stream`` from the event after ``after`` until it ends (or is taken over).

        While it does, the call answering on the stream (if one runs) is not detached.
        """
        reader = stream.attach()
        session.readers += 1
        call = session.call_on(stream)
        if call is not None:
            call.reader_came()
        try:
            async with open_event_channel(response) as channel:
                # The priming event (transports.mdx: an event id and empty data): where the
                # client stands, so it can resume even if nothing else arrives. Its retry
                # field is the one transports.mdx asks for before the server closes a
                # connection without ending the stream (the slow-reader cut-off does).
                priming = event_id(stream.stream_id, after)
                await channel.put(encode_event("", id=priming, retry=RECONNECT_MS))
                cursor = after
                while True:
                    events, gone = stream.since(cursor)
                    if gone is not None:
                        first = events[0][0] if events else stream.last_seq + 1
                        sid = stream.stream_id
                        gap = f"{event_id(sid, gone)}..{event_id(sid, first - 1)}"
                        await channel.put(encode_comment(f" events {gap} are no longer stored"))
                        cursor = first - 1
                    for seq, data in events:
                        await channel.put(data)
                        cursor = seq
                    if stream.reader != reader:
                        raise AbortResponse("stream resumed on another connection")
                    if stream.closed and cursor >= stream.last_seq:
                        return
                    await stream.wait_beyond(cursor, reader)
        finally:
            if stream.detach(reader) and call is not None:
                call.reader_left()
            session.readers -= 1
            session.last_active = trio.current_time()

    # -- 2026-07-28 ----------------------------------------------------------------------

    def _check_envelope(self, request: Request, message: RpcRequest) -> str | None:
        """Validate ``_meta`` and the mirrored headers; return the requested log level."""
        meta = message.meta
        missing = [k for k in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if k not in meta]
        if missing:
            raise Reject(400, INVALID_PARAMS, f"Invalid params: _meta lacks {', '.join(missing)}",
                         request_id=message.id)  # fmt: skip
        version = meta[META_PROTOCOL_VERSION]
        mismatch = None
        names = [name for name, _ in request.headers]
        twice = [
            h for h in (HEADER_PROTOCOL_VERSION, HEADER_METHOD, HEADER_NAME) if names.count(h) > 1
        ]
        if twice:
            # A router reading the first copy and one reading the last would disagree.
            mismatch = f"{twice[0]} (sent twice)"
        elif request.header(HEADER_PROTOCOL_VERSION) != version:
            mismatch = "MCP-Protocol-Version"
        elif request.header(HEADER_METHOD) != message.method:
            mismatch = "Mcp-Method"
        elif message.method in NAME_PARAMS:
            header = request.header(HEADER_NAME)
            body_value = message.params.get(NAME_PARAMS[message.method])
            if header is None or decode_header_value(header) != body_value:
                mismatch = "Mcp-Name"
        if mismatch is not None:
            raise Reject(400, HEADER_MISMATCH,
                         f"Header mismatch: {mismatch} does not match the request body",
                         request_id=message.id)  # fmt: skip
        if version not in MODERN_VERSIONS:
            raise Reject(
                400, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                request_id=message.id,
                data={"supported": list(SUPPORTED_VERSIONS), "requested": str(version)[:40]},
            )  # fmt: skip
        level = meta.get(META_LOG_LEVEL)
        if level is not None and level not in LOG_LEVELS:
            raise Reject(400, INVALID_PARAMS, "Invalid params: unknown log level",
                         request_id=message.id)  # fmt: skip
        return level if isinstance(level, str) else None

    async def _modern_request(
        self, state: RunState, request: Request, message: RpcRequest, response: ResponseStream
    ) -> None:
        level = self._check_envelope(request, message)
        token = message.progress_token
        if not streams_response(message):
            ctx = CallContext(token, _drop, _drop_log)
            try:
                result = await handle(message, ctx, modern=True)
            except RpcError as exc:
                status = MODERN_ERROR_STATUS.get(exc.code, 200)
                await _reply(response, status, exc.response(message.id))
                return
            await _reply(response, 200, result_response(message.id, result))
            return
        state.stats.started()
        done = False
        try:
            async with open_event_channel(response) as channel:

                async def send(note: dict[str, Any]) -> None:
                    await channel.put(encode_event(dumps(note)))

                async def log_message(lvl: str, data: dict[str, Any]) -> None:
                    # logging.mdx (2026-07-28): only for a request that asked, at or above
                    # its level, on that request's own stream.
                    if level is not None and LOG_LEVELS.index(lvl) >= LOG_LEVELS.index(level):
                        params = {"level": lvl, "logger": "streamlab", "data": data}
                        await send(notification("notifications/message", params))

                ctx = CallContext(token, send, log_message)
                try:
                    reply = result_response(message.id, await handle(message, ctx, modern=True))
                except RpcError as exc:
                    reply = exc.response(message.id)
                await send(reply)
                done = True
        finally:
            # Not done: the client closed the stream (or the server cut it), which
            # streamable-http.mdx §"Cancellation" makes the request's cancellation.
            state.stats.ended(cancelled=not done)


async def _drop(note: dict[str, Any]) -> None:
    """A JSON reply has no stream for notifications: they are not sent."""


async def _drop_log(level: str, data: dict[str, Any]) -> None:
    """No log messages for a request answered with one JSON object."""
