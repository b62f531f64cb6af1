"""The segmenter node's attribute verifier (`verifier_model_dir`) over real rclpy (one process): a
tiny saved verifier whose heads read every crop as a red cube, around an injected segmenter that
always marks the same square. A query naming another shape publishes an all-zero mask and a
"rejected" label with the reason; a query the verifier accepts comes through with the verdict; a
verifier that cannot load fails `configure` with the reason; the oracle backend's mirror, built
later on the worker, is wrapped too."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers
from tests.skills.test_verification import forced_model

pytestmark = pytest.mark.ros

H, W = 32, 40
NS = f"/segverify_{os.getpid()}"


class SquareSegmenter:
    """A Segmenter that marks rows 8..20, columns 10..24 of every frame; `closed` when closed."""

    label = "square"

    def __init__(self):
        self.query = None
        self.closed = False

    def reset(self, query):
        self.query = query

    def step(self, rgb):
        from vlm_agent.models.sa2va.processing_sa2va import mask_bbox
        from vlm_agent.skills.segmentation import SegResult

        mask = np.zeros(rgb.shape[:2], bool)
        mask[8:20, 10:24] = True
        return SegResult(mask, 0.9, "detected", self.query, 0, mask_bbox(mask), int(mask.sum()), 0.001)

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def red_cube_dir(tmp_path_factory):
    from vlm_agent.models.attribute_verifier import AttributeVerifierProcessor

    path = tmp_path_factory.mktemp("red_cube_verifier")
    model = forced_model("red", "cube")
    model.save_pretrained(str(path))
    AttributeVerifierProcessor(model.config).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def session():
    with ros_session() as (context, executor):
        yield context, executor


def test_a_rejected_mask_is_published_empty_with_the_reason(session, red_cube_dir):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_PUB_QOS, SENSOR_QOS, bring_up
    from vlm_agent.nodes.segmenter import SegmenterNode
    from vlm_agent.sensors.frames import seconds_to_stamp
    from vlm_agent.sensors.image_conversion import numpy_to_image
    from vlm_agent.skills.verification import VerifiedSegmenter

    context, executor = session
    inner = SquareSegmenter()
    node = SegmenterNode(segmenter=inner, context=context, namespace=NS, parameter_overrides=[
        Parameter("verifier_model_dir", value=red_cube_dir), Parameter("verifier_min_match", value=0.5)])
    assert bring_up(node)
    seg = node._segmenter
    assert isinstance(seg, VerifiedSegmenter) and seg.inner is inner and seg.verifier.min_match == 0.5
    helper = Node("segverify_helper", context=context)
    for n in (node, helper):
        executor.add_node(n)
    masks, labels = [], []
    mask_sub = helper.create_subscription(Image, NS + "/segmentation/mask", masks.append, SENSOR_QOS)
    label_sub = helper.create_subscription(String, NS + "/segmentation/label", lambda m: labels.append(json.loads(m.data)), COMMAND_QOS)
    color_pub = helper.create_publisher(Image, NS + "/camera/color/image_raw", SENSOR_PUB_QOS)
    query_pub = helper.create_publisher(String, NS + "/segmentation/query", COMMAND_QOS)
    for pub in (color_pub, query_pub):
        assert wait_for_subscribers(pub)
    for sub in (mask_sub, label_sub):
        assert wait_for_publishers(sub)
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)

    def segment(query: str, stamp: float):
        """(mask (H, W) uint8, label) of a frame stamped `stamp` after `query`."""
        query_pub.publish(String(data=query))
        spin_until(executor, lambda: node._query == query, timeout=5)
        img = numpy_to_image(rgb, "rgb8")
        img.header.stamp, img.header.frame_id = seconds_to_stamp(stamp), "camera_color_optical_frame"
        color_pub.publish(img)
        assert spin_until(executor, lambda: any(lb.get("stamp") == pytest.approx(stamp) for lb in labels), timeout=10)
        assert spin_until(executor, lambda: any(abs(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec - stamp) < 1e-6 for m in masks), timeout=5)
        msg = next(m for m in masks if abs(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec - stamp) < 1e-6)
        return np.frombuffer(msg.data, np.uint8).reshape(H, W), next(lb for lb in labels if lb.get("stamp") == pytest.approx(stamp))

    mask, label = segment("the red ball", 10.0)  # the square is a "red cube" to this verifier
    assert not mask.any()
    assert label["source"] == "rejected" and label["score"] == 0.0 and label["area"] == 0 and label["bbox"] is None
    assert label["rejected"] == "the mask shows a red cube, not a red ball (match 0.00)" and label["rejected_area"] == 12 * 14
    assert label["verifier"]["accepted"] is False and label["target"] is None and "verifier rejected" in label["target_reason"]

    mask, label = segment("the red cube", 11.0)
    assert (mask[8:20, 10:24] == 255).all() and (mask == 255).sum() == 12 * 14
    assert label["source"] == "detected" and label["area"] == 12 * 14 and "rejected" not in label
    assert label["verifier"]["accepted"] is True and label["verifier"]["shape"] == "cube"

    node.trigger_deactivate()
    node.trigger_cleanup()
    assert node._segmenter is None and not inner.closed  # an injected segmenter is the caller's to close


def test_a_verifier_that_cannot_load_fails_configure_with_the_reason(session, tmp_path):
    from rclpy.parameter import Parameter

    from vlm_agent.nodes.segmenter import SegmenterNode

    context, executor = session
    node = SegmenterNode(segmenter=SquareSegmenter(), context=context, namespace=NS + "_bad",
                         parameter_overrides=[Parameter("verifier_model_dir", value=str(tmp_path / "nothing"))])
    executor.add_node(node)
    node.trigger_configure()
    assert node.lifecycle_state == "unconfigured"
    assert "could not load the attribute verifier" in node._transition_error and "nothing" in node._transition_error
    assert "FileNotFoundError" in node._transition_error and node._segmenter is None


def test_the_oracle_mirror_built_on_the_worker_is_wrapped(session, red_cube_dir):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo

    from vlm_agent.evaluation.oracle_segmenter import OracleSegmenter
    from vlm_agent.nodes.segmenter import SegmenterNode
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.skills.verification import VerifiedSegmenter

    context, executor = session
    episode_id = make_episodes("seg", "val", 1, seed=0)[0].episode_id
    node = SegmenterNode(context=context, namespace=NS + "_oracle", parameter_overrides=[
        Parameter("backend", value="oracle"), Parameter("oracle_episode_id", value=episode_id),
        Parameter("verifier_model_dir", value=red_cube_dir)])
    executor.add_node(node)
    node.trigger_configure()
    assert node.lifecycle_state == "inactive" and node._segmenter is None and node._verifier is not None
    info = CameraInfo(width=W, height=H)
    info.k = [30.0, 0.0, W / 2, 0.0, 30.0, H / 2, 0.0, 0.0, 1.0]
    node._color_info = info  # the camera's size: the mirror is built on the worker once it is known
    assert spin_until(executor, lambda: getattr(node._segmenter, "episode", None) is not None, timeout=20)
    seg = node._segmenter
    assert isinstance(seg, VerifiedSegmenter) and isinstance(seg.inner, OracleSegmenter) and seg.verifier is node._verifier
    # The mirror's GL context belongs to the worker thread: cleanup closes it there (EGL refuses a
    # close from the executor's thread), through the wrapper. Record the thread it ran on.
    import threading

    real_close, closed_on = seg.inner.close, []
    seg.inner.close = lambda: (closed_on.append(threading.current_thread().name), real_close())
    node.trigger_cleanup()
    assert node._segmenter is None and len(closed_on) == 1  # the node's own mirror is closed through the wrapper
    assert closed_on[0] != threading.current_thread().name  # on the worker, not the executor's thread
    assert node.lifecycle_state == "unconfigured"  # the close did not fail the transition
