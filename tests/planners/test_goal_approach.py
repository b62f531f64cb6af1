"""The goal approach: the instruction's goals, locating a mask on the map, and driving there on the map."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_agent.actions import NavPrimitive
from vlm_agent.planners.ego_map import EgoMap, EgoMapConfig
from vlm_agent.planners.goal_approach import GoalApproach, GoalSpec, crosses_room_boundary, instruction_goals, near_low_furniture
from vlm_agent.sensors.camera_model import CameraIntrinsics

COLOURS = ("red", "green", "blue", "yellow", "cyan", "purple", "orange", "white")
SHAPES = ("cube", "ball", "cylinder", "plate", "other")


@pytest.mark.parametrize("text, spec", [
    ("go to the red ball", GoalSpec(["the red ball"], True)),
    ("find the cyan plate and stop next to it", GoalSpec(["the cyan plate"], True)),
    ("move to the yellow ball and stop there", GoalSpec(["the yellow ball"], True)),
    ("first go to the purple cube, then to the cyan ball", GoalSpec(["the purple cube", "the cyan ball"], True)),
    ("go to the red cube and then to the white plate", GoalSpec(["the red cube", "the white plate"], True)),
    ("visit the yellow plate first and finish at the green cylinder", GoalSpec(["the yellow plate", "the green cylinder"], True)),
    # Qualifiers the map can check pick among same-label look-alikes.
    ("walk to the blue cube next to the table and stop", GoalSpec(["the blue cube"], True, "table")),
    ("approach the blue cube beside the table", GoalSpec(["the blue cube"], True, "table")),
    ("go into the other room and stop at the cyan plate", GoalSpec(["the cyan plate"], True, "room")),
    ("walk to the blue plate that is in the other room", GoalSpec(["the blue plate"], True, "room")),
    ("go to the red ball left of the blue cube", GoalSpec(["the red ball"], True, "left", "the blue cube")),
    ("head to the orange cylinder that is right of the orange ball", GoalSpec(["the orange cylinder"], True, "right", "the orange ball")),
    # ... and others it cannot check are left to the model.
    ("go to the red ball next to the sofa", GoalSpec(["the red ball"], False)),
    ("go to the red ball behind the blue cube", GoalSpec(["the red ball"], False)),
    ("go to the red ball near the blue cube", GoalSpec(["the red ball"], False)),
    ("go to the chair", GoalSpec([], False)),
    ("go to the other thing", GoalSpec([], False)),
])
def test_instruction_goals(text, spec):
    assert instruction_goals(text, COLOURS, SHAPES) == spec


def _map_with_wall() -> EgoMap:
    """A map anchored at (0, 0) with a wall along x = 1.5 m from y = -3 to y = 0.6 (a gap above it)."""
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))  # anchors the grid; marks only the visit
    ys = np.arange(-3.0, 0.6, 0.05)
    m.mark_obstacle(np.full_like(ys, 1.5), ys)
    return m


def _drive(approach: GoalApproach, m: EgoMap, pose, wall_x: float | None = 1.5, wall_top: float = 0.6, steps: int = 80):
    """Execute the approach's primitives kinematically (the wall really blocks); returns (pose, kinds, path)."""
    x, y, yaw = pose
    kinds, path = [], [(x, y)]
    for _ in range(steps):
        step = approach.plan((x, y, yaw), m)
        assert step is not None
        for p in step.primitives:
            kinds.append(p.kind)
            if p.kind == "stop":
                return (x, y, yaw), kinds, path
            if p.kind == "forward":
                nx, ny = x + p.distance_m * math.cos(yaw), y + p.distance_m * math.sin(yaw)
                crossing = wall_x is not None and (x - wall_x) * (nx - wall_x) <= 0 and min(y, ny) < wall_top + 0.2
                if not crossing:
                    x, y = nx, ny
                    path.append((x, y))
            else:
                yaw += p.yaw_rad
    return (x, y, yaw), kinds, path


def test_the_approach_goes_around_a_mapped_wall_and_stops_near_the_goal():
    m = _map_with_wall()
    approach = GoalApproach(GoalSpec(["the red ball"], True))
    assert approach.plan((0.0, 0.0, 0.0), m) is None  # nothing located yet: the model drives
    approach.observe("the red ball", np.array([[2.9, 0.0], [3.0, 0.05], [2.95, -0.05]]), (0.0, 0.0, 0.0))
    pose, kinds, path = _drive(approach, m, (0.0, 0.0, 0.0))
    gx, gy = approach.estimates["the red ball"]
    assert kinds[-1] == "stop" and math.hypot(pose[0] - gx, pose[1] - gy) <= 0.7
    assert max(py for _, py in path) > 0.6  # it went over the wall's end, not through it
    assert approach.bumps == 0


def test_an_unmapped_obstacle_that_stops_a_forward_step_is_marked_and_avoided():
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach = GoalApproach(GoalSpec(["the red ball"], True))
    approach.observe("the red ball", np.array([[3.0, 0.0]]), (0.0, 0.0, 0.0))
    # The same wall as above, but the map does not know it: the first blocked step teaches it.
    pose, kinds, path = _drive(approach, m, (0.0, 0.0, 0.0))
    assert approach.bumps >= 1 and m.grid[1].any()
    assert kinds[-1] == "stop" and math.hypot(pose[0] - 3.1, pose[1]) <= 0.7


def test_a_sequence_visits_its_legs_in_order_and_stops_only_at_the_last():
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach = GoalApproach(GoalSpec(["the red ball", "the blue cube"], True))
    approach.observe("the blue cube", np.array([[0.0, 3.0]]), (0.0, 0.0, 0.0))
    assert approach.plan((0.0, 0.0, 0.0), m) is None  # the first leg's goal is not located: the model drives
    approach.observe("the red ball", np.array([[2.0, 0.0]]), (0.0, 0.0, 0.0))
    pose, kinds, path = _drive(approach, m, (0.0, 0.0, 0.0), wall_x=None)
    assert kinds[-1] == "stop" and kinds.count("stop") == 1 and approach.leg == 1
    assert min(math.hypot(px - 2.1, py) for px, py in path) <= 0.6  # passed by the first goal
    assert math.hypot(pose[0], pose[1] - 3.1) <= 0.7


def test_a_goal_is_faced_before_the_stop():
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach = GoalApproach(GoalSpec(["the red ball"], True))
    approach.observe("the red ball", np.array([[0.0, 0.4]]), (0.0, 0.0, 0.0))  # 0.5 m to the left
    step = approach.plan((0.0, 0.0, 0.0), m)
    assert step.primitives == [NavPrimitive.turn_left(90)]
    assert approach.plan((0.0, 0.0, math.pi / 2), m).primitives == [NavPrimitive.stop()]


def test_the_estimate_ignores_mask_pixels_spilling_onto_the_floor_behind():
    approach = GoalApproach(GoalSpec(["the red ball"], True), object_depth_m=0.1)
    near = np.array([[2.0, -0.05], [2.0, 0.0], [2.02, 0.05], [2.05, 0.0]] * 5)
    spill = np.array([[4.0, 0.0], [5.0, 0.1], [6.0, 0.0]])
    gx, gy = approach.observe("the red ball", np.concatenate([near, spill]), (0.0, 0.0, 0.0))
    assert gx == pytest.approx(2.11, abs=0.03) and abs(gy) < 0.05
    assert approach.observe("the blue cube", near, (0.0, 0.0, 0.0)) is None  # not a goal of this instruction
    assert approach.observe("the red ball", np.empty((0, 2)), (0.0, 0.0, 0.0)) is None


def test_an_estimate_that_never_closes_in_is_dropped():
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach = GoalApproach(GoalSpec(["the red ball"], True), max_plans=3)
    approach.observe("the red ball", np.array([[3.0, 0.0]]), (0.0, 0.0, 0.0))
    assert all(approach.plan((0.0, 0.0, 0.0), m) is not None for _ in range(3))
    assert approach.plan((0.0, 0.0, 0.0), m) is None and not approach.estimates


def test_a_qualified_goal_is_never_approached():
    approach = GoalApproach(GoalSpec(["the red ball"], False))
    assert approach.pending_phrases == [] and approach.current_phrase is None
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach.observe("the red ball", np.array([[1.0, 0.0]]), (0.0, 0.0, 0.0))
    assert approach.plan((0.0, 0.0, 0.0), m) is None


def test_mask_points_locate_a_simulated_object():
    """The segmentation mask of a real rendered object, its depth and the pose put it where it is."""
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode

    env = NavEnv(SimConfig(width=64, height=64))
    try:
        obs = env.reset(make_episode("nav", "val", 0, 3))
        located = 0
        for _ in range(12):  # look all around, 30 degrees at a time
            m = EgoMap(EgoMapConfig(), env.camera_intrinsics())
            m.update(obs.depth, obs.pose)
            seg = env.segmentation()
            for name in [o.name for o in env.world.objects]:
                mask = env.object_mask(name, seg)
                if mask.sum() < 6:
                    continue
                # The mask at twice the depth image's size: mask_points samples it at the depth's resolution.
                big = np.kron(mask, np.ones((2, 2), bool))
                approach = GoalApproach(GoalSpec(["the red ball"], True))
                gx, gy = approach.observe("the red ball", m.mask_points(obs.depth, big, obs.pose), obs.pose)
                ox, oy, _ = env.object_position(name)
                assert math.hypot(gx - ox, gy - oy) < 0.2, name  # measured: 0.01-0.15 m
                located += 1
            obs = env.step(NavPrimitive.turn_left())
        assert located >= 10  # 18 sightings of 8 objects
    finally:
        env.close()


def test_the_best_verified_candidate_is_approached_and_a_better_sighting_redirects():
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach = GoalApproach(GoalSpec(["the purple cube"], True))
    pose = (0.0, 0.0, 0.0)
    approach.observe("the purple cube", np.array([[3.0, 0.0]]), pose, match=0.88)  # a look-alike, seen twice
    approach.observe("the purple cube", np.array([[3.1, 0.1]]), pose, match=0.82)
    assert len(approach.candidates["the purple cube"]) == 1 and approach.candidates["the purple cube"][0].sightings == 2
    assert approach.choose("the purple cube").match == pytest.approx(0.88)
    assert approach.plan(pose, m).primitives[0].kind == "forward"  # heads for it
    approach.observe("the purple cube", np.array([[0.0, 3.0]]), pose, match=0.99)  # the object itself, once, confidently
    assert len(approach.candidates["the purple cube"]) == 2
    gx, gy = approach.estimates["the purple cube"]
    assert gx == pytest.approx(0.0, abs=0.01) and gy == pytest.approx(3.1, abs=0.01)
    assert approach.plan(pose, m).primitives[0].kind == "turn_left"  # redirected, to the left


def _rooms_map() -> EgoMap:
    """Two rooms side by side, seen: a wall along x = 2 m (1.6 m tall) with a 1.1 m doorway at y in
    [1.0, 2.1], the start room's corner at (-3, -3), and a table top (0.45 m) around (-1.5, -1.5)."""
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    ys = np.concatenate([np.arange(-3.0, 1.0, 0.05), np.arange(2.1, 4.0, 0.05)])
    r, c, _ = m.world_to_cell(np.full_like(ys, 2.0), ys)
    m.grid[1, r, c] = True
    m.top[r, c] = 1.2
    corner = np.arange(-3.0, 0.0, 0.05)  # the start room's south-west corner at (-3, -3)
    r, c, _ = m.world_to_cell(np.concatenate([np.full_like(corner, -3.0), corner]), np.concatenate([corner, np.full_like(corner, -3.0)]))
    m.grid[1, r, c] = True
    m.top[r, c] = 1.2
    tx, ty = np.meshgrid(np.arange(-1.8, -1.2, 0.1), np.arange(-1.8, -1.2, 0.1))
    r, c, _ = m.world_to_cell(tx.ravel(), ty.ravel())
    m.grid[1, r, c] = True
    m.top[r, c] = 0.45
    return m


def test_room_boundaries_are_walls_or_doorways_between_start_and_goal():
    m = _rooms_map()
    assert crosses_room_boundary(m, (0.0, 0.0), (3.0, 0.0))  # through the wall
    assert crosses_room_boundary(m, (0.0, 1.5), (3.5, 1.6))  # through the doorway: walls on both sides
    assert crosses_room_boundary(m, (-1.0, 2.5), (4.0, 0.9))  # through the doorway at a slant
    assert not crosses_room_boundary(m, (0.0, 0.0), (1.2, 2.5))  # the start room
    assert not crosses_room_boundary(m, (0.0, 0.0), (-1.5, -2.5))
    assert not crosses_room_boundary(m, (-2.5, -2.4), (1.0, 0.5))  # out of a corner: walls on both sides, but not one wall


def test_table_height_obstacles_mark_a_goal_next_to_a_table():
    m = _rooms_map()
    assert near_low_furniture(m, (-1.5, -0.8))  # 0.4 m from the table's edge
    assert not near_low_furniture(m, (0.5, 1.0))  # 2 m away
    assert not near_low_furniture(m, (2.3, 0.0))  # beside the wall: tall, not a table


@pytest.mark.parametrize("spec, start, want", [
    (GoalSpec(["the red ball"], True, "room"), (0.0, 0.0, 0.0), (3.0, 0.5)),
    (GoalSpec(["the red ball"], True, "table"), (0.0, 0.0, 0.0), (-1.5, -0.9)),
    # The reference at (1, 0), seen from a start facing +x: left is +y.
    (GoalSpec(["the red ball"], True, "left", "the blue cube"), (0.0, 0.0, 0.0), (1.0, 1.0)),
    (GoalSpec(["the red ball"], True, "right", "the blue cube"), (0.0, 0.0, 0.0), (1.0, -1.0)),
    (GoalSpec(["the red ball"], True, "left", "the blue cube"), (2.0, 0.0, math.pi), (1.0, -1.0)),  # facing -x: left is -y
])
def test_the_qualifier_picks_the_look_alike_it_names(spec, start, want):
    m = _rooms_map()
    approach = GoalApproach(spec, ego_map=m, object_depth_m=0.0)
    assert approach.pending_phrases == ["the red ball"] + ([spec.reference] if spec.reference else [])
    # Look-alikes, all confirmed with the same confidence; the decoy seen more often.
    for xy, times in (((3.0, 0.5), 1), ((-1.5, -0.9), 1), ((1.0, 1.0), 1), ((1.0, -1.0), 1), ((-1.0, 2.0), 3)):
        for _ in range(times):
            approach.observe("the red ball", np.array([xy]), start, match=0.9)
    assert approach.choose("the red ball") is None or spec.reference is None  # a relation needs its reference first
    if spec.reference:
        approach.observe(spec.reference, np.array([[1.0, 0.0]]), start, match=0.9)
    chosen = approach.choose("the red ball")
    assert (chosen.x, chosen.y) == pytest.approx(want)


def test_a_qualified_goal_with_no_qualifying_candidate_is_not_approached():
    m = _rooms_map()
    approach = GoalApproach(GoalSpec(["the red ball"], True, "room"), ego_map=m)
    approach.observe("the red ball", np.array([[-1.0, 2.0]]), (0.0, 0.0, 0.0))  # the start room's look-alike
    assert approach.choose("the red ball") is None and approach.plan((0.0, 0.0, 0.0), m) is None
    with pytest.raises(ValueError):
        GoalApproach(GoalSpec(["the red ball"], True, "left"))  # a relation needs a reference


def _corridor_map() -> EgoMap:
    """Seen: free floor x in [-1, 3], y in [-1, 1], walled on three sides; open (unseen) beyond x = 3."""
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    fx, fy = np.meshgrid(np.arange(-0.95, 3.0, 0.05), np.arange(-0.95, 1.0, 0.05))
    r, c, _ = m.world_to_cell(fx.ravel(), fy.ravel())
    m.grid[0, r, c] = True
    xs, ys = np.arange(-1.1, 3.0, 0.05), np.arange(-1.1, 1.1, 0.05)
    for wx, wy in ((xs, np.full_like(xs, -1.05)), (xs, np.full_like(xs, 1.05)), (np.full_like(ys, -1.05), ys)):
        m.mark_obstacle(wx, wy)
    return m


def test_exploration_heads_for_the_unseen_end_of_the_map():
    m = _corridor_map()
    approach = GoalApproach(GoalSpec(["the red ball"], True), stall_plans=3)
    assert approach.plan((0.0, 0.0, math.pi / 2), m) is None  # nothing located
    approach.start_exploring("a stop was refused")
    step = approach.explore((0.0, 0.0, math.pi / 2), m)  # facing a wall: turn towards +x
    assert step.primitives[0].kind == "turn_right" and "frontier" in step.reason
    assert approach.explore((0.0, 0.0, 0.0), m).primitives[0].kind == "forward"
    # a fully seen, closed room has no frontier: the model drives again
    closed = _corridor_map()
    closed.mark_obstacle(np.full(44, 3.05), np.linspace(-1.1, 1.1, 44))
    assert approach.explore((0.0, 0.0, 0.0), closed) is None and approach.exploring is None


def test_exploration_takes_over_when_the_model_stops_finding_new_floor():
    m = _corridor_map()
    approach = GoalApproach(GoalSpec(["the red ball"], True), stall_plans=3, stall_min_new_m2=0.5)
    for _ in range(4):
        approach.note_model_plan(m)  # nothing new seen in 3 plans
    assert approach.exploring and "new floor" in approach.exploring
    growing = GoalApproach(GoalSpec(["the red ball"], True), stall_plans=3, stall_min_new_m2=0.5)
    g = _corridor_map()
    for k in range(6):
        g.grid[0, 10:20, 20 + 4 * k: 24 + 4 * k] = True  # 40 new cells (0.6 m2) a plan
        growing.note_model_plan(g)
    assert growing.exploring is None
    never = GoalApproach(GoalSpec(["the red ball"], True))  # stall_plans 0: off
    for _ in range(5):
        never.note_model_plan(m)
    never.start_exploring("a stop was refused")
    assert never.exploring is None


def test_a_forward_step_cut_short_just_before_the_goal_ends_there():
    """A safety supervisor's stop zone (or the object itself) holds the robot ~0.9 m from the goal:
    that is as close as it gets, so it stops (or, on an earlier leg, moves on) instead of pushing."""
    m = EgoMap(EgoMapConfig(), CameraIntrinsics.from_fov(64, 64, 60.0))
    m.update(None, (0.0, 0.0, 0.0))
    approach = GoalApproach(GoalSpec(["the red ball"], True), object_depth_m=0.0)
    approach.observe("the red ball", np.array([[0.95, 0.0]]), (0.0, 0.0, 0.0))
    assert approach.plan((0.0, 0.0, 0.0), m).primitives[0].kind == "forward"
    held = approach.plan((0.03, 0.0, 0.0), m)  # moved 3 cm of the planned 25-50
    assert held.primitives == [NavPrimitive.stop()] and "as close as it gets" in held.reason and approach.bumps == 1
    far = GoalApproach(GoalSpec(["the red ball"], True), object_depth_m=0.0)
    far.observe("the red ball", np.array([[3.0, 0.0]]), (0.0, 0.0, 0.0))
    far.plan((0.0, 0.0, 0.0), m)
    assert far.plan((0.0, 0.0, 0.0), m).primitives[0].kind in ("turn_left", "turn_right")  # far from it: go around
