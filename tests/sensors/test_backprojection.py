"""Depth back-projection of a mask: hand-computed pixel -> 3D cases, robustness (NaN, outliers,
resizing), and the simulator's ground truth: the centroid of a rendered object's mask lies within
10 cm of the object's true centre."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_agent.sensors.backprojection import (
    mask_centroid_3d, mask_object_centre_3d, pixel_to_point, resize_mask_nearest, visible_surface_centre,
)
from vlm_agent.sensors.camera_model import CameraIntrinsics

K = CameraIntrinsics(width=101, height=81, fx=100.0, fy=200.0, cx=50.0, cy=40.0)


def test_pixel_to_point_by_hand():
    assert pixel_to_point(50, 40, 2.0, K) == (0.0, 0.0, 2.0)           # the principal point: on the axis
    assert pixel_to_point(70, 40, 2.0, K) == pytest.approx((0.4, 0.0, 2.0))   # 20 px right * 2 m / fx 100
    assert pixel_to_point(50, 10, 1.0, K) == pytest.approx((0.0, -0.15, 1.0))  # 30 px up * 1 m / fy 200 (y down)
    assert pixel_to_point(0, 80, 0.5, K) == pytest.approx((-0.25, 0.1, 0.5))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            pixel_to_point(1, 1, bad, K)


def test_centroid_of_a_square_at_one_depth():
    depth = np.full((81, 101), 3.0)
    mask = np.zeros((81, 101), bool)
    mask[50:52, 60:62] = True  # u 60..61, v 50..51: mean pixel (60.5, 50.5)
    p = mask_centroid_3d(mask, depth, K, min_points=4)
    assert p.point == pytest.approx((10.5 * 3 / 100, 10.5 * 3 / 200, 3.0))
    assert p.n_points == 4 and p.valid_fraction == 1.0 and p.depth_median_m == 3.0


def test_invalid_and_outlying_depths_are_ignored():
    depth = np.full((81, 101), 2.0)
    mask = np.zeros((81, 101), bool)
    mask[40, 50:56] = True                       # 6 px at (50..55, 40)
    depth[40, 50] = np.nan                       # no return
    depth[40, 51] = 0.0                          # 16UC1 zero = no return
    depth[40, 52] = 7.0                          # the wall behind the object's edge
    p = mask_centroid_3d(mask, depth, K, outlier_m=0.25, min_points=3)
    assert p.n_points == 3 and p.valid_fraction == pytest.approx(0.5)
    assert p.point == pytest.approx(((54 - 50) * 2 / 100, 0.0, 2.0))  # mean u of 53, 54, 55
    assert mask_centroid_3d(mask, np.full((81, 101), np.nan), K) is None
    assert mask_centroid_3d(np.zeros((81, 101), bool), depth, K) is None
    assert mask_centroid_3d(mask, depth, K, min_points=4) is None
    with pytest.raises(ValueError, match="intrinsics"):
        mask_centroid_3d(mask, np.ones((10, 10)), K)


def test_a_colour_mask_of_another_resolution_maps_onto_the_depth_grid():
    m = np.zeros((4, 4), bool)
    m[1:3, 2:4] = True
    big = resize_mask_nearest(m, (8, 8))
    assert big.sum() == 16 and big[2:6, 4:8].all()
    assert resize_mask_nearest(big, (4, 4)).tolist() == m.tolist()
    depth = np.full((81, 101), 1.0)
    coarse = np.zeros((9, 11), bool)
    coarse[4, 5] = True  # the centre cell of a 9x11 grid -> pixels around (50, 40)
    p = mask_centroid_3d(coarse, depth, K)
    assert abs(p.point[0]) < 0.05 and abs(p.point[1]) < 0.03


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_rendered_object_centroid_is_within_10_cm_of_the_truth(index):
    """The simulator's ground-truth mask and depth, back-projected and taken to the world frame with
    the camera's pose, land within 10 cm of the object's centre (a visible-surface centroid is at
    most about one object radius in front of the centre)."""
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    ep = make_episodes("seg", "val", 4, seed=7)[index]
    env = NavEnv(SimConfig(width=128, height=96))
    try:
        obs = env.reset(ep)
        mask = env.object_mask(ep.goal_object)
        p = mask_centroid_3d(mask, obs.depth, env.camera_intrinsics())
        assert p is not None and mask.sum() > 10
        pos, rot = env.camera_optical_pose()
        world = pos + rot @ np.asarray(p.point)
        truth = np.asarray(env.object_position(ep.goal_object))
        assert np.linalg.norm(world - truth) < 0.10, (world, truth)
        assert math.hypot(*(world - pos)[:2]) > 1.0  # the object is metres away, not at the camera
        # the centre estimated from the visible surface (odom's z is up): within 3 cm, nearer than the centroid
        c = mask_object_centre_3d(mask, obs.depth, env.camera_intrinsics(), rot)
        centre = pos + rot @ np.asarray(c.point)
        assert np.linalg.norm(centre - truth) < 0.03 and np.linalg.norm(centre - truth) < np.linalg.norm(world - truth), (centre, truth)
        assert c.n_points == p.n_points
    finally:
        env.close()


def _cube_surface(centre, half, eye, step=0.004):
    """Points of an axis-aligned cube's faces that face `eye` (z up)."""
    pts = []
    g = np.arange(-half, half + 1e-9, step)
    a, b = np.meshgrid(g, g)
    a, b = a.ravel(), b.ravel()
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            if (np.asarray(eye) - (np.asarray(centre) + normal * half)) @ normal <= 0:
                continue  # faces away from the eye
            face = np.zeros((len(a), 3))
            others = [k for k in range(3) if k != axis]
            face[:, axis] = sign * half
            face[:, others[0]], face[:, others[1]] = a, b
            pts.append(face + np.asarray(centre))
    return np.concatenate(pts)


@pytest.mark.parametrize("yaw_deg", [0.0, 30.0, 45.0])
def test_visible_surface_centre_of_a_cube_seen_from_above_and_ahead(yaw_deg):
    eye = np.array([0.0, 0.0, 0.95])
    centre = np.array([1.5, 0.3, 0.08])
    c, s_ = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rot = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    pts = _cube_surface(np.zeros(3), 0.08, rot.T @ (eye - centre)) @ rot.T + centre  # the faces the eye sees
    surface = pts
    centroid = surface.mean(axis=0)
    est = np.asarray(visible_surface_centre(surface, eye))
    assert np.linalg.norm(centroid - centre) > 0.03  # the surface centroid is off ...
    assert np.linalg.norm(est - centre) < 0.02, (est, centre)  # ... the estimate is not
    # only the top in view (cut off below): half the width before the far edge, half the width below the top
    top = pts[pts[:, 2] > 0.155]
    est = np.asarray(visible_surface_centre(top, eye, cut_below=True))
    assert np.linalg.norm(est[:2] - centre[:2]) < 0.03 and abs(est[2] - centre[2]) < 0.03, (est, centre)
    with pytest.raises(ValueError):
        visible_surface_centre(np.zeros((0, 3)), eye)
    assert visible_surface_centre(np.array([[0.0, 0.0, 0.0]]), np.array([0.0, 0.0, 1.0])) == (0.0, 0.0, 0.0)  # straight below
