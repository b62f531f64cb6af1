"""safety_supervisor: the only publisher of `cmd_vel`; gates `vlm_agent/cmd_vel_raw` through the safety rules.

Topics (relative: `-r __ns:=/robot1` or `-r cmd_vel:=/base/cmd_vel` to move them): subscribes
`vlm_agent/cmd_vel_raw` (Twist, reliable), `camera/color/image_raw`, `camera/depth/image_rect_raw`
(16UC1 mm or 32FC1 m) and `odom` (best-effort: match any publisher); publishes `cmd_vel` (Twist) from
a fixed-rate timer so the watchdogs act even when every input stops. Services: `vlm_agent/estop`
(std_srvs/SetBool: true latches zero output, false releases) and `vlm_agent/stop` (std_srvs/Trigger:
stop the current motion). The rules themselves live in `vlm_agent.safety.supervisor` (plain Python,
unit-tested); this node converts messages and keeps time. Freshness uses the wall (monotonic) clock
on arrival, not header stamps or `/clock`, and the output timer runs on the steady clock: a watchdog
must keep running when a simulator's clock stops.

A managed (lifecycle) node. Only while **active** does gated motion reach `cmd_vel`; in every other
state (unconfigured, inactive, and until it is brought up) it publishes **zero** at `publish_rate_hz`,
never nothing. A base driver that keeps its last command (many do), or one that joined late and
missed a single zero, is stopped by the zero stream; silence would leave it moving. The
publisher, inputs and the e-stop service exist from construction so that this holds in every state.
Deactivation, shutdown and process exit (SIGINT/SIGTERM through `run_node`) publish zero at once
and wait until reliable subscribers have acknowledged it, before the context goes down.
Activation re-arms like `stop()` when a moving command stream is running at that moment: it is held
at zero until the commander comes to rest and starts a new motion.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger

from vlm_agent.config import param
from rclpy.duration import Duration

from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS, ManagedAgentNode, run_node
from vlm_agent.safety.supervisor import (
    STATE_IDLE,
    STATE_OK,
    STATE_OBSTACLE,
    STATE_STOPPED,
    SafetyConfig,
    SafetySupervisor,
)
from vlm_agent.sensors.image_conversion import depth_to_metres, image_to_numpy

NODE_CLASS = "SafetySupervisorNode"


@dataclass
class SafetySupervisorNodeConfig(SafetyConfig):
    """SafetyConfig (limits, timeouts, obstacle rule) plus the zero-on-exit wait."""

    zero_ack_timeout_s: float = param(
        1.0, "on deactivate/shutdown/exit, wait this long for reliable subscribers to acknowledge the zero", min=0.0, max=10.0
    )


# Relative names: they follow the node's namespace and `-r` remaps.
INPUT_TOPIC = "vlm_agent/cmd_vel_raw"
OUTPUT_TOPIC = "cmd_vel"
CAMERA_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_rect_raw"
ODOM_TOPIC = "odom"
ESTOP_SERVICE = "vlm_agent/estop"
STOP_SERVICE = "vlm_agent/stop"


def _core_config(config: SafetySupervisorNodeConfig) -> SafetyConfig:
    names = SafetyConfig.__dataclass_fields__.keys()
    return SafetyConfig(**{k: getattr(config, k) for k in names})


class SafetySupervisorNode(ManagedAgentNode):
    def __init__(self, **kwargs):
        super().__init__("safety_supervisor", SafetySupervisorNodeConfig, **kwargs)
        cfg = self.config
        self.supervisor = SafetySupervisor(_core_config(cfg))
        self._state = ""
        self._last_out = (0.0, 0.0)
        self._last_command_arrival = -math.inf
        self._last_command_moving = False
        self._pub = self.create_publisher(Twist, OUTPUT_TOPIC, COMMAND_QOS)
        self.create_subscription(Twist, INPUT_TOPIC, self._on_command, COMMAND_QOS)
        self.create_subscription(Image, CAMERA_TOPIC, self._on_camera, SENSOR_QOS)
        self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, SENSOR_QOS)
        self.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS)
        self.create_service(SetBool, ESTOP_SERVICE, self._on_estop)
        self.create_service(Trigger, STOP_SERVICE, self._on_stop)
        self._timer = self.create_steady_timer(1.0 / cfg.publish_rate_hz, self._on_timer)
        self.get_logger().info(
            f"gating {self.resolve_topic_name(INPUT_TOPIC)} -> {self.resolve_topic_name(OUTPUT_TOPIC)} at {cfg.publish_rate_hz:g} Hz "
            f"(|v| <= {cfg.max_linear_speed_mps:g} m/s, |w| <= {cfg.max_angular_speed_radps:g} rad/s); "
            "zero until activated"
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def activate_node(self) -> None:
        # Re-arm: a command stream that is moving at activation must come to rest first (a silent
        # commander, or one sending zeros, is at rest already and its next motion passes).
        recent = time.monotonic() - self._last_command_arrival <= max(self.config.command_timeout_s, 0.5)
        if recent and self._last_command_moving:
            self.supervisor.stop()
            self.get_logger().info("activated while commands were streaming: zero until the commander comes to rest")

    def deactivate_node(self) -> None:
        self.publish_zero("deactivated")

    def cleanup_node(self) -> None:
        self.publish_zero("cleaned up")

    def publish_zero(self, why: str) -> bool:
        """Publish a zero Twist now and wait (up to `zero_ack_timeout_s`) until every reliable
        subscriber has acknowledged it. True when acknowledged (or nobody reliable listens)."""
        self._pub.publish(Twist())
        self._last_out = (0.0, 0.0)
        acked = self._pub.wait_for_all_acked(Duration(seconds=self.config.zero_ack_timeout_s))
        self.get_logger().info(f"{why}: zero published on {self._pub.topic_name}" + ("" if acked else " (not acknowledged in time)"))
        return acked

    # -- inputs -------------------------------------------------------------------------------
    def _on_command(self, msg: Twist) -> None:
        self.health.tick("cmd_vel_raw")
        self._last_command_arrival = time.monotonic()
        self._last_command_moving = msg.linear.x != 0.0 or msg.angular.z != 0.0
        reason = self.supervisor.command(
            time.monotonic(), msg.linear.x, msg.angular.z, (msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y)
        )
        if reason:
            self.health.drop("rejected", reason)
            self.get_logger().error(f"command rejected, output zero: {reason}", throttle_duration_sec=1.0)

    def _on_camera(self, msg: Image) -> None:
        try:
            image_to_numpy(msg)  # a zero-copy consistency check: a garbled camera is a dead camera
        except ValueError as exc:
            self.health.drop("camera_malformed", str(exc))
            self.get_logger().warning(f"camera frame dropped: {exc}", throttle_duration_sec=2.0)
            return
        self.health.tick("camera")
        self.supervisor.sensor("camera", time.monotonic())

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = depth_to_metres(msg)
        except ValueError as exc:
            self.health.drop("depth_malformed", str(exc))
            self.get_logger().warning(f"depth frame dropped: {exc}", throttle_duration_sec=2.0)
            return
        self.health.tick("depth")
        reading = self.supervisor.depth(time.monotonic(), depth)
        self.health.set("obstacle_distance_m", f"{reading.distance_m:.3f}")
        self.health.set("obstacle_valid_fraction", f"{reading.valid_fraction:.2f}")

    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        if not all(math.isfinite(v) for v in (p.x, p.y, p.z, q.x, q.y, q.z, q.w)):
            # NaN odometry is no odometry: it must not keep the stream fresh.
            self.health.drop("odom_non_finite", "NaN/inf pose")
            self.get_logger().warning("odometry with a non-finite pose dropped", throttle_duration_sec=2.0)
            return
        self.health.tick("odom")
        self.supervisor.sensor("odom", time.monotonic())

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.supervisor.set_estop(bool(request.data))
        if request.data:
            self.get_logger().warning("E-STOP latched: output held at zero until released")
            self._on_timer()  # zero goes out now, not at the next tick
        else:
            self.get_logger().warning("e-stop released")
        response.success = True
        response.message = "e-stop latched" if request.data else "e-stop released"
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.supervisor.stop()
        self.get_logger().info("stop requested: zero until the commander starts a new motion")
        self._on_timer()
        response.success = True
        response.message = "stopped"
        return response

    # -- output -------------------------------------------------------------------------------
    def _on_timer(self) -> None:
        out = self.supervisor.update(time.monotonic())
        msg = Twist()
        if self.is_active:
            msg.linear.x, msg.angular.z = float(out.linear_x), float(out.angular_z)
        self._pub.publish(msg)  # zero in every state but active
        self._last_out = (msg.linear.x, msg.angular.z)
        self.health.tick("cmd_vel")
        if out.state != self._state:
            text = "; ".join(out.reasons) or out.state
            if out.state in (STATE_OK, STATE_IDLE):
                self.get_logger().info(f"state {self._state or 'start'} -> {out.state}: {text}")
            else:
                self.get_logger().warning(f"state {self._state or 'start'} -> {out.state}: {text}")
            self._state = out.state
        if out.state in (STATE_OK, STATE_IDLE):
            level = self.health.OK
        elif out.state in (STATE_OBSTACLE, STATE_STOPPED):
            level = self.health.WARN
        else:
            level = self.health.ERROR
        self.health.set_level(level, out.state if not out.reasons else f"{out.state}: {'; '.join(out.reasons)}")

    def status_extra(self) -> dict[str, str]:
        values = {f"safety.{k}": str(v) for k, v in self.supervisor.counts.items()}
        values["state"] = self._state
        values["estop"] = str(self.supervisor.estop_active)
        values["last_reason"] = self.supervisor.last_reason
        values["cmd_vel.linear_x"] = f"{self._last_out[0]:.3f}"
        values["cmd_vel.angular_z"] = f"{self._last_out[1]:.3f}"
        return values

    def on_config_changed(self, old, new) -> None:
        self.supervisor.set_config(_core_config(new))
        if new.publish_rate_hz != old.publish_rate_hz:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_steady_timer(1.0 / new.publish_rate_hz, self._on_timer)

    def destroy_node(self):
        # Leave the base with a zero command rather than whatever went out last. `run_node` and the
        # graph runner call this while the context is valid (they handle the signals themselves);
        # a context already shut down by someone else cannot publish, and that is logged, not hidden.
        if self.context.ok():
            self.publish_zero("exit")
        else:
            self.get_logger().error("context already shut down: the final zero could not be published")
        return super().destroy_node()


def main(args=None):
    return run_node(SafetySupervisorNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
