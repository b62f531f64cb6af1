"""realsense_camera: an Intel RealSense (or a recorded .bag/.db3) on the vlm_agent topic contract.

Publishes, all on SENSOR_QOS with the same stamp per frameset:
* `/camera/color/image_raw` (sensor_msgs/Image rgb8, `camera_color_optical_frame`)
* `/camera/color/camera_info`
* `/camera/depth/image_rect_raw` (16UC1 millimetres; aligned to colour by default, then it has the
  colour image's size and frame id)
* `/camera/depth/camera_info`

The driver core (`vlm_agent.sensors.realsense.RealSenseCamera`) runs on a thread of its own
(librealsense waits block); it reconnects with backoff when the device drops and never raises.
Its state, counters and last error are on `/vlm_agent/status`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sensor_msgs.msg import CameraInfo, Image

from vlm_agent.config import param
from vlm_agent.nodes.base import SENSOR_QOS, AgentNode, run_node
from vlm_agent.sensors.camera_info import intrinsics_to_camera_info
from vlm_agent.sensors.frames import seconds_to_stamp
from vlm_agent.sensors.image_conversion import numpy_to_image
from vlm_agent.sensors.realsense import RealSenseCamera, RealSenseConfig

NODE_CLASS = "RealSenseCameraNode"


@dataclass
class RealSenseNodeConfig(RealSenseConfig):
    """RealSenseConfig plus the topic names (see `RealSenseConfig` for the camera fields)."""

    color_topic: str = param("/camera/color/image_raw", "colour Image topic (rgb8)", read_only=True)
    color_info_topic: str = param("/camera/color/camera_info", "colour CameraInfo topic", read_only=True)
    depth_topic: str = param("/camera/depth/image_rect_raw", "depth Image topic (16UC1 mm)", read_only=True)
    depth_info_topic: str = param("/camera/depth/camera_info", "depth CameraInfo topic", read_only=True)



class RealSenseCameraNode(AgentNode):
    """Thin node over `RealSenseCamera`; `source_factory` (keyword, optional) replaces the device for tests."""

    def __init__(self, source_factory=None, **kwargs):
        super().__init__("realsense_camera", RealSenseNodeConfig, **kwargs)
        c = self.config
        self._color_pub = self.create_publisher(Image, c.color_topic, SENSOR_QOS)
        self._color_info_pub = self.create_publisher(CameraInfo, c.color_info_topic, SENSOR_QOS)
        self._depth_pub = self.create_publisher(Image, c.depth_topic, SENSOR_QOS)
        self._depth_info_pub = self.create_publisher(CameraInfo, c.depth_info_topic, SENSOR_QOS)
        self.camera = RealSenseCamera(c, source_factory=source_factory, on_event=self._on_camera_event)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="realsense", daemon=True)
        self._thread.start()

    def _on_camera_event(self, level: str, message: str) -> None:
        # One call site per severity: rclpy's logger refuses a severity change at the same call site.
        logger = self.get_logger()
        if level == "error":
            logger.error(message)
        elif level == "warning":
            logger.warning(message)
        else:
            logger.info(message)

    def on_config_changed(self, old, new) -> None:
        # Filters and alignment are rebuilt by the core when their settings change.
        self.camera.config = new

    def _loop(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            frame = self.camera.poll(0.1)
            self._update_level()  # cheap; keeps the status message's reason current while reconnecting
            if frame is None:
                continue
            start = time.perf_counter()
            try:
                self._publish(frame)
            except Exception as exc:  # noqa: BLE001 (a publish during shutdown must not kill the thread loudly)
                if self._stop.is_set() or not self.context.ok():
                    return
                self.health.drop("publish_failed", str(exc))
                self.get_logger().warning(f"publish failed: {exc}", throttle_duration_sec=2.0)
                continue
            self.health.tick("frames")
            self.health.latency("publish", time.perf_counter() - start)

    def _publish(self, frame) -> None:
        # Host-time frames take the node clock so that use_sim_time and playback line up with the graph.
        stamp = self.get_clock().now().to_msg() if frame.stamp_s == frame.host_stamp_s else seconds_to_stamp(frame.stamp_s)
        color = numpy_to_image(frame.color, "rgb8")
        color.header.stamp, color.header.frame_id = stamp, frame.color_intrinsics.frame_id
        depth = numpy_to_image(frame.depth_mm, "16UC1")
        depth.header.stamp, depth.header.frame_id = stamp, frame.depth_intrinsics.frame_id
        self._color_pub.publish(color)
        self._color_info_pub.publish(intrinsics_to_camera_info(frame.color_intrinsics, stamp))
        self._depth_pub.publish(depth)
        self._depth_info_pub.publish(intrinsics_to_camera_info(frame.depth_intrinsics, stamp))

    def _update_level(self) -> None:
        state, error = self.camera.state, self.camera.last_error
        if state == "streaming":
            self.health.set_level(self.health.OK, "streaming")
        elif state == "finished":
            self.health.set_level(self.health.WARN, "playback finished")
        else:
            self.health.set_level(self.health.ERROR, f"no camera: {error or 'connecting'}")

    def status_extra(self) -> dict[str, str]:
        return {f"camera.{k}": str(v) for k, v in self.camera.stats().items()}

    def destroy_node(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.camera.close()
        return super().destroy_node()


def main(args=None):
    return run_node(RealSenseCameraNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
