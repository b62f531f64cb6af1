"""Simulation time through ROS (issue 11, item 7), over real rclpy.

* The safety supervisor on `use_sim_time` counts its command and sensor timeouts in simulated
  seconds: a simulator at a tenth of real time (commands 0.5 s of wall time apart) does not make it
  zero between commands, one at ten times real time does not let the robot drive on for seconds of
  sim time after the commands stop, and a `/clock` that stops holds zero within `clock_timeout_s`
  (steady clock) with the reason on the gate state and `/diagnostics`.
* `mujoco_sim` with `real_time_factor: 0` (a second process) runs in lock-step with the controller
  while the robot is commanded to move (the world advances about one control period per `cmd_vel`),
  goes on after `lockstep_timeout_s` when the controller falls silent, and runs freely, faster than
  real time, while the robot rests.

Here the test itself is the clock (the supervisor tests) or the controller (the simulator test), so
the checks are on simulated time and do not depend on how loaded the machine is.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from tests.ros_harness import NodeProcess, ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

TIMEOUT_S = 0.3  # command and sensor timeouts of the supervisor under test (sim seconds)
PERIOD_S = 0.05  # its publish_rate_hz = 20


class SimClockRig:
    """A supervisor on sim time and a helper that is the clock: `step(dt)` advances /clock, publishes
    camera, depth and odometry stamped with the new time and (optionally) a raw command."""

    def __init__(self, context, executor, namespace, **params):
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, bring_up
        from vlm_agent.nodes.safety_supervisor import SafetySupervisorNode
        from vlm_agent.sensors.frames import seconds_to_stamp
        from vlm_agent.sensors.image_conversion import numpy_to_image

        values = dict(
            use_sim_time=True, command_timeout_s=TIMEOUT_S, camera_timeout_s=TIMEOUT_S, depth_timeout_s=TIMEOUT_S,
            odom_timeout_s=TIMEOUT_S, obstacle_stop_distance_m=0.0, publish_rate_hz=1.0 / PERIOD_S,
            max_linear_accel_mps2=50.0, max_angular_accel_radps2=100.0,
        )
        values.update(params)
        self.executor = executor
        self.supervisor = SafetySupervisorNode(context=context, namespace=namespace, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.node = Node("sim_clock_helper", namespace=namespace, context=context)
        executor.add_node(self.supervisor)
        executor.add_node(self.node)
        assert bring_up(self.supervisor)
        self.Twist, self.Clock, self._stamp = Twist, Clock, seconds_to_stamp
        self.sim = 100.0
        self.received: list[tuple[float, float, float]] = []  # (sim time when received, linear.x, angular.z)
        self.states: list[dict] = []
        self._rgb = numpy_to_image(np.zeros((24, 32, 3), np.uint8), "rgb8")
        self._depth = numpy_to_image(np.full((24, 32), 3.0, np.float32), "32FC1")
        self._odom = Odometry()
        self._odom.pose.pose.orientation.w = 1.0
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10)
        self.cam_pub = self.node.create_publisher(Image, "camera/color/image_raw", SENSOR_QOS)
        self.depth_pub = self.node.create_publisher(Image, "camera/depth/image_rect_raw", SENSOR_QOS)
        self.odom_pub = self.node.create_publisher(Odometry, "odom", SENSOR_QOS)
        self.cmd_pub = self.node.create_publisher(Twist, "vlm_agent/cmd_vel_raw", COMMAND_QOS)
        self.sub = self.node.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, COMMAND_QOS)
        self.state_sub = self.node.create_subscription(String, "vlm_agent/safety/state", lambda m: self.states.append(json.loads(m.data)), LATCHED_QOS)
        for pub in (self.clock_pub, self.cam_pub, self.depth_pub, self.odom_pub, self.cmd_pub):
            assert wait_for_subscribers(pub)
        assert wait_for_publishers(self.sub) and wait_for_publishers(self.state_sub)

    def _on_cmd_vel(self, msg):
        self.received.append((self.sim, msg.linear.x, msg.angular.z))

    def step(self, dt_sim: float, wall_s: float, command=None, sensors: bool = True, clock: bool = True):
        if clock:
            self.sim += dt_sim
            self.clock_pub.publish(self.Clock(clock=self._stamp(self.sim)))
            # Let every node take the new time before stamped data arrive (as mujoco_sim publishes /clock first).
            spin_until(self.executor, lambda: False, timeout=0.01, step=0.002)
        if sensors:
            stamp = self._stamp(self.sim)
            for msg, pub in ((self._rgb, self.cam_pub), (self._depth, self.depth_pub), (self._odom, self.odom_pub)):
                msg.header.stamp = stamp
                pub.publish(msg)
        if command is not None:
            msg = self.Twist()
            msg.linear.x, msg.angular.z = command
            self.cmd_pub.publish(msg)
        spin_until(self.executor, lambda: False, timeout=wall_s, step=0.005)


def test_supervisor_timeouts_count_sim_seconds_at_a_tenth_of_real_time():
    """Commands and frames every 0.05 s of sim time, 0.5 s of wall time apart (real-time factor 0.1):
    longer than the 0.3 s timeouts on the wall clock, well inside them in sim time. The output must
    follow the commands without a zero in between (on the steady clock it zeroed between every two)."""
    with ros_session() as (context, executor):
        rig = SimClockRig(context, executor, "/simtime_slow")
        for _ in range(4):
            rig.step(PERIOD_S, 0.05, command=(0.3, 0.0))  # warm-up at speed: sensors and command fresh
        assert any(v == pytest.approx(0.3) for _, v, _ in rig.received), rig.received[-5:]
        start = len(rig.received)
        for _ in range(6):
            rig.step(PERIOD_S, 0.5, command=(0.3, 0.0))
        window = rig.received[start:]
        assert len(window) >= 6
        assert all(v == pytest.approx(0.3) for _, v, _ in window), window
        assert rig.supervisor.status_extra()["control_clock"] == "sim time (/clock)"


def test_supervisor_stops_within_the_sim_time_timeout_at_ten_times_real_time():
    """Sim time runs 10x faster than the wall clock. When the commands stop, zero must follow within
    the 0.3 s command timeout *of sim time* (plus one or two output periods); a steady-clock timeout
    would have let the robot drive on for 3 s of sim time."""
    with ros_session() as (context, executor):
        rig = SimClockRig(context, executor, "/simtime_fast")
        for _ in range(10):
            rig.step(PERIOD_S, 0.005, command=(0.3, 0.0))
        assert rig.received and rig.received[-1][1] == pytest.approx(0.3), rig.received[-5:]
        last_command = rig.sim
        for _ in range(40):  # 2 s of sim time, 0.2 s of wall time: sensors keep coming, commands do not
            rig.step(PERIOD_S, 0.005)
        after = [(t, v) for t, v, _ in rig.received if t > last_command]
        first_zero = next((t for t, v in after if v == 0.0), None)
        assert first_zero is not None, after[:10]
        print(f"zero {first_zero - last_command:.2f} s of sim time after the last command")
        assert first_zero - last_command <= TIMEOUT_S + 2 * PERIOD_S + 1e-6, after[:12]
        assert all(v == 0.0 for t, v in after if t > first_zero)


def test_supervisor_holds_zero_when_the_clock_stops_and_moves_again_when_it_runs():
    """Under sim time a stopped /clock freezes every sim-time timeout: commands and frames keep
    arriving and look fresh. The steady-clock watchdog (`clock_timeout_s`) must zero the output, say
    why on the gate state, and let the motion through again once the clock runs."""
    with ros_session() as (context, executor):
        rig = SimClockRig(context, executor, "/simtime_stop", clock_timeout_s=0.5)
        for _ in range(10):
            rig.step(PERIOD_S, 0.02, command=(0.3, 0.2))
        assert rig.received[-1][1] == pytest.approx(0.3)
        t_stop = time.monotonic()
        wall_zero = None
        while time.monotonic() - t_stop < 2.0:  # the clock stops; commands (and frames) keep coming
            n = len(rig.received)
            rig.step(PERIOD_S, 0.05, command=(0.3, 0.2), clock=False)
            if wall_zero is None and any(v == 0.0 and w == 0.0 for _, v, w in rig.received[n:]):
                wall_zero = time.monotonic() - t_stop
        assert wall_zero is not None, rig.received[-5:]
        print(f"zero {wall_zero:.2f} s (wall) after /clock stopped")
        assert 0.4 <= wall_zero <= 0.5 + 0.5, wall_zero
        tail = rig.received[-10:]
        assert all(v == 0.0 and w == 0.0 for _, v, w in tail), tail
        assert spin_until(executor, lambda: rig.states and "/clock has not advanced" in rig.states[-1]["reason"], timeout=2.0), rig.states[-2:]
        assert rig.states[-1]["state"] == "stale" and rig.states[-1]["blocked"]
        assert "/clock has not advanced" in rig.supervisor.health.message
        n = len(rig.received)
        for _ in range(10):  # the clock runs again
            rig.step(PERIOD_S, 0.02, command=(0.3, 0.2))
        assert any(v == pytest.approx(0.3) for _, v, _ in rig.received[n:]), rig.received[n:]


def _sim_status(statuses):
    return next((s for s in reversed(statuses) if s.get("name") == "/mujoco_sim"), {})


def test_mujoco_sim_lockstep_waits_for_the_controller_and_runs_free_at_rest(ros_node, ros_executor):
    """real_time_factor 0, a controller (this test) answering 25 times a second of wall time with a
    moving command: the world advances about one 0.05 s control period per answer (not as fast as
    it could); when the controller falls silent the simulator goes on after lockstep_timeout_s
    (counted on /diagnostics) until its cmd_vel timeout zeroes the motion; at rest it runs freely,
    faster than real time."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import Twist
    from rosgraph_msgs.msg import Clock

    from vlm_agent.nodes.base import COMMAND_QOS, DIAGNOSTICS_QOS

    clock = []
    statuses = []
    ros_node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec + m.clock.nanosec * 1e-9), 10)
    ros_node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: statuses.extend({"name": s.name, **{kv.key: kv.value for kv in s.values}} for s in m.status), DIAGNOSTICS_QOS,
    )
    cmd = ros_node.create_publisher(Twist, "/cmd_vel", COMMAND_QOS)
    moving = Twist()
    moving.angular.z = 0.5  # turn in place: no wall to run into
    params = ["-p", "width:=32", "-p", "height:=24", "-p", "real_time_factor:=0.0", "-p", "lockstep_rate_hz:=20.0",
              "-p", "lockstep_timeout_s:=0.2", "-p", "cmd_vel_timeout_s:=0.5", "-p", "publish_instruction:=false"]
    with NodeProcess("vlm_agent.nodes.mujoco_sim", ros_args=params) as sim:
        assert wait_for_subscribers(cmd, 1, timeout=30), "simulator did not come up"
        assert spin_until(ros_executor, lambda: len(clock) > 20, timeout=20), sim.output

        # 1. At rest: free running, faster than real time.
        spin_until(ros_executor, lambda: False, timeout=0.5)
        t0, s0 = time.monotonic(), clock[-1]
        spin_until(ros_executor, lambda: False, timeout=1.5)
        free_rtf = (clock[-1] - s0) / (time.monotonic() - t0)
        print(f"free-running at rest: {free_rtf:.1f}x real time")
        assert free_rtf > 1.5, free_rtf

        # 2. Moving, the controller answers every 40 ms of wall time: ~one control period per answer.
        #    A warm-up first: until the first command has reached the simulator (discovery can take a
        #    few hundred ms on a loaded machine) it runs free, which is not what is measured here.
        t_warm = time.monotonic() + 0.5
        while time.monotonic() < t_warm:
            cmd.publish(moving)
            spin_until(ros_executor, lambda: False, timeout=0.04, step=0.005)
        answers, s_start = 0, None
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            cmd.publish(moving)
            answers += 1
            spin_until(ros_executor, lambda: False, timeout=0.04, step=0.005)
            if s_start is None:
                s_start = clock[-1]  # from the first answer on, the simulator waits for the next
        advanced = clock[-1] - s_start
        print(f"lock-step: {advanced:.2f} s of sim time for {answers} answers ({advanced / answers / 0.05:.2f} periods per answer)")
        assert advanced <= (answers + 2) * 0.05 + 0.04, (advanced, answers)
        assert advanced >= 0.4 * answers * 0.05, (advanced, answers)  # and it does step on every answer

        # 3. The controller falls silent while the last command moves: pauses end after the timeout,
        #    the command decays after cmd_vel_timeout_s (0.5 s sim = 10 periods), then it runs free again.
        s_silent = clock[-1]
        assert spin_until(ros_executor, lambda: clock[-1] - s_silent > 1.0, timeout=10.0), (clock[-1] - s_silent, sim.output)
        assert spin_until(ros_executor, lambda: int(_sim_status(statuses).get("lockstep_timeouts", "0")) >= 3, timeout=5.0), _sim_status(statuses)
        status = _sim_status(statuses)
        assert int(status["lockstep_pauses"]) >= answers // 2 and status["real_time_factor"] == "max (lock-step)", status
    assert sim.returncode == 0, sim.output
