"""`vlm-agent record` in a second process records what this process publishes; the file reads back identical."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from tests.ros_harness import NodeProcess, wait_for_subscribers

pytestmark = pytest.mark.ros

# Per-process topic names: concurrent test runs may share a ROS domain (and publish /vlm_agent/plan).
# They also exercise the recorder's type and QoS discovery from the graph (not the contract table).
P = f"/rec_test_{os.getpid()}"


def test_record_cli_in_second_process_round_trips(tmp_path, ros_node, ros_executor):
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
    from vlm_agent.nodes.recorder import message_class
    from vlm_agent.sensors.image_conversion import numpy_to_image
    from vlm_agent.sensors.recording import RecordingReader

    # A latched plan published before the recorder exists must still be recorded, exactly once.
    plan_pub = ros_node.create_publisher(String, f"{P}/vlm_agent/plan", LATCHED_QOS)
    plan = String(data='{"plan": ["move forward 25 cm"], "step": 0}')
    plan_pub.publish(plan)
    image_pub = ros_node.create_publisher(Image, f"{P}/camera/color/image_raw", SENSOR_QOS)
    odom_pub = ros_node.create_publisher(Odometry, f"{P}/odom", SENSOR_QOS)
    cmd_pub = ros_node.create_publisher(Twist, f"{P}/vlm_agent/cmd_vel_raw", COMMAND_QOS)
    other_pub = ros_node.create_publisher(String, f"{P}/not_recorded", COMMAND_QOS)

    path = str(tmp_path / "run.mcap")
    topics = f"{P}/camera/color/image_raw,{P}/odom,{P}/vlm_agent/cmd_vel_raw,{P}/vlm_agent/plan"
    sent: dict[str, list] = {f"{P}/camera/color/image_raw": [], f"{P}/odom": [], f"{P}/vlm_agent/cmd_vel_raw": []}
    with NodeProcess("vlm_agent.cli", args=["record", "-o", path, "-t", topics, "--quiet"]) as proc:
        for pub in (image_pub, odom_pub, cmd_pub):
            assert wait_for_subscribers(pub, timeout=20), proc.output if not proc.alive() else "no recorder subscription"
        time.sleep(1.5)  # let the recorder's QoS upgrade (reliable commands) settle
        rng = np.random.default_rng(0)
        for i in range(40):
            img = numpy_to_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "rgb8")
            img.header.stamp = ros_node.get_clock().now().to_msg()
            img.header.frame_id = f"frame {i}"
            odom = Odometry()
            odom.header.stamp = img.header.stamp
            odom.pose.pose.position.x = 0.01 * i
            odom.pose.pose.orientation.w = 1.0
            cmd = Twist()
            cmd.linear.x, cmd.angular.z = 0.1 + 0.001 * i, -0.2
            for topic, pub, msg in ((f"{P}/camera/color/image_raw", image_pub, img), (f"{P}/odom", odom_pub, odom), (f"{P}/vlm_agent/cmd_vel_raw", cmd_pub, cmd)):
                pub.publish(msg)
                sent[topic].append(msg)
            other_pub.publish(String(data="x"))
            ros_executor.spin_once(timeout_sec=0.02)
        time.sleep(1.0)
        assert proc.alive(), proc.output
    assert proc.returncode == 0, proc.output

    reader = RecordingReader(path)
    topics_found = reader.topics()
    assert f"{P}/not_recorded" not in topics_found
    recorded: dict[str, list] = {}
    for m in reader.messages(decode=False):
        recorded.setdefault(m.topic, []).append(deserialize_message(m.data, message_class(m.type_name)))
    assert recorded[f"{P}/vlm_agent/plan"] == [plan]
    # Reliable commands: all of them, in order. Sensor topics are best-effort: nearly all, in order, exact.
    assert recorded[f"{P}/vlm_agent/cmd_vel_raw"] == sent[f"{P}/vlm_agent/cmd_vel_raw"]
    for topic in (f"{P}/camera/color/image_raw", f"{P}/odom"):
        got = recorded[topic]
        assert len(got) >= 0.9 * len(sent[topic])
        indices = [sent[topic].index(m) for m in got]  # every recorded message is one that was sent, unchanged
        assert indices == sorted(indices)


def test_default_topics_resolve_in_the_recorder_namespace(ros_context, tmp_path):
    from rclpy.parameter import Parameter

    from vlm_agent.nodes.recorder import RecorderNode

    node = RecorderNode(context=ros_context, namespace="/robot7",
                        parameter_overrides=[Parameter("output_path", value=str(tmp_path / "ns.mcap"))])
    try:
        assert "/robot7/odom" in node._topics and "/robot7/cmd_vel" in node._topics
        assert node._topics["/robot7/camera/color/image_raw"] == "sensor_msgs/msg/Image"
        assert not any(t in node._topics for t in ("/odom", "/cmd_vel"))
    finally:
        node.destroy_node()
