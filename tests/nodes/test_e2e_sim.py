"""End to end in two processes: the embedded simulator and the whole agent graph against this test.

Process 2 (`vlm-agent up`): mujoco_sim + navid_planner (a tiny *untrained* NaVid model, built here)
+ motion_executor + safety_supervisor. The simulator resets an episode at start and latches its
instruction; the planner picks it up, plans from the camera, the executor drives, the supervisor
gates `/cmd_vel`, the simulated base moves. This process only watches. The episode ends with a
stop (the model's, or the planner's step limit) and the robot must then stand still.
"""
from __future__ import annotations

import json
import math
import time

import pytest
import yaml

from tests.ros_harness import NodeProcess, spin_until, wait_for_publishers

from tests.helpers.tiny_navid import save_untrained_navid

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MAX_PLANS = 3


@pytest.fixture(scope="module")
def tiny_navid_dir(tmp_path_factory):
    # Seed 9: on this episode's first frame the untrained model answers "move forward 25 cm, stop"
    # (seeds 0, 1, 5, 8 stop at once, which would not exercise motion).
    return save_untrained_navid(tmp_path_factory.mktemp("navid_untrained"), seed=9)


def graph_yaml(path, model_dir):
    params = {
        "/**": {"ros__parameters": {"use_sim_time": False}},
        "mujoco_sim": {"ros__parameters": {"suite": "nav", "split": "val", "episode_seed": 0, "episode_index": 0, "width": 96,
                                           "height": 72, "camera_rate_hz": 10.0, "publish_instruction": True}},
        "navid_planner": {"ros__parameters": {"model_dir": model_dir, "max_steps": MAX_PLANS, "history_period_s": 0.2,
                                              "model_timeout_s": 20.0, "decoding": "constrained", "num_threads": 1}},
        "motion_executor": {"ros__parameters": {"max_linear_speed_mps": 0.4, "linear_accel_mps2": 1.0,
                                                "max_angular_speed_radps": 1.2, "angular_accel_radps2": 4.0}},
        "safety_supervisor": {"ros__parameters": {"use_sim_time": True, "max_linear_speed_mps": 0.5, "max_linear_accel_mps2": 1.5, "max_angular_speed_radps": 1.5,
                                                  "max_angular_accel_radps2": 5.0, "camera_timeout_s": 0.5, "depth_timeout_s": 0.5,
                                                  "obstacle_stop_distance_m": 0.2}},
    }
    with open(path, "w") as f:
        yaml.safe_dump(params, f)
    return str(path)


def test_instruction_in_robot_moves_under_the_model_and_stops(ros_node, ros_executor, tiny_navid_dir, tmp_path):
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
    from vlm_agent.nodes.motion_executor import STATE_QOS
    from vlm_agent.sim.episodes import make_episode

    plans, states, cmds, poses = [], [], [], []
    ros_node.create_subscription(String, "/vlm_agent/plan", lambda m: plans.append(json.loads(m.data)), LATCHED_QOS)
    ros_node.create_subscription(String, "/vlm_agent/executor/state", lambda m: states.append(json.loads(m.data)), STATE_QOS)
    cmd_sub = ros_node.create_subscription(Twist, "/cmd_vel", lambda m: cmds.append((time.monotonic(), m.linear.x, m.angular.z)), COMMAND_QOS)
    ros_node.create_subscription(Odometry, "/odom", lambda m: poses.append((time.monotonic(), m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.orientation.z)), SENSOR_QOS)

    config = graph_yaml(tmp_path / "e2e.yaml", tiny_navid_dir)
    with NodeProcess("vlm_agent.cli", args=["up", "--config", config]) as graph:
        assert wait_for_publishers(cmd_sub, timeout=60), "the graph never came up"

        def finished():
            if not plans or "stop" not in [p["kind"] for p in plans[-1]["primitives"]]:
                return False
            last = plans[-1]["plan_id"]
            return any(s["plan_id"] == last and s["state"] == "done" and s["reason"] == "stop" for s in states)

        ok = spin_until(ros_executor, lambda: finished() or not graph.alive(), timeout=90)
        assert graph.alive(), graph.output
        assert ok, f"plans: {plans}\nstates: {states[-5:]}"
        stop_time = time.monotonic()
        spin_until(ros_executor, lambda: False, timeout=1.5)
        assert graph.alive()
    assert graph.returncode == 0, graph.output[-3000:]
    assert "Traceback" not in graph.output, graph.output[-3000:]

    episode = make_episode("nav", "val", 0, 0)
    assert plans[0]["instruction"] == episode.instruction  # the sim's latched instruction went in
    assert [p["step"] for p in plans] == list(range(len(plans))) and len(plans) <= MAX_PLANS + 1
    for plan in plans[:-1]:  # every motion plan was executed to completion
        assert any(s["plan_id"] == plan["plan_id"] and s["state"] == "done" for s in states), (plan, states)
    motion = [p for p in plans if any(q["kind"] != "stop" for q in p["primitives"])]
    # The untrained model moves before it stops (deterministic weights and scene; if a model change
    # makes it stop at once, pick another seed above rather than weakening this).
    assert motion, plans
    assert any(abs(v) > 0.05 or abs(w) > 0.05 for _, v, w in cmds), "the robot was never commanded to move"
    first, last = poses[0], [p for p in poses if p[0] <= stop_time][-1]
    assert math.hypot(last[1] - first[1], last[2] - first[2]) > 0.1 or abs(last[3] - first[3]) > 0.1, (first, last)
    # ... and it stopped: zero commands and a still base after the stop plan was done.
    after = [(v, w) for t, v, w in cmds if t > stop_time + 0.3]
    assert after and all(v == 0.0 and w == 0.0 for v, w in after), after[:5]
    still = [p for p in poses if p[0] > stop_time + 0.3]
    assert still and max(math.hypot(p[1] - still[0][1], p[2] - still[0][2]) for p in still) < 1e-3
