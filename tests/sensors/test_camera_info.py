"""CameraInfo <-> CameraIntrinsics, and the pinhole model itself."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_agent.sensors.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from vlm_agent.sensors.camera_model import CameraIntrinsics

pytest.importorskip("sensor_msgs.msg")


def test_round_trip_through_camera_info():
    intr = CameraIntrinsics(640, 480, 600.0, 610.0, 319.5, 239.5, distortion=[0.1, -0.2, 0.0, 0.0, 0.01])
    msg = intrinsics_to_camera_info(intr)
    assert list(msg.k) == [600.0, 0.0, 319.5, 0.0, 610.0, 239.5, 0.0, 0.0, 1.0]
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert camera_info_to_intrinsics(msg) == intr


def test_from_fov_matches_hand_computation():
    intr = CameraIntrinsics.from_fov(320, 240, 90.0)
    assert intr.fy == pytest.approx(120.0)  # 0.5 * 240 / tan(45 deg)
    assert intr.cx == pytest.approx(159.5)


def test_project_backproject_inverse():
    intr = CameraIntrinsics.from_fov(32, 24, 60.0)
    depth = np.full((24, 32), 2.0, np.float32)
    depth[0, 0] = 0.0
    points = intr.backproject(depth)
    assert np.isnan(points[0, 0]).all()
    uv = intr.project(points[5:7, 3:9].reshape(-1, 3))
    v, u = np.mgrid[5:7, 3:9]
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], axis=1), atol=1e-9)


@pytest.mark.parametrize(
    "k, match",
    [([0.0] * 9, "focal"), ([1.0] * 8, "9 values"), ([math.nan] + [1.0] * 8, "NaN")],
)
def test_uncalibrated_or_corrupt_camera_info_raises(k, match):
    msg = intrinsics_to_camera_info(CameraIntrinsics.from_fov(8, 8, 60.0))
    msg.k = k  # the message class does not check the fixed size on assignment; the converter must
    with pytest.raises(ValueError, match=match):
        camera_info_to_intrinsics(msg)


def test_intrinsics_validation():
    with pytest.raises(ValueError, match="width/height"):
        CameraIntrinsics(0, 10, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="focal"):
        CameraIntrinsics(10, 10, -1, 1, 0, 0)
    with pytest.raises(ValueError, match="fovy|vertical_fov"):
        CameraIntrinsics.from_fov(10, 10, 180.0)

