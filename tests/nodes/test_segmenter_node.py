"""segmenter node over real rclpy (one process) with a scripted segmenter: what it publishes for a frame
(mask with the source header, overlay, label, 3D target), bad inputs (encodings, hostile queries, NaN
depth, a model that raises) logged and survived, frames that arrive while the model is busy replaced,
not queued, and a failed model load failing `configure` with the reason."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

H, W = 48, 64
# Topics under a namespace of this run: other ROS tests on the machine may share the domain id.
NS = f"/segtest_{os.getpid()}"


class ScriptedSegmenter:
    """reset/step like a Segmenter: a fixed box mask; `delay_s` per step; `fail_next` raises once."""

    label = "scripted"

    def __init__(self):
        self.queries: list[str] = []
        self.steps = 0
        self.delay_s = 0.0
        self.fail_next = False
        self.lock = threading.Lock()

    def reset(self, query):
        from vlm_agent.models.sa2va.processing_sa2va import validate_query

        self.queries.append(validate_query(query))

    def step(self, rgb):
        from vlm_agent.models.sa2va.processing_sa2va import mask_bbox
        from vlm_agent.skills.segmentation import SegResult

        time.sleep(self.delay_s)
        with self.lock:
            self.steps += 1
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("scripted model failure")
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        mask = np.zeros((H, W), bool)
        mask[10:20, 30:40] = True
        return SegResult(mask, 0.9, "tracked" if self.steps > 1 else "detected", self.queries[-1], self.steps - 1, mask_bbox(mask), 100, 0.001)


class Rig:
    def __init__(self, context, executor):
        from geometry_msgs.msg import PointStamped
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS, bring_up
        from vlm_agent.nodes.segmenter import SegmenterNode

        self.executor = executor
        self.seg = ScriptedSegmenter()
        self.node_under_test = SegmenterNode(segmenter=self.seg, context=context, namespace=NS)
        assert bring_up(self.node_under_test)
        self.node = Node("segmenter_test_helper", context=context)
        for n in (self.node_under_test, self.node):
            executor.add_node(n)
        self.masks, self.overlays, self.labels, self.targets = [], [], [], []
        qos = SENSOR_QOS
        self.subs = [
            self.node.create_subscription(Image, NS + "/segmentation/mask", self.masks.append, qos),
            self.node.create_subscription(Image, NS + "/segmentation/overlay", self.overlays.append, qos),
            self.node.create_subscription(String, NS + "/segmentation/label", lambda m: self.labels.append(json.loads(m.data)), COMMAND_QOS),
            self.node.create_subscription(PointStamped, NS + "/segmentation/target", self.targets.append, qos),
        ]
        from vlm_agent.nodes.base import SENSOR_PUB_QOS

        self.color_pub = self.node.create_publisher(Image, NS + "/camera/color/image_raw", SENSOR_PUB_QOS)
        self.depth_pub = self.node.create_publisher(Image, NS + "/camera/depth/image_rect_raw", SENSOR_PUB_QOS)
        self.info_pub = self.node.create_publisher(CameraInfo, NS + "/camera/depth/camera_info", SENSOR_PUB_QOS)
        self.query_pub = self.node.create_publisher(String, NS + "/segmentation/query", COMMAND_QOS)
        self.String = String
        for pub in (self.color_pub, self.depth_pub, self.info_pub, self.query_pub):
            assert wait_for_subscribers(pub)
        for sub in self.subs:
            assert wait_for_publishers(sub)
        self.stamp = 100.0

    def spin(self, seconds):
        spin_until(self.executor, lambda: False, timeout=seconds, step=0.01)

    def query(self, text):
        self.query_pub.publish(self.String(data=text))
        self.spin(0.2)

    def intrinsics(self):
        from vlm_agent.sensors.camera_model import CameraIntrinsics

        return CameraIntrinsics(W, H, 50.0, 50.0, 31.5, 23.5, frame_id="camera_color_optical_frame")

    def frame(self, depth=2.0, encoding="rgb8", with_depth=True):
        """Publish a colour frame (and a depth image with the same stamp); returns its stamp (s)."""
        from vlm_agent.sensors.camera_info import intrinsics_to_camera_info
        from vlm_agent.sensors.frames import seconds_to_stamp
        from vlm_agent.sensors.image_conversion import numpy_to_image

        self.stamp += 0.1
        stamp = seconds_to_stamp(self.stamp)
        header_frame = "camera_color_optical_frame"
        if with_depth:
            d = numpy_to_image(np.full((H, W), depth, np.float32), "32FC1")
            d.header.stamp, d.header.frame_id = stamp, header_frame
            self.info_pub.publish(intrinsics_to_camera_info(self.intrinsics(), stamp))
            self.depth_pub.publish(d)
            self.spin(0.05)
        if encoding == "rgb8":
            img = numpy_to_image(np.full((H, W, 3), 120, np.uint8), "rgb8")
        elif encoding == "bgr8":
            img = numpy_to_image(np.full((H, W, 3), 120, np.uint8), "bgr8")
        else:
            img = numpy_to_image(np.full((H, W), 1.0, np.float32), encoding)
        img.header.stamp, img.header.frame_id = stamp, header_frame
        self.color_pub.publish(img)
        return self.stamp


@pytest.fixture(scope="module")
def rig():
    with ros_session() as (context, executor):
        yield Rig(context, executor)


def _stamp(msg):
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_a_frame_gives_mask_overlay_label_and_target(rig):
    from vlm_agent.safety.obstacle import CameraMount
    from vlm_agent.sensors.backprojection import mask_centroid_3d, mask_object_centre_3d

    rig.query("the red cube")
    stamp = rig.frame(depth=2.0)
    assert spin_until(rig.executor, lambda: rig.masks and rig.targets and rig.labels and rig.overlays, timeout=10)
    mask = rig.masks[-1]
    assert mask.encoding == "mono8" and (mask.height, mask.width) == (H, W)
    assert _stamp(mask) == pytest.approx(stamp, abs=1e-9) and mask.header.frame_id == "camera_color_optical_frame"
    m = np.frombuffer(mask.data, np.uint8).reshape(H, W)
    assert set(np.unique(m)) == {0, 255} and (m[10:20, 30:40] == 255).all() and (m == 255).sum() == 100
    assert rig.overlays[-1].encoding == "rgb8" and _stamp(rig.overlays[-1]) == pytest.approx(stamp, abs=1e-9)
    label = next(lb for lb in rig.labels if "error" not in lb)
    assert label["query"] == "the red cube" and label["bbox"] == [30, 10, 40, 20] and label["area"] == 100
    assert label["source"] in ("detected", "tracked") and label["score"] == 0.9 and label["target_frame"] == "camera_color_optical_frame"
    target = rig.targets[-1]
    up = CameraMount(0.0, 0.0, 0.0, 0.0, 0.0, 0.0).optical_to_base()[0]  # target_point centre, a level camera by default
    expected = mask_object_centre_3d(m > 0, np.full((H, W), 2.0), rig.intrinsics(), up).point
    assert expected[2] > mask_centroid_3d(m > 0, np.full((H, W), 2.0), rig.intrinsics()).point[2]  # behind the visible surface
    assert (target.point.x, target.point.y, target.point.z) == pytest.approx(expected)
    assert target.header.frame_id == "camera_color_optical_frame" and _stamp(target) == pytest.approx(stamp, abs=1e-9)
    assert rig.seg.queries[-1] == "the red cube"


def test_bad_inputs_are_logged_and_survived(rig):
    health = rig.node_under_test.health
    rig.query("the red cube")
    # A depth image as the colour stream: dropped with the reason.
    before = health.drops.counts["frame"]
    rig.frame(encoding="32FC1")
    rig.spin(0.3)
    assert health.drops.counts["frame"] == before + 1 and "colour" in health.drops.last_reason
    # Hostile queries: refused with an error label, the previous query stays.
    rig.labels.clear()
    for bad in ("", "\x1b[2J red", "x" * 5000, "red\u202ecube"):
        rig.query(bad)
    errors = [lb for lb in rig.labels if "error" in lb]
    assert len(errors) == 4 and all(lb["error"].startswith("query refused") for lb in errors)
    assert rig.node_under_test._query == "the red cube"
    # NaN depth: a mask, but no target, and the reason in the label.
    rig.labels.clear()
    n_targets = len(rig.targets)
    stamp = rig.frame(depth=float("nan"))
    assert spin_until(rig.executor, lambda: any(lb.get("stamp") == pytest.approx(stamp) for lb in rig.labels), timeout=10)
    label = next(lb for lb in rig.labels if lb.get("stamp") == pytest.approx(stamp))
    assert label["target"] is None and "valid depth" in label["target_reason"] and len(rig.targets) == n_targets
    # No depth at all (a colour-only camera): masks still come, targets do not.
    rig.node_under_test._depth.clear()
    stamp = rig.frame(with_depth=False, encoding="bgr8")
    assert spin_until(rig.executor, lambda: any(lb.get("stamp") == pytest.approx(stamp) for lb in rig.labels), timeout=10)
    assert "no depth" in next(lb for lb in rig.labels if lb.get("stamp") == pytest.approx(stamp))["target_reason"]
    # A model call that raises: an error label, and the next frame is segmented again (after a reset).
    resets = len(rig.seg.queries)
    rig.seg.fail_next = True
    rig.labels.clear()
    rig.frame()
    assert spin_until(rig.executor, lambda: any("model error" in lb.get("error", "") for lb in rig.labels), timeout=10)
    stamp = rig.frame()
    assert spin_until(rig.executor, lambda: rig.masks and _stamp(rig.masks[-1]) == pytest.approx(stamp, abs=1e-9), timeout=10)
    assert len(rig.seg.queries) == resets + 1  # the tracker restarted from the query
    assert health.drops.counts["model_error"] >= 1


def test_frames_arriving_while_busy_replace_each_other(rig):
    rig.query("the red cube")
    rig.spin(0.3)
    rig.seg.delay_s = 0.4
    try:
        rig.masks.clear()
        superseded = rig.node_under_test.health.drops.counts["superseded"]
        steps = rig.seg.steps
        stamps = []
        for _ in range(6):
            stamps.append(rig.frame())
            rig.spin(0.04)
        assert spin_until(rig.executor, lambda: rig.masks and _stamp(rig.masks[-1]) == pytest.approx(stamps[-1], abs=1e-9), timeout=10)
        rig.spin(0.6)
        done = rig.seg.steps - steps
        assert done < 6, "every frame was processed: frames were queued"
        assert rig.node_under_test.health.drops.counts["superseded"] - superseded >= 6 - done - 1
        assert len(rig.masks) == done and _stamp(rig.masks[0]) == pytest.approx(stamps[0], abs=1e-9)
    finally:
        rig.seg.delay_s = 0.0


def test_a_result_for_a_replaced_query_is_not_published(rig):
    """The skill adapter takes the first target after its query: an answer computed for the previous
    query while the new one arrived is dropped (stale_query), the next frame answers the new one."""
    rig.query("the red cube")
    rig.spin(0.3)
    rig.seg.delay_s = 0.5
    try:
        rig.labels.clear()
        stale = rig.node_under_test.health.drops.counts["stale_query"]
        old = rig.frame()
        rig.spin(0.15)  # the model is busy with `old`
        rig.query("the blue ball")
        rig.spin(0.6)
        assert rig.node_under_test.health.drops.counts["stale_query"] == stale + 1
        assert not any(lb.get("stamp") == pytest.approx(old) for lb in rig.labels)
        new = rig.frame()
        assert spin_until(rig.executor, lambda: any(lb.get("stamp") == pytest.approx(new) for lb in rig.labels), timeout=10)
        assert next(lb for lb in rig.labels if lb.get("stamp") == pytest.approx(new))["query"] == "the blue ball"
    finally:
        rig.seg.delay_s = 0.0


def test_a_model_that_cannot_load_fails_configure_with_the_reason(tmp_path):
    from rclpy.parameter import Parameter

    from vlm_agent.nodes.segmenter import SegmenterNode

    with ros_session() as (context, executor):
        node = SegmenterNode(context=context, parameter_overrides=[Parameter("model_dir", value=str(tmp_path / "nothing"))])
        executor.add_node(node)
        node.trigger_configure()
        assert node.lifecycle_state == "unconfigured"
        assert "could not build the sa2va segmenter" in node._transition_error and "config.json" in node._transition_error
