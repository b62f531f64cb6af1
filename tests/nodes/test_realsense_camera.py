"""realsense_camera node over real rclpy: software device in-process, recorded .db3 in a second process."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("pyrealsense2")

from tests.ros_harness import NodeProcess, spin_until, wait_for_publishers  # noqa: E402
from tests.sensors.test_realsense import COLOR, DEPTH, colour_frame, depth_frame  # noqa: E402

pytestmark = pytest.mark.ros

# The node runs in a per-process namespace (its topics are relative): concurrent test runs on this
# machine may share a ROS domain, and a simulator elsewhere publishing /camera/... must not be
# mistaken for this node's frames.
PREFIX = f"/rs_test_{os.getpid()}"
TOPICS = {
    "color_topic": f"{PREFIX}/camera/color/image_raw",
    "color_info_topic": f"{PREFIX}/camera/color/camera_info",
    "depth_topic": f"{PREFIX}/camera/depth/image_rect_raw",
    "depth_info_topic": f"{PREFIX}/camera/depth/camera_info",
}
STATUS_NAME = f"{PREFIX}/realsense_camera"


def _subscribe(node, received):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
    for key, mtype, topic in (
        ("color", Image, TOPICS["color_topic"]),
        ("color_info", CameraInfo, TOPICS["color_info_topic"]),
        ("depth", Image, TOPICS["depth_topic"]),
        ("depth_info", CameraInfo, TOPICS["depth_info_topic"]),
    ):
        received[key] = []
        node.create_subscription(mtype, topic, lambda m, k=key: received[k].append(m), qos)
    received["status"] = []
    return node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: received["status"].extend(s for s in m.status if s.name == STATUS_NAME), 10,
    )


def _key(stamp):
    return (stamp.sec, stamp.nanosec)


def _check_frame(received):
    """Every colour frame with a same-stamp depth frame is an exact (colour_frame(n), depth_frame(n)) pair."""
    from vlm_agent.sensors.image_conversion import image_to_numpy

    depth_by_stamp = {_key(m.header.stamp): m for m in received["depth"]}
    pairs = [(c, depth_by_stamp[_key(c.header.stamp)]) for c in received["color"] if _key(c.header.stamp) in depth_by_stamp]
    assert pairs, "no colour frame had a depth frame with the same stamp"
    for color, depth in pairs:
        assert color.encoding == "rgb8" and depth.encoding == "16UC1"
        assert color.header.frame_id == "camera_color_optical_frame"
        rgb, mm = image_to_numpy(color), image_to_numpy(depth)
        n = int(mm[0, 0]) - 1000  # depth_frame(n) is 1000 + n mm in its left half
        np.testing.assert_array_equal(rgb, colour_frame(n))
        np.testing.assert_array_equal(mm, depth_frame(n))
    info = received["color_info"][-1]
    assert (info.width, info.height) == (COLOR.width, COLOR.height)
    assert info.k[0] == pytest.approx(COLOR.fx) and info.k[5] == pytest.approx(COLOR.cy)
    assert received["depth_info"][-1].k[0] == pytest.approx(DEPTH.fx)


def test_software_device_frames_are_published_and_a_lost_device_shows_in_status(ros_context, ros_executor, ros_node):
    from rclpy.parameter import Parameter

    from vlm_agent.nodes.realsense_camera import RealSenseCameraNode
    from vlm_agent.sensors.realsense_software import SoftwareRealSense

    dev = SoftwareRealSense(COLOR, DEPTH)
    unplugged = []

    def factory():
        if unplugged:
            raise RuntimeError("No device connected")
        return dev.source()

    from vlm_agent.nodes.base import bring_up

    node = RealSenseCameraNode(
        source_factory=factory,
        context=ros_context,
        namespace=PREFIX,
        parameter_overrides=[
            Parameter("align_depth_to_color", value=False),
            Parameter("frame_timeout_s", value=0.4),
            Parameter("reconnect_backoff_s", value=0.1),
            Parameter("reconnect_backoff_max_s", value=0.4),
        ],
    )
    ros_executor.add_node(node)
    assert node.camera is None  # unconfigured: no device opened
    assert bring_up(node)
    received = {}
    _subscribe(ros_node, received)
    assert spin_until(ros_executor, lambda: node.camera.state == "streaming", timeout=5)

    last_inject = [0.0]

    def inject_and_check():
        # A 30 Hz camera: injecting on every spin would flood the single-threaded executor, which
        # serves ready subscriptions in creation order and would starve the camera_info ones.
        if time.monotonic() - last_inject[0] >= 1 / 30:
            last_inject[0] = time.monotonic()
            n = dev.frame_number
            dev.inject(depth_frame(n), colour_frame(n), timestamp_ms=n * 33.3)
        return len(received["color"]) >= 5 and len(received["depth_info"]) >= 5

    assert spin_until(ros_executor, inject_and_check, timeout=15), {k: len(v) for k, v in received.items()}
    _check_frame(received)
    # The device is unplugged: frames stop and it cannot be reopened. The node keeps running, status
    # turns ERROR with the reason; when the device is back it reconnects and frames flow again.
    unplugged.append(True)
    assert spin_until(ros_executor, lambda: node.camera.disconnects >= 1, timeout=5)
    assert spin_until(
        ros_executor,
        lambda: any(s.level == b"\x02" and "No device connected" in s.message for s in received["status"]),
        timeout=5,
    ), [(s.level, s.message) for s in received["status"]]
    assert node.camera.connect_failures >= 1
    unplugged.clear()
    assert spin_until(ros_executor, lambda: node.camera.state == "streaming", timeout=5)
    before = len(received["color"])
    assert spin_until(ros_executor, lambda: inject_and_check() and len(received["color"]) > before + 2, timeout=10)
    _check_frame(received)


def test_recorded_file_plays_back_in_a_second_process(tmp_path, ros_node, ros_executor):
    from sensor_msgs.msg import Image

    from vlm_agent.sensors.realsense_software import SoftwareRealSense

    path = str(tmp_path / "session.db3")
    dev = SoftwareRealSense(COLOR, DEPTH, record_to=path)
    dev.start()
    for k in range(10):
        dev.inject(depth_frame(k), colour_frame(k), timestamp_ms=1000.0 + k * 33.3, frame_number=k)
        time.sleep(0.02)
    dev.close()
    del dev
    received = {}
    _subscribe(ros_node, received)
    params = ["-p", f"playback_file:={path}", "-p", "playback_loop:=true", "-p", "align_depth_to_color:=false", "-r", f"__ns:={PREFIX}"]
    manager_args = ["-p", "node_names:=[realsense_camera]", "-r", f"__ns:={PREFIX}"]
    # A managed node in its own process, brought up by the lifecycle manager in a third one.
    with NodeProcess("vlm_agent.nodes.realsense_camera", ros_args=params) as proc, \
            NodeProcess("vlm_agent.nodes.lifecycle_manager", ros_args=manager_args) as manager:
        from vlm_agent.nodes.base import SENSOR_QOS

        probe = ros_node.create_subscription(Image, TOPICS["color_topic"], lambda m: None, SENSOR_QOS)
        if not wait_for_publishers(probe, timeout=30):
            proc.stop()
            manager.stop()
            raise AssertionError(proc.output + "\n--- manager ---\n" + manager.output)
        assert spin_until(ros_executor, lambda: len(received["color"]) >= 5 and len(received["depth_info"]) >= 5 or not proc.alive(), timeout=20)
        assert proc.alive()
        _check_frame(received)
        assert spin_until(ros_executor, lambda: any(s.message == "streaming" for s in received["status"]), timeout=5)
        assert manager.alive()
    assert proc.returncode == 0, proc.output
    assert manager.returncode == 0, manager.output
