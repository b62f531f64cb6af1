"""Fault tests of the safety_supervisor node over real rclpy: camera loss, e-stop, obstacle, NaN, stop.

One supervisor and one helper node share a module-scoped context (discovery in LOCALHOST mode takes
~2 s; paying it once keeps the suite fast). The helper streams camera, depth and odometry at 30 Hz
and raw commands at 20 Hz from timers on the same executor, and records every `/cmd_vel` with its
arrival time. Timing bounds are measured between the test's own clock stamps (the fault, the first
zero `/cmd_vel` received), so they include transport and executor delays.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

CAMERA_TIMEOUT_S = 0.3
RATE_HZ = 20.0
# The bound for "camera stops -> /cmd_vel zero". Nominal worst case is the timeout plus one
# output tick (0.35 s); the remaining 0.15 s is slack for the executor and transport on a shared CPU.
CAMERA_FAULT_BOUND_S = 0.5


class Rig:
    def __init__(self, context, executor):
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from rclpy.node import Node
        from sensor_msgs.msg import Image
        from std_srvs.srv import SetBool, Trigger

        from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS
        from vlm_agent.nodes.safety_supervisor import SafetySupervisorNode
        from vlm_agent.sensors.image_conversion import numpy_to_image

        self.executor = executor
        self.supervisor = SafetySupervisorNode(
            context=context,
            parameter_overrides=[],
        )
        self.supervisor.set_parameters(self._params())
        from vlm_agent.nodes.base import bring_up

        assert bring_up(self.supervisor)
        self.node = Node("safety_test_helper", context=context)
        executor.add_node(self.supervisor)
        executor.add_node(self.node)
        self.Twist = Twist
        self.camera_on = self.depth_on = self.odom_on = True
        self.camera_stamp = None
        self.camera_stamp_age_s = None
        self.hostile: dict = {}
        self.depth_m = np.full((48, 64), 3.0, np.float32)
        self.command: tuple[float, float] | None = None
        self.received: list[tuple[float, float, float]] = []  # (arrival monotonic s, linear.x, angular.z)
        self.last_camera_pub = 0.0
        self._numpy_to_image = numpy_to_image
        self._rgb = numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8")
        self.cam_pub = self.node.create_publisher(Image, "/camera/color/image_raw", SENSOR_QOS)
        self.depth_pub = self.node.create_publisher(Image, "/camera/depth/image_rect_raw", SENSOR_QOS)
        self.odom_pub = self.node.create_publisher(Odometry, "/odom", SENSOR_QOS)
        self.cmd_pub = self.node.create_publisher(Twist, "/vlm_agent/cmd_vel_raw", COMMAND_QOS)
        self.sub = self.node.create_subscription(Twist, "/cmd_vel", self._on_cmd_vel, COMMAND_QOS)
        self.estop = self.node.create_client(SetBool, "/vlm_agent/estop")
        self.stop = self.node.create_client(Trigger, "/vlm_agent/stop")
        self.node.create_timer(1.0 / 30.0, self._sensors)
        self.node.create_timer(1.0 / 20.0, self._commands)
        for pub in (self.cam_pub, self.depth_pub, self.odom_pub, self.cmd_pub):
            assert wait_for_subscribers(pub)
        assert wait_for_publishers(self.sub)
        assert self.estop.wait_for_service(timeout_sec=15) and self.stop.wait_for_service(timeout_sec=15)

    @staticmethod
    def _params():
        from rclpy.parameter import Parameter

        return [
            Parameter("camera_timeout_s", value=CAMERA_TIMEOUT_S),
            Parameter("depth_timeout_s", value=CAMERA_TIMEOUT_S),
            Parameter("odom_timeout_s", value=CAMERA_TIMEOUT_S),
            Parameter("publish_rate_hz", value=RATE_HZ),
            Parameter("obstacle_stop_distance_m", value=0.4),
            Parameter("max_linear_accel_mps2", value=20.0),
            Parameter("max_angular_accel_radps2", value=40.0),
        ]

    def _sensors(self):
        from nav_msgs.msg import Odometry
        from rclpy.duration import Duration

        stamp = self.node.get_clock().now().to_msg()
        if self.camera_on:
            if self.camera_stamp is not None:  # a fault: a frozen stamp
                self._rgb.header.stamp = self.camera_stamp
            elif self.camera_stamp_age_s is not None:  # a fault: every frame arrives this old
                self._rgb.header.stamp = (self.node.get_clock().now() - Duration(seconds=self.camera_stamp_age_s)).to_msg()
            else:
                self._rgb.header.stamp = stamp
            if self.hostile.get("camera") is not None:  # a hostile frame instead of the good one
                self.hostile["camera"].header.stamp = stamp
                self.cam_pub.publish(self.hostile["camera"])
            else:
                self.cam_pub.publish(self._rgb)
            self.last_camera_pub = time.monotonic()
        if self.depth_on:
            depth = self.hostile.get("depth") or self._numpy_to_image(self.depth_m, "32FC1")
            depth.header.stamp = stamp
            self.depth_pub.publish(depth)
        if self.odom_on:
            odom = Odometry()
            odom.header.stamp = stamp
            odom.pose.pose.orientation.w = 1.0
            if self.hostile.get("odom_x") is not None:
                odom.pose.pose.position.x = self.hostile["odom_x"]
            self.odom_pub.publish(odom)

    def _commands(self):
        if self.command is not None:
            msg = self.Twist()
            msg.linear.x, msg.angular.z = self.command
            self.cmd_pub.publish(msg)

    def _on_cmd_vel(self, msg):
        self.received.append((time.monotonic(), msg.linear.x, msg.angular.z))

    def spin(self, seconds):
        spin_until(self.executor, lambda: False, timeout=seconds, step=0.01)

    def wait_for(self, predicate, timeout=5.0):
        start = len(self.received)
        return spin_until(self.executor, lambda: any(predicate(v, w) for _, v, w in self.received[start:]), timeout=timeout, step=0.01)

    def call(self, client, request):
        future = client.call_async(request)
        assert spin_until(self.executor, future.done, timeout=5.0)
        return future.result()

    def reset(self):
        from std_srvs.srv import SetBool

        self.call(self.estop, SetBool.Request(data=False))
        self.camera_on = self.depth_on = self.odom_on = True
        self.camera_stamp = None
        self.camera_stamp_age_s = None
        self.hostile = {}
        self.depth_m = np.full((48, 64), 3.0, np.float32)
        self.command = (0.0, 0.0)
        self.spin(0.3)
        self.command = None
        self.spin(0.2)


@pytest.fixture(scope="module")
def rig():
    with ros_session() as (context, executor):
        yield Rig(context, executor)


@pytest.fixture
def fresh(rig):
    rig.reset()
    return rig


def _moving(v, w):
    return abs(v) > 0.05 or abs(w) > 0.05


def test_passes_commands_clamped_when_all_inputs_are_fresh(fresh):
    fresh.command = (5.0, 0.0)  # above the 0.5 m/s limit
    assert fresh.wait_for(lambda v, w: v > 0.45)
    fresh.spin(0.3)
    assert max(v for _, v, _ in fresh.received[-5:]) == pytest.approx(0.5)


def test_camera_stops_gives_zero_within_half_a_second(fresh):
    """From the first moving output on: moving, then zero within the bound of the camera's last frame,
    then only zero. The fault time is the camera's last publish, which can come *before* the first
    moving output (a frame published between setting the command and its echo); judging every output
    after that time used to count the idle zeros that preceded the motion as an "early zero" followed
    by "motion resuming" (the 1-in-6 glitch of an earlier version of this test, reproduced under CPU
    contention: the supervisor had not yet received the new command)."""
    n0 = len(fresh.received)
    fresh.command = (0.3, 0.5)
    assert fresh.wait_for(lambda v, w: v > 0.25 and w > 0.45)
    fresh.camera_on = False
    fresh.spin(0.05)  # make sure the sensor timer has seen the flag
    fault_time = fresh.last_camera_pub
    assert fresh.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=3.0)
    fresh.spin(0.3)  # and it stays zero while the commands keep coming
    outputs = fresh.received[n0:]
    motion = outputs[next(i for i, (_, v, w) in enumerate(outputs) if v != 0.0 or w != 0.0):]
    stop = next(i for i, (_, v, w) in enumerate(motion) if v == 0.0 and w == 0.0)
    assert all(v != 0.0 or w != 0.0 for _, v, w in motion[:stop]), motion[:stop]
    assert all(v == 0.0 and w == 0.0 for _, v, w in motion[stop:]), motion[stop:]
    delay = motion[stop][0] - fault_time
    assert CAMERA_TIMEOUT_S - 0.05 <= delay <= CAMERA_FAULT_BOUND_S, f"zero after {delay:.3f} s"
    status = fresh.supervisor.status_extra()
    assert status["state"] == "stale" and "camera" in fresh.supervisor.health.message
    fresh.camera_on = True  # recovery
    assert fresh.wait_for(lambda v, w: v > 0.25)


def test_odom_and_depth_loss_also_stop(fresh):
    for flag in ("odom_on", "depth_on"):
        fresh.command = (0.3, 0.0)
        assert fresh.wait_for(lambda v, w: v > 0.25)
        setattr(fresh, flag, False)
        assert fresh.wait_for(lambda v, w: v == 0.0, timeout=2.0), flag
        setattr(fresh, flag, True)


def test_estop_latches_through_new_commands_until_released(fresh):
    from std_srvs.srv import SetBool

    fresh.command = (0.3, 0.3)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    response = fresh.call(fresh.estop, SetBool.Request(data=True))
    assert response.success
    t0 = time.monotonic()
    fresh.command = (0.4, -0.4)  # a different, new command must not release it
    fresh.spin(0.8)
    after = [(v, w) for t, v, w in fresh.received if t > t0 + 0.1]
    assert after and all(v == 0.0 and w == 0.0 for v, w in after)
    assert fresh.supervisor.status_extra()["state"] == "estop"
    fresh.call(fresh.estop, SetBool.Request(data=False))
    # After the release the commander comes to rest, then a new motion passes (a release never
    # resumes a running command stream at once: issue 11).
    fresh.command = (0.0, 0.0)
    fresh.spin(0.8)
    fresh.command = (0.4, -0.4)
    assert fresh.wait_for(lambda v, w: v > 0.35 and w < -0.35)


def test_obstacle_blocks_forward_but_allows_turning_and_reversing(fresh):
    depth = np.full((48, 64), 3.0, np.float32)
    depth[16:32, 24:40] = 0.25  # a box 25 cm ahead, in the forward ROI
    fresh.depth_m = depth
    fresh.spin(0.2)
    fresh.command = (0.3, 0.0)
    fresh.spin(0.6)
    assert fresh.received and all(v <= 0.0 for _, v, _ in fresh.received[-8:])
    assert fresh.supervisor.status_extra()["state"] == "obstacle"
    fresh.command = (0.3, 0.6)  # forward part blocked, the turn passes
    assert fresh.wait_for(lambda v, w: v == 0.0 and w > 0.55)
    fresh.command = (-0.2, 0.0)  # reversing away is allowed
    assert fresh.wait_for(lambda v, w: v < -0.15)
    fresh.depth_m = np.full((48, 64), 3.0, np.float32)
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)


def test_nan_command_gives_zero_and_a_logged_reason(fresh):
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    fresh.command = (float("nan"), 0.2)
    assert fresh.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=2.0)
    fresh.spin(0.3)
    assert all(v == 0.0 and w == 0.0 for _, v, w in fresh.received[-4:])
    values = fresh.supervisor.health.key_values()
    assert int(values["dropped.rejected"]) >= 1 and "non-finite" in values["dropped.last_reason"]
    fresh.command = (0.2, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.15)


def test_stop_service_stops_the_current_motion(fresh):
    from std_srvs.srv import Trigger

    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    assert fresh.call(fresh.stop, Trigger.Request()).success
    t0 = time.monotonic()
    fresh.spin(0.5)
    assert all(v == 0.0 for t, v, _ in fresh.received if t > t0 + 0.05)
    fresh.command = (0.0, 0.0)  # the commander comes to rest, then moves again
    fresh.spin(0.2)
    fresh.command = (0.0, 0.4)
    assert fresh.wait_for(lambda v, w: w > 0.35)


def test_commands_stop_gives_zero_and_only_zero(fresh):
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    fresh.command = None  # the commander dies
    assert fresh.wait_for(lambda v, w: v == 0.0, timeout=2.0)
    fresh.spin(0.3)
    assert not any(_moving(v, w) for _, v, w in fresh.received[-4:])


def test_inactive_publishes_zero_and_activation_rearms_a_moving_stream(fresh):
    """Deactivate: zero at once and a zero stream while inactive (never silence). Activate while the
    commander is still moving: held at zero until it comes to rest and starts a new motion."""
    sup = fresh.supervisor
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    try:
        n0 = len(fresh.received)
        sup.trigger_deactivate()
        assert sup.lifecycle_state == "inactive"
        fresh.spin(0.6)
        # Commands gated before the deactivation may still be in the helper's queue (forwarded on
        # arrival); one publisher's messages arrive in order, so from the deactivation zero on,
        # everything must be zero.
        after = [(v, w) for _, v, w in fresh.received[n0:]]
        during = after[next(i for i, c in enumerate(after) if c == (0.0, 0.0)):]
        assert len(during) >= 8 and all(c == (0.0, 0.0) for c in during), during[:5]
        sup.trigger_activate()
        assert sup.is_active
        t1 = time.monotonic()
        fresh.spin(0.6)
        held = [(v, w) for t, v, w in fresh.received if t > t1]
        assert held and all(c == (0.0, 0.0) for c in held), held[:5]
        fresh.command = (0.0, 0.0)
        fresh.spin(0.8)
        fresh.command = (0.3, 0.0)
        assert fresh.wait_for(lambda v, w: v > 0.25)
    finally:
        if not sup.is_active:
            sup.trigger_activate()


# -- issue 11: freshness from stamps, parameters only tighten at the parameter level ---------------


def _zero_after_fault(fresh, fault):
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    rejected_before = fresh.supervisor.supervisor.counts["frames_rejected"]
    t0 = time.monotonic()
    fault()
    assert fresh.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=3.0)
    first_zero = next(t for t, v, w in fresh.received if t > t0 and v == 0.0 and w == 0.0)
    fresh.spin(0.3)  # it stays zero while the faulty camera keeps "arriving" at full rate
    assert all(v == 0.0 and w == 0.0 for t, v, w in fresh.received if t > first_zero)
    assert fresh.supervisor.status_extra()["state"] == "stale"
    assert fresh.supervisor.supervisor.counts["frames_rejected"] > rejected_before
    assert int(fresh.supervisor.status_extra()["safety.frames_rejected"]) > rejected_before
    return first_zero - t0


def test_frozen_camera_stamp_is_a_dead_camera(fresh):
    """A driver re-sending one frame (same stamp) at full rate: arrival-time freshness called it live."""
    delay = _zero_after_fault(fresh, lambda: setattr(fresh, "camera_stamp", fresh.node.get_clock().now().to_msg()))
    assert delay <= CAMERA_FAULT_BOUND_S, f"zero after {delay:.3f} s"
    assert "camera" in fresh.supervisor.health.message
    fresh.camera_stamp = None
    assert fresh.wait_for(lambda v, w: v > 0.25)


def test_backlogged_camera_frames_are_not_fresh(fresh):
    """Frames arriving at full rate with advancing stamps, but each 1 s old (an executor stall or a DDS
    backlog): arrival-time freshness called them live."""
    delay = _zero_after_fault(fresh, lambda: setattr(fresh, "camera_stamp_age_s", 1.0))
    assert delay <= CAMERA_FAULT_BOUND_S, f"zero after {delay:.3f} s"
    fresh.camera_stamp_age_s = None
    assert fresh.wait_for(lambda v, w: v > 0.25)


def _set_remote(fresh, name, value):
    """`ros2 param set safety_supervisor <name> <value>` through the node's SetParameters service."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = fresh.node.create_client(SetParameters, "/safety_supervisor/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=10)
        result = fresh.call(client, SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
        return result.results[0]
    finally:
        fresh.node.destroy_client(client)


def test_loosening_a_safety_parameter_is_refused_at_the_parameter_level(fresh):
    """Before: AgentNode accepted the value (ros2 param get showed 0) while the supervisor kept its old
    config silently. Now the set fails with the reason and the parameter keeps its value."""
    sup = fresh.supervisor
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    before = sup.supervisor.counts["config_rejected"]
    for name, value in (("command_timeout_s", 0.0), ("obstacle_stop_distance_m", 0.0), ("max_linear_speed_mps", 2.0)):
        old = sup.get_parameter(name).value
        result = _set_remote(fresh, name, value)
        assert not result.successful, name
        assert name in result.reason and "refused" in result.reason, result.reason
        assert sup.get_parameter(name).value == old and getattr(sup.config, name) == old
        assert getattr(sup.supervisor.config, name) == old
    assert sup.supervisor.counts["config_rejected"] == before + 3
    assert "parameter change refused" in sup.status_extra()["last_reason"]
    # Tightening is accepted, at the parameter and in the gate.
    result = _set_remote(fresh, "max_linear_speed_mps", 0.25)
    try:
        assert result.successful, result.reason
        assert sup.supervisor.config.max_linear_speed_mps == 0.25
        fresh.spin(0.3)
        assert max(v for _, v, _ in fresh.received[-4:]) <= 0.25 + 1e-9
    finally:
        # Loosening is allowed while not gating (inactive): restore the module rig's limit.
        sup.trigger_deactivate()
        assert _set_remote(fresh, "max_linear_speed_mps", 0.5).successful
        sup.trigger_activate()


def test_estop_release_does_not_resume_the_running_stream(fresh):
    """Releasing the e-stop while the commander keeps streaming the same motion keeps zero: the
    commander must rest `estop_release_dwell_s`, then start a new motion (issue 11)."""
    from std_srvs.srv import SetBool

    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    assert fresh.call(fresh.estop, SetBool.Request(data=True)).success
    fresh.spin(0.2)
    assert fresh.call(fresh.estop, SetBool.Request(data=False)).success
    t0 = time.monotonic()
    fresh.spin(1.0)  # the same stream keeps coming
    after = [(v, w) for t, v, w in fresh.received if t > t0 + 0.05]
    assert after and all(c == (0.0, 0.0) for c in after), after[:5]
    assert fresh.supervisor.status_extra()["state"] == "stopped"
    fresh.command = (0.0, 0.0)  # rest for the dwell, then a new motion passes
    fresh.spin(0.8)
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)



# -- hostile inputs through ROS (a first slice of issue 11 item 8) ---------------------------------


def _image(height, width, encoding, step, data_len):
    from sensor_msgs.msg import Image

    return Image(height=height, width=width, encoding=encoding, step=step, data=bytes(data_len))


HOSTILE_SENSORS = {
    "camera_huge_header": ("camera", lambda: _image(100000, 100000, "rgb8", 300000, 64), "camera_malformed"),
    "camera_0x0": ("camera", lambda: _image(0, 0, "rgb8", 0, 0), "camera_malformed"),
    "camera_step_mismatch": ("camera", lambda: _image(48, 64, "rgb8", 100, 48 * 100 - 7), "camera_malformed"),
    "camera_unknown_encoding": ("camera", lambda: _image(48, 64, "yuv_garbage", 64, 48 * 64), "camera_malformed"),
    "depth_wrong_encoding": ("depth", lambda: _image(48, 64, "rgb8", 192, 48 * 192), "depth_malformed"),
    "depth_huge_header": ("depth", lambda: _image(100000, 100000, "32FC1", 400000, 64), "depth_malformed"),
    "odom_nan": ("odom_x", lambda: float("nan"), "odom_non_finite"),
    "odom_inf": ("odom_x", lambda: float("inf"), "odom_non_finite"),
}


@pytest.mark.parametrize("case", list(HOSTILE_SENSORS))
def test_hostile_sensor_messages_stop_the_robot_with_the_reason(fresh, case):
    """The hostile message replaces the good stream: zero within the camera-fault bound, only finite
    zeros while it lasts, the reason counted on /diagnostics, and recovery when the stream is good."""
    key, make, drop = HOSTILE_SENSORS[case]
    fresh.command = (0.3, 0.0)
    assert fresh.wait_for(lambda v, w: v > 0.25)
    t0 = time.monotonic()
    fresh.hostile = {key: make()}
    assert fresh.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=10.0)
    first_zero = next(t for t, v, w in fresh.received if t > t0 and v == 0.0 and w == 0.0)
    # The bound is the supervisor's sensor timeout; the slack covers scheduling of this test's own
    # publishers on a loaded 2-core CI machine (0.74 s seen there), not supervisor latency.
    assert first_zero - t0 <= CAMERA_FAULT_BOUND_S + 0.5, f"zero after {first_zero - t0:.3f} s"
    fresh.spin(0.3)
    assert all(v == 0.0 and w == 0.0 for t, v, w in fresh.received if t > first_zero)
    values = fresh.supervisor.health.key_values()
    assert int(values.get(f"dropped.{drop}", 0)) > 0, values
    assert fresh.supervisor.status_extra()["state"] == "stale"
    fresh.hostile = {}
    assert fresh.wait_for(lambda v, w: v > 0.25)


@pytest.mark.parametrize(
    "command, expect",
    [
        ((float("inf"), 0.0), "zero"),
        ((0.0, float("-inf")), "zero"),
        ((float("nan"), float("nan")), "zero"),
        ((1e308, 0.0), "clamped"),
        ((-1e308, 1e308), "clamped"),
    ],
    ids=["inf", "-inf_turn", "nan", "huge", "huge_both"],
)
def test_absurd_raw_commands_give_finite_output_within_limits(fresh, command, expect):
    import math

    fresh.command = command
    fresh.spin(0.6)
    out = [(v, w) for _, v, w in fresh.received[-6:]]
    assert out and all(math.isfinite(v) and math.isfinite(w) and abs(v) <= 0.5 + 1e-9 and abs(w) <= 1.5 + 1e-9 for v, w in out), out
    if expect == "zero":
        assert all(c == (0.0, 0.0) for c in out), out
        assert "non-finite" in fresh.supervisor.health.key_values()["dropped.last_reason"]
    else:
        assert abs(out[-1][0]) == pytest.approx(0.5)
