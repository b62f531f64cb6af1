"""navid_planner node over real rclpy, with the real NavidPlanner and parser around a scripted backend.

The loop closes through the real motion_executor and a kinematic base. Faults: the model raises,
hangs past its timeout, or emits garbage -> a stop plan with the error, the robot stops, and the
node keeps serving the next instruction; a bad instruction -> a stop plan, nothing moves.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros


class ScriptedBackend:
    """NavidPlanner backend: each generate() takes the next script item (text, an exception to raise,
    or ("hang", seconds)); the last item repeats."""

    def __init__(self):
        self.script: list = ["stop"]
        self.calls = 0
        self.observed = 0
        self.instructions: list[str] = []
        self.release = threading.Event()

    def reset(self, instruction):
        self.instructions.append(instruction)

    def observe(self, rgb):
        assert rgb.ndim == 3 and rgb.dtype == np.uint8
        self.observed += 1

    def generate(self, rgb):
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, tuple) and item[0] == "hang":
            self.release.wait(item[1])
            return "move forward 25 cm"
        return item


class Rig:
    def __init__(self, context, executor):
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from tests.helpers.kinematic_base import KinematicBase
        from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
        from vlm_agent.nodes.motion_executor import MotionExecutorNode
        from vlm_agent.nodes.navid_planner import NavidPlannerNode
        from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig
        from vlm_agent.sensors.image_conversion import numpy_to_image

        self.executor = executor
        self.backend = ScriptedBackend()
        # The rig's camera publishes one still image however the base moves: a blocked-forward
        # recovery would read every forward step as blocked, so it is off here.
        planner = NavidPlanner(NavidPlannerConfig(blocked_frame_delta=0.0), backend=self.backend)
        self.planner_node = NavidPlannerNode(
            planner=planner,
            context=context,
            parameter_overrides=[Parameter("model_timeout_s", value=0.5), Parameter("history_period_s", value=0.1)],
        )
        from vlm_agent.nodes.base import bring_up

        assert bring_up(self.planner_node)
        self.exec_node = MotionExecutorNode(context=context)
        self.node = Node("planner_test_helper", context=context)
        for n in (self.planner_node, self.exec_node, self.node):
            executor.add_node(n)
        self.base = KinematicBase(self.node)
        self.plans: list[dict] = []
        self.String = String
        self.frame = numpy_to_image(np.zeros((32, 32, 3), np.uint8), "rgb8")
        self.camera_pub = self.node.create_publisher(Image, "/camera/color/image_raw", SENSOR_QOS)
        self.instr_pub = self.node.create_publisher(String, "/vlm_agent/instruction", COMMAND_QOS)
        self.plan_sub = self.node.create_subscription(String, "/vlm_agent/plan", lambda m: self.plans.append(json.loads(m.data)), LATCHED_QOS)
        self.node.create_timer(1.0 / 15.0, self._camera)
        assert wait_for_subscribers(self.camera_pub) and wait_for_subscribers(self.instr_pub)
        assert wait_for_publishers(self.plan_sub) and wait_for_subscribers(self.base.odom_pub)

    def _camera(self):
        self.frame.header.stamp = self.node.get_clock().now().to_msg()
        self.camera_pub.publish(self.frame)

    def instruct(self, text):
        self.plans.clear()
        self.instr_pub.publish(self.String(data=text))

    def wait_plan(self, predicate, timeout=10.0):
        ok = spin_until(self.executor, lambda: any(predicate(p) for p in self.plans), timeout=timeout, step=0.01)
        assert ok, self.plans[-3:]
        return next(p for p in self.plans if predicate(p))

    def spin(self, seconds):
        spin_until(self.executor, lambda: False, timeout=seconds, step=0.01)


@pytest.fixture(scope="module")
def rig():
    with ros_session() as (context, executor):
        r = Rig(context, executor)
        yield r
        r.backend.release.set()  # let a hung fake model call return before the nodes go


def _is_stop(plan):
    return [p["kind"] for p in plan["primitives"]] == ["stop"]


def test_instruction_plans_executes_replans_and_stops(rig):
    rig.backend.script = ["move forward 25 cm, turn left 30 degrees", "move forward 25 cm", "stop"]
    rig.backend.calls = 0
    x0 = rig.base.x
    rig.instruct("go to the red ball")
    final = rig.wait_plan(_is_stop, timeout=20)
    assert final["error"] is None and final["step"] == 2
    steps = [p["step"] for p in rig.plans]
    assert steps == [0, 1, 2], rig.plans
    first = rig.plans[0]
    assert first["instruction"] == "go to the red ball" and first["raw_text"].startswith("move forward 25 cm")
    assert [p["kind"] for p in first["primitives"]] == ["forward", "turn_left"] and first["latency_s"] >= 0
    now_s = rig.node.get_clock().now().nanoseconds * 1e-9
    assert 0 < now_s - first["frame_stamp_s"] < 20  # the stamp of a real camera frame of this run
    rig.spin(0.3)
    assert rig.base.x - x0 > 0.3  # it moved under the model's primitives ...
    assert rig.base.cmd == (0.0, 0.0)  # ... and stopped
    assert rig.backend.observed >= 3  # frames went into the model's history
    assert rig.planner_node.loop.state == "finished"


def test_model_raises_gives_a_stop_plan_and_the_node_keeps_running(rig):
    rig.backend.script = ["move forward 25 cm", RuntimeError("CUDA error: device lost")]
    rig.backend.calls = 0
    rig.instruct("go to the chair")
    plan = rig.wait_plan(lambda p: p["error"] is not None)
    assert _is_stop(plan) and "RuntimeError: CUDA error: device lost" in plan["error"]
    rig.spin(0.3)
    assert rig.base.cmd == (0.0, 0.0)
    rig.backend.script, rig.backend.calls = ["turn right 30 degrees", "stop"], 0
    rig.instruct("turn around")  # still alive: a new instruction runs normally
    assert rig.wait_plan(_is_stop)["error"] is None
    assert rig.plans[0]["primitives"] == [{"kind": "turn_right", "value": 30.0}]


def test_model_timeout_gives_a_stop_plan_and_stops_the_robot(rig):
    rig.backend.release.clear()
    rig.backend.script, rig.backend.calls = ["move forward 25 cm", ("hang", 5.0)], 0
    rig.instruct("go far away")
    assert spin_until(rig.executor, lambda: rig.base.cmd[0] > 0.1 or rig.plans and rig.plans[-1]["error"], timeout=10)
    plan = rig.wait_plan(lambda p: p["error"] is not None and "timed out" in p["error"], timeout=15)
    assert _is_stop(plan)
    rig.spin(0.3)
    assert rig.base.cmd == (0.0, 0.0)
    assert int(rig.planner_node.health.key_values()["dropped.model_timeout"]) >= 1
    rig.backend.release.set()  # the hung call returns late: its result must be discarded
    rig.backend.script, rig.backend.calls = ["stop"], 0
    rig.instruct("stop please")
    assert rig.wait_plan(_is_stop)["error"] is None
    assert not any(p["raw_text"] == "move forward 25 cm" for p in rig.plans)


@pytest.mark.parametrize("garbage", ["banana banana", "move forward 25 cm, fly to the moon", "move forward 9999 cm", ""])
def test_garbage_model_output_is_a_stop(rig, garbage):
    rig.backend.script, rig.backend.calls = [garbage], 0
    rig.instruct("go to the door")
    plan = rig.wait_plan(lambda p: True)
    assert _is_stop(plan) and plan["error"] and plan["raw_text"] == garbage


# (NUL is not testable here: ROS strings end at the first NUL byte.)
@pytest.mark.parametrize("instruction", ["", "   ", "go\x1b[2J to the door", "go \u202erood eht ot", "x" * 600])
def test_bad_instruction_is_rejected_and_nothing_moves(rig, instruction):
    rig.backend.script, rig.backend.calls = ["move forward 25 cm"], 0
    n_cmds = len(rig.base.commands)
    rig.instruct(instruction)
    plan = rig.wait_plan(lambda p: True)
    assert _is_stop(plan) and "instruction rejected" in plan["error"]
    rig.spin(0.5)
    assert rig.backend.calls == 0
    assert all(c == (0.0, 0.0) for c in rig.base.commands[n_cmds:])


def test_callbacks_stay_responsive_while_the_model_runs(rig):
    """The executor thread keeps spinning (timers fire) during a slow model call."""
    rig.backend.release.clear()
    rig.backend.script, rig.backend.calls = [("hang", 0.4), "stop"], 0
    ticks = []
    timer = rig.node.create_timer(0.02, lambda: ticks.append(time.monotonic()))
    try:
        rig.instruct("wait a moment")
        rig.wait_plan(lambda p: True, timeout=10)
        gaps = np.diff(ticks)
        assert len(ticks) > 10 and gaps.max() < 0.3, gaps.max()
    finally:
        rig.node.destroy_timer(timer)


def test_a_latched_instruction_starts_exactly_one_episode(rig):
    """A transient-local publisher (like the simulator's) reaches both instruction subscriptions."""
    from vlm_agent.nodes.base import LATCHED_QOS

    rig.backend.script, rig.backend.calls = ["stop"], 0
    pub = rig.node.create_publisher(rig.String, "/vlm_agent/instruction", LATCHED_QOS)
    try:
        # the planner adds its transient-local subscription when it sees a transient-local publisher
        assert spin_until(rig.executor, lambda: pub.get_subscription_count() >= 2, timeout=15)
        before = rig.planner_node.loop.episode
        rig.plans.clear()
        pub.publish(rig.String(data="go to the blue box"))
        rig.wait_plan(_is_stop)
        rig.spin(0.5)
        assert rig.planner_node.loop.episode == before + 1
        assert rig.backend.instructions[-1] == "go to the blue box" and rig.backend.calls == 1
    finally:
        rig.node.destroy_publisher(pub)


def test_missing_model_fails_configure_with_the_cause_and_nothing_is_planned(tmp_path):
    """No model directory: configure fails (the node stays unconfigured, nothing subscribes), the
    reason is in the log and on /diagnostics; a lifecycle manager would stop the bring-up there."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from vlm_agent.nodes.navid_planner import NavidPlannerNode

    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        node = NavidPlannerNode(context=context, namespace="/missing_model",
                                parameter_overrides=[Parameter("model_dir", value=str(tmp_path / "no_such_model"))])
        helper = rclpy.create_node("missing_model_helper", context=context)
        executor.add_node(node)
        executor.add_node(helper)
        statuses = []
        helper.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda m: statuses.extend(s for s in m.status if s.name == "/missing_model/navid_planner"), 10)
        node.trigger_configure()
        assert node.lifecycle_state == "unconfigured"
        assert node.count_subscribers("/missing_model/vlm_agent/instruction") == 0 or not node.subscriptions
        assert spin_until(executor, lambda: any("no_such_model" in s.message for s in statuses), timeout=10), statuses[-1:]
        status = [s for s in statuses if "no_such_model" in s.message][-1]
        assert status.level in (b"\x01", b"\x02") and status.message.startswith("unconfigured")
        values = {kv.key: kv.value for kv in status.values}
        assert values["lifecycle_state"] == "unconfigured" and "FileNotFoundError" in values["lifecycle_error"]
    finally:
        for n in list(executor.get_nodes()):
            executor.remove_node(n)
            n.destroy_node()
        executor.shutdown()
        rclpy.shutdown(context=context)


def test_cleanup_and_configure_again_serves_a_new_instruction(rig):
    """deactivate -> cleanup -> configure -> activate: the node works as new (topics recreated)."""
    node = rig.planner_node
    assert node.trigger_deactivate() is not None and node.lifecycle_state == "inactive"
    node.trigger_cleanup()
    assert node.lifecycle_state == "unconfigured" and not node._entities
    node.trigger_configure()
    node.trigger_activate()
    assert node.is_active
    assert wait_for_subscribers(rig.instr_pub) and wait_for_subscribers(rig.camera_pub)
    rig.backend.script, rig.backend.calls = ["stop"], 0
    rig.spin(0.5)  # (a latched instruction still offered in the domain may replay on re-subscription)
    rig.instruct("go to the window")
    rig.wait_plan(lambda p: _is_stop(p) and p["instruction"] == "go to the window", timeout=15)


def test_a_default_qos_publisher_meets_no_incompatible_subscription(rig):
    """With no transient-local publisher around, the planner has only its volatile instruction
    subscription: `ros2 topic pub` sees nothing incompatible (no "No messages will be sent" warning)."""
    from rclpy.qos import DurabilityPolicy

    assert spin_until(rig.executor, lambda: rig.planner_node._latched_sub is None, timeout=5)
    infos = rig.node.get_subscriptions_info_by_topic("/vlm_agent/instruction")
    ours = [i for i in infos if i.node_name == "navid_planner"]
    assert ours and all(i.qos_profile.durability == DurabilityPolicy.VOLATILE for i in ours)


def test_a_blocked_forward_reaches_the_planner_and_is_not_asked_again(rig):
    """Issue 11: the supervisor blocks the forward move (its gate state), the executor aborts at once
    with the reason, the planner receives it and publishes a turn although the model repeats the
    blocked `move forward` (before: the same move until the abort limit ended the episode)."""
    from vlm_agent.nodes.base import LATCHED_QOS

    gate = rig.node.create_publisher(rig.String, "/vlm_agent/safety/state", LATCHED_QOS)
    assert wait_for_subscribers(gate)
    rig.backend.script = ["move forward 25 cm", "move forward 25 cm", "stop"]
    rig.backend.calls = 0
    rig.instruct("go through the wall")
    first = rig.wait_plan(lambda p: p["instruction"] == "go through the wall" and p["step"] == 0)
    assert [p["kind"] for p in first["primitives"]] == ["forward"]
    assert spin_until(rig.executor, lambda: rig.exec_node.executor_core.current is not None, timeout=5)
    blocked = {"state": "obstacle", "blocked": True, "blocked_forward": True, "blocked_turn": False,
               "reason": "blocked by obstacle at 0.31 m (forward)", "distance_m": 0.31}
    try:
        gate.publish(rig.String(data=json.dumps(blocked)))
        second = rig.wait_plan(lambda p: p["instruction"] == "go through the wall" and p["step"] == 1)
        assert [p["kind"] for p in second["primitives"]] == ["turn_left"], second
        assert second["raw_text"] == "move forward 25 cm"  # what the model said is kept for the record
        status = rig.planner_node.status_extra()
        assert status["blocked_rewrites"] == "1"
        final = rig.wait_plan(lambda p: p["instruction"] == "go through the wall" and _is_stop(p), timeout=20)
        assert final["error"] is None
        assert rig.planner_node.loop.blocked_reason == ""  # it turned: forward may be tried again
        reasons = [h["reason"] for h in rig.planner_node.loop.history if h["plan_id"] == first["plan_id"] and h["state"] == "aborted"]
        assert reasons and "blocked by obstacle at 0.31 m" in reasons[0]
    finally:
        gate.publish(rig.String(data=json.dumps({"state": "ok", "blocked": False, "blocked_forward": False,
                                                 "blocked_turn": False, "reason": "", "distance_m": None})))
        rig.spin(0.1)
        rig.node.destroy_publisher(gate)


def test_planned_history_observes_exactly_the_frame_of_each_plan(rig):
    """history_frames: planned (config/sim.yaml): the model's history is what it had in training, one
    frame per plan, not the frames the camera sent while the robot moved."""
    sampled = rig.planner_node.config
    rig.planner_node.config = sampled.replace(history_frames="planned")
    try:
        rig.backend.script = ["move forward 25 cm", "turn left 30 degrees", "move forward 25 cm", "stop"]
        rig.backend.calls = 0
        rig.backend.observed = 0
        rig.instruct("go to the green box")
        rig.wait_plan(_is_stop, timeout=20)
        rig.spin(0.3)
        assert rig.backend.calls == 4 and rig.backend.observed == 4  # 15 camera frames a second arrived meanwhile
    finally:
        rig.planner_node.config = sampled
