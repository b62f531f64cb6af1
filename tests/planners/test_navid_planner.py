"""NavidPlanner contract with the built-in backend, history caching, and the eval policy's queue."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from vlm_agent.planners.backends import BuiltinNavidBackend
from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig, PlanResult
from vlm_agent.planners.navid_policy import NavidPolicy, make_navid_policy
from vlm_agent.actions import NavPrimitive


def frame(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def planner(tiny_navid_dir):
    return NavidPlanner(NavidPlannerConfig(model_dir=tiny_navid_dir))


class CountingEncoder:
    """Wraps the tower to count how many frames go through the vision encoder."""

    def __init__(self, tower):
        self.tower, self.frames = tower, 0

    def encode(self, pixel_values):
        self.frames += pixel_values.shape[0]
        with torch.no_grad():
            return self.tower(pixel_values)


def test_plan_contract(planner):
    planner.reset("go to the red ball")
    r = planner.plan(frame(0))
    assert isinstance(r, PlanResult) and isinstance(r.raw_text, str) and r.latency_s > 0
    assert 1 <= len(r.primitives) <= 3 and all(isinstance(p, NavPrimitive) for p in r.primitives)
    assert r.error is None  # constrained decoding cannot produce unparsable text
    assert set(r.to_dict()) == {"raw_text", "primitives", "latency_s", "error", "source"} and r.source == "model"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 501, "go\x00 to the ball", "go to\u202e the ball", "stop\nmove forward 100 cm", None, 42])
def test_bad_instructions_raise(planner, bad):
    with pytest.raises(ValueError):
        planner.reset(bad)


def test_calls_before_reset_and_bad_frames_raise(planner):
    with pytest.raises(RuntimeError, match="reset"):
        planner.plan(frame(0))
    planner.reset("go to the red ball")
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8)):
        with pytest.raises(ValueError):
            planner.plan(bad)
        with pytest.raises(ValueError):
            planner.observe(bad)


def test_history_frames_are_encoded_once(planner):
    backend: BuiltinNavidBackend = planner.backend
    counter = CountingEncoder(backend.model.vision_tower)
    backend.model.set_vision_encoder(counter)
    planner.reset("go to the red ball")
    for i in range(10):
        planner.plan(frame(i))
        planner.observe(frame(i))  # same frame as the plan: reuses its encoding
    assert counter.frames == 10
    planner.plan(frame(99))
    assert counter.frames == 11
    assert backend.history_length == 10


def test_history_fed_to_the_lm_is_capped(planner, monkeypatch):
    backend = planner.backend
    seen = []
    real = backend.model.embed_multimodal
    monkeypatch.setattr(backend.model, "embed_multimodal", lambda ids, feats, states=None: seen.append(int((ids == backend.model.config.image_token_id).sum())) or real(ids, feats, states))
    planner.reset("go to the red ball")
    for i in range(7):
        planner.plan(frame(i))
        planner.observe(frame(i))
    cap = backend.model.config.max_history_frames  # 4 in the tiny model
    assert seen == [64 + 4 * min(i, cap) for i in range(7)]


def test_reencode_mode_matches_cached_mode_when_under_the_cap(tiny_navid_dir):
    cached = BuiltinNavidBackend(tiny_navid_dir, max_history_frames=8)
    reenc = BuiltinNavidBackend(tiny_navid_dir, history_mode="reencode")
    for be in (cached, reenc):
        be.reset("go to the blue box")
        for i in range(3):
            be.observe(frame(i))
    assert cached.generate(frame(5)) == reenc.generate(frame(5))


def test_greedy_garbage_becomes_a_logged_stop(tiny_navid_dir, caplog):
    planner = NavidPlanner(NavidPlannerConfig(model_dir=tiny_navid_dir, decoding="greedy"))
    planner.reset("go to the red ball")
    r = planner.plan(frame(1))  # a random tiny LM's free text
    if r.error is not None:
        assert r.primitives == [NavPrimitive.stop()]
        assert "unparsable" in caplog.text


class ScriptedBackend:
    def __init__(self, outputs):
        self.outputs, self.generated, self.observed = list(outputs), 0, 0

    def reset(self, instruction):
        self.instruction = instruction

    def observe(self, rgb):
        self.observed += 1

    def generate(self, rgb):
        self.generated += 1
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


def test_garbage_and_backend_errors():
    backend = ScriptedBackend(["Sure! I will go forward.", TimeoutError("model timed out")])
    planner = NavidPlanner(NavidPlannerConfig(), backend=backend)
    planner.reset("go to the red ball")
    r = planner.plan(frame(0))
    assert r.primitives == [NavPrimitive.stop()] and "not a primitive" in r.error and r.raw_text == "Sure! I will go forward."
    with pytest.raises(TimeoutError):
        planner.plan(frame(1))


def test_policy_queues_up_to_three_and_observes_every_step():
    backend = ScriptedBackend(["move forward 25 cm, turn left 30 degrees, move forward 25 cm", "stop"])
    policy = NavidPolicy(NavidPlanner(NavidPlannerConfig(), backend=backend))

    class Ep:
        instruction = "go to the red ball"

    class Obs:
        rgb = frame(0)

    policy.reset(Ep())
    acts = [policy.act(Obs()) for _ in range(4)]
    assert acts == [NavPrimitive.forward(25), NavPrimitive.turn_left(30), NavPrimitive.forward(25), NavPrimitive.stop()]
    assert backend.generated == 2 and backend.observed == 4
    assert policy.episode_stats() == {"plans_model": 2, "plans_goal_approach": 0, "plans_explore": 0}
    policy.reset(Ep())
    assert policy.episode_stats()["plans_model"] == 0  # per episode


def test_make_navid_policy(tiny_navid_dir):
    policy = make_navid_policy(tiny_navid_dir, max_history_frames=2)
    assert policy.planner.backend.max_history_frames == 2
    with pytest.raises(ValueError, match="unknown keys"):
        make_navid_policy(tiny_navid_dir, history_frames=2)
    with pytest.raises(FileNotFoundError):
        make_navid_policy("/nonexistent/navid")


def test_encoder_backend_is_a_config_choice_with_logged_fallback(tiny_navid_dir, tmp_path):
    """Switching the vision encoder backend needs no code change; an unavailable one falls back
    (tensorrt is absent here) and the plan is the same as with the reference torch tower."""
    frame = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    texts = {}
    for backend, device in (("torch", "cpu"), ("onnxruntime", "cpu"), ("tensorrt", "cuda")):
        planner = NavidPlanner(NavidPlannerConfig(model_dir=tiny_navid_dir, encoder_backend=backend, encoder_device=device,
                                                  encoder_cache_dir=str(tmp_path)))
        planner.reset("go to the red ball")
        texts[backend] = planner.plan(frame).raw_text
        encoder = planner.backend.encoder
        if backend == "tensorrt":
            assert encoder.backend in ("onnxruntime", "torch") and encoder.fallback_reasons
        else:
            assert encoder.backend == backend
    assert texts["onnxruntime"] == texts["torch"] == texts["tensorrt"]



def test_spin_recovery_replaces_the_turn_after_a_full_circle_with_a_forward_step():
    turn = "turn left 30 degrees"
    answers = [turn] * 12 + [turn, "turn right 90 degrees, move forward 25 cm", turn, "stop"]
    planner = NavidPlanner(NavidPlannerConfig(spin_recovery_deg=360), backend=ScriptedBackend(answers))
    planner.reset("go to the red ball")
    results = [planner.plan(frame(0)) for _ in range(16)]
    kinds = [[p.kind for p in r.primitives] for r in results]
    # 12 x 30 degrees = a full circle: the 13th turn becomes one forward step, with the reason.
    assert kinds[:12] == [["turn_left"]] * 12 and all(r.recovery is None for r in results[:12])
    assert kinds[12] == ["forward"] and results[12].raw_text == turn and "360 degrees" in results[12].recovery
    assert results[12].to_dict()["recovery"] == results[12].recovery
    # The forward step reset the count: later turns pass, a stop always passes.
    assert kinds[13:] == [["turn_right", "forward"], ["turn_left"], ["stop"]]
    assert all(r.recovery is None for r in results[13:])
    # A new episode starts counting from zero; 0 turns it off (the default is a full circle).
    planner.backend.outputs = [turn] * 13
    planner.reset("find the blue box")
    assert all(planner.plan(frame(0)).recovery is None for _ in range(12))
    assert NavidPlannerConfig().spin_recovery_deg == 360
    off = NavidPlanner(NavidPlannerConfig(spin_recovery_deg=0), backend=ScriptedBackend([turn] * 30))
    off.reset("go to the red ball")
    assert all(off.plan(frame(0)).primitives[0].kind == "turn_left" for _ in range(30))


def test_blocked_recovery_turns_instead_of_pushing_forward_into_an_unchanged_view():
    wall, room = frame(0), frame(1)
    assert float(np.abs(wall.astype(float) - room).mean()) > 5  # two different views
    forward = "move forward 25 cm"
    planner = NavidPlanner(NavidPlannerConfig(blocked_frame_delta=1.0, blocked_turn_deg=90), backend=ScriptedBackend([forward] * 6))
    planner.reset("go to the red ball")
    first = planner.plan(wall)
    assert [p.kind for p in first.primitives] == ["forward"] and first.recovery is None
    # the forward step did not move the camera: the next forward becomes a 90 degree left turn, with the reason
    second = planner.plan(wall.copy())
    assert [(p.kind, p.value) for p in second.primitives] == [("turn_left", 90.0)]
    assert second.raw_text == forward and "blocked recovery" in second.recovery
    # after the turn the view is new: forward passes again, and moves the camera
    assert planner.plan(room).recovery is None
    noisy = np.clip(room.astype(int) + np.random.default_rng(0).integers(-1, 2, room.shape), 0, 255).astype(np.uint8)
    assert planner.plan(noisy).recovery is not None  # sensor noise below the threshold is still "not moved"
    # on by default (chosen on val, see the model card); 0 turns it off; a turn or stop is never replaced
    assert NavidPlannerConfig().blocked_frame_delta == 1.0 and NavidPlannerConfig().blocked_turn_deg == 90
    off = NavidPlanner(NavidPlannerConfig(blocked_frame_delta=0), backend=ScriptedBackend([forward] * 3))
    off.reset("go to the red ball")
    assert all(off.plan(wall).recovery is None for _ in range(3))
    turns = NavidPlanner(NavidPlannerConfig(blocked_frame_delta=1.0), backend=ScriptedBackend([forward, "turn right 30 degrees", "stop"]))
    turns.reset("go to the red ball")
    assert [turns.plan(wall).primitives[0].kind for _ in range(3)] == ["forward", "turn_right", "stop"]


def test_a_blocked_turn_counts_towards_the_spin_recovery_but_is_never_replaced_by_forward():
    forward, turn = "move forward 25 cm", "turn left 30 degrees"
    planner = NavidPlanner(NavidPlannerConfig(blocked_frame_delta=1.0, blocked_turn_deg=180, spin_recovery_deg=360),
                           backend=ScriptedBackend([forward, turn, forward, forward, turn]))
    planner.reset("go to the red ball")
    view = frame(0)
    kinds = [planner.plan(view).primitives[0].kind for _ in range(2)]
    assert kinds == ["forward", "turn_left"]  # the model's own turn; the forward view is forgotten
    planner.plan(view)  # forward again (the view before it was a turn's)
    blocked = planner.plan(view)
    assert blocked.primitives[0].kind == "turn_left" and blocked.primitives[0].value == 180 and "blocked" in blocked.recovery
    assert planner._turned_deg == 180


class _SquareSegmenter:
    """A Segmenter that marks a fixed square of every frame (or nothing), and records its queries."""

    label = "square"

    def __init__(self, marks: bool = True):
        self.marks, self.queries = marks, []

    def reset(self, query):
        self.queries.append(query)

    def step(self, rgb):
        from vlm_agent.skills.segmentation import SegResult

        mask = np.zeros(np.asarray(rgb).shape[:2], bool)
        if self.marks:
            mask[8:16, 10:20] = True
        return SegResult(mask, 1.0, "detected", self.queries[-1])


def _forced_verifier(colour: str, shape: str):
    """An AttributeVerifier whose model reads every crop as a `colour` `shape`."""
    from vlm_agent.models.attribute_verifier import AttributeVerifierConfig, AttributeVerifierModel
    from vlm_agent.skills.verification import AttributeVerifier

    model = AttributeVerifierModel(AttributeVerifierConfig(crop_size=16, channels=(4, 8), colour_channels=(4,)))
    with torch.no_grad():
        for head, words, word in ((model.colour_head, model.config.colours, colour), (model.shape_head, model.config.shapes, shape)):
            head.weight.zero_()
            head.bias.zero_()
            head.bias[words.index(word)] = 20.0
    return AttributeVerifier(model=model.eval(), min_match=0.3)


def test_goal_sightings_read_the_goal_phrase_and_need_the_segmenter_and_the_verifier_to_agree():
    from vlm_agent.planners.stop_check import GoalSightings

    seg = _SquareSegmenter()
    sightings = GoalSightings(segmenter=seg, verifier=_forced_verifier("red", "plate"))
    assert sightings.goal_phrase("go to the red cube next to the table") == "the red cube"
    assert sightings.goal_phrase("walk to the red cube left of the blue ball and stop") == "the red cube"
    assert sightings.goal_phrase("first go to the red cube, then to the blue ball") == "the blue ball"
    assert sightings.goal_phrase("visit the red cube first and finish at the green plate") == "the green plate"
    assert sightings.goal_phrase("go to the table") is None and sightings.goal_phrase("go to the cube") is None
    seen, why = sightings.sees_goal(frame(0), "the red plate")
    assert seen and "the red plate" in why and seg.queries[-1] == "the red plate"
    seen, why = sightings.sees_goal(frame(0), "the red cube")  # the segmenter marks a red plate: a look-alike
    assert not seen and "red plate" in why
    blind = GoalSightings(segmenter=_SquareSegmenter(marks=False), verifier=_forced_verifier("red", "plate"))
    assert blind.sees_goal(frame(0), "the red plate") == (False, "the segmenter marks no 'the red plate' in view")


def test_the_stop_gate_turns_instead_of_stopping_until_the_goal_has_been_seen():
    from vlm_agent.planners.stop_check import GoalSightings

    config = NavidPlannerConfig(stop_gate="always", stop_gate_turn_deg=90, stop_gate_max_refusals=2, blocked_frame_delta=0)
    planner = NavidPlanner(config, backend=ScriptedBackend(["stop"] * 8))
    planner.goal_sightings = GoalSightings(segmenter=_SquareSegmenter(), verifier=_forced_verifier("red", "plate"))
    planner.reset("go to the red cube")  # never in view (the segmenter marks a red plate)
    results = [planner.plan(frame(0)) for _ in range(3)]
    assert [(p.kind, p.value) for p in results[0].primitives] == [("turn_left", 90.0)] and "stop gate" in results[0].recovery
    assert results[1].primitives[0].kind == "turn_left" and results[1].raw_text == "stop" and planner.goal_seen is None
    assert results[2].primitives == [NavPrimitive.stop()] and results[2].recovery is None  # two refusals, then the stop passes
    planner.reset("go to the red plate")  # a new episode: in view at once, so its stop passes
    assert planner.plan(frame(0)).primitives == [NavPrimitive.stop()] and "red plate" in planner.goal_seen
    planner.reset("go to the kitchen")  # nothing the verifier can check: not gated
    assert planner.plan(frame(0)).primitives == [NavPrimitive.stop()] and "not gated" in planner.goal_seen
    # a move passes unchanged; seen once is seen for the episode
    moving = NavidPlanner(config, backend=ScriptedBackend(["move forward 25 cm", "stop"]))
    moving.goal_sightings = planner.goal_sightings
    moving.reset("go to the red plate")
    assert [moving.plan(frame(0)).primitives[0].kind for _ in range(2)] == ["forward", "stop"]


def test_the_stop_gate_follows_the_model_directory_unless_told(tiny_navid_dir, tmp_path):
    import json
    import shutil

    from vlm_agent.planners.navid import PLANNER_CONFIG_NAME

    assert NavidPlannerConfig().stop_gate == "model"
    # the shipped default asks for it; a directory without planner_config.json and an injected backend do not
    with open(os.path.join(NavidPlannerConfig().resolved_model_dir(), PLANNER_CONFIG_NAME)) as f:
        assert json.load(f)["stop_gate"] is True
    assert NavidPlanner(NavidPlannerConfig(model_dir=tiny_navid_dir)).stop_gate is False
    assert NavidPlanner(NavidPlannerConfig(), backend=ScriptedBackend([])).stop_gate is False
    gated = tmp_path / "gated"
    shutil.copytree(tiny_navid_dir, gated)
    (gated / PLANNER_CONFIG_NAME).write_text(json.dumps({"stop_gate": True}))
    assert NavidPlanner(NavidPlannerConfig(model_dir=str(gated))).stop_gate is True
    assert NavidPlanner(NavidPlannerConfig(model_dir=str(gated), stop_gate="never")).stop_gate is False
    assert NavidPlanner(NavidPlannerConfig(model_dir=tiny_navid_dir, stop_gate="always")).stop_gate is True
    off = NavidPlanner(NavidPlannerConfig(stop_gate="never"), backend=ScriptedBackend(["stop"]))
    off.reset("go to the red cube")
    assert off.plan(frame(0)).primitives == [NavPrimitive.stop()] and off.goal_sightings is None


class _ScriptedMapBackend(ScriptedBackend):
    """A scripted model that reads a map memory (the planner then builds one from depth and pose)."""

    ego_map_config = {"cells": 8}

    def generate(self, rgb, ego_map=None):
        assert ego_map is not None and ego_map.shape == (3, 8, 8)
        return super().generate(rgb)


def test_the_goal_approach_drives_to_a_located_goal_without_asking_the_model():
    from vlm_agent.planners.stop_check import GoalSightings

    config = NavidPlannerConfig(goal_approach="always", stop_gate="never", blocked_frame_delta=0)
    backend = _ScriptedMapBackend(["turn left 30 degrees"] * 4)
    planner = NavidPlanner(config, backend=backend)
    planner.goal_sightings = GoalSightings(segmenter=_SquareSegmenter(), verifier=_forced_verifier("red", "plate"))
    depth = np.full((24, 32), 2.0, np.float32)  # the square's pixels are ~2 m away along the optical axis
    planner.reset("go to the red cube")  # the segmenter only ever marks a red plate: the model drives
    first = planner.plan(frame(0), depth, (0.0, 0.0, 0.0))
    assert first.source == "model" and first.primitives == [NavPrimitive.turn_left(30)] and backend.generated == 1
    assert planner.approach is not None and planner.approach.estimates == {}
    planner.reset("walk to the red plate")
    result = planner.plan(frame(0), depth, (0.0, 0.0, 0.0))
    assert result.source == "goal_approach" and "goal approach" in result.recovery and backend.generated == 1
    assert result.primitives[0].kind in ("forward", "turn_left", "turn_right") and result.to_dict()["source"] == "goal_approach"
    (gx, gy), = planner.approach.estimates.values()
    assert 1.0 < gx < 3.0 and "red plate" in planner.goal_seen
    # at the goal it stops, facing it
    near = planner.plan(frame(0), np.full((24, 32), 0.5, np.float32), (gx - 0.5, gy, 0.0))
    assert near.primitives == [NavPrimitive.stop()] and near.source == "goal_approach"
    # a goal qualified by something the map cannot check (look-alikes may share its label) is left to the model
    planner.reset("go to the red plate next to the sofa")
    assert planner.plan(frame(0), depth, (0.0, 0.0, 0.0)).source == "model" and backend.generated == 2


def test_the_goal_approach_needs_a_map_model_and_follows_the_model_directory(tiny_navid_dir, tmp_path):
    import json
    import shutil

    from vlm_agent.planners.navid import PLANNER_CONFIG_NAME

    with open(os.path.join(NavidPlannerConfig().resolved_model_dir(), PLANNER_CONFIG_NAME)) as f:
        assert json.load(f)["goal_approach"] is True
    assert NavidPlanner(NavidPlannerConfig(goal_approach="always"), backend=ScriptedBackend([])).goal_approach_on is False  # no map memory
    assert NavidPlanner(NavidPlannerConfig(goal_approach="always"), backend=_ScriptedMapBackend([])).goal_approach_on is True
    assert NavidPlanner(NavidPlannerConfig(), backend=_ScriptedMapBackend([])).goal_approach_on is False  # "model" needs a directory
    on = tmp_path / "on"
    shutil.copytree(tiny_navid_dir, on)
    (on / PLANNER_CONFIG_NAME).write_text(json.dumps({"goal_approach": True}))
    assert NavidPlanner(NavidPlannerConfig(model_dir=str(on))).goal_approach_on is False  # tiny_navid has no map memory


def test_with_the_goal_approach_a_sequence_stop_is_refused_until_the_earlier_leg_is_done():
    from vlm_agent.planners.stop_check import GoalSightings

    config = NavidPlannerConfig(goal_approach="always", stop_gate="always", stop_gate_max_refusals=3, blocked_frame_delta=0)
    planner = NavidPlanner(config, backend=_ScriptedMapBackend(["stop"] * 4))
    planner.goal_sightings = GoalSightings(segmenter=_SquareSegmenter(), verifier=_forced_verifier("blue", "plate"))
    planner.reset("first go to the red cube, then to the blue plate")  # only the last goal is ever in view
    result = planner.plan(frame(0), np.full((24, 32), 2.0, np.float32), (0.0, 0.0, 0.0))
    assert result.source == "model" and "blue plate" in planner.goal_seen  # the first leg is not located: the model drives
    assert result.primitives[0].kind == "turn_left" and "leg 1 of 2 (the red cube) is not done" in result.recovery


def test_a_refused_stop_hands_the_search_to_frontier_exploration():
    from vlm_agent.planners.stop_check import GoalSightings

    config = NavidPlannerConfig(goal_approach="always", stop_gate="always", explore_stall_plans=10, blocked_frame_delta=0)
    backend = _ScriptedMapBackend(["stop"] * 3)
    planner = NavidPlanner(config, backend=backend)
    planner.goal_sightings = GoalSightings(segmenter=_SquareSegmenter(marks=False), verifier=_forced_verifier("red", "plate"))
    planner.reset("go to the red plate")  # never in view
    depth = np.full((24, 32), 2.0, np.float32)
    first = planner.plan(frame(0), depth, (0.0, 0.0, 0.0))
    assert first.source == "model" and "stop gate" in first.recovery and "refused" in planner.approach.exploring
    second = planner.plan(frame(1), depth, (0.0, 0.0, math.radians(90)))
    assert second.source == "explore" and second.recovery.startswith("exploring") and backend.generated == 1
    assert NavidPlannerConfig().explore_stall_plans == 15
    off = NavidPlanner(NavidPlannerConfig(goal_approach="always", stop_gate="always", explore_stall_plans=0, blocked_frame_delta=0),
                       backend=_ScriptedMapBackend(["stop"] * 2))
    off.goal_sightings = planner.goal_sightings
    off.reset("go to the red plate")
    off.plan(frame(0), depth, (0.0, 0.0, 0.0))
    assert off.approach.exploring is None and off.plan(frame(1), depth, (0.0, 0.0, 1.0)).source == "model"  # explore_stall_plans 0: off


def test_search_frontier_explores_from_the_first_plan():
    from vlm_agent.planners.stop_check import GoalSightings

    config = NavidPlannerConfig(goal_approach="always", stop_gate="always", search="frontier", blocked_frame_delta=0)
    backend = _ScriptedMapBackend(["stop"])
    planner = NavidPlanner(config, backend=backend)
    planner.goal_sightings = GoalSightings(segmenter=_SquareSegmenter(marks=False), verifier=_forced_verifier("red", "plate"))
    planner.reset("go to the red plate")
    first = planner.plan(frame(0), np.full((24, 32), 2.0, np.float32), (0.0, 0.0, 0.0))
    assert first.source == "explore" and backend.generated == 0
