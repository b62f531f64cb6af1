"""Who plans the default navigator's steps, and what a plan costs: the NaVid model, the goal approach
or frontier exploration (planners/goal_approach.py), timed per planning call.

    .venv/bin/python benchmarks/navid_plan_sources.py [--model checkpoints/navid_map] [--split val --seed 0 \
        --episodes 10] [--threads 1] [--out benchmarks/navid_plan_sources_results.md]

Every episode is driven closed loop in-process, as `vlm-agent eval` does, by the planner with its
defaults (the model directory's planner_config.json). Each `plan()` call is timed whole: the map
update, the segmenter and verifier on every goal still to visit, and then either the model or the
map's path planner. All sources run in the same process on the same episodes, so their times compare
like with like on a shared machine. Written as a markdown table with the machine, and a JSON file.
"""
from __future__ import annotations

import collections
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.nav_closed_loop import episode_parser, run_line, start  # noqa: E402

SOURCES = ("model", "goal_approach", "explore")


def run(model_dir: str, episodes, size: int = 64, max_steps: int = 0) -> tuple[dict[str, list[float]], list[dict]]:
    """(plan times in ms by source, one row per episode) of the default planner on `episodes`."""
    from vlm_agent.evaluation.rollouts import _run_nav
    from vlm_agent.planners.navid_policy import make_navid_policy
    from vlm_agent.sim.env import NavEnv, SimConfig

    env = NavEnv(SimConfig(width=size, height=size, render_depth=True, max_steps=max_steps))
    policy = make_navid_policy(model_dir)
    planner = policy.planner
    times: dict[str, list[float]] = collections.defaultdict(list)
    plan = planner.plan

    def timed_plan(*args, **kwargs):
        t0 = time.perf_counter()
        result = plan(*args, **kwargs)
        times[result.source].append((time.perf_counter() - t0) * 1000.0)
        return result

    planner.plan = timed_plan
    rows = []
    try:
        for ep in episodes:
            m = _run_nav(env, policy, ep, None)
            rows.append({"episode_id": ep.episode_id, "task": ep.task, "success": bool(m["success"]), "steps": int(m["steps"]),
                         **{k: int(m.get(f"plans_{k}", 0)) for k in SOURCES}})
    finally:
        env.close()
    return dict(times), rows


def main(argv=None) -> int:
    parser = episode_parser(__doc__.split("\n")[0], "benchmarks/navid_plan_sources_results.md", seed=0, episodes=10)
    parser.add_argument("--model", default="checkpoints/navid_map")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    episodes = start(args)
    times, rows = run(args.model, episodes, max_steps=args.max_steps)
    total = sum(len(v) for v in times.values()) or 1
    lines = [f"# Who plans the navigator's steps, and at what cost ({args.split} seed {args.seed}, the first {args.episodes} episodes)", "",
             run_line("benchmarks/navid_plan_sources.py", argv, args.threads)
             + f" Model `{args.model}`; SR on these episodes: {sum(r['success'] for r in rows)}/{len(rows)}.", "",
             "| source | plans | share | mean ms | median ms | p95 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for source in SOURCES:
        t = sorted(times.get(source, []))
        if not t:
            lines.append(f"| {source} | 0 | 0.00 | | | |")
            continue
        p95 = t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
        lines.append(f"| {source} | {len(t)} | {len(t) / total:.2f} | {statistics.fmean(t):.1f} | {statistics.median(t):.1f} | {p95:.1f} |")
    lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"split": args.split, "seed": args.seed, "model": args.model, "episodes": rows,
                   "plan_ms": {k: [round(v, 2) for v in vals] for k, vals in times.items()}}, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
