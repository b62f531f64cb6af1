"""Every rule of the safety supervisor core, with an explicit clock (no ROS, no waiting)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_agent.safety.supervisor import (
    STATE_ESTOP,
    STATE_IDLE,
    STATE_OBSTACLE,
    STATE_OK,
    STATE_REJECTED,
    STATE_STALE,
    STATE_STOPPED,
    SafetyConfig,
    SafetySupervisor,
    forward_obstacle_distance,
)

DT = 0.05  # one 20 Hz tick


def clear_depth(h=48, w=64, metres=3.0):
    return np.full((h, w), metres, dtype=np.float32)


def fed(config=None, t=0.0):
    """A supervisor with all sensors fresh at time t and a clear depth image."""
    sup = SafetySupervisor(config or SafetyConfig(max_linear_accel_mps2=50.0, max_angular_accel_radps2=100.0))
    feed(sup, t)
    return sup


def feed(sup, t, depth=None):
    sup.sensor("camera", t)
    sup.sensor("odom", t)
    sup.depth(t, clear_depth() if depth is None else depth)


def test_passes_a_valid_command_when_everything_is_fresh():
    sup = fed()
    sup.command(0.0, 0.2, 0.3)
    out = sup.update(DT)
    assert out.state == STATE_OK
    assert (out.linear_x, out.angular_z) == pytest.approx((0.2, 0.3))


def test_zero_before_any_sensor_or_command():
    sup = SafetySupervisor()
    out = sup.update(0.0)
    assert (out.linear_x, out.angular_z) == (0.0, 0.0)
    assert out.state == STATE_STALE
    assert any("camera: no message yet" in r for r in out.reasons)
    sup = fed()
    out = sup.update(0.0)
    assert out.state == STATE_IDLE and out.linear_x == 0.0


def test_speed_is_clamped_both_directions():
    sup = fed(SafetyConfig(max_linear_speed_mps=0.3, max_angular_speed_radps=0.5, max_linear_accel_mps2=50, max_angular_accel_radps2=100))
    sup.command(0.0, 2.0, -4.0)
    out = sup.update(DT)
    assert (out.linear_x, out.angular_z) == pytest.approx((0.3, -0.5))
    assert "speed clamped" in out.reasons
    sup.command(DT, -2.0, 4.0)
    out = sup.update(2 * DT)
    assert (out.linear_x, out.angular_z) == pytest.approx((-0.3, 0.5))


def test_a_ramp_never_rounds_past_the_speed_limit():
    # -1.5 reached from 0.95 in one ramp step computed 0.95 + (-1.5 - 0.95) = -1.5000000000000002.
    sup = fed()
    sup.command(0.0, 0.0, 0.95)
    sup.update(DT)
    sup.command(DT, 0.0, -2.0)
    out = sup.update(2 * DT)
    assert abs(out.angular_z) <= sup.config.max_angular_speed_radps


def test_acceleration_is_limited_per_tick():
    cfg = SafetyConfig(max_linear_accel_mps2=1.0, max_angular_accel_radps2=2.0)
    sup = fed(cfg)
    sup.command(0.0, 0.5, 1.0)
    speeds = []
    for i in range(1, 12):
        feed(sup, i * DT)
        sup.command(i * DT, 0.5, 1.0)
        speeds.append(sup.update(i * DT))
    v = [o.linear_x for o in speeds]
    w = [o.angular_z for o in speeds]
    assert np.all(np.diff([0.0] + v) <= 1.0 * DT + 1e-9)
    assert np.all(np.diff([0.0] + w) <= 2.0 * DT + 1e-9)
    assert v[-1] == pytest.approx(0.5) and w[-1] == pytest.approx(1.0)
    assert v[0] == pytest.approx(0.05)  # ramp, not a jump


def test_a_late_tick_does_not_allow_a_bigger_jump():
    sup = fed(SafetyConfig(max_linear_accel_mps2=1.0))
    sup.command(0.0, 0.5, 0.0)
    first = sup.update(0.0).linear_x
    feed(sup, 0.25)
    sup.command(0.25, 0.5, 0.0)
    out = sup.update(0.25)  # 5 ticks late
    assert out.linear_x - first == pytest.approx(2 * DT * 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["linear", "angular", "other"])
def test_non_finite_command_gives_zero_until_a_valid_one(bad, where):
    sup = fed()
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(DT).linear_x > 0
    args = {"linear": (bad, 0.0, ()), "angular": (0.1, bad, ()), "other": (0.1, 0.0, (0.0, bad))}[where]
    reason = sup.command(DT, args[0], args[1], args[2])
    assert reason and "non-finite" in reason
    out = sup.update(2 * DT)
    assert (out.linear_x, out.angular_z) == (0.0, 0.0)  # immediate, not ramped
    assert out.state == STATE_REJECTED
    assert sup.counts["rejected"] == 1
    assert sup.command(2 * DT, 0.1, 0.0) is None
    assert sup.update(3 * DT).state == STATE_OK


def test_stale_command_gives_zero():
    cfg = SafetyConfig(command_timeout_s=0.5, max_linear_accel_mps2=50)
    sup = fed(cfg)
    sup.command(0.0, 0.3, 0.0)
    t = 0.0
    while t < 0.45 - 1e-9:
        t += DT
        feed(sup, t)
        assert sup.update(t).linear_x == pytest.approx(0.3)
    t += 2 * DT
    feed(sup, t)
    out = sup.update(t)
    assert out.linear_x == 0.0 and out.state == STATE_IDLE
    assert "command stale" in out.reasons[0]


@pytest.mark.parametrize("sensor", ["camera", "depth", "odom"])
def test_each_stale_sensor_gives_immediate_zero(sensor):
    cfg = SafetyConfig(max_linear_accel_mps2=1.0)  # ramped up, but the stop is not ramped
    sup = fed(cfg)
    t = 0.0
    for _ in range(20):
        t += DT
        feed(sup, t)
        sup.command(t, 0.5, 0.5)
        sup.update(t)
    assert sup.update(t).linear_x > 0.4
    stale_at = t
    while t < stale_at + 1.0:
        t += DT
        for s in ("camera", "odom"):
            if s != sensor:
                sup.sensor(s, t)
        if sensor != "depth":
            sup.depth(t, clear_depth())
        sup.command(t, 0.5, 0.5)
        out = sup.update(t)
        if out.linear_x == 0.0:
            break
    assert out.state == STATE_STALE and out.angular_z == 0.0
    assert any(r.startswith(f"{sensor}: stale") for r in out.reasons)
    assert t - stale_at <= cfg.sensor_timeout(sensor) + DT + 1e-9


def test_disabled_sensor_is_not_required():
    sup = SafetySupervisor(SafetyConfig(camera_timeout_s=0.0, odom_timeout_s=0.0, depth_timeout_s=0.0, obstacle_stop_distance_m=0.0, max_linear_accel_mps2=50))
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(DT).linear_x == pytest.approx(0.2)


def test_estop_latches_until_released():
    sup = fed()
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(DT).linear_x > 0
    sup.set_estop(True)
    t = DT
    for _ in range(10):
        t += DT
        feed(sup, t)
        sup.command(t, 0.2, 0.4)  # new commands do not release it
        out = sup.update(t)
        assert (out.linear_x, out.angular_z) == (0.0, 0.0)
        assert out.state == STATE_ESTOP
    sup.set_estop(False)
    # Released, but the running command stream does not resume: the commander must first rest
    # estop_release_dwell_s (0.5 s), then send a new motion.
    for _ in range(10):
        t += DT
        feed(sup, t)
        sup.command(t, 0.2, 0.4)
        out = sup.update(t)
        assert (out.linear_x, out.angular_z) == (0.0, 0.0) and out.state == STATE_STOPPED
    for _ in range(8):  # zeros for 8 ticks: the motion comes 0.40 s after the first zero, < 0.5 s
        t += DT
        feed(sup, t)
        sup.command(t, 0.0, 0.0)
        sup.update(t)
    t += DT
    feed(sup, t)
    sup.command(t, 0.2, 0.4)
    assert sup.update(t).state == STATE_STOPPED  # too short a rest: the rest starts over
    for _ in range(11):  # zeros for 11 ticks: the motion comes 0.55 s after the first zero
        t += DT
        feed(sup, t)
        sup.command(t, 0.0, 0.0)
        sup.update(t)
    t += DT
    feed(sup, t)
    sup.command(t, 0.2, 0.4)  # a new motion after a full rest
    out = sup.update(t)
    assert out.state == STATE_OK and out.linear_x > 0


def test_stop_holds_until_the_commander_rests_then_moves_again():
    sup = fed()
    sup.command(0.0, 0.2, 0.0)
    sup.update(DT)
    sup.stop()
    t = DT
    for _ in range(5):  # the same motion keeps streaming: still stopped
        t += DT
        feed(sup, t)
        sup.command(t, 0.2, 0.0)
        out = sup.update(t)
        assert out.linear_x == 0.0 and out.state == STATE_STOPPED
    t += DT
    sup.command(t, 0.0, 0.0)  # the commander comes to rest
    assert sup.update(t).state == STATE_STOPPED
    t += DT
    feed(sup, t)
    sup.command(t, 0.0, 0.3)  # a new motion
    out = sup.update(t)
    assert out.state == STATE_OK and out.angular_z == pytest.approx(0.3)


def test_stop_is_released_by_a_new_motion_after_the_commander_went_silent():
    sup = fed(SafetyConfig(command_timeout_s=0.2, max_linear_accel_mps2=50))
    sup.command(0.0, 0.2, 0.0)
    sup.stop()
    feed(sup, 0.5)
    assert sup.update(0.5).state == STATE_STOPPED
    sup.command(0.5, 0.1, 0.0)
    assert sup.update(0.55).linear_x == pytest.approx(0.1)


def test_obstacle_blocks_forward_but_allows_turning_and_reversing():
    cfg = SafetyConfig(obstacle_stop_distance_m=0.4, max_linear_accel_mps2=50, max_angular_accel_radps2=100)
    sup = fed(cfg)
    near = clear_depth()
    near[20:30, 28:36] = 0.3
    feed(sup, 0.0, depth=near)
    sup.command(0.0, 0.3, 0.5)
    out = sup.update(DT)
    assert out.linear_x == 0.0 and out.angular_z == pytest.approx(0.5)
    assert out.state == STATE_OBSTACLE
    assert any("obstacle at 0.30 m" in r for r in out.reasons)
    sup.command(DT, -0.2, 0.0)
    out = sup.update(2 * DT)
    assert out.linear_x == pytest.approx(-0.2) and out.state == STATE_OK
    feed(sup, 2 * DT)  # the obstacle goes away
    sup.command(2 * DT, 0.3, 0.0)
    assert sup.update(3 * DT).linear_x == pytest.approx(0.3)


def test_obstacle_outside_the_roi_and_speckle_are_ignored():
    cfg = SafetyConfig(obstacle_stop_distance_m=0.4, obstacle_percentile=5.0)
    depth = clear_depth()
    depth[:, :10] = 0.1  # left edge, outside the centred 50 % ROI
    depth[40:, :] = 0.1  # bottom rows (floor), below the ROI
    depth[24, 32] = 0.05  # one speckle pixel inside
    reading = forward_obstacle_distance(depth, cfg)
    assert reading.distance_m == pytest.approx(3.0)
    assert reading.valid_fraction == pytest.approx(1.0)


def test_nan_depth_is_no_return_not_contact_and_a_blind_roi_blocks_forward():
    cfg = SafetyConfig(obstacle_stop_distance_m=0.4, min_valid_fraction=0.1, max_linear_accel_mps2=50)
    depth = clear_depth()
    depth[12:36, 16:48] = np.nan
    depth[12:14, 16:48] = 2.0  # about 8 % valid, all far
    reading = forward_obstacle_distance(depth, cfg)
    assert reading.distance_m == pytest.approx(2.0) and reading.valid_fraction < 0.1
    sup = fed(cfg)
    feed(sup, 0.0, depth=depth)
    sup.command(0.0, 0.2, 0.2)
    out = sup.update(DT)
    assert out.linear_x == 0.0 and out.state == STATE_OBSTACLE and "valid depth" in out.reasons[0]
    all_nan = np.full((48, 64), np.nan, dtype=np.float32)
    assert math.isnan(forward_obstacle_distance(all_nan, cfg).distance_m)


def test_obstacle_check_can_be_disabled():
    cfg = SafetyConfig(obstacle_stop_distance_m=0.0, max_linear_accel_mps2=50)
    sup = fed(cfg)
    feed(sup, 0.0, depth=np.full((48, 64), 0.05, dtype=np.float32))
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(DT).linear_x == pytest.approx(0.2)


def test_bad_depth_shape_raises_and_configs_are_validated():
    with pytest.raises(ValueError, match="depth"):
        forward_obstacle_distance(np.zeros((4, 4, 3), np.float32), SafetyConfig())
    with pytest.raises(ValueError, match="roi_bottom_fraction"):
        SafetyConfig(roi_top_fraction=0.6, roi_bottom_fraction=0.5)
    with pytest.raises(ValueError, match="shorter than one output period"):
        SafetyConfig(publish_rate_hz=5.0, camera_timeout_s=0.1)
    with pytest.raises(ValueError, match="depth_timeout_s"):
        SafetyConfig(depth_timeout_s=0.0)
    with pytest.raises(ValueError, match="max_linear_speed_mps"):
        SafetyConfig(max_linear_speed_mps=-1.0)
    with pytest.raises(ValueError, match="sensor"):
        SafetySupervisor().sensor("lidar", 0.0)


def test_clock_reset_voids_the_command_and_the_sensors():
    """A simulator restart (its clock jumps back): a command stamped on the old clock must not look
    fresh for the seconds until the new clock catches up."""
    sup = fed(t=100.0)
    sup.command(100.0, 0.3, 0.0)
    assert sup.update(100.0 + DT).linear_x > 0.0
    sup.clock_reset()
    out = sup.update(1.0)  # new clock: 1 s
    assert (out.linear_x, out.angular_z) == (0.0, 0.0) and out.state == STATE_STALE
    assert any("no message yet" in r for r in out.reasons)
    feed(sup, 1.0)
    out = sup.update(1.0 + DT)
    assert out.state == STATE_IDLE and out.linear_x == 0.0  # sensors back, no command yet
    sup.command(1.1, 0.3, 0.0)
    assert sup.update(1.1).linear_x > 0.0


def test_clock_stopped_gives_zero_without_a_ramp_and_the_reason():
    sup = fed()
    sup.command(0.0, 0.4, 1.0)
    assert sup.update(DT).linear_x == pytest.approx(0.4)
    out = sup.clock_stopped("use_sim_time: /clock has not advanced for 1.2 s")
    assert (out.linear_x, out.angular_z) == (0.0, 0.0) and out.state == STATE_STALE
    assert "/clock" in out.reasons[0] and "/clock" in sup.last_reason
    assert sup.counts["stale_zeros"] == 1
