"""Pinhole camera intrinsics, independent of ROS (the `CameraInfo` converter lives elsewhere)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CameraIntrinsics:
    """Pinhole intrinsics of an image of `width` x `height` pixels.

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (x right, y down; optical frame, REP-103 `_optical`).
        distortion_model: ROS name, "plumb_bob" (5 coeffs), "rational_polynomial" (8) or "equidistant" (4).
        distortion: distortion coefficients, empty means none.
        frame_id: the optical frame, e.g. `camera_color_optical_frame`.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    distortion: list[float] = field(default_factory=list)
    frame_id: str = "camera_color_optical_frame"

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"CameraIntrinsics: width/height must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"CameraIntrinsics: {name} must be finite, got {value}")
            setattr(self, name, value)
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"CameraIntrinsics: focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        self.distortion = [float(d) for d in self.distortion]
        if not all(math.isfinite(d) for d in self.distortion):
            raise ValueError("CameraIntrinsics: distortion coefficients must be finite")

    @classmethod
    def from_fov(cls, width: int, height: int, vertical_fov_deg: float, **kwargs) -> "CameraIntrinsics":
        """Square-pixel intrinsics for a vertical field of view in degrees (MuJoCo's `fovy`)."""
        if not 0.0 < vertical_fov_deg < 180.0:
            raise ValueError(f"vertical_fov_deg must be in (0, 180), got {vertical_fov_deg}")
        f = 0.5 * height / math.tan(math.radians(vertical_fov_deg) / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, **kwargs)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 (the field's name for it)
        """3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def project(self, points_optical: np.ndarray) -> np.ndarray:
        """Project (N, 3) points in the optical frame (metres, z forward) to (N, 2) pixels (u, v)."""
        p = np.asarray(points_optical, dtype=np.float64)
        return np.stack([self.fx * p[:, 0] / p[:, 2] + self.cx, self.fy * p[:, 1] / p[:, 2] + self.cy], axis=1)

    def backproject(self, depth_m: np.ndarray) -> np.ndarray:
        """Depth image (H, W) in metres -> (H, W, 3) points in the optical frame (NaN where depth <= 0)."""
        if depth_m.shape != (self.height, self.width):
            raise ValueError(f"depth shape {depth_m.shape} != intrinsics {(self.height, self.width)}")
        v, u = np.indices(depth_m.shape, dtype=np.float64)
        z = np.where(depth_m > 0, depth_m, np.nan).astype(np.float64)
        return np.stack([(u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z], axis=-1)
