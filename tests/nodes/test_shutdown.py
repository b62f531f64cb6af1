"""Process exit over real rclpy: zero on exit really goes out, and every node exits cleanly.

* Two processes: this test streams sensors and a raw motion command; the safety supervisor runs in a
  second process (alone under `run_node` with a lifecycle manager process, or in `vlm-agent up`)
  and passes the motion onto `cmd_vel`. SIGINT or SIGTERM (what Ctrl-C and `ros2 launch` send) to
  that process: the last `cmd_vel` this process sees is zero, the exit code 0, and no RCLError.
* Every console_script node starts (it reports on /diagnostics), then stops on SIGINT or SIGTERM
  with exit code 0 and no traceback in its log.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import yaml

from tests.ros_harness import NodeProcess, lifecycle_state, spin_until, wait_for_publishers

pytestmark = pytest.mark.ros


class MovingRobot:
    """Sensors at 30 Hz and a raw forward command at 20 Hz into `ns`; records `ns/cmd_vel`."""

    def __init__(self, node, ns: str):
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        from vlm_agent.nodes.base import COMMAND_QOS
        from vlm_agent.sensors.image_conversion import numpy_to_image

        self.node, self.Twist, self.Odometry = node, Twist, Odometry
        self.rgb = numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8")
        self.depth = numpy_to_image(np.full((48, 64), 3.0, np.float32), "32FC1")
        # Default QoS publishers, as a driver would create them.
        self.cam = node.create_publisher(Image, f"{ns}/camera/color/image_raw", 10)
        self.dep = node.create_publisher(Image, f"{ns}/camera/depth/image_rect_raw", 10)
        self.odom = node.create_publisher(Odometry, f"{ns}/odom", 10)
        self.cmd = node.create_publisher(Twist, f"{ns}/vlm_agent/cmd_vel_raw", 10)
        self.received: list[tuple[float, float]] = []
        self.go = False  # at rest until the supervisor is active (activation re-arms a running stream)
        self.sub = node.create_subscription(Twist, f"{ns}/cmd_vel", lambda m: self.received.append((m.linear.x, m.angular.z)), COMMAND_QOS)
        self.timers = [node.create_timer(1 / 30, self._sensors), node.create_timer(1 / 20, self._command)]

    def _sensors(self):
        stamp = self.node.get_clock().now().to_msg()
        self.rgb.header.stamp = self.depth.header.stamp = stamp
        self.cam.publish(self.rgb)
        self.dep.publish(self.depth)
        odom = self.Odometry()
        odom.header.stamp = stamp
        odom.pose.pose.orientation.w = 1.0
        self.odom.publish(odom)

    def _command(self):
        msg = self.Twist()
        msg.linear.x = 0.3 if self.go else 0.0
        self.cmd.publish(msg)

    def close(self):
        for timer in self.timers:
            self.node.destroy_timer(timer)


def _supervisor_params(path) -> str:
    params = {"safety_supervisor": {"ros__parameters": {
        "max_linear_speed_mps": 0.5, "max_linear_accel_mps2": 5.0, "camera_timeout_s": 1.0, "depth_timeout_s": 1.0,
        "odom_timeout_s": 1.0, "obstacle_stop_distance_m": 0.0,
    }}}
    with open(path, "w") as f:
        yaml.safe_dump(params, f)
    return str(path)


@pytest.mark.parametrize("runner", ["run_node", "vlm_agent_up"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_zero_cmd_vel_goes_out_on_signal(ros_node, ros_executor, tmp_path, runner, sig):
    ns = f"/zero_exit_{os.getpid()}_{runner}_{int(sig)}"
    robot = MovingRobot(ros_node, ns)
    params = _supervisor_params(tmp_path / "supervisor.yaml")
    manager = None
    if runner == "run_node":
        supervisor = NodeProcess("vlm_agent.nodes.safety_supervisor", ros_args=["--params-file", params, "-r", f"__ns:={ns}"])
        manager = NodeProcess("vlm_agent.nodes.lifecycle_manager", ros_args=["-p", "node_names:=[safety_supervisor]", "-r", f"__ns:={ns}"])
    else:
        supervisor = NodeProcess("vlm_agent.cli", args=["up", "--config", params, "--namespace", ns])
    try:
        supervisor.__enter__()
        if manager is not None:
            manager.__enter__()
        assert wait_for_publishers(robot.sub, timeout=30), supervisor.stop() or supervisor.output
        assert spin_until(ros_executor, lambda: lifecycle_state(ros_executor, ros_node, f"{ns}/safety_supervisor", 5) == "active", 30)
        robot.go = True
        moving = spin_until(ros_executor, lambda: bool(robot.received) and robot.received[-1][0] > 0.25, timeout=30)
        assert moving, (robot.received[-5:], supervisor.stop() or supervisor.output[-2000:])
        if manager is not None:
            assert manager.stop() == 0, manager.output  # the manager leaving changes nothing
            spin_until(ros_executor, lambda: False, timeout=0.3)
            assert robot.received[-1][0] > 0.25
        supervisor.proc.send_signal(sig)
        assert spin_until(ros_executor, lambda: supervisor.proc.poll() is not None, timeout=20)
        supervisor.wait()
        spin_until(ros_executor, lambda: False, timeout=0.5)  # anything still in flight
    finally:
        robot.close()
        supervisor.stop()
        if manager is not None:
            manager.stop()
    assert supervisor.returncode == 0, supervisor.output[-3000:]
    assert "RCLError" not in supervisor.output and "Traceback" not in supervisor.output, supervisor.output[-3000:]
    assert robot.received[-1] == (0.0, 0.0), robot.received[-10:]
    assert "zero published" in supervisor.output


def _console_script(name: str) -> str:
    """The installed console_script `name` next to this interpreter (what `ros2 run` starts)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else shutil.which(name)


def test_every_console_script_node_starts_and_exits_cleanly(ros_node, ros_executor, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    from vlm_agent.nodes import available_nodes

    ns = f"/scripts_{os.getpid()}"
    seen: set[str] = set()
    ros_node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: seen.update(s.name[len(ns) + 1:] for s in m.status if s.name.startswith(ns + "/")), 50
    )
    names = available_nodes()
    extra = {"recorder": ["-p", f"output_path:={tmp_path / 'rec.mcap'}"]}
    procs = {}
    for name in names:
        script = _console_script(name)
        assert script, f"no console_script {name} (re-run `pip install -e .`)"
        procs[name] = NodeProcess(name, command=[script], ros_args=["-r", f"__ns:={ns}", *extra.get(name, [])])
    try:
        for proc in procs.values():
            proc.__enter__()
        up = spin_until(ros_executor, lambda: set(names) <= seen or any(not p.alive() for p in procs.values()), timeout=90, step=0.1)
        dead = {n: p.stop() for n, p in procs.items() if not p.alive()}
        assert up and not dead, (sorted(set(names) - seen), {n: procs[n].output[-1500:] for n in dead})
        spin_until(ros_executor, lambda: False, timeout=1.0)  # a moment of running (timers, the simulator's ticks)
        for i, (name, proc) in enumerate(procs.items()):
            proc.proc.send_signal(signal.SIGTERM if i % 2 else signal.SIGINT)
        for proc in procs.values():
            proc.wait(timeout=30)
    finally:
        for proc in procs.values():
            proc.stop(timeout=20)
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.output[-2000:]}"
        assert "Traceback" not in proc.output and "RCLError" not in proc.output, f"{name}:\n{proc.output[-2000:]}"


# How a hang inside rclpy can look: a C call that waits with the GIL released (the Python watchdog
# runs) or one that waits holding it (CI on Kilted: Fast DDS inside destroy_when_not_in_use), where
# only the native exit timer can end the process. ctypes.PyDLL keeps the GIL across the call.
HANGS = {
    "gil_released": "time.sleep(600)",
    "gil_held": "ctypes.PyDLL(None).sleep(600)",
}


@pytest.mark.parametrize("hang", sorted(HANGS))
def test_a_teardown_that_hangs_in_rclpy_ends_the_process_after_the_watchdog(tmp_path, hang):
    """A node whose destroy_node never returns: the process still exits with code 0 (the robot was
    stopped in on_exit) -- by the Python watchdog at TEARDOWN_EXIT_S with the reason on stderr, or,
    when the hang holds the GIL, by the native exit timer TEARDOWN_NATIVE_GRACE_S later, after
    faulthandler has dumped every thread's stack."""
    import textwrap

    from vlm_agent.nodes.base import TEARDOWN_DUMP_S, TEARDOWN_EXIT_S, TEARDOWN_NATIVE_GRACE_S

    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent("""
        import ctypes, sys, time
        from rclpy.node import Node
        from vlm_agent.nodes.base import run_node

        class Hanging(Node):
            def __init__(self):
                super().__init__("hanging_teardown")
                self.create_timer(0.05, lambda: print("up", flush=True))

            def on_exit(self):
                print("on_exit", flush=True)

            def destroy_node(self):
                HANG

        sys.exit(run_node(Hanging))
    """).replace("HANG", HANGS[hang]))
    returncode, out, err, took = _interrupt_when_up(script, "up", TEARDOWN_EXIT_S + 20)
    assert returncode == 0, err
    assert "on_exit" in out and f"Timeout (0:00:{TEARDOWN_DUMP_S:02.0f})!" in err, err
    if hang == "gil_released":
        assert "teardown still inside rclpy after 12 s" in err
        assert TEARDOWN_EXIT_S - 1 <= took <= TEARDOWN_EXIT_S + 15
    else:
        assert "teardown still inside rclpy" not in err  # the Python watchdog could not run
        assert TEARDOWN_EXIT_S + TEARDOWN_NATIVE_GRACE_S - 1 <= took <= TEARDOWN_EXIT_S + TEARDOWN_NATIVE_GRACE_S + 15


def test_a_composed_graph_whose_teardown_hangs_still_exits_after_the_zero_command(tmp_path):
    """`vlm-agent up` (`run_graph`): a node whose destroy_node never returns, after the managed nodes'
    exit transitions: the process still ends with code 0 at TEARDOWN_EXIT_S, the reason on stderr."""
    import textwrap

    from vlm_agent.commands.demo import default_config_path
    from vlm_agent.nodes.base import TEARDOWN_EXIT_S

    script = tmp_path / "hang_graph.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from vlm_agent.nodes import node_class
        from vlm_agent.nodes.composition import run_graph

        cls = node_class("safety_supervisor")
        exit_transition = cls.on_exit

        def on_exit(self):
            exit_transition(self)
            print("on_exit", flush=True)

        def destroy_node(self):
            time.sleep(600)

        cls.on_exit, cls.destroy_node = on_exit, destroy_node
        sys.exit(run_graph({default_config_path()!r}, only=["safety_supervisor"], logger=lambda m: print(m, flush=True)))
    """))
    returncode, out, err, took = _interrupt_when_up(script, "started node", TEARDOWN_EXIT_S + 20, settle_s=1.0)
    assert returncode == 0, err
    assert "on_exit" in out and "teardown still inside rclpy after 12 s" in err, (out, err)
    assert TEARDOWN_EXIT_S - 1 <= took <= TEARDOWN_EXIT_S + 15


def _interrupt_when_up(script, ready: str, timeout_s: float, settle_s: float = 0.0):
    """Run `script` in a second Python process, SIGINT it once a stdout line contains `ready` (and
    `settle_s` later); returns (exit code, the rest of stdout, stderr, seconds from SIGINT to exit)."""
    import subprocess

    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while ready not in (line := proc.stdout.readline()):
            assert line, proc.stderr.read()[-2000:]
        time.sleep(settle_s)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err, time.monotonic() - t0
