"""lab.wire.websocket_handshake: the accept value against RFC 6455 §1.3's example and
against wsproto, what a server and a client check (§4.1, §4.2), RFC 8441's extended
CONNECT, and a whole connection: wsproto's handshake and frames read by lab.wire."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto import events as wse
from wsproto.utilities import RemoteProtocolError, generate_accept_token

from lab.wire import websocket as ws
from lab.wire.websocket import HandshakeError, Message, WebSocketDecoder

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # §1.3 and §4.2.2: the nonce "the sample nonce"
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_rfc_example_key_gives_the_rfc_accept_value() -> None:
    assert ws.accept_key(RFC_KEY) == RFC_ACCEPT
    assert ws.accept_key(RFC_KEY.encode()) == RFC_ACCEPT
    assert ws.accept_key(f"  {RFC_KEY}\t") == RFC_ACCEPT  # the value without whitespace
    assert ws.check_accept(RFC_KEY, RFC_ACCEPT)
    assert ws.check_accept(RFC_KEY, f" {RFC_ACCEPT} ".encode())
    assert not ws.check_accept(RFC_KEY, RFC_ACCEPT.lower())
    assert not ws.check_accept("x" + RFC_KEY[1:], RFC_ACCEPT)
    assert base64.b64decode(RFC_KEY) == b"the sample nonce"
    assert ws.make_key(b"the sample nonce") == RFC_KEY


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_accept_key_matches_wsproto(nonce: bytes) -> None:
    key = ws.make_key(nonce)
    assert ws.accept_key(key) == generate_accept_token(key.encode()).decode()
    assert ws.key_problem(key) is None


def test_make_key_is_random_and_sixteen_octets() -> None:
    keys = {ws.make_key() for _ in range(8)}
    assert len(keys) == 8
    assert all(len(base64.b64decode(k)) == 16 for k in keys)
    with pytest.raises(ValueError, match="16 octets"):
        ws.make_key(b"short")


@pytest.mark.parametrize(
    ("key", "words"),
    [("not base64!", "not base64"), (base64.b64encode(b"x" * 15).decode(), "15 octets")],
)
def test_key_problems(key: str, words: str) -> None:
    problem = ws.key_problem(key)
    assert problem is not None
    assert words in problem
    assert "§4.1" in problem


# ------------------------------------------------------------------------ the request


def good_request() -> list[tuple[str, str]]:
    return ws.request_headers("server.example.com", RFC_KEY, origin="http://example.com")


def replace(fields: list[tuple[str, str]], name: str, value: str | None) -> list[tuple[str, str]]:
    out = [(n, v) for n, v in fields if n.lower() != name.lower()]
    return out if value is None else [*out, (name, value)]


def test_a_good_request_has_no_problems() -> None:
    assert ws.request_problems("GET", good_request()) == []
    assert ws.check_request("GET", good_request()) == RFC_KEY
    # Names and the tokens of Upgrade and Connection are case-insensitive; lists may
    # hold more than the one element; bytes work as well as str.
    fields = replace(good_request(), "Upgrade", "WebSocket")
    fields = replace(fields, "Connection", "keep-alive, UPGRADE")
    raw = [(n.upper().encode(), v.encode()) for n, v in fields]
    assert ws.request_problems("GET", raw, http_version="2.0") == []


@pytest.mark.parametrize(
    ("method", "version", "fields", "words"),
    [
        ("POST", "1.1", good_request(), "the handshake is a GET (§4.1 item 2)"),
        ("GET", "1.0", good_request(), "HTTP/1.1 or later"),
        ("GET", "1.1", replace(good_request(), "Host", None), "no Host"),
        ("GET", "1.1", replace(good_request(), "Upgrade", "h2c"), "Upgrade does not"),
        ("GET", "1.1", replace(good_request(), "Upgrade", None), "Upgrade does not"),
        ("GET", "1.1", replace(good_request(), "Connection", "keep-alive"), "Connection does"),
        ("GET", "1.1", replace(good_request(), "Sec-WebSocket-Key", None), "0 Sec-WebSocket-Key"),
        (
            "GET",
            "1.1",
            [*good_request(), ("Sec-WebSocket-Key", RFC_KEY)],
            "2 Sec-WebSocket-Key fields: exactly one",
        ),
        ("GET", "1.1", replace(good_request(), "Sec-WebSocket-Key", "abc"), "not base64"),
        (
            "GET",
            "1.1",
            replace(good_request(), "Sec-WebSocket-Key", base64.b64encode(b"k" * 20).decode()),
            "20 octets",
        ),
    ],
)
def test_request_problems(
    method: str, version: str, fields: list[tuple[str, str]], words: str
) -> None:
    problems = ws.request_problems(method, fields, http_version=version)
    assert len(problems) == 1
    assert words in problems[0]
    with pytest.raises(HandshakeError) as exc:
        ws.check_request(method, fields, http_version=version, offset=7)
    assert (exc.value.problems, exc.value.status_hint, exc.value.offset) == (problems, 400, 7)


def test_a_version_a_server_does_not_speak_is_426() -> None:
    for version in ("8", None):
        fields = replace(good_request(), "Sec-WebSocket-Version", version)
        with pytest.raises(HandshakeError) as exc:
            ws.check_request("GET", fields)
        assert exc.value.status_hint == 426
        assert "Sec-WebSocket-Version must be 13" in exc.value.problems[0]
    # With other problems as well, the answer is 400.
    fields = replace(replace(good_request(), "Sec-WebSocket-Version", "8"), "Host", None)
    with pytest.raises(HandshakeError) as exc:
        ws.check_request("GET", fields)
    assert (len(exc.value.problems), exc.value.status_hint) == (2, 400)


# ------------------------------------------------------------------------ the response


def good_response() -> list[tuple[str, str]]:
    return ws.response_headers(RFC_KEY)


def test_a_good_response_has_no_problems() -> None:
    assert dict(good_response())["Sec-WebSocket-Accept"] == RFC_ACCEPT
    assert ws.response_problems(101, good_response(), RFC_KEY) == []
    ws.check_response(101, good_response(), RFC_KEY)
    chosen = ws.response_headers(RFC_KEY, protocol="chat")
    assert ws.response_problems(101, chosen, RFC_KEY, protocols=["superchat", "chat"]) == []
    ext = [*good_response(), ("Sec-WebSocket-Extensions", "permessage-deflate; x=1")]
    assert ws.response_problems(101, ext, RFC_KEY, extensions=["permessage-deflate"]) == []


@pytest.mark.parametrize(
    ("status", "fields", "words"),
    [
        (200, good_response(), "status 200"),
        (101, replace(good_response(), "Upgrade", None), "Upgrade is missing"),
        (101, replace(good_response(), "Upgrade", "websocket, h2c"), "must be 'websocket'"),
        (101, replace(good_response(), "Connection", "close"), "Connection does not"),
        (101, replace(good_response(), "Sec-WebSocket-Accept", None), "0 Sec-WebSocket-Accept"),
        (
            101,
            [*good_response(), ("Sec-WebSocket-Accept", RFC_ACCEPT)],
            "2 Sec-WebSocket-Accept fields: exactly one",
        ),
        (
            101,
            replace(good_response(), "Sec-WebSocket-Accept", ws.accept_key(ws.make_key())),
            "is not 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='",
        ),
        (
            101,
            [*good_response(), ("Sec-WebSocket-Extensions", "permessage-deflate")],
            "extension 'permessage-deflate' was not offered",
        ),
        (101, [*good_response(), ("Sec-WebSocket-Protocol", "chat")], "was not offered"),
    ],
)
def test_response_problems(status: int, fields: list[tuple[str, str]], words: str) -> None:
    problems = ws.response_problems(status, fields, RFC_KEY)
    assert len(problems) == 1
    assert words in problems[0]
    with pytest.raises(HandshakeError):
        ws.check_response(status, fields, RFC_KEY)


# ------------------------------------------------------------------------ RFC 8441

H2_REQUEST = [
    (":method", "CONNECT"),
    (":protocol", "websocket"),
    (":scheme", "https"),
    (":path", "/chat"),
    (":authority", "server.example.com"),
    ("sec-websocket-version", "13"),
    ("origin", "http://www.example.com"),
]


def test_extended_connect_the_rfc_8441_example_is_accepted() -> None:
    assert ws.extended_connect_problems(H2_REQUEST) == []
    assert ws.extended_connect_response_problems(200) == []


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (replace(H2_REQUEST, ":method", "GET"), ":method must be CONNECT"),
        (replace(H2_REQUEST, ":protocol", None), ":protocol must be 'websocket'"),
        (replace(H2_REQUEST, ":protocol", "chat"), ":protocol must be 'websocket'"),
        (replace(H2_REQUEST, ":scheme", "ws"), ":scheme must be"),
        (replace(H2_REQUEST, ":path", None), ":path must be present"),
        (replace(H2_REQUEST, ":authority", None), ":authority must be present"),
        ([*H2_REQUEST, ("upgrade", "websocket")], "upgrade must not be sent"),
        ([*H2_REQUEST, ("connection", "upgrade")], "connection must not be sent"),
    ],
)
def test_extended_connect_problems(fields: list[tuple[str, str]], words: str) -> None:
    problems = ws.extended_connect_problems(fields)
    assert len(problems) == 1
    assert words in problems[0]
    assert "RFC 8441" in problems[0]


@pytest.mark.parametrize("status", [101, 400, 404, 501])
def test_extended_connect_refused(status: int) -> None:
    assert f"status {status}" in ws.extended_connect_response_problems(status)[0]


# ------------------------------------------------------------------------ with wsproto


def split_head(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """An HTTP/1.1 head: its first line, its fields, and the bytes after it."""
    head, _, rest = data.partition(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    fields = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines)]
    return first, fields, rest


def test_wsproto_client_request_passes_our_checks_and_our_response_passes_its() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(wse.Request(host="example.com", target="/chat"))
    first, fields, rest = split_head(request)
    assert first == "GET /chat HTTP/1.1"
    assert rest == b""
    key = ws.check_request("GET", fields)
    response = b"HTTP/1.1 101 Switching Protocols\r\n"
    response += b"".join(f"{n}: {v}\r\n".encode() for n, v in ws.response_headers(key))
    client.receive_data(response + b"\r\n")
    assert [type(e) for e in client.events()] == [wse.AcceptConnection]


def test_wsproto_client_refuses_a_wrong_accept_as_we_do() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    _, fields, _ = split_head(client.send(wse.Request(host="example.com", target="/")))
    key = ws.check_request("GET", fields)
    wrong = replace(ws.response_headers(key), "Sec-WebSocket-Accept", RFC_ACCEPT)
    assert ws.response_problems(101, wrong, key)
    response = b"HTTP/1.1 101 Switching Protocols\r\n"
    response += b"".join(f"{n}: {v}\r\n".encode() for n, v in wrong)
    with pytest.raises(RemoteProtocolError, match="accept"):
        client.receive_data(response + b"\r\n")


def test_our_request_is_accepted_by_a_wsproto_server_whose_response_we_accept() -> None:
    key = ws.make_key()
    request = b"GET /chat HTTP/1.1\r\n"
    request += b"".join(f"{n}: {v}\r\n".encode() for n, v in ws.request_headers("h", key))
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request + b"\r\n")
    (event,) = server.events()
    assert isinstance(event, wse.Request)
    assert event.target == "/chat"
    first, fields, _ = split_head(server.send(wse.AcceptConnection()))
    assert first.startswith("HTTP/1.1 101")
    assert ws.response_problems(101, fields, key) == []


def test_a_whole_connection_from_wsproto_read_by_lab_wire() -> None:
    """wsproto's client writes the handshake, then masked frames once a wsproto server has
    accepted it; lab.wire checks the head and its server-side decoder reads the frames
    after it, at their offsets on the client's side of the connection."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    wire = client.send(wse.Request(host="example.com", target="/"))
    head_end = len(wire)
    _, fields, _ = split_head(wire)
    key = ws.check_request("GET", fields)
    server.receive_data(wire)
    list(server.events())
    response = server.send(wse.AcceptConnection())
    _, response_fields, _ = split_head(response)
    assert ws.response_problems(101, response_fields, key) == []
    client.receive_data(response)
    list(client.events())
    wire += client.send(wse.TextMessage(data="héllo", message_finished=False))
    wire += client.send(wse.Ping(payload=b"?"))
    wire += client.send(wse.TextMessage(data=" world"))
    wire += client.send(wse.BytesMessage(data=bytes(300)))
    wire += client.send(wse.CloseConnection(code=1000, reason="bye"))
    decoder = WebSocketDecoder("server", offset=head_end)
    segments = decoder.feed(wire[head_end:]) + decoder.eof()
    decoded = [s for s in segments if isinstance(s, ws.WebSocketFrame)]
    assert decoded[0].start == head_end
    assert decoded[-1].end == len(wire)
    assert all(f.masked for f in decoded)
    assert [f.message for f in decoded if f.message] == [
        Message("ping", b"?"),
        Message("text", "héllo world"),
        Message("binary", bytes(300)),
        Message("close", b"\x03\xe8bye", 1000, "bye"),
    ]
