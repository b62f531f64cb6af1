"""Message -> plain-Python converters for ingest: stamps, colour images (raw or compressed), odometry.

Like `image_conversion`, these read ROS messages by their fields (duck typing) and never import
rclpy, so the synchroniser, frame history and their tests stay ROS-free. Every inconsistency
raises `ValueError` naming the field so callers can count a `malformed` drop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlm_agent.sensors.image_conversion import compressed_to_numpy, depth_to_metres, image_to_rgb8


def stamp_to_seconds(stamp) -> float:
    """`builtin_interfaces/Time` -> float seconds; raises ValueError for an invalid nanosec field."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nanosec < 1_000_000_000:
        raise ValueError(f"header.stamp.nanosec: {nanosec} out of [0, 1e9)")
    return sec + nanosec * 1e-9


def is_compressed(msg) -> bool:
    """True for `sensor_msgs/CompressedImage` (it has `format`, not `encoding`)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def color_message_to_rgb(msg) -> np.ndarray:
    """`sensor_msgs/Image` (rgb8/bgr8/rgba8/bgra8/mono8) or `CompressedImage` (JPEG/PNG) -> (H, W, 3) uint8 RGB."""
    if is_compressed(msg):
        return compressed_to_numpy(msg, "rgb8")
    return image_to_rgb8(msg)


@dataclass(frozen=True)
class OdomState:
    """Planar robot state from `nav_msgs/Odometry` (REP-105 `odom` frame, REP-103 units).

    x, y: position in metres; yaw: heading in radians (CCW from +x); vx: forward speed m/s;
    wz: yaw rate rad/s; frame_id / child_frame_id as in the message.
    """

    stamp_s: float
    x: float
    y: float
    yaw: float
    vx: float
    wz: float
    frame_id: str = "odom"
    child_frame_id: str = "base_link"

    def as_array(self) -> np.ndarray:
        """(5,) float32 [x, y, yaw, vx, wz], the state vector the planners consume."""
        return np.array([self.x, self.y, self.yaw, self.vx, self.wz], dtype=np.float32)


def seconds_to_stamp(seconds: float):
    """Float seconds -> `builtin_interfaces/Time`.

    Rounds once to integer nanoseconds: splitting the float (int(s), round(frac * 1e9)) turns
    6.9999999997 into (6, 1e9), an invalid or, wrapped, a 1 s backwards stamp.
    """
    from builtin_interfaces.msg import Time

    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Heading (rotation about +z) of a unit quaternion, radians in (-pi, pi]."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def odometry_to_state(msg) -> OdomState:
    """`nav_msgs/Odometry` -> `OdomState`; raises ValueError for NaN/inf or a non-unit quaternion."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    v, w = msg.twist.twist.linear, msg.twist.twist.angular
    values = [p.x, p.y, q.x, q.y, q.z, q.w, v.x, w.z]
    if not all(math.isfinite(float(a)) for a in values):
        raise ValueError("odometry: pose or twist contains NaN or inf")
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if abs(norm - 1.0) > 1e-3:
        raise ValueError(f"pose.orientation: quaternion norm {norm:.4f} is not 1")
    return OdomState(
        stamp_s=stamp_to_seconds(msg.header.stamp),
        x=float(p.x),
        y=float(p.y),
        yaw=yaw_from_quaternion(q.x, q.y, q.z, q.w),
        vx=float(v.x),
        wz=float(w.z),
        frame_id=msg.header.frame_id or "odom",
        child_frame_id=msg.child_frame_id or "base_link",
    )


def depth_message_to_metres(msg) -> np.ndarray:
    """Depth Image (16UC1 mm or 32FC1 m) -> (H, W) float32 metres, NaN where there is no return."""
    return depth_to_metres(msg)
