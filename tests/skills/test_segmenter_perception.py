"""SegmenterPerception: objects located by a segmenter's mask back-projected with depth (ground-truth
masks from the renderer stand in for the model), furniture from the map, the search by turning in
place, association with the nearest scene object (the mask decides which), and manip episodes of
the planner loops run with it in-process (`evaluate_manip_planner(perception="segmenter")`)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
from vlm_agent.evaluation.manip_planners import evaluate_manip_planner, make_perception_factory
from vlm_agent.planners.palme_loop import PalmeConfig
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.skills.api import SkillCall, SkillError
from vlm_agent.skills.perception import Perception
from vlm_agent.skills.segmentation import SegResult, Segmenter
from vlm_agent.skills.segmenter_perception import (
    GroundTruthMaskSegmenter, SegmenterPerception, SegmenterPerceptionConfig, merge_locate_summaries, phrase_key,
)
from vlm_agent.skills.sim_skills import SimCameraView, SimSkills


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=32, height=32, render_depth=False))
    yield e
    e.close()


@pytest.fixture(scope="module")
def view(env):
    v = SimCameraView(env)
    yield v
    v.close()


@pytest.fixture(scope="module")
def oracle(env):
    seg = GroundTruthMaskSegmenter(env)
    yield seg
    seg.close()


@pytest.fixture
def episode(env):
    """A manip episode (bring/place/stack) and its target object, reset."""
    ep = make_episodes("manip", "val", 3, seed=0)[2]
    env.reset(ep)
    return ep, env.world.object(ep.goal_objects[0])


def _face(env, pos, offset=0.0):
    x, y, _ = env.pose
    env.set_pose(x, y, math.atan2(pos[1] - y, pos[0] - x) + offset)


class EmptySegmenter:
    label = "empty"

    def __init__(self):
        self.steps = 0

    def reset(self, query):
        self.query = query

    def step(self, rgb):
        self.steps += 1
        return SegResult(np.zeros(rgb.shape[:2], bool), 0.0, "detected", self.query)


class WrongSegmenter(GroundTruthMaskSegmenter):
    """Segments `other` whatever it is asked for."""

    label = "wrong"

    def __init__(self, env, other: str):
        super().__init__(env)
        self.other = other

    def reset(self, query):
        super().reset(self.other)


class PatchSegmenter:
    """A fixed mask: rows/cols slices of the frame."""

    label = "patch"

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols

    def reset(self, query):
        self.query = query

    def step(self, rgb):
        mask = np.zeros(rgb.shape[:2], bool)
        mask[self.rows, self.cols] = True
        return SegResult(mask, 1.0, "detected", self.query)


def test_protocols_and_config(env, view, oracle):
    p = SegmenterPerception(env, oracle, view=view)
    assert isinstance(p, Perception) and isinstance(oracle, Segmenter)
    assert p.label == "segmenter" and p.upper_bound is False and p.visible() == []
    assert (view.width, view.height) == (128, 128)  # the segmenter's view, whatever the env's observation size
    with pytest.raises(ValueError, match="turn_stops"):
        SegmenterPerceptionConfig(turn_stops=0)
    with pytest.raises(ValueError, match="shared view"):
        SegmenterPerception(env, oracle, SegmenterPerceptionConfig(width=64, height=64), view=view)


def test_locates_the_target_in_view_within_a_few_cm(env, view, oracle, episode):
    _, target = episode
    _face(env, target.pos)
    yaw = env.pose[2]
    p = SegmenterPerception(env, oracle, view=view)
    det = p.locate(f"the {target.label}")
    assert det.name == target.name and det.label == target.label and det.frame == "odom"
    rec = p.records[-1]
    assert rec.outcome == "view" and rec.turns == 0 and rec.pixels >= 4
    # the centroid of the visible surface: within half the object's size (16 cm objects) of its centre
    assert np.linalg.norm(np.asarray(det.position) - np.asarray(target.pos)) < 0.08
    assert rec.error_m == pytest.approx(float(np.linalg.norm(np.asarray(det.position) - np.asarray(target.pos))))
    assert env.pose[2] == pytest.approx(yaw)


def test_finds_an_object_out_of_view_by_turning_and_turns_back(env, view, oracle, episode):
    _, target = episode
    _face(env, target.pos, math.pi)  # facing away
    x, y, yaw = env.pose
    p = SegmenterPerception(env, oracle, view=view)
    det = p.locate(target.label)
    rec = p.records[-1]
    assert det.name == target.name and rec.outcome == "turned" and 1 <= rec.turns <= 7
    assert rec.error_m < 0.08
    assert env.pose[:2] == (x, y) and math.remainder(env.pose[2] - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-6)
    # seen once, the phrase is remembered: from where the camera cannot see it (facing away again) no turning
    _face(env, target.pos, math.pi)
    assert p.locate(f"The {target.label}.").name == target.name and p.records[-1].outcome == "memory"
    assert p.summary()["turned"] == 1 and p.summary()["memory"] == 1


def test_an_absent_phrase_is_a_clear_skill_error_after_a_full_circle(env, view, oracle, episode):
    present = {(o.colour, o.shape) for o in env.world.objects}
    colour, shape = next((c, s) for c in ("red", "green", "blue", "yellow", "purple") for s in ("ball", "cube", "cylinder")
                         if (c, s) not in present)
    yaw = env.pose[2]
    p = SegmenterPerception(env, oracle, view=view)
    with pytest.raises(SkillError, match=f"found no '{colour} {shape}' in any of 8 views"):
        p.locate(f"{colour} {shape}")
    assert p.records[-1].outcome == "not_found" and p.records[-1].turns == 7
    assert math.remainder(env.pose[2] - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-6)


class LowScoreSegmenter(GroundTruthMaskSegmenter):
    """The right mask, with a low confidence."""

    label = "unsure"

    def step(self, rgb):
        result = super().step(rgb)
        result.score = 0.2
        return result


def test_a_mask_below_min_score_counts_as_not_in_view(env, view, episode):
    _, target = episode
    _face(env, target.pos)
    seg = LowScoreSegmenter(env)
    try:
        assert SegmenterPerception(env, seg, view=view).locate(target.label).name == target.name  # min_score 0: any mask counts
        p = SegmenterPerception(env, seg, SegmenterPerceptionConfig(min_score=0.5, turn_stops=2), view=view)
        with pytest.raises(SkillError, match=f"found no '{target.label}'"):
            p.locate(target.label)
        assert p.records[-1].outcome == "not_found" and "score 0.20 (< 0.5)" in p.records[-1].reason
    finally:
        seg.close()


class DecoySegmenter(GroundTruthMaskSegmenter):
    """An unsure segmenter: the target's mask (score 0.9) where the target is in view, else the mask
    of `decoy` (score 0.3), like a model that puts a mask on whatever is in view."""

    label = "decoy"

    def __init__(self, env, decoy: str):
        super().__init__(env)
        self.decoy = decoy

    def step(self, rgb):
        result = super().step(rgb)
        if result.mask.any():
            result.score = 0.9
            return result
        asked, self.query = self.query, self.decoy
        try:
            result = super().step(rgb)
        finally:
            self.query = asked
        result.score = 0.3
        return result


def _decoy_heading(env, view, target):
    """(decoy object, yaw) where the camera sees the decoy but not the target."""
    x, y, _ = env.pose
    for other in env.world.objects:
        if other.label == target.label:
            continue
        for k in range(16):
            env.set_pose(x, y, k * math.pi / 8)
            if view.object_mask(other.name).sum() >= 8 and not view.object_mask(target.name).any():
                return other, k * math.pi / 8
    raise AssertionError("no heading sees another object without the target")


def test_search_best_keeps_the_highest_scoring_view_not_the_first_mask(env, view, episode):
    _, target = episode
    x, y, _ = env.pose
    other, yaw = _decoy_heading(env, view, target)
    seg = DecoySegmenter(env, other.label)
    try:
        env.set_pose(x, y, yaw)
        first = SegmenterPerception(env, seg, view=view)
        assert first.locate(target.label).name == other.name  # the first view's mask: the decoy
        assert first.records[-1].outcome == "view"
        env.set_pose(x, y, yaw)
        best = SegmenterPerception(env, seg, SegmenterPerceptionConfig(search="best"), view=view)
        det = best.locate(target.label)
        rec = best.records[-1]
        assert det.name == target.name and rec.outcome == "turned" and 1 <= rec.turns <= 7 and rec.score == pytest.approx(0.9)
        assert env.pose[:2] == (x, y)  # the base turned back
        assert math.remainder(env.pose[2] - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-6)
        # remembered with score 0.9: the decoy in view (0.3) does not replace it, the target in view does
        assert best.locate(target.label).name == target.name and best.records[-1].outcome == "memory"
        assert "scored 0.30" in best.records[-1].reason
        _face(env, target.pos)
        assert best.locate(target.label).name == target.name and best.records[-1].outcome == "memory"  # 0.9 is not > 0.9
        best.memory_score[phrase_key(target.label)] = 0.5
        assert best.locate(target.label).name == target.name and best.records[-1].outcome == "view"
        assert best.summary()["turned"] == 1 and best.summary()["view"] == 1
    finally:
        seg.close()


def test_search_best_an_absent_phrase_is_not_found_after_a_full_circle(env, view, episode):
    seg = EmptySegmenter()
    yaw = env.pose[2]
    p = SegmenterPerception(env, seg, SegmenterPerceptionConfig(search="best", turn_stops=6), view=view)
    with pytest.raises(SkillError, match="found no 'red cube' in any of 6 views"):
        p.locate("red cube")
    assert seg.steps == 6 and p.records[-1].outcome == "not_found" and p.records[-1].reason == "empty mask"
    assert math.remainder(env.pose[2] - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="search"):
        SegmenterPerceptionConfig(search="all")


def test_furniture_comes_from_the_map_without_segmenting(env, view, episode):
    seg = EmptySegmenter()
    p = SegmenterPerception(env, seg, view=view)
    det = p.locate("the table")
    box = next(b for b in env.world.furniture if b.kind == "table")
    assert det.name == box.name and det.position[2] == pytest.approx(box.top_z)
    assert p.records[-1].outcome == "map" and seg.steps == 0
    with pytest.raises(SkillError, match="no object matches"):
        p.locate("sofa")  # not in this room's map


def test_the_mask_decides_which_object_a_wrong_mask_picks_the_wrong_one(env, view, episode):
    _, target = episode
    other = next(o for o in env.world.objects if o.name != target.name and o.label != target.label)
    p = SegmenterPerception(env, WrongSegmenter(env, other.label), view=view)
    det = p.locate(target.label)
    assert det.name == other.name and det.label == other.label
    assert p.records[-1].name == other.name and p.records[-1].error_m < 0.08


def test_a_mask_where_no_object_is_is_refused_with_the_position(env, view, episode):
    # a patch at the bottom of the view (the floor or wall in front of the robot, facing away from the objects)
    _, target = episode
    _face(env, target.pos, math.pi)
    p = SegmenterPerception(env, PatchSegmenter(slice(120, 128), slice(60, 68)), view=view)
    with pytest.raises(SkillError, match=r"segmented 'red cube' at \(-?\d+\.\d\d, -?\d+\.\d\d\) but no object is there"):
        p.locate("red cube")
    rec = p.records[-1]
    assert rec.outcome == "no_object" and rec.name is None
    assert min(np.linalg.norm(np.asarray(o.pos) - np.asarray(rec.centroid)) for o in env.world.objects) > 0.25


def test_an_empty_mask_is_a_failed_step_with_a_reason_not_a_crash(env, view, episode):
    _, target = episode
    pose = env.pose
    skills = SimSkills(env, perception=SegmenterPerception(env, EmptySegmenter(), SegmenterPerceptionConfig(search_places=0), view=view))
    result = skills.execute(SkillCall("navigate_to", (target.label,)))
    assert not result.success and result.perception == "segmenter"
    assert f"found no '{target.label}' in any of 8 views" in result.feedback
    assert env.pose[:2] == pose[:2]
    searching = SimSkills(env, perception=SegmenterPerception(env, EmptySegmenter(), view=view))  # the default: 2 places
    result = searching.execute(SkillCall("navigate_to", (target.label,)))
    assert not result.success and "nor from 2 other places on the map" in result.feedback
    out = evaluate_manip_planner("palme", 1, env=env, perception="segmenter", segmenter_factory=lambda e: EmptySegmenter(),
                                 palme_config=PalmeConfig(max_model_calls=2))
    assert out["success_rate"] == 0.0 and out["perception"] == "segmenter" and out["upper_bound"] is False
    assert out["locate"]["not_found"] >= 1 and out["locate"]["segmented"] == 0


def test_the_held_object_is_answered_from_the_grasp(env, view, oracle, episode):
    _, target = episode
    p = SegmenterPerception(env, oracle, view=view)
    skills = SimSkills(env, perception=p)
    for call in (SkillCall("navigate_to", (target.label,)), SkillCall("pick", (target.label,))):
        result = skills.execute(call)
        assert result.success, result.feedback
    assert p.records[1].outcome == "memory"  # at the grasp standoff a floor object is below the camera's view
    det = p.locate(target.label)
    assert p.records[-1].outcome == "held" and det.name == target.name
    assert np.allclose(det.position, env.grasp_point())
    assert skills.holds("holding", (target.label,))


def test_palme_oracle_episodes_succeed_with_the_segmenter(env):
    out = evaluate_manip_planner("palme", 2, env=env, perception="segmenter", segmenter_factory=GroundTruthMaskSegmenter)
    assert out["success_rate"] == 1.0
    assert out["perception"] == "segmenter" and out["upper_bound"] is False
    loc = out["locate"]
    assert loc["segmented"] >= 2 and loc["map"] + loc["memory"] >= 2 and loc["mean_error_m"] < 0.08
    assert all("locate" in e for e in out["per_episode"])
    for e in out["per_episode"]:  # every call, so a failed episode shows which locate went wrong
        assert len(e["locate_calls"]) == e["locate"]["calls"] and e["goal_objects"][0] in {c["name"] for c in e["locate_calls"]}
    gt = evaluate_manip_planner("palme", 1, env=env)
    assert gt["perception"] == "ground_truth (upper bound)" and gt["upper_bound"] is True and "locate" not in gt


def test_the_eval_policy_and_command_wiring(env):
    from vlm_agent.commands.eval import _perception_kwargs
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import evaluate

    policy = make_policy("octopus", "manip", backend="oracle", env=env, perception="segmenter", seg_backend="oracle")
    result = evaluate("manip", policy, make_episodes("manip", "val", 1, seed=0), env, policy_name="octopus")
    policy.close()
    m = result.per_episode[0]
    assert m["success"] == 1.0 and m["perception"] == "segmenter" and m["upper_bound"] is False and m["locate"]["calls"] >= 1
    assert merge_locate_summaries([m["locate"], m["locate"]])["calls"] == 2 * m["locate"]["calls"]

    assert make_perception_factory("segmenter", seg_backend="sa2va") is not None  # no --seg-model: the shipped checkpoints/sa2va_nano
    with pytest.raises(ValueError, match="unknown perception"):
        make_perception_factory("lidar")
    args = SimpleNamespace(suite="manip", policy="palme", ros=False, perception="segmenter", seg_model="/m", seg_backend="sa2va")
    assert _perception_kwargs(args) == {"perception": "segmenter", "seg_model_dir": "/m", "seg_backend": "sa2va"}
    assert _perception_kwargs(SimpleNamespace(**{**vars(args), "perception": "ground_truth"})) == {}
    tuned = SimpleNamespace(**vars(args), perception_param=["min_score=0.3", "turn_stops=12"])
    assert _perception_kwargs(tuned)["seg_params"] == {"min_score": 0.3, "turn_stops": 12}
    with pytest.raises(ValueError, match="--perception-param applies"):
        _perception_kwargs(SimpleNamespace(**{**vars(tuned), "perception": "ground_truth"}))
    with pytest.raises(ValueError, match="--perception-param expects KEY=VALUE"):
        _perception_kwargs(SimpleNamespace(**{**vars(args), "perception_param": ["min_score"]}))
    tuned_policy = make_policy("palme", "manip", backend="oracle", env=env, perception="segmenter", seg_backend="oracle",
                               seg_params={"min_score": 0.3})
    assert tuned_policy.perception_factory.config.min_score == 0.3
    with pytest.raises(ValueError, match="perception segmenter only"):
        make_policy("palme", "manip", backend="oracle", env=env, seg_params={"min_score": 0.3})
    for bad in ({"policy": "oracle"}, {"suite": "nav"}):
        with pytest.raises(ValueError, match="--perception segmenter applies"):
            _perception_kwargs(SimpleNamespace(**{**vars(args), **bad}))
    # through ROS: the segmenter node (sa2va or oracle); the in-process provider's settings do not apply
    assert _perception_kwargs(SimpleNamespace(**{**vars(args), "ros": True}))["seg_backend"] == "sa2va"
    with pytest.raises(ValueError, match="--perception-param applies in-process"):
        _perception_kwargs(SimpleNamespace(**{**vars(tuned), "ros": True}))
    with pytest.raises(ValueError, match="sa2va or oracle"):
        _perception_kwargs(SimpleNamespace(**{**vars(args), "ros": True, "seg_backend": "sa2va_official"}))


def test_eval_command_reports_the_perception(tmp_path, capsys):
    import json

    from vlm_agent.cli import main

    small = ["--width", "32", "--height", "32", "--split", "val", "--seed", "0", "--episodes", "2"]
    out = tmp_path / "seg.json"
    assert main(["eval", "--suite", "manip", "--policy", "palme", "--backend", "oracle", "--perception", "segmenter", "--seg-backend", "oracle",
                 *small, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["success_rate"] == 1.0 and result["perception"] == "segmenter" and result["upper_bound"] is False
    assert result["locate"]["segmented"] >= 2 and all(m["perception"] == "segmenter" for m in result["per_episode"])
    out = tmp_path / "gt.json"
    assert main(["eval", "--suite", "manip", "--policy", "oracle", *small, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["perception"] == "ground_truth (upper bound)" and result["upper_bound"] is True
    capsys.readouterr()
    missing = str(tmp_path / "no_such_model")
    assert main(["eval", "--suite", "manip", "--policy", "palme", "--backend", "oracle", "--perception", "segmenter", "--seg-model", missing,
                 *small]) != 0
    assert "no_such_model" in capsys.readouterr().err


def test_a_saved_sa2va_model_runs_as_the_perception(env, tmp_path):
    # an untrained tiny model: the wiring (model directory -> Sa2VASegmenter -> masks at 128x128) end to end; it finds nothing
    from tests.helpers.tiny_sa2va import save_untrained_sa2va_model

    model = save_untrained_sa2va_model(tmp_path / "sa2va")
    out = evaluate_manip_planner("palme", 1, env=env, perception="segmenter", seg_model_dir=model, palme_config=PalmeConfig(max_model_calls=1))
    assert out["perception"] == "segmenter" and out["upper_bound"] is False and out["locate"]["calls"] >= 1
    assert out["locate"]["error"] == 0


def test_an_object_in_no_view_from_here_is_searched_for_from_other_places(env, view, oracle):
    """`ObjectNotFound` from the full circle at the start: with `search_places` the skills drive to
    other places on the map and search again (and the object is reached); without, the call fails
    where it stands. An absent phrase fails after every place, naming how many were tried, and the
    places searched are remembered so that the next call goes elsewhere."""
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.skills.api import ObjectNotFound

    ep = make_episode("manip", "val", 0, 3)  # its cyan cylinder covers at most 3 px of any view from the start
    env.reset(ep)
    target = env.world.object(ep.goal_objects[0])
    start = tuple(env.pose)
    stay = SimSkills(env, perception=SegmenterPerception(env, oracle, SegmenterPerceptionConfig(search_places=0), view=view))
    with pytest.raises(ObjectNotFound, match=f"found no '{target.label}' in any of 8 views turning a full circle$"):
        stay.navigate_to(target.label)
    assert env.pose[:2] == pytest.approx(start[:2], abs=1e-6) and stay.searched_from == []

    env.reset(ep)
    p = SegmenterPerception(env, oracle, SegmenterPerceptionConfig(search_places=2), view=view)
    skills = SimSkills(env, perception=p)
    assert skills.search_places == 2
    result = skills.navigate_to(target.label)
    assert result.success and env.distance_to(target.name) < 0.8
    assert p.records[0].outcome == "not_found"
    assert p.records[-1].outcome in ("view", "turned") and p.records[-1].name == target.name
    assert skills.searched_from == [pytest.approx(start[:2])]

    present = {(o.colour, o.shape) for o in env.world.objects}
    colour, shape = next((c, s) for c in ("red", "green", "blue", "yellow", "purple") for s in ("ball", "cube", "cylinder")
                         if (c, s) not in present)
    before = len(skills.searched_from)
    with pytest.raises(ObjectNotFound, match=r"nor from 2 other places on the map"):
        skills.navigate_to(f"{colour} {shape}")
    assert len(skills.searched_from) == before + 3  # here, then both places
    with pytest.raises(ValueError, match="search_places"):
        SimSkills(env, search_places=-1)
    assert SimSkills(env).search_places == 0  # ground truth never misses an object: nothing to search for
