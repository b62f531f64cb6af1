"""Managed (lifecycle) nodes and the lifecycle manager, over real rclpy.

* `vlm-agent up --config config/sim.yaml` (in a namespace of its own; a tiny untrained model that
  moves, slow speeds) brings the managed nodes to active through the manager; `/diagnostics`
  carries every node's status; deactivating the planner through its standard `change_state`
  service stops the robot; SIGINT then ends the graph with exit code 0 and a zero `cmd_vel` last.
* A planner whose model cannot load fails `configure`; the manager logs which node failed, takes
  the already active supervisor back to inactive, and the supervisor holds `cmd_vel` at zero.
"""
from __future__ import annotations

import json
import math
import os
import time

import pytest
import yaml

from tests.helpers.tiny_navid import save_untrained_navid
from tests.ros_harness import NodeProcess, call_service, change_state, lifecycle_state, spin_until

pytestmark = pytest.mark.ros

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRAPH_NODES = ("mujoco_sim", "navid_planner", "motion_executor", "safety_supervisor", "lifecycle_manager")


@pytest.fixture(scope="module")
def moving_navid_dir(tmp_path_factory):
    # Seed 9: on the first frame of nav-val-0-0 at 96x72 this untrained model moves forward (see test_e2e_sim).
    return save_untrained_navid(tmp_path_factory.mktemp("navid_untrained"), seed=9)


def sim_yaml_with(path, model_dir: str) -> str:
    """config/sim.yaml as shipped, with a tiny model, a small camera and slow motion (a window to act in)."""
    with open(os.path.join(ROOT, "config", "sim.yaml")) as f:
        params = yaml.safe_load(f)
    params["mujoco_sim"]["ros__parameters"].update(width=96, height=72)
    params["navid_planner"]["ros__parameters"].update(
        model_dir=model_dir, encoder_backend="torch", decoding="constrained", num_threads=1, history_period_s=0.2, model_timeout_s=20.0
    )
    params["motion_executor"]["ros__parameters"].update(max_linear_speed_mps=0.05, linear_accel_mps2=0.5, max_angular_speed_radps=0.2)
    params["safety_supervisor"]["ros__parameters"].update(camera_timeout_s=1.0, depth_timeout_s=1.0, odom_timeout_s=1.0)
    with open(path, "w") as f:
        yaml.safe_dump(params, f)
    return str(path)


class Watcher:
    """The test's view of a namespaced graph: diagnostics by node, cmd_vel, odometry, plans."""

    def __init__(self, node, ns: str):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from std_msgs.msg import String

        from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS

        self.ns = ns
        self.diagnostics: dict[str, object] = {}
        self.cmds: list[tuple[float, float, float]] = []
        self.poses: list[tuple[float, float, float]] = []
        self.plans: list[dict] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.cmd_sub = node.create_subscription(Twist, f"{ns}/cmd_vel", lambda m: self.cmds.append((time.monotonic(), m.linear.x, m.angular.z)), COMMAND_QOS)
        node.create_subscription(Odometry, f"{ns}/odom", lambda m: self.poses.append((time.monotonic(), m.pose.pose.position.x, m.pose.pose.position.y)), SENSOR_QOS)
        node.create_subscription(String, f"{ns}/vlm_agent/plan", lambda m: self.plans.append(json.loads(m.data)), LATCHED_QOS)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith(self.ns + "/"):
                self.diagnostics[status.name[len(self.ns) + 1:]] = status

    def moving(self, since: float = 0.0) -> bool:
        return any(t > since and (abs(v) > 0.01 or abs(w) > 0.01) for t, v, w in self.cmds)


def test_up_brings_managed_nodes_active_and_deactivating_the_planner_stops_motion(ros_node, ros_executor, moving_navid_dir, tmp_path):
    from std_srvs.srv import Trigger

    ns = f"/lc_test_{os.getpid()}"
    watcher = Watcher(ros_node, ns)
    config = sim_yaml_with(tmp_path / "sim.yaml", moving_navid_dir)
    with NodeProcess("vlm_agent.cli", args=["up", "--config", config, "--namespace", ns]) as graph:
        is_active = ros_node.create_client(Trigger, f"{ns}/lifecycle_manager/is_active")

        def all_active():
            answer = call_service(ros_executor, is_active, Trigger.Request(), timeout=5)
            return bool(answer and answer.success) or not graph.alive()

        assert spin_until(ros_executor, all_active, timeout=120, step=0.5), graph.stop() or graph.output[-3000:]
        assert graph.alive(), graph.output[-3000:]
        for name in ("safety_supervisor", "navid_planner"):
            assert lifecycle_state(ros_executor, ros_node, f"{ns}/{name}") == "active"
        # every node reports on the standard /diagnostics topic, under its namespaced name
        def values(name):
            status = watcher.diagnostics.get(name)
            return {kv.key: kv.value for kv in status.values} if status is not None else {}

        def reported():
            return (set(GRAPH_NODES) <= set(watcher.diagnostics) and values("navid_planner").get("lifecycle_state") == "active"
                    and values("safety_supervisor").get("lifecycle_state") == "active"
                    and values("lifecycle_manager").get("state") == "active")

        assert spin_until(ros_executor, reported, timeout=15), {n: values(n) for n in watcher.diagnostics}

        # The planner drives the robot (the sim latched the episode's instruction) ...
        assert spin_until(ros_executor, lambda: watcher.moving() or not graph.alive(), timeout=90), (watcher.plans, graph.alive())
        assert graph.alive(), graph.output[-3000:]
        # ... until it is deactivated: its stop plan ends the motion and nothing more is planned.
        assert change_state(ros_executor, ros_node, f"{ns}/navid_planner", "deactivate")
        deactivated = time.monotonic()
        assert lifecycle_state(ros_executor, ros_node, f"{ns}/navid_planner") == "inactive"
        assert spin_until(ros_executor, lambda: any(p.get("error") == "planner deactivated" for p in watcher.plans), timeout=5), watcher.plans[-3:]
        stop_plan = next(p for p in watcher.plans if p.get("error") == "planner deactivated")
        assert [q["kind"] for q in stop_plan["primitives"]] == ["stop"]
        spin_until(ros_executor, lambda: False, timeout=3.0)
        settled = deactivated + 1.5  # the supervisor's deceleration ramp and the executor's stop
        after = [(v, w) for t, v, w in watcher.cmds if t > settled]
        assert after and all(v == 0.0 and w == 0.0 for v, w in after), after[:5]
        still = [p for p in watcher.poses if p[0] > settled]
        assert still and max(math.hypot(p[1] - still[0][1], p[2] - still[0][2]) for p in still) < 1e-3
        n_plans = len(watcher.plans)
        spin_until(ros_executor, lambda: False, timeout=1.0)
        assert len(watcher.plans) == n_plans  # an inactive planner plans nothing
        assert graph.alive()
    assert graph.returncode == 0, graph.output[-3000:]
    assert "Traceback" not in graph.output and "RCLError" not in graph.output, graph.output[-3000:]
    assert watcher.cmds and watcher.cmds[-1][1:] == (0.0, 0.0)


def test_a_failed_configure_stops_the_bringup_and_the_robot_stays_stopped(ros_node, ros_executor, tmp_path):
    from geometry_msgs.msg import Twist

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.composition import NodeGraph

    ns = f"/lc_fail_{os.getpid()}"
    params = tmp_path / "fail.yaml"
    params.write_text(yaml.safe_dump({"navid_planner": {"ros__parameters": {"model_dir": str(tmp_path / "no_such_model")}}}))
    cmds = []
    ros_node.create_subscription(Twist, f"{ns}/cmd_vel", lambda m: cmds.append((m.linear.x, m.angular.z)), COMMAND_QOS)
    logs = []
    with NodeGraph(["safety_supervisor", "navid_planner"], params_file=str(params), namespace=ns, logger=logs.append) as graph:
        manager, supervisor, planner = graph.node("lifecycle_manager"), graph.node("safety_supervisor"), graph.node("navid_planner")
        assert graph.managed == ["safety_supervisor", "navid_planner"]

        def spin_both(predicate, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not predicate():
                graph.executor.spin_once(timeout_sec=0.02)
                ros_executor.spin_once(timeout_sec=0.0)
            return predicate()

        assert spin_both(lambda: manager.state == "failed" and manager._op is None and not manager._queue, 60), (manager.state, manager.failure)
        assert "navid_planner" in manager.failure and "configure failed" in manager.failure
        assert planner.lifecycle_state == "unconfigured" and "no_such_model" in planner._transition_error
        assert supervisor.lifecycle_state == "inactive"  # it was active; the manager took it back
        values = manager.status_extra()
        assert values["state"] == "failed" and manager.health.level == manager.health.ERROR
        n = len(cmds)
        assert spin_both(lambda: len(cmds) > n + 5, 10)
        assert all(c == (0.0, 0.0) for c in cmds[n:])


def test_manager_services_pause_and_start_the_managed_nodes():
    import rclpy
    from std_srvs.srv import Trigger

    from vlm_agent.nodes.composition import NodeGraph

    ns = f"/lc_srv_{os.getpid()}"
    with NodeGraph(["safety_supervisor"], namespace=ns, logger=lambda *_: None) as graph:
        helper = rclpy.create_node("lc_srv_helper", namespace=ns, context=graph.context)
        graph.executor.add_node(helper)
        supervisor = graph.node("safety_supervisor")
        clients = {name: helper.create_client(Trigger, f"lifecycle_manager/{name}") for name in ("startup", "pause", "reset", "is_active")}

        def call(name):
            answer = call_service(graph.executor, clients[name], Trigger.Request(), timeout=20)
            assert answer is not None, f"no answer from {name}"
            return answer

        manager = graph.node("lifecycle_manager")
        assert spin_until(graph.executor, lambda: manager.state == "active", timeout=20)
        assert supervisor.is_active and call("is_active").success
        answer = call("pause")
        assert answer.success and supervisor.lifecycle_state == "inactive", answer.message
        assert not call("is_active").success
        answer = call("reset")
        assert answer.success and supervisor.lifecycle_state == "unconfigured", answer.message
        answer = call("startup")
        assert answer.success and supervisor.is_active, answer.message
        assert call("is_active").success
        graph.executor.remove_node(helper)
        helper.destroy_node()


def test_is_active_names_the_failure(tmp_path):
    from std_srvs.srv import Trigger

    import rclpy

    from vlm_agent.nodes.composition import NodeGraph

    params = tmp_path / "fail.yaml"
    params.write_text(yaml.safe_dump({"navid_planner": {"ros__parameters": {"model_dir": str(tmp_path / "missing")}}}))
    ns = f"/lc_isactive_{os.getpid()}"
    with NodeGraph(["navid_planner"], params_file=str(params), namespace=ns, logger=lambda *_: None) as graph:
        helper = rclpy.create_node("lc_isactive_helper", namespace=ns, context=graph.context)
        graph.executor.add_node(helper)
        manager = graph.node("lifecycle_manager")
        assert spin_until(graph.executor, lambda: manager.state == "failed", timeout=30)
        answer = call_service(graph.executor, helper.create_client(Trigger, "lifecycle_manager/is_active"), Trigger.Request())
        assert answer is not None and not answer.success
        assert answer.message.startswith("failed: navid_planner: configure failed"), answer.message
        graph.executor.remove_node(helper)
        helper.destroy_node()
