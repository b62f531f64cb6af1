"""A tiny depth renderer for the obstacle tests: a floor and axis-aligned boxes, ray-cast in base_link.

Written independently of `vlm_agent.safety.obstacle` (its own camera axes, no shared transform code), so a
wrong rotation or back-projection there cannot cancel out here.
"""
from __future__ import annotations

import math

import numpy as np


def axes_from_mujoco_xyaxes(xyaxes: tuple[float, ...]) -> np.ndarray:
    """(3, 3) columns = optical x (right), y (down), z (forward) in the body frame, from a MuJoCo camera's
    `xyaxes` (camera x right, camera y up, looking along camera -z)."""
    x = np.asarray(xyaxes[:3], float)
    y = np.asarray(xyaxes[3:], float)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    z_cam = np.cross(x, y)
    return np.stack([x, -y, -z_cam], axis=1)


def level_axes(yaw_deg: float = 0.0) -> np.ndarray:
    """Optical axes of a level camera looking along base +x rotated by yaw (counter-clockwise)."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    forward, left = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    return np.stack([-left, [0.0, 0.0, -1.0], forward], axis=1)


def render_depth(
    width: int, height: int, fx: float, fy: float, cx: float, cy: float,
    origin, axes: np.ndarray, boxes=(), floor: bool = True, max_range_m: float = 10.0,
) -> np.ndarray:
    """(H, W) float32 depth along the optical axis (metres), +inf where nothing is hit within range.

    boxes: ((xmin, ymin, zmin), (xmax, ymax, zmax)) in base_link, metres. The floor is z = 0.
    """
    v, u = np.indices((height, width), dtype=np.float64)
    d_opt = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    d = d_opt @ np.asarray(axes, float).T  # (H, W, 3) base-frame direction; optical z component is 1
    o = np.asarray(origin, float)
    best = np.full((height, width), np.inf)
    if floor:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = np.where(d[..., 2] < 0, -o[2] / d[..., 2], np.inf)
        best = np.minimum(best, t)
    for lo, hi in boxes:
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t1 = (lo - o) / d
            t2 = (hi - o) / d
        tmin = np.nanmax(np.minimum(t1, t2), axis=-1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (tmax >= np.maximum(tmin, 0.0)) & (tmin > 0)
        best = np.where(hit, np.minimum(best, tmin), best)
    # t is the depth: the direction's optical z component is 1. Out of range is +inf (REP-117).
    ray_len = np.linalg.norm(d, axis=-1)
    best[best * ray_len > max_range_m] = np.inf
    return best.astype(np.float32)
