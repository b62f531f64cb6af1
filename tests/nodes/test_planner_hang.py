"""A model that hangs must not hang the planner's exit (issue 11; seen under `ros2 launch` as "failed to
terminate 10 s after SIGTERM, escalating to SIGKILL").

Two processes: navid_planner with a planner whose `plan()` blocks forever, started through the node's
own `run_node` main, and this test's helper (camera frames, an instruction, plan and /diagnostics
readers). The hung call becomes a stop plan with the reason on /diagnostics; then SIGINT ends the
process promptly with exit code 0. Before, the model ran on a ThreadPoolExecutor whose worker
concurrent.futures joins at interpreter exit: the process never exited on its own.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

from tests.ros_harness import NodeProcess, change_state, spin_until, wait_for_subscribers

pytestmark = pytest.mark.ros

HANGING_PLANNER_MAIN = """
import sys, threading
from vlm_agent.nodes.base import run_node
from vlm_agent.nodes.navid_planner import NavidPlannerNode

class HangingPlanner:
    '''NavidPlanner's reset/observe/plan, with a plan() that never returns (a hung model or server).'''
    def reset(self, instruction):
        pass
    def observe(self, image):
        pass
    def plan(self, image):
        print("model call started; hanging forever", flush=True)
        threading.Event().wait()

sys.exit(run_node(lambda: NavidPlannerNode(planner=HangingPlanner()), args=sys.argv))
"""


def test_sigint_exits_promptly_while_the_model_hangs(ros_node, ros_executor):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_PUB_QOS
    from vlm_agent.sensors.image_conversion import numpy_to_image

    ns = f"/hang_{os.getpid()}"
    plans, diagnostics = [], []
    ros_node.create_subscription(String, f"{ns}/vlm_agent/plan", lambda m: plans.append(json.loads(m.data)), LATCHED_QOS)
    ros_node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: diagnostics.extend(s for s in m.status if s.name == f"{ns}/navid_planner"), 10,
    )
    cam = ros_node.create_publisher(Image, f"{ns}/camera/color/image_raw", SENSOR_PUB_QOS)
    instruction = ros_node.create_publisher(String, f"{ns}/vlm_agent/instruction", COMMAND_QOS)
    frame = numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8")

    def send_frame():
        frame.header.stamp = ros_node.get_clock().now().to_msg()
        cam.publish(frame)

    timer = ros_node.create_timer(0.1, send_frame)
    proc = NodeProcess(
        "navid_planner_hanging", command=[sys.executable, "-c", HANGING_PLANNER_MAIN],
        ros_args=["-r", "__node:=navid_planner", "-r", f"__ns:={ns}", "-p", "model_timeout_s:=1.0", "-p", "history_period_s:=0.1"],
    )
    try:
        proc.__enter__()
        assert change_state(ros_executor, ros_node, f"{ns}/navid_planner", "configure", 30), proc.stop() or proc.output
        assert change_state(ros_executor, ros_node, f"{ns}/navid_planner", "activate", 30), proc.stop() or proc.output
        assert wait_for_subscribers(instruction, timeout=15) and wait_for_subscribers(cam, timeout=15)
        instruction.publish(String(data="go to the kitchen"))
        # The hung call times out: a stop plan with the reason, and the reason on /diagnostics.
        assert spin_until(ros_executor, lambda: any(p.get("error") and "timed out" in p["error"] for p in plans), timeout=20), (
            plans[-3:], proc.stop() or proc.output[-3000:])
        stop = next(p for p in plans if p.get("error") and "timed out" in p["error"])
        assert [q["kind"] for q in stop["primitives"]] == ["stop"]
        assert spin_until(
            ros_executor,
            lambda: any("timed out" in kv.value for s in diagnostics for kv in s.values if kv.key == "finish_reason"),
            timeout=5,
        )
        # The model call is still hanging in the worker. SIGINT (what ros2 launch sends) must end the process now.
        assert proc.alive()
        t0 = time.monotonic()
        proc.proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=8.0)
        elapsed = time.monotonic() - t0
    finally:
        ros_node.destroy_timer(timer)
        proc.stop(timeout=2.0)
    assert "[killed" not in proc.output, proc.output[-3000:]
    assert code == 0, proc.output[-3000:]
    assert elapsed < 5.0, f"exit took {elapsed:.1f} s"
    assert "hanging forever" in proc.output and "Traceback" not in proc.output, proc.output[-3000:]
