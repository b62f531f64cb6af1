"""Getting the base next to a target with navigation primitives: what the ROS skill adapter sends to
the motion executor (plain Python, no ROS, no simulator).

A `NavTarget` is where a skill wants the base: a perceived position (x, y, z) m in `odom`, the
standoff to stop at (from an object's centre, or from a furniture piece's edge when its floor-plane
box is known), and the point to face. A `Navigator` turns the current base pose into the next few
primitives (`[]` = arrived: within `distance_tolerance_m` of the standoff and facing the target);
the caller executes them closed-loop (the motion executor), reads the new pose and asks again.

`StraightLineNavigator` needs no map: turn to face the target, drive straight to the standoff,
face it again (backing off by turning around when too close: the executor drives forward only).
Obstacles on the way are the safety supervisor's business (it blocks, the executor aborts, the
skill fails with the reason). The simulator's privileged, map-aware navigator (the navigation
oracle's cost field on a ground-truth mirror) lives with the ROS edge (`nodes/sim_ground_truth.py`)
and ends with this one's final approach.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from vlm_agent.actions import NavPrimitive
from vlm_agent.geometry import wrap_angle
from vlm_agent.skills.arm import NEAR_TOLERANCE_M, box_distance, box_nearest_point


@dataclass(frozen=True)
class TargetShape:
    """What a skill needs to know about a perceived entity besides its position.

    is_object: a small object (grasp from above, stand REACH_STANDOFF_M from its centre), else a
        furniture piece (stand TABLE_STANDOFF_M from its edge, place on its top).
    half_height: m, half the object's height (placing on it, placing it), None when unknown.
    box: (xy_min, xy_max, top_z) of a furniture piece's floor-plane box and its top height, metres in
        `odom`, None when unknown.
    graspable: False for objects the gripper cannot hold (plates).
    """

    is_object: bool = True
    half_height: float | None = None
    box: tuple[tuple[float, float], tuple[float, float], float] | None = None
    graspable: bool = True


@dataclass(frozen=True)
class NavTarget:
    """Where navigate_to/pick/place_on want the base: `position` (x, y, z) m in `odom`, `standoff_m`
    from the centre (or from the box edge when `box` is set), a label for messages, and the scene id
    when perception knows it (privileged navigators need it)."""

    label: str
    position: tuple[float, float, float]
    standoff_m: float
    box: tuple[tuple[float, float], tuple[float, float]] | None = None
    name: str | None = None

    def distance_from(self, xy) -> float:
        """Floor-plane distance (m) from `xy` to the target (its box edge, or its centre)."""
        if self.box is not None:
            return box_distance(xy, *self.box)
        return math.hypot(self.position[0] - xy[0], self.position[1] - xy[1])

    def focus_point(self, xy) -> tuple[float, float]:
        """The point to face from `xy`: the box's nearest point, or the centre."""
        if self.box is not None:
            return box_nearest_point(xy, *self.box)
        return (float(self.position[0]), float(self.position[1]))

    def gap(self, pose) -> float:
        """Distance still to drive (m) to stand at the standoff from pose (x, y, yaw); negative = too close."""
        return self.distance_from(pose[:2]) - self.standoff_m

    def bearing_error(self, pose) -> float:
        """Heading error (rad, CCW positive) from pose (x, y, yaw) to the focus point."""
        fx, fy = self.focus_point(pose[:2])
        if math.hypot(fx - pose[0], fy - pose[1]) < 1e-6:
            return 0.0
        return wrap_angle(math.atan2(fy - pose[1], fx - pose[0]) - pose[2])

    def near(self, pose, tolerance_m: float = NEAR_TOLERANCE_M) -> bool:
        """The base stands where navigate_to leaves it (within `tolerance_m` beyond the standoff)."""
        return self.distance_from(pose[:2]) <= self.standoff_m + tolerance_m


class Navigator(Protocol):
    """Next primitives towards a target; `[]` when arrived (see module docstring)."""

    def plan(self, pose, target: NavTarget) -> list[NavPrimitive]:
        ...


def turn(yaw_rad: float) -> NavPrimitive:
    """The turn primitive for a signed yaw change (rad, CCW positive)."""
    degrees = abs(math.degrees(yaw_rad))
    return NavPrimitive.turn_left(degrees) if yaw_rad > 0 else NavPrimitive.turn_right(degrees)


def merge_primitives(primitives, max_forward_cm: float = 200.0, max_turn_deg: float = 180.0) -> list[NavPrimitive]:
    """Join consecutive forward moves (up to `max_forward_cm`) and same-direction turns (up to
    `max_turn_deg`), so the executor runs one profile instead of stopping between steps."""
    out: list[NavPrimitive] = []
    for p in primitives:
        if out and out[-1].kind == p.kind and p.kind != "stop":
            cap = max_forward_cm if p.kind == "forward" else max_turn_deg
            if out[-1].value + p.value <= cap:
                out[-1] = NavPrimitive(p.kind, out[-1].value + p.value)
                continue
        out.append(p)
    return out


@dataclass
class StraightLineNavigator:
    """Face, drive straight to the standoff, face again (no map; see module docstring).

    distance_tolerance_m / yaw_tolerance_rad: arrived when the gap and the heading error are within
    these. max_forward_cm: longest forward move per plan (the executor refuses longer ones).
    dock_within_m / dock_step_cm: the last `dock_within_m` before the standoff are driven in steps of
    at most `dock_step_cm`, each its own short speed profile, so the base creeps up to the target: a
    depth-based safety stop, whose zone grows with speed, lets a slow base come closer (0 = off).
    """

    distance_tolerance_m: float = 0.03
    yaw_tolerance_rad: float = 0.05
    max_forward_cm: float = 100.0
    dock_within_m: float = 0.0
    dock_step_cm: float = 4.0

    def plan(self, pose, target: NavTarget) -> list[NavPrimitive]:
        gap = target.gap(pose)
        err = target.bearing_error(pose)
        if abs(gap) <= self.distance_tolerance_m:
            return [turn(err)] if abs(err) > self.yaw_tolerance_rad else []
        if gap > 0:
            prims = [turn(err)] if abs(err) > self.yaw_tolerance_rad else []
            far = max(0.0, gap - self.dock_within_m) if self.dock_within_m > 0 else gap
            if far > self.distance_tolerance_m:
                return prims + [NavPrimitive.forward(min(far * 100.0, self.max_forward_cm))]
            steps, left = [], gap * 100.0
            while left > 0.05 and len(steps) < 8:
                steps.append(NavPrimitive.forward(round(min(self.dock_step_cm, left), 2)))
                left -= steps[-1].value
            return prims + steps
        # Too close and the executor only drives forward: face away, back off; the next plan faces it.
        return [turn(wrap_angle(err + math.pi)), NavPrimitive.forward(min(-gap * 100.0, self.max_forward_cm))]
