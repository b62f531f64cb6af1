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

    with pytest.raises(ValueError, match="navigation episodes only"):
        run_ros_episodes(make_episodes("seg", "val", 1, 0), policy=None, suite="seg")
    with pytest.raises(ValueError, match="no episodes"):
        run_ros_episodes([], policy=None)
    ep = make_episodes("nav", "val", 4, seed=7)[3]
    assert episode_seed_index(ep) == (7, 3)
