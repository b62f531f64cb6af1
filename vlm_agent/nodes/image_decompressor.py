"""image_decompressor: `sensor_msgs/CompressedImage` (JPEG/PNG) -> `sensor_msgs/Image`.

For cameras or bags that only carry `camera/color/image_raw/compressed` (image_transport's
republisher is not available in the standalone install); publishes `camera/color/image_raw`
(reliable, REP-2003). Relative names: `-r camera/color/image_raw/compressed:=/other/compressed`. Malformed frames are dropped with a
counted, logged reason; the header (stamp, frame_id) is kept so downstream sync still works.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sensor_msgs.msg import CompressedImage, Image

from vlm_agent.config import ConfigBase, param
from vlm_agent.nodes.base import SENSOR_PUB_QOS, SENSOR_QOS, AgentNode, run_node
from vlm_agent.sensors.image_conversion import compressed_to_numpy, numpy_to_image

NODE_CLASS = "ImageDecompressorNode"


@dataclass
class ImageDecompressorConfig(ConfigBase):
    """Parameters of the image_decompressor node."""

    output_encoding: str = param("rgb8", "encoding of the published Image", choices=("rgb8", "bgr8", "mono8"))


INPUT_TOPIC = "camera/color/image_raw/compressed"
OUTPUT_TOPIC = "camera/color/image_raw"


class ImageDecompressorNode(AgentNode):
    def __init__(self, **kwargs):
        super().__init__("image_decompressor", ImageDecompressorConfig, **kwargs)
        self._pub = self.create_publisher(Image, OUTPUT_TOPIC, SENSOR_PUB_QOS)
        self.create_subscription(CompressedImage, INPUT_TOPIC, self._on_compressed, SENSOR_QOS)

    def _on_compressed(self, msg: CompressedImage) -> None:
        start = time.perf_counter()
        self.health.tick("input")
        try:
            array = compressed_to_numpy(msg, self.config.output_encoding)
            out = numpy_to_image(array, self.config.output_encoding, header=msg.header)
        except ValueError as exc:
            self.health.drop("malformed", str(exc))
            self.get_logger().warning(f"dropped compressed frame: {exc}", throttle_duration_sec=2.0)
            return
        self._pub.publish(out)
        self.health.tick("output")
        self.health.latency("decode", time.perf_counter() - start)


def main(args=None):
    return run_node(ImageDecompressorNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
