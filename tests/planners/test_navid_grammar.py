"""The strict, total NaVid grammar parser: property-based over random text, plus known cases."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlm_agent.planners.navid_grammar import MAX_TEXT_CHARS, parse_primitives
from vlm_agent.actions import NavPrimitive

STOP = [NavPrimitive.stop()]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50), st.integers(), st.none(), st.lists(st.text(max_size=5))))
def test_total_on_anything(value):
    r = parse_primitives(value)
    assert 1 <= len(r.primitives) <= 3
    assert all(isinstance(p, NavPrimitive) for p in r.primitives)
    if r.error is not None:
        assert r.primitives == STOP and r.error


move = st.one_of(
    st.integers(1, 100).map(lambda v: NavPrimitive.forward(v)),
    st.integers(1, 180).map(lambda v: NavPrimitive.turn_left(v)),
    st.integers(1, 180).map(lambda v: NavPrimitive.turn_right(v)),
)
plan = st.tuples(st.lists(move, min_size=0, max_size=2), st.booleans()).map(lambda t: t[0] + [NavPrimitive.stop()] if t[1] or not t[0] else t[0])


@settings(max_examples=200, deadline=None)
@given(plan, st.sampled_from([", ", ",", "; ", "\n", " then ", ", then ", ",then ", "; then ", "\nthen "]), st.booleans(), st.booleans())
def test_valid_plans_round_trip(prims, sep, upper, period):
    text = sep.join(p.to_text() for p in prims) + ("." if period else "")
    text = text.upper() if upper else text
    r = parse_primitives(text)
    assert r.ok, r.error
    assert r.primitives == prims


@settings(max_examples=200, deadline=None)
@given(plan, st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8))
def test_junk_appended_or_prepended_never_passes_silently(prims, junk):
    text = ", ".join(p.to_text() for p in prims)
    for candidate in (junk + text, text + " " + junk):
        r = parse_primitives(candidate)
        # Either the junk is pure whitespace/separator/period (same plan) or the whole thing is a stop.
        assert (r.ok and r.primitives == prims) or (r.primitives == STOP and r.error) or (r.ok and r.primitives == STOP)


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("   \n ", "empty"),
    ("move forward 25 cm, turn left 30 degrees, turn right 30 degrees, stop", "more than the allowed 3"),
    ("stop, move forward 25 cm", "after stop"),
    ("move forward 0 cm", "outside"),
    ("move forward 250 cm", "outside"),
    ("turn left 270 degrees", "outside"),
    ("move forward -25 cm", "not a primitive"),
    ("move forward 25cm", "not a primitive"),
    ("move forward 2e3 cm", "not a primitive"),
    ("move forward \u0662\u0665 cm", "not a primitive"),  # Arabic-Indic digits are not numbers here
    ("go to the red ball", "not a primitive"),
    ("move forward 25 cm, , stop", "not a primitive"),
    ("x" * (MAX_TEXT_CHARS + 1), "too long"),
    ("Sure! move forward 25 cm", "not a primitive"),
    # "then" joins two primitives; it is never a clause of its own.
    ("move forward 25 cm, then", "not a primitive"),
    ("then move forward 25 cm", "not a primitive"),
    (", then move forward 25 cm", "not a primitive"),
    ("move forward 25 cm, then then turn left 30 degrees", "not a primitive"),
    ("move forward 25 cm, then, turn left 30 degrees", "not a primitive"),
    ("move forward 25 cm, and then turn left 30 degrees", "not a primitive"),
    ("move forward 25 cm, thence turn left 30 degrees", "not a primitive"),
    ("move forward 25 cm, then turn left 30 degrees, then turn right 30 degrees, then stop", "more than the allowed 3"),
    ("stop, then move forward 25 cm", "after stop"),
])
def test_rejections_are_logged_stops(text, reason):
    r = parse_primitives(text)
    assert r.primitives == STOP and reason in r.error


@pytest.mark.parametrize("text", [
    "move forward 50 cm, then turn left 30 degrees",
    "Move forward 50 cm, Then turn left 30 degrees.",
    "MOVE FORWARD 50 CM,THEN TURN LEFT 30 DEGREES",
    "move forward 50 cm;  then\tturn left 30 degrees",
    "move forward 50 cm,\nthen turn left 30 degrees",
])
def test_comma_then_separates_primitives(text):
    # How general VLMs phrase a sequence; before ", then" was one separator this was a stop.
    r = parse_primitives(text)
    assert r.ok, r.error
    assert r.primitives == [NavPrimitive.forward(50), NavPrimitive.turn_left(30)]


def test_limits_are_configurable():
    assert parse_primitives("move forward 150 cm", max_forward_cm=200).primitives == [NavPrimitive.forward(150)]
    assert parse_primitives("turn left 30 degrees, stop", max_primitives=1).error
    assert parse_primitives("turn right 1 degree").primitives == [NavPrimitive.turn_right(1)]
