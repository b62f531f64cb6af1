"""vlm-agent demo: the main job, end to end through ROS.

Starts the embedded-sim graph (`mujoco_sim` + `navid_planner` + `motion_executor` +
`safety_supervisor`) from `config/sim.yaml` in a second process, then for each validation episode:
sets the simulator's episode parameters, resets it (the simulator publishes the instruction on
`/vlm_agent/instruction`), and watches the real pipeline run: the planner plans from camera
frames with the default NaVid model, the executor drives the primitives closed-loop on `/odom`,
the supervisor gates `/cmd_vel`. An episode ends when the executor finishes a `stop` (the model's,
or the planner's own on its step limit or an error) or the wall-clock limit passes (then the
demo calls `/vlm_agent/stop`). Prints a results table and writes, per episode, a contact sheet
PNG and a GIF of the camera stream, plus `results.json`.

The graph runs on sim time and, by default, as fast as it keeps up (`--real-time-factor 0`: the
simulator steps in lock-step with the controller while the robot moves and freely while it rests;
see `vlm_agent.nodes.mujoco_sim`); `results.json` reports `sim_time_s` and `wall_time_s`.
"""
from __future__ import annotations

import json
import os
import time

from vlm_agent.nodes.eval_client import GraphProcess, RosEvalClient, RosEvalConfig

HELP = "the main job: embedded MuJoCo sim + the full ROS 2 graph + the default NaVid model; results table and episode videos"

DEMO_NODES = ("mujoco_sim", "navid_planner", "motion_executor", "safety_supervisor")


def add_arguments(parser) -> None:
    parser.add_argument("--episodes", type=int, default=3, help="validation episodes to run (default 3)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=0, help="episode seed")
    parser.add_argument("--model", default="", help="NaVid model directory (default: the planner's shipped default, checkpoints/navid_film)")
    parser.add_argument("--config", default="", help="graph parameter YAML (default: the package's config/sim.yaml)")
    parser.add_argument("--max-steps", type=int, default=40, help="plans per episode before the planner stops itself")
    parser.add_argument("--episode-timeout", type=float, default=240.0, help="wall-clock seconds per episode before a forced stop")
    parser.add_argument("--out", default="outputs/demo", help="folder for results.json, contact sheets and GIFs")
    parser.add_argument("--real-time-factor", type=float, default=0.0,
                        help="simulated seconds per wall second (0 = as fast as the graph keeps up, the default; 1 = real time)")


def default_config_path(name: str = "sim.yaml") -> str:
    """config/<name> (default sim.yaml) from the source tree, else from the installed share folder (colcon)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "config", name)
    if os.path.isfile(here):
        return here
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("vlm_agent"), "config", name)


def demo_parameters(config_path: str, episode, model_dir: str, max_steps: int, real_time_factor: float = 0.0) -> dict:
    """The graph's parameter YAML: `config_path` with the first episode, the demo's model and the
    simulator's real-time factor set, every node but the simulator on sim time."""
    import yaml

    from vlm_agent.nodes.eval_client import episode_seed_index

    with open(config_path) as f:
        params = yaml.safe_load(f)
    seed, index = episode_seed_index(episode)
    sim = params.setdefault("mujoco_sim", {"ros__parameters": {}})["ros__parameters"]
    # The demo resets explicitly per episode; the reset publishes the instruction to the planner.
    sim.update(suite="nav", split=episode.split, episode_seed=seed, episode_index=index, reset_on_start=False, publish_instruction=True,
               real_time_factor=real_time_factor, use_sim_time=False)
    params.setdefault("/**", {"ros__parameters": {}})["ros__parameters"]["use_sim_time"] = True
    planner = params.setdefault("navid_planner", {"ros__parameters": {}})["ros__parameters"]
    planner["max_steps"] = max_steps
    if model_dir:
        planner["model_dir"] = model_dir
    return params


def run(args) -> int:
    from vlm_agent.sim.episodes import make_episodes

    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    config_path = args.config or default_config_path()
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"--config {config_path} does not exist")
    model_dir = os.path.abspath(args.model) if args.model else ""
    if model_dir and not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model {model_dir} is not a directory")
    os.makedirs(args.out, exist_ok=True)
    episodes = make_episodes("nav", args.split, args.episodes, args.seed)
    params = demo_parameters(config_path, episodes[0], model_dir, args.max_steps, getattr(args, "real_time_factor", 0.0))

    print(f"vlm-agent demo: {len(episodes)} {args.split} episodes, graph {', '.join(DEMO_NODES)} (log: {args.out}/graph.log)")
    rows = []
    t_start = time.monotonic()
    with GraphProcess(params, log_path=os.path.join(args.out, "graph.log"), nodes=DEMO_NODES) as graph, DemoClient(RosEvalConfig()) as client:
        planner = params.get("navid_planner", {}).get("ros__parameters", {})
        client.max_steps = int(planner.get("max_steps", client.max_steps))
        client.max_consecutive_aborts = int(planner.get("max_consecutive_aborts", client.max_consecutive_aborts))
        client.wait_ready(graph)
        for ep in episodes:
            rows.append(client.run_episode(ep, graph, args.episode_timeout, args.out))
    summary = {
        "episodes": len(rows),
        "success_rate": sum(r["success"] for r in rows) / len(rows),
        "spl": sum(r["spl"] for r in rows) / len(rows),
        "navigation_error": sum(r["navigation_error"] for r in rows) / len(rows),
        "wall_s": time.monotonic() - t_start,
        # Over the episodes (from each reset to its result): simulated and wall seconds.
        "sim_time_s": sum(r["sim_time_s"] for r in rows),
        "wall_time_s": sum(r["wall_s"] for r in rows),
        "real_time_factor": getattr(args, "real_time_factor", 0.0),
        "model_dir": model_dir or "checkpoints/navid_film",
        "per_episode": rows,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print_table(rows, summary)
    if summary["wall_time_s"] > 0:
        print(f"simulated {summary['sim_time_s']:.1f} s in {summary['wall_time_s']:.1f} s of wall time "
              f"({summary['sim_time_s'] / summary['wall_time_s']:.1f}x real time)")
    print(f"wrote {args.out}/results.json and a contact sheet + GIF per episode")
    return 0


def print_table(rows: list[dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vlm-agent demo: NaVid planner through ROS in the embedded MuJoCo sim")
    for col in ("episode", "instruction", "success", "SPL", "NE (m)", "plans", "planner ms", "ended by"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["episode_id"], r["instruction"], "yes" if r["success"] else "no", f"{r['spl']:.2f}",
            f"{r['navigation_error']:.2f}", str(r["plans"]), f"{r['planner_latency_ms']:.0f}", r["end_reason"],
        )
    table.add_row("all", "", f"SR {summary['success_rate']:.2f}", f"{summary['spl']:.2f}", f"{summary['navigation_error']:.2f}", "", "", "")
    Console(width=160).print(table)


class DemoClient(RosEvalClient):
    """The ROS eval client (sim services, camera/odometry/executor subscriptions) that also watches
    plans and records the camera stream, but never publishes plans itself: the planner node does."""

    def __init__(self, config):
        super().__init__(config)
        self.plans: list[dict] = []
        self.frames: list = []
        self.recording = False
        self.planner_status: dict[str, str] = {}
        # The graph's planner limits (set from the demo's parameters before the episodes run).
        self.max_steps = 100
        self.max_consecutive_aborts = 3

    def __enter__(self):
        super().__enter__()
        from std_msgs.msg import String

        from diagnostic_msgs.msg import DiagnosticArray

        from vlm_agent.nodes.base import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, LATCHED_QOS

        self.node.create_subscription(String, "/vlm_agent/plan", self._on_plan, LATCHED_QOS)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_status, DIAGNOSTICS_QOS)
        return self

    def _on_status(self, msg) -> None:
        for status in msg.status:
            if status.name == "/navid_planner":
                self.planner_status = {kv.key: kv.value for kv in status.values}

    def _on_plan(self, msg) -> None:
        try:
            self.plans.append(json.loads(msg.data))
        except ValueError:
            pass

    def _on_rgb(self, msg) -> None:
        super()._on_rgb(msg)
        if self.recording and self.latest.rgb is not None:
            self.frames.append(self.latest.rgb)

    def _episode_finished(self, instruction: str) -> str | None:
        """The end reason by the rule shared with `eval --ros` (`planner_loop.episode_end_reason`): the
        executor finished a `stop` plan of this episode, the planner ended the episode itself,
        `max_consecutive_aborts` of its plans aborted in a row, or `max_steps` plans; else None."""
        from vlm_agent.planners.planner_loop import episode_end_reason

        ours = {p.get("plan_id"): p for p in self.plans if p.get("instruction") == instruction}
        stopped_by, aborts_in_row, last_abort, final = None, 0, "", {}
        for state in self.latest.states:
            if state.get("plan_id") in ours and state.get("state") in ("done", "aborted"):
                final[state["plan_id"]] = state
        for plan_id in sorted(final):
            state = final[plan_id]
            if state["state"] == "done" and state.get("reason") == "stop":
                stopped_by = ours[plan_id].get("error") or "model said stop"
            if state["state"] == "aborted":
                aborts_in_row, last_abort = aborts_in_row + 1, str(state.get("reason") or "")
            else:
                aborts_in_row = 0
        status = self.planner_status
        planner_reason = None
        if ours and status.get("loop_state") == "finished" and instruction.startswith(status.get("instruction", "\0")):
            planner_reason = status.get("finish_reason") or "finished"
        return episode_end_reason(
            stopped_by=stopped_by, steps=len(final), max_steps=self.max_steps, aborts_in_row=aborts_in_row,
            max_consecutive_aborts=self.max_consecutive_aborts, last_abort_reason=last_abort, planner_reason=planner_reason,
        )

    def run_episode(self, ep, graph, timeout_s: float, out_dir: str) -> dict:
        from std_srvs.srv import Trigger

        from vlm_agent.sim.video import write_video

        self.plans.clear()
        self.frames = []
        self.planner_status = {}
        self.latest.states.clear()
        info = self.reset_episode(ep, graph)
        self.recording = True
        print(f"[{ep.episode_id}] {info.get('instruction', ep.instruction)!r}")
        start = time.monotonic()
        try:
            self.spin_until(lambda: self._episode_finished(ep.instruction) is not None, timeout_s, "stop from the planner", graph)
            end_reason = self._episode_finished(ep.instruction)
        except TimeoutError:
            end_reason = f"demo timeout {timeout_s:g} s"
            stop = self.node.create_client(Trigger, "/vlm_agent/stop")
            if stop.wait_for_service(timeout_sec=2.0):
                self.call(stop, Trigger.Request(), "/vlm_agent/stop", graph)
        self.recording = False
        metrics = self.result(graph)
        ours = [p for p in self.plans if p.get("instruction") == ep.instruction]
        latencies = [p.get("latency_s") or 0.0 for p in ours]
        png = gif = ""
        if self.frames:
            png, gif = write_video(out_dir, ep, self.frames[:: max(1, len(self.frames) // 120)])
        row = {
            "episode_id": ep.episode_id,
            "instruction": ep.instruction,
            "success": float(metrics.get("success", 0.0)),
            "spl": float(metrics.get("spl", 0.0)),
            "navigation_error": float(metrics.get("navigation_error", float("nan"))),
            "plans": len(ours),
            "planner_latency_ms": 1e3 * sum(latencies) / max(1, len(latencies)),
            "end_reason": end_reason,
            "wall_s": time.monotonic() - start,
            "sim_time_s": float(metrics.get("sim_time", float("nan"))) - float(info.get("sim_time", float("nan"))),
            "contact_sheet": png,
            "gif": gif,
            "raw_text_examples": [p.get("raw_text", "") for p in ours[:3]],
        }
        print(
            f"[{ep.episode_id}] success={row['success']:.0f} SPL={row['spl']:.2f} "
            f"NE={row['navigation_error']:.2f} m plans={row['plans']} ({end_reason})"
        )
        return row
