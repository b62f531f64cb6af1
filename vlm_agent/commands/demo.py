"""vlm-agent demo: the main job, end to end through ROS: navigate, segment, manipulate.

Runs a few validation episodes of each suite through the real ROS graph with the default models,
one graph per suite (`vlm-agent up` in a second process, `GraphProcess`), in this order:

* `nav`: `mujoco_sim` + `navid_planner` + `motion_executor` + `safety_supervisor` from
  `config/sim.yaml`. Per episode the simulator's reset publishes the instruction; the planner plans
  from camera frames with the NaVid model (`--nav-model`, default `checkpoints/navid_map`), the
  executor drives each primitive closed-loop on `/odom`, the supervisor gates `/cmd_vel`. Ends when
  the executor finishes a `stop`, the planner ends the episode, plans keep aborting, or
  `--episode-timeout` passes. Scored by the simulator (SR, SPL, navigation error).
* `seg`: `mujoco_sim` (seg suite) + `segmenter` (Sa2VA, `--seg-model`, default
  `checkpoints/sa2va_nano`) + `motion_executor` + `safety_supervisor` from
  `config/segmentation.yaml`: the referring expression on `segmentation/query`, then a short clip
  while the robot sways and drives 30 cm; every mask is scored against the simulator's ground truth
  at its frame's pose (first-frame mIoU as `eval --suite seg`, and the clip's mIoU).
* `manip-palme`, `manip-octopus`: `mujoco_sim` (manip suite) + `task_planner` (PaLM-E style with
  `--palme-model`, default `checkpoints/palme_tiny`; Octopus style with `--octopus-model`, default
  `checkpoints/octopus_tiny`) + `motion_executor` + `safety_supervisor` from
  `config/sim_manip.yaml`, with the `segmenter` node (the shipped Sa2VA model) as the task planner's
  perception (`perception: segmentation`, the default `--manip-perception segmenter`: skills ask
  `segmentation/query` and read the object's 3D point in the node's `segmentation/label`; the
  episode's furniture as its map file, approaches planned on the simulator's `map`), or with
  `--manip-perception ground_truth` reading the simulator's ground truth (an upper bound; the table
  says so; also what runs when no Sa2VA model is there). The segmenter node checks every mask with
  the attribute verifier (`SegmenterPerceptionConfig`'s defaults). Through ROS, on 20 val episodes:
  1.00 with PaLM-E and with Octopus (0.65 / 0.70 without the verifier), PaLM-E 0.90 with ground-truth
  masks. Scored by the simulator.

A default checkpoint that is not there skips its suite with the reason printed; a model directory
given on the command line must exist. Prints one results table (suite, planner and model,
perception, episodes, score, sim and wall time) and writes `<out>/results.json` (every episode) and,
per episode, a captioned contact sheet PNG (and a GIF) under `<out>/<suite>/`.

Every graph runs on sim time and, by default, as fast as it keeps up (`--real-time-factor 0`: the
simulator steps in lock-step with the controller while the robot moves and freely while it rests;
see `vlm_agent.nodes.mujoco_sim`).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

HELP = "the main job: navigate, segment, manipulate through the full ROS 2 graph in the embedded MuJoCo sim with the default models; results table and pictures"

SUITES = ("nav", "seg", "manip-palme", "manip-octopus")
# suite -> (shipped checkpoint under checkpoints/, command-line flag, args attribute)
SUITE_MODELS = {
    "nav": ("navid_map", "--nav-model", "nav_model"),
    "seg": ("sa2va_nano", "--seg-model", "seg_model"),
    "manip-palme": ("palme_tiny", "--palme-model", "palme_model"),
    "manip-octopus": ("octopus_tiny", "--octopus-model", "octopus_model"),
}
NAV_NODES = ("mujoco_sim", "navid_planner", "motion_executor", "safety_supervisor")
DEMO_NODES = NAV_NODES  # the nav graph (kept name)
SEG_NODES = ("mujoco_sim", "segmenter", "motion_executor", "safety_supervisor")
MANIP_NODES = ("mujoco_sim", "motion_executor", "safety_supervisor", "task_planner")
PERCEPTION_NAMES = {"segmentation": "segmenter", "ground_truth": "ground truth (sim, upper bound)"}


def add_arguments(parser) -> None:
    parser.add_argument("--suites", default=",".join(SUITES),
                        help=f"comma-separated suites to run, in this order: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--episodes", type=int, default=3, help="validation episodes per suite (default 3)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=0, help="episode seed")
    parser.add_argument("--nav-model", "--model", dest="nav_model", default="",
                        help="NaVid model directory (default: the shipped checkpoints/navid_map)")
    parser.add_argument("--seg-model", default="", help="Sa2VA model directory (default: the shipped checkpoints/sa2va_nano)")
    parser.add_argument("--palme-model", default="", help="PaLM-E-style model directory (default: the shipped checkpoints/palme_tiny)")
    parser.add_argument("--octopus-model", default="", help="Octopus-style model directory (default: the shipped checkpoints/octopus_tiny)")
    parser.add_argument("--manip-perception", default="segmenter", choices=("segmenter", "ground_truth"),
                        help="where the task planner's skills find objects: the segmenter node (default; ground truth when no Sa2VA "
                             "model is there), which the skills query, remember and search by turning the base, as in-process; or "
                             "the simulator's ground truth (an upper bound)")
    parser.add_argument("--config", default="", help="nav graph parameter YAML (default: the package's config/sim.yaml)")
    parser.add_argument("--max-steps", type=int, default=300,
                        help="nav: plans per episode before the planner stops itself (default 300, the horizon the model cards are measured at)")
    parser.add_argument("--manip-max-steps", type=int, default=10,
                        help="manip: skill calls per episode (PaLM-E steps; Octopus calls per program; default 10, about twice "
                             "what the scripted oracle needs); 0 = config/sim_manip.yaml's (20 / 50)")
    parser.add_argument("--manip-timeout", type=float, default=90.0,
                        help="manip: wall-clock seconds per task before the task planner cancels it (default 90)")
    parser.add_argument("--camera", default="320x240", help="seg and manip: the simulator's camera, WIDTHxHEIGHT px (default 320x240)")
    # The navigators were trained and measured on 64x64 frames of a 60-degree square camera; a 4:3
    # camera squashed to the model's square input is a different view (measured: the shipped model
    # dithered left and right through ROS on an episode it solves in 11 steps in-process).
    parser.add_argument("--nav-camera", default="64x64",
                        help="nav: the simulator's camera, WIDTHxHEIGHT px (default 64x64, the view the navigators were trained and measured on)")
    parser.add_argument("--episode-timeout", type=float, default=240.0,
                        help="nav and seg: wall-clock seconds per episode before a forced stop")
    parser.add_argument("--out", default="outputs/demo", help="folder for results.json and, per suite, contact sheets and GIFs")
    parser.add_argument("--real-time-factor", type=float, default=0.0,
                        help="simulated seconds per wall second (0 = as fast as the graph keeps up, the default; 1 = real time)")


def default_config_path(name: str = "sim.yaml") -> str:
    """config/<name> (default sim.yaml) from the source tree, else from the installed share folder (colcon)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "config", name)
    if os.path.isfile(here):
        return here
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("vlm_agent"), "config", name)


@dataclass
class SuitePlan:
    """One suite of the demo: its model directory (absolute), how it was chosen, or why it is skipped."""

    suite: str
    model_dir: str = ""
    model_label: str = ""
    skip: str = ""


def plan_suites(args, checkpoint_dir=None) -> list[SuitePlan]:
    """The suites `--suites` names, each with its model: the flag's directory (which must exist:
    FileNotFoundError), else the shipped checkpoint (`checkpoint_dir(name)`, default
    `models.registry.default_checkpoint_dir`: the source tree, else the installed share folder),
    skipped with the reason when that is missing. ValueError for an unknown suite or bad counts."""
    if checkpoint_dir is None:
        from vlm_agent.models.registry import default_checkpoint_dir as checkpoint_dir
    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    wanted = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SUITES]
    if unknown or not wanted:
        raise ValueError(f"--suites: unknown {unknown or 'empty list'}; choose from {', '.join(SUITES)}")
    plans = []
    for suite in SUITES:
        if suite not in wanted:
            continue
        name, flag, attr = SUITE_MODELS[suite]
        given = getattr(args, attr, "") or ""
        if given:
            path = os.path.abspath(given)
            if not os.path.isdir(path):
                raise FileNotFoundError(f"{flag} {path} is not a directory")
            plans.append(SuitePlan(suite, path, given))
            continue
        path = checkpoint_dir(name)
        if os.path.isfile(os.path.join(path, "config.json")):
            plans.append(SuitePlan(suite, os.path.abspath(path), f"checkpoints/{name}"))
        else:
            plans.append(SuitePlan(suite, skip=f"the default model checkpoints/{name} is not there ({path}); pass {flag} DIR"))
    return plans


def seg_model_for_manip(args, plans: list[SuitePlan], checkpoint_dir=None) -> tuple[str, str]:
    """(perception, Sa2VA model dir) for the manip graphs: ("segmentation", dir) with the segmenter
    in the graph when `--manip-perception segmenter` and a Sa2VA model is there (`--seg-model`, which
    must exist, or the shipped one), else ("ground_truth", "")."""
    if args.manip_perception != "segmenter":
        return "ground_truth", ""
    seg = next((p for p in plans if p.suite == "seg" and not p.skip), None)
    if seg is not None:
        return "segmentation", seg.model_dir
    return next((("segmentation", p.model_dir) for p in plan_suites(_with(args, suites="seg"), checkpoint_dir) if not p.skip),
                ("ground_truth", ""))


def _with(args, **changes):
    import argparse

    return argparse.Namespace(**{**vars(args), **changes})


def parse_camera(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--camera {text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    if not (16 <= width <= 1280 and 16 <= height <= 960):
        raise ValueError(f"--camera {text}: width 16..1280 and height 16..960 px")
    return width, height


def demo_parameters(config_path: str, episode, model_dir: str, max_steps: int, real_time_factor: float = 0.0,
                    camera: tuple[int, int] | None = None) -> dict:
    """The nav graph's parameter YAML: `config_path` with the first episode, the demo's model, the
    simulator's real-time factor and (`camera`, WIDTHxHEIGHT px) its camera set, every node but the
    simulator on sim time."""
    import yaml

    from vlm_agent.nodes.eval_client import episode_seed_index

    with open(config_path) as f:
        params = yaml.safe_load(f)
    seed, index = episode_seed_index(episode)
    sim = params.setdefault("mujoco_sim", {"ros__parameters": {}})["ros__parameters"]
    # The demo resets explicitly per episode; the reset publishes the instruction to the planner.
    sim.update(suite="nav", split=episode.split, episode_seed=seed, episode_index=index, reset_on_start=False, publish_instruction=True,
               real_time_factor=real_time_factor, use_sim_time=False)
    if camera is not None:
        sim.update(width=int(camera[0]), height=int(camera[1]))
    params.setdefault("/**", {"ros__parameters": {}})["ros__parameters"]["use_sim_time"] = True
    planner = params.setdefault("navid_planner", {"ros__parameters": {}})["ros__parameters"]
    planner["max_steps"] = max_steps
    if model_dir:
        planner["model_dir"] = model_dir
    return params


def seg_demo_parameters(episode, model_dir: str, camera: tuple[int, int] = (320, 240), real_time_factor: float = 0.0) -> dict:
    """The seg graph: `seg_client.seg_graph_parameters` (config/segmentation.yaml, the simulator on
    the episode with the camera, the segmenter on `model_dir` answering `segmentation/query` only)
    plus the executor and the supervisor of `eval_client.graph_parameters` (the clip's motion)."""
    from vlm_agent.nodes.eval_client import RosEvalConfig, graph_parameters
    from vlm_agent.nodes.seg_client import seg_graph_parameters
    from vlm_agent.sim.env import SimConfig

    sim_config = SimConfig(width=camera[0], height=camera[1])
    params = seg_graph_parameters(episode, {"backend": "sa2va", "model_dir": model_dir}, sim_config, real_time_factor=real_time_factor)
    motion = graph_parameters(episode, sim_config, RosEvalConfig(real_time_factor=real_time_factor))
    for section in ("motion_executor", "safety_supervisor"):
        params[section] = motion[section]
    return params


def manip_demo_parameters(episode, style: str, model_dir: str, perception: str = "ground_truth", seg_model_dir: str = "",
                          camera: tuple[int, int] = (320, 240), real_time_factor: float = 0.0, max_steps: int = 0,
                          episode_timeout_s: float = 240.0, furniture_map: str = "") -> tuple[dict, tuple[str, ...]]:
    """(parameters, nodes) of a manip graph: `manip_client.task_planner_graph_parameters`
    (config/sim_manip.yaml, the simulator on the episode with the camera, the executor and the
    supervisor of the manip eval) with task_planner in `style` on the builtin backend over
    `model_dir`, its `perception`, its episode timeout and (`max_steps` > 0) its skill-call budgets;
    for `perception` "segmentation" the segmenter node (config/segmentation.yaml's section, backend
    sa2va on `seg_model_dir`, queries only from `segmentation/query`, the attribute verifier as the
    in-process perception's defaults set it: `seg_client.perception_segmenter_parameters`) joins the
    graph, and the task planner reads the furniture from `furniture_map` (a file the client rewrites
    for each episode)."""
    from vlm_agent.nodes.manip_client import task_planner_graph_parameters
    from vlm_agent.sim.env import SimConfig

    if perception not in ("ground_truth", "segmentation"):
        raise ValueError(f"perception: ground_truth or segmentation, not {perception!r}")
    if perception == "segmentation" and not seg_model_dir:
        raise ValueError("perception segmentation needs a Sa2VA model directory")
    planner = {"style": style, "backend": "builtin", "model_dir": model_dir}
    params = task_planner_graph_parameters(episode, planner, SimConfig(width=camera[0], height=camera[1]),
                                           real_time_factor=real_time_factor)
    tp = params["task_planner"]["ros__parameters"]
    tp.update(perception=perception, episode_timeout_s=float(episode_timeout_s))
    if max_steps > 0:
        tp.update(palme_max_steps=max_steps, palme_max_model_calls=max_steps + max(2, max_steps // 2), octopus_max_calls=max_steps)
    nodes = MANIP_NODES
    if perception == "segmentation":
        from vlm_agent.nodes.manip_client import _segmentation_section
        from vlm_agent.nodes.seg_client import perception_segmenter_parameters

        seg = _segmentation_section()
        seg.update(backend="sa2va", model_dir=seg_model_dir, use_sim_time=True, use_instruction=False, query="", publish_overlay=False,
                   **perception_segmenter_parameters())
        params["segmenter"] = {"ros__parameters": seg}
        if furniture_map:
            tp["furniture_map"] = furniture_map
        tp["navigation"] = "map"  # positions only: plan the approach on the simulator's map (walls, furniture)
        nodes = MANIP_NODES + ("segmenter",)
    return params, nodes


def run(args) -> int:
    plans = plan_suites(args)
    if args.manip_max_steps < 0 or not 1.0 <= args.manip_timeout <= 86400.0:
        raise ValueError("--manip-max-steps must be >= 0 and --manip-timeout 1..86400 s")
    config_path = args.config or default_config_path()
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"--config {config_path} does not exist")
    camera = parse_camera(args.camera)
    perception, seg_model = "ground_truth", ""
    if any(p.suite.startswith("manip") and not p.skip for p in plans):
        perception, seg_model = seg_model_for_manip(args, plans)
        if args.manip_perception == "segmenter" and perception != "segmentation":
            print("demo: manipulation on the simulator's ground-truth perception (an upper bound): no Sa2VA model for the segmenter "
                  "(checkpoints/sa2va_nano is not there; pass --seg-model DIR)")
    os.makedirs(args.out, exist_ok=True)
    rtf = getattr(args, "real_time_factor", 0.0)
    print(f"vlm-agent demo: {args.episodes} {args.split} episode(s) per suite: "
          + ", ".join(p.suite + (" (skipped)" if p.skip else "") for p in plans))
    t_start = time.monotonic()
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for plan in plans:
        if plan.skip:
            skipped[plan.suite] = plan.skip
            print(f"demo: skipping {plan.suite}: {plan.skip}")
            continue
        out_dir = os.path.join(args.out, plan.suite)
        os.makedirs(out_dir, exist_ok=True)
        print(f"\n== {plan.suite}: model {plan.model_label} (graph log: {out_dir}/graph.log)")
        t0 = time.monotonic()
        try:
            if plan.suite == "nav":
                summary = _run_nav(args, plan, config_path, out_dir, rtf)
            elif plan.suite == "seg":
                summary = _run_seg(args, plan, camera, out_dir, rtf)
            else:
                summary = _run_manip(args, plan, perception, seg_model, camera, out_dir, rtf)
        except (RuntimeError, TimeoutError) as exc:
            summary = {"error": str(exc)[-3000:], "per_episode": []}
            print(f"demo: {plan.suite} failed: {exc}")
        summary.update(suite=plan.suite, model_dir=plan.model_dir, model=plan.model_label, wall_s=time.monotonic() - t0,
                       pictures=out_dir, graph_log=os.path.join(out_dir, "graph.log"))
        results[plan.suite] = summary
    report = {
        "split": args.split, "seed": args.seed, "episodes_per_suite": args.episodes, "real_time_factor": rtf,
        "wall_s": time.monotonic() - t_start, "order": [p.suite for p in plans], "suites": results, "skipped": skipped,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=2, default=float)
    print()
    print_table(report)
    print(f"wrote {args.out}/results.json and, per episode, a contact sheet under {args.out}/<suite>/ "
          f"({', '.join(results) or 'no suite ran'})")
    return 1 if any("error" in s for s in results.values()) else 0


def _episodes(suite: str, args):
    from vlm_agent.sim.episodes import make_episodes

    return make_episodes(suite, args.split, args.episodes, args.seed)


def _run_nav(args, plan: SuitePlan, config_path: str, out_dir: str, rtf: float) -> dict:
    from vlm_agent.nodes.demo_client import NavDemoClient
    from vlm_agent.nodes.eval_client import GraphProcess, RosEvalConfig

    episodes = _episodes("nav", args)
    params = demo_parameters(config_path, episodes[0], plan.model_dir, args.max_steps, rtf, parse_camera(args.nav_camera))
    rows = []
    with GraphProcess(params, log_path=os.path.join(out_dir, "graph.log"), nodes=NAV_NODES) as graph, \
            NavDemoClient(RosEvalConfig()) as client:
        planner = params.get("navid_planner", {}).get("ros__parameters", {})
        client.max_steps = int(planner.get("max_steps", client.max_steps))
        client.max_consecutive_aborts = int(planner.get("max_consecutive_aborts", client.max_consecutive_aborts))
        client.wait_ready(graph)
        for ep in episodes:
            rows.append(client.run_episode(ep, graph, args.episode_timeout, out_dir))
    metrics = {"success_rate": _mean(rows, "success"), "spl": _mean(rows, "spl"), "navigation_error": _mean(rows, "navigation_error")}
    return {"planner": "NaVid (navid_planner)", "perception": "camera only (end to end)", "episodes": len(rows), "metrics": metrics,
            "sim_time_s": sum(r["sim_time_s"] for r in rows), "wall_time_s": sum(r["wall_s"] for r in rows), "per_episode": rows}


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows) if rows else math.nan


def _run_seg(args, plan: SuitePlan, camera: tuple[int, int], out_dir: str, rtf: float) -> dict:
    from vlm_agent.nodes.demo_client import SegDemoClient
    from vlm_agent.nodes.eval_client import EpisodeSpans, GraphProcess, RosEvalConfig
    from vlm_agent.sim.metrics import aggregate_seg

    episodes = _episodes("seg", args)
    params = seg_demo_parameters(episodes[0], plan.model_dir, camera, rtf)
    fov = float(params["mujoco_sim"]["ros__parameters"].get("vertical_fov_deg", 60.0))
    rows, spans = [], EpisodeSpans()
    with GraphProcess(params, log_path=os.path.join(out_dir, "graph.log"), nodes=SEG_NODES) as graph, \
            SegDemoClient(RosEvalConfig(real_time_factor=rtf), camera=(camera[0], camera[1], fov), mask_timeout_s=args.episode_timeout) as client:
        client.wait_ready(graph)
        for ep in episodes:
            rows.append(client.run_episode(ep, graph, spans, out_dir))
    metrics = aggregate_seg(rows)
    return {"planner": "Sa2VA (segmenter)", "perception": "n/a (the segmenter is scored)", "episodes": len(rows), "metrics": metrics,
            "sim_time_s": spans.sim[1] - spans.sim[0], "wall_time_s": spans.wall[1] - spans.wall[0], "per_episode": rows,
            "scoring": "every mask after the reset against the simulator's ground truth at its frame's odometry pose; "
                       "miou = first masks, clip_miou = every mask of every clip (the robot sways and drives 30 cm)"}


def _run_manip(args, plan: SuitePlan, perception: str, seg_model: str, camera: tuple[int, int], out_dir: str, rtf: float) -> dict:
    from vlm_agent.nodes.demo_client import ManipDemoClient
    from vlm_agent.nodes.eval_client import EpisodeSpans, GraphProcess, RosEvalConfig
    from vlm_agent.sim.metrics import aggregate_manip

    style = plan.suite.split("-", 1)[1]
    episodes = _episodes("manip", args)
    furniture_map = ""
    if perception == "segmentation":  # the robot's map of the furniture: the simulator's, rewritten per episode
        from vlm_agent.skills.object_memory import write_furniture_map

        furniture_map = os.path.abspath(os.path.join(out_dir, "furniture_map.yaml"))
        write_furniture_map(furniture_map, episodes[0].world().furniture)
    params, nodes = manip_demo_parameters(episodes[0], style, plan.model_dir, perception, seg_model, camera, rtf,
                                          args.manip_max_steps, args.manip_timeout, furniture_map)
    planner = params["task_planner"]["ros__parameters"]
    rows, spans = [], EpisodeSpans()
    with GraphProcess(params, log_path=os.path.join(out_dir, "graph.log"), nodes=nodes) as graph, \
            ManipDemoClient(RosEvalConfig(real_time_factor=rtf), episode_timeout_s=args.manip_timeout,
                            segmenter="segmenter" in nodes, furniture_map=furniture_map) as client:
        client.wait_ready(graph)
        for ep in episodes:
            rows.append(client.run_episode(ep, graph, spans, out_dir, planner))
    label = {"palme": "PaLM-E style (task_planner)", "octopus": "Octopus style (task_planner)"}[style]
    seen = sorted({r["perception"] for r in rows}) or [perception]
    return {"planner": label, "perception": ", ".join(PERCEPTION_NAMES.get(p.split(" ")[0], p) for p in seen),
            "perception_model": seg_model if perception == "segmentation" else "", "episodes": len(rows),
            "metrics": aggregate_manip(rows), "sim_time_s": spans.sim[1] - spans.sim[0], "wall_time_s": spans.wall[1] - spans.wall[0],
            "per_episode": rows, "task_planner": {k: v for k, v in planner.items() if k in (
                "style", "backend", "model_dir", "perception", "palme_max_steps", "octopus_max_rounds", "episode_timeout_s")},
            **({"segmenter": {k: v for k, v in params["segmenter"]["ros__parameters"].items()
                              if k in ("backend", "model_dir", "verifier_model_dir", "verifier_min_match")}} if "segmenter" in params else {})}


def score_text(suite: str, summary: dict) -> str:
    """The table's score cell: nav SR / SPL, seg mIoU (first frame and clip), manip success."""
    m = summary.get("metrics") or {}
    if "error" in summary:
        return "failed (see results.json)"
    if suite == "nav":
        return f"SR {m.get('success_rate', math.nan):.2f}, SPL {m.get('spl', math.nan):.2f}"
    if suite == "seg":
        return f"mIoU {m.get('miou', math.nan):.2f} (clip {m.get('clip_miou', math.nan):.2f})"
    n = summary.get("episodes", 0)
    wins = round(m.get("success_rate", 0.0) * n) if n else 0
    return f"success {m.get('success_rate', math.nan):.2f} ({wins}/{n})"


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vlm-agent demo: the agent through ROS in the embedded MuJoCo sim ({report['split']} episodes, "
                        f"seed {report['seed']})")
    for col in ("suite", "planner / model", "perception", "episodes", "score", "sim / wall (s)"):
        table.add_column(col, overflow="fold")
    for suite in report.get("order") or list(report["suites"]) + list(report["skipped"]):
        if suite in report["skipped"]:
            table.add_row(suite, f"(no {SUITE_MODELS[suite][1]})", "", "0", f"skipped: checkpoints/{SUITE_MODELS[suite][0]} is not there", "")
            continue
        s = report["suites"][suite]
        times = f"{s.get('sim_time_s', math.nan):.0f} / {s['wall_s']:.0f}"
        perception = s.get("perception", "")
        if s.get("perception_model"):
            verifier = (s.get("segmenter") or {}).get("verifier_model_dir")
            checked = f" + {'attribute_verifier' if verifier == 'default' else os.path.basename(os.path.normpath(verifier))}" if verifier else ""
            perception += f" ({os.path.basename(os.path.normpath(s['perception_model']))}{checked})"
        table.add_row(suite, f"{s.get('planner', '')}\n{s.get('model', '')}", perception, str(s.get("episodes", 0)),
                      score_text(suite, s), times)
    table.add_row("all", "", "", "", "", f"wall {report['wall_s']:.0f}")
    Console(width=160).print(table)
