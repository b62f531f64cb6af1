"""Seg suite with video clips: clip poses, per-frame scoring, seen/held-out breakdown, the sa2va
policy end to end (untrained tiny model: the pipeline, no accuracy claim), the oracle mask source."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vlm_agent.evaluation.policies import make_policy
from vlm_agent.evaluation.rollouts import evaluate
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.sim.metrics import aggregate_seg
from vlm_agent.sim.seg_clips import seg_clip_poses


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=64, height=64, render_depth=False))
    yield e
    e.close()


@pytest.fixture(scope="module")
def sa2va_dir(tmp_path_factory):
    from tests.helpers.tiny_sa2va import save_untrained_sa2va_model

    return save_untrained_sa2va_model(tmp_path_factory.mktemp("sa2va"))


def test_clip_poses_start_at_the_episode_and_move():
    ep = make_episodes("seg", "val", 1, seed=4)[0]
    poses = seg_clip_poses(ep, 5, forward_m=0.2, sway_deg=6.0)
    assert len(poses) == 5 and poses[0] == pytest.approx(ep.start_pose)
    x0, y0, yaw0 = ep.start_pose
    assert math.hypot(poses[-1][0] - x0, poses[-1][1] - y0) == pytest.approx(0.2)
    assert poses[-1][2] == pytest.approx(yaw0, abs=1e-9)  # sin(2 pi) = 0
    assert poses[1][2] - yaw0 == pytest.approx(math.radians(6.0))  # s = 1/4: the peak of the sway
    assert seg_clip_poses(ep, 5, forward_m=0.2, sway_deg=6.0) == poses and seg_clip_poses(ep, 1) == [tuple(ep.start_pose)]
    with pytest.raises(ValueError):
        seg_clip_poses(make_episodes("nav", "val", 1, seed=4)[0], 3)
    with pytest.raises(ValueError):
        seg_clip_poses(ep, 0)


def test_aggregate_over_clips_by_hand():
    per = [
        {"iou": 1.0, "intersection": 4, "union": 4, "frame_ious": [1.0, 0.5], "frame_intersections": [4, 2], "frame_unions": [4, 4]},
        {"iou": 0.0, "intersection": 0, "union": 2, "frame_ious": [0.0, 0.25], "frame_intersections": [0, 1], "frame_unions": [2, 4]},
    ]
    agg = aggregate_seg(per)
    assert agg["miou"] == 0.5 and agg["ciou"] == pytest.approx(4 / 6)
    assert agg["clip_miou"] == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert agg["clip_ciou"] == pytest.approx(7 / 14)
    assert agg["later_miou"] == pytest.approx((0.5 + 0.25) / 2)
    assert "clip_miou" not in aggregate_seg([{"iou": 1.0, "intersection": 1, "union": 1}])


def test_oracle_scores_every_frame_of_every_clip_and_the_breakdown(env):
    episodes = make_episodes("seg", "val", 6, seed=0)
    result = evaluate("seg", make_policy("oracle", "seg", env=env), episodes, env, seg_clip_frames=4)
    m = result.metrics
    assert m["miou"] == m["clip_miou"] == m["later_miou"] == 1.0 and m["clip_ciou"] == 1.0
    for ep_m in result.per_episode:
        assert len(ep_m["frame_ious"]) == 4 and all(u > 0 for u in ep_m["frame_unions"])  # the target stays in view
    groups = m["breakdown"]
    assert {"pair=seen", "pair=held_out", "phrasing=seen", "phrasing=held_out"} & set(groups) and any(k.startswith("task=seg_") for k in groups)
    assert sum(g["episodes"] for k, g in groups.items() if k.startswith("pair=")) == 6
    assert all("clip_miou" in g for g in groups.values())


def test_first_frame_score_is_the_single_frame_score(env):
    """A clip's frame 0 is the episode's start frame: the colour baseline's first-frame IoU does not
    depend on the clip length (and the clip's later frames really differ)."""
    episodes = make_episodes("seg", "val", 4, seed=1)
    one = evaluate("seg", make_policy("colour", "seg", env=env), episodes, env, seg_clip_frames=1)
    eight = evaluate("seg", make_policy("colour", "seg", env=env), episodes, env, seg_clip_frames=8)
    assert [m["iou"] for m in one.per_episode] == [m["iou"] for m in eight.per_episode]
    assert any(len(set(m["frame_unions"])) > 1 for m in eight.per_episode)


def test_sa2va_policy_through_the_evaluator(env, sa2va_dir):
    policy = make_policy("sa2va", "seg", model_dir=sa2va_dir, env=env, redetect_every=3, min_score=0.0)
    episodes = make_episodes("seg", "val", 2, seed=0)
    result = evaluate("seg", policy, episodes, env, seg_clip_frames=4)
    for m in result.per_episode:
        assert m["frame_sources"] == ["detected", "tracked", "tracked", "detected"]
        assert len(m["frame_ious"]) == 4 and all(0.0 <= v <= 1.0 for v in m["frame_ious"]) and all(t > 0 for t in m["frame_policy_s"])
    for key in ("miou", "ciou", "clip_miou", "clip_ciou", "later_miou"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert make_policy("sa2va", "seg", env=env).segmenter is not None  # no --model: the shipped checkpoints/sa2va_nano
    with pytest.raises(ValueError, match="--suite seg"):
        make_policy("sa2va", "nav", model_dir=sa2va_dir, env=env)
    with pytest.raises(ValueError, match="does not take"):
        make_policy("sa2va", "seg", model_dir=sa2va_dir, env=env, backend="remote")


def test_eval_cli_seg_sa2va(tmp_path, sa2va_dir):
    from vlm_agent.cli import main

    out = tmp_path / "seg.json"
    rc = main(["eval", "--suite", "seg", "--policy", "sa2va", "--model", sa2va_dir, "--episodes", "2", "--clip-frames", "3",
               "--width", "48", "--height", "48", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert (data["suite"], data["policy"], data["episodes"]) == ("seg", "sa2va", 2)
    assert all(len(m["frame_ious"]) == 3 for m in data["per_episode"]) and "clip_miou" in data and "breakdown" in data


def test_oracle_segmenter_mirrors_the_episode_at_the_pose():
    from vlm_agent.evaluation.oracle_segmenter import OracleSegmenter, episode_from_id

    ep = make_episodes("seg", "val", 3, seed=2)[2]
    assert episode_from_id(ep.episode_id).to_dict() == ep.to_dict()
    with pytest.raises(ValueError, match="suite-split-seed-index"):
        episode_from_id("seg-val-x")
    oracle = OracleSegmenter(64, 48)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            oracle.step(np.zeros((48, 64, 3), np.uint8))
        oracle.reset(ep.instruction)
        oracle.load_episode(ep.episode_id)
        assert oracle.target == ep.goal_object
        first = oracle.step(np.zeros((48, 64, 3), np.uint8))
        assert first.area > 0 and first.source == "oracle" and first.mask.shape == (48, 64)
        x, y, yaw = ep.start_pose
        oracle.set_pose(x, y, yaw + math.pi)  # facing away: the target leaves the view
        assert oracle.step(np.zeros((48, 64, 3), np.uint8)).area == 0
        target = oracle.env.world.object(ep.goal_object)
        named = [o for o in oracle.env.world.objects if (o.colour, o.shape) == (target.colour, target.shape)]
        if len(named) == 1:
            oracle.reset(f"the {target.colour} {target.shape}")
            assert oracle.target == ep.goal_object
        with pytest.raises(ValueError, match="oracle"):
            oracle.reset("the golden chalice")
        with pytest.raises(ValueError, match="renders 64x48"):
            oracle.reset(ep.instruction)
            oracle.step(np.zeros((32, 32, 3), np.uint8))
    finally:
        oracle.close()
