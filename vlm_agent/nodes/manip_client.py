"""Manipulation episodes of the embedded simulator driven through ROS with the ROS skill adapter.

`ManipRosClient` is a client process's side of a graph of `mujoco_sim` (manip suite) +
`motion_executor` + `safety_supervisor` (normally started by `GraphProcess`, i.e. `vlm-agent up` in
a second process): its own rclpy context and node, spun on a background thread so that skills can
wait on the calling thread; the simulator's standard services (set the episode parameters, reset,
result); a `SimGroundTruth` mirror (ground-truth perception, an upper bound) loaded with each
episode; and a `RosSkills` adapter with the mirror's navigation oracle. Every skill acts only through
topics: plans to the executor (whose commands pass the safety supervisor), arm trajectories, the
gripper.

`run_oracle_program_ros(episodes)` runs the manipulation oracle's skill program
(`evaluation/manip_planners.oracle_program_code`) through the sandbox with the adapter's skills and
scores each episode with the simulator's own `mujoco_sim/result` (what the benchmark
`benchmarks/manip_ros.py` and `tests/nodes/test_ros_skills.py` measure).
This module imports rclpy; import it lazily.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time

from vlm_agent.nodes.eval_client import GraphProcess, RosEvalConfig, episode_seed_index, graph_parameters
from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig, final_approach_kwargs

MANIP_GRAPH_NODES = ("mujoco_sim", "motion_executor", "safety_supervisor")


# The adapter's settings for the manip graph: dock the last 20 cm in 4 cm creeps, stand 0.32 m from a
# table's edge (12 cm clear of the footprint; the arm still reaches 0.16 m onto it), see below.
MANIP_SKILLS_CONFIG = {"dock_within_m": 0.2, "dock_step_cm": 4.0, "table_standoff_m": 0.32}


def manip_skills_config(**overrides) -> RosSkillsConfig:
    return RosSkillsConfig(**{**MANIP_SKILLS_CONFIG, **overrides})


def manip_graph_parameters(episode, sim_config=None, obstacle_stop_distance_m: float = 0.02,
                           real_time_factor: float = 0.0, physics_rate_hz: float = 50.0) -> dict:
    """Parameters of the graph under test (those of `vlm-agent eval --ros`, manip suite).

    obstacle_stop_distance_m: the supervisor's stop distance ahead of the (2 cm padded) footprint, at
    standstill; its zone grows by speed x 0.5 s. Manipulation docks ~17 cm from an object's face and,
    with `MANIP_SKILLS_CONFIG`, 12 cm from a table's edge (the arm must reach), closer than the
    navigation default of 0.2 m allows, so the manip graph uses a short one and the adapter creeps the
    last 20 cm in 4 cm steps (~0.14 m/s: a 0.11 m zone). A real robot would switch to a docking
    profile the same way.
    """
    params = graph_parameters(episode, sim_config, RosEvalConfig(obstacle_stop_distance_m=obstacle_stop_distance_m,
                                                                 real_time_factor=real_time_factor))
    params["mujoco_sim"]["ros__parameters"]["physics_rate_hz"] = physics_rate_hz
    return params


class ManipRosClient:
    """See module docstring. `with ManipRosClient(...) as client: client.reset_episode(ep); ...`"""

    def __init__(self, skills_config: RosSkillsConfig | None = None, width: int = 320, height: int = 240,
                 startup_timeout_s: float = 90.0, logger=print):
        self.skills_config = skills_config or manip_skills_config()
        self.width, self.height = width, height
        self.startup_timeout_s = startup_timeout_s
        self.log = logger
        self.skills: RosSkills | None = None
        self.truth = None

    def __enter__(self):
        import rclpy
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import Trigger

        from vlm_agent.nodes.sim_ground_truth import SimGroundTruth
        from vlm_agent.ros_env import configure_ros_environment

        configure_ros_environment()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("vlm_agent_manip_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.Trigger = Trigger
        self.SetParameters = SetParameters
        self.reset_client = self.node.create_client(Trigger, "/mujoco_sim/reset")
        self.result_client = self.node.create_client(Trigger, "/mujoco_sim/result")
        self.param_client = self.node.create_client(SetParameters, "/mujoco_sim/set_parameters")
        self.active_client = self.node.create_client(Trigger, "/lifecycle_manager/is_active")
        # What reached the base: (steady time, linear.x, angular.z, every field finite), for safety checks.
        from geometry_msgs.msg import Twist

        from vlm_agent.nodes.base import COMMAND_QOS

        self.cmd_vel: list[tuple[float, float, float, bool]] = []
        self.node.create_subscription(Twist, "/cmd_vel", self._on_cmd_vel, COMMAND_QOS)
        self.truth = SimGroundTruth(self.width, self.height)
        c = self.skills_config
        navigator = self.truth.oracle_navigator(**final_approach_kwargs(c))
        self.skills = RosSkills(self.node, self.truth, c, navigator=navigator)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="manip_client_spin", daemon=True)
        self._thread.start()
        return self

    def _on_cmd_vel(self, msg) -> None:
        values = (msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y, msg.angular.z)
        self.cmd_vel.append((time.monotonic(), float(msg.linear.x), float(msg.angular.z), all(math.isfinite(v) for v in values)))

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 (shutting down under the spin)
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    def __exit__(self, *exc):
        if self.skills is not None:
            self.skills.cancel("client closing")
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown()
        if self.context.ok():
            import rclpy

            rclpy.shutdown(context=self.context)
        if self.truth is not None:
            self.truth.close()
        return False

    # -- waits and services (calling thread; the spin thread completes the futures) -------------
    def _until(self, predicate, timeout: float, what: str, graph: GraphProcess | None = None):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if graph is not None and not graph.alive():
                raise RuntimeError(f"the graph process exited while waiting for {what}\n{graph.tail()}")
            if time.monotonic() > deadline:
                detail = f"\n--- graph log ---\n{graph.tail()}" if graph is not None else ""
                raise TimeoutError(f"no {what} within {timeout:g} s{detail}")
            time.sleep(0.02)

    def call(self, client, request, what: str, graph=None, timeout: float | None = None):
        timeout = timeout or self.startup_timeout_s
        self._until(client.service_is_ready, timeout, f"{what} service", graph)
        future = client.call_async(request)
        self._until(future.done, timeout, f"answer from {what}", graph)
        return future.result()

    def wait_ready(self, graph=None) -> None:
        """The simulator's services, the executor on the plan topic and every managed node active."""
        t = self.startup_timeout_s
        for client, name in ((self.reset_client, "reset"), (self.result_client, "result"), (self.param_client, "set_parameters")):
            self._until(client.service_is_ready, t, f"/mujoco_sim/{name} service", graph)
        self._until(lambda: self.skills.plan_pub.get_subscription_count() >= 1, t, "motion_executor on /vlm_agent/plan", graph)
        deadline = time.monotonic() + t
        while True:
            answer = self.call(self.active_client, self.Trigger.Request(), "/lifecycle_manager/is_active", graph)
            if answer.success:
                return
            if answer.message.startswith("failed") or time.monotonic() > deadline:
                raise RuntimeError(f"managed nodes not active: {answer.message}")
            time.sleep(0.2)

    def reset_episode(self, episode, graph=None) -> dict:
        """Load `episode` in the simulator (its parameters, then `mujoco_sim/reset`) and the mirror."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue

        seed, index = episode_seed_index(episode)

        def p(name, kind, **value):
            return Parameter(name=name, value=ParameterValue(type=kind, **value))

        request = self.SetParameters.Request(parameters=[
            p("suite", ParameterType.PARAMETER_STRING, string_value=episode.suite),
            p("split", ParameterType.PARAMETER_STRING, string_value=episode.split),
            p("episode_seed", ParameterType.PARAMETER_INTEGER, integer_value=seed),
            p("episode_index", ParameterType.PARAMETER_INTEGER, integer_value=index),
        ])
        results = self.call(self.param_client, request, "/mujoco_sim/set_parameters", graph).results
        if not all(r.successful for r in results):
            raise RuntimeError(f"mujoco_sim refused the episode parameters: {[r.reason for r in results]}")
        response = self.call(self.reset_client, self.Trigger.Request(), "/mujoco_sim/reset", graph)
        if not response.success:
            raise RuntimeError(f"/mujoco_sim/reset failed: {response.message}")
        info = json.loads(response.message)
        if info.get("episode_id") != episode.episode_id:
            raise RuntimeError(f"the simulator loaded {info.get('episode_id')}, expected {episode.episode_id}")
        self.truth.load_episode_id(episode.episode_id)
        self.skills.reset(info.get("instruction", episode.instruction))
        # Odometry and joint states from after the reset (the adapter's pose must be the new episode's).
        reset_time = float(info.get("sim_time", -math.inf))
        self._until(lambda: self.skills._pose_stamp >= reset_time and self.skills._joints_stamp >= reset_time, 30.0,
                    "odometry and joint states after the reset", graph)
        return info

    def result(self, graph=None) -> dict:
        response = self.call(self.result_client, self.Trigger.Request(), "/mujoco_sim/result", graph)
        if not response.success:
            raise RuntimeError(f"/mujoco_sim/result failed: {response.message}")
        return json.loads(response.message)


def run_oracle_program_ros(episodes, *, start_graph: bool = True, skills_config: RosSkillsConfig | None = None,
                           obstacle_stop_distance_m: float = 0.02, real_time_factor: float = 0.0, program_timeout_s: float = 600.0,
                           logger=print) -> dict:
    """The oracle skill program through the sandbox and the ROS adapter on manip `episodes` (see module
    docstring). Returns {"episodes", "success_rate", "perception", "upper_bound", "wall_s", "sim_time_s",
    "cmd_vel": {"messages", "non_finite", "max_abs_linear", "max_abs_angular"},
    "per_episode": [{episode_id, success, support, calls, error, wall_s, sim_time_s, mirror_mismatches}]}."""
    from vlm_agent.evaluation.manip_planners import oracle_program_code
    from vlm_agent.skills.sandbox import run_program

    if not episodes:
        raise ValueError("no episodes")
    per = []
    t_start = time.perf_counter()
    graph_cm = GraphProcess(manip_graph_parameters(episodes[0], obstacle_stop_distance_m=obstacle_stop_distance_m,
                                                   real_time_factor=real_time_factor), nodes=MANIP_GRAPH_NODES) if start_graph else None
    graph = graph_cm.__enter__() if graph_cm is not None else None
    try:
        with ManipRosClient(skills_config, logger=logger) as client:
            client.wait_ready(graph)
            for ep in episodes:
                t0 = time.perf_counter()
                info = client.reset_episode(ep, graph)
                code = oracle_program_code(client.truth.env)
                result = run_program(code, client.skills.bindings(), timeout_s=program_timeout_s)
                metrics = client.result(graph)
                sim_time = float(metrics.get("sim_time", math.nan)) - float(info.get("sim_time", math.nan))
                per.append({
                    "episode_id": ep.episode_id, "task": ep.task, "instruction": ep.instruction,
                    "success": float(metrics["success"]), "support": metrics.get("support"),
                    "program_ok": result.ok, "error": result.error,
                    "calls": [f"{c.name}({', '.join(map(repr, c.args))}) -> {'ok' if c.success else 'FAILED'}: {c.feedback}" for c in result.calls],
                    "wall_s": time.perf_counter() - t0, "sim_time_s": sim_time, "mirror_mismatches": client.truth.mismatches,
                })
                logger(f"{ep.episode_id}: success={per[-1]['success']:.0f} ok={result.ok} {per[-1]['wall_s']:.1f} s wall, "
                       f"{sim_time:.1f} s sim{'' if result.ok else ' error: ' + str(result.error)}")
    finally:
        if graph_cm is not None:
            graph_cm.__exit__(None, None, None)
    n = len(per)
    cmds = client.cmd_vel
    return {
        "episodes": n,
        "success_rate": sum(e["success"] for e in per) / n,
        "perception": client.truth.label,
        "upper_bound": True,
        "wall_s": time.perf_counter() - t_start,
        "sim_time_s": sum(e["sim_time_s"] for e in per),
        "cmd_vel": {"messages": len(cmds), "non_finite": sum(1 for c in cmds if not c[3]),
                    "max_abs_linear": max((abs(c[1]) for c in cmds if c[3]), default=0.0),
                    "max_abs_angular": max((abs(c[2]) for c in cmds if c[3]), default=0.0)},
        "per_episode": per,
    }


TASK_PLANNER_GRAPH_NODES = MANIP_GRAPH_NODES + ("task_planner",)


def task_planner_parameters(policy_name: str, model_dir: str | None = None, backend: str | None = None, device: str | None = None,
                            remote_url: str | None = None, remote_model: str | None = None) -> dict:
    """task_planner's style and backend for `vlm-agent eval --suite manip --policy NAME --ros`:
    oracle -> PaLM-E style on the privileged `sim_oracle` backend (an upper bound); palme / octopus
    -> that style on `backend` (builtin, the default: --model or the shipped checkpoint; transformers; remote;
    `oracle` = `sim_oracle`)."""
    if policy_name == "oracle":
        return {"style": "palme", "backend": "sim_oracle"}
    if policy_name not in ("palme", "octopus"):
        raise ValueError(f"--ros --suite manip runs the task_planner node: --policy oracle, palme or octopus, not '{policy_name}'")
    kind = backend or ("remote" if remote_url and not model_dir else "builtin")
    if kind == "oracle":
        return {"style": policy_name, "backend": "sim_oracle"}
    if kind == "transformers" and not model_dir:
        raise ValueError(f"--backend {kind} needs --model DIR")
    # builtin without --model: the node loads the shipped checkpoints/<style>_tiny
    params = {"style": policy_name, "backend": kind, "model_dir": model_dir or "", "remote_url": remote_url or "", "remote_model": remote_model or ""}
    if device:
        params["device"] = device
    return params


def task_planner_graph_parameters(episode, planner: dict, sim_config=None, base_config: str | None = None,
                                  real_time_factor: float = 0.0) -> dict:
    """The manip eval graph: `base_config` (default config/sim_manip.yaml) with the simulator, executor
    and supervisor of `manip_graph_parameters` (the camera of `sim_config`), the simulator's own
    instruction off (the client publishes it), and task_planner's `planner` settings on ground-truth
    perception with the camera's size."""
    import yaml

    if base_config is None:
        from vlm_agent.commands.demo import default_config_path

        base_config = default_config_path("sim_manip.yaml")
    with open(base_config) as f:
        params = yaml.safe_load(f) or {}
    generated = manip_graph_parameters(episode, sim_config, real_time_factor=real_time_factor)
    for section, values in generated.items():
        params.setdefault(section, {}).setdefault("ros__parameters", {}).update(values["ros__parameters"])
    sim = params["mujoco_sim"]["ros__parameters"]
    sim["publish_instruction"] = False
    tp = params.setdefault("task_planner", {}).setdefault("ros__parameters", {})
    tp.update(planner, use_sim_time=True, perception="ground_truth", camera_width=int(sim.get("width", 320)),
              camera_height=int(sim.get("height", 240)))
    return params


def run_task_planner_episodes(episodes, policy_name: str = "oracle", *, config=None, seed: int | None = None, ros_config=None,
                              logger=None, model_dir: str | None = None, backend: str | None = None, device: str | None = None,
                              remote_url: str | None = None, remote_model: str | None = None, base_config: str | None = None,
                              episode_timeout_s: float = 900.0, perception: str = "ground_truth", seg_backend: str = "sa2va",
                              seg_model_dir: str | None = None, seg_params: dict | None = None) -> dict:
    """`vlm-agent eval --suite manip --ros`: each episode through the task_planner node.

    `perception` "segmenter" (`--perception segmenter`): the segmenter node joins the graph
    (`seg_backend` sa2va from `seg_model_dir`, default the shipped checkpoint, or oracle: ground-truth
    masks from its mirror of the episode, privileged) and the task planner locates objects through it
    (`SegmentationPerception`), with the episode's furniture as its map file (rewritten per episode).
    `seg_params`: the perception settings that apply through ROS (`seg_client.ROS_PERCEPTION_PARAMS`:
    the attribute verifier), the others at `SegmenterPerceptionConfig()`'s defaults as in-process
    (`seg_client.perception_segmenter_parameters`); the result's "segmenter" records them.

    The graph (`GraphProcess`: mujoco_sim on the manip suite, motion_executor, safety_supervisor,
    task_planner; `task_planner_graph_parameters`). Per episode: the episode's parameters and
    `mujoco_sim/reset` (`RosEvalClient.reset_episode`), the instruction on `vlm_agent/instruction`,
    the task's `started` and `finished` events on `vlm_agent/task/progress`, then the simulator's own
    result on `mujoco_sim/result` (success, support). Returns the fields of `EvalResult` (metrics:
    success_rate, held_out, breakdown by task / seen-held-out pair / phrasing) plus sim_time_s,
    wall_time_s and `upper_bound` (the oracle backend on ground-truth perception)."""
    import sys

    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.eval_client import EpisodeSpans, RosEvalClient, _maybe, ros_eval_summary
    from vlm_agent.nodes.task_planner import INSTRUCTION_TOPIC, PROGRESS_QOS, PROGRESS_TOPIC
    from vlm_agent.sim.metrics import aggregate_manip

    for ep in episodes:
        if ep.suite != "manip":
            raise ValueError(f"episode {ep.episode_id} is a {ep.suite} episode, not manip")
    ros_config = ros_config or RosEvalConfig()
    log = logger or (lambda text: print(text, file=sys.stderr))
    planner = task_planner_parameters(policy_name, model_dir, backend, device, remote_url, remote_model)
    params = task_planner_graph_parameters(episodes[0], planner, config, base_config, ros_config.real_time_factor)
    perception_params = seg_params
    nodes, furniture_map, seg_params = TASK_PLANNER_GRAPH_NODES, "", None
    if perception not in ("ground_truth", "segmenter"):
        raise ValueError(f"perception: ground_truth or segmenter, not {perception!r}")
    if perception_params and perception != "segmenter":
        raise ValueError("segmenter perception settings apply to perception segmenter only")
    if perception == "segmenter":
        import tempfile

        from vlm_agent.nodes.seg_client import perception_segmenter_parameters, segmenter_parameters
        from vlm_agent.skills.object_memory import write_furniture_map

        if planner["backend"] == "sim_oracle":
            raise ValueError("the sim_oracle backend reads the simulator's ground truth: --perception segmenter needs --policy palme or octopus")
        seg_params = {**segmenter_parameters(seg_backend, seg_model_dir, device), **perception_segmenter_parameters(perception_params)}
        furniture_map = os.path.join(tempfile.mkdtemp(prefix="vlm_agent_manip_"), "furniture_map.yaml")
        write_furniture_map(furniture_map, episodes[0].world().furniture)
        params["segmenter"] = {"ros__parameters": {**_segmentation_section(), **seg_params, "use_sim_time": True, "use_instruction": False,
                                                   "query": "", "publish_overlay": False}}
        # positions only: the approach is planned on the simulator's map (walls, furniture), as on a robot with a map
        params["task_planner"]["ros__parameters"].update(perception="segmentation", furniture_map=furniture_map, navigation="map")
        nodes = TASK_PLANNER_GRAPH_NODES + ("segmenter",)
    graph_cm = GraphProcess(params, nodes=nodes) if ros_config.start_graph else None
    per, progress = [], []
    spans = EpisodeSpans()
    with _maybe(graph_cm) as graph, RosEvalClient(ros_config, log, sensors=False) as client:
        instruction_pub = client.node.create_publisher(String, INSTRUCTION_TOPIC, COMMAND_QOS)
        client.node.create_subscription(String, PROGRESS_TOPIC, lambda m: progress.append(json.loads(m.data)), PROGRESS_QOS)
        client.wait_ready(graph)
        client.spin_until(lambda: instruction_pub.get_subscription_count() >= 1, ros_config.startup_timeout_s,
                          "task_planner on vlm_agent/instruction", graph)
        for ep in episodes:
            w0 = time.perf_counter()
            info, sim_start = spans.reset(client, ep, graph)
            text = info.get("instruction", ep.instruction)
            seen = len(progress)
            if furniture_map:
                write_furniture_map(furniture_map, ep.world().furniture)
            instruction_pub.publish(String(data=text))

            def event(kind, task=None):
                return next((p for p in progress[seen:] if p.get("event") == kind and p.get("instruction") == text
                             and (task is None or p.get("episode") == task)), None)

            def ended():
                started = event("started")
                return (started is not None and event("finished", started["episode"]) is not None) or event("rejected") is not None

            client.spin_until(ended, episode_timeout_s, f"end of the task '{text}' on {PROGRESS_TOPIC}", graph)
            started = event("started")
            end = event("finished", started["episode"]) if started is not None else event("rejected")
            task = started["episode"] if started is not None else None
            events = [p for p in progress[seen:] if task is None or p.get("episode") == task]
            result, sim_end = spans.result(client, graph)
            skills = [p for p in events if p.get("event") == "skill"]
            m = {
                "success": float(result["success"]), "support": result.get("support"),
                "planner_state": end.get("state"), "planner_reason": end.get("reason", ""),
                "upper_bound": bool(end.get("upper_bound", planner["backend"] == "sim_oracle")),
                "skill_calls": len(skills), "model_calls": sum(1 for p in events if p.get("event") == "model"),
                "calls": [f"{p.get('call')} -> {'ok' if p.get('success') else 'FAILED'}: {str(p.get('feedback', ''))[:160]}"
                          for p in skills][-30:],
                "sim_time_s": sim_end - sim_start, "wall_s": time.perf_counter() - w0,
                "episode_id": ep.episode_id, "task": ep.task, "held_out": ep.held_out,
                "held_out_phrasing": ep.held_out_phrasing, "instruction": ep.instruction,
            }
            if result.get("episode_id") != ep.episode_id:
                raise RuntimeError(f"ROS eval: the simulator's result is for {result.get('episode_id')}, expected {ep.episode_id}")
            per.append(m)
            log(f"{ep.episode_id}: success={m['success']:.0f} planner {m['planner_state']} ({m['planner_reason']}) "
                f"{m['skill_calls']} skill calls, {m['sim_time_s']:.1f} s sim, {m['wall_s']:.1f} s wall")
    extra = {"perception": "segmenter", "segmenter": seg_params} if seg_params is not None else {}
    return ros_eval_summary("manip", policy_name, episodes, seed, per, aggregate_manip, sum(max(1, m["skill_calls"]) for m in per), spans,
                            ros_config, task_planner={k: v for k, v in planner.items() if v != ""},
                            upper_bound=planner["backend"] == "sim_oracle", **extra)


def _segmentation_section() -> dict:
    """config/segmentation.yaml's segmenter parameters (the node's defaults for the eval graphs)."""
    import yaml

    from vlm_agent.commands.demo import default_config_path

    with open(default_config_path("segmentation.yaml")) as f:
        return dict(((yaml.safe_load(f) or {}).get("segmenter") or {}).get("ros__parameters") or {})
