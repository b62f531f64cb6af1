"""The embedded simulator's environment: a kinematic diff-drive base with an RGB-D camera and a
4-joint arm with a parallel gripper, in a procedurally generated MuJoCo world.

* `NavEnv.step(NavPrimitive)`: NaVid primitives (forward N cm, turn N degrees, stop), collision-checked.
* `NavEnv.step_velocity(v, w, dt)`: diff-drive integration for the ROS sim node (`/cmd_vel`).
* Arm/gripper: `set_arm_targets`, `set_gripper`, `step_physics` (position servos stepped by MuJoCo).
  Grasping is approximated: when the gripper closes with an object's centre within reach of the
  grasp point, the object attaches to the gripper; on opening it is released and settles on the
  highest support under it (another object, a table, or the floor).

Frames: world = `odom` (x, y metres, yaw radians CCW, REP-103/105); `base_link` is the base centre
on the floor. Images: rgb (H, W, 3) uint8; depth (H, W) float32 metres along the optical axis,
+inf where nothing is within `max_depth_m` (REP-118's "too far").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
import mujoco

from vlm_agent.actions import NavPrimitive
from vlm_agent.config import ConfigBase, param
from vlm_agent.geometry import wrap_angle
from vlm_agent.sim.episodes import Episode
from vlm_agent.sim.geometry import CollisionModel, GridMap
from vlm_agent.sim.metrics import SUCCESS_DISTANCE_M, nav_episode_metrics
from vlm_agent.sim.mjcf import MODEL_CACHE, ModelCache
from vlm_agent.sim.renderer import SceneRenderer
from vlm_agent.sim.world import OBJECT_SIZE, ROBOT_RADIUS, WorldSpec

ARM_JOINTS = ("arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist")
GRIPPER_JOINTS = ("gripper_left", "gripper_right")
JOINT_NAMES = ARM_JOINTS + GRIPPER_JOINTS
ARM_STOW = (0.0, 1.5, -2.8, 0.0)  # rad; folded up behind the camera's view
GRIPPER_OPEN_M = 0.09  # finger travel when fully open (command 0)
GRASP_WINDOW_S = 0.6  # s after a close command during which the closing fingers can catch an object
CAMERA_NAME = "egocentric"


@dataclass
class SimConfig(ConfigBase):
    """Simulator settings (also the `mujoco_sim` node's rendering parameters).

    width/height: camera image size in pixels; models train at 64-128 px, the ROS node uses 320x240.
    vertical_fov_deg: the camera's vertical field of view (MuJoCo `fovy`).
    """

    width: int = param(128, "camera image width (px)", min=16, max=1280)
    height: int = param(128, "camera image height (px)", min=16, max=960)
    vertical_fov_deg: float = param(60.0, "vertical field of view (degrees)", min=20.0, max=120.0)
    render_depth: bool = param(True, "render the depth image with every observation")
    shadows: bool = param(False, "render shadows (about 10x slower in software GL)")
    reflections: bool = param(False, "render floor reflections (slower)")
    antialias: bool = param(False, "4x multisample anti-aliasing (about 3x slower in software GL)")
    success_distance_m: float = param(SUCCESS_DISTANCE_M, "navigation success radius around the goal object (m)", min=0.1, max=5.0)
    max_depth_m: float = param(10.0, "depth beyond this is reported as +inf (m)", min=0.5, max=50.0)
    grid_resolution_m: float = param(0.1, "occupancy grid cell for oracles and geodesic distances (m)", min=0.02, max=0.5)
    max_steps: int = param(0, "override the episode's step limit (0 = use the episode's)", min=0)


@dataclass
class NavObservation:
    """One observation. rgb (H, W, 3) uint8; depth (H, W) float32 metres (None if not rendered);
    pose (x_m, y_m, yaw_rad) of base_link in `odom`; step = primitives executed so far."""

    rgb: np.ndarray
    depth: np.ndarray | None
    pose: tuple[float, float, float]
    instruction: str
    step: int
    done: bool
    collided: bool = False


class NavEnv:
    """Episodes of the embedded simulator (navigation, manipulation, segmentation share it)."""

    def __init__(self, config: SimConfig | None = None, model_cache: ModelCache | None = None):
        self.config = config or SimConfig()
        self.cache = model_cache or MODEL_CACHE
        self._renderer: SceneRenderer | None = None
        self.model = None
        self.data = None
        self.episode: Episode | None = None
        self.world: WorldSpec | None = None
        self.steps_taken = 0  # env steps (primitives or velocity commands) since reset, for throughput stats

    # -- episode lifecycle ------------------------------------------------------------------
    def reset(self, episode: Episode) -> NavObservation:
        self.episode = episode
        self.world = episode.world()
        self.model = self.cache.get(self.world)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        self._base_mocap = int(m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "base_link")])
        self._obj_mocap = {o.name: int(m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, o.name)]) for o in self.world.objects}
        self._obj_geom = {o.name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, o.name) for o in self.world.objects}
        self._joint_qpos = [int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]) for j in JOINT_NAMES]
        self._joint_dof = [int(m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]) for j in JOINT_NAMES]
        self._act = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in JOINT_NAMES]
        self._grasp_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "grasp_site")
        for k, q in zip(self._joint_qpos[:4], ARM_STOW):
            self.data.qpos[k] = q
        for k, q in zip(self._joint_qpos[4:], (GRIPPER_OPEN_M, GRIPPER_OPEN_M)):
            self.data.qpos[k] = q
        self.data.ctrl[self._act] = list(ARM_STOW) + [GRIPPER_OPEN_M, GRIPPER_OPEN_M]
        self._gripper_cmd = 0.0
        self._closing_since = -np.inf
        self.held: str | None = None
        self._x, self._y, self._yaw = (float(v) for v in episode.start_pose)
        self._sync_objects()
        self._sync_base()
        mujoco.mj_forward(self.model, self.data)
        self._collision = CollisionModel.from_world(self.world)
        self._grid: GridMap | None = None
        self._fields: dict = {}
        self._shortest: float | None = None
        self.step_count = 0
        self.done = False
        self.stopped = False
        self.collisions = 0
        self._path_length = 0.0
        self._subgoal = 0
        self._min_dist = math.inf
        self._trajectory = [(self._x, self._y, self._yaw)]
        self._update_progress()
        return self.observation()

    @property
    def max_steps(self) -> int:
        return self.config.max_steps or self.episode.max_steps

    @property
    def pose(self) -> tuple[float, float, float]:
        return (self._x, self._y, self._yaw)

    @property
    def trajectory(self) -> list[tuple[float, float, float]]:
        return list(self._trajectory)

    # -- navigation -------------------------------------------------------------------------
    def step(self, primitive: NavPrimitive, render: bool = True) -> NavObservation:
        """Execute one NaVid primitive kinematically and return the new observation (images only if
        `render`)."""
        self._require_episode()
        if not isinstance(primitive, NavPrimitive):
            raise TypeError(f"step() takes a NavPrimitive, got {type(primitive).__name__}")
        collided = False
        if self.done:
            return self.observation(render)
        if primitive.kind == "stop":
            self.stopped = True
            self.done = True
        elif primitive.kind == "forward":
            x, y, travelled, collided = self._collision.sweep(self._x, self._y, self._yaw, primitive.distance_m)
            self._move_to(x, y, self._yaw, travelled)
        else:
            self._move_to(self._x, self._y, wrap_angle(self._yaw + primitive.yaw_rad), 0.0)
        self.collisions += int(collided)
        self.step_count += 1
        self.steps_taken += 1
        if self.step_count >= self.max_steps:
            self.done = True
        obs = self.observation(render)
        obs.collided = collided
        return obs

    def step_velocity(self, linear_mps: float, angular_radps: float, dt_s: float) -> bool:
        """Integrate diff-drive (unicycle) motion for `dt_s` seconds; returns True if a collision blocked
        translation. Rotation in place is always allowed (the footprint is a circle).

        Raises ValueError for non-finite inputs (the node logs the reason and drops the command)."""
        self._require_episode()
        for name, v in (("linear_mps", linear_mps), ("angular_radps", angular_radps), ("dt_s", dt_s)):
            if not math.isfinite(v):
                raise ValueError(f"step_velocity: {name} is not finite ({v})")
        if dt_s <= 0:
            return False
        n = max(1, int(math.ceil(dt_s / 0.02)))
        h = dt_s / n
        blocked = False
        x, y, yaw, length = self._x, self._y, self._yaw, 0.0
        for _ in range(n):
            mid = yaw + 0.5 * angular_radps * h
            nx, ny = x + linear_mps * h * math.cos(mid), y + linear_mps * h * math.sin(mid)
            if abs(linear_mps) > 0 and not self._collision.free(nx, ny):
                blocked = True
            else:
                length += math.hypot(nx - x, ny - y)
                x, y = nx, ny
            yaw = wrap_angle(yaw + angular_radps * h)
        self.steps_taken += 1
        self.collisions += int(blocked)
        self._move_to(x, y, yaw, length)
        return blocked

    def stop(self) -> None:
        """Declare the episode finished at the current pose (what a `stop` primitive does)."""
        self._require_episode()
        self.stopped = True
        self.done = True

    def set_pose(self, x: float, y: float, yaw: float) -> None:
        """Teleport the base (tests, data augmentation); not counted as travelled path."""
        self._require_episode()
        self._x, self._y, self._yaw = float(x), float(y), wrap_angle(float(yaw))
        self._sync_base()
        mujoco.mj_kinematics(self.model, self.data)
        self._update_progress()

    def _move_to(self, x, y, yaw, travelled):
        self._x, self._y, self._yaw = x, y, yaw
        self._path_length += travelled
        self._trajectory.append((x, y, yaw))
        self._sync_base()
        if self.held is not None:  # a held object rides along with the gripper
            mujoco.mj_kinematics(self.model, self.data)
            self._set_object(self.held, tuple(self.grasp_point()))
        self._update_progress()

    def _update_progress(self):
        goals = self.nav_goals
        if not goals:
            return
        while self._subgoal < len(goals) - 1 and self.distance_to(goals[self._subgoal]) <= self.config.success_distance_m:
            self._subgoal += 1
        if self._subgoal == len(goals) - 1:
            self._min_dist = min(self._min_dist, self.distance_to(goals[-1]))

    # -- ground truth (for oracles and metrics) -----------------------------------------------
    @property
    def nav_goals(self) -> list[str]:
        return list(self.episode.goal_objects) if self.episode.suite == "nav" else []

    @property
    def current_goal(self) -> str | None:
        """The object the agent should reach next (nav), following the instruction's order."""
        goals = self.nav_goals
        return goals[self._subgoal] if goals else None

    @property
    def subgoal_index(self) -> int:
        return self._subgoal

    def object_position(self, name: str) -> tuple[float, float, float]:
        return self.world.object(name).pos

    def distance_to(self, name: str) -> float:
        """Euclidean floor-plane distance (m) from base_link to an object's centre or a furniture box."""
        try:
            p = self.world.object(name).pos
            return math.hypot(p[0] - self._x, p[1] - self._y)
        except KeyError:
            box = self.world.furniture_piece(name)
            dx = max(0.0, abs(self._x - box.centre[0]) - box.half[0])
            dy = max(0.0, abs(self._y - box.centre[1]) - box.half[1])
            return math.hypot(dx, dy)

    @property
    def collision(self) -> CollisionModel:
        return self._collision

    @property
    def grid(self) -> GridMap:
        if self._grid is None:
            self._grid = GridMap(self.world, self.config.grid_resolution_m, self._collision)
        return self._grid

    def cost_field(self, goal: str, radius: float = 0.75, margin: float = 0.15) -> np.ndarray:
        """Soft, everywhere-finite cost-to-go (ny, nx) towards the free cells within `radius` m of `goal`
        (an object or furniture name). Cells closer than the robot radius to an obstacle cost 60x,
        cells within `margin` more of it up to 5x: finite everywhere, so the oracle can label any state."""
        key = (goal, radius, margin)
        if key not in self._fields:
            goal_mask = self._goal_region(goal, radius, self.grid.clearance > ROBOT_RADIUS + 0.05)
            self._fields[key] = self.grid.distance_field(goal_mask, self._cell_cost(margin))
        return self._fields[key]

    def point_cost_field(self, x: float, y: float, radius: float = 0.3, margin: float = 0.15) -> np.ndarray:
        """`cost_field` towards the free cells within `radius` m of the point (x, y) (world frame, m),
        or the nearest free cells to it when none is that close. Not cached."""
        grid = self.grid
        d = np.hypot(grid.gx - x, grid.gy - y)
        free = grid.clearance > ROBOT_RADIUS + 0.05
        goal_mask = (d <= radius) & free
        if not goal_mask.any():
            goal_mask = free & (d <= d[free].min() + 1e-9) if free.any() else d <= d.min() + 1e-9
        return grid.distance_field(goal_mask, self._cell_cost(margin))

    def _cell_cost(self, margin: float) -> np.ndarray:
        """Per-cell cost of the fields: 60 closer than the robot radius to an obstacle, up to 5 within
        `margin` more of it, else 1."""
        clear = self.grid.clearance
        return np.where(clear <= ROBOT_RADIUS, 60.0, 1.0 + 4.0 * np.clip((ROBOT_RADIUS + margin - clear) / margin, 0.0, 1.0))

    def _goal_region(self, goal: str, radius: float, free: np.ndarray) -> np.ndarray:
        grid = self.grid
        try:
            p = self.world.object(goal).pos
            d = np.hypot(grid.gx - p[0], grid.gy - p[1])
        except KeyError:
            box = self.world.furniture_piece(goal)
            d = np.hypot(np.maximum(np.abs(grid.gx - box.centre[0]) - box.half[0], 0), np.maximum(np.abs(grid.gy - box.centre[1]) - box.half[1], 0))
        for r in (radius, radius + 0.25, radius + 0.5, 2.0):
            mask = (d <= r) & free
            if mask.any():
                return mask
        return d <= radius

    def shortest_path_length(self) -> float:
        """Geodesic length (m) of the shortest collision-free path from the episode's start through the
        goals in order, ending within `success_distance_m` of the last (grid geodesic, 8-connected)."""
        if self._shortest is None:
            grid = self.grid
            free = grid.clearance > ROBOT_RADIUS
            cost = np.where(free, 1.0, np.inf)
            sx, sy, _ = self.episode.start_pose
            si, sj = grid.cell(sx, sy)
            src = np.zeros_like(free)
            src[si, sj] = True
            acc = grid.distance_field(src, cost)  # from the start (the start cell is the source even if blocked)
            total = math.inf
            for k, goal in enumerate(self.nav_goals):
                region = self._goal_region(goal, self.config.success_distance_m, free)
                if k == len(self.nav_goals) - 1:
                    total = float(np.min(np.where(region, acc, np.inf)))
                else:
                    acc = grid.propagate(np.where(region, acc, np.inf), cost)
            self._shortest = total if math.isfinite(total) else float("nan")
        return self._shortest

    def metrics(self, assume_stopped: bool = False) -> dict:
        """Per-episode navigation metrics (see `vlm_agent.sim.metrics`). `assume_stopped` scores the
        current pose as if the agent stopped now (the ROS path, where stop is a zero velocity)."""
        self._require_episode()
        goals = self.nav_goals
        if not goals:
            raise ValueError(f"metrics(): episode {self.episode.episode_id} is not a navigation episode")
        final = self.distance_to(goals[-1])
        out = nav_episode_metrics(
            stopped=self.stopped or assume_stopped,
            final_distance_m=final,
            min_distance_m=self._min_dist,
            path_length_m=self._path_length,
            shortest_path_m=self.shortest_path_length(),
            subgoals_done=self._subgoal == len(goals) - 1,
            success_distance_m=self.config.success_distance_m,
        )
        out.update(steps=self.step_count, collisions=self.collisions)
        return out

    # -- arm and gripper -------------------------------------------------------------------------
    def set_arm_targets(self, positions) -> None:
        """Position targets (rad) for ARM_JOINTS, clipped to the joint ranges."""
        positions = [float(p) for p in positions]
        if len(positions) != len(ARM_JOINTS) or not all(math.isfinite(p) for p in positions):
            raise ValueError(f"set_arm_targets: expected {len(ARM_JOINTS)} finite values, got {positions}")
        lo, hi = self.model.actuator_ctrlrange[self._act[:4]].T
        self.data.ctrl[self._act[:4]] = np.clip(positions, lo, hi)

    def arm_targets(self) -> np.ndarray:
        """Current position targets (rad) of ARM_JOINTS."""
        return np.asarray(self.data.ctrl[self._act[:4]], float).copy()

    def set_gripper(self, command: float) -> None:
        """Gripper command in [0, 1]: 0 open, 1 closed (the `/gripper/command` convention)."""
        command = float(command)
        if not math.isfinite(command):
            raise ValueError(f"set_gripper: command is not finite ({command})")
        new = float(np.clip(command, 0.0, 1.0))
        if new >= 0.5 > self._gripper_cmd:
            self._closing_since = float(self.data.time)
        self._gripper_cmd = new
        self._apply_gripper()

    def _apply_gripper(self):
        target = GRIPPER_OPEN_M * (1.0 - self._gripper_cmd)
        if self.held is not None:  # fingers stop at the held object's sides
            target = max(target, OBJECT_SIZE[self.world.object(self.held).shape][0] - 0.012)
        self.data.ctrl[self._act[4:]] = target

    def step_physics(self, dt_s: float) -> None:
        """Advance the arm/gripper servos by `dt_s` seconds (MuJoCo steps) and update grasping."""
        self._require_episode()
        n = max(1, int(round(dt_s / self.model.opt.timestep)))
        for _ in range(n):
            mujoco.mj_step(self.model, self.data)
        self._update_grasp()

    def grasp_point(self) -> np.ndarray:
        return self.data.site_xpos[self._grasp_site].copy()

    def _update_grasp(self):
        closed = self._gripper_cmd >= 0.5
        # An object is caught only while the fingers are closing (GRASP_WINDOW_S after the close
        # command), not by pushing an already closed gripper into it.
        closing = self.data.time - self._closing_since <= GRASP_WINDOW_S
        if self.held is None and closed and closing:
            gp = self.grasp_point()
            best, best_d = None, math.inf
            for o in self.world.objects:
                d = float(np.linalg.norm(np.asarray(o.pos) - gp))
                reach = max(0.06, OBJECT_SIZE[o.shape][0] * 0.9)
                if d < reach and d < best_d and o.shape != "plate":
                    best, best_d = o.name, d
            if best is not None:
                self.held = best
                self._set_object(best, tuple(gp), support="gripper")
                self._collision = CollisionModel.from_world(self.world)
                self._invalidate_fields()
                self._apply_gripper()
        elif self.held is not None and not closed:
            name, self.held = self.held, None
            self._settle(name)
            self._apply_gripper()
        if self.held is not None:
            self._set_object(self.held, tuple(self.grasp_point()), support="gripper")
        mujoco.mj_forward(self.model, self.data)

    def _settle(self, name: str):
        """Drop a released object onto the highest support under its centre."""
        obj = self.world.object(name)
        x, y = obj.pos[0], obj.pos[1]
        best_z, support = 0.0, "floor"
        for b in self.world.furniture:
            if abs(x - b.centre[0]) <= b.half[0] and abs(y - b.centre[1]) <= b.half[1] and b.top_z > best_z:
                best_z, support = b.top_z, b.name
        for o in self.world.objects:
            if o.name == name:
                continue
            top = o.pos[2] + o.half_height
            footprint = OBJECT_SIZE[o.shape][0]
            if math.hypot(x - o.pos[0], y - o.pos[1]) <= footprint and top > best_z and top <= obj.pos[2] + 0.02:
                best_z, support = top, o.name
        self._set_object(name, (x, y, best_z + obj.half_height), support=support)
        self._collision = CollisionModel.from_world(self.world)
        self._invalidate_fields()

    def _set_object(self, name, pos, support=None):
        obj = self.world.object(name)
        obj.pos = tuple(float(v) for v in pos)
        if support is not None:
            obj.support = support
        self.data.mocap_pos[self._obj_mocap[name]] = obj.pos

    def _invalidate_fields(self):
        self._fields.clear()
        self._grid = None

    def manip_metrics(self) -> dict:
        """Manipulation success: the moved object rests on the destination (object or furniture) and
        is not held."""
        self._require_episode()
        if self.episode.suite != "manip":
            raise ValueError(f"manip_metrics(): episode {self.episode.episode_id} is not a manipulation episode")
        target, dest = self.episode.goal_objects[:2]
        obj = self.world.object(target)
        success = self.held is None and obj.support == dest
        return {"success": float(success), "support": obj.support, "path_length": self._path_length}

    def joint_state(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """(names, positions rad|m, velocities rad/s|m/s) of the arm and gripper joints."""
        return JOINT_NAMES, self.data.qpos[self._joint_qpos].copy(), self.data.qvel[self._joint_dof].copy()

    # -- rendering ---------------------------------------------------------------------------------
    def observation(self, render: bool = True) -> NavObservation:
        self._require_episode()
        rgb = depth = None
        if render:
            rgb, depth = self.render()
        return NavObservation(rgb, depth, self.pose, self.episode.instruction, self.step_count, self.done)

    def _prepare_render(self) -> SceneRenderer:
        if self._renderer is None:
            self._renderer = SceneRenderer(
                self.config.height, self.config.width, self.config.shadows, self.config.reflections, 4 if self.config.antialias else 0
            )
        self._renderer.set_model(self.model)
        self.model.cam_fovy[self._cam] = self.config.vertical_fov_deg
        # mocap poses reach the camera only through kinematics + camera/light placement
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        self._renderer.update(self.data, self._cam)
        return self._renderer

    def render(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb (H,W,3) uint8, depth (H,W) float32 m or None) from the egocentric camera."""
        r = self._prepare_render()
        if not self.config.render_depth:
            return r.rgb(), None
        rgb, depth = r.rgbd()
        depth[depth > self.config.max_depth_m] = np.inf
        return rgb, depth

    def segmentation(self) -> np.ndarray:
        """(H, W) int32 MuJoCo geom id per pixel (-1 background)."""
        return self._prepare_render().segmentation()

    def object_mask(self, name: str, segmentation: np.ndarray | None = None) -> np.ndarray:
        """(H, W) bool ground-truth mask of one object from the segmentation render."""
        seg = self.segmentation() if segmentation is None else segmentation
        return seg == self._obj_geom[name]

    def camera_optical_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,) m, rotation (3, 3)) of the camera's optical frame (x right, y down, z forward,
        REP-103 `_optical`) in the world frame at the current pose: p_world = position + rotation @ p_optical."""
        self._require_episode()
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        rot = self.data.cam_xmat[self._cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])  # MuJoCo cameras look along -z, y up
        return self.data.cam_xpos[self._cam].copy(), rot

    def camera_intrinsics(self):
        from vlm_agent.sensors.camera_model import CameraIntrinsics

        return CameraIntrinsics.from_fov(self.config.width, self.config.height, self.config.vertical_fov_deg)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # -- internals ---------------------------------------------------------------------------------
    def _sync_base(self):
        self.data.mocap_pos[self._base_mocap] = (self._x, self._y, 0.0)
        self.data.mocap_quat[self._base_mocap] = (math.cos(self._yaw / 2), 0.0, 0.0, math.sin(self._yaw / 2))

    def _sync_objects(self):
        for o in self.world.objects:
            self.data.mocap_pos[self._obj_mocap[o.name]] = o.pos

    def _require_episode(self):
        if self.episode is None:
            raise RuntimeError("call reset(episode) first")

