"""sensor_ingest node over rclpy: synchronised observations and drop reasons appear in its status."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.ros_harness import spin_until

pytestmark = pytest.mark.ros

P = f"/ingest_test_{os.getpid()}"  # concurrent test runs may share a ROS domain


def test_status_reports_observations_spread_and_malformed_frames(ros_context, ros_executor, ros_node):
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage

    from vlm_agent.nodes.base import SENSOR_QOS
    from vlm_agent.nodes.sensor_ingest import SensorIngestNode
    from vlm_agent.sensors.image_conversion import numpy_to_compressed

    node = SensorIngestNode(
        context=ros_context,
        namespace=P,  # relative topics: camera/color/image_raw/compressed, odom
        parameter_overrides=[
            Parameter("color_transport", value="compressed"),
            Parameter("slop_s", value=0.01),
            Parameter("sample_period_s", value=0.0),
        ],
    )
    ros_executor.add_node(node)
    statuses = []
    ros_node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(s for s in m.status if s.name == f"{P}/sensor_ingest"), 10
    )
    color_pub = ros_node.create_publisher(CompressedImage, f"{P}/camera/color/image_raw/compressed", SENSOR_QOS)
    odom_pub = ros_node.create_publisher(Odometry, f"{P}/odom", SENSOR_QOS)
    assert spin_until(ros_executor, lambda: color_pub.get_subscription_count() and odom_pub.get_subscription_count(), timeout=10)
    jpeg = numpy_to_compressed(np.full((24, 32, 3), 90, np.uint8), "rgb8", fmt="jpeg")
    t0 = node.get_clock().now().nanoseconds * 1e-9
    for i in range(20):
        t = t0 + i / 30
        odom = Odometry()
        odom.header.stamp.sec, odom.header.stamp.nanosec = int(t), int((t % 1) * 1e9)
        odom.pose.pose.orientation.w = 1.0
        jpeg.header.stamp.sec, jpeg.header.stamp.nanosec = int(t + 0.004), int(((t + 0.004) % 1) * 1e9)
        if i == 10:
            jpeg_bad = CompressedImage(format="jpeg", data=b"\xff\xd8 broken")
            jpeg_bad.header = jpeg.header
            color_pub.publish(jpeg_bad)
        else:
            color_pub.publish(jpeg)
        odom_pub.publish(odom)
        # Deliver both before the next pair (sensor QoS keeps only 5 messages per subscription).
        spin_until(ros_executor, lambda i=i: all(node.health.rates.get(s) and node.health.rates[s].count > i for s in ("color", "odom")), timeout=2)

    def reported():
        if not statuses:
            return False
        values = {kv.key: kv.value for kv in statuses[-1].values}
        return int(values.get("observations", 0)) >= 15 and values.get("dropped.malformed") == "1"

    assert spin_until(ros_executor, reported, timeout=10), [{kv.key: kv.value for kv in s.values} for s in statuses[-1:]]
    values = {kv.key: kv.value for kv in statuses[-1].values}
    assert float(values["latency.sync_spread.max_ms"]) == pytest.approx(4.0, abs=0.01)
    assert "could not be decoded" in values["last_drop_reason"]
    assert statuses[-1].level == b"\x00"
