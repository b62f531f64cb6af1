"""ROS evaluation client: run navigation episodes through the real graph (`vlm-agent eval --ros`).

The graph under test is `mujoco_sim` + `motion_executor` + `safety_supervisor`, started by default
as a second process (`vlm-agent up` on a generated parameter file), so every primitive travels as a
plan over `/vlm_agent/plan`, is executed closed-loop on `/odom` as `/vlm_agent/cmd_vel_raw`, passes
the safety supervisor onto `/cmd_vel`, and moves the simulated base. Per episode:

1. set the simulator's episode parameters (`suite`, `split`, `episode_seed`, `episode_index`) through
   its standard parameter service, call `/mujoco_sim/reset`, check the episode id it reports;
2. loop: wait for a camera frame and odometry that arrived after the last primitive finished, build a
   `NavObservation`, ask the policy (`act(obs) -> NavPrimitive`, the same objects in-process eval
   uses) for a primitive, publish it as a one-primitive plan, wait for the executor's `done` or
   `aborted` report; until the episode-ending rule shared with the demo says so
   (`planner_loop.episode_end_reason`: `stop`, `max_consecutive_aborts` aborted primitives in a
   row, e.g. a robot the safety supervisor keeps blocking, or the step limit);
3. query `/mujoco_sim/result` (scored as stopped at the current pose; an episode that hit the step
   limit without `stop` is scored unsuccessful, as in-process).

Privileged policies (the oracle) read the simulator's ground truth from a local `NavEnv`; the client
keeps that env on the same episode and teleports it to the ROS pose before each decision.
Time: every node of the graph runs on sim time (`use_sim_time`; `mujoco_sim` is the clock) and the
simulator runs at `real_time_factor` (default 0: as fast as the graph keeps up, in lock-step with
the controller while the robot moves; see `vlm_agent.nodes.mujoco_sim`). The result reports
`sim_time_s` (simulated seconds from the first reset to the last result) and `wall_time_s` (wall
seconds over the same span; `wall_s` also counts the graph's start-up).
This module imports rclpy; call it lazily (the `eval` command does).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from vlm_agent.config import ConfigBase, param
from vlm_agent.planners.planner_loop import episode_end_reason

GRAPH_NODES = ("mujoco_sim", "motion_executor", "safety_supervisor")


@dataclass
class RosEvalConfig(ConfigBase):
    """How the ROS evaluation drives the graph. Speeds in m/s and rad/s; times in seconds (wall)."""

    start_graph: bool = param(True, "start mujoco_sim + motion_executor + safety_supervisor in a second process")
    startup_timeout_s: float = param(90.0, "wait this long for the graph's topics and services", min=1.0, max=600.0)
    primitive_timeout_s: float = param(30.0, "wait this long for the executor to finish one primitive", min=1.0, max=600.0)
    frame_timeout_s: float = param(10.0, "wait this long for a fresh camera frame and odometry", min=0.5, max=120.0)
    # Brisk but consistent limits: the executor's profile stays under the supervisor's limits.
    max_linear_speed_mps: float = param(0.5, "executor cruise speed", min=0.05, max=1.0)
    max_angular_speed_radps: float = param(1.5, "executor cruise turn rate", min=0.1, max=2.0)
    linear_accel_mps2: float = param(1.5, "executor linear acceleration", min=0.1, max=5.0)
    angular_accel_radps2: float = param(5.0, "executor angular acceleration", min=0.1, max=20.0)
    obstacle_stop_distance_m: float = param(0.2, "safety supervisor obstacle threshold in the graph (0 = off)", min=0.0, max=2.0)
    real_time_factor: float = param(
        0.0, "simulator real-time factor: sim seconds per wall second, 0 = as fast as the graph keeps up", min=0.0, max=20.0
    )
    max_consecutive_aborts: int = param(
        3, "end the episode after this many aborted primitives in a row (the planner node's default; 0 = never)", min=0, max=1000
    )


def graph_parameters(episode, sim_config=None, config: RosEvalConfig | None = None) -> dict:
    """The ROS parameter YAML (as a dict) for the graph under test, matching the in-process sim config."""
    config = config or RosEvalConfig()
    seed, index = episode_seed_index(episode)
    sim = {
        "suite": episode.suite,
        "split": episode.split,
        "episode_seed": seed,
        "episode_index": index,
        "reset_on_start": False,
        "publish_instruction": False,
        "real_time_factor": config.real_time_factor,
        "use_sim_time": False,  # the clock source itself
        "max_linear_mps": 1.0,
        "max_angular_radps": 2.0,
    }
    if sim_config is not None:
        sim.update(width=sim_config.width, height=sim_config.height, vertical_fov_deg=sim_config.vertical_fov_deg, shadows=sim_config.shadows)
    executor = {
        "max_linear_speed_mps": config.max_linear_speed_mps,
        "max_angular_speed_radps": config.max_angular_speed_radps,
        "linear_accel_mps2": config.linear_accel_mps2,
        "angular_accel_radps2": config.angular_accel_radps2,
        "timeout_margin_s": 2.0,
        "use_sim_time": True,
    }
    safety = {
        # 20 % headroom over the executor so the supervisor's ramp never lags the profile.
        "max_linear_speed_mps": round(config.max_linear_speed_mps * 1.2, 3),
        "max_angular_speed_radps": round(config.max_angular_speed_radps * 1.2, 3),
        "max_linear_accel_mps2": round(config.linear_accel_mps2 * 1.2, 3),
        "max_angular_accel_radps2": round(config.angular_accel_radps2 * 1.2, 3),
        "obstacle_stop_distance_m": config.obstacle_stop_distance_m,
        "camera_timeout_s": 0.5,
        "depth_timeout_s": 0.5,
        "odom_timeout_s": 0.5,
        # mujoco_sim stamps sim time; freshness is judged from stamps on the supervisor's ROS clock.
        "use_sim_time": True,
    }
    return {
        # Every node on sim time: timeouts, profiles and watchdogs count simulated seconds.
        "/**": {"ros__parameters": {"use_sim_time": True}},
        "mujoco_sim": {"ros__parameters": sim},
        "motion_executor": {"ros__parameters": executor},
        "safety_supervisor": {"ros__parameters": safety},
    }


def episode_seed_index(episode) -> tuple[int, int]:
    """(seed, index) of an episode made by `make_episodes` (its id is `suite-split-seed-index`)."""
    try:
        _suite, _split, seed, index = episode.episode_id.rsplit("-", 3)
        return int(seed), int(index)
    except ValueError:
        raise ValueError(f"episode id {episode.episode_id!r} is not suite-split-seed-index (make it with make_episodes)") from None


def _privileged_env(policy, env):
    if env is not None:
        return env
    for holder in (policy, getattr(policy, "oracle", None)):
        candidate = getattr(holder, "env", None)
        if candidate is not None and hasattr(candidate, "set_pose"):
            return candidate
    return None


@dataclass
class _Latest:
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    rgb_time: float = -math.inf
    depth_time: float = -math.inf
    pose: tuple[float, float, float] | None = None
    pose_time: float = -math.inf
    states: list[dict] = field(default_factory=list)


class GraphProcess:
    """`vlm-agent up` with the given parameters in a second process; stopped with SIGINT."""

    def __init__(self, params: dict, log_path: str | None = None, nodes: tuple[str, ...] = GRAPH_NODES):
        self.nodes = tuple(nodes)
        self._dir = tempfile.mkdtemp(prefix="vlm_agent_eval_")
        self.params_path = os.path.join(self._dir, "graph.yaml")
        with open(self.params_path, "w") as f:
            yaml.safe_dump(params, f)
        self.log_path = log_path or os.path.join(self._dir, "graph.log")
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "vlm_agent.cli", "up", "--config", self.params_path, "--nodes", ",".join(self.nodes)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return False


class RosEvalClient:
    """The client node and its waits; use as a context manager around a running graph."""

    def __init__(self, config: RosEvalConfig, logger=print, sensors: bool = True):
        """sensors: subscribe the camera, depth and odometry (the nav loop's observations); the
        manip and seg evaluations read only odometry (`sensors=False`)."""
        self.config = config
        self.log = logger
        self.sensors = sensors
        self.latest = _Latest()
        self._plan_id = int(time.time()) % 100000 * 1000  # distinct from earlier runs on a shared graph

    def __enter__(self):
        import rclpy
        from nav_msgs.msg import Odometry
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from vlm_agent.nodes.base import LATCHED_QOS, SENSOR_QOS
        from vlm_agent.nodes.motion_executor import STATE_QOS
        from vlm_agent.ros_env import configure_ros_environment

        configure_ros_environment()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("vlm_agent_eval_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.String = String
        self.Trigger = Trigger
        self.plan_pub = self.node.create_publisher(String, "/vlm_agent/plan", LATCHED_QOS)
        if self.sensors:
            self.node.create_subscription(Image, "/camera/color/image_raw", self._on_rgb, SENSOR_QOS)
            self.node.create_subscription(Image, "/camera/depth/image_rect_raw", self._on_depth, SENSOR_QOS)
        self.node.create_subscription(Odometry, "/odom", self._on_odom, SENSOR_QOS)
        self.node.create_subscription(String, "/vlm_agent/executor/state", self._on_state, STATE_QOS)
        self.reset_client = self.node.create_client(Trigger, "/mujoco_sim/reset")
        self.result_client = self.node.create_client(Trigger, "/mujoco_sim/result")
        self.param_client = self.node.create_client(SetParameters, "/mujoco_sim/set_parameters")
        self.active_client = self.node.create_client(Trigger, "/lifecycle_manager/is_active")
        return self

    def __exit__(self, *exc):
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown()
        if self.context.ok():
            import rclpy

            rclpy.shutdown(context=self.context)
        return False

    # -- callbacks ----------------------------------------------------------------------------
    def _on_rgb(self, msg) -> None:
        from vlm_agent.sensors.image_conversion import image_to_rgb8

        try:
            self.latest.rgb = np.array(image_to_rgb8(msg))
            self.latest.rgb_time = time.monotonic()
        except ValueError as exc:
            self.log(f"eval client: dropped camera frame: {exc}")

    def _on_depth(self, msg) -> None:
        from vlm_agent.sensors.image_conversion import depth_to_metres

        try:
            self.latest.depth = depth_to_metres(msg)
            self.latest.depth_time = time.monotonic()
        except ValueError:
            pass

    def _on_odom(self, msg) -> None:
        from vlm_agent.sensors.frames import yaw_from_quaternion

        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        self.latest.pose = (p.x, p.y, yaw_from_quaternion(q.x, q.y, q.z, q.w))
        self.latest.pose_time = time.monotonic()

    def _on_state(self, msg) -> None:
        try:
            self.latest.states.append(json.loads(msg.data))
        except ValueError:
            pass

    # -- waits --------------------------------------------------------------------------------
    def spin_until(self, predicate, timeout: float, what: str, graph: GraphProcess | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                detail = f"\n--- graph log ---\n{graph.tail()}" if graph is not None else ""
                raise TimeoutError(f"ROS eval: no {what} within {timeout:g} s{detail}")
            if graph is not None and not graph.alive():
                raise RuntimeError(f"ROS eval: the graph process exited while waiting for {what}\n{graph.tail()}")
            self.executor.spin_once(timeout_sec=0.02)

    def wait_ready(self, graph=None) -> None:
        t = self.config.startup_timeout_s
        for client, name in ((self.reset_client, "reset"), (self.result_client, "result"), (self.param_client, "set_parameters")):
            self.spin_until(client.service_is_ready, t, f"/mujoco_sim/{name} service", graph)
        self.spin_until(lambda: self.plan_pub.get_subscription_count() >= 1, t, "motion_executor on /vlm_agent/plan", graph)
        self.wait_active(graph)

    def wait_active(self, graph=None) -> None:
        """Wait until the graph's lifecycle manager reports every managed node active (the safety
        supervisor publishes zero until then, the planner plans nothing)."""
        t = self.config.startup_timeout_s
        self.spin_until(self.active_client.service_is_ready, t, "/lifecycle_manager/is_active service", graph)
        deadline = time.monotonic() + t
        while True:
            answer = self.call(self.active_client, self.Trigger.Request(), "/lifecycle_manager/is_active", graph)
            if answer.success:
                return
            if answer.message.startswith("failed"):
                detail = f"\n--- graph log ---\n{graph.tail(40)}" if graph is not None else ""
                raise RuntimeError(f"ROS eval: the graph's bring-up failed ({answer.message}){detail}")
            if time.monotonic() > deadline:
                detail = f"\n--- graph log ---\n{graph.tail()}" if graph is not None else ""
                raise TimeoutError(f"ROS eval: managed nodes not active within {t:g} s ({answer.message}){detail}")
            self._spin_for(0.2, graph)

    def _spin_for(self, seconds: float, graph=None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if graph is not None and not graph.alive():
                raise RuntimeError(f"ROS eval: the graph process exited\n{graph.tail()}")
            self.executor.spin_once(timeout_sec=0.02)

    def call(self, client, request, what: str, graph=None):
        future = client.call_async(request)
        self.spin_until(future.done, self.config.startup_timeout_s, f"answer from {what}", graph)
        return future.result()

    # -- episode steps ------------------------------------------------------------------------
    def reset_episode(self, episode, graph=None) -> dict:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        seed, index = episode_seed_index(episode)

        def p(name, kind, **value):
            return Parameter(name=name, value=ParameterValue(type=kind, **value))

        request = SetParameters.Request(
            parameters=[
                p("suite", ParameterType.PARAMETER_STRING, string_value=episode.suite),
                p("split", ParameterType.PARAMETER_STRING, string_value=episode.split),
                p("episode_seed", ParameterType.PARAMETER_INTEGER, integer_value=seed),
                p("episode_index", ParameterType.PARAMETER_INTEGER, integer_value=index),
            ]
        )
        results = self.call(self.param_client, request, "/mujoco_sim/set_parameters", graph).results
        failed = [r.reason for r in results if not r.successful]
        if failed:
            raise RuntimeError(f"ROS eval: mujoco_sim refused the episode parameters: {failed}")
        response = self.call(self.reset_client, self.Trigger.Request(), "/mujoco_sim/reset", graph)
        if not response.success:
            raise RuntimeError(f"ROS eval: /mujoco_sim/reset failed: {response.message}")
        info = json.loads(response.message)
        if info.get("episode_id") != episode.episode_id:
            raise RuntimeError(f"ROS eval: the simulator loaded {info.get('episode_id')}, expected {episode.episode_id}")
        return info

    def observation(self, since: float, instruction: str, step: int, graph=None):
        from vlm_agent.sim.env import NavObservation

        lt = self.latest
        # Depth too, once the simulator has sent any: a map memory fed the previous episode's last depth
        # image with this episode's first pose marks walls and floor that are not there.
        self.spin_until(lambda: lt.rgb_time > since and lt.pose_time > since and (lt.depth_time == -math.inf or lt.depth_time > since),
                        self.config.frame_timeout_s, "fresh camera frame, depth and odometry", graph)
        return NavObservation(lt.rgb, lt.depth, lt.pose, instruction, step, False)

    def execute(self, primitive, instruction: str, step: int, graph=None) -> dict:
        """Publish `primitive` as a plan and wait for the executor's final report on it."""
        from vlm_agent.planners.planner_loop import PlanMessage

        self._plan_id += 1
        plan_id = self._plan_id
        plan = PlanMessage(plan_id, instruction, step, primitive.to_text(), (primitive,), 0.0, None)
        self.plan_pub.publish(self.String(data=plan.to_json()))
        states = self.latest.states

        def final():
            return next((s for s in reversed(states) if s.get("plan_id") == plan_id and s.get("state") in ("done", "aborted")), None)

        self.spin_until(lambda: final() is not None, self.config.primitive_timeout_s, f"executor report on plan {plan_id}", graph)
        return final()

    def result(self, graph=None) -> dict:
        response = self.call(self.result_client, self.Trigger.Request(), "/mujoco_sim/result", graph)
        if not response.success:
            raise RuntimeError(f"ROS eval: /mujoco_sim/result failed: {response.message}")
        return json.loads(response.message)


def run_ros_episodes(episodes, policy, suite: str = "nav", policy_name: str = "?", config=None, video_dir: str | None = None,
                     env=None, seed: int | None = None, ros_config: RosEvalConfig | None = None, logger=None,
                     model_dir: str | None = None, backend: str | None = None, device: str | None = None,
                     remote_url: str | None = None, remote_model: str | None = None, perception: str = "ground_truth",
                     seg_backend: str = "sa2va", seg_model_dir: str | None = None, seg_params: dict | None = None) -> dict:
    """Run `policy` on `episodes` through ROS; returns the fields of `vlm_agent.evaluation.rollouts.EvalResult`.

    Navigation runs here; the manip suite goes to `manip_client.run_task_planner_episodes` (the
    task_planner node does the work: `policy` is unused, `policy_name` picks its style and backend)
    and the seg suite to `seg_client.run_segmenter_episodes` (the segmenter node; `policy_name` picks
    its backend). `model_dir`, `backend`, `device`, `remote_url`, `remote_model`: those nodes' model.
    manip only: `perception` "segmenter" puts the segmenter node (`seg_backend` sa2va from
    `seg_model_dir` or oracle) in the graph as the task planner's perception; `seg_params`: its
    perception settings that apply through ROS (the attribute verifier; `seg_client.ROS_PERCEPTION_PARAMS`).

    Args:
        episodes: episodes from `make_episodes` (ids encode seed and index).
        policy: nav: an object with `reset(episode)` and `act(NavObservation) -> NavPrimitive`.
        config: the in-process `SimConfig` (camera size, FOV, shadows, `max_steps` override) to mirror.
        video_dir: write a contact sheet and GIF per episode, as in-process eval does.
        env: the local `NavEnv` a privileged policy reads (found on `policy.oracle.env` when omitted).
        ros_config: `RosEvalConfig` (graph start, timeouts, speed limits).
    """
    from vlm_agent.sim.metrics import aggregate_nav

    if suite not in ("nav", "manip", "seg"):
        raise ValueError(f"ROS evaluation runs nav, manip or seg episodes, not '{suite}'")
    if not episodes:
        raise ValueError("no episodes to evaluate")
    if suite != "nav":
        model = {"model_dir": model_dir, "backend": backend, "device": device, "remote_url": remote_url, "remote_model": remote_model}
        if suite == "manip":
            from vlm_agent.nodes.manip_client import run_task_planner_episodes as run_suite

            model.update(perception=perception, seg_backend=seg_backend, seg_model_dir=seg_model_dir, seg_params=seg_params)
        elif perception != "ground_truth" or seg_params:
            raise ValueError("perception segmenter applies to the manip suite")
        else:
            from vlm_agent.nodes.seg_client import run_segmenter_episodes as run_suite
        return run_suite(episodes, policy_name, config=config, seed=seed, ros_config=ros_config, logger=logger, **model)
    for ep in episodes:
        if ep.suite != "nav":
            raise ValueError(f"episode {ep.episode_id} is a {ep.suite} episode, not nav")
    ros_config = ros_config or RosEvalConfig()
    log = logger or (lambda text: print(text, file=sys.stderr))
    privileged = _privileged_env(policy, env)
    max_override = getattr(config, "max_steps", 0) if config is not None else 0

    per, env_steps = [], 0
    graph_cm = GraphProcess(graph_parameters(episodes[0], config, ros_config)) if ros_config.start_graph else None
    spans = EpisodeSpans()
    with _maybe(graph_cm) as graph, RosEvalClient(ros_config, log) as client:
        client.wait_ready(graph)
        for ep in episodes:
            info, sim_start = spans.reset(client, ep, graph)
            instruction = info.get("instruction", ep.instruction)
            if privileged is not None:
                privileged.reset(ep)
            policy.reset(ep)
            since = time.monotonic()
            frames, actions, aborted, stopped = [], [], 0, False
            aborts_in_row, last_abort, end_reason = 0, "", None
            max_steps = max_override or ep.max_steps
            for step in range(max_steps):
                obs = client.observation(since, instruction, step, graph)
                if video_dir:
                    frames.append(obs.rgb)
                if privileged is not None:
                    privileged.set_pose(*obs.pose)
                primitive = policy.act(obs)
                actions.append(primitive.to_text())
                report = client.execute(primitive, instruction, step, graph)
                since = time.monotonic()
                env_steps += 1
                if report["state"] == "aborted":
                    aborted += 1
                    aborts_in_row, last_abort = aborts_in_row + 1, str(report.get("reason") or "")
                    log(f"{ep.episode_id} step {step}: {primitive.to_text()} aborted: {report.get('reason')}")
                else:
                    aborts_in_row = 0
                stopped = primitive.kind == "stop"
                end_reason = episode_end_reason(
                    stopped_by="policy said stop" if stopped else None, steps=step + 1, max_steps=max_steps,
                    aborts_in_row=aborts_in_row, max_consecutive_aborts=ros_config.max_consecutive_aborts, last_abort_reason=last_abort,
                )
                if end_reason:
                    break
            metrics, sim_end = spans.result(client, graph)
            metrics["sim_time_s"] = sim_end - sim_start
            if not stopped:  # the step limit ended the episode: in-process scores this as not stopped
                metrics["success"], metrics["spl"] = 0.0, 0.0
            metrics.update(
                episode_id=ep.episode_id, task=ep.task, held_out=ep.held_out, instruction=ep.instruction,
                steps=len(actions), ros_aborted_primitives=aborted, actions=actions, end_reason=end_reason or "no steps",
            )
            if hasattr(policy, "episode_stats"):  # e.g. the NaVid planner's plans by source
                metrics.update(policy.episode_stats())
            per.append(metrics)
            log(f"{ep.episode_id}: success={metrics['success']:.0f} nav_error={metrics['navigation_error']:.2f} m steps={len(actions)}")
            if video_dir and frames:
                from vlm_agent.sim.video import write_video

                write_video(video_dir, ep, frames)
    return ros_eval_summary(suite, policy_name, episodes, seed, per, aggregate_nav, env_steps, spans, ros_config, breakdowns=False)


class EpisodeSpans:
    """Sim and wall time of a ROS evaluation: from the first episode's reset to the last result
    (`sim_time_s`, `wall_time_s`), and the whole run with the graph's start-up (`wall_s`)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.sim, self.wall = [math.inf, -math.inf], [math.inf, -math.inf]

    def reset(self, client: RosEvalClient, episode, graph=None) -> tuple[dict, float]:
        """`client.reset_episode`; returns (the simulator's answer, its sim time)."""
        self.wall[0] = min(self.wall[0], time.perf_counter())
        info = client.reset_episode(episode, graph)
        sim_start = float(info.get("sim_time", math.nan))
        self.sim[0] = min(self.sim[0], sim_start)
        return info, sim_start

    def result(self, client: RosEvalClient, graph=None) -> tuple[dict, float]:
        """`client.result` (mujoco_sim/result); returns (its metrics, its sim time)."""
        metrics = client.result(graph)
        self.wall[1] = time.perf_counter()
        sim_end = float(metrics.get("sim_time", math.nan))
        self.sim[1] = max(self.sim[1], sim_end)
        return metrics, sim_end


def ros_eval_summary(suite: str, policy_name: str, episodes, seed, per: list[dict], aggregate, env_steps: int, spans: EpisodeSpans,
                     ros_config: RosEvalConfig, breakdowns: bool = True, **extra) -> dict:
    """The fields of `EvalResult` for a ROS evaluation: metrics by `aggregate` over all episodes, the
    held-out targets and (`breakdowns`) per task / pair / phrasing as in-process eval reports them,
    plus sim_time_s, wall_time_s, real_time_factor and `extra`."""
    from vlm_agent.evaluation.rollouts import breakdown

    metrics = aggregate(per)
    held = [m for m in per if m["held_out"]]
    if held:
        metrics["held_out"] = dict(aggregate(held), episodes=len(held))
    if breakdowns:
        metrics["breakdown"] = breakdown(per, aggregate)
    return {
        "suite": suite,
        "policy": policy_name,
        "split": episodes[0].split,
        "seed": seed if seed is not None else episode_seed_index(episodes[0])[0],
        "episodes": len(episodes),
        "metrics": metrics,
        "per_episode": per,
        "env_steps": env_steps,
        "wall_s": time.perf_counter() - spans.t0,
        "sim_time_s": spans.sim[1] - spans.sim[0],
        "wall_time_s": spans.wall[1] - spans.wall[0],
        "real_time_factor": ros_config.real_time_factor,
        **extra,
    }


class _maybe:
    """`with _maybe(cm) as x`: enters `cm` when it is not None, else yields None."""

    def __init__(self, cm):
        self.cm = cm

    def __enter__(self):
        return self.cm.__enter__() if self.cm is not None else None

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc) if self.cm is not None else False
