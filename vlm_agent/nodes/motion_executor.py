"""motion_executor: runs plans from `vlm_agent/plan` closed-loop on `odom`.

Velocity mode (default): publishes `vlm_agent/cmd_vel_raw` (Twist) at `control_rate_hz`; the safety
supervisor gates it onto `cmd_vel`. Goal-pose mode: publishes the target of each primitive on
`goal_pose` (PoseStamped, in the frame of the pose source, normally `odom`; remap `odom` to a
map-frame Odometry source to send `map` goals) for Nav2, and still judges completion on the pose.
Topic names are relative (namespaces, `-r` remaps).

Reports `{"plan_id", "state": idle|executing|done|aborted, "reason"}` on `vlm_agent/executor/state`
(latched).

Blocked means abort at once: the node follows the safety supervisor's gate state
(`vlm_agent/safety/state`, latched JSON). When the supervisor withholds the running primitive's
motion (an obstacle blocks a forward move, or a turn's sweep; a stop request; the e-stop), the
primitive is aborted the moment that state arrives (a stale sensor does not abort: the primitive
resumes when the stream is fresh again, and its timeout bounds a dead one), with the supervisor's reason in the executor state
("blocked by safety supervisor: blocked by obstacle at 0.31 m ..."), instead of pushing against the
gate until the primitive's timeout. The planner reads that reason (see `planners/planner_loop.py`).

Caps whatever the source (the planner, `ros2 topic pub`, Nav2 tooling): a plan longer than
`max_primitives`, a forward primitive longer than `max_forward_cm` or a turn larger than
`max_turn_deg` is refused as a whole, with the reason logged and in the executor state. A malformed plan is logged and ignored, and any motion in progress is aborted: when the
planner's intent cannot be read, stopping is the only safe reading. The plan subscription is
volatile on purpose: a restarted executor must not replay the last latched plan.
Time: the control loop, the speed profile, primitive timeouts, the odometry age and `idle_zero_s`
run on the node's control clock (`control_now_s`): the steady clock on a robot, **sim time** under
`use_sim_time` (the control timer then fires on `/clock`), so a primitive takes the same simulated
time whatever the simulator's real-time factor, and a simulator that steps in lock-step with
`cmd_vel` gets one command per control period of sim time. A steady-clock watchdog aborts the running
primitive when `/clock` has not advanced for `clock_timeout_s` of wall time (the control timer
itself would wait for the clock forever). After a stall of this node itself (no control tick for
longer than `odom_timeout_s`, e.g. CPU starvation) stale odometry is judged one tick later, once the
odometry queued behind the tick has been read: a plan arriving after such a stall used to abort at
once with "odometry stale" although fresh odometry was waiting (seen under load, issue 11).
The control logic is `vlm_agent.skills.motion.MotionExecutor` (plain Python, unit-tested).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from vlm_agent.config import param
from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, AgentNode, run_node
from vlm_agent.planners.planner_loop import BLOCKED_PREFIX, ExecutorState, PlanMessage
from vlm_agent.safety.freshness import CLOCK_JUMP_BACK_S
from vlm_agent.sensors.frames import yaw_from_quaternion
from vlm_agent.skills.motion import ABORTED, DONE, EXECUTING, IDLE, MotionConfig, MotionExecutor, Pose2D

NODE_CLASS = "MotionExecutorNode"

# Latched like LATCHED_QOS, but 10 deep: "aborted (preempted)" and "executing" of the next plan go
# out back to back, and a depth-1 history would let a slow reader miss the first.
STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@dataclass
class MotionExecutorNodeConfig(MotionConfig):
    """MotionConfig (profile, tolerances, timeouts, mode) plus the node's topics and rates."""

    control_rate_hz: float = param(20.0, "control loop rate", min=1.0, max=200.0)
    idle_zero_s: float = param(0.5, "keep sending zero this long after a plan ends, then go quiet", min=0.0, max=10.0)
    max_forward_cm: float = param(
        200.0, "a plan with a forward primitive longer than this is refused (NaVid steps are 25 cm)", min=1.0, max=10000.0
    )
    max_turn_deg: float = param(360.0, "a plan with a turn larger than this is refused (NaVid turns are 30 degrees)", min=1.0, max=3600.0)
    abort_when_blocked: bool = param(True, "abort the running primitive when the safety supervisor blocks its motion")
    clock_timeout_s: float = param(
        2.0, "under use_sim_time: abort the running primitive when /clock has not advanced for this long on the steady clock (0 = off)",
        min=0.0, max=60.0,
    )


PLAN_TOPIC = "vlm_agent/plan"
STATE_TOPIC = "vlm_agent/executor/state"
SAFETY_STATE_TOPIC = "vlm_agent/safety/state"
ODOM_TOPIC = "odom"
CMD_TOPIC = "vlm_agent/cmd_vel_raw"
GOAL_TOPIC = "goal_pose"


def _core_config(config: MotionExecutorNodeConfig) -> MotionConfig:
    return MotionConfig(**{k: getattr(config, k) for k in MotionConfig.__dataclass_fields__})


class MotionExecutorNode(AgentNode):
    def __init__(self, **kwargs):
        super().__init__("motion_executor", MotionExecutorNodeConfig, **kwargs)
        cfg = self.config
        self.executor_core = MotionExecutor(_core_config(cfg))
        self._pose: Pose2D | None = None
        self._pose_time: float | None = None
        self._pose_frame = "odom"
        self._reported = (None, IDLE, "")
        self._ended_at: float | None = None
        self._last_twist = (0.0, 0.0)
        self._cmd_pub = self.create_publisher(Twist, CMD_TOPIC, COMMAND_QOS)
        self._goal_pub = self.create_publisher(PoseStamped, GOAL_TOPIC, COMMAND_QOS)
        self._state_pub = self.create_publisher(String, STATE_TOPIC, STATE_QOS)
        self.create_subscription(String, PLAN_TOPIC, self._on_plan, COMMAND_QOS)
        self.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS)
        self.create_subscription(String, SAFETY_STATE_TOPIC, self._on_safety_state, LATCHED_QOS)
        self._timer = self.create_timer(1.0 / cfg.control_rate_hz, self._on_timer)  # node clock: sim time under use_sim_time
        self._clock_seen = (-math.inf, time.monotonic())  # (control clock, steady time it last changed)
        self._last_now = -math.inf
        self._last_tick: float | None = None  # control clock of the last control tick
        self._watchdog = self.create_steady_timer(0.2, self._on_clock_watchdog)
        self._publish_state(ExecutorState(0, IDLE, "started"))

    # -- inputs -------------------------------------------------------------------------------
    def _on_plan(self, msg: String) -> None:
        self.health.tick("plan")
        try:
            plan = PlanMessage.from_json(msg.data)
            if not plan.primitives:
                raise ValueError("plan has no primitives")
        except ValueError as exc:
            self.health.drop("malformed_plan", str(exc))
            self.get_logger().error(f"malformed plan ignored: {exc}")
            if self.executor_core.state == EXECUTING:
                self._end(f"malformed plan received ({exc}); stopped")
            return
        core = self.executor_core
        if core.state == EXECUTING:
            core.cancel(f"preempted by plan {plan.plan_id}")
            self._report()
        if plan.error:
            self.get_logger().warning(f"plan {plan.plan_id} carries an error: {plan.error}")
        try:
            self._check_sizes(plan.primitives)
            core.start(plan.plan_id, list(plan.primitives))
        except ValueError as exc:
            self.health.drop("invalid_plan", str(exc))
            self.get_logger().error(f"plan {plan.plan_id} refused: {exc}")
            self._publish_state(ExecutorState(plan.plan_id, ABORTED, f"plan refused: {exc}"))
            return
        self._ended_at = None
        self.get_logger().info(f"plan {plan.plan_id}: {', '.join(p.to_text() for p in plan.primitives)}")
        if self._pose_time is not None and self._now() - self._pose_time > self.config.odom_timeout_s:
            # Odometry looks stale, maybe only because its callback is queued behind this one (after a
            # stall of this node): the next control tick starts the plan and judges the odometry.
            self._report()
        else:
            self._on_timer()  # start now, and report "executing" (or "done" for a bare stop) at once

    def _check_sizes(self, primitives) -> None:
        """ValueError naming the first primitive above the caps (the plan is refused as a whole)."""
        cfg = self.config
        for i, p in enumerate(primitives):
            if p.kind == "forward" and p.value > cfg.max_forward_cm:
                raise ValueError(f"primitive {i} '{p.to_text()}' exceeds max_forward_cm={cfg.max_forward_cm:g}")
            if p.kind in ("turn_left", "turn_right") and p.value > cfg.max_turn_deg:
                raise ValueError(f"primitive {i} '{p.to_text()}' exceeds max_turn_deg={cfg.max_turn_deg:g}")

    def _on_safety_state(self, msg: String) -> None:
        try:
            gate = json.loads(msg.data)
            if not isinstance(gate, dict):
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply (hostile)
            self.health.drop("malformed_safety_state", str(exc))
            return
        self.health.set("safety_state", str(gate.get("state", ""))[:40])
        current = self.executor_core.current
        if not self.config.abort_when_blocked or current is None:
            return
        # An obstacle in the primitive's way, a stop request or the e-stop: the motion will not happen.
        # Not a stale sensor (often a transient hiccup: the primitive resumes when it is fresh again,
        # and its timeout still bounds a dead one).
        state = gate.get("state")
        blocked = state == "estop" or (
            state in ("obstacle", "stopped")
            and (
                (current.kind == "forward" and bool(gate.get("blocked_forward")))
                or (current.kind in ("turn_left", "turn_right") and bool(gate.get("blocked_turn")))
            )
        )
        if blocked:
            reason = str(gate.get("reason") or gate.get("state") or "blocked")[:300]
            self._end(f"{BLOCKED_PREFIX}{reason} (during '{current.to_text()}')")

    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        # Non-finite values are kept as they are: the core aborts on them with the reason.
        self._pose = Pose2D(float(p.x), float(p.y), yaw_from_quaternion(q.x, q.y, q.z, q.w))
        self._pose_time = self._now()
        self._pose_frame = msg.header.frame_id or "odom"
        self.health.tick("odom")

    # -- control ------------------------------------------------------------------------------
    def _on_clock_watchdog(self) -> None:
        """Steady clock: under use_sim_time, a primitive must not wait forever for a clock that stopped."""
        if not self.sim_time_active or self.config.clock_timeout_s <= 0.0:
            return
        steady, now = time.monotonic(), self.control_now_s()
        if now != self._clock_seen[0]:
            self._clock_seen = (now, steady)
        silent = steady - self._clock_seen[1]
        if self.executor_core.state == EXECUTING and silent > self.config.clock_timeout_s:
            self._end(f"use_sim_time: /clock has not advanced for {silent:.1f} s (clock_timeout_s {self.config.clock_timeout_s:g}); stopped")

    def _now(self) -> float:
        """The control clock, never decreasing: a step back under CLOCK_JUMP_BACK_S is held; a larger
        jump (a restarted simulator) makes start times and odometry ages meaningless: stop."""
        now = self.control_now_s()
        last = self._last_now
        if now < last:
            if last - now < CLOCK_JUMP_BACK_S:
                return last
            self._pose, self._pose_time, self._ended_at = None, None, None
            self._last_now = now
            if self.executor_core.state == EXECUTING:
                self._end(f"clock jumped back from {last:.2f} s to {now:.2f} s; stopped")
        self._last_now = now
        return now

    def _on_timer(self) -> None:
        now = self._now()
        gap = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        core, limit = self.executor_core, self.config.odom_timeout_s
        if gap > limit and core.state == EXECUTING and self._pose_time is not None and now - self._pose_time > limit:
            # This node itself did not run for `gap` s (CPU starvation): the odometry that arrived
            # meanwhile is still queued behind this tick (rclpy runs timers, then subscriptions in
            # order; a plan callback before the odometry one). Stale by our own stall is no evidence
            # of a dead odometry source: judge it at the next tick, after the queue has been read.
            self.health.drop("control_loop_stall", f"no control tick for {gap:.2f} s; odometry judged at the next tick")
            self._report()
            return
        cmd = core.update(self._pose, self._pose_time, now)
        if cmd.goal is not None and self.config.mode == "goal_pose":
            self._publish_goal(cmd.goal)
        if cmd.state == EXECUTING:
            if self.config.mode == "velocity":
                self._publish_twist(cmd.linear_x, cmd.angular_z)
        else:
            if self._ended_at is None and self._last_twist != (0.0, 0.0):
                self._ended_at = now  # motion just ended (done, aborted or preempted by a stop)
            if self._ended_at is not None and now - self._ended_at <= self.config.idle_zero_s:
                self._publish_twist(0.0, 0.0)  # the supervisor sees the commander come to rest
        self._report()

    def _end(self, reason: str) -> None:
        self.executor_core.cancel(reason)
        self._publish_twist(0.0, 0.0)
        self._ended_at = self._now()
        self._report()

    def _report(self) -> None:
        core = self.executor_core
        current = (core.plan_id, core.state, core.reason)
        if current != self._reported and core.plan_id is not None:
            self._publish_state(ExecutorState(core.plan_id, core.state, core.reason))
            if core.state == ABORTED:
                self.get_logger().warning(f"plan {core.plan_id} aborted: {core.reason}")
                self.health.drop("aborted", core.reason)
            elif core.state == DONE:
                self.get_logger().info(f"plan {core.plan_id} done: {core.reason}")
        self._reported = current

    def _publish_state(self, state: ExecutorState) -> None:
        self._state_pub.publish(String(data=state.to_json()))
        self.health.set("state", state.state)
        self.health.set("plan_id", state.plan_id)
        self.health.set("reason", state.reason)
        self.health.set_level(self.health.WARN if state.state == ABORTED else self.health.OK, f"{state.state} {state.reason}".strip())

    def _publish_twist(self, v: float, w: float) -> None:
        msg = Twist()
        msg.linear.x, msg.angular.z = float(v), float(w)
        self._cmd_pub.publish(msg)
        self._last_twist = (float(v), float(w))
        self.health.tick("cmd_vel_raw")

    def _publish_goal(self, goal: Pose2D) -> None:
        msg = PoseStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self._pose_frame
        msg.pose.position.x, msg.pose.position.y = goal.x, goal.y
        msg.pose.orientation.z, msg.pose.orientation.w = math.sin(goal.yaw / 2.0), math.cos(goal.yaw / 2.0)
        self._goal_pub.publish(msg)
        self.health.tick("goal_pose")

    def on_config_changed(self, old, new) -> None:
        self.executor_core.set_config(_core_config(new))
        if new.control_rate_hz != old.control_rate_hz:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / new.control_rate_hz, self._on_timer)

    def status_extra(self) -> dict[str, str]:
        core = self.executor_core
        current = core.current
        return {"primitive": current.to_text() if current else "", "mode": self.config.mode}


def main(args=None):
    return run_node(MotionExecutorNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
