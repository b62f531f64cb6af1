"""Shared plumbing for vlm_agent's thin nodes: parameters from config dataclasses, status, QoS, main().

ROS parameters are declared from a `ConfigBase` dataclass (description, ranges, read-only from
its field metadata); values come from `--params-file config/X.yaml` (`/**: ros__parameters:`) or
`-p k:=v`; runtime changes are validated by building a new config and rejected with the
dataclass's error message. Every node publishes a `diagnostic_msgs/DiagnosticArray` on
`/vlm_agent/status` with its rates, latencies, drop counts and state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import typing

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from vlm_agent.config import ConfigBase, field_types
from vlm_agent.ros_env import configure_ros_environment
from vlm_agent.telemetry import HealthReport

STATUS_TOPIC = "/vlm_agent/status"
SENSOR_QOS = qos_profile_sensor_data
# State that late joiners need (plans, latched status, results): the last message is kept.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

_PARAM_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list[float]: ParameterType.PARAMETER_DOUBLE_ARRAY,
    list[int]: ParameterType.PARAMETER_INTEGER_ARRAY,
    list[str]: ParameterType.PARAMETER_STRING_ARRAY,
}
_BIG_INT = 2**62


def parameter_descriptor(field: dataclasses.Field, ftype) -> ParameterDescriptor:
    """ParameterDescriptor (type, description, range, read-only) from a `param(...)` field."""
    meta = field.metadata
    description = meta.get("description", "")
    if meta.get("choices"):
        description += f" (one of: {', '.join(map(str, meta['choices']))})"
    desc = ParameterDescriptor(
        name=field.name, type=_PARAM_TYPES[ftype], description=description, read_only=bool(meta.get("read_only"))
    )
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None or hi is not None) and ftype is float:
        desc.floating_point_range = [
            FloatingPointRange(
                from_value=float(lo if lo is not None else -sys.float_info.max),
                to_value=float(hi if hi is not None else sys.float_info.max),
                step=0.0,
            )
        ]
    elif (lo is not None or hi is not None) and ftype is int:
        desc.integer_range = [
            IntegerRange(
                from_value=int(lo if lo is not None else -_BIG_INT), to_value=int(hi if hi is not None else _BIG_INT), step=1
            )
        ]
    return desc


class AgentNode(Node):
    """A node whose parameters are a config dataclass and which reports on `/vlm_agent/status`.

    Subclasses pass `config_cls`, then build pubs/subs from `self.config`. Override
    `on_config_changed(old, new)` to react to runtime parameter changes.
    """

    def __init__(self, node_name: str, config_cls: type[ConfigBase], status_period_s: float = 1.0, **kwargs):
        super().__init__(node_name, **kwargs)
        self._config_cls = config_cls
        self.config = self._declare_config(config_cls)
        self.health = HealthReport()
        self._status_pub = self.create_publisher(DiagnosticArray, STATUS_TOPIC, 10)
        self._status_timer = self.create_timer(status_period_s, self.publish_status)
        self._started = time.monotonic()

    # -- parameters -------------------------------------------------------------------------
    def _declare_config(self, config_cls):
        types = field_types(config_cls)
        defaults = config_cls()  # defaults must validate on their own
        values = {}
        for f in dataclasses.fields(config_cls):
            descriptor = parameter_descriptor(f, types[f.name])
            self.declare_parameter(f.name, getattr(defaults, f.name), descriptor)
            values[f.name] = self.get_parameter(f.name).value
        try:
            config = config_cls(**values)
        except ValueError as exc:
            # A bad value from the YAML or command line: fail at start-up with the reason, not later.
            self.get_logger().fatal(f"invalid parameters: {exc}")
            raise
        self.add_on_set_parameters_callback(self._on_set_parameters)
        return config

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self.config.to_dict()}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new_config = dataclasses.replace(self.config, **changes)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        old, self.config = self.config, new_config
        self.on_config_changed(old, new_config)
        return SetParametersResult(successful=True)

    def on_config_changed(self, old: ConfigBase, new: ConfigBase) -> None:
        """Hook for subclasses; the default does nothing."""

    # -- status -----------------------------------------------------------------------------
    def status_extra(self) -> dict[str, str]:
        """Subclasses add node-specific values (state, model name, ...)."""
        return {}

    def publish_status(self) -> None:
        status = DiagnosticStatus(
            level=bytes([self.health.level]),
            name=self.get_fully_qualified_name(),
            message=self.health.message,
            hardware_id="vlm_agent",
        )
        values = self.health.key_values()
        values.update(self.status_extra())
        values["uptime_s"] = f"{time.monotonic() - self._started:.1f}"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._status_pub.publish(msg)


@contextlib.contextmanager
def rclpy_session(args=None, context=None):
    """`rclpy.init` ... `rclpy.try_shutdown` as a context manager on every supported distribution.

    `with rclpy.init():` only exists after Jazzy (on Humble and Jazzy `init` returns None and the
    `with` raises TypeError), so this is the one spelling the package uses.
    """
    rclpy.init(args=args, context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def run_node(node_factory: typing.Callable[[], Node], args=None) -> int:
    """Standard node `main`: init, spin on a SingleThreadedExecutor, clean shutdown on Ctrl-C or
    external shutdown. Returns the process exit code (1 when the node refused its parameters)."""
    configure_ros_environment()
    try:
        with rclpy_session(args=args):
            node = node_factory()
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
