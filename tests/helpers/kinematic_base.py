"""A kinematic unicycle base for ROS tests of the executor/planner without the simulator.

`KinematicBase(node, cmd_topic)` subscribes a Twist topic, integrates it at `rate_hz` (REP-103:
linear.x along the heading, angular.z counter-clockwise) and publishes `/odom` (frame `odom`,
child `base_link`) from a timer on the node's executor. `odom_override` replaces the published
pose (e.g. NaN) to inject faults; `publish` can be switched off to simulate a dead odometry source.
"""
from __future__ import annotations

import math


class KinematicBase:
    def __init__(self, node, cmd_topic: str = "/vlm_agent/cmd_vel_raw", odom_topic: str = "/odom", rate_hz: float = 50.0):
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry

        from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS

        self.node = node
        self.x = self.y = self.yaw = 0.0
        self.cmd = (0.0, 0.0)
        self.commands: list[tuple[float, float]] = []
        self.publish = True
        self.odom_override = None  # (x, y, yaw) published instead of the true pose
        self._dt = 1.0 / rate_hz
        self._Odometry = Odometry
        self.odom_pub = node.create_publisher(Odometry, odom_topic, SENSOR_QOS)
        self.cmd_sub = node.create_subscription(Twist, cmd_topic, self._on_cmd, COMMAND_QOS)
        node.create_timer(self._dt, self._step)

    def _on_cmd(self, msg) -> None:
        self.cmd = (msg.linear.x, msg.angular.z)
        self.commands.append(self.cmd)

    def _step(self) -> None:
        v, w = self.cmd
        if math.isfinite(v) and math.isfinite(w):
            self.x += v * math.cos(self.yaw) * self._dt
            self.y += v * math.sin(self.yaw) * self._dt
            self.yaw = math.atan2(math.sin(self.yaw + w * self._dt), math.cos(self.yaw + w * self._dt))
        if not self.publish:
            return
        x, y, yaw = self.odom_override or (self.x, self.y, self.yaw)
        msg = self._Odometry()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
        msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2.0), math.cos(yaw / 2.0)
        self.odom_pub.publish(msg)
