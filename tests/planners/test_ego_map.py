"""The navigator's map memory: depth + odometry -> an egocentric free / obstacle / visited grid."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_agent.planners.ego_map import CHANNELS, EgoMap, EgoMapConfig, pack_maps, unpack_maps
from vlm_agent.sensors.camera_model import CameraIntrinsics

K = CameraIntrinsics.from_fov(64, 64, 60.0)


def _level_config(**kw):
    # A level camera 0.5 m up at base_link: a pixel row maps to a known height.
    base = dict(camera_pitch_rad=0.0, camera_height_m=0.5, camera_x_m=0.0, pixel_stride=1)
    base.update(kw)
    return EgoMapConfig(**base)


def _wall_depth(distance_m: float) -> np.ndarray:
    """A level camera facing a wall `distance_m` ahead: every pixel sees the wall (depth = distance)."""
    return np.full((64, 64), distance_m, np.float32)


def test_wall_ahead_is_obstacle_and_floor_before_it_free():
    m = EgoMap(_level_config(), K)
    m.update(_wall_depth(2.0), (0.0, 0.0, 0.0))
    ego = m.egocentric((0.0, 0.0, 0.0))
    assert ego.shape == (3, 32, 32) and ego.dtype == np.uint8
    centre = 16  # the robot sits between cells 15 and 16 (even size); ahead = smaller rows
    wall_row = centre - 1 - int(2.0 / 0.25)  # 2 m ahead at 0.25 m per cell
    obstacle_rows = np.nonzero(ego[1][:, centre])[0]
    assert obstacle_rows.size and abs(obstacle_rows.mean() - wall_row) <= 1.0
    free_rows = np.nonzero(ego[0][:, centre])[0]
    assert free_rows.min() > wall_row - 1 and free_rows.max() >= centre - 2  # free from the robot up to the wall
    assert ego[0][centre + 4:, :].sum() == 0  # nothing behind the robot was seen
    assert ego[2][centre - 1: centre + 1, centre - 1: centre + 1].all()  # where it stands is visited


def test_egocentric_view_rotates_with_the_robot():
    m = EgoMap(_level_config(), K)
    m.update(_wall_depth(2.0), (0.0, 0.0, 0.0))  # wall 2 m along +x
    ahead = m.egocentric((0.0, 0.0, 0.0))
    turned = m.egocentric((0.0, 0.0, math.pi / 2))  # facing +y: the wall is now on the right
    np.testing.assert_array_equal(np.rot90(ahead[1], k=-1), turned[1])


def test_translation_moves_the_map():
    m = EgoMap(_level_config(), K)
    m.update(_wall_depth(2.0), (0.0, 0.0, 0.0))
    before = m.egocentric((0.0, 0.0, 0.0))[1]
    after = m.egocentric((1.0, 0.0, 0.0))[1]  # 1 m closer = 4 cells
    rows_before, rows_after = np.nonzero(before.any(1))[0], np.nonzero(after.any(1))[0]
    assert rows_after.mean() - rows_before.mean() == pytest.approx(4.0, abs=0.6)


def test_far_and_invalid_depth_is_ignored():
    m = EgoMap(_level_config(max_range_m=3.0), K)
    d = _wall_depth(6.0)
    d[:, :10] = np.nan
    d[:, 10:20] = np.inf
    m.update(d, (0.0, 0.0, 0.0))
    ego = m.egocentric((0.0, 0.0, 0.0))
    assert ego[1].sum() == 0  # the wall is beyond range
    assert ego[0].sum() > 0  # the rays towards it are free up to the range


def test_floor_points_are_free_not_obstacles():
    cfg = _level_config(camera_pitch_rad=0.6, camera_height_m=1.0)
    m = EgoMap(cfg, K)
    # Depth of a flat floor seen by a camera pitched down: z such that the point's height is 0.
    v = np.arange(64) + 0.5
    yo_per_z = (v - K.cy) / K.fy
    cp, sp = math.cos(cfg.camera_pitch_rad), math.sin(cfg.camera_pitch_rad)
    z = cfg.camera_height_m / (sp + yo_per_z * cp)  # Z = h - z*sp - yo*cp = 0
    z = np.where(z > 0, z, np.inf).astype(np.float32)
    m.update(np.repeat(z[:, None], 64, axis=1), (0.0, 0.0, 0.0))
    ego = m.egocentric((0.0, 0.0, 0.0))
    assert ego[0].sum() > 20 and ego[1].sum() == 0


def test_bad_inputs():
    m = EgoMap(_level_config(), K)
    with pytest.raises(ValueError, match="finite"):
        m.update(_wall_depth(2.0), (float("nan"), 0.0, 0.0))
    with pytest.raises(ValueError, match="H, W"):
        m.update(np.zeros((4, 4, 3), np.float32), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="intrinsics"):
        EgoMap(_level_config()).update(_wall_depth(2.0), (0.0, 0.0, 0.0))
    assert not EgoMap(_level_config(), K).egocentric((0.0, 0.0, 0.0)).any()  # nothing before the first update
    m.update(None, (0.0, 0.0, 0.0))  # a visit without depth
    assert m.egocentric((0.0, 0.0, 0.0))[2].any() and not m.egocentric((0.0, 0.0, 0.0))[:2].any()


def test_pack_roundtrip():
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 2, (5, len(CHANNELS), 32, 32)).astype(np.uint8)
    packed = pack_maps(maps)
    assert packed.shape == (5, 3, 32, 4)
    np.testing.assert_array_equal(unpack_maps(packed, 32), maps)


def test_simulator_map_agrees_with_the_world_geometry():
    """In the simulator, what the map calls obstacle is at walls / furniture / objects, and what it
    calls free is mostly open floor (a ray over a table marks the table's cells free too)."""
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.sim.explorer import ExplorerExpert

    env = NavEnv(SimConfig(width=64, height=64))
    try:
        obs = env.reset(make_episode("nav", "val", 0, 3))
        expert = ExplorerExpert(env)
        m = EgoMap(EgoMapConfig(), env.camera_intrinsics())
        for _ in range(12):
            m.update(obs.depth, obs.pose)
            obs = env.step(expert.act(obs))
        grid = env.grid

        def clearance_of(channel):
            rows, cols = np.nonzero(m.grid[channel])
            half = m.config.world_cells / 2.0
            x = m.origin[0] + (cols + 0.5 - half) * m.config.world_resolution_m
            y = m.origin[1] + (rows + 0.5 - half) * m.config.world_resolution_m
            j = np.clip(((x - grid.x0) / grid.res).astype(int), 0, grid.nx - 1)
            i = np.clip(((y - grid.y0) / grid.res).astype(int), 0, grid.ny - 1)
            return grid.clearance[i, j]

        free, obstacle = clearance_of(0), clearance_of(1)
        assert len(free) > 500 and len(obstacle) > 50
        assert (obstacle <= 0.15).mean() > 0.95  # obstacles sit on occupied cells or their edge
        assert (free > 0.0).mean() > 0.85  # free floor is mostly away from anything occupied
    finally:
        env.close()
