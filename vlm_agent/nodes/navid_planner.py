"""navid_planner: instruction + camera video -> NaVid plans on `vlm_agent/plan`, replanning after each.

Subscribes `camera/color/image_raw` (best-effort; any colour encoding), `vlm_agent/instruction`
(std_msgs/String), `odom` (status; the map memory's poses) and `vlm_agent/executor/state`;
publishes `vlm_agent/plan` (std_msgs/String JSON, see `vlm_agent.planners.planner_loop`, latched).
A model with a map memory (`planner.needs_depth`) also subscribes `camera/depth/image_rect_raw`
(16UC1 mm or 32FC1 m, aligned to colour) and `camera/depth/camera_info` (the map's intrinsics).
Names are relative (namespaces, `-r` remaps).

A managed (lifecycle) node, as Nav2's servers are: **configure** loads the model (a load that fails
fails the transition with the reason; the node stays unconfigured) and creates the topics;
**activate** starts planning; **deactivate** cancels the running episode with a stop plan (the
executor stops the robot) and plans nothing more; **cleanup** releases the model. An instruction
received while inactive is kept (the newest one) and starts when the node is activated.

* Frames enter a `FrameHistory` sampled every `history_period_s`; history frames are `observe()`d
  (encoded once) while the robot executes a plan and the worker is idle, so a plan call has at most
  the frames of the last moment left to encode; then `plan()` runs on the newest frame, which must
  have arrived after the executor finished the previous plan (never plan from a frame taken while
  the robot was still moving). The frame's age (`max_frame_age_s`) is judged on the control clock
  (sim time under `use_sim_time`); the model timeout stays on the steady clock (a model runs in
  wall time whatever the simulator does).
* Model calls (reset, observe, plan) run on one worker thread; callbacks only queue work, and
  a guard condition brings results back to the executor thread, so it never blocks on the model.
* A call that raises, or runs longer than `model_timeout_s`, publishes a stop plan carrying the
  error; the episode ends, the node keeps running, and a new instruction starts over (a hung call
  keeps the worker busy: the next episode starts planning when it returns).
* The worker is a **daemon** thread with a bounded queue (`ModelWorker`), not a
  `ThreadPoolExecutor`: concurrent.futures joins its worker threads at interpreter exit, so a hung
  or very slow model call used to keep the process alive after SIGINT until `ros2 launch` escalated
  to SIGKILL. A hung call cannot be interrupted: cleanup waits for it at most `WORKER_EXIT_WAIT_S`,
  then the process exits without it (`run_node`).
* Blocked moves: the executor's abort reason when the safety supervisor blocked a forward move
  reaches the loop, which does not publish the same blocked move again before the robot has turned
  (rule in `planner_loop`); the reason and the rewrites are on /diagnostics.
* Map memory (`needs_depth`): every frame the model sees is paired with the depth image nearest in
  time (`depth_max_dt_s`) and the odometry pose at its stamp (`pose_max_dt_s`) by
  `vlm_agent.sensors.frame_pairing.FramePairing`; a plan waits up to `pairing_wait_s` for the
  current frame's partners. A history frame without them is not observed (a `no_depth_or_pose`
  drop with the reason); a current frame without them (depth stopped, odometry missing or
  non-finite) is a stop plan saying what is missing. Camera mounting: `camera_height_m`,
  `camera_pitch_rad`, `camera_x_m` (defaults: the simulator's).
* Unparsable output is a stop (the parser's error is in the plan); a bad instruction is logged and
  answered with a stop plan, so nothing moves.
The loop logic is `vlm_agent.planners.planner_loop.PlannerLoop` (plain Python, unit-tested).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import queue
import time
from dataclasses import dataclass

from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from vlm_agent.config import param
from vlm_agent.nodes.base import (
    COMMAND_QOS, INSTRUCTION_TOPIC, LATCHED_QOS, SENSOR_QOS, WORKER_EXIT_WAIT_S, InstructionInputMixin, ManagedAgentNode, ModelWorker, run_node,
)
from vlm_agent.planners.navid import NavidPlannerConfig
from vlm_agent.planners.navid_prompt import validate_instruction
from vlm_agent.planners.planner_loop import FINISHED, IDLE, READY, ExecutorState, PlanMessage, PlannerLoop, PlanRequest
from vlm_agent.sensors.frame_history import FrameHistory
from vlm_agent.sensors.frame_pairing import FramePairing, PairingError

NODE_CLASS = "NavidPlannerNode"


@dataclass
class NavidPlannerNodeConfig(NavidPlannerConfig):
    """NavidPlannerConfig (backend, model, grammar limits, model_timeout_s) plus the node's topics, history and loop limits."""

    history_period_s: float = param(0.5, "minimum spacing of history frames, seconds", min=0.0, max=60.0)
    history_max_frames: int = param(64, "most frames kept in the node's history", min=2, max=10000)
    max_frame_age_s: float = param(
        1.0, "plan only from a frame that arrived at most this long ago (sim time under use_sim_time)", min=0.05, max=60.0
    )
    # "planned" is what the models were trained and measured on in-process (`vlm-agent eval`): the
    # history is the frame of every plan, one per executed primitive; "sampled" adds the frames seen
    # while the robot moved, every history_period_s.
    history_frames: str = param("sampled", "history fed to the model: sampled (frames every history_period_s while moving, plus each plan's frame) "
                                "or planned (only the frame each plan was made from, as in training)", choices=("sampled", "planned"))
    max_steps: int = param(100, "plans per episode before a forced stop", min=1, max=100000)
    max_consecutive_aborts: int = param(3, "aborted plans in a row before the episode ends", min=1, max=1000)
    # Map-memory models only (needs_depth): each frame's depth image and pose.
    depth_max_dt_s: float = param(0.05, "map memory: pair a depth image with a colour frame only when their stamps differ by at most this (s)", min=0.0, max=1.0)
    pose_max_dt_s: float = param(0.1, "map memory: use the odometry pose nearest the frame's stamp only within this (s)", min=0.0, max=2.0)
    pairing_wait_s: float = param(0.2, "map memory: wait this long (wall time) for the current frame's depth image and pose before planning", min=0.0, max=5.0)


# Relative names: they follow the node's namespace and `-r` remaps.
CAMERA_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_rect_raw"
DEPTH_INFO_TOPIC = "camera/depth/camera_info"
ODOM_TOPIC = "odom"
PLAN_TOPIC = "vlm_agent/plan"
EXECUTOR_STATE_TOPIC = "vlm_agent/executor/state"


def _planner_config(config: NavidPlannerNodeConfig) -> NavidPlannerConfig:
    return NavidPlannerConfig(**{k: getattr(config, k) for k in NavidPlannerConfig.__dataclass_fields__})


class NavidPlannerNode(InstructionInputMixin, ManagedAgentNode):
    """Args (besides rclpy's): `planner`, an object with NavidPlanner's reset/observe/plan, used instead
    of building one from the parameters in configure (tests, other model families)."""

    def __init__(self, planner=None, **kwargs):
        super().__init__("navid_planner", NavidPlannerNodeConfig, **kwargs)
        self._injected_planner = planner
        self._planner = None
        self._model_error: str | None = None
        self._worker = None
        self._jobs: list[concurrent.futures.Future] = []
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._entities: list = []
        self._pending_instruction: str | None = None
        self.loop = PlannerLoop(max_steps=self.config.max_steps, max_consecutive_aborts=self.config.max_consecutive_aborts)
        self.history = FrameHistory(self.config.history_max_frames, self.config.history_period_s)
        self._pose = None
        self._pairing: FramePairing | None = None  # map-memory models only (needs_depth)
        self._intrinsics = None  # the depth camera's, from camera_info; applied on the worker thread
        self._applied_intrinsics = None

    # -- lifecycle ------------------------------------------------------------------------------
    def configure_node(self) -> None:
        cfg = self.config
        self.loop = PlannerLoop(max_steps=cfg.max_steps, max_consecutive_aborts=cfg.max_consecutive_aborts)
        self.history = FrameHistory(cfg.history_max_frames, cfg.history_period_s)
        self._model_error = None
        self._call_started: float | None = None
        self._last_frame_arrival = -math.inf  # steady clock: arrival order against _ready_since
        self._last_frame_age_ref = -math.inf  # control clock (sim time under use_sim_time): the frame's age
        self._ready_since = -math.inf
        self._last_observed_stamp = -math.inf
        self._episode_token = 0
        self._last_instruction = None
        self._pending_instruction = None
        self._results = queue.SimpleQueue()  # nothing from a worker of an earlier configuration
        if self._injected_planner is not None:
            self._planner = self._injected_planner
        else:
            self._planner = None
            self._load_model()  # raises: configure fails with the reason
        # Injected planners may lack needs_depth (and take the image only): they get the image only.
        needs_depth = bool(getattr(self._planner, "needs_depth", False))
        self._pairing = FramePairing(cfg.depth_max_dt_s, cfg.pose_max_dt_s, cfg.pairing_wait_s) if needs_depth else None
        self._intrinsics = self._applied_intrinsics = None
        self._history_resets = self.history.resets
        self._pair_wait_since: float | None = None
        self._worker = ModelWorker("navid_model")
        self._plan_pub = self.create_publisher(String, PLAN_TOPIC, LATCHED_QOS)
        subs = [
            self.create_subscription(Image, CAMERA_TOPIC, self._on_image, SENSOR_QOS),
            # A volatile subscription matches every publisher (`ros2 topic pub`, scripts, the
            # simulator). See `_update_latched_subscription` for instructions latched earlier.
            self.create_subscription(String, INSTRUCTION_TOPIC, lambda m: self._on_instruction(m, "volatile"), COMMAND_QOS),
            self.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS),
            # Volatile: matches the executor's latched publisher and any default-QoS publisher.
            self.create_subscription(String, EXECUTOR_STATE_TOPIC, self._on_executor_state, COMMAND_QOS),
        ]
        if needs_depth:  # the map memory: depth aligned to colour, and its intrinsics
            subs.append(self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, SENSOR_QOS))
            subs.append(self.create_subscription(CameraInfo, DEPTH_INFO_TOPIC, self._on_depth_info, SENSOR_QOS))
            self.get_logger().info(f"the model reads a map memory: subscribing {DEPTH_TOPIC} and {DEPTH_INFO_TOPIC}")
        # Event-driven: a finished model call, a new frame while a plan is wanted, and an executor
        # report run `_tick` at once (the guard condition wakes the executor from the worker thread);
        # the 20 Hz timer only enforces the model timeout. Measured in benchmarks/ros_latency_results.md.
        self._wake = self.create_guard_condition(self._tick)
        self._tick_timer = self.create_steady_timer(0.05, self._tick)
        self._latched_sub = None
        self._graph_timer = self.create_steady_timer(1.0, self._update_latched_subscription)
        self._entities = [("publisher", self._plan_pub)] + [("subscription", s) for s in subs] + [
            ("guard_condition", self._wake), ("timer", self._tick_timer), ("timer", self._graph_timer)
        ]
        self._update_latched_subscription()

    def activate_node(self) -> None:
        self._ready_since = time.monotonic()
        if self._pending_instruction is not None:
            text, self._pending_instruction = self._pending_instruction, None
            self._start_episode(text)

    def deactivate_node(self) -> None:
        self._pending_instruction = None
        if self.loop.state != IDLE:
            # A stop plan preempts whatever the executor is running (also the last plan of an
            # episode that already ended, which may still be moving the robot).
            self.get_logger().info("deactivated: publishing a stop plan")
            self._fail_episode("planner deactivated", log=False)
        self._call_started = None

    def cleanup_node(self) -> None:
        for kind, entity in reversed(self._entities):
            getattr(self, f"destroy_{kind}")(entity)
        self._entities = []
        self._drop_latched_subscription()
        if self._worker is not None:
            # A hung model call cannot be interrupted: wait a bounded time only.
            self._worker.shutdown(wait=True, cancel_futures=True, timeout=WORKER_EXIT_WAIT_S)
            self._worker = None
        self._jobs = []
        self._planner = None
        self._pairing = None

    def _load_model(self):
        from vlm_agent.planners.navid import NavidPlanner

        t0 = time.perf_counter()
        try:
            self._planner = NavidPlanner(_planner_config(self.config))
        except Exception as exc:
            self._model_error = f"{type(exc).__name__}: {exc}"
            self.health.set_level(self.health.ERROR, f"model unavailable: {self._model_error}")
            raise RuntimeError(f"could not load the model ({self.config.backend}): {self._model_error}") from exc
        elapsed = time.perf_counter() - t0
        self.health.set("model_load_s", f"{elapsed:.2f}")
        self.health.set_level(self.health.OK, "model loaded")
        self.get_logger().info(f"model loaded in {elapsed:.2f} s ({self.config.backend})")

    def _reset_job(self, token: int, instruction: str):
        self._require_planner()
        self._planner.reset(instruction)
        return ("reset", token, instruction)

    def _observe_job(self, token: int, frames):
        """`frames`: (TimedFrame, (depth, pose) or None) pairs; None: the planner takes the image only."""
        self._require_planner()
        if token == self._episode_token:  # not for an episode that has been replaced meanwhile
            self._apply_intrinsics()
            for frame, pair in frames:
                self._observe(frame, pair)
        return ("observe", token)

    def _plan_job(self, request: PlanRequest, pending, current):
        self._require_planner()
        self._apply_intrinsics()
        for frame, pair in pending:
            self._observe(frame, pair)
        frame, pair = current
        # The planner adds a frame to its map once: plan, then observe with the same depth and pose.
        result = self._planner.plan(frame.image) if pair is None else self._planner.plan(frame.image, *pair)
        self._observe(frame, pair)
        return ("plan", request, result, frame.stamp_s)

    def _observe(self, frame, pair) -> None:
        if pair is None:
            self._planner.observe(frame.image)  # a model without a map (or an injected planner): the image only
        else:
            self._planner.observe(frame.image, *pair)

    def _apply_intrinsics(self) -> None:
        """Worker thread: hand the newest depth camera_info to the planner (its lock is held during
        model calls, so the executor thread never calls it)."""
        intrinsics = self._intrinsics
        if intrinsics is not None and intrinsics is not self._applied_intrinsics and hasattr(self._planner, "set_intrinsics"):
            self._planner.set_intrinsics(intrinsics)
            self._applied_intrinsics = intrinsics

    def _require_planner(self):
        if self._planner is None:
            raise RuntimeError(f"model unavailable: {self._model_error or 'not loaded'}")

    def _submit(self, fn, *args, tag=None):
        try:
            future = self._worker.submit(fn, *args)
        except (queue.Full, RuntimeError) as exc:
            # A hung model with callers piling up: this call fails at once (a stop plan with the reason).
            future = concurrent.futures.Future()
            future.set_exception(RuntimeError(f"model worker busy, call not queued: {exc or 'queue full'}"))
        self._jobs.append(future)
        future.add_done_callback(lambda f: self._job_done(tag, f))
        return future

    def _job_done(self, tag, future) -> None:
        # Worker thread: hand the result to the executor thread. After cleanup the guard condition
        # is gone; the result is then simply dropped.
        self._results.put((tag, future))
        try:
            self._wake.trigger()
        except Exception:  # noqa: BLE001 (destroyed guard condition or context during cleanup/shutdown)
            pass

    # -- callbacks (executor thread; never block) ---------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self.health.tick("camera")
        if self.history.add_message(msg):
            self._last_frame_arrival = time.monotonic()
            self._last_frame_age_ref = self.control_now_s()
            if self.history.resets != self._history_resets:
                # A time jump or a new resolution cleared the history: its frames are all new.
                self._history_resets = self.history.resets
                self._last_observed_stamp = -math.inf
            if self._pairing is not None:
                self._pairing.add_frame(self.history.latest().stamp_s, self._last_frame_arrival)
                # Only frames still to be observed keep their depth image.
                self._pairing.retain(s for s in self.history.stamps() if s > self._last_observed_stamp)
            if self.loop.state == READY:
                self._tick()  # plan from this frame now, not at the next timer tick
        else:
            self.health.drop("frame", self.history.drops.last_reason)

    def _on_odom(self, msg: Odometry) -> None:
        self._pose = msg.pose.pose
        self.health.tick("odom")
        if self._pairing is None:
            return
        from vlm_agent.sensors.frames import odometry_to_state

        try:
            state = odometry_to_state(msg)  # raises for NaN/inf or a bad quaternion: never a map pose
            self._pairing.add_pose(state.stamp_s, state.x, state.y, state.yaw)
        except ValueError as exc:
            self._pairing.reject_pose(str(exc))
            self.health.drop("odom", str(exc))
            return
        if self.loop.state == READY:
            self._tick()  # the current frame may be waiting for this pose

    def _on_depth(self, msg: Image) -> None:
        from vlm_agent.sensors.frames import depth_message_to_metres, stamp_to_seconds

        self.health.tick("depth")
        if self._pairing is None:
            return
        try:
            self._pairing.add_depth(stamp_to_seconds(msg.header.stamp), depth_message_to_metres(msg))
        except ValueError as exc:
            self.health.drop("depth", str(exc))
            return
        if self.loop.state == READY:
            self._tick()  # the current frame may be waiting for this depth image

    def _on_depth_info(self, msg: CameraInfo) -> None:
        from vlm_agent.sensors.camera_info import camera_info_to_intrinsics

        try:
            intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as exc:
            self.health.drop("depth_camera_info", str(exc))
            return
        if intrinsics != self._intrinsics:
            self._intrinsics = intrinsics  # applied by the next model call (worker thread)

    def _on_instruction(self, msg: String, via: str = "volatile") -> None:
        if self._instruction_seen_twice(msg.data, via):
            return
        self.health.tick("instruction")
        if not self.is_active:
            self._pending_instruction = msg.data
            self.get_logger().info(f"{self.lifecycle_state}: instruction kept until activation")
            return
        self._start_episode(msg.data)

    def _start_episode(self, data: str) -> None:
        try:
            text = validate_instruction(data, self.config.max_instruction_chars)
        except ValueError as exc:
            self._reject(data if isinstance(data, str) else "", str(exc))
            return
        self._episode_token += 1
        self.get_logger().info(f"instruction (episode {self.loop.episode + 1}): {text!r}")
        self.history.clear()
        if self._pairing is not None:
            self._pairing.clear()
        self._last_observed_stamp = -math.inf
        self._ready_since = time.monotonic()
        self.loop.start_episode(text)
        self._submit(self._reset_job, self._episode_token, text, tag="reset")

    def _on_executor_state(self, msg: String) -> None:
        try:
            state = ExecutorState.from_json(msg.data)
        except ValueError as exc:
            self.health.drop("executor_state", str(exc))
            return
        before, blocked_before = self.loop.state, self.loop.blocked_reason
        self.loop.on_executor_state(state)
        if self.loop.blocked_reason and self.loop.blocked_reason != blocked_before:
            self.get_logger().warning(f"forward blocked by the safety supervisor: {self.loop.blocked_reason}; turning before moving forward again")
        if self.loop.state != before:
            self._ready_since = time.monotonic()  # the next plan needs a frame from after this moment
            self._tick()
            if self.loop.state == FINISHED:
                self.get_logger().info(f"episode finished: {self.loop.finish_reason}")

    # -- the tick: results, timeouts, new requests ---------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        while not self._results.empty():
            tag, future = self._results.get()
            self._handle(tag, future)
        self._jobs = [j for j in self._jobs if not j.done()]
        if not self.is_active:
            return  # results are drained (late ones discarded), nothing new is planned
        request = self.loop.in_flight
        if request is not None and self._call_started is not None and now - self._call_started > self.config.model_timeout_s:
            elapsed = now - self._call_started
            self._call_started = None
            self.health.drop("model_timeout", f"{elapsed:.1f} s")
            self._publish(self.loop.on_failure(request, f"model timed out after {elapsed:.1f} s (limit {self.config.model_timeout_s:g} s)", elapsed))
        limit_plan = self.loop.step_limit_plan()
        if limit_plan is not None:
            self._publish(limit_plan)
        if self._jobs:  # the worker is busy (loading, resetting, or a call that timed out)
            return
        latest = self.history.latest()
        fresh = (
            latest is not None
            and self._last_frame_arrival > self._ready_since
            and self.control_now_s() - self._last_frame_age_ref <= self.config.max_frame_age_s
        )
        if not fresh:
            self._pair_wait_since = None
        elif self._pairing is not None and not self._pairing.ready(latest.stamp_s, now):
            # Wait for the frame's depth image and pose, at most pairing_wait_s from the first fresh
            # frame (a newer frame replaces the one waited for; a stream that stopped or lags more
            # than depth_max_dt_s / pose_max_dt_s then gives a stop plan saying so).
            if self._pair_wait_since is None:
                self._pair_wait_since = now
            fresh = now - self._pair_wait_since >= self.config.pairing_wait_s
        request = self.loop.next_request(have_frame=fresh)
        if request is not None or self.loop.state != READY:
            self._pair_wait_since = None
        pending = [f for f in self.history.frames()[:-1] if f.stamp_s > self._last_observed_stamp]
        if self.config.history_frames == "planned":
            pending = []  # only plan frames become history (observed by the plan job itself)
        if request is None:
            if self._pairing is not None:
                # History frames in order, up to the first whose depth or pose may still come.
                ready = [self._pairing.ready(f.stamp_s, now) for f in pending]
                pending = pending[: ready.index(False)] if False in ready else pending
            if pending and self.loop.state not in (IDLE, FINISHED) and self._planner is not None:
                # Encode history while the robot moves, off the path from frame to plan. The worker
                # runs jobs in order, so the next plan call sees these frames first.
                self._last_observed_stamp = pending[-1].stamp_s
                self._submit(self._observe_job, self._episode_token, self._paired(pending), tag="observe")
            return
        current_pair = None
        if self._pairing is not None:
            try:
                current_pair = self._pairing.take(latest.stamp_s)
            except PairingError as exc:
                # Never plan (or move) from a frame the map cannot place: a stop plan with the reason.
                self.health.drop("no_depth_or_pose", str(exc))
                self._publish(self.loop.on_failure(request, f"map memory: {exc}"))
                return
        self._call_started = now
        if self.config.history_frames == "planned":
            self._last_observed_stamp = latest.stamp_s  # older frames will never be observed: their depth can go
        self._submit(self._plan_job, request, self._paired(pending), (latest, current_pair), tag="plan")

    def _paired(self, frames) -> list:
        """(frame, (depth, pose) or None) for each history frame; for a map-memory model, frames
        without a depth image or pose are left out (counted as `no_depth_or_pose` drops)."""
        if self._pairing is None:
            return [(f, None) for f in frames]
        out = []
        for f in frames:
            try:
                out.append((f, self._pairing.take(f.stamp_s)))
            except PairingError as exc:
                self.health.drop("no_depth_or_pose", f"history frame not observed: {exc}")
        return out

    def _handle(self, tag, future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if tag == "reset":
            if exc is not None:
                if isinstance(exc, ValueError):
                    self._reject(self.loop.instruction, str(exc))
                else:
                    self._fail_episode(f"model reset failed: {type(exc).__name__}: {exc}")
            return
        if tag == "observe":
            if exc is not None and self.loop.state not in (IDLE, FINISHED):
                self.health.drop("model_error", f"observe: {type(exc).__name__}: {exc}")
                self._fail_episode(f"model observe failed: {type(exc).__name__}: {exc}")
            return
        request = self.loop.in_flight
        self._call_started = None
        if exc is not None:
            # The request this job served is the one in flight (one call at a time), unless it timed out.
            if request is not None:
                self.health.drop("model_error", f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"model call failed, stopping: {type(exc).__name__}: {exc}")
                self._publish(self.loop.on_failure(request, f"model error: {type(exc).__name__}: {exc}"))
            return
        _, job_request, result, stamp = future.result()
        self._last_observed_stamp = max(self._last_observed_stamp, stamp)
        self.health.latency("model", result.latency_s)
        if getattr(result, "source", "model") != "model":
            self.get_logger().info(f"plan {job_request.plan_id}: {result.recovery}")
        elif getattr(result, "recovery", None):
            self.get_logger().info(f"plan {job_request.plan_id}: {result.recovery}; the model's answer was {result.raw_text!r}")
        try:
            plan = self.loop.on_result(job_request, result.raw_text, result.primitives, result.latency_s, result.error)
        except (TypeError, ValueError, AttributeError) as err:  # a planner object that broke its contract
            plan = self.loop.on_failure(job_request, f"bad planner result: {err}")
        if plan is None:
            self.get_logger().info(f"discarded a late result for plan {job_request.plan_id}")
        else:
            plan = dataclasses.replace(plan, frame_stamp_s=stamp)
        self._publish(plan)

    # -- helpers ------------------------------------------------------------------------------
    def _reject(self, instruction: str, reason: str) -> None:
        self.health.drop("bad_instruction", reason)
        self.get_logger().error(f"instruction rejected, robot stays stopped: {reason}")
        self._publish(self.loop.reject_instruction(instruction, reason))

    def _fail_episode(self, reason: str, log: bool = True) -> None:
        if log:
            self.get_logger().error(reason)
        self.loop.cancel(reason)
        self.loop.last_plan_id += 1
        from vlm_agent.actions import NavPrimitive

        self._publish(PlanMessage(self.loop.last_plan_id, self.loop.instruction, self.loop.step, "", (NavPrimitive.stop(),), 0.0, reason))

    def _publish(self, plan: PlanMessage | None) -> None:
        if plan is None:
            return
        if self.loop.rewrites != getattr(self, "_rewrites_logged", 0):
            self._rewrites_logged = self.loop.rewrites
            self.get_logger().info(f"plan {plan.plan_id}: model asked to move forward while blocked ({plan.raw_text[:80]!r}); rewritten to turn")
        self._plan_pub.publish(String(data=plan.to_json()))
        self.health.tick("plan")
        self.health.set("last_plan", ", ".join(p.to_text() for p in plan.primitives))
        self.health.set("last_raw_text", plan.raw_text[:200])
        if plan.error:
            self.health.set_level(self.health.WARN, f"stop plan: {plan.error}")
            self.get_logger().warning(f"plan {plan.plan_id} is a stop: {plan.error}")
        else:
            self.health.set_level(self.health.OK, "ok")
            self.get_logger().info(
                f"plan {plan.plan_id} step {plan.step}: {', '.join(p.to_text() for p in plan.primitives)} ({plan.latency_s * 1e3:.0f} ms)"
            )

    def status_extra(self) -> dict[str, str]:
        values = {
            "loop_state": self.loop.state,
            "episode": str(self.loop.episode),
            "step": str(self.loop.step),
            "instruction": self.loop.instruction[:120],
            "finish_reason": self.loop.finish_reason,
            "blocked_reason": self.loop.blocked_reason,
            "blocked_rewrites": str(self.loop.rewrites),
            "history_frames": str(len(self.history)),
            "model": "loaded" if self._planner is not None else (self._model_error or "loading"),
        }
        if self._pairing is not None:
            ego_map = getattr(self._planner, "ego_map", None)
            values["map_memory"] = f"{ego_map.updates} updates" if ego_map is not None else "empty"
            values["depth_intrinsics"] = "camera_info" if self._intrinsics is not None else "camera_vertical_fov_deg"
        encoder = getattr(getattr(self._planner, "backend", None), "encoder", None)
        if encoder is not None:
            values["vision_encoder"] = f"{encoder.backend}/{encoder.device}/{encoder.precision}"
            if encoder.fallback_reasons:
                values["vision_encoder_fallback"] = "; ".join(encoder.fallback_reasons)[:300]
        if self._pose is not None:
            values["pose"] = f"{self._pose.position.x:.2f},{self._pose.position.y:.2f}"
        return values

    def destroy_node(self):
        if self._worker is not None:
            # A hung model call cannot be interrupted: wait a bounded time only.
            self._worker.shutdown(wait=True, cancel_futures=True, timeout=WORKER_EXIT_WAIT_S)
        return super().destroy_node()


def main(args=None):
    return run_node(NavidPlannerNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
