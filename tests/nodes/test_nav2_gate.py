"""Nav2 through the safety gate (issue 11): the remap rules robot.launch.py applies to nav2_bringup
(`composition.nav2_gate_remaps`), checked against rcl's real name resolution with nav2_bringup's own
per-node remaps after them (the order launch_ros emits: SetRemap rules first), and end to end: a
stand-in for Nav2's velocity smoother, started with those arguments, drives the robot only through
the supervisor, which stays the only publisher of `cmd_vel`.

Before: in goal_pose mode Nav2's controller chain published `cmd_vel` itself while the supervisor
published zeros there (two publishers fighting)."""
from __future__ import annotations

import time

import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

# nav2_bringup navigation_launch.py's own remaps for these nodes (Humble; Jazzy keeps the smoother's
# output name and adds collision_monitor, which publishes `cmd_vel`).
NAV2_OWN_REMAPS = {
    "controller_server": [("cmd_vel", "cmd_vel_nav")],
    "velocity_smoother": [("cmd_vel", "cmd_vel_nav"), ("cmd_vel_smoothed", "cmd_vel")],
    "collision_monitor": [],
}


def _cli_args(node_name):
    from vlm_agent.nodes.composition import nav2_gate_remaps

    args = ["--ros-args"]
    for src, dst in nav2_gate_remaps() + NAV2_OWN_REMAPS[node_name]:
        args += ["-r", f"{src}:={dst}"]
    return args


def test_nav2_velocity_output_resolves_to_the_supervisor_input():
    from rclpy.node import Node

    ns = "/nav2_gate_names"
    with ros_session() as (context, executor):
        names = {}
        for node_name, topic in (("controller_server", "cmd_vel"), ("velocity_smoother", "cmd_vel_smoothed"),
                                 ("velocity_smoother", "cmd_vel"), ("collision_monitor", "cmd_vel")):
            node = Node(node_name, namespace=ns, context=context, cli_args=_cli_args(node_name))
            names[(node_name, topic)] = node.resolve_topic_name(topic)
            node.destroy_node()
    assert names[("controller_server", "cmd_vel")] == f"{ns}/cmd_vel_nav"  # nav2's own chain unchanged
    assert names[("velocity_smoother", "cmd_vel")] == f"{ns}/cmd_vel_nav"  # the smoother's input
    assert names[("velocity_smoother", "cmd_vel_smoothed")] == f"{ns}/vlm_agent/cmd_vel_raw"  # not cmd_vel
    assert names[("collision_monitor", "cmd_vel")] == f"{ns}/vlm_agent/cmd_vel_raw"


def test_nav2_commands_reach_the_base_only_through_the_supervisor():
    from geometry_msgs.msg import Twist
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from vlm_agent.nodes.base import COMMAND_QOS, bring_up
    from vlm_agent.nodes.safety_supervisor import SafetySupervisorNode

    ns = "/nav2_gate_e2e"
    with ros_session() as (context, executor):
        params = {"camera_timeout_s": 0.0, "depth_timeout_s": 0.0, "odom_timeout_s": 0.0, "obstacle_stop_distance_m": 0.0,
                  "max_linear_speed_mps": 0.3, "max_linear_accel_mps2": 50.0}
        sup = SafetySupervisorNode(context=context, namespace=ns, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        assert bring_up(sup)
        smoother = Node("velocity_smoother", namespace=ns, context=context, cli_args=_cli_args("velocity_smoother"))
        base = Node("base_driver", namespace=ns, context=context)
        for n in (sup, smoother, base):
            executor.add_node(n)
        out = smoother.create_publisher(Twist, "cmd_vel_smoothed", COMMAND_QOS)
        received = []
        sub = base.create_subscription(Twist, "cmd_vel", lambda m: received.append(m.linear.x), COMMAND_QOS)
        assert wait_for_subscribers(out) and wait_for_publishers(sub)
        cmd = Twist()
        cmd.linear.x = 1.0  # above the supervisor's limit: it must arrive clamped
        timer = smoother.create_timer(0.05, lambda: out.publish(cmd))
        assert spin_until(executor, lambda: received and received[-1] > 0.25, timeout=5.0), received[-5:]
        assert max(received) == pytest.approx(0.3)
        publishers = base.get_publishers_info_by_topic(f"{ns}/cmd_vel")
        assert [p.node_name for p in publishers] == ["safety_supervisor"], [p.node_name for p in publishers]
        # Nav2 stops sending (a dead controller): the supervisor's watchdog brings the base to zero.
        smoother.destroy_timer(timer)
        t0 = time.monotonic()
        assert spin_until(executor, lambda: received[-1] == 0.0, timeout=3.0)
        assert time.monotonic() - t0 < 1.5
