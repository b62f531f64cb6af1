"""vlm-agent eval: score a policy on the embedded simulator's nav / manip / seg suites."""
from __future__ import annotations

HELP = "evaluate a policy on the embedded simulator (nav SR/SPL/NE/OSR/TL, manip success, seg mIoU/cIoU)"


def add_arguments(parser) -> None:
    parser.add_argument("--suite", required=True, choices=["nav", "manip", "seg"])
    parser.add_argument("--policy", default="oracle", help="registered policy name (oracle, random, colour, navid, palme, octopus, ...)")
    parser.add_argument("--model", default=None, help="model directory for learned policies")
    parser.add_argument("--device", default=None, help="torch device of a learned policy's model: cpu (default), cuda, cuda:N, mps")
    parser.add_argument("--backend", default=None, choices=["builtin", "transformers", "remote", "oracle"],
                        help="model backend of a learned planner: builtin (the project's model in --model; the default with --model), "
                             "transformers (an image-text-to-text directory in --model), remote (an OpenAI-compatible server, --remote-url), "
                             "oracle (palme/octopus only: the privileged scripted backend, an upper bound)")
    parser.add_argument("--remote-url", default=None, help="base URL of the OpenAI-compatible server for --backend remote")
    parser.add_argument("--remote-model", default=None, help="model name sent to the remote server")
    parser.add_argument("--policy-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the learned policy (for navid: a NavidPlannerConfig field, e.g. spin_recovery_deg=360); repeatable")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--json", default=None, help="write the results (and per-episode metrics) to this JSON file")
    parser.add_argument("--video", default=None, help="directory for a contact sheet PNG and an animated GIF per episode")
    parser.add_argument("--ros", action="store_true", help="run the episodes through the mujoco_sim node and real ROS topics")
    parser.add_argument("--width", type=int, default=128, help="camera width (px)")
    parser.add_argument("--height", type=int, default=128, help="camera height (px)")
    parser.add_argument("--fov", type=float, default=60.0, help="vertical field of view (degrees)")
    parser.add_argument("--shadows", action="store_true", help="render shadows (slower)")
    parser.add_argument("--clip-frames", type=int, default=None,
                        help="seg: frames per episode clip, the robot moving (default 8; 1 = the start frame only); every frame is scored")
    parser.add_argument("--real-time-factor", type=float, default=0.0,
                        help="with --ros: simulated seconds per wall second (0 = as fast as the graph keeps up, the default)")
    parser.add_argument("--perception", default="ground_truth", choices=["ground_truth", "segmenter"],
                        help="manip with --policy palme/octopus, in-process: where the skills find objects: ground_truth (the simulator's "
                             "poses, an upper bound; the default) or segmenter (a referring segmenter on the robot's camera + depth; "
                             "furniture from the map)")
    parser.add_argument("--seg-model", default=None, help="with --perception segmenter: the saved sa2va model directory")
    parser.add_argument("--perception-param", action="append", default=[], metavar="KEY=VALUE",
                        help="with --perception segmenter: a SegmenterPerceptionConfig field (e.g. min_score=0.3); repeatable; "
                             "with --ros only verifier=DIR|default and verifier_min_match=X (the segmenter node's attribute verifier)")
    parser.add_argument("--seg-backend", default="sa2va", choices=["sa2va", "sa2va_official", "oracle"],
                        help="with --perception segmenter: sa2va (--seg-model, the default), sa2va_official (--seg-model) or oracle "
                             "(ground-truth masks: the upper bound of the segmenter path, privileged)")


def _perception_kwargs(args) -> dict:
    """make_policy keywords for --perception; ValueError where it does not apply."""
    perception = getattr(args, "perception", "ground_truth") or "ground_truth"
    if perception == "ground_truth":
        if getattr(args, "perception_param", None):
            raise ValueError("--perception-param applies to --perception segmenter")
        return {}
    if args.suite != "manip" or args.policy not in ("palme", "octopus"):
        raise ValueError("--perception segmenter applies to --suite manip with --policy palme or octopus")
    out = {"perception": perception, "seg_model_dir": getattr(args, "seg_model", None), "seg_backend": getattr(args, "seg_backend", "sa2va")}
    from vlm_agent.config import parse_key_values

    seg_params = parse_key_values(getattr(args, "perception_param", None) or [], "--perception-param")
    if args.ros:
        from vlm_agent.nodes.seg_client import ROS_PERCEPTION_PARAMS, perception_segmenter_parameters

        if set(seg_params) - set(ROS_PERCEPTION_PARAMS):
            raise ValueError("--perception-param applies in-process (through ROS the task_planner's parameters set the perception), "
                             f"except {' and '.join(ROS_PERCEPTION_PARAMS)} (the segmenter node's attribute verifier)")
        if out["seg_backend"] == "sa2va_official":
            raise ValueError("--ros --perception segmenter runs the segmenter node with --seg-backend sa2va or oracle")
        perception_segmenter_parameters(seg_params)  # bad values fail here, before a graph starts
        if seg_params:
            out["seg_params"] = seg_params
        return out
    if seg_params:
        out["seg_params"] = seg_params
    return out


def _perception_fields(result) -> dict:
    """manip: "perception" / "upper_bound" as the episodes report them (ground truth where a policy does
    not say: the evaluator's skills), and "locate" for the segmenter (all episodes' locate calls)."""
    per = result.per_episode
    label = next((m["perception"] for m in per if m.get("perception")), None)
    if label is None:
        from vlm_agent.skills.perception import GROUND_TRUTH_LABEL

        return {"perception": GROUND_TRUTH_LABEL, "upper_bound": True}
    out = {"perception": label, "upper_bound": all(bool(m.get("upper_bound")) for m in per if "upper_bound" in m)}
    if any("locate" in m for m in per):
        from vlm_agent.skills.segmenter_perception import merge_locate_summaries

        out["locate"] = merge_locate_summaries(m.get("locate") for m in per)
    return out


def _run_ros(args, episodes, policy, config):
    """The same episodes through the real graph, driven by `vlm_agent.nodes.eval_client.run_ros_episodes`:
    nav: mujoco_sim + motion_executor + safety_supervisor, `policy` decides in this process; manip:
    the same + the task_planner node (style and backend from --policy / --backend / --model; `policy`
    unused); seg: mujoco_sim + the segmenter node (backend from --policy; `policy` unused).
    Returns (EvalResult, timing) with timing = {"sim_time_s", "wall_time_s"} over the episodes."""
    import inspect
    import time

    from vlm_agent.evaluation.rollouts import EvalResult
    from vlm_agent.sim.metrics import aggregate_manip, aggregate_nav, aggregate_seg

    try:
        from vlm_agent.nodes.eval_client import RosEvalConfig, run_ros_episodes
    except ImportError as exc:
        raise ValueError(f"--ros needs vlm_agent.nodes.eval_client.run_ros_episodes (the ROS evaluation client): {exc}") from exc
    ros_config = RosEvalConfig(real_time_factor=getattr(args, "real_time_factor", 0.0))
    offered = {"suite": args.suite, "policy_name": args.policy, "config": config, "video_dir": args.video, "split": args.split, "seed": args.seed,
               "ros_config": ros_config,
               "model_dir": args.model, "backend": args.backend, "device": args.device,
               "remote_url": getattr(args, "remote_url", None), "remote_model": getattr(args, "remote_model", None),
               **({k: v for k, v in _perception_kwargs(args).items() if k in ("perception", "seg_backend", "seg_model_dir", "seg_params")}
                  if args.suite == "manip" else {})}
    params = inspect.signature(run_ros_episodes).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if accepts_any or k in params}
    t0 = time.perf_counter()
    out = run_ros_episodes(episodes, policy, **kwargs)
    wall = time.perf_counter() - t0
    if isinstance(out, EvalResult):
        return out, {"sim_time_s": float("nan"), "wall_time_s": out.wall_s}
    per = out.get("per_episode", []) if isinstance(out, dict) else list(out)
    agg = {"nav": aggregate_nav, "manip": aggregate_manip, "seg": aggregate_seg}[args.suite]
    if isinstance(out, dict) and isinstance(out.get("metrics"), dict):
        metrics = out["metrics"]  # with its held-out and breakdown figures
    else:
        metrics = agg(per) if per else {k: v for k, v in out.items() if isinstance(v, (int, float))}
    if isinstance(out, dict) and "env_steps" in out:
        steps = int(out["env_steps"])
    else:
        steps = sum(int(m.get("steps", 1)) for m in per) if per else 0
    timing = {
        "sim_time_s": float(out.get("sim_time_s", float("nan"))),
        "wall_time_s": float(out.get("wall_time_s", wall)),
        "real_time_factor": ros_config.real_time_factor,
        "sim_time": "simulated seconds from the first reset to the last result (mujoco_sim's /clock)",
    }
    for key in ("upper_bound", "task_planner", "segmenter", "seg_scoring"):
        if isinstance(out, dict) and key in out:
            timing[key] = out[key]
    return EvalResult(args.suite, args.policy, args.split, args.seed, len(episodes), metrics, per, steps, wall), timing


def run(args) -> int:
    import json

    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from vlm_agent.config import parse_key_values
    from vlm_agent.devices import check_device
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import EvalResult, evaluate
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    policy_kw = {"device": check_device(args.device)} if args.device else {}
    policy_kw.update({k: getattr(args, k) for k in ("backend", "remote_url", "remote_model") if getattr(args, k, None)})
    policy_kw.update(_perception_kwargs(args))
    policy_params = parse_key_values(getattr(args, "policy_param", None) or [])
    policy_kw.update(policy_params)
    console = Console(stderr=True)
    config = SimConfig(width=args.width, height=args.height, vertical_fov_deg=args.fov, shadows=args.shadows,
                       render_depth=args.suite == "nav")
    episodes = make_episodes(args.suite, args.split, args.episodes, args.seed)
    env = NavEnv(config)
    if args.ros and args.suite != "nav":
        policy = None  # the task_planner / segmenter node runs the model in the graph
    else:
        policy = make_policy(args.policy, args.suite, model_dir=args.model, env=env, seed=args.seed, **policy_kw)
    if args.ros:
        result, timing = _run_ros(args, episodes, policy, config)
    else:
        timed = _PrimitiveTimer(policy) if args.suite == "nav" else policy
        physics_s = [0.0]  # MuJoCo time per episode (a reset makes new MjData), summed
        bar = tqdm(total=len(episodes), desc=f"eval {args.suite}/{args.policy}", unit="ep", file=None)
        successes = []

        def progress(i, m):
            physics_s[0] += float(getattr(env.data, "time", 0.0))
            successes.append(m.get("success", m.get("iou", 0.0)))
            bar.set_postfix(score=f"{sum(successes) / len(successes):.2f}")
            bar.update(1)

        clip = {"seg_clip_frames": args.clip_frames} if getattr(args, "clip_frames", None) else {}
        result = evaluate(args.suite, timed, episodes, env, policy_name=args.policy, split=args.split, seed=args.seed,
                          video_dir=args.video, progress=progress, **clip)
        bar.close()
        if args.suite == "nav":
            timing = {"sim_time_s": timed.seconds, "wall_time_s": result.wall_s,
                      "sim_time": "nominal robot time of the executed primitives at the ROS graph's motion profile (no waiting)"}
        else:
            timing = {"sim_time_s": physics_s[0], "wall_time_s": result.wall_s,
                      "sim_time": "MuJoCo physics time stepped by the skills"}
        if args.suite == "manip":
            timing.update(_perception_fields(result))
    close = getattr(policy, "close", None) if args.suite == "manip" else None
    if callable(close):  # e.g. the segmenter perception's renderer
        close()
    env.close()
    table = Table(title=f"{args.suite} / {args.policy} / {args.split} ({result.episodes} episodes, seed {args.seed})")
    table.add_column("metric")
    table.add_column("all", justify="right")
    held = result.metrics.get("held_out")
    if held:
        table.add_column(f"held-out targets ({held['episodes']})", justify="right")
    for k, v in result.metrics.items():
        if k in ("held_out", "breakdown"):
            continue
        row = [k, f"{v:.3f}"]
        if held:
            row.append(f"{held.get(k, float('nan')):.3f}")
        table.add_row(*row)
    table.add_row("env_steps_per_second", f"{result.env_steps_per_second:.1f}", *([""] if held else []))
    wall_time = timing["wall_time_s"]
    table.add_row("sim_time_s", f"{timing['sim_time_s']:.1f}", *([""] if held else []))
    table.add_row("wall_time_s", f"{wall_time:.1f}", *([""] if held else []))
    table.add_row("sim_time / wall_time", f"{timing['sim_time_s'] / wall_time if wall_time > 0 else float('nan'):.2f}", *([""] if held else []))
    Console().print(table)
    if "perception" in timing:
        console.print(f"perception: {timing['perception']}" + ("" if timing["upper_bound"] else " (not an upper bound)"))
    if timing.get("locate"):
        loc = timing["locate"]
        console.print(f"locate calls: {loc['calls']} (segmented in view {loc['view']}, after turning {loc['turned']}, from memory {loc['memory']}, "
                      f"map {loc['map']}, not found {loc['not_found']}, no object at the mask {loc['no_object']}); "
                      f"centroid error mean {loc['mean_error_m']:.3f} m, max {loc['max_error_m']:.3f} m")
    groups = result.metrics.get("breakdown")
    if groups and args.suite == "seg":
        by = Table(title="by task type, colour-shape pair and phrasing (first frame; clip = every frame)")
        for col in ("group", "episodes", "mIoU", "cIoU", "clip mIoU", "clip cIoU"):
            by.add_column(col, justify="right" if col != "group" else "left")
        for name, m in groups.items():
            by.add_row(name, str(m["episodes"]), *(f"{m.get(k, float('nan')):.3f}" for k in ("miou", "ciou", "clip_miou", "clip_ciou")))
        Console().print(by)
    elif groups and args.suite == "manip":
        by = Table(title="by task type, colour-shape pair and phrasing")
        for col in ("group", "episodes", "success"):
            by.add_column(col, justify="right" if col != "group" else "left")
        for name, m in groups.items():
            by.add_row(name, str(m["episodes"]), f"{m['success_rate']:.3f}")
        Console().print(by)
    elif groups:
        by = Table(title="by task type, colour-shape pair and phrasing")
        for col in ("group", "episodes", "SR", "SPL", "NE (m)", "OSR"):
            by.add_column(col, justify="right" if col != "group" else "left")
        for name, m in groups.items():
            by.add_row(name, str(m["episodes"]), f"{m['success_rate']:.3f}", f"{m['spl']:.3f}", f"{m['navigation_error']:.2f}", f"{m['oracle_success_rate']:.3f}")
        Console().print(by)
    if args.json:
        with open(args.json, "w") as f:
            extra = {"policy_params": policy_params} if policy_params else {}
            if policy_kw.get("seg_params"):
                extra["perception_params"] = policy_kw["seg_params"]
            json.dump({**result.to_json_dict(), **timing, **extra}, f, indent=2, default=float)
        console.print(f"wrote {args.json}")
    if args.video:
        console.print(f"wrote contact sheets and GIFs to {args.video}/")
    return 0


class _PrimitiveTimer:
    """Wraps an in-process nav policy and adds up the time its primitives take on the robot: each
    forward or turn at the speed profile the ROS graph's motion executor uses (`RosEvalConfig`),
    `stop` none. In-process episodes step primitives instantly; this is their simulated duration."""

    def __init__(self, policy):
        from vlm_agent.nodes.eval_client import RosEvalConfig

        self.policy = policy
        self.profile = RosEvalConfig()
        self.seconds = 0.0

    def reset(self, episode):
        return self.policy.reset(episode)

    def act(self, observation):
        from vlm_agent.skills.motion import profile_time

        primitive = self.policy.act(observation)
        p = self.profile
        if primitive.kind == "forward":
            self.seconds += profile_time(primitive.distance_m, p.max_linear_speed_mps, p.linear_accel_mps2)
        elif primitive.kind in ("turn_left", "turn_right"):
            self.seconds += profile_time(primitive.yaw_rad, p.max_angular_speed_radps, p.angular_accel_radps2)
        return primitive

    def __getattr__(self, name):
        return getattr(self.policy, name)
