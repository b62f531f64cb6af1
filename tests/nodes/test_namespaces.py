"""Two complete graphs in one ROS domain, in two namespaces, with no cross-talk.

Two `vlm-agent up --namespace /<ns>` processes run the same parameter file (simulator, planner with a
tiny model, executor, supervisor, and each its own lifecycle manager). A plan sent to the first
robot moves the first robot only; the second stands still with zero on its `cmd_vel`; no vlm_agent
topic exists outside the two namespaces except the standard `/diagnostics` (and `/clock`).
"""
from __future__ import annotations

import json
import math
import os

import pytest
import yaml

from tests.helpers.tiny_navid import save_untrained_navid
from tests.ros_harness import NodeProcess, call_service, spin_until, wait_for_subscribers

pytestmark = [pytest.mark.ros, pytest.mark.slow]

GLOBAL_OK = {"/diagnostics", "/clock", "/rosout", "/parameter_events"}


def test_two_graphs_in_two_namespaces_do_not_cross_talk(ros_node, ros_executor, tmp_path):
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
    from vlm_agent.planners.planner_loop import PlanMessage
    from vlm_agent.actions import NavPrimitive

    model_dir = save_untrained_navid(tmp_path / "navid", seed=0)
    params = {
        "mujoco_sim": {"ros__parameters": {"width": 64, "height": 48, "camera_rate_hz": 5.0, "publish_instruction": False}},
        "navid_planner": {"ros__parameters": {"model_dir": model_dir, "encoder_backend": "torch", "num_threads": 1}},
        "motion_executor": {"ros__parameters": {"max_linear_speed_mps": 0.3, "linear_accel_mps2": 1.0}},
        "safety_supervisor": {"ros__parameters": {"use_sim_time": True, "camera_timeout_s": 1.5, "depth_timeout_s": 1.5, "odom_timeout_s": 1.0,
                                                  "obstacle_stop_distance_m": 0.0}},
    }
    config = tmp_path / "graph.yaml"
    config.write_text(yaml.safe_dump(params))
    a, b = f"/ns_a_{os.getpid()}", f"/ns_b_{os.getpid()}"
    cmds = {a: [], b: []}
    poses = {a: [], b: []}
    states = {a: [], b: []}
    for ns in (a, b):
        ros_node.create_subscription(Twist, f"{ns}/cmd_vel", lambda m, ns=ns: cmds[ns].append((m.linear.x, m.angular.z)), COMMAND_QOS)
        ros_node.create_subscription(Odometry, f"{ns}/odom", lambda m, ns=ns: poses[ns].append((m.pose.pose.position.x, m.pose.pose.position.y)), SENSOR_QOS)
        ros_node.create_subscription(String, f"{ns}/vlm_agent/executor/state", lambda m, ns=ns: states[ns].append(json.loads(m.data)), COMMAND_QOS)
    plan_pub = ros_node.create_publisher(String, f"{a}/vlm_agent/plan", LATCHED_QOS)

    with NodeProcess("vlm_agent.cli", args=["up", "--config", str(config), "--namespace", a]) as graph_a, \
            NodeProcess("vlm_agent.cli", args=["up", "--config", str(config), "--namespace", b]) as graph_b:
        for ns, graph in ((a, graph_a), (b, graph_b)):
            client = ros_node.create_client(Trigger, f"{ns}/lifecycle_manager/is_active")

            def active(client=client, graph=graph):
                answer = call_service(ros_executor, client, Trigger.Request(), timeout=5)
                return bool(answer and answer.success) or not graph.alive()

            assert spin_until(ros_executor, active, timeout=120, step=0.5), f"{ns} not active"
            assert graph.alive(), graph.output[-3000:]
        assert wait_for_subscribers(plan_pub, timeout=30)
        assert spin_until(ros_executor, lambda: len(poses[a]) > 5 and len(poses[b]) > 5, timeout=30)

        # No vlm_agent topic outside the namespaces (both graphs' names resolved under their own).
        topics = {name for name, _ in ros_node.get_topic_names_and_types()}
        ours = {t for t in topics if t.startswith((a + "/", b + "/"))}
        assert f"{a}/cmd_vel" in ours and f"{b}/cmd_vel" in ours and f"{a}/camera/color/image_raw" in ours
        for ns in (a, b):
            for node in ("mujoco_sim", "navid_planner", "motion_executor", "safety_supervisor", "lifecycle_manager"):
                pubs = {n for n, _ in ros_node.get_publisher_names_and_types_by_node(node, ns)}
                stray = {t for t in pubs - GLOBAL_OK if not t.startswith(ns + "/")}
                assert not stray, f"{ns}/{node} publishes outside its namespace: {stray}"

        start_a, start_b = poses[a][-1], poses[b][-1]
        n_b = len(cmds[b])
        plan = PlanMessage(7001, "test", 0, "move forward 25 cm", (NavPrimitive.forward(25.0),), 0.0, None)
        plan_pub.publish(String(data=plan.to_json()))
        done = spin_until(ros_executor, lambda: any(s["plan_id"] == 7001 and s["state"] in ("done", "aborted") for s in states[a]), timeout=30)
        assert done, (states[a][-3:], graph_a.output[-2000:])
        assert [s for s in states[a] if s["plan_id"] == 7001][-1]["state"] == "done"
        spin_until(ros_executor, lambda: False, timeout=0.5)
        moved_a = math.hypot(poses[a][-1][0] - start_a[0], poses[a][-1][1] - start_a[1])
        moved_b = math.hypot(poses[b][-1][0] - start_b[0], poses[b][-1][1] - start_b[1])
        assert moved_a == pytest.approx(0.25, abs=0.05), moved_a
        assert moved_b < 1e-6, moved_b
        assert cmds[b][n_b:] and all(c == (0.0, 0.0) for c in cmds[b][n_b:])
        assert not any(s.get("plan_id") == 7001 for s in states[b])
        assert graph_a.alive() and graph_b.alive()
    for graph in (graph_a, graph_b):
        assert graph.returncode == 0, graph.output[-3000:]
        assert "Traceback" not in graph.output, graph.output[-3000:]
