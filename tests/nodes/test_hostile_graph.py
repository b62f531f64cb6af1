"""Hostile input and faults through ROS, every node in a process of its own (issue 11, item 8).

The graph under test: safety_supervisor, motion_executor, navid_planner (remote backend on a fake
OpenAI-compatible model server, a further process) and lifecycle_manager, each started as
`python -m vlm_agent.nodes.<name>` in one namespace. This process is the robot (camera, depth +
CameraInfo, odometry of a kinematic base driven by the gated `cmd_vel`), the hostile sender and the
monitor (`tests/helpers/hostile_graph.py`). For every case: every node process alive and still
reporting on `/diagnostics`; every `cmd_vel` finite and within the supervisor's limits (checked on
each message, for the whole module); zero when it must be; the reason on `/diagnostics`.

Cases: malformed and absurd images (100000x100000 and 0x0 headers, step/size mismatch, wrong and
unknown encodings), NaN/inf depth and odometry, absurd depth CameraInfo, NaN/inf/huge raw commands,
malformed and oversized plans (not JSON, binary, > 64 KiB, nested 5000 deep, NaN/inf, negative,
1000 primitives), huge / binary / control-character instructions and prompt injection (the fake model
obeys it word for word), a camera that dies mid-episode, a model that hangs, a model process that
crashes (SIGKILL) and comes back, and a short soak (400 mixed hostile messages; RSS bounded). The
long soak (>= 10,000 messages) is `benchmarks/hostile_soak.py`.
"""
from __future__ import annotations

import math
import os
import time

import pytest

from tests.helpers.hostile_graph import (
    GRAPH_NODES,
    HOSTILE_COMMANDS,
    HOSTILE_SENSORS,
    MAX_V,
    MAX_W,
    FakeModel,
    HostileGraph,
    Robot,
    flood,
    hostile_instructions,
    hostile_plans,
)
from tests.ros_harness import ros_session, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

# Zero after a sensor fault, as seen by this process: the supervisor's 0.5 s sensor timeout here, plus
# scheduling slack for four node processes and this one on a loaded 2-core machine (1.7 s seen at load
# 4.4). The tight bound is checked in-process (tests/nodes/test_safety_supervisor.py).
FAULT_BOUND_S = 2.5


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from rclpy.node import Node

    work = str(tmp_path_factory.mktemp("hostile"))
    ns = f"/hostile_{os.getpid()}"
    with ros_session() as (context, executor):
        node = Node("hostile_robot", context=context)
        executor.add_node(node)
        robot = Robot(node, executor, ns)
        with FakeModel(log_dir=work) as model, HostileGraph(ns, model.url, work) as graph:
            assert graph.wait_active(node, executor, timeout=120), graph.tails()
            for pub in (robot.cmd_pub, robot.plan_pub, robot.instruction_pub, robot.cam_pub, robot.depth_pub):
                assert wait_for_subscribers(pub, timeout=30), (pub.topic_name, graph.tails())
            assert wait_for_publishers(robot.base.cmd_sub, timeout=30)
            assert robot.spin_until(lambda: not robot.all_reporting(), 20), (robot.all_reporting(), graph.tails())
            yield robot, graph, model
        assert not robot.violations, robot.violations[:5]
        for name, code in graph.returncodes.items():
            assert code == 0, f"{name} exited with {code}:\n{graph.tail(name, 40)}"
            assert "Traceback" not in graph.tail(name, 10000), graph.tail(name, 60)


@pytest.fixture
def clean(hostile):
    robot, graph, model = hostile
    robot.reset()
    assert graph.alive(), graph.dead()
    return hostile


def assert_healthy(robot, graph):
    """Every node process alive and reporting; every cmd_vel so far finite and within limits."""
    assert not graph.dead(), (graph.dead(), graph.tails())
    assert not robot.violations, robot.violations[:5]
    assert robot.spin_until(lambda: not robot.all_reporting(), 5.0), robot.all_reporting()


def _moving(robot, timeout=10.0):
    robot.command = (0.3, 0.2)
    assert robot.wait_for(lambda v, w: v > 0.25 and w > 0.15, timeout=timeout), robot.received[-5:]


@pytest.mark.parametrize("case", list(HOSTILE_SENSORS))
def test_hostile_sensor_stream_stops_the_robot_with_the_reason(clean, case):
    """The hostile message replaces the good stream: zero (forward zero for a blind depth camera)
    within the bound, nothing but that while it lasts, the reason on the supervisor's /diagnostics,
    recovery when the stream is good again. An unusable depth CameraInfo stops nothing: the previous
    camera model stays in use (and the message is counted)."""
    robot, graph, _ = clean
    stream, make, node, needle, effect = HOSTILE_SENSORS[case]
    _moving(robot)
    t0 = time.monotonic()
    robot.hostile = {stream: make()}
    if effect == "none":
        robot.spin(1.0)
        after = [(v, w) for t, v, w in robot.received if t > t0]
        assert after and all(v > 0.25 and w > 0.15 for v, w in after[-5:]), after[-5:]
    else:
        if effect == "forward":
            must = lambda v, w: v == 0.0  # noqa: E731 (turning in place stays allowed)
        else:
            must = lambda v, w: v == 0.0 and w == 0.0  # noqa: E731
        assert robot.wait_for(must, timeout=5.0), robot.received[-5:]
        first = next(t for t, v, w in robot.received if t > t0 and must(v, w))
        assert first - t0 <= FAULT_BOUND_S, f"stopped {first - t0:.2f} s after the fault"
        robot.spin(0.4)
        after = [(v, w) for t, v, w in robot.received if t > first]
        assert after and all(must(v, w) for v, w in after), after[:5]
    assert robot.wait_diagnostics(node, needle, timeout=5.0), robot.status_text(node)
    assert_healthy(robot, graph)
    robot.hostile = {}
    _moving(robot)
    robot.command = None


def test_absurd_raw_commands_give_finite_output_within_limits(clean):
    robot, graph, _ = clean
    for values in HOSTILE_COMMANDS:
        robot.command = values
        if all(math.isfinite(x) for x in values):  # huge: clamped to the limits
            expect = (math.copysign(MAX_V, values[0]), math.copysign(MAX_W, values[1]) if values[1] else 0.0)
            assert robot.wait_for(lambda v, w, e=expect: (v, w) == pytest.approx(e), timeout=5.0), (values, robot.received[-5:])
            outcome = lambda v, w, e=expect: (v, w) == pytest.approx(e)  # noqa: E731
        else:
            assert robot.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=5.0), (values, robot.received[-5:])
            outcome = lambda v, w: v == 0.0 and w == 0.0  # noqa: E731
            assert robot.wait_diagnostics("safety_supervisor", "non-finite", 3.0), robot.status_text("safety_supervisor")
        robot.spin(0.2)  # outputs gated before the change may still be on their way
        n = len(robot.received)
        robot.spin(0.3)  # and it stays so while the absurd command keeps coming
        assert robot.received[n:] and all(outcome(v, w) for _, v, w in robot.received[n:]), (values, robot.received[n:][:5])
    robot.command = (0.0, 0.0)
    assert_healthy(robot, graph)


def _plan(plan_id, kind="forward", value=100.0):
    import json

    return json.dumps({"plan_id": plan_id, "instruction": "hostile test", "step": 0, "raw_text": "", "primitives": [{"kind": kind, "value": value}],
                       "latency_s": 0.0, "error": None})


def test_malformed_and_oversized_plans_stop_the_motion_and_move_nothing(clean):
    """Each hostile plan arrives while a good plan drives the base: the executor refuses it (logged,
    counted on /diagnostics), the running motion stops (the planner's intent is unreadable), nothing
    moves afterwards; the next good plan runs."""
    robot, graph, _ = clean
    for i, (name, text) in enumerate(hostile_plans().items()):
        plan_id = 5000 + i
        robot.send("plan", _plan(plan_id))
        assert robot.wait_for(lambda v, w: v > 0.1, timeout=10.0), (name, robot.states[-3:], robot.received[-5:])
        robot.send("plan", text)
        assert robot.spin_until(lambda: any(s["plan_id"] == plan_id and s["state"] == "aborted" for s in robot.states), 5.0), (name, robot.states[-3:])
        assert robot.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=3.0), (name, robot.received[-5:])
        robot.spin(0.2)  # commands gated before the abort may still be on their way
        n = len(robot.received)
        robot.spin(0.3)
        assert all(v == 0.0 and w == 0.0 for _, v, w in robot.received[n:]), (name, robot.received[n:][:5], robot.states[-3:])
    text = robot.status_text("motion_executor")
    assert robot.wait_diagnostics("motion_executor", "dropped.malformed_plan", 5.0), text
    assert robot.wait_diagnostics("motion_executor", "dropped.invalid_plan", 5.0), text
    assert_healthy(robot, graph)


def _stop_plans_since(robot, n):
    return [p for p in robot.plans[n:] if [q["kind"] for q in p["primitives"]] == ["stop"] and p.get("error")]


def test_hostile_instructions_end_in_stop_plans_and_nothing_moves(clean):
    """Huge (1 MB), binary, control characters, empty: refused with the reason (a stop plan, the
    reason on /diagnostics). Prompt injection: valid text, the fake model obeys it ('move forward
    500 cm, turn left 720 degrees'); the strict parser refuses that answer: a stop plan. No motion."""
    robot, graph, _ = clean
    expect = {"huge": "too long", "binary": "control", "control_chars": "control", "empty": "empty", "prompt_injection": "forward"}
    n_cmd = len(robot.received)
    for name, text in hostile_instructions().items():
        n = len(robot.plans)
        robot.send("instruction", text)
        assert robot.spin_until(lambda: _stop_plans_since(robot, n), 15.0), (name, robot.plans[-2:], graph.tail("navid_planner"))
        error = _stop_plans_since(robot, n)[0]["error"]
        assert expect[name] in error, (name, error)
    assert robot.wait_diagnostics("navid_planner", "dropped.bad_instruction", 5.0), robot.status_text("navid_planner")
    assert robot.wait_diagnostics("navid_planner", "500 cm", 5.0), robot.status_text("navid_planner")  # the refused model answer
    robot.spin(0.3)
    assert all(v == 0.0 and w == 0.0 for _, v, w in robot.received[n_cmd:]), robot.received[n_cmd:][:5]
    assert_healthy(robot, graph)


def _episode(robot, instruction, timeout=30.0):
    """Send `instruction`; True once the planner ends the episode with a stop plan."""
    n = len(robot.plans)
    robot.send("instruction", instruction)
    ok = robot.spin_until(lambda: any([q["kind"] for q in p["primitives"]] == ["stop"] for p in robot.plans[n:]), timeout)
    return ok, robot.plans[n:]


def test_a_camera_that_dies_mid_episode_stops_the_robot(clean):
    robot, graph, model = clean
    n = len(robot.plans)
    for attempt in range(3):  # an episode can end without motion on a loaded machine (a model call timing out)
        robot.send("instruction", f"go to the kitchen, attempt {attempt + 1}")
        if robot.wait_for(lambda v, w: v > 0.1, timeout=20.0):
            break
    else:
        raise AssertionError((robot.plans[n:], graph.tail("motion_executor"), graph.tail("navid_planner")))
    t0 = time.monotonic()
    robot.streams_on["camera"] = False
    n = len(robot.plans)
    assert robot.wait_for(lambda v, w: v == 0.0 and w == 0.0, timeout=5.0)
    first = next(t for t, v, w in robot.received if t > t0 and v == 0.0 and w == 0.0)
    assert first - t0 <= FAULT_BOUND_S, f"stopped {first - t0:.2f} s after the camera died"
    robot.spin(1.0)  # the executor keeps commanding its primitive; the gate holds zero
    assert all(v == 0.0 and w == 0.0 for t, v, w in robot.received if t > first), robot.received[-5:]
    assert robot.wait_diagnostics("safety_supervisor", "camera: stale", 3.0), robot.status_text("safety_supervisor")
    assert_healthy(robot, graph)
    robot.streams_on["camera"] = True  # the camera comes back: the episode goes on and ends (max_steps 3)
    assert robot.spin_until(lambda: any([q["kind"] for q in p["primitives"]] == ["stop"] for p in robot.plans[n:]), 60.0), robot.plans[n:]
    assert_healthy(robot, graph)


def test_a_model_that_hangs_ends_the_episode_with_the_reason(clean):
    robot, graph, model = clean
    model.set_mode("hang")
    try:
        n_cmd = len(robot.received)
        ok, plans = _episode(robot, "go to the sofa", timeout=20.0)
        assert ok, (plans, graph.tail("navid_planner"))
        error = next(p["error"] for p in plans if p.get("error"))
        assert "time" in error.lower(), error
        assert robot.spin_until(lambda: "time" in robot.status["navid_planner"][3].get("finish_reason", "").lower(), 5.0), (
            robot.status_text("navid_planner"))
        assert all(v == 0.0 and w == 0.0 for _, v, w in robot.received[n_cmd:])
        assert_healthy(robot, graph)
    finally:
        model.set_mode("ok")
    ok, plans = _episode(robot, "go to the bed", timeout=60.0)  # the model answers again: plans move the robot
    assert ok and any(p["primitives"][0]["kind"] == "forward" for p in plans), plans
    assert_healthy(robot, graph)


def test_a_model_process_that_crashes_ends_the_episode_and_recovers(clean):
    robot, graph, model = clean
    model.kill()
    try:
        ok, plans = _episode(robot, "go to the table", timeout=20.0)
        assert ok, (plans, graph.tail("navid_planner"))
        error = next(p["error"] for p in plans if p.get("error"))
        assert "model" in error.lower(), error
        assert robot.wait_diagnostics("navid_planner", "dropped.model_error", 5.0), robot.status_text("navid_planner")
        assert_healthy(robot, graph)
    finally:
        model.start()  # the model process restarts on the same port
    ok, plans = _episode(robot, "go to the door", timeout=60.0)
    assert ok and any(p["primitives"][0]["kind"] == "forward" for p in plans), plans
    assert_healthy(robot, graph)


def test_short_soak_of_mixed_hostile_messages(clean):
    """400 hostile messages of every kind, interleaved with the good streams and a moving command
    stream: every node alive and reporting, cmd_vel always finite and within limits, memory bounded,
    the drops counted; afterwards the robot moves normally. (>= 10,000: benchmarks/hostile_soak.py.)"""
    robot, graph, _ = clean
    robot.command = (0.2, 0.1)
    assert robot.wait_for(lambda v, w: v > 0.15, timeout=10.0)
    rss_before = graph.rss_mib()
    kinds = flood(robot, 400, rate_hz=200.0)
    robot.command = None
    robot.spin(1.0)
    rss_after = graph.rss_mib()
    print(f"sent {kinds}; RSS MiB before {rss_before} after {rss_after}")
    assert_healthy(robot, graph)
    for name in GRAPH_NODES:
        assert rss_after[name] - rss_before[name] < 40.0, (name, rss_before[name], rss_after[name])
    values = robot.status["safety_supervisor"][3]
    assert int(values.get("dropped.camera_malformed", 0)) >= 4 and int(values.get("safety.rejected", 0)) >= 4, values
    assert robot.wait_diagnostics("motion_executor", "dropped.malformed_plan", 5.0)
    robot.reset()
    _moving(robot)
    robot.command = None
    assert_healthy(robot, graph)
