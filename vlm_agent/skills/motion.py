"""Motion executor core: runs NaVid primitives closed-loop on odometry (plain Python, no ROS).

A plan is a list of `NavPrimitive`s executed in order. Each primitive is measured from the pose at
which it starts, in the odometry frame (REP-105 `odom`, x forward, yaw counter-clockwise, REP-103):

* `forward N cm`: drive until the displacement projected on the start heading reaches N cm, with a
  trapezoidal speed profile (accelerate at `linear_accel_mps2` up to `max_linear_speed_mps`, brake
  with v = sqrt(2 a d) on the remaining distance d, never below a creep speed until within
  `distance_tolerance_m`) and a small heading hold so drift does not bend the path;
* `turn left/right N degrees`: the same profile on the unwrapped yaw change;
* `stop`: the episode ends: state `done`, reason `"stop"`, zero velocity.

Every primitive has a timeout (profile time x `timeout_factor` + `timeout_margin_s`); exceeding it,
a non-finite pose, or odometry older than `odom_timeout_s` aborts the plan with a reason and zero
velocity. In `goal_pose` mode the executor emits the target pose of each primitive (for Nav2's
`/goal_pose`) instead of velocities and still judges completion and timeouts on odometry.

Speeds m/s and rad/s, accelerations m/s^2 and rad/s^2, poses (x m, y m, yaw rad), time in seconds
from any monotonic clock, passed in explicitly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vlm_agent.actions import NavPrimitive
from vlm_agent.config import ConfigBase, param
from vlm_agent.geometry import wrap_angle

IDLE, EXECUTING, DONE, ABORTED = "idle", "executing", "done", "aborted"
MODES = ("velocity", "goal_pose")


@dataclass
class MotionConfig(ConfigBase):
    """Speed profile, tolerances and timeouts for executing primitives.

    Keep the speed/acceleration limits at or below the safety supervisor's, or the supervisor's
    ramp will lag the profile and the robot will overshoot.
    """

    mode: str = param("velocity", "velocity: closed-loop Twist on cmd_vel_raw; goal_pose: target poses for Nav2", choices=MODES)
    max_linear_speed_mps: float = param(0.25, "cruise speed of forward primitives", min=0.01, max=2.0)
    max_angular_speed_radps: float = param(0.8, "cruise rate of turn primitives", min=0.05, max=5.0)
    linear_accel_mps2: float = param(0.5, "acceleration and braking of forward primitives", min=0.01, max=10.0)
    angular_accel_radps2: float = param(2.0, "acceleration and braking of turn primitives", min=0.01, max=20.0)
    min_linear_speed_mps: float = param(0.03, "creep speed so the profile reaches the tolerance", min=0.0, max=0.5)
    min_angular_speed_radps: float = param(0.1, "creep rate so turns reach the tolerance", min=0.0, max=1.0)
    distance_tolerance_m: float = param(0.01, "forward primitive is done within this distance of its target", min=0.001, max=0.5)
    yaw_tolerance_rad: float = param(0.02, "turn primitive is done within this angle of its target", min=0.001, max=0.5)
    settle_time_s: float = param(0.25, "near the target, speed <= remaining / settle_time_s (absorbs loop latency; 0 = off)", min=0.0, max=5.0)
    heading_gain: float = param(1.5, "rad/s per rad of heading error while driving forward (0 = off)", min=0.0, max=10.0)
    timeout_factor: float = param(3.0, "a primitive times out after this multiple of its profile time ...", min=1.0, max=100.0)
    timeout_margin_s: float = param(3.0, "... plus this margin", min=0.0, max=600.0)
    odom_timeout_s: float = param(0.5, "abort when odometry is older than this while executing", min=0.01, max=10.0)
    max_primitives: int = param(8, "plans longer than this are rejected (NaVid emits at most 3)", min=1, max=1000)

    def __post_init__(self):
        super().__post_init__()
        if self.min_linear_speed_mps > self.max_linear_speed_mps:
            raise ValueError("MotionConfig.min_linear_speed_mps: must not exceed max_linear_speed_mps")
        if self.min_angular_speed_radps > self.max_angular_speed_radps:
            raise ValueError("MotionConfig.min_angular_speed_radps: must not exceed max_angular_speed_radps")


@dataclass(frozen=True)
class Pose2D:
    """Planar pose in the odometry frame: x, y in metres, yaw in radians (CCW positive)."""

    x: float
    y: float
    yaw: float

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.x, self.y, self.yaw))


@dataclass(frozen=True)
class MotionCommand:
    """What to do this tick: a Twist (m/s, rad/s) in velocity mode, a goal pose in goal_pose mode.

    `goal` is set only on the tick a new goal must be sent. `state` is the plan's state; `reason`
    explains `done`/`aborted` ("completed", "stop", "timeout ...", ...).
    """

    linear_x: float
    angular_z: float
    state: str
    reason: str = ""
    goal: Pose2D | None = None
    index: int = -1


def profile_time(distance: float, v_max: float, accel: float) -> float:
    """Duration of a trapezoidal (or triangular) profile covering `distance` from and to rest."""
    distance = abs(distance)
    ramp = v_max * v_max / accel  # distance spent accelerating plus braking at full speed
    if distance <= ramp:
        return 2.0 * math.sqrt(distance / accel)
    return 2.0 * v_max / accel + (distance - ramp) / v_max


def profile_speed(remaining: float, previous: float, v_max: float, v_min: float, accel: float, dt: float, settle_time_s: float = 0.0) -> float:
    """Speed magnitude for a closed-loop trapezoid: min(cruise, ramp-up from `previous`, brake sqrt(2 a d),
    d / settle_time_s), at least `v_min`.

    The last term only bites in the final centimetres: sqrt(2 a d) still asks for 0.17 m/s at 1 cm
    (a = 1.5), and odometry, control and supervisor ticks add ~0.1 s before a stop takes effect.
    """
    remaining = max(remaining, 0.0)
    brake = math.sqrt(2.0 * accel * remaining)
    if settle_time_s > 0:
        brake = min(brake, remaining / settle_time_s)
    return max(v_min, min(v_max, previous + accel * dt, brake))


class MotionExecutor:
    """Executes one plan at a time; call `update(pose, pose_time, now)` at the control rate.

    `start(plan_id, primitives)` replaces the current plan (the old one is reported aborted by the
    caller if it was still executing); `cancel(reason)` aborts it.
    """

    def __init__(self, config: MotionConfig | None = None):
        self.config = config or MotionConfig()
        self.plan_id: int | None = None
        self.state = IDLE
        self.reason = ""
        self._plan: list[NavPrimitive] = []
        self._index = 0
        self._start_pose: Pose2D | None = None
        self._target: Pose2D | None = None
        self._prim_start_time = 0.0
        self._timeout = 0.0
        self._turned = 0.0
        self._last_yaw = 0.0
        self._speed = 0.0  # current commanded magnitude (m/s or rad/s) for the ramp
        self._last_time: float | None = None
        self.executed: list[dict] = []  # per finished primitive: kind, target, achieved, error, seconds

    def set_config(self, config: MotionConfig) -> None:
        self.config = config

    # -- plan control -------------------------------------------------------------------------
    def start(self, plan_id: int, primitives: list[NavPrimitive]) -> None:
        """Begin a plan; an empty or over-long plan is refused with ValueError (nothing moves)."""
        if not primitives:
            raise ValueError("plan has no primitives")
        if len(primitives) > self.config.max_primitives:
            raise ValueError(f"plan has {len(primitives)} primitives, more than max_primitives={self.config.max_primitives}")
        self.plan_id = plan_id
        self._plan = list(primitives)
        self._index = 0
        self._start_pose = None  # taken from the first pose seen by update()
        self.state, self.reason = EXECUTING, ""
        self._speed = 0.0
        self.executed = []

    def cancel(self, reason: str) -> None:
        if self.state == EXECUTING:
            self._finish(ABORTED, reason)

    @property
    def current(self) -> NavPrimitive | None:
        return self._plan[self._index] if self.state == EXECUTING and self._index < len(self._plan) else None

    # -- control loop -------------------------------------------------------------------------
    def update(self, pose: Pose2D | None, pose_time: float | None, now: float) -> MotionCommand:
        """One control tick. `pose_time` is when `pose` arrived (same clock as `now`)."""
        dt = 0.0 if self._last_time is None else max(0.0, min(now - self._last_time, 0.2))
        self._last_time = now
        if self.state != EXECUTING:
            return MotionCommand(0.0, 0.0, self.state, self.reason)
        if pose is None or pose_time is None:
            return self._abort("no odometry")
        if not pose.finite():
            return self._abort(f"non-finite odometry pose ({pose.x}, {pose.y}, {pose.yaw})")
        if now - pose_time > self.config.odom_timeout_s:
            return self._abort(f"odometry stale for {now - pose_time:.2f} s (timeout {self.config.odom_timeout_s:g} s)")

        goal = None
        if self._start_pose is None:
            goal = self._begin_primitive(pose, now)
            if self.state != EXECUTING:
                return MotionCommand(0.0, 0.0, self.state, self.reason)
        prim = self._plan[self._index]
        if now - self._prim_start_time > self._timeout:
            return self._abort(
                f"timeout: {prim.to_text()} not finished after {now - self._prim_start_time:.1f} s "
                f"(limit {self._timeout:.1f} s, remaining {self._remaining(prim, pose):.3f})"
            )
        remaining = self._remaining(prim, pose)
        tolerance = self.config.distance_tolerance_m if prim.kind == "forward" else self.config.yaw_tolerance_rad
        if remaining <= tolerance:
            self._record(prim, pose, now, remaining)
            self._index += 1
            self._start_pose = None
            self._speed = 0.0
            if self._index >= len(self._plan):
                self._finish(DONE, "completed")
                return MotionCommand(0.0, 0.0, DONE, self.reason, goal)
            goal = self._begin_primitive(pose, now) or goal
            if self.state != EXECUTING:
                return MotionCommand(0.0, 0.0, self.state, self.reason)
            prim = self._plan[self._index]
            remaining = self._remaining(prim, pose)

        if self.config.mode == "goal_pose":
            return MotionCommand(0.0, 0.0, EXECUTING, "", goal, self._index)
        cfg = self.config
        if prim.kind == "forward":
            self._speed = profile_speed(
                remaining, self._speed, cfg.max_linear_speed_mps, cfg.min_linear_speed_mps, cfg.linear_accel_mps2, dt, cfg.settle_time_s
            )
            heading_error = wrap_angle(self._start_pose.yaw - pose.yaw)
            w = max(-0.5 * cfg.max_angular_speed_radps, min(0.5 * cfg.max_angular_speed_radps, cfg.heading_gain * heading_error))
            return MotionCommand(self._speed, w, EXECUTING, "", goal, self._index)
        self._speed = profile_speed(
            remaining, self._speed, cfg.max_angular_speed_radps, cfg.min_angular_speed_radps, cfg.angular_accel_radps2, dt, cfg.settle_time_s
        )
        sign = 1.0 if prim.kind == "turn_left" else -1.0
        return MotionCommand(0.0, sign * self._speed, EXECUTING, "", goal, self._index)

    # -- helpers ------------------------------------------------------------------------------
    def _begin_primitive(self, pose: Pose2D, now: float) -> Pose2D | None:
        prim = self._plan[self._index]
        if prim.kind == "stop":
            self._finish(DONE, "stop")
            return None
        cfg = self.config
        self._start_pose = pose
        self._prim_start_time = now
        self._turned, self._last_yaw = 0.0, pose.yaw
        if prim.kind == "forward":
            nominal = profile_time(prim.distance_m, cfg.max_linear_speed_mps, cfg.linear_accel_mps2)
            d = prim.distance_m
            self._target = Pose2D(pose.x + d * math.cos(pose.yaw), pose.y + d * math.sin(pose.yaw), pose.yaw)
        else:
            nominal = profile_time(prim.yaw_rad, cfg.max_angular_speed_radps, cfg.angular_accel_radps2)
            self._target = Pose2D(pose.x, pose.y, wrap_angle(pose.yaw + prim.yaw_rad))
        self._timeout = cfg.timeout_factor * nominal + cfg.timeout_margin_s
        return self._target

    def _remaining(self, prim: NavPrimitive, pose: Pose2D) -> float:
        """Distance (m) or angle (rad) still to go; negative once past the target."""
        start = self._start_pose
        if prim.kind == "forward":
            travelled = (pose.x - start.x) * math.cos(start.yaw) + (pose.y - start.y) * math.sin(start.yaw)
            return prim.distance_m - travelled
        # Unwrapped accumulation: a 350-degree turn request must not be mistaken for -10 degrees.
        self._turned += wrap_angle(pose.yaw - self._last_yaw)
        self._last_yaw = pose.yaw
        return abs(prim.yaw_rad) - math.copysign(1.0, prim.yaw_rad) * self._turned

    def _record(self, prim: NavPrimitive, pose: Pose2D, now: float, remaining: float) -> None:
        self.executed.append(
            {"kind": prim.kind, "value": prim.value, "error": -remaining, "seconds": now - self._prim_start_time}
        )

    def _finish(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason
        self._speed = 0.0
        self._start_pose = None

    def _abort(self, reason: str) -> MotionCommand:
        self._finish(ABORTED, reason)
        return MotionCommand(0.0, 0.0, ABORTED, reason)
