"""AgentNode: parameters from a config dataclass (descriptors, ranges, read-only, validation), status."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.ros_harness import spin_until
from vlm_agent.config import ConfigBase, param

pytestmark = pytest.mark.ros


@dataclass
class DemoConfig(ConfigBase):
    rate_hz: float = param(10.0, "loop rate", min=0.5, max=50.0)
    history: int = param(8, "frames kept", min=1, max=100)
    mode: str = param("fast", "mode", choices=("fast", "careful"))
    topic: str = param("/in", "input topic", read_only=True)


def make_node(context, **kwargs):
    from vlm_agent.nodes.base import AgentNode

    class DemoNode(AgentNode):
        def __init__(self, **kw):
            super().__init__("demo_node", DemoConfig, status_period_s=0.2, **kw)
            self.changes = []

        def on_config_changed(self, old, new):
            self.changes.append((old, new))

    return DemoNode(context=context, **kwargs)


def test_descriptors_carry_description_range_and_read_only(ros_context):
    node = make_node(ros_context)
    try:
        d = node.describe_parameters(["rate_hz", "history", "mode", "topic"])
        assert d[0].floating_point_range[0].from_value == 0.5 and d[0].floating_point_range[0].to_value == 50.0
        assert d[1].integer_range[0].to_value == 100
        assert "careful" in d[2].description
        assert d[3].read_only
    finally:
        node.destroy_node()


def test_runtime_changes_are_validated(ros_context):
    from rclpy.parameter import Parameter

    node = make_node(ros_context)
    try:
        assert not node.set_parameters([Parameter("rate_hz", value=500.0)])[0].successful  # ROS range
        assert not node.set_parameters([Parameter("topic", value="/other")])[0].successful  # read-only
        result = node.set_parameters([Parameter("mode", value="reckless")])[0]  # dataclass choices
        assert not result.successful and "not one of" in result.reason
        assert node.config.mode == "fast" and node.config.rate_hz == 10.0
        assert node.set_parameters([Parameter("rate_hz", value=20.0)])[0].successful
        assert node.config.rate_hz == 20.0 and len(node.changes) == 1
    finally:
        node.destroy_node()


def test_parameters_from_yaml_and_bad_startup_values(tmp_path):
    import rclpy

    good = tmp_path / "good.yaml"
    good.write_text("/**:\n  ros__parameters:\n    history: 3\ndemo_node:\n  ros__parameters:\n    rate_hz: 2.5\n")
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(good)], context=context)
    try:
        node = make_node(context)
        assert (node.config.rate_hz, node.config.history) == (2.5, 3)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)

    bad = tmp_path / "bad.yaml"
    bad.write_text("demo_node:\n  ros__parameters:\n    mode: reckless\n")
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(bad)], context=context)
    try:
        with pytest.raises(ValueError, match="mode"):
            make_node(context)
    finally:
        rclpy.shutdown(context=context)


def test_status_is_published_with_rates_and_drops(ros_context, ros_executor, ros_node):
    from diagnostic_msgs.msg import DiagnosticArray

    node = make_node(ros_context)
    ros_executor.add_node(node)
    received = []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    for _ in range(3):
        node.health.tick("camera")
    node.health.drop("malformed", "step too small")
    node.health.latency("infer", 0.012)
    assert spin_until(ros_executor, lambda: any(s.name.endswith("demo_node") for m in received for s in m.status))
    status = next(s for m in received for s in m.status if s.name.endswith("demo_node"))
    values = {kv.key: kv.value for kv in status.values}
    assert values["count.camera"] == "3"
    assert values["dropped.malformed"] == "1" and "step too small" in values["dropped.last_reason"]
    assert float(values["latency.infer.p50_ms"]) == pytest.approx(12.0)
