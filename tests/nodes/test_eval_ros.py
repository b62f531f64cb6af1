"""`run_ros_episodes` (what `vlm-agent eval --ros` calls) against in-process evaluation, oracle policy.

The graph (mujoco_sim + motion_executor + safety_supervisor) runs in a second process; every oracle
primitive becomes a plan, is executed closed-loop on odometry and gated by the supervisor. The same
seed must give the same outcome as in-process, up to the executor's centimetre tolerances.
"""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_ros_eval_matches_in_process_with_the_oracle():
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import evaluate
    from vlm_agent.nodes.eval_client import run_ros_episodes
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    config = SimConfig(width=64, height=48, render_depth=True)
    episodes = make_episodes("nav", "val", 2, seed=0)[:1]  # episode 0: 10 oracle steps
    env = NavEnv(config)
    try:
        in_process = evaluate("nav", make_policy("oracle", "nav", env=env), episodes, env, policy_name="oracle")
        ros_env = NavEnv(config)  # the oracle's privileged view, kept in sync by the client
        out = run_ros_episodes(episodes, make_policy("oracle", "nav", env=ros_env), suite="nav", policy_name="oracle", config=config)
        ros_env.close()
    finally:
        env.close()
    ref, got = in_process.per_episode[0], out["per_episode"][0]
    assert got["episode_id"] == ref["episode_id"]
    assert got["success"] == ref["success"] == 1.0
    assert out["metrics"]["success_rate"] == in_process.metrics["success_rate"]
    assert got["actions"][-1] == "stop"
    assert abs(got["steps"] - ref["steps"]) <= 2, (got["actions"], ref["steps"])
    assert got["navigation_error"] == pytest.approx(ref["navigation_error"], abs=0.2)
    assert got["trajectory_length"] == pytest.approx(ref["trajectory_length"], rel=0.15)
    assert got["ros_aborted_primitives"] == 0
    assert out["episodes"] == 1 and out["env_steps"] == got["steps"] and out["wall_s"] > 0
    # Sim time (issue 11): as fast as the graph keeps up by default, yet no faster than the robot can
    # move: the simulated time covers at least the speed profile of every executed primitive.
    from vlm_agent.nodes.eval_client import RosEvalConfig
    from vlm_agent.planners.navid_grammar import parse_primitives
    from vlm_agent.skills.motion import profile_time

    cfg = RosEvalConfig()
    assert out["real_time_factor"] == cfg.real_time_factor == 0.0
    nominal = 0.0
    for text in got["actions"]:
        for p in parse_primitives(text).primitives:
            if p.kind == "forward":
                nominal += profile_time(p.distance_m, cfg.max_linear_speed_mps, cfg.linear_accel_mps2)
            elif p.kind != "stop":
                nominal += profile_time(p.yaw_rad, cfg.max_angular_speed_radps, cfg.angular_accel_radps2)
    ratio = out["sim_time_s"] / out["wall_time_s"]
    print(f"sim {out['sim_time_s']:.1f} s in {out['wall_time_s']:.1f} s wall ({ratio:.1f}x); primitives' nominal time {nominal:.1f} s")
    assert got["sim_time_s"] == pytest.approx(out["sim_time_s"], abs=0.1)
    assert out["sim_time_s"] >= 0.95 * nominal > 0
    assert 0 < out["wall_time_s"] <= out["wall_s"]
    assert ratio > 1.0


def test_ros_eval_refuses_what_it_cannot_run():
    from vlm_agent.nodes.eval_client import episode_seed_index, run_ros_episodes
    from vlm_agent.sim.episodes import make_episodes

    with pytest.raises(ValueError, match="nav, manip or seg"):
        run_ros_episodes(make_episodes("seg", "val", 1, 0), policy=None, suite="grasp")
    with pytest.raises(ValueError, match="is a seg episode, not manip"):
        run_ros_episodes(make_episodes("seg", "val", 1, 0), policy=None, suite="manip", policy_name="oracle")
    with pytest.raises(ValueError, match="segmenter node: --policy"):
        run_ros_episodes(make_episodes("seg", "val", 1, 0), policy=None, suite="seg", policy_name="colour")
    with pytest.raises(ValueError, match="needs --model DIR"):
        run_ros_episodes(make_episodes("manip", "val", 1, 0), policy=None, suite="manip", policy_name="palme", backend="transformers")
    with pytest.raises(ValueError, match="no episodes"):
        run_ros_episodes([], policy=None)
    ep = make_episodes("nav", "val", 4, seed=7)[3]
    assert episode_seed_index(ep) == (7, 3)


def _eval_cli(tmp_path, *args):
    import json

    from vlm_agent.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", *args, "--ros", "--split", "val", "--seed", "0", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_ros_eval_manip_oracle_through_the_task_planner_node(tmp_path):
    """`vlm-agent eval --suite manip --policy oracle --ros`: mujoco_sim + executor + supervisor +
    task_planner (PaLM-E style, sim_oracle backend) in the graph process; the client sends each
    instruction and scores with mujoco_sim/result."""
    got = _eval_cli(tmp_path, "--suite", "manip", "--policy", "oracle", "--episodes", "2")
    assert got["suite"] == "manip" and got["episodes"] == 2
    assert got["success_rate"] == 1.0, [(e["episode_id"], e["planner_reason"], e["calls"]) for e in got["per_episode"]]
    assert got["task_planner"] == {"style": "palme", "backend": "sim_oracle"} and got["upper_bound"] is True
    per = got["per_episode"]
    assert [e["episode_id"] for e in per] == ["manip-val-0-00000", "manip-val-0-00001"]
    assert all(e["planner_state"] == "succeeded" and e["calls"][-1] == "done() -> ok: done" and e["sim_time_s"] > 0 for e in per)
    # The same breakdowns as in-process: held-out targets and task / pair / phrasing groups.
    assert sum(m["episodes"] for k, m in got["breakdown"].items() if k.startswith("task=")) == 2
    assert got["sim_time_s"] >= sum(e["sim_time_s"] for e in per) - 1e-6 and got["wall_time_s"] > 0


def test_ros_eval_seg_oracle_through_the_segmenter_node(tmp_path):
    """`vlm-agent eval --suite seg --policy oracle --ros`: mujoco_sim + segmenter (oracle backend);
    each episode's query on segmentation/query, its first mask after the reset scored against the
    ground truth at the robot's pose. The second episode checks the oracle follows the reset."""
    got = _eval_cli(tmp_path, "--suite", "seg", "--policy", "oracle", "--episodes", "2", "--width", "96", "--height", "72")
    assert got["suite"] == "seg" and got["episodes"] == 2 and "first mask" in got["seg_scoring"]
    assert got["miou"] > 0.9 and got["ciou"] > 0.9, got["per_episode"]
    per = got["per_episode"]
    assert all(e["gt_pixels"] > 0 and e["source"] == "oracle" and e["frame_sim_time_s"] > 0 for e in per)
    assert "breakdown" in got and got["segmenter"]["backend"] == "oracle"


def test_ros_eval_perception_segmenter_arguments_are_checked_before_a_graph_starts():
    from vlm_agent.nodes.eval_client import run_ros_episodes
    from vlm_agent.nodes.manip_client import run_task_planner_episodes
    from vlm_agent.sim.episodes import make_episodes

    seg = make_episodes("seg", "val", 1, seed=0)
    manip = make_episodes("manip", "val", 1, seed=0)
    with pytest.raises(ValueError, match="applies to the manip suite"):
        run_ros_episodes(seg, None, suite="seg", policy_name="oracle", perception="segmenter")
    with pytest.raises(ValueError, match="sim_oracle backend reads the simulator's ground truth"):
        run_task_planner_episodes(manip, "oracle", perception="segmenter")
    with pytest.raises(ValueError, match="ground_truth or segmenter"):
        run_task_planner_episodes(manip, "palme", perception="lidar")
