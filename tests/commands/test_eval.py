"""`vlm-agent eval` JSON reports simulated and wall time in both modes (issue 11, item 7)."""
from __future__ import annotations

import json

import pytest

from vlm_agent.cli import main


def test_in_process_json_reports_sim_and_wall_time(tmp_path):
    """In-process primitives step instantly; `sim_time_s` is their duration on the robot at the ROS
    graph's motion profile (0.6-0.85 s per 25 cm forward or 30 degree turn, nothing for stop)."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--suite", "nav", "--policy", "oracle", "--episodes", "2", "--width", "32", "--height", "32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    steps = sum(m["steps"] for m in result["per_episode"])
    assert result["wall_time_s"] > 0
    assert 0.6 * (steps - 2) <= result["sim_time_s"] <= 0.85 * steps, (result["sim_time_s"], steps)
    assert "primitives" in result["sim_time"]


def test_ros_json_reports_the_clients_sim_and_wall_time(tmp_path, monkeypatch):
    """`--ros` passes `--real-time-factor` to the ROS client and writes its `sim_time_s` / `wall_time_s`
    (the client itself is tested against the real graph in tests/nodes/test_eval_ros.py)."""
    from vlm_agent.nodes import eval_client

    seen = {}

    def fake_run_ros_episodes(episodes, policy, suite="nav", policy_name="?", config=None, video_dir=None, env=None, seed=None,
                              ros_config=None, logger=None):
        seen["real_time_factor"] = ros_config.real_time_factor
        per = [{"episode_id": ep.episode_id, "success": 1.0, "spl": 0.9, "navigation_error": 0.5, "oracle_success": 1.0,
                "oracle_success_rate": 1.0, "trajectory_length": 2.0, "steps": 3, "held_out": False} for ep in episodes]
        return {"per_episode": per, "env_steps": 3 * len(per), "wall_s": 5.0, "sim_time_s": 12.0, "wall_time_s": 3.0}

    monkeypatch.setattr(eval_client, "run_ros_episodes", fake_run_ros_episodes)
    out = tmp_path / "eval.json"
    argv = ["eval", "--suite", "nav", "--policy", "oracle", "--episodes", "1", "--width", "32", "--height", "32", "--ros",
            "--real-time-factor", "2.5", "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert seen["real_time_factor"] == 2.5
    assert result["sim_time_s"] == pytest.approx(12.0) and result["wall_time_s"] == pytest.approx(3.0)
    assert result["real_time_factor"] == 2.5


def test_policy_params_reach_the_navid_planner_and_the_json(tmp_path):
    """`--policy-param KEY=VALUE` sets a NavidPlannerConfig field (read as YAML) and is written to the JSON;
    a malformed item or a field the planner does not have is a clear error (exit 2)."""
    from tests.helpers.tiny_navid import save_untrained_navid

    model = save_untrained_navid(tmp_path / "navid", seed=0, vision_layers=1, image_size=16, patch_size=2, text_layers=1, film_layers=1)
    out = tmp_path / "eval.json"
    base = ["eval", "--suite", "nav", "--policy", "navid", "--model", str(model), "--episodes", "1", "--width", "32", "--height", "32"]
    assert main(base + ["--policy-param", "spin_recovery_deg=360", "--policy-param", "max_primitives=1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["policy_params"] == {"spin_recovery_deg": 360, "max_primitives": 1}
    assert main(base + ["--policy-param", "no_equals_sign"]) == 2
    assert main(base + ["--policy-param", "not_a_planner_field=1"]) == 2
