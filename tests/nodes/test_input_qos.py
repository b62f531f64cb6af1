"""Every input topic accepts a default-QoS publisher (what `ros2 topic pub` and most user code create).

Each node runs in a namespace of its own; this test publishes each of its inputs with
`create_publisher(T, name, 10)` (reliable, volatile, keep-last 10) and sees the node use it (its
counters, as reported on /diagnostics). Sensor and odometry publishers of the package are reliable
(REP-2003), so a reliable subscriber such as Nav2's or robot_localization's matches them.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.ros_harness import spin_until

pytestmark = pytest.mark.ros


class StopBackend:
    def reset(self, instruction):
        pass

    def observe(self, rgb):
        pass

    def generate(self, rgb):
        return "stop"


def test_each_input_topic_accepts_a_default_qos_publisher(ros_context, ros_executor, ros_node):
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.qos import ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Float64, String
    from trajectory_msgs.msg import JointTrajectory

    from vlm_agent.nodes.base import bring_up
    from vlm_agent.nodes.image_decompressor import ImageDecompressorNode
    from vlm_agent.nodes.motion_executor import MotionExecutorNode
    from vlm_agent.nodes.mujoco_sim import MujocoSimNode
    from vlm_agent.nodes.navid_planner import NavidPlannerNode
    from vlm_agent.nodes.safety_supervisor import SafetySupervisorNode
    from vlm_agent.nodes.sensor_ingest import SensorIngestNode
    from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig
    from vlm_agent.planners.planner_loop import PlanMessage
    from vlm_agent.actions import NavPrimitive
    from vlm_agent.sensors.image_conversion import numpy_to_compressed, numpy_to_image

    base = f"/qos_test_{os.getpid()}"
    ns = {name: f"{base}/{name}" for name in ("supervisor", "planner", "executor", "sim", "decompressor", "ingest")}
    nodes = {
        "supervisor": SafetySupervisorNode(context=ros_context, namespace=ns["supervisor"]),
        "planner": NavidPlannerNode(planner=NavidPlanner(NavidPlannerConfig(), backend=StopBackend()), context=ros_context, namespace=ns["planner"]),
        "executor": MotionExecutorNode(context=ros_context, namespace=ns["executor"]),
        "sim": MujocoSimNode(context=ros_context, namespace=ns["sim"]),
        "decompressor": ImageDecompressorNode(context=ros_context, namespace=ns["decompressor"]),
        "ingest": SensorIngestNode(context=ros_context, namespace=ns["ingest"]),
    }
    for node in nodes.values():
        ros_executor.add_node(node)
    assert bring_up(nodes["supervisor"]) and bring_up(nodes["planner"])

    rgb = numpy_to_image(np.zeros((24, 32, 3), np.uint8), "rgb8")
    depth = numpy_to_image(np.full((24, 32), 2.0, np.float32), "32FC1")
    odom = Odometry()
    odom.pose.pose.orientation.w = 1.0

    def stamped(msg):
        # The safety supervisor judges sensors by their header stamps: an unstamped frame is not fresh.
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        return msg

    stop_plan = PlanMessage(1, "test", 0, "stop", (NavPrimitive.stop(),), 0.0, None).to_json()
    inputs = [  # (node, topic, type, message factory, the node's counter that shows it was used)
        ("supervisor", "camera/color/image_raw", Image, lambda: stamped(rgb), "count.camera"),
        ("supervisor", "camera/depth/image_rect_raw", Image, lambda: stamped(depth), "count.depth"),
        ("supervisor", "odom", Odometry, lambda: stamped(odom), "count.odom"),
        ("supervisor", "vlm_agent/cmd_vel_raw", Twist, Twist, "count.cmd_vel_raw"),
        ("planner", "camera/color/image_raw", Image, lambda: stamped(rgb), "count.camera"),
        ("planner", "odom", Odometry, lambda: stamped(odom), "count.odom"),
        ("planner", "vlm_agent/instruction", String, lambda: String(data="go to the door"), "count.instruction"),
        ("planner", "vlm_agent/executor/state", String, lambda: String(data="not json"), "dropped.executor_state"),
        ("executor", "vlm_agent/plan", String, lambda: String(data=stop_plan), "count.plan"),
        ("executor", "odom", Odometry, lambda: stamped(odom), "count.odom"),
        ("sim", "cmd_vel", Twist, Twist, "count.cmd_vel"),
        ("sim", "gripper/command", Float64, lambda: Float64(data=float("nan")), "dropped.non_finite_gripper"),
        ("sim", "arm_controller/joint_trajectory", JointTrajectory, JointTrajectory, "dropped.bad_trajectory"),
        ("decompressor", "camera/color/image_raw/compressed", CompressedImage,
         lambda: numpy_to_compressed(np.zeros((24, 32, 3), np.uint8), "rgb8", fmt="png"), "count.input"),
        ("ingest", "camera/color/image_raw", Image, lambda: stamped(rgb), "count.color"),
        ("ingest", "odom", Odometry, lambda: stamped(odom), "count.odom"),
    ]
    pubs = [(who, ros_node.create_publisher(mtype, f"{ns[who]}/{topic}", 10), make, key, topic) for who, topic, mtype, make, key in inputs]

    def used(who, key):
        return int(nodes[who].health.key_values().get(key, 0)) > 0

    def publish_and_check():
        for who, pub, make, key, _topic in pubs:
            if pub.get_subscription_count() and not used(who, key):
                pub.publish(make())
        return all(used(who, key) for who, _pub, _make, key, _topic in pubs)

    ok = spin_until(ros_executor, publish_and_check, timeout=30, step=0.05)
    assert ok, [f"{ns[who]}/{topic}: {key}" for who, _p, _m, key, topic in pubs if not used(who, key)]

    # The package's own sensor and odometry publishers are reliable: a reliable subscriber matches.
    for topic in ("camera/color/image_raw", "camera/depth/image_rect_raw", "odom", "joint_states"):
        infos = ros_node.get_publishers_info_by_topic(f"{ns['sim']}/{topic}")
        assert infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos), topic
    infos = ros_node.get_publishers_info_by_topic(f"{ns['decompressor']}/camera/color/image_raw")
    assert infos and infos[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
