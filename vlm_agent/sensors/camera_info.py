"""`sensor_msgs/CameraInfo` <-> `CameraIntrinsics`."""
from __future__ import annotations

import math

from vlm_agent.sensors.camera_model import CameraIntrinsics


def camera_info_to_intrinsics(msg) -> CameraIntrinsics:
    """CameraInfo -> intrinsics from its K matrix; raises ValueError naming a bad field."""
    k = [float(v) for v in msg.k]
    if len(k) != 9:
        raise ValueError(f"k: expected 9 values, got {len(k)}")
    if not all(math.isfinite(v) for v in k):
        raise ValueError("k: contains NaN or inf")
    if k[0] <= 0 or k[4] <= 0:
        raise ValueError(f"k: focal lengths must be positive (fx={k[0]}, fy={k[4]}); is the camera calibrated?")
    return CameraIntrinsics(
        width=int(msg.width),
        height=int(msg.height),
        fx=k[0],
        fy=k[4],
        cx=k[2],
        cy=k[5],
        distortion_model=msg.distortion_model or "plumb_bob",
        distortion=list(msg.d),
        frame_id=msg.header.frame_id or "camera_color_optical_frame",
    )


def intrinsics_to_camera_info(intr: CameraIntrinsics, stamp=None):
    """Intrinsics -> CameraInfo with K, R = I and P = [K | 0] (a monocular, rectified camera)."""
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = intr.frame_id
    msg.width, msg.height = intr.width, intr.height
    msg.distortion_model = intr.distortion_model
    msg.d = list(intr.distortion)
    msg.k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
