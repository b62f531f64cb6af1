"""image_decompressor in a second process: PNG frames decode pixel-exact; garbage is dropped, not fatal."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ros_harness import NodeProcess, spin_until, wait_for_subscribers

pytestmark = pytest.mark.ros


def test_decodes_png_and_survives_garbage(ros_node, ros_executor):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image

    from vlm_agent.nodes.base import SENSOR_QOS
    from vlm_agent.sensors.image_conversion import image_to_numpy, numpy_to_compressed

    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    images, statuses = [], []
    ros_node.create_subscription(Image, "/camera/color/image_raw", lambda m: images.append(m), SENSOR_QOS)
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", statuses.append, 10)
    pub = ros_node.create_publisher(CompressedImage, "/camera/color/image_raw/compressed", SENSOR_QOS)

    with NodeProcess("vlm_agent.nodes.image_decompressor") as proc:
        assert wait_for_subscribers(pub), proc.output
        garbage = CompressedImage(format="jpeg")
        garbage.data = b"\xff\xd8 definitely not a jpeg"
        good = numpy_to_compressed(frame, "rgb8", fmt="png")
        good.header.frame_id = "camera_color_optical_frame"

        def publish_both():
            pub.publish(garbage)
            pub.publish(good)
            return bool(images)

        assert spin_until(ros_executor, publish_both, timeout=20), "no decoded image arrived"

        def dropped_reported():
            for m in statuses:
                for s in m.status:
                    values = {kv.key: kv.value for kv in s.values}
                    if s.name.endswith("image_decompressor") and int(values.get("dropped.malformed", 0)) > 0:
                        return True
            return False

        assert spin_until(ros_executor, dropped_reported, timeout=10)
        assert proc.alive(), proc.output
    assert proc.returncode == 0, proc.output
    out = images[0]
    assert out.encoding == "rgb8" and out.header.frame_id == "camera_color_optical_frame"
    np.testing.assert_array_equal(image_to_numpy(out), frame)
