"""PaLM-E step grammar and Octopus response parser: strict, total (hypothesis), round-trip."""
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vlm_agent.planners.octopus_format import (
    _HEADER, OctopusParse, OctopusResponse, TargetPredicate, format_instructions, format_response, parse_response,
)
from vlm_agent.planners.palme_grammar import MAX_PLAN_STEPS, PlanParse, format_plan, grammar_text, parse_plan
from vlm_agent.skills.api import PREDICATES, SKILL_SPECS, SKILLS, SkillCall

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- PaLM-E plans ------------------------------------------------------------------------------------
_phrase = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,40}[A-Za-z0-9]|[A-Za-z0-9]", fullmatch=True)


@st.composite
def skill_calls(draw):
    spec = draw(st.sampled_from(SKILL_SPECS))
    return SkillCall(spec.name, tuple(draw(_phrase) for _ in spec.params))


@FUZZ
@given(st.lists(skill_calls(), min_size=1, max_size=MAX_PLAN_STEPS))
def test_plan_round_trip(steps):
    text = format_plan(steps)
    parsed = parse_plan(text)
    assert parsed.ok and parsed.steps == steps
    assert format_plan(parsed.steps) == text


_PLAN_TOKENS = ["1. ", "2. ", "3.", "navigate_to", "pick", "fly", "(", ")", "the red cube", ",", "'", '"', "\n", " ", "done()",
                "place_on(table)", "0. ", "99. ", "é", "\r", "\x00", "((", "))"]


@FUZZ
@given(st.one_of(st.text(max_size=400), st.lists(st.sampled_from(_PLAN_TOKENS), max_size=40).map("".join)))
def test_parse_plan_is_total(text):
    parsed = parse_plan(text)
    assert isinstance(parsed, PlanParse)
    if parsed.ok:
        assert parsed.steps and all(isinstance(s, SkillCall) for s in parsed.steps)
    else:
        assert parsed.steps == [] and parsed.error.feedback().startswith("could not parse the plan")


def test_plan_accepts_the_documented_forms():
    p = parse_plan("  1. navigate_to(the red cube)\n\n2. pick( 'the red cube' )\n3. place_on(\"blue plate\")\n4. done()\n")
    assert p.ok and p.steps == [SkillCall("navigate_to", ("the red cube",)), SkillCall("pick", ("the red cube",)),
                                SkillCall("place_on", ("blue plate",)), SkillCall("done")]


@pytest.mark.parametrize("text,message", [
    ("", "no steps"), ("pick(red cube)", "expected '<n>. <skill>"), ("1. pick(red cube)\n3. done()", "expected step number 2"),
    ("2. pick(red cube)", "expected step number 1"), ("1. fly(red cube)", "unknown skill 'fly'"),
    ("1. pick()", "takes 1 argument"), ("1. done(now)", "takes 0 argument"), ("1. pick(red cube, blue cube)", "takes 1"),
    ("1. pick(__import__('os'))", "bad object name"), ("1. pick(red cube) then place it", "expected '<n>."),
    ("Plan:\n1. pick(red cube)", "expected '<n>."), ("1. pick(" + "a" * 61 + ")", "bad object name"),
    ("1. pick('red cube\")", "bad object name"), ("x" * 5000, "too long"),
    ("\n".join(f"{k}. done()" for k in range(1, MAX_PLAN_STEPS + 2)), f"more than {MAX_PLAN_STEPS} steps"),
])
def test_plan_errors_are_structured_feedback(text, message):
    p = parse_plan(text)
    assert not p.ok and message in p.error.message
    assert parse_plan(None).error.message.startswith("expected text")


def test_grammar_text_lists_every_registered_skill():
    text = grammar_text()
    for spec in SKILL_SPECS:
        assert spec.name + "(" in text
    # the example lines of the prompt parse
    examples = [line for line in text.splitlines() if re.match(r"\d\. ", line)]
    assert parse_plan("\n".join(examples)).ok


# -- Octopus responses -------------------------------------------------------------------------------
_line = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ,.;'()-]{0,60}[A-Za-z0-9.]|[A-Za-z]", fullmatch=True).filter(
    lambda s: not _HEADER.fullmatch(s))
_code_line = st.from_regex(r"    [A-Za-z0-9_ ().'=:-]{1,40}", fullmatch=True).map(str.rstrip).filter(lambda s: s.strip())


@st.composite
def predicates(draw):
    name = draw(st.sampled_from(sorted(PREDICATES)))
    return TargetPredicate(name, tuple(draw(_phrase) for _ in PREDICATES[name][0]))


@st.composite
def responses(draw):
    explanation = "\n".join(draw(st.lists(_line, min_size=1, max_size=4)))
    subtasks = tuple(draw(st.lists(_line, min_size=1, max_size=6)))
    code = "def act(robot):\n" + "\n".join(draw(st.lists(_code_line, min_size=1, max_size=6))) + "\n"
    targets = tuple(draw(st.lists(predicates(), min_size=1, max_size=4)))
    return OctopusResponse(explanation, subtasks, code, targets)


@FUZZ
@given(responses())
def test_response_round_trip(resp):
    text = format_response(resp)
    parsed = parse_response(text)
    assert parsed.ok, parsed.errors
    assert parsed.response == resp
    assert format_response(parsed.response) == text


_RESP_TOKENS = ["Explanation:", "Subtasks:", "Code:", "Target state:", "**Code**", "## Subtasks", "\n", "1. ", "(2) ", "```", "```python",
                "def act(robot):", "    robot.pick('x')", "on(red cube, table)", "holding(nothing)", "fly(x)", "text", " ", ":", "#"]


@FUZZ
@given(st.one_of(st.text(max_size=600), st.lists(st.sampled_from(_RESP_TOKENS), max_size=60).map("".join),
                 st.lists(st.sampled_from(_RESP_TOKENS), max_size=60).map("\n".join)))
def test_parse_response_is_total(text):
    parsed = parse_response(text)
    assert isinstance(parsed, OctopusParse)
    assert parsed.ok != bool(parsed.errors)
    if not parsed.ok:
        assert parsed.feedback().startswith("could not parse the response")


GOOD = """Explanation:
The red cube lies on the floor; the blue plate is near the wall.
Subtasks:
1. Go to the red cube and pick it up.
2. Put it on the blue plate.
Code:
```python
def act(robot):
    robot.pick("the red cube")
    robot.place_on("the blue plate")
```
Target state:
1. on(the red cube, the blue plate)
2. holding(nothing)
"""


def test_response_accepts_markdown_headers_and_parenthesised_numbers():
    text = GOOD.replace("Explanation:", "## Explanation").replace("Subtasks:", "**Subtasks:**").replace("1. Go", "(1) Go")
    text = text.replace("Target state:", "### Target State").replace("```python", "```")
    p = parse_response(text)
    assert p.ok, p.errors
    assert p.response.subtasks[0] == "Go to the red cube and pick it up."
    assert p.response.target_state == (TargetPredicate("on", ("the red cube", "the blue plate")), TargetPredicate("holding", ("nothing",)))
    assert p.response.code.startswith("def act(robot):\n") and p.response.code.endswith("\n")


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t.replace("Subtasks:\n", ""), "'Subtasks:' must appear exactly once"),
    (lambda t: t + "Code:\n", "'Code:' must appear exactly once"),
    (lambda t: t.replace("```python\n", "").replace("```\n", ""), "expected one ```python"),
    (lambda t: t.replace("1. on(", "1. under("), "Target state: expected one of"),
    (lambda t: t.replace("2. holding(nothing)", "2. holding(a, b)"), "holding takes 1"),
    (lambda t: t.replace("2. Put", "3. Put"), "Subtasks: expected item 2"),
    (lambda t: "Hello!\n" + t, "text before"),
    (lambda t: t.replace("robot.place_on(\"the blue plate\")\n```", "```\n```python\nx = 1\n```"), "more than one fenced block"),
    (lambda t: t.split("Target state:")[0].replace("Code:", "Target state:\n1. holding(nothing)\nCode:") + "", "order"),
])
def test_response_errors_name_the_section(mutate, message):
    p = parse_response(mutate(GOOD))
    assert not p.ok and any(message in e for e in p.errors), p.errors


def test_format_instructions_come_from_the_registry():
    text = format_instructions()
    for name in SKILLS:
        assert f"- {name}(" in text
    for name in PREDICATES:
        assert f"- {name}(" in text
