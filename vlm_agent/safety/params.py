"""Which safety parameters may change while the supervisor is gating, and in which direction (plain Python).

Rule: while the robot can move, a parameter change may only make the gate *stricter*; anything that could
loosen it, or that has no "stricter" direction, waits for a restart (or a lifecycle re-configure). This
closes `ros2 param set safety_supervisor command_timeout_s 0` and friends on a live robot.

The table `RUNTIME_RULES` names a rule and the reason for every `SafetyConfig` field; a field missing from
the table is treated as read-only (a new limit cannot be loosened by default), and a unit test fails
until it is listed. The rules:

- `lower`: may only decrease (speed limits, the stamp-clock tolerance, the floor height of the obstacle
  band, the points needed to block).
- `lower_not_off`: a timeout where 0 means "check disabled": may decrease but never to 0 while enabled;
  enabling a disabled check (0 -> t) is allowed.
- `higher`: may only increase (stop distance and time, footprint size, ceiling of the obstacle band,
  valid-return fraction, the e-stop re-arm dwell). For `obstacle_stop_distance_m`, where 0 means "off",
  this also forbids switching the rule off and allows switching it on.
- `read_only`: not at runtime. Either there is no safer direction (acceleration limits: lower is gentler
  but ramps commanded stops out longer; the fallback image ROI's shape), or the value is a calibration
  or a structural choice (camera mounting pose, footprint polygon, output rate that the timeouts were
  validated against, e-stop persistence policy, sensor sampling budget).
"""
from __future__ import annotations

import dataclasses
import math

LOWER = "lower"
LOWER_NOT_OFF = "lower_not_off"
HIGHER = "higher"
READ_ONLY = "read_only"

RUNTIME_RULES: dict[str, tuple[str, str]] = {
    "max_linear_speed_mps": (LOWER, "a speed limit may only tighten"),
    "max_angular_speed_radps": (LOWER, "a speed limit may only tighten"),
    "max_linear_accel_mps2": (READ_ONLY, "no safer direction: lower ramps commanded stops out longer, higher is harsher"),
    "max_angular_accel_radps2": (READ_ONLY, "no safer direction: lower ramps commanded stops out longer, higher is harsher"),
    "command_timeout_s": (LOWER_NOT_OFF, "a watchdog may only get faster, never disabled"),
    "camera_timeout_s": (LOWER_NOT_OFF, "a watchdog may only get faster, never disabled"),
    "depth_timeout_s": (LOWER_NOT_OFF, "a watchdog may only get faster, never disabled"),
    "odom_timeout_s": (LOWER_NOT_OFF, "a watchdog may only get faster, never disabled"),
    "stamp_future_tolerance_s": (LOWER, "accepting stamps further in the future loosens the clock check"),
    "obstacle_stop_distance_m": (HIGHER, "the clearance ahead may only grow (0 = off may not be set while on)"),
    "roi_width_fraction": (READ_ONLY, "shape of the fallback image ROI: no safer direction"),
    "roi_top_fraction": (READ_ONLY, "shape of the fallback image ROI: no safer direction"),
    "roi_bottom_fraction": (READ_ONLY, "shape of the fallback image ROI: no safer direction"),
    "obstacle_percentile": (READ_ONLY, "statistic of the fallback image ROI: no safer direction"),
    "min_valid_fraction": (HIGHER, "demanding more valid depth is stricter"),
    "publish_rate_hz": (READ_ONLY, "the output period the timeouts were validated against"),
    "estop_release_dwell_s": (HIGHER, "a longer rest before re-arming is stricter"),
    "estop_latch_file": (READ_ONLY, "e-stop persistence is a start-up policy; changing it live could drop a latch"),
    "estop_latched_at_start": (READ_ONLY, "e-stop persistence is a start-up policy"),
    "camera_x_m": (READ_ONLY, "camera mounting calibration"),
    "camera_y_m": (READ_ONLY, "camera mounting calibration"),
    "camera_z_m": (READ_ONLY, "camera mounting calibration"),
    "camera_roll_rad": (READ_ONLY, "camera mounting calibration"),
    "camera_pitch_rad": (READ_ONLY, "camera mounting calibration"),
    "camera_yaw_rad": (READ_ONLY, "camera mounting calibration"),
    "robot_radius_m": (HIGHER, "a larger footprint is stricter"),
    "footprint": (READ_ONLY, "polygon: a change is not simply larger or smaller"),
    "footprint_padding_m": (HIGHER, "more padding is stricter"),
    "obstacle_min_height_m": (LOWER, "a lower floor cut counts more points as obstacles"),
    "obstacle_max_height_m": (HIGHER, "a higher ceiling counts more points as obstacles"),
    "obstacle_time_to_stop_s": (HIGHER, "a longer stopping time makes the stop zone longer"),
    "obstacle_min_valid_fraction": (HIGHER, "demanding more valid depth is stricter"),
    "obstacle_min_points": (LOWER, "fewer points needed to block is stricter"),
    "obstacle_expected_range_m": (READ_ONLY, "a property of the depth sensor"),
    "obstacle_max_samples": (READ_ONLY, "CPU budget of the obstacle rule"),
}


def check_runtime_change(old_cfg, new_cfg) -> str | None:
    """Why changing `old_cfg` into `new_cfg` while gating must be refused, or None when it may apply.

    Both are `SafetyConfig`s (or subclasses: fields outside `SafetyConfig`'s rules, such as a node's
    topic names, must be declared read-only by the node itself and are not judged here unless they
    appear in `RUNTIME_RULES`). Every offending field is named, with its rule.
    """
    problems = []
    names = [f.name for f in dataclasses.fields(old_cfg)]
    for name in names:
        if not hasattr(new_cfg, name):
            continue
        old, new = getattr(old_cfg, name), getattr(new_cfg, name)
        if old == new:
            continue
        if name not in RUNTIME_RULES:
            if _is_core_field(old_cfg, name):
                problems.append(f"{name}: no runtime rule listed, read-only by default")
            continue
        rule, why = RUNTIME_RULES[name]
        if not _allowed(rule, old, new):
            problems.append(f"{name}: {old!r} -> {new!r} refused ({_describe(rule)}: {why})")
    return "; ".join(problems) if problems else None


def _is_core_field(cfg, name: str) -> bool:
    from vlm_agent.safety.supervisor import SafetyConfig  # here: supervisor.py imports this module

    return isinstance(cfg, SafetyConfig) and name in SafetyConfig.__dataclass_fields__


def _allowed(rule: str, old, new) -> bool:
    if rule == READ_ONLY:
        return False
    if not (isinstance(new, (int, float)) and math.isfinite(new)):
        return False
    if rule == LOWER:
        return new <= old
    if rule == HIGHER:
        return new >= old
    if rule == LOWER_NOT_OFF:
        return new >= 0 if old == 0 else 0 < new <= old
    raise ValueError(f"unknown runtime rule {rule!r}")


def _describe(rule: str) -> str:
    return {
        LOWER: "may only decrease at runtime",
        HIGHER: "may only increase at runtime",
        LOWER_NOT_OFF: "may only decrease at runtime and never to 0 (off)",
        READ_ONLY: "read-only at runtime",
    }[rule]
