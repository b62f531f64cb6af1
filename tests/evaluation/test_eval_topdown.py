"""`eval --video`'s top-down map and the per-task / seen-vs-held-out breakdown of nav results."""
from __future__ import annotations

import numpy as np

from vlm_agent.evaluation.policies import make_policy
from vlm_agent.evaluation.rollouts import breakdown, evaluate
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.sim.video import topdown_map


def test_topdown_map_draws_path_and_objects():
    ep = make_episodes("nav", "val", 1, seed=4)[0]
    world = ep.world()
    x, y, yaw = ep.start_pose
    img = topdown_map(world, [(x, y, yaw), (x + 0.5, y, yaw)], ep.goal_objects, height_px=120)
    assert img.dtype == np.uint8 and img.shape[0] == 120 and img.shape[2] == 3
    blue = (img[..., 2] > 180) & (img[..., 0] < 80)
    assert blue.any()  # the path
    assert (np.abs(img.astype(int) - (70, 70, 70)).sum(-1) == 0).any()  # walls


def test_breakdown_groups_by_task_pair_and_phrasing():
    per = [
        {"task": "goto", "held_out": True, "held_out_phrasing": False, "success": 1.0, "spl": 0.5, "navigation_error": 0.5, "oracle_success": 1.0, "trajectory_length": 3.0},
        {"task": "room", "held_out": False, "held_out_phrasing": True, "success": 0.0, "spl": 0.0, "navigation_error": 4.0, "oracle_success": 0.0, "trajectory_length": 9.0},
    ]
    b = breakdown(per)
    assert b["task=goto"]["success_rate"] == 1.0 and b["task=room"]["episodes"] == 1
    assert b["pair=held_out"]["success_rate"] == 1.0 and b["pair=seen"]["success_rate"] == 0.0
    assert b["phrasing=held_out"]["spl"] == 0.0


def test_video_has_the_map_beside_the_camera_strip(tmp_path):
    env = NavEnv(SimConfig(width=32, height=32, render_depth=False))
    ep = make_episodes("nav", "val", 1, seed=1)
    res = evaluate("nav", make_policy("oracle", "nav", env=env), ep, env, video_dir=str(tmp_path))
    env.close()
    from PIL import Image

    sheet = Image.open(tmp_path / f"{ep[0].episode_id}.png")
    assert sheet.width > 6 * 32  # six camera frames plus the map
    assert "breakdown" in res.metrics and res.per_episode[0]["held_out_phrasing"] in (True, False)
