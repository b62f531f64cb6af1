"""Safety supervisor core: the last gate between any velocity command and the robot (plain Python).

Every command that reaches `/cmd_vel` passes `SafetySupervisor.update(now)`, which the node calls
from a fixed-rate timer, so the rules below hold even when every input stops arriving:

1. **Finite input**: a command with any NaN/inf component is rejected; the output is zero until the
   next valid command (reason logged and counted).
2. **Freshness**: the command and each required sensor (camera, depth, odometry) must have arrived
   within its timeout; a stale or never-seen stream gives zero. A timeout of 0 disables that check.
3. **E-stop**: `set_estop(True)` latches zero output; only `set_estop(False)` releases it.
4. **Stop**: `stop()` holds zero until the commander has come to rest (a zero or stale command)
   and then sends a new motion; so a 20 Hz command stream cannot override a stop with its next
   message of the same motion.
5. **Obstacle**: when the depth image's forward region of interest shows a return closer than
   `obstacle_stop_distance_m`, forward motion is zeroed; turning in place and reversing stay allowed.
6. **Limits**: |linear.x| and |angular.z| are clamped to the speed limits, and the change per tick to
   the acceleration limits. Safety stops (rules 1-5) bypass the acceleration limit: a watchdog that
   ramps down is not a watchdog.

Units and frames (REP-103): linear.x in m/s along base_link +x, angular.z in rad/s about base_link +z
(counter-clockwise positive). The other four Twist components are always zero (differential drive).
Time is any monotonic clock in seconds, passed in explicitly so the rules are testable without waiting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vlm_agent.config import ConfigBase, param

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
    obstacle_stop_distance_m: float = param(0.35, "no forward motion when the forward ROI has a return closer than this (0 = off)", min=0.0, max=10.0)
    roi_width_fraction: float = param(0.5, "width of the forward ROI as a fraction of the image, centred", min=0.05, max=1.0)
    roi_top_fraction: float = param(0.25, "top row of the forward ROI as a fraction of the image height", min=0.0, max=0.95)
    roi_bottom_fraction: float = param(0.75, "bottom row of the forward ROI as a fraction of the image height", min=0.05, max=1.0)
    obstacle_percentile: float = param(5.0, "percentile of valid ROI depths taken as the obstacle distance (ignores speckle)", min=0.0, max=50.0)
    min_valid_fraction: float = param(
        0.1, "a forward ROI with fewer valid depth returns than this counts as blocked (blind camera)", min=0.0, max=1.0
    )
    publish_rate_hz: float = param(20.0, "rate of /cmd_vel output; staleness is enforced at this rate", min=1.0, max=200.0)

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

    def sensor_timeout(self, sensor: str) -> float:
        return {"camera": self.camera_timeout_s, "depth": self.depth_timeout_s, "odom": self.odom_timeout_s}[sensor]


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

    Not thread-safe on its own: the node calls it from one executor thread.
    """

    def __init__(self, config: SafetyConfig | None = None):
        self.config = config or SafetyConfig()
        self._cmd: tuple[float, float] = (0.0, 0.0)
        self._cmd_time: float | None = None
        self._sensor_time: dict[str, float | None] = {s: None for s in SENSORS}
        self._obstacle: ObstacleReading | None = None
        self._estop = False
        self._rejected: str | None = None
        self._stop_hold = False
        self._stop_armed = False  # after stop(): the commander came to rest, the next motion may pass
        self._out: tuple[float, float] = (0.0, 0.0)
        self._out_time: float | None = None
        self.counts: dict[str, int] = {
            "commands": 0, "rejected": 0, "estops": 0, "stops": 0, "obstacle_blocks": 0, "stale_zeros": 0, "clamped": 0,
        }
        self.last_reason = ""

    # -- inputs -------------------------------------------------------------------------------
    def command(self, now: float, linear_x: float, angular_z: float, other: tuple[float, ...] = ()) -> str | None:
        """A raw command (m/s, rad/s); `other` = the remaining Twist components, checked for finiteness.

        Returns the rejection reason, or None when accepted.
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
        if self._stop_hold:
            if at_rest:
                self._stop_armed = True
            elif self._stop_armed:
                self._stop_hold = self._stop_armed = False
        self._cmd, self._cmd_time = (float(linear_x), float(angular_z)), now
        return None

    def sensor(self, name: str, now: float) -> None:
        """Record that a message of sensor `name` (one of SENSORS) arrived at `now`."""
        if name not in SENSORS:
            raise ValueError(f"sensor: '{name}' is not one of {SENSORS}")
        self._sensor_time[name] = now

    def depth(self, now: float, depth_m: np.ndarray) -> ObstacleReading:
        """A depth frame (H, W) in metres, NaN = no return: updates freshness and the obstacle reading."""
        self.sensor("depth", now)
        self._obstacle = forward_obstacle_distance(depth_m, self.config)
        return self._obstacle

    def invalid_depth(self, now: float, reason: str) -> None:
        """A depth message that could not be decoded: it does not refresh the depth stream."""
        self.last_reason = f"depth frame dropped: {reason}"

    def set_estop(self, active: bool) -> None:
        if active and not self._estop:
            self.counts["estops"] += 1
        self._estop = bool(active)
        self.last_reason = "e-stop latched" if active else "e-stop released"

    @property
    def estop_active(self) -> bool:
        return self._estop

    def stop(self) -> None:
        """Stop the current motion: zero until the commander comes to rest and starts a new motion."""
        self.counts["stops"] += 1
        self._stop_hold, self._stop_armed = True, False
        self.last_reason = "stop requested"

    def set_config(self, config: SafetyConfig) -> None:
        self.config = config

    # -- decision -----------------------------------------------------------------------------
    def blocking_reasons(self, now: float) -> tuple[str, list[str]]:
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
            timeout = cfg.sensor_timeout(sensor)
            if timeout <= 0:
                continue
            seen = self._sensor_time[sensor]
            if seen is None:
                reasons.append(f"{sensor}: no message yet")
            elif now - seen > timeout:
                reasons.append(f"{sensor}: stale for {now - seen:.2f} s (timeout {timeout:g} s)")
            else:
                continue
            state = state if state != STATE_OK else STATE_STALE
        command_stale = cfg.command_timeout_s > 0 and self._cmd_time is not None and now - self._cmd_time > cfg.command_timeout_s
        if self._stop_hold:
            if command_stale:
                self._stop_armed = True  # a silent commander has come to rest too
            reasons.append("stop requested; waiting for a new motion")
            state = state if state != STATE_OK else STATE_STOPPED
        if state == STATE_OK:
            if self._cmd_time is None:
                return STATE_IDLE, ["no command yet"]
            if command_stale:
                return STATE_IDLE, [f"command stale for {now - self._cmd_time:.2f} s (timeout {cfg.command_timeout_s:g} s)"]
        return state, reasons

    def update(self, now: float) -> SafetyOutput:
        """The command to publish now. Call at `publish_rate_hz`."""
        cfg = self.config
        state, reasons = self.blocking_reasons(now)
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

        if clamped_v > 0.0 and cfg.obstacle_stop_distance_m > 0:
            blocked = self._forward_blocked()
            if blocked:
                self.counts["obstacle_blocks"] += 1
                self.last_reason = blocked
                reasons.append(blocked)
                state = STATE_OBSTACLE
                # Forward stops at once (not ramped): the obstacle is already inside the margin.
                self._out = (0.0, self._out[1])
                clamped_v = 0.0

        dt = self._dt(now)
        prev_v, prev_w = self._out
        dv_max, dw_max = cfg.max_linear_accel_mps2 * dt, cfg.max_angular_accel_radps2 * dt
        v = prev_v + max(-dv_max, min(dv_max, clamped_v - prev_v))
        w = prev_w + max(-dw_max, min(dw_max, clamped_w - prev_w))
        if (v, w) != (clamped_v, clamped_w):
            reasons.append("acceleration limited")
        return self._emit(now, v, w, state, reasons)

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
