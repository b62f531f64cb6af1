"""Planning-loop state machine and the plan/executor-state wire formats (no ROS)."""
from __future__ import annotations

import json

import pytest

from vlm_agent.planners.planner_loop import (
    FINISHED,
    IDLE,
    PLANNING,
    READY,
    WAITING,
    ExecutorState,
    PlanMessage,
    PlannerLoop,
)
from vlm_agent.actions import NavPrimitive

F, L, S = NavPrimitive.forward(), NavPrimitive.turn_left(), NavPrimitive.stop()


def test_plan_message_round_trip_and_contract_keys():
    plan = PlanMessage(3, "go to the red ball", 2, "move forward 25 cm", (F, L), 0.12, None)
    data = json.loads(plan.to_json())
    assert set(data) == {"plan_id", "instruction", "step", "raw_text", "primitives", "latency_s", "error"}
    assert data["primitives"] == [{"kind": "forward", "value": 25.0}, {"kind": "turn_left", "value": 30.0}]
    assert PlanMessage.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"step": 0, "primitives": []}', "plan_id"),
        ('{"plan_id": "1", "step": 0, "primitives": []}', "plan_id"),
        ('{"plan_id": true, "step": 0, "primitives": []}', "plan_id"),
        ('{"plan_id": 1, "step": 0, "primitives": {}}', "primitives"),
        ('{"plan_id": 1, "step": 0, "primitives": [{"kind": "fly", "value": 1}]}', "primitives\\[0\\]"),
        ('{"plan_id": 1, "step": 0, "primitives": [{"kind": "forward", "value": -5}]}', "primitives\\[0\\]"),
        ('{"plan_id": 1, "step": 0, "primitives": [{"kind": "forward", "value": "25"}]}', "value"),
        ('{"plan_id": 1, "step": 0, "primitives": [{"kind": "forward", "value": NaN}]}', "primitives\\[0\\]"),
        ('{"plan_id": 1, "step": 0, "primitives": [], "latency_s": Infinity}', "latency_s"),
        ("x" * 70000, "too long"),
        ("[" * 5000, "nested too deeply"),  # was RecursionError: the executor node died on it
        ('{"a": ' * 3000 + "1" + "}" * 3000, "nested too deeply"),
    ],
)
def test_malformed_plans_raise_with_the_reason(text, match):
    with pytest.raises(ValueError, match=match):
        PlanMessage.from_json(text)


def test_executor_state_round_trip_and_validation():
    s = ExecutorState(4, "aborted", "timeout")
    assert ExecutorState.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="state"):
        ExecutorState.from_json('{"plan_id": 1, "state": "flying"}')
    with pytest.raises(ValueError, match="nested too deeply"):
        ExecutorState.from_json("[" * 5000)


def test_loop_plans_waits_for_the_executor_and_replans():
    loop = PlannerLoop()
    assert loop.next_request(have_frame=True) is None  # no instruction
    loop.start_episode("go to the red ball")
    assert loop.next_request(have_frame=False) is None  # no frame yet
    req = loop.next_request(have_frame=True)
    assert req.step == 0 and loop.state == PLANNING
    assert loop.next_request(have_frame=True) is None  # one call at a time
    plan = loop.on_result(req, "move forward 25 cm", [F], 0.1, None)
    assert plan.primitives == (F,) and plan.plan_id == req.plan_id and loop.state == WAITING
    assert loop.next_request(True) is None
    loop.on_executor_state(ExecutorState(req.plan_id - 1, "done", "completed"))  # an older plan: ignored
    assert loop.state == WAITING
    loop.on_executor_state(ExecutorState(req.plan_id, "executing"))
    assert loop.state == WAITING
    loop.on_executor_state(ExecutorState(req.plan_id, "done", "completed"))
    assert loop.state == READY
    req2 = loop.next_request(True)
    assert req2.step == 1 and req2.plan_id == req.plan_id + 1


def test_stop_in_the_plan_finishes_the_episode():
    loop = PlannerLoop()
    loop.start_episode("x")
    req = loop.next_request(True)
    plan = loop.on_result(req, "move forward 25 cm, stop", [F, S], 0.1, None)
    assert plan.error is None and loop.state == FINISHED and loop.finish_reason == "stop"
    assert loop.next_request(True) is None


@pytest.mark.parametrize("how", ["raised", "timeout", "garbage", "empty"])
def test_model_failures_publish_a_stop_plan_with_the_error(how):
    loop = PlannerLoop()
    loop.start_episode("x")
    req = loop.next_request(True)
    if how == "raised":
        plan = loop.on_failure(req, "RuntimeError: CUDA out of memory")
    elif how == "timeout":
        plan = loop.on_failure(req, "model timed out after 2 s", latency_s=2.0)
    elif how == "garbage":  # the parser turned garbage into [stop] with an error
        plan = loop.on_result(req, "banana banana", [S], 0.1, "unknown word 'banana'")
    else:
        plan = loop.on_result(req, "", [], 0.1, None)
    assert plan.primitives == (S,) and plan.error
    assert loop.state == FINISHED and loop.finish_reason == plan.error
    loop.start_episode("again")  # the node keeps running: a new instruction starts over
    assert loop.next_request(True).step == 0


def test_late_result_of_a_replaced_episode_is_discarded():
    loop = PlannerLoop()
    loop.start_episode("old")
    old = loop.next_request(True)
    loop.start_episode("new")
    assert loop.next_request(True) is None  # the worker is still busy with the old call
    assert loop.on_result(old, "move forward 25 cm", [F], 0.1, None) is None
    req = loop.next_request(True)
    assert req.instruction == "new" and req.step == 0


def test_rejected_instruction_ends_the_episode_with_a_stop_plan():
    loop = PlannerLoop()
    loop.start_episode("old")
    req = loop.next_request(True)
    plan = loop.reject_instruction("", "instruction is empty")
    assert plan.primitives == (S,) and "instruction is empty" in plan.error and loop.state == IDLE
    assert loop.on_result(req, "move forward 25 cm", [F], 0.1, None) is None
    assert loop.next_request(True) is None


def test_aborts_replan_then_give_up():
    loop = PlannerLoop(max_consecutive_aborts=2)
    loop.start_episode("x")
    for i in range(2):
        req = loop.next_request(True)
        loop.on_result(req, "move forward 25 cm", [F], 0.1, None)
        loop.on_executor_state(ExecutorState(req.plan_id, "aborted", "timeout"))
    assert loop.state == FINISHED and "2 plans aborted" in loop.finish_reason


def test_step_limit_forces_a_stop_plan():
    loop = PlannerLoop(max_steps=2)
    loop.start_episode("x")
    for _ in range(2):
        req = loop.next_request(True)
        loop.on_result(req, "turn left 30 degrees", [L], 0.1, None)
        loop.on_executor_state(ExecutorState(req.plan_id, "done", "completed"))
    assert loop.next_request(True) is None
    plan = loop.step_limit_plan()
    assert plan.primitives == (S,) and "step limit" in plan.error and loop.state == FINISHED


def test_optional_frame_stamp_round_trips_and_is_checked():
    plan = PlanMessage(1, "x", 0, "stop", (S,), 0.0, None, frame_stamp_s=12.5)
    assert json.loads(plan.to_json())["frame_stamp_s"] == 12.5
    assert PlanMessage.from_json(plan.to_json()).frame_stamp_s == 12.5
    assert "frame_stamp_s" not in json.loads(PlanMessage(1, "x", 0, "", (S,)).to_json())
    with pytest.raises(ValueError, match="frame_stamp_s"):
        PlanMessage.from_json('{"plan_id": 1, "step": 0, "primitives": [], "frame_stamp_s": "soon"}')


def test_a_blocked_forward_is_not_asked_again_without_turning():
    """Issue 11: facing a wall the model asked for the same blocked `move forward` until the abort limit
    (200 identical aborted steps in one eval episode). After a supervisor block the loop turns instead."""
    from vlm_agent.planners.planner_loop import BLOCKED_PREFIX, avoid_blocked_forward

    fwd, left, right = NavPrimitive.forward(), NavPrimitive.turn_left(), NavPrimitive.turn_right()
    assert avoid_blocked_forward((fwd, fwd)) == (left,)
    assert avoid_blocked_forward((fwd, right, fwd)) == (right, fwd)  # the model's own turn direction
    assert avoid_blocked_forward((left, fwd)) == (left, fwd)

    loop = PlannerLoop(max_steps=10, max_consecutive_aborts=3)
    loop.start_episode("go to the chair")
    req = loop.next_request(have_frame=True)
    plan = loop.on_result(req, "move forward 25 cm", (fwd,), 0.1, None)
    assert plan.primitives == (fwd,)
    blocked = f"{BLOCKED_PREFIX}blocked by obstacle at 0.31 m (forward) (during 'move forward 25 cm')"
    loop.on_executor_state(ExecutorState(plan.plan_id, "aborted", blocked))
    assert loop.blocked_reason.startswith("blocked by obstacle at 0.31 m")
    req = loop.next_request(have_frame=True)
    plan = loop.on_result(req, "move forward 25 cm", (fwd,), 0.1, None)  # the model repeats itself
    assert plan.primitives == (left,) and loop.rewrites == 1
    loop.on_executor_state(ExecutorState(plan.plan_id, "done", "plan complete"))
    assert loop.blocked_reason == "" and loop.aborts_in_row == 0  # turned: forward may be tried again
    req = loop.next_request(have_frame=True)
    assert loop.on_result(req, "move forward 25 cm", (fwd,), 0.1, None).primitives == (fwd,)
    # An abort for another reason (odometry lost, timeout) does not block forward.
    loop.on_executor_state(ExecutorState(loop.last_plan_id, "aborted", "odometry stale"))
    assert loop.blocked_reason == ""


def test_one_episode_ending_rule_for_eval_ros_and_the_demo():
    from vlm_agent.planners.planner_loop import episode_end_reason

    common = dict(max_steps=5, max_consecutive_aborts=3)
    assert episode_end_reason(stopped_by=None, steps=1, aborts_in_row=0, **common) is None
    assert episode_end_reason(stopped_by="model said stop", steps=1, aborts_in_row=2, **common) == "model said stop"
    assert episode_end_reason(stopped_by=None, steps=1, aborts_in_row=0, planner_reason="stop", **common) == "planner: stop"
    blocked = episode_end_reason(stopped_by=None, steps=3, aborts_in_row=3, last_abort_reason="blocked by obstacle at 0.3 m", **common)
    assert blocked.startswith("3 primitives aborted in a row") and "0.3 m" in blocked
    assert episode_end_reason(stopped_by=None, steps=5, aborts_in_row=0, **common) == "step limit 5 reached"


@pytest.mark.ros
def test_demo_and_eval_ros_use_the_shared_rule():
    """Both clients end an episode through `episode_end_reason`: a demo episode whose plans keep being
    blocked ends after max_consecutive_aborts (before: only the planner's own report ended it)."""
    import inspect

    from vlm_agent.nodes.demo_client import NavDemoClient as DemoClient
    from vlm_agent.nodes import eval_client
    from vlm_agent.nodes.eval_client import RosEvalConfig

    assert "episode_end_reason(" in inspect.getsource(eval_client.run_ros_episodes)
    client = DemoClient(RosEvalConfig())
    client.plans = [{"plan_id": i, "instruction": "go"} for i in (1, 2, 3)]
    reason = "blocked by safety supervisor: blocked by obstacle at 0.31 m (during 'move forward 25 cm')"
    client.latest.states = [{"plan_id": i, "state": "aborted", "reason": reason} for i in (1, 2)]
    assert client._episode_finished("go") is None
    client.latest.states.append({"plan_id": 3, "state": "aborted", "reason": reason})
    assert client._episode_finished("go").startswith("3 primitives aborted in a row")
    client.plans.append({"plan_id": 4, "instruction": "go", "error": None})
    client.latest.states.append({"plan_id": 4, "state": "done", "reason": "stop"})
    assert client._episode_finished("go") == "planner said stop"
