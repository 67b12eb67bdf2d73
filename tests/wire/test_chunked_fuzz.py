"""lab.wire.chunked under heavier fuzzing: many generated bodies, split anywhere, and h11
0.16.0 on the same bytes. Every test here is marked ``fuzz``; run them with ``-m fuzz``.

Where the two decoders disagree, the disagreement must be one of the numbered differences
in lab.wire.chunked's module docstring; anything else fails the test.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from lab.wire.chunked import ChunkSize, LastChunk, TrailerField

from .test_chunked import (
    FRAMING_NAMES,
    LEXICON,
    GeneratedBody,
    Outcome,
    check_against_h11,
    check_generated,
    check_invariant,
    check_round_trip,
    chunked_bodies,
    cuts_for,
    h11_outcome,
    lab_outcome,
    noise,
    trailer_fields,
)

pytestmark = pytest.mark.fuzz

big_bodies = chunked_bodies(max_chunks=20, max_data=300)


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_valid_bodies_at_random_splits(data: st.DataObject) -> None:
    body = data.draw(big_bodies)
    check_generated(body, cuts_for(data, body.raw))


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_valid_bodies_against_h11(data: st.DataObject) -> None:
    body = data.draw(big_bodies)
    check_against_h11(body, cuts_for(data, body.raw))


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.binary(max_size=2000), max_size=20),
    st.lists(trailer_fields().map(lambda t: (t[1], t[2])), max_size=6),
)
def test_round_trip(chunks: list[bytes], trailers: list[tuple[bytes, bytes]]) -> None:
    check_round_trip(chunks, trailers)


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_arbitrary_bytes_give_segments_or_chunked_error(data: st.DataObject) -> None:
    body = data.draw(st.one_of(noise, st.lists(LEXICON, max_size=200).map(b"".join)))
    check_invariant(body, cuts_for(data, body))


# ------------------------------------------------------------ smuggling mutations: both refuse


def _size_segments(body: GeneratedBody) -> list[ChunkSize | LastChunk]:
    return [s for s in body.segments if isinstance(s, ChunkSize | LastChunk)]


@st.composite
def smuggling_mutations(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid body (that h11 also accepts) with one change from the request-smuggling
    repertoire. Returns (bytes, what was done)."""
    kind = draw(
        st.sampled_from(
            [
                "data CRLF replaced",
                "data CRLF dropped",
                "size line ends in lone LF",
                "size line ends in bare CR",
                "size prefixed",
                "size emptied",
                "non-hex in the size",
                "21+ hex digits",
                "size off by a little",
                "trailer without colon",
                "whitespace before a trailer colon",
                "NUL in a trailer",
                "empty trailer name",
                "non-token trailer name",
                "bare CR ends a trailer line",
            ]
        )
    )
    needs_trailer = "trailer" in kind
    body = draw(
        chunked_bodies(
            max_chunks=4,
            allow_bws_after_size=False,
            min_chunks=0 if needs_trailer else 1,
            min_trailers=1 if needs_trailer else 0,
        )
    )
    raw = body.raw
    sizes = _size_segments(body)
    chunk_sizes = [s for s in sizes if isinstance(s, ChunkSize)]
    pick = draw(st.integers(0, 99))
    if kind == "data CRLF replaced":
        at = body.data_crlfs[pick % len(body.data_crlfs)]
        other = draw(st.binary(min_size=2, max_size=2).filter(lambda b: b != b"\r\n"))
        return raw[:at] + other + raw[at + 2 :], kind
    if kind == "data CRLF dropped":
        at = body.data_crlfs[pick % len(body.data_crlfs)]
        return raw[:at] + raw[at + 2 :], kind
    if kind == "size line ends in lone LF":
        line = sizes[pick % len(sizes)]
        return raw[: line.end - 2] + b"\n" + raw[line.end :], kind
    if kind == "size line ends in bare CR":
        # Extensions go too: h11 takes a bare CR inside ";.*" (difference 3).
        line = sizes[pick % len(sizes)]
        return raw[: line.start] + line.size_text + b"\r" + raw[line.end :], kind
    line = (chunk_sizes or sizes)[pick % len(chunk_sizes or sizes)]
    digits_end = line.start + len(line.size_text)
    if kind == "size prefixed":
        prefix = draw(st.sampled_from([b"0x", b"0X", b"+", b"-", b" ", b"\t"]))
        return raw[: line.start] + prefix + raw[line.start :], kind
    if kind == "size emptied":
        return raw[: line.start] + raw[digits_end:], kind
    if kind == "non-hex in the size":
        at = draw(st.integers(line.start, digits_end))
        char = draw(st.sampled_from([b"g", b"G", b"x", b"z", b"_", b".", b",", b"/", b"@"]))
        return raw[:at] + char + raw[at:], kind
    if kind == "21+ hex digits":
        zeros = b"0" * draw(st.integers(21 - len(line.size_text), 30))
        return raw[: line.start] + zeros + raw[line.start :], kind
    if kind == "size off by a little":
        assert isinstance(line, ChunkSize)
        size = max(1, line.size + draw(st.sampled_from([-3, -2, -1, 1, 2, 3])))
        if size == line.size:
            size += 1
        return raw[: line.start] + b"%x" % size + raw[digits_end:], kind
    # the trailer section
    start, end = body.trailer_lines[pick % len(body.trailer_lines)]
    colon = raw.index(b":", start)
    if kind == "trailer without colon":
        # Every colon of the line: a value may hold one too ("x: a:b" minus its first
        # colon is "xa:b", still a field line).
        return raw[:start] + raw[start:end].replace(b":", b"") + raw[end:], kind
    if kind == "whitespace before a trailer colon":
        return raw[:colon] + draw(st.sampled_from([b" ", b"\t"])) + raw[colon:], kind
    if kind == "NUL in a trailer":
        at = draw(st.integers(start, end - 2))
        return raw[:at] + b"\x00" + raw[at:], kind
    if kind == "empty trailer name":
        return raw[:start] + raw[colon:], kind
    if kind == "non-token trailer name":
        at = draw(st.integers(start, colon))
        char = draw(st.sampled_from([b"(", b")", b",", b"/", b"@", b"[", b'"', b"\x7f", b"\xff"]))
        return raw[:at] + char + raw[at:], kind
    assert kind == "bare CR ends a trailer line"
    return raw[: end - 1] + raw[end:], kind


@settings(max_examples=1500, deadline=None)
@given(smuggling_mutations(), st.data())
def test_smuggling_mutations_refused_by_both(
    mutation: tuple[bytes, str], data: st.DataObject
) -> None:
    raw, kind = mutation
    ours = lab_outcome(raw, cuts_for(data, raw))
    theirs = h11_outcome(raw)
    assert theirs.status != "ok", (kind, raw)
    if kind == "size off by a little":
        # A larger size can swallow the rest of the body: then both just wait for more.
        assert ours.status != "ok", (kind, raw)
    else:
        assert ours.status == "error", (kind, raw)


# ------------------------------------------------------ random edits: agree, or a documented gap

# Our error messages for input h11 0.16.0 accepts, each with its numbered difference.
STRICTER_THAN_H11 = [
    (r"whitespace before CRLF", "1/3 whitespace after the size or an extension"),
    (r"without an extension (name|value)", "3 malformed extension"),
    (r"unexpected .* in the chunk-size line", "3 malformed extension"),
    (r"control byte .* in a chunk extension", "3 control byte in an extension"),
    (r"unterminated quoted string", "3 malformed extension"),
    (r"bare CR in the chunk-size line", "3 bare CR inside an extension"),
    (r"more than 16 hex digits", "4 digit limit"),
    (r"chunk extensions longer|trailer section longer", "5 size limits"),
    (r"lone LF ends a trailer field line|lone LF in the trailer section", "6 lone LF"),
    (r"obsolete line folding", "7 obs-fold"),
    (r"control byte .* in a trailer field value", "8 control byte in a trailer"),
]


def _bws_after_a_size(raw: bytes, ours: Outcome) -> bool:
    """Difference 2: a size line with whitespace between the size and ';'."""
    return any(
        raw[s.start + len(s.size_text) : s.start + len(s.size_text) + 1] in (b" ", b"\t")
        for s in ours.segments
        if isinstance(s, ChunkSize | LastChunk)
    )


def _framing_trailer(ours: Outcome) -> bool:
    """Difference 9: h11 checks Content-Length / Transfer-Encoding trailers as headers."""
    return any(
        isinstance(s, TrailerField) and s.name.lower() in FRAMING_NAMES for s in ours.segments
    )


@st.composite
def edited_bodies(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(chunked_bodies(max_chunks=4, max_data=12, allow_bws_after_size=False)).raw)
    alphabet = st.sampled_from(list(b'0159aAfgx;=" \t:\r\n\\\x00\x01\x7f\xff,'))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert":
            raw[at:at] = bytes([draw(alphabet)])
        elif at < len(raw):
            raw[at : at + 1] = b"" if edit == "delete" else bytes([draw(alphabet)])
    return bytes(raw)


@settings(max_examples=3000, deadline=None)
@given(edited_bodies(), st.data())
def test_random_edits_agree_with_h11_or_differ_as_documented(
    raw: bytes, data: st.DataObject
) -> None:
    ours = lab_outcome(raw, cuts_for(data, raw))
    theirs = h11_outcome(raw)
    event(f"lab {ours.status}, h11 {theirs.status}")
    if ours.status == "ok" and theirs.status == "ok":
        assert (ours.data, ours.trailers, ours.unused) == (
            theirs.data,
            theirs.trailers,
            theirs.unused,
        )
    elif theirs.status == "ok":
        # We refuse what h11 accepts: must be one of the ways we are stricter.
        assert ours.status == "error", (raw, ours)
        reasons = [why for pattern, why in STRICTER_THAN_H11 if re.search(pattern, ours.message)]
        assert reasons, f"undocumented difference: h11 accepts, we say {ours.message!r}"
        event(f"difference {reasons[0]}")
    elif ours.status != "error" and theirs.status == "error":
        # We accept (or wait for more of) what h11 refuses.
        assert _bws_after_a_size(raw, ours) or _framing_trailer(ours), (
            f"undocumented difference: we accept, h11 says {theirs.message!r}"
        )
        event("difference 2/9 we accept, h11 refuses")
    else:
        # Both refuse, or one is still waiting for more: only a finished body on our side
        # with h11 still waiting would be a disagreement.
        assert ours.status != "ok" or theirs.status != "incomplete", raw
