"""The skill API on the embedded simulator (`vlm_agent.sim.env.NavEnv`).

navigate_to drives the kinematic base with the navigation oracle's lookahead (diff-drive motion with
collision checks, not teleporting); pick/place_on move the arm with analytic inverse kinematics
(gripper pointing down) through position servos stepped by MuJoCo. Grasping is the simulator's
attach-on-close approximation (see `NavEnv` and docs/simulator.md): an object whose centre is
within reach of the grasp point while the fingers close attaches to the gripper, and on opening it
settles on the highest support under it; there is no contact physics for objects.
look_around turns the base through a full circle in place. Where objects are
comes from a `Perception` provider (ground truth by default, labelled an upper bound; or
`skills.segmenter_perception.SegmenterPerception`, which renders the camera through `SimCameraView`).
When the perception finds an object in none of the views from where the robot stands
(`ObjectNotFound`), the skills drive to up to `search_places` other places on the map and ask again
from each (`skills.search.vantage_points`; the places already searched this episode are not picked
again), so a call may move the base; otherwise locate does not move.
Frames: positions (x, y, z) metres and yaw radians in the world frame (`odom`, REP-105).
"""
from __future__ import annotations

import math

import numpy as np

from vlm_agent.sim.env import ARM_STOW, CAMERA_NAME
from vlm_agent.skills.api import PREDICATES, ObjectNotFound, SkillAPI, SkillError, SkillResult
# The arm and approach geometry is shared with the ROS adapter (nodes/ros_skills.py); the names stay
# importable from here.
from vlm_agent.skills.arm import (  # noqa: F401
    APPROACH_ABOVE_M, ARM_CARRY, DEFAULT_ARM, L1, L2, LIFT_M, NEAR_TOLERANCE_M, PLACE_ABOVE_M, REACH_STANDOFF_M,
    RETREAT_M, SHOULDER_OFFSET, TABLE_INSET_M, TABLE_STANDOFF_M, WRIST_TO_GRASP, arm_ik, offset, place_point_on_box,
    place_point_on_object, smooth_trajectory, standoff_m,
)
from vlm_agent.skills.perception import Detection, GroundTruthPerception, Perception
from vlm_agent.skills.resolver import normalise_phrase

LOOK_AROUND_STOPS = 12  # look_around turns a full circle in 30 degree steps


def _fmt(position) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in position) + ")"


class SimSkills(SkillAPI):
    """Skills executed in a `NavEnv` whose episode is loaded.

    perception: where objects are (default `GroundTruthPerception(env)`, an upper bound; every
        result is labelled with `perception.label`). The simulator's motion needs a scene id, so a
        provider that only returns positions (`Detection.name is None`) is refused with a SkillError
        until position-goal navigation exists.
    sim_dt: control period (s) of arm trajectories; max_nav_steps: navigation moves per call.
    search_places: when the perception does not find an object from here, how many other places on
        the map to drive to and look again from (0: never move to search; None: the perception's
        `config.search_places`, else 0).
    """

    def __init__(self, env, sim_dt: float = 0.05, max_nav_steps: int = 400, perception: Perception | None = None,
                 search_places: int | None = None):
        if search_places is not None and (not isinstance(search_places, int) or isinstance(search_places, bool) or search_places < 0):
            raise ValueError(f"search_places must be an int >= 0 or None, got {search_places!r}")
        self.env = env
        self.sim_dt = sim_dt
        self.max_nav_steps = max_nav_steps
        self._search_places = search_places
        self.searched_from: list[tuple[float, float]] = []  # (x, y) of searches that found nothing, this episode
        self.perception = perception if perception is not None else GroundTruthPerception(env)
        self.log: list[str] = []
        self.done_called = False
        self._gripper_closed = False  # NavEnv.reset opens the gripper

    # -- object references -------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Scene id (object or furniture name) for a reference like "red cube", "the table", "obj_3"."""
        det = self._locate_searching(ref)
        if det.name is None:
            raise SkillError(f"'{ref}' was located at {_fmt(det.position)} but the simulator's skills need a scene id "
                             f"(position-only perception is not supported by SimSkills yet)")
        return det.name

    @property
    def search_places(self) -> int:
        """The constructor's `search_places`, or (None) the current perception's `config.search_places`
        (read at each search: evaluators swap the perception in after construction)."""
        if self._search_places is not None:
            return self._search_places
        return int(getattr(getattr(self.perception, "config", None), "search_places", 0))

    def _locate_searching(self, ref: str) -> Detection:
        """`perception.locate(ref)`; when it finds nothing from here, from up to `search_places` other
        places (see the module docstring). Raises `ObjectNotFound` when no place shows it."""
        from vlm_agent.sim.world import ROBOT_RADIUS
        from vlm_agent.skills.search import search_from_places

        try:
            return self.perception.locate(ref)
        except ObjectNotFound as exc:
            if not self.search_places:
                raise
            first = exc
        env = self.env

        def drive(xy) -> bool:
            try:
                self._drive_to_point(xy)
            except SkillError:
                return False
            return True

        grid = env.grid
        return search_from_places(lambda: self.perception.locate(ref), first, env.pose[:2], grid.clearance, grid.gx, grid.gy,
                                  self.searched_from, self.search_places, ROBOT_RADIUS, drive, lambda: env.pose[:2])

    def _label(self, name: str) -> str:
        try:
            return self.env.world.object(name).label
        except KeyError:
            return self.env.world.furniture_piece(name).kind

    # -- skills ------------------------------------------------------------------------------
    def navigate_to(self, object: str) -> SkillResult:
        name = self.resolve(object)
        if name == self.env.held:
            raise SkillError(f"already holding {self._label(name)}")
        self._drive_to(name)
        return self._result(True, f"at {self._label(name)}")

    def pick(self, object: str) -> SkillResult:
        env = self.env
        name = self.resolve(object)
        if env.held is not None:
            raise SkillError(f"already holding {env.world.object(env.held).label}")
        if name not in {o.name for o in env.world.objects}:
            raise SkillError(f"'{object}' is not an object that can be picked")
        obj = env.world.object(name)
        if obj.shape == "plate":
            raise SkillError("plates are too flat to grasp")
        self._drive_to(name)
        p = np.asarray(obj.pos)
        self.open_gripper()
        self._reach(offset(p, APPROACH_ABOVE_M))
        self._reach(p)
        self.close_gripper()
        if env.held != name:
            self._reach(offset(p, RETREAT_M))
            raise SkillError(f"grasp of {obj.label} missed")
        self._reach(offset(p, LIFT_M))
        self._carry()
        return self._result(True, f"holding {obj.label}")

    def place_on(self, object: str) -> SkillResult:
        env = self.env
        if env.held is None:
            raise SkillError("not holding anything")
        name = self.resolve(object)
        if name == env.held:
            raise SkillError("cannot place an object on itself")
        held = env.world.object(env.held)
        self._drive_to(name)
        x, y, yaw = env.pose
        try:
            dest = env.world.object(name)
            point = np.array(place_point_on_object(dest.pos, dest.half_height, held.half_height))
        except KeyError:
            box = env.world.furniture_piece(name)
            # the point on the table nearest to the robot, TABLE_INSET_M inside its edge
            point = np.array(place_point_on_box((x, y), box.xy_min, box.xy_max, box.top_z, held.half_height))
            self._face(point[:2])
        self._reach(offset(point, PLACE_ABOVE_M))
        self._reach(point)
        self.open_gripper()
        self._reach(offset(point, RETREAT_M))
        self._stow()
        obj = env.world.object(held.name)
        if obj.support != name:
            raise SkillError(f"{held.label} fell onto {self._support_label(obj.support)} instead of {self._label(name)}")
        return self._result(True, f"{held.label} is on {self._label(name)}")

    def open_gripper(self) -> SkillResult:
        self.env.set_gripper(0.0)
        self._gripper_closed = False
        self._settle(0.4)
        return self._result(True, "gripper open")

    def close_gripper(self) -> SkillResult:
        self.env.set_gripper(1.0)
        self._gripper_closed = True
        self._settle(0.4)
        held = self.env.held
        return self._result(True, f"gripper closed on {self.env.world.object(held).label}" if held else "gripper closed on nothing")

    def look_around(self) -> SkillResult:
        seen: dict[str, Detection] = {}
        for _ in range(LOOK_AROUND_STOPS):
            for det in self.perception.visible():
                seen.setdefault(det.label, det)
            self.env.step_velocity(0.0, 1.0, 2 * math.pi / LOOK_AROUND_STOPS)
            self._follow_held()
        if not seen:
            return self._result(True, "seen: nothing")
        return self._result(True, "seen: " + ", ".join(sorted(seen)))

    def locate(self, object: str) -> SkillResult:
        try:
            det = self.perception.locate(object)
        except SkillError as exc:
            return self._result(False, f"{object} not found: {exc}", found=False)
        return self._result(True, f"{det.label} at {_fmt(det.position)} m ({det.frame})", found=True,
                            position=det.position, frame=det.frame)

    def done(self) -> SkillResult:
        self.done_called = True
        return self._result(True, "done")

    # -- state and target-state predicates -------------------------------------------------------
    def state(self) -> dict:
        """held (label or None), gripper ("open"/"closed"), base_pose [x m, y m, yaw rad] in odom, and
        per object "support/<label>": the label of what it rests on ("floor", "table", "gripper", ...)."""
        env = self.env
        out = {
            "held": env.world.object(env.held).label if env.held else None,
            "gripper": "closed" if self._gripper_closed else "open",
            "base_pose": [round(float(v), 3) for v in env.pose],
        }
        labels = [o.label for o in env.world.objects]
        for o in env.world.objects:
            key = o.label if labels.count(o.label) == 1 else o.name
            out[f"support/{key}"] = self._support_label(o.support)
        return out

    def _support_label(self, support: str) -> str:
        if support in ("floor", "gripper"):
            return support
        try:
            return self._label(support)
        except KeyError:
            return support

    def holds(self, predicate: str, args: tuple[str, ...]) -> bool:
        env = self.env
        if predicate not in PREDICATES or len(args) != len(PREDICATES[predicate][0]):
            raise SkillError(f"unknown predicate {predicate}/{len(args)}")
        if predicate == "gripper_open":
            return not self._gripper_closed
        if predicate == "gripper_closed":
            return self._gripper_closed
        if predicate == "holding":
            if normalise_phrase(args[0]) in ("nothing", "none"):
                return env.held is None
            return env.held is not None and env.held == self.resolve(args[0])
        if predicate == "near":
            name = self.resolve(args[0])
            standoff = standoff_m(name in {o.name for o in env.world.objects})
            return env.distance_to(name) <= standoff + NEAR_TOLERANCE_M
        obj, support = self.resolve(args[0]), self.resolve(args[1])
        try:
            spec = env.world.object(obj)
        except KeyError:
            raise SkillError(f"'{args[0]}' is not an object") from None
        return env.held != obj and spec.support == support

    def _result(self, success: bool, feedback: str, **extra) -> SkillResult:
        return SkillResult(success, feedback, perception=self.perception.label, **extra)

    def execute(self, call):
        result = super().execute(call)
        if result.perception is None:  # failures raised as SkillError: still say who perceived
            result.perception = self.perception.label
        return result

    # -- motion --------------------------------------------------------------------------------
    def _drive_to(self, name: str) -> None:
        """Drive until the base is at the grasp standoff of `name` (object) or next to it (furniture), facing it."""
        from vlm_agent.sim.oracle import NavOracle

        env = self.env
        is_object = name in {o.name for o in env.world.objects}
        standoff = standoff_m(is_object)
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
        if env.distance_to(name) > standoff + NEAR_TOLERANCE_M:
            raise SkillError(f"blocked on the way to {name} ({env.distance_to(name):.2f} m away)")

    def _drive_to_point(self, xy, radius: float = 0.3) -> None:
        """Drive (the navigation oracle's moves on a field towards the point) until the base is within
        `radius` + 0.1 m of `xy` (world x, y, m)."""
        from vlm_agent.sim.oracle import NavOracle

        env = self.env
        field = env.point_cost_field(float(xy[0]), float(xy[1]), radius)
        oracle = NavOracle(env)
        for _ in range(self.max_nav_steps):
            if math.dist(env.pose[:2], xy) <= radius + 0.1:
                return
            self._execute_primitive(oracle.best_move_on_field(field))
        raise SkillError(f"could not reach {_fmt(xy)} within {self.max_nav_steps} moves")

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
        self._move_arm(DEFAULT_ARM.reach_joints(env.pose, point), duration)
        err = float(np.linalg.norm(env.grasp_point() - np.asarray(point)))
        if err > 0.03:
            raise SkillError(f"arm could not reach the target (error {err:.3f} m)")

    def _carry(self):
        self._move_arm(ARM_CARRY, 0.8)

    def _stow(self):
        self._move_arm(ARM_STOW, 0.8)

    def _move_arm(self, target, duration: float) -> None:
        env = self.env
        for _t, positions in smooth_trajectory(env.arm_targets(), target, duration, self.sim_dt):
            env.set_arm_targets(positions)
            env.step_physics(self.sim_dt)
        self._settle(0.5)

    def _settle(self, seconds: float) -> None:
        self.env.step_physics(seconds)


class SimCameraView:
    """The env's egocentric camera rendered at a size of its own (width x height px) from the env's
    live MuJoCo state, for perception providers that need a camera other than the env's observation
    size (`skills.segmenter_perception`): `rgbd()` ((H, W, 3) uint8, (H, W) float32 metres along the
    optical axis, +inf beyond the env's `max_depth_m`), `segmentation()` ((H, W) int32 geom ids, -1
    none), `object_mask(name)` ((H, W) bool, ground truth), `intrinsics()` at this size with the
    env's vertical field of view; the optical frame's pose is `env.camera_optical_pose()`. One GL
    context for the view's lifetime (a new episode's model only uploads its assets); `close()` frees it."""

    def __init__(self, env, width: int = 128, height: int = 128):
        self.env = env
        self.width, self.height = int(width), int(height)
        self._renderer = None

    def _prepare(self):
        import mujoco

        from vlm_agent.sim.renderer import SceneRenderer

        env = self.env
        if env.model is None:
            raise RuntimeError("the env has no episode loaded (NavEnv.reset first)")
        if self._renderer is None:
            self._renderer = SceneRenderer(self.height, self.width, multisamples=0)
        cam = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        self._renderer.set_model(env.model)
        env.model.cam_fovy[cam] = env.config.vertical_fov_deg
        mujoco.mj_kinematics(env.model, env.data)  # mocap poses reach the camera only through these
        mujoco.mj_camlight(env.model, env.data)
        self._renderer.update(env.data, cam)
        return self._renderer

    def rgbd(self) -> tuple[np.ndarray, np.ndarray]:
        rgb, depth = self._prepare().rgbd()
        depth[depth > self.env.config.max_depth_m] = np.inf
        return rgb, depth

    def segmentation(self) -> np.ndarray:
        return self._prepare().segmentation()

    def object_mask(self, name: str) -> np.ndarray:
        import mujoco

        return self.segmentation() == mujoco.mj_name2id(self.env.model, mujoco.mjtObj.mjOBJ_GEOM, name)

    def intrinsics(self):
        from vlm_agent.sensors.camera_model import CameraIntrinsics

        return CameraIntrinsics.from_fov(self.width, self.height, self.env.config.vertical_fov_deg)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
