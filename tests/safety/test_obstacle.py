"""Obstacle stop in the base frame, with hand-computed geometry for two real mountings.

(a) The sim robot (sim/mujoco/robot.xml): camera 0.95 m above the floor, 7 cm behind the centre,
    pitched 20 degrees down, fovy 60 degrees, 320x240 as the ROS node renders it; footprint radius 0.20 m.
(b) A RealSense D435 depth stream (640x480, fx = fy = 383, cx = 320, cy = 240: typical factory values)
    level, 0.20 m high and 0.12 m ahead of the centre of a TurtleBot-class base of radius 0.17 m.

Scenes are rendered by tests/safety/depth_scene.py, which shares no transform code with the module.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.safety.depth_scene import axes_from_mujoco_xyaxes, level_axes, render_depth
from vlm_agent.safety.obstacle import (
    CameraMount,
    Footprint,
    ObstacleParams,
    ObstacleStop,
    approached_in_zone,
    depth_array_to_metres,
    rpy_matrix,
    sweep_poses,
)
from vlm_agent.sensors.camera_model import CameraIntrinsics

# -- (a) the sim robot --------------------------------------------------------------------------------
SIM_XYAXES = (0, -1, 0, 0.342, 0, 0.940)  # robot.xml, camera "egocentric"
SIM_ORIGIN = (-0.07, 0.0, 0.95)
SIM_INTR = CameraIntrinsics.from_fov(320, 240, 60.0)
SIM_MOUNT = CameraMount(-0.07, 0.0, 0.95, pitch=math.radians(20.0))
SIM_FOOTPRINT = Footprint(radius_m=0.20)

# -- (b) D435 on a TurtleBot-class base ---------------------------------------------------------------
D435_INTR = CameraIntrinsics(640, 480, 383.0, 383.0, 320.0, 240.0)
D435_ORIGIN = (0.12, 0.0, 0.20)
D435_MOUNT = CameraMount(0.12, 0.0, 0.20)
TB_FOOTPRINT = Footprint(radius_m=0.17)
TB_PARAMS = ObstacleParams(max_height_m=0.45)  # a 0.4 m tall robot


def sim_depth(boxes=(), floor=True):
    i = SIM_INTR
    return render_depth(i.width, i.height, i.fx, i.fy, i.cx, i.cy, SIM_ORIGIN, axes_from_mujoco_xyaxes(SIM_XYAXES), boxes, floor)


def d435_depth(boxes=(), floor=True):
    i = D435_INTR
    return render_depth(i.width, i.height, i.fx, i.fy, i.cx, i.cy, D435_ORIGIN, level_axes(), boxes, floor)


def sim_stop(depth, params=None):
    stop = ObstacleStop(SIM_INTR, SIM_MOUNT, SIM_FOOTPRINT, params or ObstacleParams())
    stop.update_depth(depth)
    return stop


def d435_stop(depth, params=TB_PARAMS):
    stop = ObstacleStop(D435_INTR, D435_MOUNT, TB_FOOTPRINT, params)
    stop.update_depth(depth)
    return stop


# -- frames -----------------------------------------------------------------------------------------
def test_sim_mount_matches_the_mujoco_camera_axes():
    rot, t = SIM_MOUNT.optical_to_base()
    # xyaxes in robot.xml are sin/cos of 20 degrees rounded to 3 digits.
    np.testing.assert_allclose(rot, axes_from_mujoco_xyaxes(SIM_XYAXES), atol=1e-3)
    np.testing.assert_allclose(t, SIM_ORIGIN)


def test_sim_principal_ray_meets_the_floor_where_trigonometry_says():
    # The optical axis points 20 degrees down from 0.95 m: the floor is 0.95 / sin(20 deg) = 2.778 m along
    # it, 0.95 / tan(20 deg) = 2.610 m ahead of the camera, i.e. x = 2.540 m in base_link.
    rot, t = SIM_MOUNT.optical_to_base()
    p = rot @ np.array([0.0, 0.0, 0.95 / math.sin(math.radians(20))]) + t
    np.testing.assert_allclose(p, [0.95 / math.tan(math.radians(20)) - 0.07, 0.0, 0.0], atol=1e-9)
    # Pixel (v=120, u=160) lies half a pixel below the principal point (119.5, 159.5): its ray
    # (0, 0.5/f, 1) drops by sin(20) + cos(20) * 0.5/f per metre of depth. The rendered depth agrees
    # (to the 3-digit rounding of robot.xml's xyaxes).
    f = SIM_INTR.fy
    expected = 0.95 / (math.sin(math.radians(20)) + math.cos(math.radians(20)) * 0.5 / f)
    assert sim_depth()[120, 160] == pytest.approx(expected, rel=1e-3)


def test_rpy_convention_is_urdf_fixed_axis():
    # yaw +90 deg: camera_link x (forward) points along base +y (left).
    np.testing.assert_allclose(rpy_matrix(0, 0, math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # pitch +20 deg tilts the forward axis down.
    fwd = rpy_matrix(0, math.radians(20), 0) @ [1, 0, 0]
    assert fwd[2] == pytest.approx(-math.sin(math.radians(20)))
    mount = CameraMount(0.1, -0.05, 0.3, roll=0.1, pitch=0.3, yaw=-0.4)
    back = CameraMount.from_optical_transform(*mount.optical_to_base())
    np.testing.assert_allclose([back.x, back.y, back.z, back.roll, back.pitch, back.yaw], [0.1, -0.05, 0.3, 0.1, 0.3, -0.4], atol=1e-12)


def test_floor_blind_distance_of_both_mountings():
    # Sim: the lowest ray is 20 + 30 = 50 degrees down; floor at 0.95 / tan(50 deg) = 0.797 m ahead of the
    # camera = 0.727 m ahead of the centre = 0.527 m ahead of the footprint (sampled rows land ~1.5 cm further).
    assert sim_stop(sim_depth()).floor_blind_distance_m == pytest.approx(0.527, abs=0.03)
    # D435: lowest ray atan(240 / 383) = 32.1 deg down from 0.20 m: floor 0.319 m ahead of the camera,
    # x = 0.439 m, 0.269 m ahead of the 0.17 m footprint.
    assert d435_stop(d435_depth()).floor_blind_distance_m == pytest.approx(0.269, abs=0.02)


# -- (a) sim robot scenes -------------------------------------------------------------------------------
BOX_AHEAD_SIM = ((0.50, -0.30, 0.0), (0.90, 0.30, 0.60))  # near face 0.30 m ahead of the footprint, 0.6 m tall


def test_sim_box_0_3_m_ahead_blocks_forward_and_reports_its_distance():
    stop = sim_stop(sim_depth([BOX_AHEAD_SIM]))
    for v in (0.05, 0.2, 0.5):  # even the slowest zone (0.35 m + 0.025 m) reaches 0.30 m
        d = stop.check(v, 0.0)
        assert d.blocked, (v, d)
        # Nearest seen point: the face at x = 0.5 near y = 0, hypot(0.5, y) - 0.2 = 0.30 m.
        assert d.distance_m == pytest.approx(0.30, abs=0.01)
        assert d.reason.startswith("blocked by obstacle at 0.30 m")
    assert not stop.check(0.0, 1.0).blocked  # a round base turning in place approaches nothing
    assert not stop.check(-0.2, 0.0).blocked  # reversing away


def test_sim_wall_2_m_away_is_clear_and_a_near_wall_blocks_only_at_speed():
    assert not sim_stop(sim_depth([((2.0, -3.0, 0.0), (2.1, 3.0, 1.6))])).check(0.3, 0.0).blocked
    # Wall face at x = 0.70: 0.50 m from the footprint. Zone = 0.35 m + v * 0.5 s:
    # 0.40 m at 0.1 m/s (clear), 0.60 m at 0.5 m/s (blocked).
    stop = sim_stop(sim_depth([((0.70, -3.0, 0.0), (0.8, 3.0, 1.6))]))
    slow, fast = stop.check(0.1, 0.0), stop.check(0.5, 0.0)
    assert not slow.blocked and slow.zone_length_m == pytest.approx(0.40)
    assert fast.blocked and fast.zone_length_m == pytest.approx(0.60)
    assert fast.distance_m == pytest.approx(0.50, abs=0.01)


def test_sim_floor_is_never_an_obstacle_even_with_centimetre_noise():
    rng = np.random.default_rng(0)
    depth = sim_depth()
    noisy = depth * (1.0 + rng.normal(0.0, 0.005, depth.shape)).astype(np.float32)  # 0.5% range noise
    stop = sim_stop(noisy)
    for v, w in ((0.5, 0.0), (0.2, 1.0), (0.2, -1.0), (0.0, 1.5)):
        d = stop.check(v, w)
        assert not d.blocked and d.points == 0, (v, w, d)


def test_sim_table_top_blocks_and_is_ignored_above_the_ceiling_height():
    # A table top at 0.70-0.75 m from 0.40 m ahead: its front face (x = 0.40 m) is seen at heights above
    # 0.95 - 0.47 * tan(50 deg) = 0.39 m. The 1.0 m tall sim robot cannot pass under it: blocked.
    table = ((0.40, -0.6, 0.70), (1.2, 0.6, 0.75))
    d = sim_stop(sim_depth([table])).check(0.5, 0.0)
    assert d.blocked and d.distance_m == pytest.approx(0.20, abs=0.01)
    # For a robot shorter than 0.65 m the same table top is an overhang above the ceiling height: ignored.
    assert not sim_stop(sim_depth([table]), ObstacleParams(max_height_m=0.65)).check(0.5, 0.0).blocked


def test_sim_low_object_inside_the_blind_band_is_not_seen_but_a_tall_one_is():
    # Documents the limit in the module docstring: at x = 0.40 m (0.20 m from the footprint) the sim camera
    # sees only heights above 0.95 - (0.40 + 0.07) * tan(50 deg) = 0.39 m, and the top of a 0.15 m box
    # ending at x = 0.55 m lies atan(0.80 / 0.62) = 52 deg down, below the lowest ray (50 deg).
    low = ((0.40, -0.2, 0.0), (0.55, 0.2, 0.15))
    high = ((0.40, -0.2, 0.0), (0.55, 0.2, 0.45))
    assert not sim_stop(sim_depth([low])).check(0.1, 0.0).blocked
    assert sim_stop(sim_depth([high])).check(0.1, 0.0).blocked


# -- (b) D435 on a TurtleBot-class base -------------------------------------------------------------------
def test_d435_box_ahead_blocks_a_wall_far_away_does_not():
    box = ((0.47, -0.15, 0.0), (0.7, 0.15, 0.3))  # 0.30 m ahead of the 0.17 m footprint
    d = d435_stop(d435_depth([box])).check(0.2, 0.0)
    assert d.blocked and d.distance_m == pytest.approx(0.30, abs=0.01)
    wall = ((2.0, -3.0, 0.0), (2.1, 3.0, 1.0))
    assert not d435_stop(d435_depth([wall])).check(0.2, 0.0).blocked


def test_d435_shelf_above_the_robot_is_ignored_but_a_lower_ceiling_limit_sees_it():
    shelf = ((0.3, -0.5, 0.48), (1.0, 0.5, 0.52))  # the robot (0.4 m) passes under it
    assert not d435_stop(d435_depth([shelf])).check(0.3, 0.0).blocked
    assert d435_stop(d435_depth([shelf]), ObstacleParams(max_height_m=0.6)).check(0.3, 0.0).blocked


def test_d435_object_inside_the_minimum_range_blanks_the_view_and_blocks():
    # A box 8 cm in front of the lens fills ~90% of the image; the D435 returns 0 closer than ~0.17 m.
    box = ((0.20, -0.4, 0.0), (0.5, 0.4, 0.45))
    depth = d435_depth([box])
    raw_mm = np.where(np.isfinite(depth) & (depth >= 0.17), np.round(depth * 1000.0), 0).astype(np.uint16)
    assert np.mean(raw_mm == 0) > 0.85
    d = d435_stop(depth_array_to_metres(raw_mm, "16UC1")).check(0.1, 0.0)
    assert d.blocked and "valid depth" in d.reason and d.valid_fraction < 0.5
    # Turning in place stays possible (the rule guards forward motion, where the camera looks).
    assert not d435_stop(depth_array_to_metres(raw_mm, "16UC1")).check(0.0, 1.0).blocked


def test_16uc1_millimetres_and_32fc1_metres_give_the_same_decision():
    box = ((0.47, -0.15, 0.0), (0.7, 0.15, 0.3))
    metres = d435_depth([box])
    mm = np.where(np.isfinite(metres), np.round(metres * 1000.0), 0).astype(np.uint16)
    a = d435_stop(depth_array_to_metres(metres, "32FC1")).check(0.2, 0.0)
    b = d435_stop(depth_array_to_metres(mm, "16UC1")).check(0.2, 0.0)
    assert a.blocked and b.blocked and a.distance_m == pytest.approx(b.distance_m, abs=0.002)
    assert depth_array_to_metres(np.array([[0, 1500]], np.uint16), "16UC1")[0, 1] == pytest.approx(1.5)
    assert np.isnan(depth_array_to_metres(np.array([[0, 1500]], np.uint16), "16UC1")[0, 0])
    conv = depth_array_to_metres(np.array([[-1.0, 0.0, np.inf, -np.inf, 2.0]], np.float32), "32FC1")
    assert np.isnan(conv[0, 0]) and np.isnan(conv[0, 1]) and conv[0, 2] == np.inf and conv[0, 3] == -np.inf
    with pytest.raises(ValueError, match="encoding"):
        depth_array_to_metres(mm, "rgb8")
    with pytest.raises(ValueError, match="uint16"):
        depth_array_to_metres(metres, "16UC1")


@pytest.mark.parametrize("bad", [np.nan, 0.0, -np.inf, np.inf, -1.0])
def test_an_all_invalid_frame_blocks_forward_but_not_turning_or_reversing(bad):
    stop = sim_stop(np.full((240, 320), bad, np.float32))
    d = stop.check(0.1, 0.0)
    assert d.blocked and "0% valid depth" in d.reason
    assert not stop.check(0.0, 1.0).blocked and not stop.check(-0.1, 0.0).blocked


def test_speckle_and_moderate_dropout_do_not_block_heavy_dropout_does():
    rng = np.random.default_rng(1)
    depth = sim_depth()
    speckle = depth.copy()
    speckle[rng.random(depth.shape) < 0.3] = np.nan  # 30% dropout
    speckle[100:102, 158:160] = 0.5  # a 2x2 speckle; at most one sampled point < min_points
    assert not sim_stop(speckle).check(0.3, 0.0).blocked
    heavy = depth.copy()
    heavy[rng.random(depth.shape) < 0.7] = np.nan
    assert sim_stop(heavy).check(0.3, 0.0).blocked


def test_no_frame_yet_and_non_finite_commands_block_and_shape_mismatch_raises():
    stop = ObstacleStop(SIM_INTR, SIM_MOUNT, SIM_FOOTPRINT)
    assert stop.check(0.1, 0.0).blocked and "no depth frame" in stop.check(0.1, 0.0).reason
    stop.update_depth(sim_depth())
    assert stop.check(math.nan, 0.0).blocked and stop.check(0.1, math.inf).blocked
    with pytest.raises(ValueError, match="CameraInfo"):
        stop.update_depth(np.ones((120, 160), np.float32))


def test_a_tiny_forward_speed_on_a_tight_circle_counts_as_turning_on_the_spot():
    stop = sim_stop(np.full((240, 320), np.nan, np.float32))
    assert not stop.check(0.02, 1.0).blocked  # footprint moves 2 * 0.02 / 1.0 = 4 cm < 5 cm
    assert stop.check(0.03, 1.0).blocked  # 6 cm: forward motion, and the camera is blind


def test_a_mount_that_cannot_see_ahead_blocks_forward():
    looking_back = CameraMount(0.0, 0.0, 0.5, pitch=math.radians(20), yaw=math.pi)
    stop = ObstacleStop(SIM_INTR, looking_back, SIM_FOOTPRINT)
    stop.update_depth(np.full((240, 320), 2.0, np.float32))
    d = stop.check(0.2, 0.0)
    assert d.blocked and "outside the camera's view" in d.reason


# -- the swept zone, pure geometry ---------------------------------------------------------------------
def test_zone_grows_with_speed():
    p = ObstacleParams(stop_distance_m=0.3, time_to_stop_s=0.5)
    for v, length in ((0.1, 0.35), (0.4, 0.5), (1.0, 0.8)):
        poses, got = sweep_poses(v, 0.0, SIM_FOOTPRINT, p)
        assert got == pytest.approx(length) and poses[-1, 0] == pytest.approx(length)


def test_turning_sweeps_a_square_footprints_corner_but_not_a_circle():
    square = Footprint(polygon=((0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2)))
    point = np.array([[0.26, 0.0]])  # 6 cm ahead of the front edge; the corner (0.283 m out) sweeps it
    params = ObstacleParams()
    poses, _ = sweep_poses(0.0, 1.0, square, params)
    assert approached_in_zone(point, poses, square)[0][0]
    poses, _ = sweep_poses(0.0, 1.0, SIM_FOOTPRINT, params)
    assert not approached_in_zone(point, poses, SIM_FOOTPRINT)[0][0]
    # Signed distance: inside negative, edge distance outside.
    np.testing.assert_allclose(square.signed_distance(np.array([[0.0, 0.0], [0.3, 0.0], [0.3, 0.3]])),
                               [-0.2, 0.1, math.hypot(0.1, 0.1)], atol=1e-12)


def test_an_arc_follows_its_path_not_a_box_straight_ahead():
    # v = 0.3 m/s, w = 1 rad/s: the centre moves on a 0.3 m circle about (0, 0.3); zone length 0.5 m
    # covers 0.5 / 0.3 = 95 degrees of it, reaching (0.3, 0.3) at 90 degrees.
    poses, length = sweep_poses(0.3, 1.0, SIM_FOOTPRINT, ObstacleParams())
    assert length == pytest.approx(0.5)
    pts = np.array([[0.3, 0.3], [0.6, 0.0]])
    in_arc, _ = approached_in_zone(pts, poses, SIM_FOOTPRINT)
    straight, _ = approached_in_zone(pts, sweep_poses(0.3, 0.0, SIM_FOOTPRINT, ObstacleParams())[0], SIM_FOOTPRINT)
    # (0.6, 0) is 0.67 - 0.3 = 0.37 m from the arc's centre line, 0.17 m outside the footprint's sweep.
    assert in_arc.tolist() == [True, False]
    assert straight.tolist() == [False, True]


def test_points_behind_or_inside_a_turning_round_base_do_not_block():
    poses, _ = sweep_poses(0.3, 0.0, SIM_FOOTPRINT, ObstacleParams())
    pts = np.array([[-0.25, 0.0], [-0.1, 0.0], [0.1, 0.0]])  # behind, inside-back, inside-front
    assert approached_in_zone(pts, poses, SIM_FOOTPRINT)[0].tolist() == [False, False, True]


# -- properties ---------------------------------------------------------------------------------------------
_SIM_FLOOR = sim_depth()


@settings(max_examples=40, deadline=None)
@given(
    dropout=st.floats(min_value=0.75, max_value=1.0),
    fill=st.sampled_from([np.nan, 0.0, -np.inf, np.inf, -3.0]),
    v=st.floats(min_value=0.04, max_value=0.5),
    w=st.floats(min_value=-1.5, max_value=1.5),
    seed=st.integers(0, 2**16),
)
def test_property_mostly_invalid_depth_never_lets_forward_motion_pass(dropout, fill, v, w, seed):
    # v >= 0.04 m/s with |w| <= 1.5 rad/s moves the footprint at least 2 v / |w| = 5.3 cm: forward motion.
    # (Slower on a tighter circle is turning on the spot, which a forward camera does not guard.)
    depth = _SIM_FLOOR.copy()
    depth[np.random.default_rng(seed).random(depth.shape) < dropout] = fill
    assert sim_stop(depth).check(v, w).blocked


@settings(max_examples=40, deadline=None)
@given(
    pitch_deg=st.floats(min_value=0.0, max_value=35.0),
    height=st.floats(min_value=0.15, max_value=0.5),
    v=st.floats(min_value=-0.5, max_value=0.5),
    w=st.floats(min_value=-1.5, max_value=1.5),
)
def test_property_an_empty_floor_never_blocks_any_mounting_or_command(pitch_deg, height, v, w):
    # Mountings that see the zone (a level camera higher than ~0.6 m does not see a 0.45 m ceiling band
    # near the robot and is blocked by design); the floor-hitting rays stay within 4 m, so rule 4 holds.
    p = math.radians(pitch_deg)
    axes = np.stack([[0.0, -1.0, 0.0], [-math.sin(p), 0.0, -math.cos(p)], [math.cos(p), 0.0, -math.sin(p)]], axis=1)
    i = D435_INTR
    depth = render_depth(i.width, i.height, i.fx, i.fy, i.cx, i.cy, (0.0, 0.0, height), axes)
    stop = ObstacleStop(i, CameraMount(0.0, 0.0, height, pitch=p), TB_FOOTPRINT, TB_PARAMS)
    stop.update_depth(depth)
    d = stop.check(v, w)
    assert not d.blocked, d
