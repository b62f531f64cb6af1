"""Second-process image publisher for transport tests.

Publishes `--count` deterministic 640x480 rgb8 frames (`frame_pattern(i)`) on `--topic` once a
subscriber has matched, then waits for SIGINT. `--qos sensor|reliable` chooses the QoS.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def frame_pattern(index: int, height: int = 480, width: int = 640) -> np.ndarray:
    """(H, W, 3) uint8 frame that differs at every pixel between indices (random, seeded by index)."""
    return np.random.default_rng(index).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", default="/camera/color/image_raw")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--qos", choices=("sensor", "reliable"), default="reliable")
    args = parser.parse_args()

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from vlm_agent.nodes.base import rclpy_session
    from vlm_agent.ros_env import configure_ros_environment
    from vlm_agent.sensors.image_conversion import numpy_to_image

    configure_ros_environment()
    qos = qos_profile_sensor_data if args.qos == "sensor" else QoSProfile(depth=args.count, reliability=ReliabilityPolicy.RELIABLE)
    frames = [frame_pattern(i) for i in range(args.count)]
    try:
        with rclpy_session():
            node = rclpy.create_node("test_image_publisher")
            pub = node.create_publisher(Image, args.topic, qos)
            while pub.get_subscription_count() == 0:
                rclpy.spin_once(node, timeout_sec=0.05)
            time.sleep(0.5)  # let the subscriber's side of discovery settle too
            for i, frame in enumerate(frames):
                msg = numpy_to_image(frame, "rgb8")
                msg.header.frame_id = str(i)
                msg.header.stamp = node.get_clock().now().to_msg()
                pub.publish(msg)
                time.sleep(1.0 / args.rate)
            print(f"published {len(frames)}", flush=True)
            try:
                rclpy.spin(node)
            except Exception:
                # The test's SIGINT can shut the context down between the print and spin(), which
                # then fails to build its executor (RCLError, seen once in a fresh clone): a normal end.
                if rclpy.ok():
                    raise
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
