"""skills/approach.py: the map-free final approach (face, drive, dock in steps, back off) converges when
its primitives are executed, and targets measure distance to a box edge or a centre."""
import math

import pytest

from vlm_agent.actions import NavPrimitive
from vlm_agent.skills.approach import NavTarget, StraightLineNavigator, merge_primitives, turn


def execute(pose, primitives):
    """Ideal kinematics of the executor: forward along the heading, turns in place."""
    x, y, yaw = pose
    for p in primitives:
        x, y = x + p.distance_m * math.cos(yaw), y + p.distance_m * math.sin(yaw)
        yaw = math.remainder(yaw + p.yaw_rad, 2 * math.pi)
    return (x, y, yaw)


def drive(nav, pose, target, max_plans=50):
    plans = []
    for _ in range(max_plans):
        prims = nav.plan(pose, target)
        if not prims:
            return pose, plans
        plans.append(prims)
        pose = execute(pose, prims)
    raise AssertionError(f"no arrival after {max_plans} plans: {plans[-3:]}")


@pytest.mark.parametrize("start", [(0.0, 0.0, 0.0), (0.0, 0.0, 2.5), (3.0, -1.0, -1.0), (1.8, 0.1, math.pi)])
def test_object_approach_arrives_at_the_standoff_facing_it(start):
    target = NavTarget("red cube", (2.0, 0.5, 0.08), 0.45)
    nav = StraightLineNavigator()
    pose, _plans = drive(nav, start, target)
    assert abs(target.gap(pose)) <= nav.distance_tolerance_m
    assert abs(target.bearing_error(pose)) <= nav.yaw_tolerance_rad
    assert target.near(pose)


def test_too_close_backs_off_by_turning_around():
    target = NavTarget("red cube", (1.0, 0.0, 0.08), 0.45)
    prims = StraightLineNavigator().plan((0.8, 0.0, 0.0), target)
    assert prims[0].kind in ("turn_left", "turn_right") and prims[0].value == pytest.approx(180.0)
    assert prims[1].kind == "forward" and prims[1].value == pytest.approx(25.0)


def test_box_target_measures_from_the_edge_and_docks_in_steps():
    table = NavTarget("table", (2.0, 0.0, 0.45), 0.32, box=((1.5, -0.5), (2.5, 0.5)))
    assert table.distance_from((0.5, 0.0)) == pytest.approx(1.0)
    assert table.focus_point((0.5, 0.9)) == (1.5, 0.5)
    nav = StraightLineNavigator(dock_within_m=0.2, dock_step_cm=4.0)
    first = nav.plan((0.0, 0.0, 0.0), table)
    assert len(first) == 1 and first[0].kind == "forward" and first[0].value == pytest.approx(100.0 * (1.5 - 0.32 - 0.2))
    pose = execute((0.0, 0.0, 0.0), first)
    docking = nav.plan(pose, table)
    assert all(p.kind == "forward" and p.value <= 4.0 + 1e-9 for p in docking) and len(docking) == 5
    pose, _ = drive(nav, pose, table)
    assert abs(table.gap(pose)) <= nav.distance_tolerance_m


def test_merge_and_turn_helpers():
    f, left = NavPrimitive.forward(), NavPrimitive.turn_left()
    assert merge_primitives([f, f, left, left, f]) == [NavPrimitive.forward(50.0), NavPrimitive.turn_left(60.0), f]
    assert merge_primitives([NavPrimitive.forward(150.0), NavPrimitive.forward(100.0)]) == [NavPrimitive.forward(150.0), NavPrimitive.forward(100.0)]
    right = turn(-math.pi / 2)
    assert right.kind == "turn_right" and right.value == pytest.approx(90.0)
