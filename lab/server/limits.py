"""Every size, count and wait the servers enforce, with the reason for each value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["YIELD_EVERY", "Limits"]

# Sends (HTTP/1.1 chunks, HTTP/2 DATA frames) a handler may make without waiting before
# its send lets other tasks run: a burst of tokens costs one trip through the scheduler
# per this many, not one per token, and never holds the event loop for longer.
YIELD_EVERY: Final = 64


@dataclass(frozen=True, slots=True)
class Limits:
    # Request head (request line + header fields). 16 KiB is h11's own default and sits
    # between nginx (8 KiB per line, 32 KiB in all by default) and Node (16 KiB). h11 only
    # enforces it while a head is incomplete, so the lab checks complete heads too -> 431.
    max_head_size: int = 16 * 1024
    # Request body, read whole before the handler runs (POST /chat sends a small JSON
    # object). 1 MiB is far above any lab request -> 413.
    max_body_size: int = 1024 * 1024
    # How long a client may take to send a whole request head once it has started one
    # (slowloris guard) -> 408 and close.
    head_timeout: float = 10.0
    # How long an idle keep-alive connection is kept between requests (nginx: 75 s;
    # Apache: 5 s). 30 s keeps notebook sessions usable without hoarding sockets.
    idle_timeout: float = 30.0
    # How long one wait for more of a request body may take -> 408 and close.
    body_timeout: float = 30.0
    # How long one send may block on a reader that does not read (a full socket buffer).
    # Past it the client is too slow and is disconnected; its handler is cancelled.
    send_timeout: float = 30.0
    # Response bytes handlers may have sent that are not yet handed to the socket: per
    # HTTP/1.1 response (lab.server.h1writer), per HTTP/2 connection (its writer's
    # backlog). Past it the next send waits for the writer, so an HTTP/1.1 response holds
    # at most twice this: the batch being written and the next one. 64 KiB is a loopback
    # socket's send buffer, and thousands of tokens per write.
    send_buffer_size: int = 64 * 1024
    # Bytes asked of the socket per receive: one loopback read of a typical burst.
    receive_size: int = 64 * 1024
    # While a response streams, the server keeps reading to notice a disconnect; bytes
    # that arrive meanwhile (pipelined requests) are kept for later, up to this much.
    # Past it the server stops reading until the response is done (back-pressure).
    max_pipelined_bytes: int = 64 * 1024
    # After an error response the server half-closes, then reads and discards at most
    # this much for at most this long, so that the client sees the response instead of
    # a reset caused by unread data (RFC 9112 §9.6 "lingering close").
    linger_bytes: int = 64 * 1024
    linger_timeout: float = 2.0
    # Open connections at once; one more is closed at accept. 16,384 leaves room for the
    # 10,000 idle SSE streams the design aims at, within a raised file-descriptor limit.
    max_connections: int = 16_384
    # Closing a connection (TLS close_notify included) may wait this long for a client
    # that does not read; then the socket is closed regardless.
    close_timeout: float = 1.0
    # Request body bytes buffered at once across every connection (each request's body
    # is read whole before its handler runs). 64 MiB is 64 maximal bodies at once, far
    # beyond any lab workload; past it a new body gets 503 / REFUSED_STREAM.
    max_buffered_bodies: int = 64 * 1024 * 1024
    # On shutdown: streams in flight get this long to finish before they are cancelled.
    shutdown_grace: float = 5.0
    # HTTP/2: streams open at once per connection, advertised as MAX_CONCURRENT_STREAMS;
    # one more is refused with RST_STREAM(REFUSED_STREAM). 100 is what RFC 9113 §6.5.2
    # recommends as the least and what most servers use.
    h2_max_concurrent_streams: int = 100
    # HTTP/2: control frames (PING, SETTINGS, RST_STREAM) a client may send per second
    # before the connection is closed with GOAWAY(ENHANCE_YOUR_CALM): far above what a
    # real client sends, far below a flood (rapid reset sends tens of thousands).
    h2_control_frames_per_second: int = 1000
    # HTTP/2: control frames per second from all connections of one client address
    # together (see h2_control_frames_per_second): two connections' worth, so that rapid
    # reset spread over many connections is stopped after a few hundred milliseconds of
    # the server's time, not after seconds of it. (Clients behind one NAT share it; real
    # clients send a handful of control frames a second.)
    h2_control_frames_per_address_per_second: int = 2000
    # Client addresses the per-address budget remembers (least recently seen forgotten).
    max_addresses: int = 4096
    # HTTP/2: HPACK stops decoding a header block past this many bytes of header list
    # (a connection error, ENHANCE_YOUR_CALM: the compression state is lost). Between
    # max_head_size (what SETTINGS_MAX_HEADER_LIST_SIZE advertises) and this, the stream
    # gets 431 and the connection goes on. 64 KiB is hpack's own default cap.
    h2_header_list_hard_cap: int = 64 * 1024
    # HTTP/2: request body bytes held at once for all streams of one connection (each
    # stream is still limited by max_body_size). Past it a new body's stream is refused
    # with RST_STREAM(REFUSED_STREAM): 100 streams x 1 MiB would otherwise be 100 MiB.
    h2_max_buffered_body: int = 4 * 1024 * 1024
    # HTTP/2: bytes queued for a client that does not read what the server owes it (PING
    # ACKs, SETTINGS ACKs) before the server stops reading from that client.
    h2_max_write_backlog: int = 256 * 1024
    # WebSocket (RFC 6455; over HTTP/2, RFC 8441): the largest message the server takes,
    # reassembled from its fragments. RFC 6455 sets none and asks for one (§10.4); the
    # lab's clients send a word ("stop"), so 1 MiB, the request body limit, is far above
    # any of them. Past it the connection fails with close code 1009 (§7.4.1), decided on
    # the frame header, before its payload is held.
    ws_max_message_size: int = 1024 * 1024
    # WebSocket: frames one message may come in (§5.4). Empty CONTINUATION frames cost
    # the server work without growing the message, so the size limit alone does not stop
    # them; 1,024 is a maximal message in 1 KiB fragments. Past it: close code 1009.
    ws_max_frames_per_message: int = 1024
    # WebSocket: whole messages received and not yet read by the handler. Past it the
    # server stops reading (back-pressure: the TCP window, or the HTTP/2 stream's flow-
    # control window), so a handler that is busy holds at most this many messages. 16 is
    # the websockets library's max_queue.
    ws_max_queued_messages: int = 16
    # WebSocket: how long a connection may carry no frame in either direction before the
    # server closes it with 1001 (going away). 60 s is nginx's proxy_read_timeout, which
    # WebSocket clients are built to stay within (the websockets library pings every 20 s;
    # browsers never ping, but a page that streams sends or receives something). Also how
    # long a message may wait for a handler whose queue is full (then 1011: the server
    # reads nothing meanwhile, so it cannot tell whether the peer is still there).
    ws_idle_timeout: float = 60.0
    # WebSocket closing handshake (§5.5.1, §7.1.1): how long the server waits for the
    # peer's Close after sending its own (then it closes the TCP connection, or resets the
    # HTTP/2 stream), and how long a handler may run on once the connection is closed
    # (then it is cancelled). A working peer answers within a round trip; 2 s is the
    # lingering close's wait (linger_timeout).
    ws_close_timeout: float = 2.0
    # The live wire viewer (Server(viewer=True), GET /lab/): what it keeps of the
    # connections it shows, so that watching a server never costs it more than a few MiB.
    # Connections kept at once, oldest dropped first (the page says which): a screenful
    # of demo traffic; a flood of connections only ever costs the newest 64.
    viewer_connections: int = 64
    # Records kept per connection, and bytes (each record counted with ~120 bytes of
    # bookkeeping on top of its data): enough for a whole token or SSE demo stream; a
    # busy connection keeps its beginning and the page says the rest was not kept.
    viewer_records_per_connection: int = 2048
    viewer_bytes_per_connection: int = 256 * 1024
    # Bytes kept for every connection together: past it the oldest connections go first,
    # so that 64 busy connections cannot pin 64 times the per-connection share.
    viewer_total_bytes: int = 8 * 1024 * 1024
    # Feed events kept for viewers that reconnect with Last-Event-ID (WHATWG HTML §9.2.4),
    # and their encoded bytes: a page that was away for a few thousand records catches up;
    # one away longer starts again from what the server still keeps.
    viewer_log_events: int = 4096
    viewer_log_bytes: int = 4 * 1024 * 1024
    # Viewer pages following the feed at once; one more gets 503. Each has a bounded
    # queue (lab.apps.sse), so a handful of viewers costs a handful of queues.
    viewer_clients: int = 8
    # .trace / .pcapng downloads being formatted or sent at once (each holds its whole
    # file, ~5 times the connection's kept bytes); one more gets 503.
    viewer_downloads: int = 4
    # --trace-dir: bytes of a connection's records held in memory (each record counted
    # with lab.capture.spill.RECORD_OVERHEAD, ~145 bytes, on top of its data) before they
    # are appended to a temporary file, from which its trace is written when it closes.
    # 64 KiB is send_buffer_size: at most one write() to the file per socket buffer's
    # worth of response, and 1,000 busy traced connections hold at most 64 MiB, however
    # long they live (a 10,000-token stream alone was ~1.45 MiB of records).
    trace_bytes_held: int = 64 * 1024
