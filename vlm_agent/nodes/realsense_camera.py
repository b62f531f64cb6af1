"""realsense_camera: an Intel RealSense (or a recorded .bag/.db3) on the vlm_agent topic contract.

Publishes, all reliable (REP-2003 sensor publishers; best-effort subscribers match) with the same
stamp per frameset, on relative names (namespaces, `-r` remaps):
* `camera/color/image_raw` (sensor_msgs/Image rgb8, `camera_color_optical_frame`)
* `camera/color/camera_info`
* `camera/depth/image_rect_raw` (16UC1 millimetres; aligned to colour by default, then it has the
  colour image's size and frame id)
* `camera/depth/camera_info`

A managed (lifecycle) node: **configure** creates the publishers and the driver core
(`vlm_agent.sensors.realsense.RealSenseCamera`); **activate** starts its thread (librealsense waits
block), which connects, streams and reconnects with backoff when the device drops, never raising;
**deactivate** stops the thread; **cleanup** closes the device. State, counters and last error are
on `/diagnostics`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sensor_msgs.msg import CameraInfo, Image

from vlm_agent.nodes.base import SENSOR_PUB_QOS, ManagedAgentNode, run_node
from vlm_agent.sensors.camera_info import intrinsics_to_camera_info
from vlm_agent.sensors.frames import seconds_to_stamp
from vlm_agent.sensors.image_conversion import numpy_to_image
from vlm_agent.sensors.realsense import RealSenseCamera, RealSenseConfig

NODE_CLASS = "RealSenseCameraNode"


@dataclass
class RealSenseNodeConfig(RealSenseConfig):
    """The node's parameters: `RealSenseConfig` (see there for the camera fields)."""


COLOR_TOPIC = "camera/color/image_raw"
COLOR_INFO_TOPIC = "camera/color/camera_info"
DEPTH_TOPIC = "camera/depth/image_rect_raw"
DEPTH_INFO_TOPIC = "camera/depth/camera_info"


class RealSenseCameraNode(ManagedAgentNode):
    """Thin node over `RealSenseCamera`; `source_factory` (keyword, optional) replaces the device for tests."""

    def __init__(self, source_factory=None, **kwargs):
        super().__init__("realsense_camera", RealSenseNodeConfig, **kwargs)
        self._source_factory = source_factory
        self.camera = None
        self._pubs = []
        self._stop = threading.Event()
        self._thread = None

    # -- lifecycle ------------------------------------------------------------------------------
    def configure_node(self) -> None:
        self._color_pub = self.create_publisher(Image, COLOR_TOPIC, SENSOR_PUB_QOS)
        self._color_info_pub = self.create_publisher(CameraInfo, COLOR_INFO_TOPIC, SENSOR_PUB_QOS)
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, SENSOR_PUB_QOS)
        self._depth_info_pub = self.create_publisher(CameraInfo, DEPTH_INFO_TOPIC, SENSOR_PUB_QOS)
        self._pubs = [self._color_pub, self._color_info_pub, self._depth_pub, self._depth_info_pub]
        self.camera = RealSenseCamera(self.config, source_factory=self._source_factory, on_event=self._on_camera_event)

    def activate_node(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="realsense", daemon=True)
        self._thread.start()

    def deactivate_node(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._thread = None

    def cleanup_node(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None
        for pub in self._pubs:
            self.destroy_publisher(pub)
        self._pubs = []

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
        if self.camera is not None:
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
        if self.camera is None:
            return {}
        return {f"camera.{k}": str(v) for k, v in self.camera.stats().items()}

    def destroy_node(self):
        self.deactivate_node()
        if self.camera is not None:
            self.camera.close()
        return super().destroy_node()


def main(args=None):
    return run_node(RealSenseCameraNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
