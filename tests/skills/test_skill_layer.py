"""Skill registry (one source for prompt and tool schema), phrase resolver, ground-truth perception and
the simulator skills (locate, look_around, done, observation changes, target-state predicates)."""
import inspect
import json

import numpy as np
import pytest

from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.skills.api import (
    SKILL_SPECS, SKILLS, SkillAPI, SkillCall, SkillError, diff_state, parse_program, skill_spec, skills_prompt,
    tool_schemas,
)
from vlm_agent.skills.perception import GROUND_TRUTH_LABEL, GroundTruthPerception, Perception
from vlm_agent.skills.resolver import SceneEntity, normalise_phrase, resolve
from vlm_agent.skills.sim_skills import SimSkills

ISSUE_SKILLS = ("navigate_to", "pick", "place_on", "open_gripper", "close_gripper", "look_around", "locate", "done")


def test_registry_has_the_issue_skills_with_typed_object_arguments():
    assert SKILLS == ISSUE_SKILLS
    for spec in SKILL_SPECS:
        method = getattr(SkillAPI, spec.name)
        params = list(inspect.signature(method).parameters)[1:]
        assert [p.name for p in spec.params] == params
        assert all(p.is_object and p.json_type == "string" for p in spec.params)
        assert spec.doc and spec.returns
    assert skill_spec("pick").arity == 1 and skill_spec("done").arity == 0
    with pytest.raises(KeyError, match="unknown skill"):
        skill_spec("fly")


def test_prompt_and_tool_schema_come_from_the_same_specs():
    prompt = skills_prompt()
    tools = tool_schemas()
    json.dumps(tools)  # JSON-serialisable
    assert [t["function"]["name"] for t in tools] == list(SKILLS)
    for spec, tool, line in zip(SKILL_SPECS, tools, prompt.splitlines()):
        assert line.startswith(f"- {spec.signature()}: {spec.doc}")
        fn = tool["function"]
        assert fn["description"].startswith(spec.doc)
        assert fn["parameters"]["required"] == [p.name for p in spec.params]
        assert set(fn["parameters"]["properties"]) == {p.name for p in spec.params}
        assert fn["parameters"]["additionalProperties"] is False


def test_skill_call_validates_name_and_arity():
    assert SkillCall("pick", ("red cube",)).arguments() == {"object": "red cube"}
    assert SkillCall("pick", (), (("object", "red cube"),)).to_text() == "pick(object='red cube')"
    for bad in [("fly", ("x",)), ("pick", ()), ("pick", ("a", "b")), ("done", ("x",))]:
        with pytest.raises(ValueError):
            SkillCall(*bad)
    with pytest.raises(ValueError):
        SkillCall("pick", ("a",), (("object", "b"),))
    with pytest.raises(ValueError, match="line 1"):
        parse_program("pick('a', 'b')")


def test_diff_state_reports_only_changes():
    before = {"held": None, "base_pose": [0.0, 0.0, 0.0], "gripper": "open"}
    after = {"held": "red cube", "base_pose": [0.0004, 0.0, 0.0], "gripper": "open"}
    assert diff_state(before, after) == {"held": [None, "red cube"]}


ENTITIES = [
    SceneEntity("obj_1", "object", "red", "cube"),
    SceneEntity("obj_2", "object", "blue", "cube"),
    SceneEntity("obj_3", "object", "blue", "plate"),
    SceneEntity("table_0", "table"),
]


@pytest.mark.parametrize("phrase,name", [
    ("the red cube", "obj_1"), ("Red Cube", "obj_1"), ("'red block'", "obj_1"), ("red", "obj_1"), ("the red one", "obj_1"),
    ("blue plate", "obj_3"), ("the dish", "obj_3"), ("table", "table_0"), ("the desk.", "table_0"), ("obj_2", "obj_2"),
    ("top of the table", "table_0"),
])
def test_resolver_maps_instruction_phrases(phrase, name):
    assert resolve(phrase, ENTITIES).name == name


@pytest.mark.parametrize("phrase,message", [
    ("cube", "matches 2 objects"), ("blue", "matches 2 objects"), ("golden chalice", "no object matches"),
    ("green cube", "no object matches"), ("", "empty"), ("the", "no object matches"), ("x" * 200, "too long"),
    ("red cube please", "no object matches"),
])
def test_resolver_refuses_absent_and_ambiguous(phrase, message):
    with pytest.raises(SkillError, match=message):
        resolve(phrase, ENTITIES)
    with pytest.raises(SkillError):
        resolve(42, ENTITIES)
    assert normalise_phrase("  The 'Red'  CUBE! ") == "the red cube"


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=48, height=48, render_depth=False))
    yield e
    e.close()


def _episode(task):
    return next(e for e in make_episodes("manip", "val", 10, seed=0) if e.task == task)


def test_ground_truth_perception_is_a_labelled_upper_bound(env):
    ep = _episode("place")
    env.reset(ep)
    gt = GroundTruthPerception(env)
    assert isinstance(gt, Perception) and gt.upper_bound and gt.label == GROUND_TRUTH_LABEL
    target = env.world.object(ep.goal_objects[0])
    det = gt.locate("the " + target.label)
    assert det.name == target.name and det.position == pytest.approx(target.pos) and det.frame == "odom"
    # every visible object is in front of the camera
    x, y, yaw = env.pose
    for d in gt.visible():
        bearing = np.arctan2(d.position[1] - y, d.position[0] - x) - yaw
        assert np.cos(bearing) > 0


def test_sim_skills_locate_look_around_done_and_changes(env):
    ep = _episode("place")
    env.reset(ep)
    skills = SimSkills(env)
    target = env.world.object(ep.goal_objects[0])
    r = skills.execute(SkillCall("locate", ("the " + target.label,)))
    assert r.success and r.found and r.position == pytest.approx(target.pos) and r.frame == "odom"
    assert r.perception == GROUND_TRUTH_LABEL and r.changes == {}  # locate does not move
    miss = skills.execute(SkillCall("locate", ("golden chalice",)))
    assert not miss.success and miss.found is False and miss.position is None and miss.perception == GROUND_TRUTH_LABEL
    pose = env.pose
    seen = skills.execute(SkillCall("look_around"))
    assert seen.success and target.label in seen.feedback  # a full circle sees everything in range
    assert env.pose[:2] == pytest.approx(pose[:2]) and np.cos(env.pose[2] - pose[2]) == pytest.approx(1.0, abs=1e-6)
    picked = skills.execute(SkillCall("pick", (target.label,)))
    assert picked.success and picked.changes["held"] == [None, target.label]
    assert picked.changes[f"support/{target.label}"] == ["floor", "gripper"] and "base_pose" in picked.changes
    assert skills.holds("holding", (target.label,)) and skills.holds("gripper_closed", ())
    assert not skills.holds("holding", ("nothing",))
    assert not skills.done_called
    assert skills.execute(SkillCall("done")).success and skills.done_called


def test_sim_skill_failures_are_feedback_and_predicates_judge_the_task(env):
    ep = _episode("place")
    env.reset(ep)
    skills = SimSkills(env)
    target, dest = (env.world.object(n) for n in ep.goal_objects)
    failed = skills.execute(SkillCall("place_on", ("table",)))
    assert not failed.success and "not holding anything" in failed.feedback and failed.perception == GROUND_TRUTH_LABEL
    assert "no object matches" in skills.execute(SkillCall("navigate_to", ("golden chalice",))).feedback
    assert "too flat" in skills.execute(SkillCall("pick", (dest.label,))).feedback
    assert not skills.holds("on", (target.label, dest.label))
    for call in ManipProgram(target.label, dest.label):
        assert skills.execute(call).success
    assert skills.holds("on", (target.label, dest.label)) and skills.holds("holding", ("nothing",))
    assert skills.holds("near", (dest.label,)) and skills.holds("gripper_open", ())
    assert env.manip_metrics()["success"] == 1.0
    with pytest.raises(SkillError):
        skills.holds("on", ("golden chalice", "table"))


def ManipProgram(t, d):  # noqa: N802 (reads as the oracle's program)
    return [SkillCall("navigate_to", (t,)), SkillCall("pick", (t,)), SkillCall("navigate_to", (d,)), SkillCall("place_on", (d,))]


class _PositionOnly:
    """A provider that knows where but not which scene id (what the segmenter path will return)."""

    label, upper_bound = "segmenter", False

    def __init__(self, env):
        self.gt = GroundTruthPerception(env)

    def locate(self, phrase):
        from dataclasses import replace

        return replace(self.gt.locate(phrase), name=None)

    def visible(self):
        return []


def test_position_only_perception_is_refused_honestly(env):
    ep = _episode("bring")
    env.reset(ep)
    skills = SimSkills(env, perception=_PositionOnly(env))
    label = env.world.object(ep.goal_objects[0]).label
    assert skills.execute(SkillCall("locate", (label,))).found  # locating works with positions only
    r = skills.execute(SkillCall("pick", (label,)))
    assert not r.success and "scene id" in r.feedback and r.perception == "segmenter"


def test_an_unimplemented_skill_is_a_failed_result_not_a_crash():
    class BaseOnly(SkillAPI):
        def state(self):
            return {}

    r = BaseOnly().execute(SkillCall("pick", ("red cube",)))
    assert not r.success and "not available on this robot" in r.feedback
    assert not BaseOnly().bindings()["pick"]("a", "b").success  # wrong arguments: feedback too


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=100), st.lists(st.sampled_from(["the", "red", "blue", "cube", "plate", "table", "obj_1", " ", "'", "."]),
                                                 max_size=8).map(" ".join)))
def test_resolver_is_total(phrase):
    try:
        entity = resolve(phrase, ENTITIES)
    except SkillError as exc:
        assert str(exc)
    else:
        assert entity in ENTITIES
