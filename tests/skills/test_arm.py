"""Shared arm geometry (skills/arm.py): IK and FK agree with each other and with the simulator's
MuJoCo model, the trajectory profile, and the approach/place helpers."""
import math

import numpy as np
import pytest

from vlm_agent.sim.env import ARM_JOINTS as SIM_ARM_JOINTS
from vlm_agent.sim.env import ARM_STOW as SIM_ARM_STOW
from vlm_agent.sim.env import GRIPPER_JOINTS as SIM_GRIPPER_JOINTS
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.skills import arm
from vlm_agent.skills.api import SkillError


def test_constants_match_the_simulated_robot():
    assert arm.ARM_STOW == SIM_ARM_STOW
    assert arm.ARM_JOINTS == SIM_ARM_JOINTS and arm.GRIPPER_JOINTS == SIM_GRIPPER_JOINTS


@pytest.mark.parametrize("r,h", [(0.35, -0.2), (0.5, -0.1), (0.3, 0.3), (0.6, 0.2)])
def test_fk_inverts_ik_with_the_gripper_pointing_down(r, h):
    g = arm.DEFAULT_ARM
    shoulder, elbow, wrist = g.ik(r, h)
    assert shoulder + elbow + wrist == pytest.approx(-math.pi / 2)
    x, y, z = g.grasp_point_base((0.0, shoulder, elbow, wrist))
    assert (x - g.shoulder[0], y, z - g.shoulder[2]) == pytest.approx((r, 0.0, h), abs=1e-9)


def test_reach_joints_and_world_fk_round_trip():
    pose = (1.0, -2.0, 0.7)
    point = (1.3, -1.6, 0.1)
    joints = arm.DEFAULT_ARM.reach_joints(pose, point)
    assert arm.DEFAULT_ARM.grasp_point(pose, joints) == pytest.approx(point, abs=1e-9)
    with pytest.raises(SkillError, match="out of the arm's reach"):
        arm.DEFAULT_ARM.reach_joints(pose, (5.0, 5.0, 0.0))


def test_fk_matches_the_mujoco_grasp_site():
    env = NavEnv(SimConfig(width=16, height=16, render_depth=False))
    try:
        env.reset(make_episodes("manip", "val", 1, seed=0)[0])
        for joints in [arm.ARM_STOW, arm.ARM_CARRY, (0.4, 0.5, -1.2, -0.87), (-0.3, 0.2, -0.6, -1.1)]:
            env.set_arm_targets(joints)
            env.step_physics(1.5)
            _names, q, _v = env.joint_state()
            got = arm.DEFAULT_ARM.grasp_point(env.pose, q[:4])
            assert np.allclose(got, env.grasp_point(), atol=2e-3), (joints, got, env.grasp_point())
    finally:
        env.close()


def test_smooth_trajectory_ends_on_target_and_starts_gently():
    traj = arm.smooth_trajectory([0.0, 1.0], [1.0, -1.0], 0.8, 0.05)
    assert len(traj) == 16 and traj[-1] == (pytest.approx(0.8), [1.0, -1.0])
    times = [t for t, _ in traj]
    assert times == sorted(times) and times[0] > 0
    assert traj[0][1][0] < 0.02  # cosine profile: slow start
    assert arm.smooth_trajectory([0.0], [1.0], 0.01, 0.05) == [(0.01, [1.0])]


def test_place_points_and_box_helpers():
    assert arm.place_point_on_object((1.0, 2.0, 0.08), 0.08, 0.08) == pytest.approx((1.0, 2.0, 0.08 + 0.08 + 0.08 + arm.PLACE_CLEARANCE_M))
    x, y, z = arm.place_point_on_box((0.0, 0.0), (1.0, -0.5), (2.0, 0.5), 0.75, 0.08)
    assert (x, y) == pytest.approx((1.0 + arm.TABLE_INSET_M, 0.0)) and z == pytest.approx(0.75 + 0.08 + arm.PLACE_CLEARANCE_M)
    assert arm.box_distance((0.0, 0.0), (1.0, -0.5), (2.0, 0.5)) == pytest.approx(1.0)
    assert arm.box_distance((1.5, 0.0), (1.0, -0.5), (2.0, 0.5)) == 0.0
    # a box narrower than twice the inset: its centre line
    assert arm.box_nearest_point((0.0, 0.0), (1.0, -0.1), (2.0, 0.1), inset=0.16)[1] == pytest.approx(0.0)
    assert arm.standoff_m(True) == arm.REACH_STANDOFF_M and arm.standoff_m(False) == arm.TABLE_STANDOFF_M


def test_reachable_place_point_shrinks_the_inset_at_a_corner():
    box = ((1.0, -0.5), (2.0, 0.5))
    facing_edge = (0.68, 0.0, 0.0)  # 0.32 m from the edge
    p = arm.reachable_place_point_on_box(facing_edge, *box, 0.45, 0.11)
    assert p[:2] == pytest.approx((1.0 + arm.TABLE_INSET_M, 0.0))
    corner = (1.0 - 0.23, -0.5 - 0.23, math.radians(45))  # 0.32 m from the corner, diagonally
    with pytest.raises(SkillError):
        arm.DEFAULT_ARM.reach_joints(corner, arm.offset(arm.place_point_on_box(corner[:2], *box, 0.45, 0.11), arm.RETREAT_M))
    p = arm.reachable_place_point_on_box(corner, *box, 0.45, 0.11)
    assert 1.0 + 0.05 < p[0] < 1.0 + arm.TABLE_INSET_M and -0.5 + 0.05 < p[1] < -0.5 + arm.TABLE_INSET_M
    for z in (0.0, arm.RETREAT_M):
        arm.DEFAULT_ARM.reach_joints(corner, arm.offset(p, z))
    with pytest.raises(SkillError, match="no place point"):
        arm.reachable_place_point_on_box((-1.0, 0.0, 0.0), *box, 0.45, 0.11)
