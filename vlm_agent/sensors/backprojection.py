"""Where a segmented object is in 3D: mask + depth + pinhole intrinsics -> a point in the optical frame.

Pixel (u, v) (column, row; integer coordinates are pixel centres, as `CameraIntrinsics` uses them)
with depth z metres along the optical axis back-projects to
    x = (u - cx) * z / fx,   y = (v - cy) * z / fy,   z
in the camera's optical frame (REP-103 `_optical`: x right, y down, z forward), e.g.
`camera_color_optical_frame`.

The object's centroid is the mean of its mask pixels' points, after dropping pixels without a valid
depth (NaN, inf, <= 0, outside [min_depth_m, max_depth_m]) and pixels whose depth is more than
`outlier_m` from the mask's median depth: a mask edge that bleeds onto the wall behind the object
would otherwise pull the centroid metres back. The result is the centroid of the *visible surface*:
for a sphere of radius r seen head-on it lies about r/2 in front of the true centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlm_agent.sensors.camera_model import CameraIntrinsics


def pixel_to_point(u: float, v: float, depth_m: float, intrinsics: CameraIntrinsics) -> tuple[float, float, float]:
    """One pixel (u column, v row) at `depth_m` -> (x, y, z) metres in the optical frame."""
    z = float(depth_m)
    if not math.isfinite(z) or z <= 0:
        raise ValueError(f"depth must be a positive finite number of metres, got {depth_m!r}")
    return ((u - intrinsics.cx) * z / intrinsics.fx, (v - intrinsics.cy) * z / intrinsics.fy, z)


@dataclass(frozen=True)
class MaskPoint:
    """A mask's 3D centroid. point (x, y, z) m in the optical frame; n_points: pixels used;
    valid_fraction: of the mask's pixels, those with a usable depth; depth_median_m."""

    point: tuple[float, float, float]
    n_points: int
    valid_fraction: float
    depth_median_m: float


def resize_mask_nearest(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to (H, W) by nearest neighbour on pixel centres (a colour mask onto a
    depth image of another resolution covering the same field of view)."""
    m = np.asarray(mask, dtype=bool)
    h, w = int(size_hw[0]), int(size_hw[1])
    if m.shape == (h, w):
        return m
    rows = np.minimum(((np.arange(h) + 0.5) * m.shape[0] / h).astype(np.int64), m.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * m.shape[1] / w).astype(np.int64), m.shape[1] - 1)
    return m[rows[:, None], cols[None, :]]


def mask_centroid_3d(mask: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics, outlier_m: float = 0.25, min_points: int = 3,
                     min_depth_m: float = 0.05, max_depth_m: float = 20.0) -> MaskPoint | None:
    """The 3D centroid of a mask's pixels (see the module docstring), or None when fewer than
    `min_points` pixels have a usable depth.

    mask: (H, W) bool; depth_m: (H, W) float metres on the same pixel grid as `intrinsics`
    (an aligned depth image); a mask of another size is resized (nearest) to the depth grid.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth shape {depth.shape} != intrinsics {(intrinsics.height, intrinsics.width)}")
    m = resize_mask_nearest(mask, depth.shape)
    total = int(m.sum())
    if total == 0:
        return None
    v, u = np.nonzero(m)
    z = depth[v, u]
    ok = np.isfinite(z) & (z > 0) & (z >= min_depth_m) & (z <= max_depth_m)
    if int(ok.sum()) < min_points:
        return None
    med = float(np.median(z[ok]))
    ok &= np.abs(z - med) <= outlier_m
    n = int(ok.sum())
    if n < min_points:
        return None
    u, v, z = u[ok].astype(np.float64), v[ok].astype(np.float64), z[ok]
    x = (u - intrinsics.cx) * z / intrinsics.fx
    y = (v - intrinsics.cy) * z / intrinsics.fy
    return MaskPoint((float(x.mean()), float(y.mean()), float(z.mean())), n, n / total, med)


__all__ = ["pixel_to_point", "mask_centroid_3d", "MaskPoint", "resize_mask_nearest"]
