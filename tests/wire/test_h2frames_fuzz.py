"""lab.wire.h2frames under heavier fuzzing: many generated frames, split anywhere, and
hyperframe 6.1.0 and hpack 4.2.0 on the same bytes. Every test here is marked ``fuzz``; run
them with ``-m fuzz``.

Where hyperframe and the decoder disagree, the disagreement must be one of the numbered
differences in lab.wire.h2frames's module docstring; anything else fails the test.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from .test_h2frames import (
    LEXICON,
    Expected,
    check_blocks_against_hpack,
    check_invariant,
    check_one_against_hyperframe,
    check_round_trip,
    cuts_for,
    documented_difference,
    encoded_blocks,
    flatten,
    frame_groups,
    mutated_frames,
    noise,
    whole_frames,
)

pytestmark = pytest.mark.fuzz


@settings(max_examples=1000, deadline=None)
@given(st.lists(frame_groups(), min_size=1, max_size=30), st.data())
def test_round_trip(groups: list[list[Expected]], data: st.DataObject) -> None:
    items = flatten(groups)
    check_round_trip(items, cuts_for(data, b"".join(r for r, _, _ in items)))


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_arbitrary_bytes_give_segments_or_h2_frame_error(data: st.DataObject) -> None:
    body = data.draw(st.one_of(noise, st.lists(LEXICON, max_size=100).map(b"".join)))
    check_invariant(body, cuts_for(data, body))
    check_invariant(body, cuts_for(data, body), decode_headers=True)
    check_invariant(body, cuts_for(data, body), strict=True)


@settings(max_examples=3000, deadline=None)
@given(mutated_frames())
def test_mutated_frames_against_hyperframe(raw: bytes) -> None:
    event(documented_difference(raw) or "must agree")
    check_one_against_hyperframe(raw)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_against_hyperframe(data: bytes) -> None:
    for raw in whole_frames(data):
        check_one_against_hyperframe(raw)


@settings(max_examples=500, deadline=None)
@given(encoded_blocks(max_blocks=12))
def test_hpack_encoder_blocks_decode_as_hpack_decodes_them(case: tuple[list[bytes], int]) -> None:
    blocks, limit = case
    check_blocks_against_hpack(blocks, limit=limit)
