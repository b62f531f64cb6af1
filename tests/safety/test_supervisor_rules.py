"""The supervisor's issue-11 rules end to end (no ROS): stamped freshness, runtime parameter changes,
e-stop re-arm and persistence, and the base-frame obstacle model behind `update()`."""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.safety.test_obstacle import BOX_AHEAD_SIM, SIM_INTR, sim_depth
from vlm_agent.safety.obstacle import CameraMount
from vlm_agent.safety.params import RUNTIME_RULES, check_runtime_change
from vlm_agent.safety.supervisor import (
    STATE_ESTOP,
    STATE_OBSTACLE,
    STATE_OK,
    STATE_STALE,
    STATE_STOPPED,
    SafetyConfig,
    SafetySupervisor,
)

DT = 0.05
FAST = dict(max_linear_accel_mps2=50.0, max_angular_accel_radps2=100.0)
CLOCK0 = 1000.0  # the ROS clock (sim time); the steady clock below starts at 0


def stamped_feed(sup, t, depth=None, stamp=None):
    """Every sensor stamped at capture `stamp` (ROS clock), received at steady t with clock CLOCK0 + t."""
    stamp = CLOCK0 + t if stamp is None else stamp
    sup.sensor("camera", t, stamp, CLOCK0 + t)
    sup.sensor("odom", t, stamp, CLOCK0 + t)
    sup.depth(t, np.full((48, 64), 3.0, np.float32) if depth is None else depth, stamp, CLOCK0 + t)


# -- item 2: freshness from stamps -------------------------------------------------------------------
def test_a_frozen_depth_driver_stops_the_robot_within_the_timeout():
    sup = SafetySupervisor(SafetyConfig(**FAST))
    t = 0.0
    stamped_feed(sup, t)
    sup.command(t, 0.3, 0.0)
    assert sup.update(t, CLOCK0 + t).linear_x == pytest.approx(0.3)
    frozen = CLOCK0 + t
    while t < 0.3 - 1e-9:  # camera and odom live; depth re-sends one frame at full rate
        t += DT
        sup.sensor("camera", t, CLOCK0 + t, CLOCK0 + t)
        sup.sensor("odom", t, CLOCK0 + t, CLOCK0 + t)
        sup.depth(t, np.full((48, 64), 3.0, np.float32), frozen, CLOCK0 + t)
        assert "did not advance" in sup.last_reason
        sup.command(t, 0.3, 0.0)
        assert sup.update(t, CLOCK0 + t).linear_x == pytest.approx(0.3)  # within the timeout: still fresh
    t += 2 * DT
    sup.depth(t, np.full((48, 64), 3.0, np.float32), frozen, CLOCK0 + t)
    sup.sensor("camera", t, CLOCK0 + t, CLOCK0 + t)
    sup.sensor("odom", t, CLOCK0 + t, CLOCK0 + t)
    sup.command(t, 0.3, 0.0)
    out = sup.update(t, CLOCK0 + t)
    assert out.linear_x == 0.0 and out.state == STATE_STALE
    assert any(r.startswith("depth: stale") for r in out.reasons)


def test_a_backlog_after_a_stall_does_not_keep_the_robot_moving():
    sup = SafetySupervisor(SafetyConfig(**FAST))
    stamped_feed(sup, 0.0)
    sup.command(0.0, 0.3, 0.0)
    assert sup.update(0.0, CLOCK0).linear_x > 0
    # 1 s stall; then the queued frames (captured 0.9 .. 0.5 s ago) and a command arrive together.
    t = 1.0
    for age in (0.9, 0.7, 0.5):
        stamped_feed(sup, t, stamp=CLOCK0 + t - age)
    sup.command(t, 0.3, 0.0)
    out = sup.update(t, CLOCK0 + t)
    assert out.linear_x == 0.0 and out.state == STATE_STALE
    assert sup.counts["frames_rejected"] == 9


def test_unstamped_calls_keep_the_arrival_time_rule():
    sup = SafetySupervisor(SafetyConfig(**FAST))
    sup.sensor("camera", 0.0)
    sup.sensor("odom", 0.0)
    sup.depth(0.0, np.full((48, 64), 3.0, np.float32))
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(0.25).linear_x == pytest.approx(0.2)
    assert sup.update(0.35).state == STATE_STALE


# -- item 3: runtime parameter changes ----------------------------------------------------------------
def test_every_safety_parameter_has_a_runtime_rule():
    assert set(RUNTIME_RULES) == {f.name for f in dataclasses.fields(SafetyConfig)}


@pytest.mark.parametrize(
    "change, allowed",
    [
        (dict(command_timeout_s=0.0), False),  # the issue's `ros2 param set ... command_timeout_s 0`
        (dict(command_timeout_s=1.0), False),
        (dict(command_timeout_s=0.3), True),
        (dict(obstacle_stop_distance_m=0.0), False),  # the issue's `obstacle_stop_distance_m 0`
        (dict(obstacle_stop_distance_m=0.2), False),
        (dict(obstacle_stop_distance_m=0.5), True),
        (dict(max_linear_speed_mps=0.8), False),
        (dict(max_linear_speed_mps=0.3), True),
        (dict(max_angular_speed_radps=2.0), False),
        (dict(max_linear_accel_mps2=0.5), False),  # read-only: no safer direction
        (dict(camera_pitch_rad=0.1), False),  # calibration
        (dict(obstacle_max_height_m=1.5), True),
        (dict(obstacle_max_height_m=0.8), False),
        (dict(robot_radius_m=0.25), True),
        (dict(robot_radius_m=0.15), False),
        (dict(obstacle_min_valid_fraction=0.3), False),
        (dict(estop_release_dwell_s=0.2), False),
        (dict(estop_latch_file="/tmp/x"), False),
    ],
)
def test_runtime_changes_may_only_tighten(change, allowed):
    old = SafetyConfig()
    new = old.replace(**change)
    reason = check_runtime_change(old, new)
    assert (reason is None) == allowed, reason
    if not allowed:
        assert next(iter(change)) in reason


def test_enabling_a_disabled_watchdog_is_tightening_and_node_fields_are_not_judged():
    old = SafetyConfig(camera_timeout_s=0.0)
    assert check_runtime_change(old, old.replace(camera_timeout_s=0.3)) is None

    @dataclasses.dataclass
    class NodeConfig(SafetyConfig):
        input_topic: str = "/a"

    assert check_runtime_change(NodeConfig(), NodeConfig(input_topic="/b")) is None
    assert "command_timeout_s" in check_runtime_change(NodeConfig(), NodeConfig(command_timeout_s=0.0))


def test_set_config_refuses_loosening_while_gating_and_keeps_the_old_limits():
    sup = SafetySupervisor(SafetyConfig(**FAST))
    # Before the first update (configuring): anything valid goes.
    assert sup.set_config(sup.config.replace(command_timeout_s=1.0)) is None
    stamped_feed(sup, 0.0)
    sup.command(0.0, 0.2, 0.0)
    sup.update(0.0, CLOCK0)
    reason = sup.set_config(sup.config.replace(command_timeout_s=0.0, max_linear_speed_mps=2.0))
    assert reason and "command_timeout_s" in reason and "max_linear_speed_mps" in reason
    assert sup.config.command_timeout_s == 1.0 and sup.config.max_linear_speed_mps == 0.5
    assert sup.counts["config_rejected"] == 1
    assert sup.set_config(sup.config.replace(max_linear_speed_mps=0.3)) is None  # tightening applies
    sup.deactivate()
    assert sup.set_config(sup.config.replace(max_linear_speed_mps=0.5)) is None


@settings(max_examples=60, deadline=None)
@given(
    speed=st.floats(0.0, 5.0), timeout=st.floats(0.0, 10.0), distance=st.floats(0.0, 10.0), time_to_stop=st.floats(0.0, 10.0)
)
def test_property_an_accepted_runtime_change_never_loosens(speed, timeout, distance, time_to_stop):
    old = SafetyConfig()
    try:
        new = old.replace(max_linear_speed_mps=speed, command_timeout_s=timeout, obstacle_stop_distance_m=distance,
                          obstacle_time_to_stop_s=time_to_stop)
    except ValueError:
        return  # not a valid config at all
    if check_runtime_change(old, new) is None:
        assert new.max_linear_speed_mps <= old.max_linear_speed_mps
        assert 0.0 < new.command_timeout_s <= old.command_timeout_s
        assert new.obstacle_stop_distance_m >= old.obstacle_stop_distance_m
        assert new.obstacle_time_to_stop_s >= old.obstacle_time_to_stop_s


# -- item 3: e-stop re-arm and persistence ------------------------------------------------------------------
def test_estop_release_after_a_silent_commander_needs_only_the_dwell_then_a_new_motion():
    sup = SafetySupervisor(SafetyConfig(command_timeout_s=0.2, **FAST))
    stamped_feed(sup, 0.0)
    sup.command(0.0, 0.3, 0.0)
    sup.set_estop(True)
    assert sup.update(0.0, CLOCK0).state == STATE_ESTOP
    sup.set_estop(False)
    t = 0.0
    # The commander goes silent. Its last command (0.3 m/s) is in force until it expires (0.2 s); the
    # rest counts from then: at 0.25 s. The dwell (0.5 s) ends at 0.75 s.
    for _ in range(16):
        t += DT
        stamped_feed(sup, t)
        assert sup.update(t, CLOCK0 + t).linear_x == 0.0
    t += DT
    stamped_feed(sup, t)
    sup.command(t, 0.2, 0.0)
    assert sup.update(t, CLOCK0 + t).linear_x == pytest.approx(0.2)


def test_releasing_an_unlatched_estop_does_not_hold():
    sup = SafetySupervisor(SafetyConfig(**FAST))
    stamped_feed(sup, 0.0)
    sup.set_estop(False)
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(0.0, CLOCK0).state == STATE_OK


def test_estop_latch_file_survives_a_restart(tmp_path):
    path = str(tmp_path / "state" / "estop.json")
    cfg = SafetyConfig(estop_latch_file=path, **FAST)
    first = SafetySupervisor(cfg)
    assert not first.estop_active
    assert first.set_estop(True, "operator") is None
    assert json.load(open(path)) == {"latched": True, "reason": "operator"}
    second = SafetySupervisor(cfg)  # a restart
    assert second.estop_active and "before restart" in second.last_reason
    stamped_feed(second, 0.0)
    second.command(0.0, 0.2, 0.0)
    assert second.update(0.0, CLOCK0).state == STATE_ESTOP
    second.set_estop(False)
    assert not SafetySupervisor(cfg).estop_active
    assert second.update(DT, CLOCK0 + DT).state == STATE_STOPPED  # re-arm after the release


def test_a_corrupt_latch_file_starts_latched_and_start_up_latch_needs_a_release(tmp_path):
    path = tmp_path / "estop.json"
    path.write_text("{not json")
    sup = SafetySupervisor(SafetyConfig(estop_latch_file=str(path)))
    assert sup.estop_active and "unreadable" in sup.last_reason
    path.write_text('{"latched": "yes"}')
    assert SafetySupervisor(SafetyConfig(estop_latch_file=str(path))).estop_active
    start = SafetySupervisor(SafetyConfig(estop_latched_at_start=True))
    assert start.estop_active and "release it explicitly" in start.last_reason


def test_a_latch_that_cannot_be_saved_still_latches_and_says_so(tmp_path):
    blocker = tmp_path / "state"
    sup = SafetySupervisor(SafetyConfig(estop_latch_file=str(blocker / "estop.json")))
    assert not sup.estop_active  # no file yet: released
    blocker.write_text("")  # now the directory cannot be created: a file is in the way
    reason = sup.set_estop(True)
    assert reason and "NOT saved" in reason and sup.estop_active and sup.counts["latch_file_errors"] == 1
    assert not os.path.exists(blocker / "estop.json")


# -- item 4: the base-frame obstacle model behind update() -----------------------------------------------
def sim_supervisor(**overrides):
    sup = SafetySupervisor(SafetyConfig(**{**FAST, **overrides}))
    sup.set_camera(SIM_INTR)  # mounting pose and footprint: the config defaults = the sim robot
    return sup


def sim_feed(sup, t, depth):
    sup.sensor("camera", t, CLOCK0 + t, CLOCK0 + t)
    sup.sensor("odom", t, CLOCK0 + t, CLOCK0 + t)
    return sup.depth(t, depth, CLOCK0 + t, CLOCK0 + t)


def test_box_ahead_blocks_forward_turning_passes_and_the_reason_has_the_distance():
    sup = sim_supervisor()
    reading = sim_feed(sup, 0.0, sim_depth([BOX_AHEAD_SIM]))
    assert reading.distance_m == pytest.approx(0.30, abs=0.01)
    sup.command(0.0, 0.2, 0.5)
    out = sup.update(0.0, CLOCK0)
    assert out.state == STATE_OBSTACLE and out.linear_x == 0.0 and out.angular_z == pytest.approx(0.5)
    assert any(r.startswith("blocked by obstacle at 0.30 m") for r in out.reasons)
    assert sup.last_obstacle.distance_m == pytest.approx(0.30, abs=0.01)
    sup.command(DT, -0.2, 0.0)
    assert sup.update(DT, CLOCK0 + DT).linear_x == pytest.approx(-0.2)  # reversing away


def test_the_zone_follows_the_speed_the_base_still_has():
    # A wall 0.50 m ahead of the footprint: clear for a 0.1 m/s command from rest (zone 0.40 m), blocked
    # for the same command while the base still moves at 0.5 m/s (zone 0.60 m).
    wall = sim_depth([((0.70, -3.0, 0.0), (0.8, 3.0, 1.6))])
    sup = sim_supervisor(max_linear_accel_mps2=1.0)
    sim_feed(sup, 0.0, wall)
    sup.command(0.0, 0.1, 0.0)
    assert sup.update(0.0, CLOCK0).state == STATE_OK
    sup._out = (0.5, 0.0)  # as if it had been driving at 0.5 m/s (decelerating at 1 m/s^2 to 0.1)
    out = sup.update(DT, CLOCK0 + DT)
    assert out.state == STATE_OBSTACLE and out.linear_x == 0.0


def test_an_old_depth_frame_lengthens_the_zone_by_the_distance_driven_since():
    # Wall 0.50 m ahead of the footprint; command 0.2 m/s: zone 0.35 + 0.1 = 0.45 m, clear with a fresh
    # frame. The same frame 0.4 s later (depth timeout 0.5 s, so still fresh): + 0.2 x 0.4 = 0.08 m, rounded
    # up to 0.10 m -> 0.55 m.
    wall = sim_depth([((0.70, -3.0, 0.0), (0.8, 3.0, 1.6))])
    sup = sim_supervisor(depth_timeout_s=0.5, camera_timeout_s=0.5, odom_timeout_s=0.5)
    sim_feed(sup, 0.0, wall)
    sup.command(0.0, 0.2, 0.0)
    assert sup.update(0.0, CLOCK0).state == STATE_OK
    sup.sensor("camera", 0.4, CLOCK0 + 0.4, CLOCK0 + 0.4)
    sup.sensor("odom", 0.4, CLOCK0 + 0.4, CLOCK0 + 0.4)
    sup.command(0.4, 0.2, 0.0)
    out = sup.update(0.4, CLOCK0 + 0.4)
    assert out.state == STATE_OBSTACLE and out.linear_x == 0.0
    assert sup.last_obstacle.zone_length_m == pytest.approx(0.55, abs=1e-6)


def test_a_polygon_footprint_whose_turn_is_also_blocked_stops_both():
    # A square base 0.4 m wide: a box 6 cm ahead of its front edge blocks forward motion and its
    # corners would sweep it when turning in place. Mounted low and level so the camera sees the box.
    sup = SafetySupervisor(SafetyConfig(footprint="[[0.2, 0.2], [-0.2, 0.2], [-0.2, -0.2], [0.2, -0.2]]", **FAST))
    sup.set_camera(SIM_INTR, CameraMount(0.1, 0.0, 0.3))
    from tests.safety.depth_scene import level_axes, render_depth

    i = SIM_INTR
    depth = render_depth(i.width, i.height, i.fx, i.fy, i.cx, i.cy, (0.1, 0.0, 0.3), level_axes(), [((0.26, -0.1, 0.0), (0.5, 0.1, 0.5))])
    sim_feed(sup, 0.0, depth)
    sup.command(0.0, 0.2, 1.0)
    out = sup.update(0.0, CLOCK0)
    assert out.state == STATE_OBSTACLE and (out.linear_x, out.angular_z) == (0.0, 0.0)


def test_depth_that_does_not_match_the_camera_info_raises_and_does_not_refresh():
    sup = sim_supervisor()
    with pytest.raises(ValueError, match="CameraInfo"):
        sim_feed(sup, 0.0, np.full((48, 64), 3.0, np.float32))
    sup.command(0.0, 0.2, 0.0)
    out = sup.update(0.0, CLOCK0)
    assert out.state == STATE_STALE and any(r.startswith("depth: no message yet") for r in out.reasons)


def test_a_camera_model_that_arrives_after_the_depth_frame_starts_from_that_frame():
    """Depth first, then its CameraInfo (the simulator's order, every frame): the new model must judge the
    frame it already has, not block everything as "no depth frame yet" until the next one (the first plan
    of an episode used to abort as blocked at start-up). A rebuilt model (a footprint change) too."""
    sup = SafetySupervisor(SafetyConfig(**FAST))
    sim_feed(sup, 0.0, sim_depth())  # open floor, before any camera model: the image-region rule
    sup.set_camera(SIM_INTR)
    sup.command(0.0, 0.2, 0.5)
    out = sup.update(0.0, CLOCK0)
    assert out.state == STATE_OK and out.linear_x == pytest.approx(0.2), out
    assert sup.set_config(sup.config.replace(footprint_padding_m=0.03)) is None  # tightening: the model is rebuilt
    sup.command(DT, 0.2, 0.5)
    out = sup.update(DT, CLOCK0 + DT)
    assert out.state == STATE_OK and out.linear_x == pytest.approx(0.2), out
    boxed = SafetySupervisor(SafetyConfig(**FAST))  # and a box in that frame is seen at once
    sim_feed(boxed, 0.0, sim_depth([BOX_AHEAD_SIM]))
    boxed.set_camera(SIM_INTR)
    boxed.command(0.0, 0.2, 0.0)
    out = boxed.update(0.0, CLOCK0)
    assert out.state == STATE_OBSTACLE and any(r.startswith("blocked by obstacle at 0.30 m") for r in out.reasons), out


def test_set_camera_is_idempotent_and_config_changes_rebuild_the_model():
    sup = sim_supervisor()
    model = sup.obstacle_stop
    sup.set_camera(SIM_INTR)
    assert sup.obstacle_stop is model
    assert sup.set_config(sup.config.replace(robot_radius_m=0.3)) is None
    assert sup.obstacle_stop is not model and sup.obstacle_stop.footprint.radius_m == 0.3
    assert model.floor_blind_distance_m == pytest.approx(0.527, abs=0.03)


@settings(max_examples=60, deadline=None)
@given(
    commands=st.lists(
        st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True)),
        min_size=1, max_size=12,
    ),
    blank=st.floats(0.0, 1.0),
)
def test_property_outputs_are_finite_bounded_and_zero_after_a_non_finite_command(commands, blank):
    sup = sim_supervisor()
    depth = sim_depth()
    depth[np.random.default_rng(0).random(depth.shape) < blank] = np.nan
    t = 0.0
    for v, w in commands:
        t += DT
        sim_feed(sup, t, depth)
        sup.command(t, v, w)
        out = sup.update(t, CLOCK0 + t)
        assert math.isfinite(out.linear_x) and math.isfinite(out.angular_z)
        assert abs(out.linear_x) <= sup.config.max_linear_speed_mps and abs(out.angular_z) <= sup.config.max_angular_speed_radps
        if not (math.isfinite(v) and math.isfinite(w)):
            assert (out.linear_x, out.angular_z) == (0.0, 0.0)
        # A blanked camera lets no forward motion pass, except a tight circle whose footprint moves less
        # than 5 cm (2 v / |w|: turning on the spot) and speeds below 1e-6 m/s (standing still).
        if blank > 0.6 and out.linear_x > 1e-6:
            on_the_spot = out.angular_z != 0.0 and 2.0 * out.linear_x / abs(out.angular_z) < 0.05
            assert on_the_spot, f"forward motion {out} passed with {blank:.0%} of the depth blanked"
