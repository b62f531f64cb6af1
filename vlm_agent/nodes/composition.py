"""Run several vlm_agent nodes in one process on one executor (what `vlm-agent up` does).

Parameters come from the same ROS parameter YAML the launch files pass, applied through the
context's `--params-file` so node-name matching and `/**` work exactly as under `ros2 launch`.
One SingleThreadedExecutor serves all nodes (measured steadier than the multi-threaded one when
driven in-process); nodes that run models do so off the executor thread themselves.
"""
from __future__ import annotations

import signal
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from vlm_agent.config import node_sections
from vlm_agent.nodes import available_nodes, node_class
from vlm_agent.ros_env import configure_ros_environment


def nodes_in_config(config_path: str) -> tuple[list[str], list[str]]:
    """(nodes to start, sections that name no vlm_agent node) for a parameter YAML."""
    known = set(available_nodes())
    sections = node_sections(config_path)
    return [s for s in sections if s in known], [s for s in sections if s not in known]


class NodeGraph:
    """A set of nodes sharing one rclpy context and one executor.

    Usage: `with NodeGraph(["safety_supervisor", ...], params_file=...) as graph: graph.spin(10.0)`.
    """

    def __init__(self, node_names: list[str], params_file: str | None = None, ros_args: list[str] | None = None, logger=print):
        configure_ros_environment()
        self.node_names = list(node_names)
        args = ["--ros-args"] + (["--params-file", params_file] if params_file else []) + list(ros_args or [])
        self.context = rclpy.Context()
        self._args = args
        self.nodes = []
        self.executor = None
        self._stop = threading.Event()
        self._log = logger

    def __enter__(self):
        rclpy.init(args=self._args, context=self.context)
        try:
            self.executor = SingleThreadedExecutor(context=self.context)
            for name in self.node_names:
                node = node_class(name)(context=self.context)
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

    def request_stop(self) -> None:
        self._stop.set()

    def spin(self, duration_s: float | None = None) -> None:
        """Spin until `duration_s` elapses, `request_stop()`, Ctrl-C or an external shutdown."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while self.context.ok() and not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass

    def close(self) -> None:
        for node in reversed(self.nodes):
            if self.executor is not None:
                self.executor.remove_node(node)
            node.destroy_node()
        self.nodes = []
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None
        if self.context.ok():
            rclpy.shutdown(context=self.context)


def run_graph(config_path: str, only: list[str] | None = None, duration_s: float | None = None, logger=print) -> int:
    """Start every vlm_agent node named in `config_path` (or the `only` subset) and spin."""
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
    with NodeGraph(names, params_file=config_path, logger=logger) as graph:
        # Cooperative stop on Ctrl-C / SIGTERM: the spin loop ends between callbacks and close()
        # tears the nodes down in order. rclpy's own SIGINT handler shuts the context down under a
        # running executor, and a subscription take racing with it raised from inside rclpy
        # (RuntimeError in take_message), so the process exited 1 instead of 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: graph.request_stop())
        graph.spin(duration_s)
    logger("graph stopped")
    return 0
