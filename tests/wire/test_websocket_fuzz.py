"""lab.wire.websocket under heavier fuzzing: many generated streams, split anywhere, and
wsproto on the same bytes. Every test here is marked ``fuzz``; run them with ``-m fuzz``.

Where wsproto and the decoder disagree, the disagreement must be one of the numbered
differences in lab.wire.websocket's module docstring; anything else fails the test.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from .test_websocket import (
    arbitrary_frames,
    check_against_wsproto,
    check_round_trip,
    check_splits,
    cuts_for,
    documented_difference,
    lab_outcome,
    valid_streams,
)

pytestmark = pytest.mark.fuzz

ROLES = st.sampled_from(["server", "client"])


@settings(max_examples=1000, deadline=None)
@given(ROLES, st.data())
def test_round_trip(role: str, draw: st.DataObject) -> None:
    built = draw.draw(valid_streams(role))
    check_round_trip(built, role, cuts_for(draw, built.data))


@settings(max_examples=2000, deadline=None)
@given(ROLES, st.data())
def test_arbitrary_frames_split_anywhere(role: str, draw: st.DataObject) -> None:
    data = draw.draw(arbitrary_frames(role))
    check_splits(data, role, cuts_for(draw, data))


@settings(max_examples=3000, deadline=None)
@given(ROLES, st.data())
def test_arbitrary_frames_against_wsproto(role: str, draw: st.DataObject) -> None:
    data = draw.draw(arbitrary_frames(role))
    event(f"difference {documented_difference(data, role) or 'none: must agree'}")
    event(lab_outcome(data, role).status)
    check_against_wsproto(data, role)


@settings(max_examples=2000, deadline=None)
@given(ROLES, st.binary(max_size=64), st.data())
def test_random_bytes_against_wsproto_and_split_anywhere(
    role: str, data: bytes, draw: st.DataObject
) -> None:
    check_splits(data, role, cuts_for(draw, data))
    check_against_wsproto(data, role)
