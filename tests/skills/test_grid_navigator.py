"""GridNavigator: the approach on an occupancy grid (map_server's / the simulator's `map`) around
walls and furniture, then the straight final approach; OccupancyMap from OccupancyGrid fields."""
import math

import numpy as np
import pytest

from vlm_agent.skills.approach import NavTarget, StraightLineNavigator
from vlm_agent.skills.grid_navigator import GridNavigator, OccupancyMap


def _wall_map():
    """6 x 4 m at 5 cm: a wall across x = 3 m from y = 0 to y = 3 m (a gap above y = 3 m)."""
    occ = np.zeros((80, 120), bool)
    occ[:60, 58:62] = True
    occ[0, :] = occ[-1, :] = occ[:, 0] = occ[:, -1] = True  # the room's walls
    return OccupancyMap(occ, 0.05, (0.0, 0.0))


def _drive(nav, pose, target, steps=40):
    """Apply the plans kinematically until arrived; returns the poses visited."""
    poses = [pose]
    for _ in range(steps):
        prims = nav.plan(pose, target)
        if not prims:
            break
        x, y, yaw = pose
        for p in prims:
            if p.kind == "turn_left":
                yaw += math.radians(p.value)
            elif p.kind == "turn_right":
                yaw -= math.radians(p.value)
            elif p.kind == "forward":
                n = max(1, int(p.value / 2))
                for _ in range(n):
                    x += p.value / 100 / n * math.cos(yaw)
                    y += p.value / 100 / n * math.sin(yaw)
                    poses.append((x, y, yaw))
        pose = (x, y, yaw)
        poses.append(pose)
    return poses


def test_the_path_goes_round_the_wall_and_ends_at_the_standoff():
    grid = _wall_map()
    target = NavTarget("red cube", (5.0, 1.0, 0.08), 0.45)
    nav = GridNavigator(lambda: grid, robot_radius_m=0.2)
    start = (1.0, 1.0, 0.0)
    path = nav.path(grid, start, target)
    assert path and max(y for _, y in path) > 3.0  # through the gap, not through the wall
    poses = _drive(nav, start, target)
    assert target.near(poses[-1]) and abs(target.bearing_error(poses[-1])) < 0.06
    for x, y, _ in poses:  # never inside the wall or the room's walls
        cell = grid.cell(x, y)
        assert cell is not None and grid.clearance[cell] > 0.1, (x, y)
    straight = _drive(StraightLineNavigator(), start, target)
    assert any(grid.occupied[grid.cell(x, y)] for x, y, _ in straight)  # the map-free approach drives into it


def test_near_the_target_or_without_a_map_it_is_the_straight_approach():
    target = NavTarget("red cube", (2.0, 1.0, 0.08), 0.45)
    pose = (1.3, 1.0, 0.0)  # 0.7 m from the centre: within the standoff + far margin
    final = StraightLineNavigator()
    assert GridNavigator(lambda: _wall_map()).plan(pose, target) == final.plan(pose, target)
    far = (0.5, 2.0, 1.0)
    assert GridNavigator(lambda: None).plan(far, target) == final.plan(far, target)
    # no way there (the target walled in): the straight approach, the supervisor stops it at the wall
    occ = np.zeros((40, 40), bool)
    occ[10:30, 10] = occ[10:30, 30] = occ[10, 10:31] = occ[30, 10:31] = True
    boxed = OccupancyMap(occ, 0.1, (0.0, 0.0))
    inside = NavTarget("cube", (2.0, 2.0, 0.08), 0.3)
    nav = GridNavigator(lambda: boxed)
    assert nav.plan((0.5, 0.5, 0.0), inside) == final.plan((0.5, 0.5, 0.0), inside) and nav.last_path == []


def test_a_furniture_box_target_is_approached_to_its_edge():
    grid = _wall_map()
    table = NavTarget("table", (5.0, 1.5, 0.45), 0.24, box=((4.5, 1.0), (5.5, 2.0)))
    poses = _drive(GridNavigator(lambda: grid, robot_radius_m=0.2), (1.0, 1.0, 0.0), table)
    assert table.near(poses[-1])


def test_occupancy_grid_fields():
    data = [0, 0, 100, -1, 0, 50]
    m = OccupancyMap.from_message_fields(data, 3, 2, 0.1, -1.0, 2.0)
    assert m.occupied.tolist() == [[False, False, True], [True, False, True]]  # unknown and >= 50 are occupied
    assert OccupancyMap.from_message_fields(data, 3, 2, 0.1, -1.0, 2.0, unknown_is_free=True).occupied[1, 0] == False  # noqa: E712
    assert m.cell(-0.95, 2.15) == (1, 0) and m.cell(5.0, 5.0) is None and m.centre(1, 2) == pytest.approx((-0.75, 2.15))
    assert m.clearance[0, 0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs 6 cells"):
        OccupancyMap.from_message_fields(data[:5], 3, 2, 0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match="resolution"):
        OccupancyMap(np.zeros((2, 2), bool), 0.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="non-empty"):
        OccupancyMap(np.zeros((0, 2), bool), 0.1, (0.0, 0.0))


def test_the_simulators_map_gets_the_robot_to_every_manip_target():
    """On the simulator's own worlds (walls and furniture from `GridMap`), from the episode start to
    the object to move: the path keeps the base's footprint off every obstacle."""
    import vlm_agent.sim  # noqa: F401
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.sim.world import ROBOT_RADIUS

    env = NavEnv(SimConfig(width=16, height=16, render_depth=False))
    try:
        reached = 0
        episodes = make_episodes("manip", "val", 8, seed=0)
        for ep in episodes:
            env.reset(ep)
            g = env.grid
            grid = OccupancyMap(g.clearance <= 0.0, g.res, (g.x0, g.y0))
            obj = env.world.object(ep.goal_objects[0])
            target = NavTarget(obj.label, tuple(obj.pos), 0.45)
            poses = _drive(GridNavigator(lambda: grid), env.pose, target, steps=60)
            assert all(env.collision.clearance(x, y) > ROBOT_RADIUS - 0.05 for x, y, _ in poses[1:]), ep.episode_id
            reached += target.near(poses[-1])
        assert reached == len(episodes)
    finally:
        env.close()


def test_a_new_map_is_planned_on_not_the_cached_one():
    open_room = OccupancyMap(np.zeros((80, 120), bool), 0.05, (0.0, 0.0))
    maps = [open_room]
    nav = GridNavigator(lambda: maps[-1], robot_radius_m=0.2)
    target = NavTarget("red cube", (5.0, 1.0, 0.08), 0.45)
    assert max(y for _, y in nav.path(maps[-1], (1.0, 1.0, 0.0), target)) < 1.3  # straight across
    maps.append(_wall_map())  # the next episode's room
    assert max(y for _, y in nav.path(maps[-1], (1.0, 1.0, 0.0), target)) > 3.0  # round the new wall
