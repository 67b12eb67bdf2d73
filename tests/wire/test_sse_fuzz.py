"""lab.wire.sse under heavier fuzzing: many generated streams, split anywhere, checked
against the executable transcription of §9.2.6 and against httpx-sse 0.4.3. Every test
here is marked ``fuzz``; run them with ``-m fuzz``.

Where httpx-sse and the decoder disagree, the disagreement must be one of the numbered
differences in lab.wire.sse's module docstring: the generated streams avoid exactly those.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .test_sse import (
    LEXICON,
    LINE_ENDINGS,
    Encoded,
    agreeable_streams,
    check_against_httpx_sse,
    check_against_reference,
    check_invariant,
    check_round_trip,
    cuts_for,
    encode_all,
    encoded_events,
    httpx_sse_module,
    noise,
)

pytestmark = pytest.mark.fuzz


@settings(max_examples=1000, deadline=None)
@given(st.lists(encoded_events, max_size=20), st.sampled_from(LINE_ENDINGS), st.data())
def test_round_trip(items: list[Encoded], line_ending: str, draw: st.DataObject) -> None:
    stream = encode_all(items, line_ending)
    check_round_trip(items, line_ending, cuts_for(draw, stream))


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_arbitrary_bytes_give_segments_or_sse_error(draw: st.DataObject) -> None:
    stream = draw.draw(st.one_of(noise, st.lists(LEXICON, max_size=200).map(b"".join)))
    check_invariant(stream, cuts_for(draw, stream))
    check_invariant(stream, cuts_for(draw, stream), max_line_size=8, max_data_size=12)


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_generated_streams_against_the_spec_and_httpx_sse(draw: st.DataObject) -> None:
    httpx_sse_module()
    stream = draw.draw(agreeable_streams())
    check_against_reference(stream, cuts_for(draw, stream))
    check_against_httpx_sse(stream, cuts_for(draw, stream))
