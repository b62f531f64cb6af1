"""task_planner: instruction + camera -> a manipulation task run closed-loop through the skills.

The PaLM-E-style step planner or the Octopus-style code planner (`style`), on any backend
(`backend`: builtin | transformers | remote through `planners.manip_backends.make_manip_backend`,
or `sim_oracle`: the simulator's privileged oracle backends, an upper bound for checking the graph),
drives the robot through the ROS skill adapter (`nodes/ros_skills.RosSkills`): navigation as plans
to the motion executor on `vlm_agent/plan` (whose `raw_text` names the skill call; the executor's
commands pass the safety supervisor, the only publisher of `cmd_vel`), the arm on
`arm_controller/joint_trajectory`, the gripper on `gripper/command`. Where objects are comes from
`perception`: `ground_truth` (the embedded simulator's episode through `SimGroundTruth`, labelled an
upper bound; its episode id from the `mujoco_sim/result` service at every instruction) or
`segmentation` (the segmentation node's 3D target, issue 13).

Subscribes `vlm_agent/instruction` (std_msgs/String; a transient-local subscription is added while a
latched publisher exists, as `navid_planner` does), `camera/color/image_raw` (best-effort, any colour
encoding; the newest frame is the loops' image), and what the adapter needs (`odom`, `joint_states`,
`vlm_agent/executor/state`). Publishes task progress on `vlm_agent/task/progress` (std_msgs/String
JSON, reliable, transient-local, 10 deep): one message per event, `{"episode", "style", "backend",
"instruction", "event": started|model|skill|finished|rejected, "state": running|succeeded|failed|
cancelled|rejected, ...}` (`model`: the raw reply, truncated; `skill`: the call, success, feedback;
`finished`: the reason), and `/diagnostics`. Progress is not sent on `vlm_agent/plan`: the executor
reads every message there as a motion plan.

A managed (lifecycle) node like `navid_planner`: **configure** builds the backend (a failure fails
the transition with the reason) and the adapter; **activate** accepts instructions (one received
while inactive is kept and started then); **deactivate** cancels the running task and stops the
robot; **cleanup** releases them. The episode runs on one daemon worker thread (`ModelWorker`):
callbacks only record and queue, so the executor never blocks on a model or a skill.

Ends with a logged reason and a stopped robot (a stop plan) on: an invalid instruction (too long,
control characters; `validate_instruction`) before anything moves; a backend call slower than
`model_timeout_s` (the call is abandoned: a hung model cannot be interrupted, the episode ends);
`max_backend_errors` failed backend calls in a row (a crashed model process, a dead server); the
loops' budgets (unparsable or useless output is feedback until then); `episode_timeout_s`; a new
instruction (it replaces the running one); deactivation.
"""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import dataclass

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from vlm_agent.config import param
from vlm_agent.nodes.base import COMMAND_QOS, INSTRUCTION_TOPIC, LATCHED_QOS, SENSOR_QOS, WORKER_EXIT_WAIT_S, InstructionInputMixin, ManagedAgentNode, ModelWorker, run_node
from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig, SegmentationPerception, final_approach_kwargs
from vlm_agent.planners.navid_prompt import validate_instruction

NODE_CLASS = "TaskPlannerNode"

CAMERA_TOPIC = "camera/color/image_raw"
PROGRESS_TOPIC = "vlm_agent/task/progress"
PROGRESS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
STYLES = ("palme", "octopus")
BACKENDS = ("builtin", "transformers", "remote", "sim_oracle")


@dataclass
class TaskPlannerNodeConfig(RosSkillsConfig):
    """RosSkillsConfig (how the skills move the robot) plus the planner, its backend and its budgets."""

    style: str = param("palme", "palme: next skill step(s) per call; octopus: a skill program per round", choices=STYLES, read_only=True)
    backend: str = param("builtin", "builtin | transformers | remote (planners.manip_backends); sim_oracle: the simulator's "
                                    "privileged oracle (an upper bound, needs perception ground_truth)", choices=BACKENDS, read_only=True)
    model_dir: str = param("", "model directory (builtin: a PaLM-E / Octopus family model, empty = the shipped checkpoints/<style>_tiny; transformers: any image-text-to-text "
                               "model); required by those backends", read_only=True)
    remote_url: str = param("", "OpenAI-compatible server (remote backend)", read_only=True)
    remote_model: str = param("", "model name on the server (remote backend)", read_only=True)
    device: str = param("cpu", "torch device of local models", read_only=True)
    perception: str = param("ground_truth", "ground_truth: the embedded simulator's episode (an upper bound); segmentation: "
                                            "the segmentation node's 3D target", choices=("ground_truth", "segmentation"), read_only=True)
    sim_result_service: str = param("mujoco_sim/result", "ground_truth: the simulator's result service (its episode id)", read_only=True)
    camera_width: int = param(320, "ground_truth: the simulator's camera width (px; look_around's field of view)", min=16, max=4096, read_only=True)
    camera_height: int = param(240, "ground_truth: the simulator's camera height (px)", min=16, max=4096, read_only=True)
    model_timeout_s: float = param(60.0, "a backend call longer than this ends the episode (wall clock)", min=0.1, max=3600.0)
    max_backend_errors: int = param(3, "failed backend calls in a row that end the episode", min=1, max=100)
    episode_timeout_s: float = param(900.0, "a task running longer than this is cancelled (wall clock)", min=1.0, max=86400.0)
    max_instruction_chars: int = param(500, "longer instructions are rejected", min=1, max=100000)
    image_timeout_s: float = param(2.0, "wait this long for a camera frame before a model call (then none is sent)", min=0.0, max=60.0)
    palme_max_steps: int = param(20, "palme: executed skill calls per episode", min=1, max=1000)
    palme_max_model_calls: int = param(30, "palme: backend calls per episode", min=1, max=1000)
    palme_steps_per_call: int = param(1, "palme: plan steps executed before asking again", min=1, max=16)
    octopus_max_rounds: int = param(3, "octopus: rounds per episode", min=1, max=100)
    octopus_max_calls: int = param(50, "octopus: skill calls per program", min=1, max=1000)
    octopus_program_timeout_s: float = param(600.0, "octopus: wall time per program", min=1.0, max=86400.0)
    rlef_dataset_dir: str = param("", "octopus: append every round to this RLEF dataset directory (empty = off)", read_only=True)


class EpisodeAborted(RuntimeError):
    """The episode was ended from outside the loop (timeout, errors, cancel); the reason is the message."""


class GuardedBackend:
    """A backend call with a wall-clock limit, run on its own daemon thread; counts failures in a row.

    After `timeout_s`, or `max_errors` failures in a row, or `abort(reason)`, it sets `aborted` (the
    reason) and every later call raises EpisodeAborted at once, so the loops run out their budgets
    immediately. A timed-out call keeps running on its thread (it cannot be interrupted); its result
    is dropped. `on_reply(text, latency_s)` is told every reply.
    """

    def __init__(self, backend, timeout_s: float, max_errors: int, on_reply=None):
        self.backend = backend
        self.timeout_s = timeout_s
        self.max_errors = max_errors
        self.on_reply = on_reply
        self.aborted: str | None = None
        self.errors_in_row = 0
        self.calls = 0

    def abort(self, reason: str) -> None:
        if self.aborted is None:
            self.aborted = reason

    def __call__(self, prompt, images):
        if self.aborted is not None:
            raise EpisodeAborted(self.aborted)
        self.calls += 1
        box: dict = {}

        def run():
            try:
                box["reply"] = self.backend(prompt, images)
            except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                box["error"] = exc

        t0 = time.monotonic()
        thread = threading.Thread(target=run, name="task_planner_model_call", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        latency = time.monotonic() - t0
        if thread.is_alive():
            self.abort(f"model timed out after {latency:.1f} s (limit {self.timeout_s:g} s)")
            raise EpisodeAborted(self.aborted)
        if self.aborted is not None:  # aborted from outside while the call ran
            raise EpisodeAborted(self.aborted)
        if "error" in box:
            self.errors_in_row += 1
            exc = box["error"]
            if self.errors_in_row >= self.max_errors:
                self.abort(f"{self.errors_in_row} backend calls failed in a row (last: {type(exc).__name__}: {exc})")
            raise exc
        self.errors_in_row = 0
        reply = box.get("reply")
        if not isinstance(reply, str):
            reply = "" if reply is None else repr(reply)[:2000]
        if self.on_reply is not None:
            self.on_reply(reply, latency)
        return reply


def make_task_backend(config: TaskPlannerNodeConfig, truth=None):
    """The model backend `(prompt, images) -> text` for `config.style` / `config.backend`.

    `sim_oracle` uses the privileged oracle backends (`evaluation/manip_planners.py`) on the
    ground-truth mirror `truth`; the model kinds go through `planners.manip_backends`.
    """
    if config.backend == "sim_oracle":
        if truth is None:
            raise ValueError("backend sim_oracle needs perception ground_truth (the simulator's world)")
        from vlm_agent.evaluation.manip_planners import ORACLE_BACKENDS

        return ORACLE_BACKENDS[config.style](truth.env)
    from vlm_agent.models.registry import default_checkpoint_dir
    from vlm_agent.planners.manip_backends import make_manip_backend

    model_dir = config.model_dir or (default_checkpoint_dir(config.style) if config.backend == "builtin" else None)
    return make_manip_backend(config.style, config.backend, model_dir=model_dir, base_url=config.remote_url or None,
                              remote_model=config.remote_model, device=config.device)


def _skills_config(config: TaskPlannerNodeConfig) -> RosSkillsConfig:
    return RosSkillsConfig(**{k: getattr(config, k) for k in RosSkillsConfig.__dataclass_fields__})


class TaskPlannerNode(InstructionInputMixin, ManagedAgentNode):
    """Args (besides rclpy's): `backend`, a callable `(prompt, images) -> text` used instead of
    building one in configure (tests, other model families)."""

    def __init__(self, backend=None, **kwargs):
        super().__init__("task_planner", TaskPlannerNodeConfig, **kwargs)
        self._injected_backend = backend
        self._backend = None
        self._truth = None
        self.skills: RosSkills | None = None
        self._worker: ModelWorker | None = None
        self._entities: list = []
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._pending_instruction: str | None = None
        self._last_instruction = None
        self._image = None  # (msg, steady arrival)
        self._image_lock = threading.Lock()
        self._episode = 0
        self._running: dict | None = None  # {"episode", "instruction", "guard", "started", "future"}
        self._queued: str | None = None
        self.finish_reason = ""
        self.state = "idle"
        self.results: list[dict] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def configure_node(self) -> None:
        cfg = self.config
        self._events = queue.SimpleQueue()
        self._pending_instruction = None
        self._running, self._queued = None, None
        if cfg.perception == "ground_truth":
            from vlm_agent.nodes.sim_ground_truth import SimGroundTruth

            self._truth = SimGroundTruth(cfg.camera_width, cfg.camera_height)
            perception = self._truth
            navigator = self._truth.oracle_navigator(**final_approach_kwargs(cfg))
        else:
            self._truth = None
            perception = SegmentationPerception(self, _skills_config(cfg))
            navigator = None
        try:
            self._backend = self._injected_backend if self._injected_backend is not None else make_task_backend(cfg, self._truth)
        except Exception as exc:
            self.health.set_level(self.health.ERROR, f"backend unavailable: {type(exc).__name__}: {exc}")
            if self._truth is not None:
                self._truth.close()
                self._truth = None
            raise RuntimeError(f"could not build the {cfg.style} backend ({cfg.backend}): {type(exc).__name__}: {exc}") from exc
        self.skills = RosSkills(self, perception, _skills_config(cfg), navigator=navigator)
        self.skills.listeners.append(self._on_skill_result)
        self._worker = ModelWorker("task_planner_episode", max_queued=2)
        self._progress_pub = self.create_publisher(String, PROGRESS_TOPIC, PROGRESS_QOS)
        self._result_client = self.create_client(Trigger, cfg.sim_result_service) if self._truth is not None else None
        subs = [
            self.create_subscription(String, INSTRUCTION_TOPIC, lambda m: self._on_instruction(m, "volatile"), COMMAND_QOS),
            self.create_subscription(Image, CAMERA_TOPIC, self._on_image, SENSOR_QOS),
        ]
        self._wake = self.create_guard_condition(self._drain)
        self._tick_timer = self.create_steady_timer(0.2, self._tick)
        self._graph_timer = self.create_steady_timer(1.0, self._update_latched_subscription)
        self._entities = [("publisher", self._progress_pub)] + [("subscription", s) for s in subs] + [
            ("guard_condition", self._wake), ("timer", self._tick_timer), ("timer", self._graph_timer)]
        if self._result_client is not None:
            self._entities.append(("client", self._result_client))
        self._latched_sub = None
        self._update_latched_subscription()
        self.health.set_level(self.health.OK, "configured")

    def activate_node(self) -> None:
        if self._pending_instruction is not None:
            text, self._pending_instruction = self._pending_instruction, None
            self._start(text)

    def deactivate_node(self) -> None:
        self._pending_instruction = None
        self._queued = None
        if self._running is not None:
            self._cancel_running("planner deactivated")
        if self.skills is not None:
            self.skills._safe_stop()

    def cleanup_node(self) -> None:
        if self._running is not None:
            self._cancel_running("planner cleaned up")
        for kind, entity in reversed(self._entities):
            getattr(self, f"destroy_{kind}")(entity)
        self._entities = []
        self._drop_latched_subscription()
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True, timeout=WORKER_EXIT_WAIT_S)
            self._worker = None
        if self.skills is not None:
            self.skills.destroy()
            self.skills = None
        if self._truth is not None:
            self._truth.close()
            self._truth = None
        self._backend = None

    def _on_image(self, msg) -> None:
        with self._image_lock:
            self._image = (msg, time.monotonic())
        self.health.tick("camera")

    def _on_instruction(self, msg, via: str) -> None:
        if self._instruction_seen_twice(msg.data, via):
            return
        self.health.tick("instruction")
        if not self.is_active:
            self._pending_instruction = msg.data
            self.get_logger().info(f"{self.lifecycle_state}: instruction kept until activation")
            return
        self._start(msg.data)

    def _start(self, data) -> None:
        try:
            text = validate_instruction(data, self.config.max_instruction_chars)
        except ValueError as exc:
            self._reject(data if isinstance(data, str) else "", str(exc))
            return
        if self._running is not None:
            # The new instruction replaces the running task: cancel it; this one starts when it ends.
            self._queued = text
            self._cancel_running("replaced by a new instruction")
            return
        self._episode += 1
        guard = GuardedBackend(self._backend, self.config.model_timeout_s, self.config.max_backend_errors,
                               on_reply=lambda text, latency, ep=self._episode: self._emit(ep, "model", raw_text=text[:500],
                                                                                          latency_s=round(latency, 3)))
        self._running = {"episode": self._episode, "instruction": text, "guard": guard, "started": time.monotonic()}
        self.state = "running"
        self.get_logger().info(f"task {self._episode} ({self.config.style}, {self.config.backend}): {text!r}")
        self._publish_progress({"episode": self._episode, "instruction": text, "event": "started", "state": "running"})
        try:
            self._running["future"] = self._worker.submit(self._episode_job, self._episode, text, guard)
        except (queue.Full, RuntimeError) as exc:
            self._running = None
            self._finish_locally(self._episode, text, f"worker busy: {exc or 'queue full'}")
            return
        self._running["future"].add_done_callback(lambda f: self._wake_up())

    def _reject(self, instruction: str, reason: str) -> None:
        self.health.drop("bad_instruction", reason)
        self.get_logger().error(f"instruction rejected, robot stays stopped: {reason}")
        if self._running is not None:
            self._cancel_running(f"instruction rejected: {reason}")
        if self.skills is not None:
            self.skills._safe_stop()
        self.finish_reason = f"instruction rejected: {reason}"
        self._publish_progress({"episode": self._episode, "instruction": instruction[:200], "event": "rejected", "state": "rejected",
                                "reason": reason})

    def _cancel_running(self, reason: str) -> None:
        run = self._running
        if run is None:
            return
        run["guard"].abort(reason)
        if self.skills is not None:
            self.skills.cancel(reason)

    def _tick(self) -> None:
        self._drain()
        run = self._running
        if run is not None and time.monotonic() - run["started"] > self.config.episode_timeout_s and run["guard"].aborted is None:
            self.health.drop("episode_timeout", f"{self.config.episode_timeout_s:g} s")
            self._cancel_running(f"episode timed out after {self.config.episode_timeout_s:g} s")

    def _wake_up(self) -> None:
        try:
            self._wake.trigger()
        except Exception:  # noqa: BLE001 (guard condition gone during cleanup/shutdown)
            pass

    def _drain(self) -> None:
        """Executor thread: publish queued progress, and finish an episode whose job has ended."""
        while not self._events.empty():
            self._publish_progress(self._events.get())
        run = self._running
        if run is None or "future" not in run or not run["future"].done():
            return
        self._running = None
        future = run["future"]
        if future.cancelled():
            summary = {"state": "cancelled", "reason": "cancelled before it started"}
        elif future.exception() is not None:
            exc = future.exception()
            summary = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        else:
            summary = future.result()
        self._finish(run, summary)
        if self._queued is not None and self.is_active:
            text, self._queued = self._queued, None
            self._start(text)

    def _finish(self, run: dict, summary: dict) -> None:
        self.state = summary["state"]
        self.finish_reason = summary.get("reason", "")
        record = {"episode": run["episode"], "instruction": run["instruction"], "event": "finished", **summary}
        self.results = (self.results + [record])[-20:]
        self._publish_progress(record)
        if summary["state"] == "succeeded":
            self.health.set_level(self.health.OK, f"task {run['episode']} done")
            self.get_logger().info(f"task {run['episode']} finished: {self.finish_reason}")
        else:
            self.health.drop("task_failed", self.finish_reason)
            self.health.set_level(self.health.WARN, f"task {run['episode']} {summary['state']}: {self.finish_reason}")
            self.get_logger().warning(f"task {run['episode']} {summary['state']}, robot stopped: {self.finish_reason}")

    def _finish_locally(self, episode: int, instruction: str, reason: str) -> None:
        if self.skills is not None:
            self.skills._safe_stop()
        self._finish({"episode": episode, "instruction": instruction}, {"state": "failed", "reason": reason})

    # -- the episode (worker thread) ------------------------------------------------------------
    def _emit(self, episode: int, event: str, **fields) -> None:
        """Worker thread: queue a progress event for the executor thread."""
        self._events.put({"episode": episode, "event": event, "state": "running", **fields})
        self._wake_up()

    def _on_skill_result(self, call, result) -> None:
        run = self._running
        self._emit(run["episode"] if run else self._episode, "skill", call=call.to_text(), success=result.success,
                   feedback=result.feedback[:300], perception=result.perception)

    def _observe(self):
        """The newest camera frame (RGB) for the model, waiting up to image_timeout_s for one."""
        from vlm_agent.sensors.frames import color_message_to_rgb

        deadline = time.monotonic() + self.config.image_timeout_s
        while True:
            with self._image_lock:
                image = self._image
            if image is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if self.skills is not None:
            try:
                self.skills._observe(block=False)  # keeps a ground-truth mirror (and the oracle backends reading it) in step
            except Exception:  # noqa: BLE001 (the model gets the image anyway)
                pass
        if image is None:
            return []
        try:
            return [color_message_to_rgb(image[0])]
        except ValueError as exc:
            self.health.drop("frame", str(exc))
            return []

    def _episode_id(self) -> str:
        """Ground truth: the simulator's current episode id, from its result service."""
        client = self._result_client
        deadline = time.monotonic() + self.config.io_timeout_s
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {self.config.sim_result_service} service (perception ground_truth needs the simulator)")
            time.sleep(0.05)
        future = client.call_async(Trigger.Request())
        while not future.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from {self.config.sim_result_service}")
            time.sleep(0.02)
        response = future.result()
        if not response.success:
            raise RuntimeError(f"{self.config.sim_result_service}: {response.message}")
        return json.loads(response.message)["episode_id"]

    def _episode_job(self, episode: int, instruction: str, guard: GuardedBackend) -> dict:
        cfg = self.config
        skills = self.skills
        skills.reset(instruction)
        try:
            if self._truth is not None:
                self._truth.load_episode_id(self._episode_id())
            if cfg.style == "palme":
                from vlm_agent.planners.palme_loop import PalmeConfig, run_palme_episode

                out = run_palme_episode(guard, skills, instruction, observe=self._observe, config=PalmeConfig(
                    max_steps=cfg.palme_max_steps, max_model_calls=cfg.palme_max_model_calls, steps_per_call=cfg.palme_steps_per_call))
                ok, reason = out.finished, out.reason
                extra = {"steps": out.steps_executed, "model_calls": len(out.records), "calls": out.executed_calls()[-20:]}
            else:
                from vlm_agent.planners.octopus_loop import OctopusConfig, run_octopus_episode

                dataset = None
                if cfg.rlef_dataset_dir:
                    from vlm_agent.planners.rlef_dataset import RlefDatasetWriter

                    dataset = RlefDatasetWriter(cfg.rlef_dataset_dir)
                out = run_octopus_episode(guard, skills, instruction, observe=self._observe, dataset=dataset,
                                          episode_id=f"task-{episode}", config=OctopusConfig(
                                              max_rounds=cfg.octopus_max_rounds, max_calls=cfg.octopus_max_calls,
                                              timeout_s=cfg.octopus_program_timeout_s))
                ok = out.success
                reason = "target state reached" if ok else f"no successful round in {len(out.rounds)}"
                extra = {"rounds": len(out.rounds), "feedback": out.rounds[-1].feedback[-500:] if out.rounds else ""}
        except Exception as exc:  # noqa: BLE001 (anything here ends the episode with the reason, never the node)
            skills._safe_stop()
            return {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        if guard.aborted is not None:
            ok, reason = False, guard.aborted
        if not ok:
            skills._safe_stop()
        state = "succeeded" if ok else ("cancelled" if skills.cancelled else "failed")
        return {"state": state, "reason": reason, "perception": skills.perception.label,
                "upper_bound": bool(getattr(skills.perception, "upper_bound", False)) or cfg.backend == "sim_oracle", **extra}

    # -- output ---------------------------------------------------------------------------------
    def _publish_progress(self, fields: dict) -> None:
        message = {"style": self.config.style, "backend": self.config.backend, **fields}
        try:
            self._progress_pub.publish(String(data=json.dumps(message, default=str)))
        except Exception as exc:  # noqa: BLE001 (publisher gone during cleanup)
            self.get_logger().debug(f"progress not published: {exc}")
            return
        self.health.tick("progress")
        if fields.get("event") == "skill":
            self.health.set("last_skill", f"{fields.get('call')} -> {'ok' if fields.get('success') else 'FAILED'}")

    def status_extra(self) -> dict[str, str]:
        values = {"state": self.state, "episode": str(self._episode), "style": self.config.style, "backend": self.config.backend,
                  "perception": self.config.perception, "finish_reason": self.finish_reason[:300]}
        if self._running is not None:
            values["instruction"] = self._running["instruction"][:120]
            values["running_s"] = f"{time.monotonic() - self._running['started']:.1f}"
        if self._truth is not None:
            values["ground_truth_mismatches"] = str(self._truth.mismatches)
        return values

    def destroy_node(self):
        if self._running is not None:
            self._cancel_running("node destroyed")
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True, timeout=WORKER_EXIT_WAIT_S)
        return super().destroy_node()


def main(args=None):
    return run_node(TaskPlannerNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
