"""Rendering is metrically right (depth, camera model, segmentation), and `vlm-agent eval` writes the
JSON the contract promises, with contact sheets and GIFs."""
import json
import math

import numpy as np
import pytest

from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes

CAMERA_HEIGHT_M, CAMERA_PITCH_DEG = 0.95, 20.0


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=64, height=48))
    yield e
    e.close()


def test_centre_pixel_depth_is_the_floor_distance_along_the_optical_axis(env):
    ep = make_episodes("nav", "val", 1, seed=21)[0]
    env.reset(ep)
    # find a heading with 4 m of empty floor ahead (the optical axis meets the floor 2.6 m ahead)
    x, y, _ = ep.start_pose
    grid = env.grid
    cands = [(i, j) for i, j in zip(*np.nonzero(grid.clearance > 0.5))]
    for i, j in cands[:: max(1, len(cands) // 200)]:
        px, py = float(grid.xs[j]), float(grid.ys[i])
        for yaw in np.linspace(-math.pi, math.pi, 12, endpoint=False):
            _, _, _, blocked = env.collision.sweep(px, py, yaw, 4.0, radius=0.3)
            if not blocked:
                break
        else:
            continue
        break
    env.set_pose(px, py, yaw)
    obs = env.observation()
    expected = CAMERA_HEIGHT_M / math.sin(math.radians(CAMERA_PITCH_DEG))
    h, w = obs.depth.shape
    centre = float(obs.depth[h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1].mean())
    assert centre == pytest.approx(expected, rel=0.04)
    # rows above the centre look further away (flat floor), until walls or the sky
    assert obs.depth[h // 2 + 8, w // 2] < centre


def test_segmentation_masks_and_oracle_seg_policy(env):
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import evaluate

    episodes = make_episodes("seg", "val", 6, seed=0)
    for ep in episodes:
        env.reset(ep)
        seg = env.segmentation()
        mask = env.object_mask(ep.goal_object, seg)
        assert mask.sum() >= 4, f"{ep.episode_id}: target hardly visible ({mask.sum()} px)"
        others = [o.name for o in env.world.objects if o.name != ep.goal_object]
        assert not any((env.object_mask(n, seg) & mask).any() for n in others)
    result = evaluate("seg", make_policy("oracle", "seg", env=env), episodes, env)
    assert result.metrics["miou"] == 1.0 and result.metrics["ciou"] == 1.0
    rnd = evaluate("seg", make_policy("random", "seg", env=env), episodes, env)
    assert rnd.metrics["miou"] < 0.3


def test_eval_cli_json_and_video(tmp_path):
    from vlm_agent.cli import main

    out = tmp_path / "nav.json"
    rc = main(["eval", "--suite", "nav", "--policy", "oracle", "--episodes", "2", "--seed", "3", "--split", "val",
               "--json", str(out), "--video", str(tmp_path / "video"), "--width", "48", "--height", "48"])
    assert rc == 0
    data = json.loads(out.read_text())
    for key in ("suite", "policy", "split", "episodes", "seed", "success_rate", "spl", "navigation_error",
                "oracle_success_rate", "trajectory_length", "env_steps_per_second"):
        assert key in data, key
    assert (data["suite"], data["policy"], data["split"], data["episodes"], data["seed"]) == ("nav", "oracle", "val", 2, 3)
    assert data["success_rate"] == 1.0 and data["env_steps_per_second"] > 0
    pngs = sorted(p.name for p in (tmp_path / "video").iterdir())
    assert pngs == ["nav-val-3-00000.gif", "nav-val-3-00000.png", "nav-val-3-00001.gif", "nav-val-3-00001.png"]
    rc = main(["eval", "--suite", "manip", "--policy", "oracle", "--episodes", "1", "--json", str(tmp_path / "m.json"),
               "--width", "32", "--height", "32"])
    assert rc == 0 and json.loads((tmp_path / "m.json").read_text())["success_rate"] == 1.0


def test_eval_cli_errors_are_clear(capsys):
    from vlm_agent.cli import main

    assert main(["eval", "--suite", "nav", "--policy", "no_such_policy", "--episodes", "1"]) == 2
    assert "unknown policy" in capsys.readouterr().err
