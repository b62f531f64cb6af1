"""Run several vlm_agent nodes in one process on one executor (what `vlm-agent up` does).

Parameters come from the same ROS parameter YAML the launch files pass, applied through the
context's `--params-file`. Its node sections (`mujoco_sim:`) are rewritten to match the node in any
namespace (`/**/mujoco_sim:`), so `--namespace /robot1` (or `ros_args=["-r", "__ns:=/robot1"]`)
moves the whole graph, topics included (they are relative), and two graphs share one ROS domain
without cross-talk. One SingleThreadedExecutor serves all nodes (measured steadier than the
multi-threaded one when driven in-process); nodes that run models do so off the executor thread.

Managed (lifecycle) nodes in the graph are brought to active by an in-process `lifecycle_manager`
(added when the graph has managed nodes; its `node_names` are the managed nodes present, in
`MANAGED_NODE_ORDER`). Signals are handled here, not by rclpy: SIGINT/SIGTERM end the spin loop
between callbacks; `close()` then deactivates and shuts down the managed nodes in reverse order
(the safety supervisor publishes zero and waits for it to be acknowledged), destroys every node,
and only then shuts the context down.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time

import rclpy
import yaml
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from vlm_agent.config import node_sections
from vlm_agent.nodes import available_nodes, node_class
from vlm_agent.nodes.base import ManagedAgentNode, TeardownWatchdog, stop_on_signals
from vlm_agent.ros_env import configure_ros_environment

MANAGER = "lifecycle_manager"


def nodes_in_config(config_path: str) -> tuple[list[str], list[str]]:
    """(nodes to start, sections that name no vlm_agent node) for a parameter YAML."""
    known = set(available_nodes())
    sections = node_sections(config_path)
    return [s for s in sections if s in known], [s for s in sections if s not in known]


def any_namespace_params(params_file: str, out_dir: str | None = None) -> str:
    """A copy of a ROS parameter YAML whose plain node sections (`name:`) also match the node in a
    namespace (`/**/name:`); sections that already carry a slash or a wildcard are kept as written.
    Returns the new file's path (launch files and `vlm-agent up` pass it as `--params-file`)."""
    with open(params_file) as f:
        doc = yaml.safe_load(f) or {}
    out = {}
    for key, value in doc.items():
        out[key if ("/" in key or "*" in key) else f"/**/{key}"] = value
    fd, path = tempfile.mkstemp(prefix="vlm_agent_params_", suffix=".yaml", dir=out_dir)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(out, f)
    return path


def managed_names(node_names: list[str]) -> list[str]:
    """The managed (lifecycle) nodes among `node_names`, in bring-up order."""
    from vlm_agent.nodes.lifecycle_manager import MANAGED_NODE_ORDER

    managed = [n for n in node_names if n != MANAGER and issubclass(node_class(n), ManagedAgentNode)]
    order = {n: i for i, n in enumerate(MANAGED_NODE_ORDER)}
    return sorted(managed, key=lambda n: (order.get(n, len(order)), node_names.index(n)))


class NodeGraph:
    """A set of nodes sharing one rclpy context and one executor.

    Usage: `with NodeGraph(["safety_supervisor", ...], params_file=...) as graph: graph.spin(10.0)`.
    `namespace` (e.g. "/robot1") puts every node (and so every relative topic) under it.
    `exit_on_hung_teardown`: once the managed nodes have exited (zero sent), a `TeardownWatchdog`
    ends the process if destroying the nodes hangs inside rclpy (for `vlm-agent up`, never in a
    process that hosts other work, such as a test run).
    """

    def __init__(self, node_names: list[str], params_file: str | None = None, ros_args: list[str] | None = None,
                 logger=print, namespace: str = "", manage: bool = True, exit_on_hung_teardown: bool = False):
        configure_ros_environment()
        names = list(dict.fromkeys(node_names))
        self.managed = managed_names(names) if manage else []
        if self.managed and MANAGER not in names:
            names.append(MANAGER)
        self.node_names = names
        self._params_file = any_namespace_params(params_file) if params_file else None
        args = ["--ros-args"] + (["--params-file", self._params_file] if self._params_file else [])
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        self._args = args + list(ros_args or [])
        self.context = rclpy.Context()
        self.nodes = []
        self.executor = None
        self._stop = threading.Event()
        self._log = logger
        self.exit_on_hung_teardown = exit_on_hung_teardown

    def __enter__(self):
        rclpy.init(args=self._args, context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            self.executor = SingleThreadedExecutor(context=self.context)
            for name in self.node_names:
                kwargs = {"context": self.context}
                if name == MANAGER:
                    kwargs["parameter_overrides"] = [Parameter("node_names", Parameter.Type.STRING_ARRAY, self.managed)]
                node = node_class(name)(**kwargs)
                self.nodes.append(node)
                self.executor.add_node(node)
                self._log(f"started node {node.get_fully_qualified_name()}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def node(self, name: str):
        return next(n for n in self.nodes if n.get_name() == name)

    def request_stop(self) -> None:
        self._stop.set()

    def spin(self, duration_s: float | None = None) -> None:
        """Spin until `duration_s` elapses, `request_stop()`, or an external shutdown."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while self.context.ok() and not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass

    def close(self) -> None:
        # Managed nodes first, in reverse bring-up order, while the context is valid: the planner
        # stops planning, then the supervisor's zero goes out and is acknowledged.
        if self.context.ok():
            by_name = {n.get_name(): n for n in self.nodes}
            for name in reversed(self.managed):
                node = by_name.get(name)
                if node is None:
                    continue
                try:
                    node.on_exit()
                except Exception as exc:  # noqa: BLE001 (keep tearing down the others)
                    self._log(f"{name}: exit transition failed: {type(exc).__name__}: {exc}")
        watchdog = TeardownWatchdog() if self.exit_on_hung_teardown and self.nodes else None
        for node in reversed(self.nodes):
            if self.executor is not None:
                self.executor.remove_node(node)
            node.destroy_node()
        self.nodes = []
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None
        if watchdog is not None:
            watchdog.cancel()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
        if self._params_file and os.path.exists(self._params_file):
            os.unlink(self._params_file)
            self._params_file = None


def run_graph(config_path: str, only: list[str] | None = None, duration_s: float | None = None, logger=print,
              namespace: str = "", ros_args: list[str] | None = None) -> int:
    """Start every vlm_agent node named in `config_path` (or the `only` subset) and spin until
    SIGINT/SIGTERM (or `duration_s`)."""
    names, foreign = nodes_in_config(config_path)
    for section in foreign:
        logger(f"note: section '{section}' names no vlm_agent node (known: {', '.join(available_nodes())}); skipped")
    if only:
        unknown = [n for n in only if n not in available_nodes()]
        if unknown:
            raise ValueError(f"unknown node(s) {unknown} (available: {', '.join(available_nodes())})")
        names = list(only)
    if not names:
        raise ValueError(f"{config_path}: no vlm_agent node sections (available: {', '.join(available_nodes())})")
    graph = NodeGraph(names, params_file=config_path, logger=logger, namespace=namespace, ros_args=ros_args, exit_on_hung_teardown=True)
    # Cooperative stop on Ctrl-C / SIGTERM (rclpy's handlers are off): the spin loop ends between
    # callbacks and close() takes the nodes down in order while the context is still valid. The
    # handlers stay installed until close() has finished, so a second signal cannot cut it short.
    with stop_on_signals(graph.request_stop), graph:
        graph.spin(duration_s)
    logger("graph stopped")
    return 0


# Nav2's velocity chain ends in a node that publishes `cmd_vel` itself: nav2_bringup remaps
# velocity_smoother's `cmd_vel_smoothed` to `cmd_vel` (Humble), or feeds it to collision_monitor, which
# publishes `cmd_vel` (Jazzy, Kilted). Through the gate that last stage must publish the supervisor's
# *input*, or two publishers fight on `cmd_vel` (issue 11).
NAV2_GATE_INPUT = "vlm_agent/cmd_vel_raw"
NAV2_FINAL_STAGES = (("velocity_smoother", "cmd_vel_smoothed"), ("collision_monitor", "cmd_vel"))


def nav2_gate_remaps(gate_input: str = NAV2_GATE_INPUT) -> list[tuple[str, str]]:
    """(src, dst) remap rules that send Nav2's velocity output into the safety supervisor's input.

    controller_server -> `cmd_vel_nav` -> velocity_smoother -> `vlm_agent/cmd_vel_raw` ->
    safety_supervisor -> `cmd_vel`. Node-qualified (`node:from:=to`), so only those nodes' names
    change; placed before nav2_bringup's own remaps they win (rcl applies the first matching rule).
    The supervisor takes the collision monitor's place: Nav2's own, if started, receives nothing, and
    its `cmd_vel` is routed to the gate too, so the supervisor stays the only publisher of `cmd_vel`.
    """
    return [(f"{node}:{topic}", gate_input) for node, topic in NAV2_FINAL_STAGES]
