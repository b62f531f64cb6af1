"""safety_supervisor: the only publisher of `cmd_vel`; gates `vlm_agent/cmd_vel_raw` through the safety rules.

Topics (relative: `-r __ns:=/robot1` or `-r cmd_vel:=/base/cmd_vel` to move them): subscribes
`vlm_agent/cmd_vel_raw` (Twist, reliable), `camera/color/image_raw`, `camera/depth/image_rect_raw`
(16UC1 mm or 32FC1 m), `camera/depth/camera_info` and `odom` (best-effort: match any publisher);
publishes `cmd_vel` (Twist) and `vlm_agent/safety/state` (std_msgs/String JSON, reliable +
transient-local: `{"state", "blocked", "blocked_forward", "blocked_turn", "reason", "distance_m"}`,
sent on every change; the motion executor aborts a primitive the moment it is blocked). Services:
`vlm_agent/estop` (std_srvs/SetBool: true latches zero output, false releases) and `vlm_agent/stop`
(std_srvs/Trigger: stop the current motion). The rules live in `vlm_agent.safety.supervisor` (plain
Python, unit-tested); this node converts messages and keeps time.

Time: sensor freshness is judged from **header stamps** against this node's ROS clock (`/clock` under
`use_sim_time`, system time otherwise; a stamp from another clock is rejected, so a graph with a
simulator that stamps sim time must run this node with `use_sim_time`): backlogs and frozen
(non-advancing) stamps do not count as a live sensor. Twist has no stamp: commands are judged by
arrival time. Arrival times, command and sensor timeouts, the hold dwell and the acceleration ramps
run on the node's **control clock** (`control_now_s`): the steady clock on a robot, **sim time** under
`use_sim_time`, so a 0.5 s command timeout is 0.5 simulated seconds whether the simulator runs at a
tenth of real time (where a steady-clock timeout would fire between two commands) or twenty times
faster (where it would let the robot drive on for ten simulated seconds). Under `use_sim_time` the
output timer runs on sim time too, and publishes only when the gate has been silent for 1.5 periods
(a commander streaming at `publish_rate_hz` is forwarded on arrival; a simulator stepping in
lock-step with `cmd_vel` is not let go before the commander's own command for that step); a second
timer on the **steady clock** is the watchdog of the clock itself: when `/clock` has not advanced for
`clock_timeout_s` of wall time (or never arrived) the output is zero, state `stale`, whatever arrives.
The control clock never runs backwards: a step back under a second (two clock sources interleaving) is
held, a larger jump (a simulator restart) voids every recorded time (`SafetySupervisor.clock_reset`).

Output: an accepted command is gated and published **on arrival** (as Nav2's collision monitor does),
so it does not wait up to one period for the next tick; the fixed-rate timer (`publish_rate_hz`)
enforces the watchdogs and the acceleration ramps between arrivals and keeps a zero stream going when
every input stops.

Obstacle rule: with the depth stream's `CameraInfo` and the camera mounting parameters
(`camera_x_m` ... `camera_yaw_rad`, read-only) the footprint's path is checked in `base_link`
(`vlm_agent.safety.obstacle`); until a valid CameraInfo arrives the old image-region rule applies.

Parameters: limits may only be *tightened* while the node is gating (active); a loosening change
(`ros2 param set safety_supervisor command_timeout_s 0`) is refused at the parameter level with the
reason (the parameter keeps its value); while inactive any valid value is accepted
(`vlm_agent.safety.params`). With `estop_latch_file` the e-stop survives a restart.

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

import json
import math
import time
from dataclasses import dataclass

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from vlm_agent.config import param
from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, ManagedAgentNode, run_node
from vlm_agent.safety.freshness import CLOCK_JUMP_BACK_S
from vlm_agent.safety.obstacle import depth_array_to_metres
from vlm_agent.safety.supervisor import (
    STATE_IDLE,
    STATE_OK,
    STATE_OBSTACLE,
    STATE_STOPPED,
    SafetyConfig,
    SafetySupervisor,
)
from vlm_agent.sensors.camera_info import camera_info_to_intrinsics
from vlm_agent.sensors.image_conversion import image_to_numpy

NODE_CLASS = "SafetySupervisorNode"


@dataclass
class SafetySupervisorNodeConfig(SafetyConfig):
    """SafetyConfig (limits, timeouts, obstacle rule) plus the zero-on-exit wait."""

    zero_ack_timeout_s: float = param(
        1.0, "on deactivate/shutdown/exit, wait this long for reliable subscribers to acknowledge the zero", min=0.0, max=10.0
    )
    clock_timeout_s: float = param(
        1.0, "under use_sim_time: zero output while /clock has not advanced for this long on the steady clock (0 = off)", min=0.0, max=60.0
    )


# Relative names: they follow the node's namespace and `-r` remaps.
INPUT_TOPIC = "vlm_agent/cmd_vel_raw"
OUTPUT_TOPIC = "cmd_vel"
CAMERA_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_rect_raw"
DEPTH_INFO_TOPIC = "camera/depth/camera_info"
SAFETY_STATE_TOPIC = "vlm_agent/safety/state"
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
        if self.supervisor.estop_active:
            self.get_logger().warning(f"starting with the e-stop latched: {self.supervisor.last_reason}")
        self._state = ""
        self._gate_state: dict | None = None
        self._last_out = (0.0, 0.0)
        self._last_cmd = (0.0, 0.0)
        self._last_command_arrival = -math.inf
        self._last_command_moving = False
        self._last_publish = -math.inf  # control clock
        self._last_now: float | None = None  # control clock, to notice a backwards jump
        self._clock_seen = (-math.inf, time.monotonic())  # (control clock value, steady time it last changed)
        self._camera_model_error = ""
        self._pub = self.create_publisher(Twist, OUTPUT_TOPIC, COMMAND_QOS)
        self._state_pub = self.create_publisher(String, SAFETY_STATE_TOPIC, LATCHED_QOS)
        self.create_subscription(Twist, INPUT_TOPIC, self._on_command, COMMAND_QOS)
        self.create_subscription(Image, CAMERA_TOPIC, self._on_camera, SENSOR_QOS)
        self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, SENSOR_QOS)
        self.create_subscription(CameraInfo, DEPTH_INFO_TOPIC, self._on_depth_info, SENSOR_QOS)
        self.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS)
        self.create_service(SetBool, ESTOP_SERVICE, self._on_estop)
        self.create_service(Trigger, STOP_SERVICE, self._on_stop)
        self._timer = self.create_steady_timer(1.0 / cfg.publish_rate_hz, self._on_timer)
        self._sim_timer = self.create_timer(1.0 / cfg.publish_rate_hz, self._on_sim_timer)  # node clock: sim time under use_sim_time
        self.get_logger().info(
            f"gating {self.resolve_topic_name(INPUT_TOPIC)} -> {self.resolve_topic_name(OUTPUT_TOPIC)} at {cfg.publish_rate_hz:g} Hz "
            f"(|v| <= {cfg.max_linear_speed_mps:g} m/s, |w| <= {cfg.max_angular_speed_radps:g} rad/s); "
            "zero until activated"
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def activate_node(self) -> None:
        # Re-arm: a command stream that is moving at activation must come to rest first (a silent
        # commander, or one sending zeros, is at rest already and its next motion passes).
        recent = self._now() - self._last_command_arrival <= max(self.config.command_timeout_s, 0.5)
        if recent and self._last_command_moving:
            self.supervisor.stop()
            self.get_logger().info("activated while commands were streaming: zero until the commander comes to rest")

    def deactivate_node(self) -> None:
        self.publish_zero("deactivated")
        self.supervisor.deactivate()  # not gating: any valid parameter value may be set until activated

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

    # -- time -----------------------------------------------------------------------------------
    def _now(self) -> float:
        """The control clock (steady, or sim time under use_sim_time) in seconds, never decreasing: a
        step back of less than CLOCK_JUMP_BACK_S (two clock sources interleaving, jitter) holds the
        latest value; a larger jump (a restarted simulator) resets every time recorded on it."""
        now = self.control_now_s()
        last = self._last_now
        if last is not None and now < last:
            if last - now < CLOCK_JUMP_BACK_S:
                return last
            self.supervisor.clock_reset()
            self._last_command_arrival = self._last_publish = -math.inf
            self.get_logger().warning(f"clock jumped back from {last:.3f} s to {now:.3f} s: command and sensors start over")
        self._last_now = now
        return now

    def _clock_stall_reason(self) -> str | None:
        """Under use_sim_time: why the sim clock cannot be trusted to drive the watchdogs (never
        arrived, or stopped for `clock_timeout_s` on the steady clock); None when it runs."""
        if not self.sim_time_active or self.config.clock_timeout_s <= 0.0:
            return None
        steady, now = time.monotonic(), self.control_now_s()
        if now != self._clock_seen[0]:
            self._clock_seen = (now, steady)
        if now <= 0.0:
            return "use_sim_time: no /clock message yet"
        silent = steady - self._clock_seen[1]
        if silent > self.config.clock_timeout_s:
            return f"use_sim_time: /clock has not advanced for {silent:.1f} s (clock_timeout_s {self.config.clock_timeout_s:g})"
        return None

    def _clock_s(self) -> float:
        """This node's ROS clock (sim time under use_sim_time) in seconds: the clock sensors stamp with."""
        return self.get_clock().now().nanoseconds * 1e-9

    @staticmethod
    def _stamp_s(header) -> float:
        return header.stamp.sec + header.stamp.nanosec * 1e-9

    def _sensor(self, name: str, header) -> bool:
        """Freshness bookkeeping for one stamped message; False (counted, logged) when it is not fresh."""
        reason = self.supervisor.sensor(name, self._now(), self._stamp_s(header), self._clock_s())
        if reason:
            self.health.drop("frame_rejected", reason)
            self.get_logger().warning(f"{name} message not fresh: {reason}", throttle_duration_sec=2.0)
            return False
        self.health.tick(name)
        return True

    # -- inputs -------------------------------------------------------------------------------
    def _on_command(self, msg: Twist) -> None:
        self.health.tick("cmd_vel_raw")
        now = self._now()
        self._last_command_arrival = now
        self._last_command_moving = msg.linear.x != 0.0 or msg.angular.z != 0.0
        reason = self.supervisor.command(now, msg.linear.x, msg.angular.z, (msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y))
        if reason:
            self._last_cmd = (0.0, 0.0)
            self.health.drop("rejected", reason)
            self.get_logger().error(f"command rejected, output zero: {reason}", throttle_duration_sec=1.0)
        else:
            self._last_cmd = (float(msg.linear.x), float(msg.angular.z))
        if self.is_active:
            # Forward on arrival (a rejected command's zero too): no wait for the next timer tick.
            self._publish_output()

    def _on_camera(self, msg: Image) -> None:
        try:
            image_to_numpy(msg)  # a zero-copy consistency check: a garbled camera is a dead camera
        except ValueError as exc:
            self.health.drop("camera_malformed", str(exc))
            self.get_logger().warning(f"camera frame dropped: {exc}", throttle_duration_sec=2.0)
            return
        self._sensor("camera", msg.header)

    def _on_depth_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as exc:
            # An uncalibrated camera (fx = 0) is no camera model: the previous model (or the image rule) stays.
            if str(exc) != self._camera_model_error:
                self.get_logger().warning(f"depth camera_info unusable, obstacle model unchanged: {exc}")
            self._camera_model_error = str(exc)
            self.health.drop("depth_camera_info_invalid", str(exc))
            return
        first = self.supervisor.obstacle_stop is None
        self.supervisor.set_camera(intrinsics)  # idempotent: cheap on every message
        self._camera_model_error = ""
        if first:
            stop = self.supervisor.obstacle_stop
            self.get_logger().info(
                f"obstacle rule in base_link: depth camera {intrinsics.width}x{intrinsics.height}, "
                f"mount {self.supervisor.config.camera_mount()}, floor visible from {stop.floor_blind_distance_m:.2f} m ahead of the footprint"
            )

    def _on_depth(self, msg: Image) -> None:
        rejected = self.supervisor.counts["frames_rejected"]
        try:
            depth = depth_array_to_metres(image_to_numpy(msg), msg.encoding)  # keeps REP-117 +-inf
            reading = self.supervisor.depth(self._now(), depth, self._stamp_s(msg.header), self._clock_s())
        except ValueError as exc:
            self.supervisor.invalid_depth(self._now(), str(exc))
            self.health.drop("depth_malformed", str(exc))
            self.get_logger().warning(f"depth frame dropped: {exc}", throttle_duration_sec=2.0)
            return
        if self.supervisor.counts["frames_rejected"] != rejected:  # a stale, frozen or foreign-clock stamp
            self.health.drop("frame_rejected", self.supervisor.last_reason)
            self.get_logger().warning(f"depth message not fresh: {self.supervisor.last_reason}", throttle_duration_sec=2.0)
            return
        self.health.tick("depth")
        self.health.set("obstacle_distance_m", f"{reading.distance_m:.3f}")
        self.health.set("obstacle_valid_fraction", f"{reading.valid_fraction:.2f}")

    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        if not all(math.isfinite(v) for v in (p.x, p.y, p.z, q.x, q.y, q.z, q.w)):
            # NaN odometry is no odometry: it must not keep the stream fresh.
            self.health.drop("odom_non_finite", "NaN/inf pose")
            self.get_logger().warning("odometry with a non-finite pose dropped", throttle_duration_sec=2.0)
            return
        self._sensor("odom", msg.header)

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        error = self.supervisor.set_estop(bool(request.data), "service call")
        if request.data:
            self.get_logger().warning("E-STOP latched: output held at zero until released")
        else:
            self.get_logger().warning("e-stop released: zero until the commander rests, then a new motion")
        if error:
            self.get_logger().error(error)
        self._output_now()  # the zero (or the new state) goes out now, not at the next tick
        response.success = error is None
        response.message = error or ("e-stop latched" if request.data else "e-stop released")
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.supervisor.stop()
        self.get_logger().info("stop requested: zero until the commander starts a new motion")
        self._output_now()
        response.success = True
        response.message = "stopped"
        return response

    # -- output -------------------------------------------------------------------------------
    def _output_now(self) -> None:
        if self.is_active:
            self._publish_output()
        else:
            self._publish_inactive_zero()

    def _on_timer(self) -> None:
        """Steady clock, `publish_rate_hz`: the output stream on a robot; under use_sim_time only the
        watchdog of the clock itself (zero while `/clock` is missing or stopped)."""
        if not self.is_active:
            self._publish_inactive_zero()
        elif not self.sim_time_active or self._clock_stall_reason():
            self._publish_output()

    def _on_sim_timer(self) -> None:
        """Node clock (sim time) under use_sim_time, `publish_rate_hz`: the output when the gate has been
        silent for 1.5 periods (no command forwarded on arrival), so the watchdogs act at the sim's rate."""
        if not (self.is_active and self.sim_time_active):
            return
        now = self._now()
        if 0.0 <= now - self._last_publish <= 1.5 / self.config.publish_rate_hz:
            return
        self._publish_output()

    def _publish_inactive_zero(self) -> None:
        # Not gating: zero, and no update() (which would mark the supervisor as gating and
        # refuse parameter changes that are allowed while inactive).
        self._pub.publish(Twist())
        self._last_out = (0.0, 0.0)
        self.health.tick("cmd_vel")
        self._publish_gate_state("inactive", True, f"supervisor {self.lifecycle_state}: zero output", (0.0, 0.0))

    def _publish_output(self) -> None:
        now = self._now()
        stalled = self._clock_stall_reason()
        out = self.supervisor.clock_stopped(stalled) if stalled else self.supervisor.update(now, self._clock_s())
        self._last_publish = now
        msg = Twist()
        msg.linear.x, msg.angular.z = float(out.linear_x), float(out.angular_z)
        self._pub.publish(msg)
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
        blocked = out.state not in (STATE_OK, STATE_IDLE)
        reason = "; ".join(r for r in out.reasons if r not in ("speed clamped", "acceleration limited")) if blocked else ""
        self._publish_gate_state(out.state, blocked, reason, (out.linear_x, out.angular_z))

    def _publish_gate_state(self, state: str, blocked: bool, reason: str, out: tuple[float, float]) -> None:
        """`vlm_agent/safety/state` on every change: is the gate blocking, which direction, why, how far."""
        cmd_v, cmd_w = self._last_cmd
        obstacle = state == STATE_OBSTACLE
        decision = self.supervisor.last_obstacle if obstacle else None
        if obstacle and decision is not None:
            reason = decision.reason
        gate = {
            "state": state,
            "blocked": blocked,
            # Which part of the current command the gate withholds (the executor aborts a primitive
            # moving that way; a blocked forward with a free turn still lets turns through).
            "blocked_forward": blocked and cmd_v > 0.0 and out[0] <= 0.0,
            "blocked_turn": blocked and cmd_w != 0.0 and out[1] == 0.0,
            "reason": reason,
            "distance_m": round(decision.distance_m, 3) if decision is not None and math.isfinite(decision.distance_m) else None,
        }
        if gate != self._gate_state:
            self._gate_state = gate
            self._state_pub.publish(String(data=json.dumps(gate)))

    def status_extra(self) -> dict[str, str]:
        values = {f"safety.{k}": str(v) for k, v in self.supervisor.counts.items()}
        values["state"] = self._state if self.is_active else self.lifecycle_state
        values["estop"] = str(self.supervisor.estop_active)
        values["control_clock"] = "sim time (/clock)" if self.sim_time_active else "steady"
        values["last_reason"] = self.supervisor.last_reason
        stop = self.supervisor.obstacle_stop
        values["obstacle.model"] = "base_link (depth camera_info)" if stop is not None else "image region (no depth camera_info yet)"
        if stop is not None:
            values["obstacle.floor_blind_distance_m"] = f"{stop.floor_blind_distance_m:.3f}"
        last = self.supervisor.last_obstacle
        values["obstacle.last_reason"] = last.reason if last is not None else ""
        if self._camera_model_error:
            values["obstacle.camera_info_error"] = self._camera_model_error
        values["cmd_vel.linear_x"] = f"{self._last_out[0]:.3f}"
        values["cmd_vel.angular_z"] = f"{self._last_out[1]:.3f}"
        return values

    def accept_config_change(self, old, new) -> str | None:
        # The supervisor applies the change only when it may (tightening while gating): refusing here
        # keeps the ROS parameter at the value the gate actually uses.
        return self.supervisor.set_config(_core_config(new))

    def on_config_changed(self, old, new) -> None:
        if new.publish_rate_hz != old.publish_rate_hz:
            for timer in (self._timer, self._sim_timer):
                timer.cancel()
                self.destroy_timer(timer)
            self._timer = self.create_steady_timer(1.0 / new.publish_rate_hz, self._on_timer)
            self._sim_timer = self.create_timer(1.0 / new.publish_rate_hz, self._on_sim_timer)

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
