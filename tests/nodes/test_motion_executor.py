"""motion_executor node over real rclpy against a kinematic base: plans, stop, malformed input, faults."""
from __future__ import annotations

import json
import math

import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros


class Rig:
    def __init__(self, context, executor):
        from geometry_msgs.msg import PoseStamped
        from rclpy.node import Node
        from std_msgs.msg import String

        from tests.helpers.kinematic_base import KinematicBase
        from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS
        from vlm_agent.nodes.motion_executor import STATE_QOS, MotionExecutorNode

        self.executor = executor
        self.exec_node = MotionExecutorNode(context=context)
        self.node = Node("motion_test_helper", context=context)
        executor.add_node(self.exec_node)
        executor.add_node(self.node)
        self.base = KinematicBase(self.node)
        self.states: list[dict] = []
        self.goals: list = []
        self.String = String
        self.plan_pub = self.node.create_publisher(String, "/vlm_agent/plan", LATCHED_QOS)
        self.state_sub = self.node.create_subscription(String, "/vlm_agent/executor/state", lambda m: self.states.append(json.loads(m.data)), STATE_QOS)
        self.goal_sub = self.node.create_subscription(PoseStamped, "/goal_pose", self.goals.append, COMMAND_QOS)
        assert wait_for_subscribers(self.plan_pub) and wait_for_publishers(self.state_sub)
        assert wait_for_subscribers(self.base.odom_pub) and wait_for_publishers(self.base.cmd_sub)
        self.next_id = 100

    def send(self, primitives, raw=None) -> int:
        self.next_id += 1
        data = raw if raw is not None else json.dumps(
            {"plan_id": self.next_id, "instruction": "test", "step": 0, "raw_text": "", "primitives": primitives, "latency_s": 0.0, "error": None}
        )
        self.plan_pub.publish(self.String(data=data))
        return self.next_id

    def final_state(self, plan_id, timeout=10.0):
        ok = spin_until(self.executor, lambda: any(s["plan_id"] == plan_id and s["state"] in ("done", "aborted") for s in self.states), timeout=timeout, step=0.01)
        assert ok, self.states[-5:]
        return next(s for s in self.states if s["plan_id"] == plan_id and s["state"] in ("done", "aborted"))

    def spin(self, seconds):
        spin_until(self.executor, lambda: False, timeout=seconds, step=0.01)


@pytest.fixture(scope="module")
def rig():
    with ros_session() as (context, executor):
        yield Rig(context, executor)


@pytest.fixture
def fresh(rig):
    rig.base.odom_override = None
    rig.base.publish = True
    rig.spin(0.2)
    return rig


def test_forward_then_turn_closed_loop_on_odom(fresh):
    base = fresh.base
    x0, y0, yaw0 = base.x, base.y, base.yaw
    pid = fresh.send([{"kind": "forward", "value": 25}, {"kind": "turn_left", "value": 30}])
    state = fresh.final_state(pid)
    assert state["state"] == "done" and state["reason"] == "completed"
    assert any(s["plan_id"] == pid and s["state"] == "executing" for s in fresh.states)
    assert math.hypot(base.x - x0, base.y - y0) == pytest.approx(0.25, abs=0.03)
    assert math.degrees(math.remainder(base.yaw - yaw0, 2 * math.pi)) == pytest.approx(30.0, abs=4.0)
    fresh.spin(0.3)
    assert base.cmd == (0.0, 0.0)  # it came to rest and said so


def test_stop_primitive_ends_with_reason_stop(fresh):
    pid = fresh.send([{"kind": "stop", "value": 0}])
    assert fresh.final_state(pid) == {"plan_id": pid, "state": "done", "reason": "stop"}


def test_malformed_plan_is_ignored_and_stops_motion(fresh):
    base = fresh.base
    pid = fresh.send([{"kind": "forward", "value": 100}])
    assert spin_until(fresh.executor, lambda: base.cmd[0] > 0.1, timeout=5)
    fresh.send(None, raw="{this is not json")
    state = fresh.final_state(pid)
    assert state["state"] == "aborted" and "malformed plan" in state["reason"]
    fresh.spin(0.3)
    assert base.cmd == (0.0, 0.0)
    assert int(fresh.exec_node.health.key_values()["dropped.malformed_plan"]) >= 1
    n = len(base.commands)
    fresh.send(None, raw='{"plan_id": 1, "step": 0, "primitives": [{"kind": "fly"}]}')  # idle: nothing moves
    fresh.spin(0.4)
    assert all(c == (0.0, 0.0) for c in base.commands[n:])


def test_nan_odometry_aborts_and_zeroes(fresh):
    base = fresh.base
    pid = fresh.send([{"kind": "forward", "value": 100}])
    assert spin_until(fresh.executor, lambda: base.cmd[0] > 0.1, timeout=5)
    base.odom_override = (float("nan"), 0.0, 0.0)
    state = fresh.final_state(pid)
    assert state["state"] == "aborted" and "non-finite odometry" in state["reason"]
    fresh.spin(0.2)
    assert base.cmd == (0.0, 0.0)


def test_dead_odometry_aborts(fresh):
    base = fresh.base
    pid = fresh.send([{"kind": "turn_right", "value": 90}])
    assert spin_until(fresh.executor, lambda: base.cmd[1] < -0.1, timeout=5)
    base.publish = False
    state = fresh.final_state(pid)
    assert state["state"] == "aborted" and "odometry stale" in state["reason"]
    fresh.spin(0.2)
    assert base.cmd == (0.0, 0.0)


def test_a_stall_of_the_executor_itself_is_not_dead_odometry(fresh):
    """CPU starvation: the node does not run for 0.8 s. A plan that arrives across the stall, and a
    primitive running through it, must not abort with "odometry stale": the odometry callback simply
    runs after the plan callback or the control tick (before: both aborted; seen under load in
    tests/nodes/test_hostile_graph.py). A dead odometry source is still caught one tick later
    (test_dead_odometry_aborts)."""
    import time

    base = fresh.base
    pid = fresh.send([{"kind": "forward", "value": 25}])
    time.sleep(0.8)  # this process does not spin: the executor node stalls with the plan queued
    assert fresh.final_state(pid)["state"] == "done", fresh.states[-3:]
    pid = fresh.send([{"kind": "turn_left", "value": 90}])
    assert spin_until(fresh.executor, lambda: base.cmd[1] > 0.1, timeout=5)
    time.sleep(0.8)  # a stall in the middle of the turn
    assert fresh.final_state(pid)["state"] == "done", fresh.states[-3:]
    assert "control_loop_stall" in fresh.exec_node.health.key_values().get("dropped.last_reason", ""), fresh.exec_node.health.key_values()


def test_new_plan_preempts_the_running_one(fresh):
    first = fresh.send([{"kind": "forward", "value": 100}])
    assert spin_until(fresh.executor, lambda: fresh.base.cmd[0] > 0.1, timeout=5)
    second = fresh.send([{"kind": "turn_left", "value": 30}])
    assert fresh.final_state(first) == {"plan_id": first, "state": "aborted", "reason": f"preempted by plan {second}"}
    assert fresh.final_state(second)["state"] == "done"


def test_goal_pose_mode_sends_nav2_goals(fresh):
    from rclpy.parameter import Parameter

    node = fresh.exec_node
    assert not fresh.goals  # velocity mode (the earlier tests) sends no goals
    assert node.set_parameters([Parameter("mode", value="goal_pose")])[0].successful
    try:
        base = fresh.base
        pid = fresh.send([{"kind": "forward", "value": 50}])
        assert spin_until(fresh.executor, lambda: len(fresh.goals) >= 1, timeout=5)
        goal = fresh.goals[-1]
        assert goal.header.frame_id == "odom"
        assert math.hypot(goal.pose.position.x - base.x, goal.pose.position.y - base.y) == pytest.approx(0.5, abs=0.02)
        assert all(c == (0.0, 0.0) for c in base.commands[-3:])  # no velocity output in this mode
        base.x, base.y = goal.pose.position.x, goal.pose.position.y  # "Nav2" drives there
        assert fresh.final_state(pid)["state"] == "done"
    finally:
        node.set_parameters([Parameter("mode", value="velocity")])


# -- issue 11: blocked means abort at once; caps on primitive size and plan length ----------------


def _gate(rig, **state):
    from vlm_agent.nodes.base import LATCHED_QOS

    if not hasattr(rig, "gate_pub"):
        rig.gate_pub = rig.node.create_publisher(rig.String, "/vlm_agent/safety/state", LATCHED_QOS)
        assert wait_for_subscribers(rig.gate_pub)
    rig.gate_pub.publish(rig.String(data=json.dumps(state)))


def test_forward_blocked_by_the_supervisor_aborts_at_once_with_the_reason(rig):
    """Before: the executor kept pushing against the gate until the primitive's timeout (4.5 s for
    25 cm); now the supervisor's blocked state aborts it within a few control ticks."""
    import time

    plan = rig.send([{"kind": "forward", "value": 100}])
    assert spin_until(rig.executor, lambda: any(s["plan_id"] == plan and s["state"] == "executing" for s in rig.states), timeout=5)
    rig.spin(0.2)
    _gate(rig, state="obstacle", blocked=True, blocked_forward=True, blocked_turn=False,
          reason="blocked by obstacle at 0.31 m (forward)", distance_m=0.31)
    t0 = time.monotonic()
    final = rig.final_state(plan, timeout=3.0)
    assert time.monotonic() - t0 < 0.5
    assert final["state"] == "aborted" and "blocked by safety supervisor" in final["reason"]
    assert "blocked by obstacle at 0.31 m" in final["reason"], final
    # A turn is not aborted by a blocked forward.
    turn = rig.send([{"kind": "turn_left", "value": 30}])
    assert rig.final_state(turn, timeout=10.0)["state"] == "done"
    _gate(rig, state="ok", blocked=False, blocked_forward=False, blocked_turn=False, reason="", distance_m=None)
    rig.spin(0.1)


@pytest.mark.parametrize(
    "primitives, words",
    [
        ([{"kind": "forward", "value": 5000}], "max_forward_cm"),
        ([{"kind": "turn_left", "value": 7200}], "max_turn_deg"),
        ([{"kind": "forward", "value": 25}] * 1000, "max_primitives"),
    ],
    ids=["forward_5000cm", "turn_7200deg", "1000_primitives"],
)
def test_oversized_plans_are_refused_with_the_reason(rig, primitives, words):
    """Whatever the source (here a hand-published plan): refused as a whole, nothing moves."""
    n0 = len(rig.base.commands)
    plan = rig.send(primitives)
    final = rig.final_state(plan, timeout=5.0)
    assert final["state"] == "aborted" and "plan refused" in final["reason"] and words in final["reason"], final
    rig.spin(0.2)
    assert rig.exec_node.executor_core.current is None
    assert all(c == (0.0, 0.0) for c in rig.base.commands[n0:])


def test_a_stale_sensor_does_not_abort_the_primitive(rig):
    """Only an obstacle, a stop or the e-stop abort; a sensor hiccup (state stale) is waited out."""
    plan = rig.send([{"kind": "forward", "value": 30}])
    assert spin_until(rig.executor, lambda: any(s["plan_id"] == plan and s["state"] == "executing" for s in rig.states), timeout=5)
    _gate(rig, state="stale", blocked=True, blocked_forward=True, blocked_turn=False, reason="camera stale", distance_m=None)
    rig.spin(0.3)
    _gate(rig, state="ok", blocked=False, blocked_forward=False, blocked_turn=False, reason="", distance_m=None)
    assert rig.final_state(plan, timeout=10.0)["state"] == "done"


@pytest.mark.parametrize(
    "raw",
    [
        "x" * 200_000,  # far above the 64 KiB bound
        json.dumps({"plan_id": 7, "step": 0, "primitives": [{"kind": "forward", "value": 25}] * 5000}),  # > 64 KiB of JSON
        "\x7f\x01\x02binary\xff\xfe" * 100,
        json.dumps({"plan_id": 7, "step": 0, "primitives": [{"kind": "forward", "value": float("inf")}]}).replace("Infinity", "1e999"),
        json.dumps({"plan_id": 7, "step": 0, "primitives": [{"kind": "forward", "value": -25}]}),
        json.dumps({"plan_id": "ignore previous instructions", "step": 0, "primitives": []}),
    ],
    ids=["200k_chars", "5000_primitives_json", "binary", "inf_value", "negative_value", "prompt_injection_id"],
)
def test_hostile_plans_interrupt_motion_and_move_nothing(fresh, raw):
    """Hostile plans on the plan topic: the running motion stops (the planner's intent is unknown),
    nothing new moves, the reason is counted on /diagnostics, and the node keeps serving good plans."""
    base = fresh.base
    pid = fresh.send([{"kind": "forward", "value": 100}])
    assert spin_until(fresh.executor, lambda: base.cmd[0] > 0.1, timeout=5)
    dropped = int(fresh.exec_node.health.key_values().get("dropped.malformed_plan", 0))
    fresh.send(None, raw=raw)
    state = fresh.final_state(pid)
    assert state["state"] == "aborted" and "malformed plan" in state["reason"], state
    fresh.spin(0.3)
    assert base.cmd == (0.0, 0.0)
    assert int(fresh.exec_node.health.key_values()["dropped.malformed_plan"]) == dropped + 1
    good = fresh.send([{"kind": "turn_left", "value": 10}])
    assert fresh.final_state(good, timeout=10.0)["state"] == "done"
