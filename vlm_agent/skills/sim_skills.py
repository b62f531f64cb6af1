"""The skill API on the embedded simulator (`vlm_agent.sim.env.NavEnv`).

navigate_to drives the kinematic base with the navigation oracle's lookahead (diff-drive motion with
collision checks, not teleporting); pick/place_on move the arm with analytic inverse kinematics
(gripper pointing down) through position servos stepped by MuJoCo; grasping is the simulator's
attach-on-close approximation (see `NavEnv`).
"""
from __future__ import annotations

import math

import numpy as np

from vlm_agent.sim.env import ARM_STOW
from vlm_agent.skills.api import SkillAPI, SkillError, SkillResult

SHOULDER_OFFSET = (0.10, 0.0, 0.28)  # m, shoulder joint in base_link
L1, L2 = 0.35, 0.35  # m, upper arm and forearm
WRIST_TO_GRASP = 0.14  # m
REACH_STANDOFF_M = 0.45  # base centre to object centre when grasping from the floor
TABLE_STANDOFF_M = 0.24  # base centre to the table edge
TABLE_INSET_M = 0.16  # how far onto the table an object is placed


def arm_ik(r: float, h: float) -> tuple[float, float, float]:
    """(shoulder, elbow, wrist) rad that put the grasp point at horizontal distance `r` and height `h`
    (m) from the shoulder with the gripper pointing straight down (elbow-up solution)."""
    wr, wh = r, h + WRIST_TO_GRASP
    c = (wr * wr + wh * wh - L1 * L1 - L2 * L2) / (2 * L1 * L2)
    if not -1.0 <= c <= 1.0:
        raise SkillError(f"target out of the arm's reach (r={r:.2f} m, h={h:.2f} m)")
    elbow = -math.acos(c)
    shoulder = math.atan2(wh, wr) - math.atan2(L2 * math.sin(elbow), L1 + L2 * math.cos(elbow))
    wrist = -math.pi / 2 - shoulder - elbow
    return shoulder, elbow, wrist


class SimSkills(SkillAPI):
    """Skills executed in a `NavEnv` whose episode is loaded. `sim_dt` is the control period (s)."""

    def __init__(self, env, sim_dt: float = 0.05, max_nav_steps: int = 400):
        self.env = env
        self.sim_dt = sim_dt
        self.max_nav_steps = max_nav_steps
        self.log: list[str] = []

    # -- object references -------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Object/furniture name for a reference like "red cube", "the table", "obj_3"."""
        world = self.env.world
        text = ref.strip().lower()
        for article in ("the ", "a "):
            if text.startswith(article):
                text = text[len(article):]
        names = [o.name for o in world.objects] + [b.name for b in world.furniture]
        if text in names:
            return text
        if text == "table":
            tables = [b.name for b in world.furniture if b.kind == "table"]
            if len(tables) == 1:
                return tables[0]
            raise SkillError(f"'{ref}' is ambiguous or absent ({len(tables)} tables)")
        matches = [o.name for o in world.objects if o.label == text or (text in (o.shape, o.colour))]
        exact = [o.name for o in world.objects if o.label == text]
        matches = exact or matches
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SkillError(f"no object matches '{ref}'")
        raise SkillError(f"'{ref}' matches {len(matches)} objects; be more specific")

    # -- skills ------------------------------------------------------------------------------
    def navigate_to(self, target: str) -> SkillResult:
        name = self.resolve(target)
        self._drive_to(name)
        return SkillResult(True, f"at {target}")

    def pick(self, target: str) -> SkillResult:
        env = self.env
        name = self.resolve(target)
        if env.held is not None:
            raise SkillError(f"already holding {env.world.object(env.held).label}")
        if name not in {o.name for o in env.world.objects}:
            raise SkillError(f"'{target}' is not an object that can be picked")
        obj = env.world.object(name)
        if obj.shape == "plate":
            raise SkillError("plates are too flat to grasp")
        self._drive_to(name)
        p = np.asarray(obj.pos)
        self.open_gripper()
        self._reach(p + (0, 0, 0.12))
        self._reach(p)
        self.close_gripper()
        if env.held != name:
            self._reach(p + (0, 0, 0.15))
            raise SkillError(f"grasp of {target} missed")
        self._reach(p + (0, 0, 0.2))
        self._carry()
        return SkillResult(True, f"holding {target}")

    def place_on(self, target: str) -> SkillResult:
        env = self.env
        if env.held is None:
            raise SkillError("not holding anything")
        name = self.resolve(target)
        if name == env.held:
            raise SkillError("cannot place an object on itself")
        held = env.world.object(env.held)
        self._drive_to(name)
        x, y, yaw = env.pose
        try:
            dest = env.world.object(name)
            top = dest.pos[2] + dest.half_height
            point = np.array([dest.pos[0], dest.pos[1], top + held.half_height + 0.01])
        except KeyError:
            box = env.world.furniture_piece(name)
            # the point on the table nearest to the robot, TABLE_INSET_M inside its edge
            px = float(np.clip(x, box.xy_min[0] + TABLE_INSET_M, box.xy_max[0] - TABLE_INSET_M))
            py = float(np.clip(y, box.xy_min[1] + TABLE_INSET_M, box.xy_max[1] - TABLE_INSET_M))
            point = np.array([px, py, box.top_z + held.half_height + 0.01])
            self._face(point[:2])
        self._reach(point + (0, 0, 0.1))
        self._reach(point)
        self.open_gripper()
        self._reach(point + (0, 0, 0.15))
        self._stow()
        obj = env.world.object(held.name)
        if obj.support != name:
            raise SkillError(f"{held.label} fell onto {obj.support} instead of {target}")
        return SkillResult(True, f"{held.label} is on {target}")

    def open_gripper(self) -> SkillResult:
        self.env.set_gripper(0.0)
        self._settle(0.4)
        return SkillResult(True, "gripper open")

    def close_gripper(self) -> SkillResult:
        self.env.set_gripper(1.0)
        self._settle(0.4)
        held = self.env.held
        return SkillResult(True, f"gripper closed on {self.env.world.object(held).label}" if held else "gripper closed on nothing")

    # -- motion --------------------------------------------------------------------------------
    def _drive_to(self, name: str) -> None:
        """Drive until the base is at the grasp standoff of `name` (object) or next to it (furniture), facing it."""
        from vlm_agent.sim.oracle import NavOracle

        env = self.env
        is_object = name in {o.name for o in env.world.objects}
        standoff = REACH_STANDOFF_M if is_object else TABLE_STANDOFF_M
        oracle = NavOracle(env, stop_radius_m=standoff + 0.35)
        for _ in range(self.max_nav_steps):
            if env.distance_to(name) <= standoff + 0.35:
                break
            move = oracle.move_towards(name, radius=standoff + 0.25)
            self._execute_primitive(move)
        else:
            raise SkillError(f"could not reach {name} within {self.max_nav_steps} moves")
        target = self._focus_point(name)
        self._face(target)
        # fine approach along the line of sight, stopping at the standoff or before a collision
        dist = env.distance_to(name) - standoff
        if abs(dist) > 0.01:
            env.step_velocity(math.copysign(0.25, dist), 0.0, abs(dist) / 0.25)
            self._face(target)
        if env.distance_to(name) > standoff + 0.12:
            raise SkillError(f"blocked on the way to {name} ({env.distance_to(name):.2f} m away)")

    def _focus_point(self, name):
        env = self.env
        try:
            return np.asarray(env.world.object(name).pos[:2])
        except KeyError:
            box = env.world.furniture_piece(name)
            x, y, _ = env.pose
            return np.array([np.clip(x, *sorted((box.xy_min[0], box.xy_max[0]))), np.clip(y, *sorted((box.xy_min[1], box.xy_max[1])))])

    def _execute_primitive(self, move) -> None:
        env = self.env
        if move.kind == "forward":
            env.step_velocity(0.5, 0.0, move.distance_m / 0.5)
        elif move.kind in ("turn_left", "turn_right"):
            env.step_velocity(0.0, math.copysign(1.0, move.yaw_rad), abs(move.yaw_rad))
        self._follow_held()

    def _face(self, point) -> None:
        env = self.env
        x, y, yaw = env.pose
        err = math.remainder(math.atan2(point[1] - y, point[0] - x) - yaw, 2 * math.pi)
        if abs(err) > 1e-3:
            env.step_velocity(0.0, math.copysign(1.0, err), abs(err))
        self._follow_held()

    def _follow_held(self):
        if self.env.held is not None:
            self.env.step_physics(self.env.model.opt.timestep)

    def _reach(self, point, duration: float = 0.8) -> None:
        """Move the grasp point to `point` (world, m) with the gripper pointing down."""
        env = self.env
        x, y, yaw = env.pose
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = point[0] - x, point[1] - y
        lx, ly = c * dx + s * dy - SHOULDER_OFFSET[0], -s * dx + c * dy - SHOULDER_OFFSET[1]
        arm_yaw = math.atan2(ly, lx)
        shoulder, elbow, wrist = arm_ik(math.hypot(lx, ly), point[2] - SHOULDER_OFFSET[2])
        self._move_arm((arm_yaw, shoulder, elbow, wrist), duration)
        err = float(np.linalg.norm(env.grasp_point() - np.asarray(point)))
        if err > 0.03:
            raise SkillError(f"arm could not reach the target (error {err:.3f} m)")

    def _carry(self):
        self._move_arm((0.0, 1.2, -1.9, -0.87), 0.8)

    def _stow(self):
        self._move_arm(ARM_STOW, 0.8)

    def _move_arm(self, target, duration: float) -> None:
        env = self.env
        start = env.arm_targets()
        target = np.asarray(target, float)
        n = max(1, int(duration / self.sim_dt))
        for k in range(1, n + 1):
            a = 0.5 - 0.5 * math.cos(math.pi * k / n)  # smooth start and stop
            env.set_arm_targets(start + a * (target - start))
            env.step_physics(self.sim_dt)
        self._settle(0.5)

    def _settle(self, seconds: float) -> None:
        self.env.step_physics(seconds)
