"""Arm and approach geometry shared by the skill implementations (the simulator's `SimSkills` and
the ROS adapter `vlm_agent.nodes.ros_skills.RosSkills`): plain functions, no simulator, no ROS.

The arm is the sim robot's (sim/mujoco/robot.xml): a yaw joint at the arm base, then shoulder, elbow
and wrist pitch joints (axis -y of the link, so positive angles lift), links L1 and L2, and the grasp
point WRIST_TO_GRASP beyond the wrist. Grasps and placements are from above: the gripper points
straight down, so the wrist pitch is whatever makes shoulder + elbow + wrist = -pi/2.

Frames: `base_link` (x forward, y left, z up, metres, on the floor at the base centre) and the world
frame `odom` (REP-105); base poses are (x m, y m, yaw rad) in `odom`. Joint angles in radians, in
the order of `ARM_JOINTS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vlm_agent.skills.api import SkillError

ARM_JOINTS = ("arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist")
GRIPPER_JOINTS = ("gripper_left", "gripper_right")

SHOULDER_OFFSET = (0.10, 0.0, 0.28)  # m, shoulder joint in base_link
L1, L2 = 0.35, 0.35  # m, upper arm and forearm
WRIST_TO_GRASP = 0.14  # m
ARM_STOW = (0.0, 1.5, -2.8, 0.0)  # rad; folded up behind the camera's view (the simulator's reset pose)
# rad; carrying: the grasp point 0.24 m ahead of the base centre, 0.34 m high (above the base's top, over
# its front edge), below the sim camera's view (0.95 m high, pitched 20 degrees down, it sees nothing
# that low closer than ~0.37 m ahead), so the safety supervisor's depth stop does not take the carried
# object for an obstacle, as it did with the earlier pose held out at 0.50 m.
ARM_CARRY = (0.0, 2.175, -2.429, -1.316)
REACH_STANDOFF_M = 0.45  # base centre to object centre when grasping from the floor
TABLE_STANDOFF_M = 0.24  # base centre to the table edge
TABLE_INSET_M = 0.16  # how far onto the table an object is placed
NEAR_TOLERANCE_M = 0.12  # "at the standoff" means within this much of it
APPROACH_ABOVE_M = 0.12  # pre-grasp height above the object's centre
LIFT_M = 0.2  # lift after a grasp
PLACE_CLEARANCE_M = 0.01  # gap between a placed object and its support when released
PLACE_ABOVE_M = 0.1  # pre-place height above the place point
RETREAT_M = 0.15  # rise after releasing (and after a missed grasp)


@dataclass(frozen=True)
class ArmGeometry:
    """The arm's kinematics (defaults: the sim robot). shoulder (x, y, z) m in base_link; links m."""

    shoulder: tuple[float, float, float] = SHOULDER_OFFSET
    upper_arm_m: float = L1
    forearm_m: float = L2
    wrist_to_grasp_m: float = WRIST_TO_GRASP

    def ik(self, r: float, h: float) -> tuple[float, float, float]:
        """(shoulder, elbow, wrist) rad that put the grasp point at horizontal distance `r` and height
        `h` (m) from the shoulder with the gripper pointing straight down (elbow-up solution).
        SkillError when out of reach."""
        l1, l2 = self.upper_arm_m, self.forearm_m
        wr, wh = r, h + self.wrist_to_grasp_m
        c = (wr * wr + wh * wh - l1 * l1 - l2 * l2) / (2 * l1 * l2)
        if not -1.0 <= c <= 1.0:
            raise SkillError(f"target out of the arm's reach (r={r:.2f} m, h={h:.2f} m)")
        elbow = -math.acos(c)
        shoulder = math.atan2(wh, wr) - math.atan2(l2 * math.sin(elbow), l1 + l2 * math.cos(elbow))
        wrist = -math.pi / 2 - shoulder - elbow
        return shoulder, elbow, wrist

    def reach_joints(self, base_pose, point) -> tuple[float, float, float, float]:
        """Joint targets (ARM_JOINTS order, rad) that put the grasp point at `point` (x, y, z) m in
        `odom` with the gripper pointing down, from base pose (x, y, yaw) in `odom`."""
        x, y, yaw = (float(v) for v in base_pose)
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = float(point[0]) - x, float(point[1]) - y
        lx = c * dx + s * dy - self.shoulder[0]
        ly = -s * dx + c * dy - self.shoulder[1]
        shoulder, elbow, wrist = self.ik(math.hypot(lx, ly), float(point[2]) - self.shoulder[2])
        return math.atan2(ly, lx), shoulder, elbow, wrist

    def grasp_point_base(self, joints) -> tuple[float, float, float]:
        """Forward kinematics: the grasp point (x, y, z) m in base_link for joint angles (ARM_JOINTS order)."""
        yaw, shoulder, elbow, wrist = (float(v) for v in joints[:4])
        a1, a2, a3 = shoulder, shoulder + elbow, shoulder + elbow + wrist
        r = self.upper_arm_m * math.cos(a1) + self.forearm_m * math.cos(a2) + self.wrist_to_grasp_m * math.cos(a3)
        h = self.upper_arm_m * math.sin(a1) + self.forearm_m * math.sin(a2) + self.wrist_to_grasp_m * math.sin(a3)
        return (self.shoulder[0] + r * math.cos(yaw), self.shoulder[1] + r * math.sin(yaw), self.shoulder[2] + h)

    def grasp_point(self, base_pose, joints) -> tuple[float, float, float]:
        """Forward kinematics in `odom`: the grasp point for base pose (x, y, yaw) and joint angles."""
        bx, by, bz = self.grasp_point_base(joints)
        x, y, yaw = (float(v) for v in base_pose)
        c, s = math.cos(yaw), math.sin(yaw)
        return (x + c * bx - s * by, y + s * bx + c * by, bz)


DEFAULT_ARM = ArmGeometry()


def arm_ik(r: float, h: float) -> tuple[float, float, float]:
    """`DEFAULT_ARM.ik`: (shoulder, elbow, wrist) rad for grasp point distance `r`, height `h` (m) from the shoulder."""
    return DEFAULT_ARM.ik(r, h)


def smooth_trajectory(start, target, duration_s: float, dt_s: float) -> list[tuple[float, list[float]]]:
    """[(t s, joint positions)] from `start` to `target` with a cosine (smooth start and stop) profile,
    sampled every `dt_s` (at least one point; the last is exactly `target` at `duration_s`)."""
    start = [float(v) for v in start]
    target = [float(v) for v in target]
    n = max(1, int(duration_s / dt_s))
    out = []
    for k in range(1, n + 1):
        a = 0.5 - 0.5 * math.cos(math.pi * k / n)
        out.append((duration_s * k / n, [s + a * (t - s) for s, t in zip(start, target)]))
    return out


def standoff_m(is_object: bool) -> float:
    """How far navigate_to stops: from an object's centre, or from a furniture piece's edge."""
    return REACH_STANDOFF_M if is_object else TABLE_STANDOFF_M


def box_distance(xy, xy_min, xy_max) -> float:
    """Floor-plane distance (m) from point `xy` to an axis-aligned box (0 inside)."""
    dx = max(0.0, xy_min[0] - xy[0], xy[0] - xy_max[0])
    dy = max(0.0, xy_min[1] - xy[1], xy[1] - xy_max[1])
    return math.hypot(dx, dy)


def box_nearest_point(xy, xy_min, xy_max, inset: float = 0.0) -> tuple[float, float]:
    """The point of an axis-aligned box (shrunk by `inset` m on every side) nearest to `xy`."""
    lo_x, hi_x = xy_min[0] + inset, xy_max[0] - inset
    lo_y, hi_y = xy_min[1] + inset, xy_max[1] - inset
    if lo_x > hi_x:
        lo_x = hi_x = 0.5 * (xy_min[0] + xy_max[0])
    if lo_y > hi_y:
        lo_y = hi_y = 0.5 * (xy_min[1] + xy_max[1])
    return (min(max(float(xy[0]), lo_x), hi_x), min(max(float(xy[1]), lo_y), hi_y))


def place_point_on_object(dest_centre, dest_half_height: float, held_half_height: float) -> tuple[float, float, float]:
    """Where the held object's centre goes when placed on another object: on top of it, centred."""
    top = float(dest_centre[2]) + dest_half_height
    return (float(dest_centre[0]), float(dest_centre[1]), top + held_half_height + PLACE_CLEARANCE_M)


def place_point_on_box(base_xy, xy_min, xy_max, top_z: float, held_half_height: float) -> tuple[float, float, float]:
    """Where the held object's centre goes on a table: the point nearest to the base, TABLE_INSET_M
    inside its edge."""
    px, py = box_nearest_point(base_xy, xy_min, xy_max, TABLE_INSET_M)
    return (px, py, float(top_z) + held_half_height + PLACE_CLEARANCE_M)


def reachable_place_point_on_box(base_pose, xy_min, xy_max, top_z: float, held_half_height: float,
                                 arm: ArmGeometry = DEFAULT_ARM, insets=(TABLE_INSET_M, 0.12, 0.09)) -> tuple[float, float, float]:
    """`place_point_on_box` with the largest of `insets` (m inside the edge) whose place point and the
    points above it (pre-place and retreat) the arm reaches from `base_pose` (x, y, yaw) in odom: a base
    that ended up at a table's corner is farther from the inset point than one facing an edge.
    SkillError when none is reachable."""
    last = None
    for inset in insets:
        px, py = box_nearest_point(base_pose[:2], xy_min, xy_max, inset)
        point = (px, py, float(top_z) + held_half_height + PLACE_CLEARANCE_M)
        try:
            arm.reach_joints(base_pose, offset(point, max(PLACE_ABOVE_M, RETREAT_M)))
            arm.reach_joints(base_pose, point)
            return point
        except SkillError as exc:
            last = exc
    raise SkillError(f"no place point on the table within the arm's reach ({last})")


def offset(point, dz: float) -> tuple[float, float, float]:
    return (float(point[0]), float(point[1]), float(point[2]) + dz)
