"""Every generated scene loads and steps with noisy controls without MuJoCo warnings (as MuJoCo
Menagerie tests its models), and worlds are well formed: rooms connected, objects reachable."""
import math

import numpy as np
import pytest

import vlm_agent.sim  # noqa: F401
import mujoco

from vlm_agent.sim.geometry import CollisionModel, GridMap
from vlm_agent.sim.mjcf import world_to_mjcf
from vlm_agent.sim.world import COLOURS, ROBOT_RADIUS, SHAPES, generate_world

N_SEEDS = 200


def test_200_scenes_load_and_step_with_noisy_controls_without_warnings():
    rng = np.random.default_rng(0)
    sizes = set()
    for seed in range(N_SEEDS):
        # every third scene uses the manipulation layout (one room, one table)
        world = generate_world(seed) if seed % 3 else generate_world(seed, n_rooms=1, furniture_mode="one_table")
        sizes.add(len(world.rooms))
        model = mujoco.MjModel.from_xml_string(world_to_mjcf(world))
        data = mujoco.MjData(model)
        lo, hi = model.actuator_ctrlrange.T
        base = model.body_mocapid[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "base_link")]
        x, y, yaw = world.rooms[0].x_min + 1.0, world.rooms[0].y_min + 1.0, 0.0
        for step in range(60):
            data.ctrl[:] = np.clip(rng.uniform(lo, hi) + rng.normal(0, 0.1, size=lo.shape), lo, hi)
            yaw += rng.normal(0, 0.2)
            x += 0.02 * math.cos(yaw) + rng.normal(0, 0.005)
            y += 0.02 * math.sin(yaw) + rng.normal(0, 0.005)
            data.mocap_pos[base] = (x, y, 0.0)
            data.mocap_quat[base] = (math.cos(yaw / 2), 0, 0, math.sin(yaw / 2))
            mujoco.mj_step(model, data)
        warnings = {mujoco.mjtWarning(i).name: int(w.number) for i, w in enumerate(data.warning) if w.number}
        assert not warnings, f"seed {seed}: MuJoCo warnings {warnings}"
        assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel)), f"seed {seed}: state diverged"
    assert sizes == {1, 2, 3}


def test_episode_worlds_survive_a_json_round_trip():
    import json

    from vlm_agent.sim.episodes import Episode, make_episodes

    for ep in make_episodes("nav", "train", 3, seed=0) + make_episodes("manip", "val", 3, seed=0):
        again = Episode.from_dict(json.loads(ep.to_json()))
        assert world_to_mjcf(again.world()) == world_to_mjcf(ep.world())


@pytest.mark.parametrize("seed", range(0, 200, 25))
def test_world_structure(seed):
    world = generate_world(seed)
    assert 1 <= len(world.rooms) <= 3 and 3 <= len(world.objects) <= 8
    assert len(world.doors) == len(world.rooms) - 1
    for o in world.objects:
        assert o.colour in COLOURS and o.shape in SHAPES
    # every object can be approached to within 1 m from every room (doorways are passable)
    grid = GridMap(world)
    free = grid.clearance > ROBOT_RADIUS + 0.02
    cost = np.where(free, 1.0, np.inf)
    start = next(((i, j) for i, j in zip(*np.nonzero(free))))
    src = np.zeros_like(free)
    src[start] = True
    dist = grid.distance_field(src, cost)
    for room in world.rooms:
        cx, cy = (room.x_min + room.x_max) / 2, (room.y_min + room.y_max) / 2
        near = (np.hypot(grid.gx - cx, grid.gy - cy) < 1.5) & free
        assert np.isfinite(dist[near]).any(), f"room {room.index} unreachable"
    for o in world.objects:
        near = (np.hypot(grid.gx - o.pos[0], grid.gy - o.pos[1]) < 1.0) & free
        assert np.isfinite(dist[near]).any(), f"{o.name} unreachable"
    assert CollisionModel.from_world(world).clearance(*world.objects[0].pos[:2]) == 0.0


def test_lighting_and_floor_vary_by_seed_and_are_deterministic():
    a, b = generate_world(1), generate_world(2)
    assert a.lighting != b.lighting
    assert generate_world(1).lighting == a.lighting
    assert world_to_mjcf(generate_world(5)) == world_to_mjcf(generate_world(5))


def test_committed_default_scene_matches_generator_and_loads():
    from pathlib import Path

    from vlm_agent.sim.mjcf import default_scene_xml

    path = Path(__file__).resolve().parents[2] / "sim" / "mujoco" / "scene_default.xml"
    assert path.read_text() == default_scene_xml(), "stale: run python -m vlm_agent.sim.mjcf"
    model = mujoco.MjModel.from_xml_path(str(path))
    assert model.ncam == 1 and model.nu == 6
