"""Safety supervisor core: the last gate between any velocity command and the robot (plain Python).

Every command that reaches `/cmd_vel` passes `SafetySupervisor.update(now)`, which the node calls
from a fixed-rate timer, so the rules below hold even when every input stops arriving:

1. **Finite input**: a command with any NaN/inf component is rejected; the output is zero until the
   next valid command (reason logged and counted).
2. **Freshness**: the command must have arrived within its timeout (arrival time: Twist has no
   stamp); each required sensor (camera, depth, odometry) is judged by `StreamMonitor`
   (`vlm_agent.safety.freshness`): from its header stamps on the stamp clock when the node passes
   them (backlogs, frozen stamps and clock mismatches are stale), by arrival time otherwise. A stale or
   never-seen stream gives zero. A timeout of 0 disables that check.
3. **E-stop**: `set_estop(True)` latches zero output; only `set_estop(False)` releases it, and the
   release re-arms like a stop (rule 4) with a dwell: zero until the commander has been at rest (zero
   commands, or silence once its last command expired) for `estop_release_dwell_s`, then a *new*
   motion passes. With `estop_latch_file`
   the state survives a restart (`vlm_agent.safety.estop`); `estop_latched_at_start` requires an
   explicit release after every start.
4. **Stop**: `stop()` holds zero until the commander has come to rest (a zero or stale command)
   and then sends a new motion; so a 20 Hz command stream cannot override a stop with its next
   message of the same motion.
5. **Obstacle**: with a camera model (`set_camera(intrinsics)`, the mounting pose and footprint from
   the config), the footprint swept along the command in base_link must stay clear
   (`vlm_agent.safety.obstacle`), judged for the larger of the commanded and the current speed, with
   the zone lengthened by speed x age of the depth frame (the points do not move with the base); a
   blocked arc falls back to turning in place when that is clear.
   Before any camera model is given, the old image rule applies: a return closer than
   `obstacle_stop_distance_m` in a fixed forward ROI of the depth image zeroes forward motion.
6. **Limits**: |linear.x| and |angular.z| are clamped to the speed limits, and the change per tick to
   the acceleration limits. Safety stops (rules 1-5) bypass the acceleration limit: a watchdog that
   ramps down is not a watchdog.
7. **Runtime parameters**: once gating (the first `update`), `set_config` only accepts changes that
   make the gate stricter (`vlm_agent.safety.params.check_runtime_change`); a refused change keeps the
   old config and returns the reason. `deactivate()` (lifecycle) allows any valid config again.

Units and frames (REP-103): linear.x in m/s along base_link +x, angular.z in rad/s about base_link +z
(counter-clockwise positive). The other four Twist components are always zero (differential drive).
Time is passed in explicitly so the rules are testable without waiting: `now` is a steady clock
(`time.monotonic()`), `clock_s`/`stamp_s` the ROS clock the sensors stamp with (sim time under
`use_sim_time`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.safety.estop import EstopLatchFile
from vlm_agent.safety.freshness import StreamMonitor
from vlm_agent.safety.obstacle import CameraMount, Footprint, ObstacleDecision, ObstacleParams, ObstacleStop
from vlm_agent.safety.params import check_runtime_change
from vlm_agent.sensors.camera_model import CameraIntrinsics

SENSORS = ("camera", "depth", "odom")

# States, most severe first: the reported state is the first that applies.
STATE_ESTOP = "estop"
STATE_REJECTED = "rejected"
STATE_STALE = "stale"
STATE_STOPPED = "stopped"
STATE_OBSTACLE = "obstacle"
STATE_IDLE = "idle"  # no command yet / command stale while all sensors are fresh
STATE_OK = "ok"


@dataclass
class SafetyConfig(ConfigBase):
    """Limits, watchdog timeouts and the obstacle rule of the safety supervisor.

    Speeds in m/s and rad/s, accelerations in m/s^2 and rad/s^2, times in seconds, distances in metres.
    Timeouts of 0 disable the check for that stream (e.g. a robot without a depth camera).
    The defaults suit a small indoor base (TurtleBot-class) and the embedded sim.
    """

    max_linear_speed_mps: float = param(0.5, "clamp for |linear.x| (forward and reverse)", min=0.0, max=5.0)
    max_angular_speed_radps: float = param(1.5, "clamp for |angular.z|", min=0.0, max=10.0)
    max_linear_accel_mps2: float = param(1.0, "largest change of linear.x per second (commanded changes only)", min=0.01, max=50.0)
    max_angular_accel_radps2: float = param(3.0, "largest change of angular.z per second", min=0.01, max=100.0)
    command_timeout_s: float = param(0.5, "zero output when no command arrived for this long", min=0.0, max=10.0)
    # 0.3 s + one 20 Hz tick + transport stays inside the 0.5 s camera-fault bound.
    camera_timeout_s: float = param(0.3, "zero output when the colour camera is silent this long (0 = not required)", min=0.0, max=10.0)
    depth_timeout_s: float = param(0.3, "zero output when the depth camera is silent this long (0 = not required)", min=0.0, max=10.0)
    odom_timeout_s: float = param(0.3, "zero output when odometry is silent this long (0 = not required)", min=0.0, max=10.0)
    stamp_future_tolerance_s: float = param(
        0.1, "a sensor stamp may lie this far ahead of this node's clock (clock jitter between machines)", min=0.0, max=1.0
    )
    obstacle_stop_distance_m: float = param(
        0.35, "path kept clear ahead of the footprint at zero speed (camera model) or nearest return in the image ROI (fallback); 0 = off",
        min=0.0, max=10.0,
    )
    roi_width_fraction: float = param(0.5, "width of the forward ROI as a fraction of the image, centred", min=0.05, max=1.0)
    roi_top_fraction: float = param(0.25, "top row of the forward ROI as a fraction of the image height", min=0.0, max=0.95)
    roi_bottom_fraction: float = param(0.75, "bottom row of the forward ROI as a fraction of the image height", min=0.05, max=1.0)
    obstacle_percentile: float = param(5.0, "percentile of valid ROI depths taken as the obstacle distance (ignores speckle)", min=0.0, max=50.0)
    min_valid_fraction: float = param(
        0.1, "a forward ROI with fewer valid depth returns than this counts as blocked (image-ROI fallback only)", min=0.0, max=1.0
    )
    publish_rate_hz: float = param(20.0, "rate of /cmd_vel output; staleness is enforced at this rate", min=1.0, max=200.0, read_only=True)
    # E-stop release and persistence.
    estop_release_dwell_s: float = param(
        0.5, "after an e-stop release: the commander must rest (zero or no command) this long, then send a new motion", min=0.0, max=10.0
    )
    estop_latch_file: str = param("", "file that keeps the e-stop state across restarts (empty = not kept)", read_only=True)
    estop_latched_at_start: bool = param(False, "start with the e-stop latched: an explicit release is required", read_only=True)
    # Camera mounting (camera_link in base_link, URDF RPY) and footprint for the base-frame obstacle rule.
    # Defaults: the embedded sim robot (sim/mujoco/robot.xml); set them for your robot.
    camera_x_m: float = param(-0.07, "camera_link x in base_link (m)", min=-5.0, max=5.0, read_only=True)
    camera_y_m: float = param(0.0, "camera_link y in base_link (m)", min=-5.0, max=5.0, read_only=True)
    camera_z_m: float = param(0.95, "camera_link z in base_link, above the floor (m)", min=-1.0, max=5.0, read_only=True)
    camera_roll_rad: float = param(0.0, "camera_link roll in base_link (rad)", min=-math.pi, max=math.pi, read_only=True)
    camera_pitch_rad: float = param(
        math.radians(20.0), "camera_link pitch in base_link (rad, positive = looking down)", min=-math.pi / 2, max=math.pi / 2, read_only=True
    )
    camera_yaw_rad: float = param(0.0, "camera_link yaw in base_link (rad)", min=-math.pi, max=math.pi, read_only=True)
    robot_radius_m: float = param(0.20, "footprint radius (m), used when `footprint` is empty", min=0.01, max=5.0)
    footprint: str = param("", "footprint polygon in base_link, Nav2 style '[[x, y], ...]' (m); empty = circle of robot_radius_m", read_only=True)
    footprint_padding_m: float = param(0.02, "added around the footprint for the stop zone (m)", min=0.0, max=1.0)
    obstacle_min_height_m: float = param(0.05, "points lower than this above the floor are floor (m)", min=0.0, max=2.0)
    obstacle_max_height_m: float = param(1.1, "points higher than this are overhangs the robot passes under (m)", min=0.05, max=5.0)
    obstacle_time_to_stop_s: float = param(
        0.5, "the stop zone grows by speed x this (latency + braking time) (s)", min=0.0, max=10.0
    )
    obstacle_min_valid_fraction: float = param(
        0.5, "fewer valid depth returns than this where the camera sees the stop zone = blocked (blind or too close)", min=0.05, max=1.0
    )
    obstacle_min_points: int = param(3, "sampled depth points in the stop zone needed to block (speckle rejection)", min=1, max=10000)
    obstacle_expected_range_m: float = param(
        4.0, "pixels whose ray meets the floor within this range must return depth (blind-camera rule) (m)", min=0.1, max=50.0, read_only=True
    )
    obstacle_max_samples: int = param(6000, "depth pixels sampled per frame (regular grid)", min=16, max=1_000_000, read_only=True)

    def __post_init__(self):
        super().__post_init__()
        if self.roi_bottom_fraction <= self.roi_top_fraction:
            raise ValueError(
                f"SafetyConfig.roi_bottom_fraction: {self.roi_bottom_fraction} must be above roi_top_fraction {self.roi_top_fraction}"
            )
        if self.obstacle_stop_distance_m > 0 and self.depth_timeout_s <= 0:
            # The obstacle rule would otherwise trust an arbitrarily old depth frame.
            raise ValueError("SafetyConfig.depth_timeout_s: must be > 0 while obstacle_stop_distance_m > 0 (set both to 0 without depth)")
        period = 1.0 / self.publish_rate_hz
        for name in ("command_timeout_s", "camera_timeout_s", "depth_timeout_s", "odom_timeout_s"):
            timeout = getattr(self, name)
            if 0.0 < timeout < period:
                raise ValueError(f"SafetyConfig.{name}: {timeout} s is shorter than one output period ({period:.3f} s)")
        if self.obstacle_max_height_m <= self.obstacle_min_height_m:
            raise ValueError(
                f"SafetyConfig.obstacle_max_height_m: {self.obstacle_max_height_m} must be above obstacle_min_height_m {self.obstacle_min_height_m}"
            )
        try:
            self.footprint_model()
        except ValueError as exc:
            raise ValueError(f"SafetyConfig.footprint: {exc}") from None

    def camera_mount(self) -> CameraMount:
        return CameraMount(self.camera_x_m, self.camera_y_m, self.camera_z_m, self.camera_roll_rad, self.camera_pitch_rad, self.camera_yaw_rad)

    def footprint_model(self) -> Footprint:
        return Footprint(radius_m=self.robot_radius_m, polygon=parse_footprint(self.footprint), padding_m=self.footprint_padding_m)

    def obstacle_params(self) -> ObstacleParams:
        return ObstacleParams(
            min_height_m=self.obstacle_min_height_m,
            max_height_m=self.obstacle_max_height_m,
            stop_distance_m=self.obstacle_stop_distance_m,
            time_to_stop_s=self.obstacle_time_to_stop_s,
            min_points=self.obstacle_min_points,
            min_valid_fraction=self.obstacle_min_valid_fraction,
            expected_range_m=self.obstacle_expected_range_m,
            max_samples=self.obstacle_max_samples,
        )

    def sensor_timeout(self, sensor: str) -> float:
        return {"camera": self.camera_timeout_s, "depth": self.depth_timeout_s, "odom": self.odom_timeout_s}[sensor]


def parse_footprint(text: str) -> tuple[tuple[float, float], ...]:
    """Nav2's footprint string '[[x1, y1], [x2, y2], ...]' (metres, base_link) -> vertices; '' -> ()."""
    if not text.strip():
        return ()
    try:
        import yaml

        value = yaml.safe_load(text)
        points = tuple((float(x), float(y)) for x, y in value)
    except Exception as exc:  # noqa: BLE001 (any malformed text is one error)
        raise ValueError(f"expected '[[x, y], ...]', got {text!r} ({exc})") from None
    if len(points) < 3:
        raise ValueError(f"a footprint polygon needs at least 3 points, got {len(points)}")
    return points


@dataclass(frozen=True)
class ObstacleReading:
    """Forward-ROI depth summary: `distance_m` (NaN when too few valid returns) and the valid fraction."""

    distance_m: float
    valid_fraction: float


def forward_obstacle_distance(depth_m: np.ndarray, config: SafetyConfig) -> ObstacleReading:
    """Obstacle distance in the forward ROI of a (H, W) float depth image in metres (NaN = no return).

    The ROI is centred horizontally (`roi_width_fraction`) between `roi_top_fraction` and
    `roi_bottom_fraction` of the height; the floor shows below it for a forward-looking camera.
    A low percentile rather than the minimum ignores single-pixel speckle.
    """
    if depth_m.ndim != 2 or depth_m.size == 0:
        raise ValueError(f"depth: expected a non-empty (H, W) array, got shape {depth_m.shape}")
    h, w = depth_m.shape
    half = config.roi_width_fraction * w / 2.0
    c0, c1 = int(math.floor(w / 2.0 - half)), int(math.ceil(w / 2.0 + half))
    r0, r1 = int(math.floor(config.roi_top_fraction * h)), int(math.ceil(config.roi_bottom_fraction * h))
    roi = np.asarray(depth_m[r0:max(r1, r0 + 1), max(c0, 0):max(c1, c0 + 1)], dtype=np.float32)
    valid = roi[np.isfinite(roi) & (roi > 0)]
    fraction = valid.size / roi.size if roi.size else 0.0
    if valid.size == 0:
        return ObstacleReading(float("nan"), 0.0)
    return ObstacleReading(float(np.percentile(valid, config.obstacle_percentile)), float(fraction))


@dataclass
class SafetyOutput:
    """One supervisor decision: the Twist to publish (m/s, rad/s), the state and why."""

    linear_x: float
    angular_z: float
    state: str
    reasons: list[str] = field(default_factory=list)


class SafetySupervisor:
    """The rules in the module docstring; one instance per robot, driven by a timer via `update(now)`.

    Not thread-safe on its own: the node calls it from one executor thread. Never raises OSError: a latch
    file that cannot be written is reported in `last_reason` and `counts["latch_file_errors"]`.
    """

    def __init__(self, config: SafetyConfig | None = None):
        self.config = config or SafetyConfig()
        cfg = self.config
        self._cmd: tuple[float, float] = (0.0, 0.0)
        self._cmd_time: float | None = None
        self._monitors = {s: StreamMonitor(s, cfg.sensor_timeout(s), cfg.stamp_future_tolerance_s) for s in SENSORS}
        self._obstacle: ObstacleReading | None = None
        self._obstacle_stop: ObstacleStop | None = None
        self._camera_key: tuple | None = None
        self._last_depth: np.ndarray | None = None  # the newest accepted depth frame (metres), for a new camera model
        self.last_obstacle: ObstacleDecision | None = None  # the latest blocking decision, for feedback
        self._estop = False
        self._rejected: str | None = None
        # A hold (after stop() or an e-stop release): zero until the commander rests `dwell` s, then moves.
        self._hold: str | None = None
        self._hold_dwell = 0.0
        self._rest_since: float | None = None
        self._out: tuple[float, float] = (0.0, 0.0)
        self._out_time: float | None = None
        self._active = False  # set by the first update(): from then on parameters may only tighten
        self._now = 0.0  # steady time of the update in progress
        self.counts: dict[str, int] = {
            "commands": 0, "rejected": 0, "estops": 0, "stops": 0, "obstacle_blocks": 0, "stale_zeros": 0, "clamped": 0,
            "frames_rejected": 0, "config_rejected": 0, "latch_file_errors": 0,
        }
        self.last_reason = ""
        self._latch = EstopLatchFile(cfg.estop_latch_file) if cfg.estop_latch_file else None
        if self._latch is not None:
            latched, why = self._latch.load()
            if latched:
                self._estop = True
                self.counts["estops"] += 1
            self.last_reason = why
        if cfg.estop_latched_at_start and not self._estop:
            self._estop = True
            self.counts["estops"] += 1
            self.last_reason = "e-stop latched at start-up (estop_latched_at_start): release it explicitly"

    # -- inputs -------------------------------------------------------------------------------
    def command(self, now: float, linear_x: float, angular_z: float, other: tuple[float, ...] = ()) -> str | None:
        """A raw command (m/s, rad/s) received at steady time `now`; `other` = the remaining Twist
        components, checked for finiteness. Returns the rejection reason, or None when accepted.
        """
        values = (linear_x, angular_z, *other)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            self._rejected = f"non-finite command {tuple(float(v) for v in values)}"
            self.counts["rejected"] += 1
            self.last_reason = self._rejected
            self._cmd, self._cmd_time = (0.0, 0.0), now
            return self._rejected
        self._rejected = None
        self.counts["commands"] += 1
        at_rest = linear_x == 0.0 and angular_z == 0.0
        if self._hold:
            if at_rest:
                if self._rest_since is None:
                    self._rest_since = now
            elif self._rest_since is not None and now - self._rest_since >= self._hold_dwell:
                self._hold, self._rest_since = None, None  # rested long enough: this is a new motion
            else:
                self._rest_since = None  # the old motion is still running: the rest starts over
        self._cmd, self._cmd_time = (float(linear_x), float(angular_z)), now
        return None

    def sensor(self, name: str, now: float, stamp_s: float | None = None, clock_s: float | None = None) -> str | None:
        """A message of sensor `name` (one of SENSORS) arrived at steady time `now`.

        `stamp_s`: its header stamp in seconds and `clock_s`: the node's ROS clock (the stamp's clock) at
        arrival; both or neither (then arrival time alone decides, the legacy rule). Returns why the
        message does not refresh the stream, or None (see `vlm_agent.safety.freshness`).
        """
        if name not in SENSORS:
            raise ValueError(f"sensor: '{name}' is not one of {SENSORS}")
        reason = self._monitors[name].on_message(stamp_s, now, clock_s)
        if reason:
            self.counts["frames_rejected"] += 1
            self.last_reason = reason
        return reason

    def set_camera(self, intrinsics: CameraIntrinsics, mount: CameraMount | None = None) -> None:
        """Switch the obstacle rule to the base-frame model for this depth camera (CameraInfo of the depth
        image). `mount`: the camera's pose (e.g. from TF); default: the camera_* parameters. Calling it
        again with the same intrinsics and mount is free (CameraInfo arrives with every frame)."""
        mount = mount or self.config.camera_mount()
        key = (intrinsics.width, intrinsics.height, intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy, mount)
        if self._obstacle_stop is not None and self._camera_key == key:
            return
        self._camera_key = key
        self._obstacle_stop = ObstacleStop(intrinsics, mount, self.config.footprint_model(), self.config.obstacle_params())
        self._feed_last_depth()

    def _feed_last_depth(self) -> None:
        """A new camera model starts from the newest accepted depth frame when it matches, not from "no
        depth frame yet": a driver that sends depth before its CameraInfo (the simulator does, every
        frame) would otherwise block every motion until the next depth frame (seen at start-up: the
        first plan aborted as blocked)."""
        depth, stop = self._last_depth, self._obstacle_stop
        if stop is not None and depth is not None and depth.shape == (stop.intrinsics.height, stop.intrinsics.width):
            stop.update_depth(depth)

    @property
    def obstacle_stop(self) -> ObstacleStop | None:
        """The base-frame obstacle model once `set_camera` was called (for diagnostics: blind distance)."""
        return self._obstacle_stop

    def depth(self, now: float, depth_m: np.ndarray, stamp_s: float | None = None, clock_s: float | None = None) -> ObstacleReading:
        """A depth frame (H, W) in metres (NaN = no return) received at steady time `now`, with its stamp
        and the ROS clock as in `sensor`. Updates freshness and the obstacle data; a malformed frame raises
        ValueError before it can refresh the stream. Returns the obstacle summary for diagnostics: with
        the camera model, the clearance ahead of the footprint at full speed and the valid fraction where
        the camera sees that zone."""
        depth_m = np.asarray(depth_m)
        if depth_m.ndim != 2 or depth_m.size == 0:
            raise ValueError(f"depth: expected a non-empty (H, W) array, got shape {depth_m.shape}")
        stop = self._obstacle_stop
        if stop is not None and depth_m.shape != (stop.intrinsics.height, stop.intrinsics.width):
            raise ValueError(f"depth: shape {depth_m.shape} does not match the depth CameraInfo {(stop.intrinsics.height, stop.intrinsics.width)}")
        if self.sensor("depth", now, stamp_s, clock_s):
            return self._obstacle or ObstacleReading(float("nan"), 0.0)
        self._last_depth = depth_m
        if stop is not None:
            stop.update_depth(depth_m)
            ahead = stop.check(self.config.max_linear_speed_mps, 0.0)
            fraction = ahead.valid_fraction if math.isfinite(ahead.valid_fraction) else 0.0
            self._obstacle = ObstacleReading(ahead.distance_m, fraction)
        else:
            self._obstacle = forward_obstacle_distance(depth_m, self.config)
        return self._obstacle

    def invalid_depth(self, now: float, reason: str) -> None:
        """A depth message that could not be decoded: it does not refresh the depth stream."""
        self.last_reason = f"depth frame dropped: {reason}"

    def set_estop(self, active: bool, reason: str = "") -> str | None:
        """Latch (True) or release (False) the e-stop. A release of a latched e-stop starts a re-arm hold
        (rule 3). Returns an error when the latch file could not be written (the in-memory state holds)."""
        active = bool(active)
        was = self._estop
        if active and not was:
            self.counts["estops"] += 1
        self._estop = active
        if was and not active:
            self._begin_hold("e-stop released", self.config.estop_release_dwell_s)
        self.last_reason = "e-stop latched" if active else "e-stop released"
        if reason:
            self.last_reason += f" ({reason})"
        if self._latch is not None and active != was:
            try:
                self._latch.save(active, reason)
            except OSError as exc:
                self.counts["latch_file_errors"] += 1
                self.last_reason = f"{self.last_reason}; NOT saved to {self._latch.path}: {exc}"
                return self.last_reason
        return None

    @property
    def estop_active(self) -> bool:
        return self._estop

    def stop(self) -> None:
        """Stop the current motion: zero until the commander comes to rest and starts a new motion."""
        self.counts["stops"] += 1
        self._begin_hold("stop requested", max(0.0, self._hold_dwell if self._hold else 0.0))
        self.last_reason = "stop requested"

    def set_config(self, config: SafetyConfig) -> str | None:
        """Apply a new config. While gating (after the first `update`, until `deactivate`), a change that
        loosens the gate is refused: the old config stays and the reason is returned (and recorded)."""
        if self._active:
            refused = check_runtime_change(self.config, config)
            if refused:
                self.counts["config_rejected"] += 1
                self.last_reason = f"parameter change refused while active: {refused}"
                return self.last_reason
        old, self.config = self.config, config
        for name, monitor in self._monitors.items():
            monitor.timeout_s = config.sensor_timeout(name)
            monitor.future_tolerance_s = config.stamp_future_tolerance_s
        if self._obstacle_stop is not None and (
            old.footprint_model() != config.footprint_model() or old.obstacle_params() != config.obstacle_params()
            or old.camera_mount() != config.camera_mount()
        ):
            stop = self._obstacle_stop
            mount = stop.mount if stop.mount != old.camera_mount() else config.camera_mount()  # keep a TF-given mount
            self._obstacle_stop = ObstacleStop(stop.intrinsics, mount, config.footprint_model(), config.obstacle_params())
            self._feed_last_depth()
            self._camera_key = (*self._camera_key[:-1], mount)
        if config.estop_latch_file != old.estop_latch_file:
            self._latch = EstopLatchFile(config.estop_latch_file) if config.estop_latch_file else None
        return None

    def deactivate(self) -> None:
        """Lifecycle: the node stopped gating (it publishes zero); any valid config may be set until the next update."""
        self._active = False

    def clock_reset(self) -> None:
        """The clock `now` is read from jumped backwards (a simulator restarted its `/clock`): every time
        recorded on it is void. The command counts as never received (zero until the next one), every
        sensor as never seen, a hold's rest starts over; the output keeps ramping from its last value."""
        self._cmd, self._cmd_time = (0.0, 0.0), None
        self._rest_since = None
        self._out_time = None
        for monitor in self._monitors.values():
            monitor.reset()
        self.last_reason = "clock jumped backwards: command and sensors start over"

    def clock_stopped(self, reason: str) -> SafetyOutput:
        """The node's time source stopped (under sim time: `/clock` silent on the steady clock): zero
        output, state `stale`, with `reason`; nothing is ramped (a watchdog does not ramp)."""
        if self._out != (0.0, 0.0):
            self.counts["stale_zeros"] += 1
        self.last_reason = reason
        self._out = (0.0, 0.0)
        return SafetyOutput(0.0, 0.0, STATE_STALE, [reason])

    # -- decision -----------------------------------------------------------------------------
    def blocking_reasons(self, now: float, clock_s: float | None = None) -> tuple[str, list[str]]:
        """(state, reasons) for everything that currently forces a full stop; state OK/IDLE when none."""
        cfg = self.config
        reasons: list[str] = []
        state = STATE_OK
        if self._estop:
            reasons.append("e-stop latched")
            state = STATE_ESTOP
        if self._rejected:
            reasons.append(f"rejected: {self._rejected}")
            state = state if state != STATE_OK else STATE_REJECTED
        for sensor in SENSORS:
            verdict = self._monitors[sensor].check(now, clock_s)
            if not verdict.fresh:
                reasons.append(verdict.reason)
                state = state if state != STATE_OK else STATE_STALE
        command_stale = self._cmd_time is None or (cfg.command_timeout_s > 0 and now - self._cmd_time > cfg.command_timeout_s)
        if self._hold:
            if command_stale and self._rest_since is None:
                self._rest_since = now  # a silent commander has come to rest too
            if self._hold_dwell > 0:
                reasons.append(f"{self._hold}; waiting for the commander to rest {self._hold_dwell:g} s, then a new motion")
            else:
                reasons.append(f"{self._hold}; waiting for a new motion")
            state = state if state != STATE_OK else STATE_STOPPED
        if state == STATE_OK:
            if self._cmd_time is None:
                return STATE_IDLE, ["no command yet"]
            if command_stale:
                return STATE_IDLE, [f"command stale for {now - self._cmd_time:.2f} s (timeout {cfg.command_timeout_s:g} s)"]
        return state, reasons

    def update(self, now: float, clock_s: float | None = None) -> SafetyOutput:
        """The command to publish now (steady time `now`; `clock_s`: the ROS clock, when sensors are stamped).
        Call at `publish_rate_hz`."""
        self._active = True
        self._now = now
        cfg = self.config
        state, reasons = self.blocking_reasons(now, clock_s)
        if state != STATE_OK:
            if state in (STATE_STALE, STATE_IDLE) and self._out != (0.0, 0.0):
                self.counts["stale_zeros"] += 1
            if state != STATE_IDLE and reasons:
                self.last_reason = "; ".join(reasons)
            return self._emit(now, 0.0, 0.0, state, reasons)

        target_v, target_w = self._cmd
        clamped_v = max(-cfg.max_linear_speed_mps, min(cfg.max_linear_speed_mps, target_v))
        clamped_w = max(-cfg.max_angular_speed_radps, min(cfg.max_angular_speed_radps, target_w))
        if (clamped_v, clamped_w) != (target_v, target_w):
            self.counts["clamped"] += 1
            reasons.append("speed clamped")

        if cfg.obstacle_stop_distance_m > 0:
            blocked, clamped_v, clamped_w = self._obstacle_gate(clamped_v, clamped_w)
            if blocked:
                self.counts["obstacle_blocks"] += 1
                self.last_reason = blocked
                reasons.append(blocked)
                state = STATE_OBSTACLE

        dt = self._dt(now)
        prev_v, prev_w = self._out
        dv_max, dw_max = cfg.max_linear_accel_mps2 * dt, cfg.max_angular_accel_radps2 * dt
        v = prev_v + max(-dv_max, min(dv_max, clamped_v - prev_v))
        w = prev_w + max(-dw_max, min(dw_max, clamped_w - prev_w))
        # prev + (target - prev) can round past the target (1.5000000000000002): the limits are hard.
        v = max(-cfg.max_linear_speed_mps, min(cfg.max_linear_speed_mps, v))
        w = max(-cfg.max_angular_speed_radps, min(cfg.max_angular_speed_radps, w))
        if (v, w) != (clamped_v, clamped_w):
            reasons.append("acceleration limited")
        return self._emit(now, v, w, state, reasons)

    def _obstacle_gate(self, v: float, w: float) -> tuple[str | None, float, float]:
        """(reason or None, v, w) after the obstacle rule; a blocked component is also zeroed in `_out` so
        the stop is not ramped (the obstacle is already inside the margin)."""
        stop = self._obstacle_stop
        if stop is None:  # image-ROI fallback until a camera model is given
            if v > 0.0:
                blocked = self._forward_blocked()
                if blocked:
                    self._out = (0.0, self._out[1])
                    return blocked, 0.0, w
            return None, v, w
        # The zone must cover the speed the base still has, not only the (maybe lower) target.
        v_eval = max(v, self._out[0]) if max(v, self._out[0]) > 0.0 else v
        if v_eval == 0.0 and w == 0.0:
            return None, v, w
        # The points are as old as the depth frame: the base may have moved |v| x age towards them since.
        age = self._monitors["depth"].data_age_s(self._now) or 0.0
        # Rounded up to 5 cm: conservative, and the zone (with its cached pixel coverage) changes rarely.
        extra = math.ceil(max(abs(v_eval), abs(self._out[0])) * age / 0.05 - 1e-9) * 0.05
        decision = stop.check(v_eval, w, extra_m=extra)
        if not decision.blocked:
            return None, v, w
        self.last_obstacle = decision
        if w != 0.0 and v_eval != 0.0 and not stop.check(0.0, w).blocked:
            self._out = (0.0, self._out[1])
            return decision.reason, 0.0, w  # turning in place stays allowed
        self._out = (0.0, 0.0)
        return decision.reason, 0.0, 0.0

    def _begin_hold(self, kind: str, dwell: float) -> None:
        self._hold, self._hold_dwell, self._rest_since = kind, float(dwell), None

    def _forward_blocked(self) -> str | None:
        cfg = self.config
        reading = self._obstacle
        if reading is None:
            return "obstacle check: no depth frame yet"
        if reading.valid_fraction < cfg.min_valid_fraction:
            return f"obstacle check: only {reading.valid_fraction:.0%} valid depth in the forward ROI"
        if reading.distance_m < cfg.obstacle_stop_distance_m:
            return f"obstacle at {reading.distance_m:.2f} m (< {cfg.obstacle_stop_distance_m:g} m) ahead"
        return None

    def _dt(self, now: float) -> float:
        nominal = 1.0 / self.config.publish_rate_hz
        if self._out_time is None:
            return nominal
        # A late tick must not allow a bigger jump than two nominal ticks would.
        return max(0.0, min(now - self._out_time, 2.0 * nominal))

    def _emit(self, now: float, v: float, w: float, state: str, reasons: list[str]) -> SafetyOutput:
        self._out, self._out_time = (v, w), now
        return SafetyOutput(v, w, state, reasons)

    @property
    def obstacle(self) -> ObstacleReading | None:
        return self._obstacle
