"""Latency of one model call of the shipped manipulation planners, measured inside their loops.

    .venv/bin/python benchmarks/manip_planner_latency.py --threads 1 --episodes 20 --markdown benchmarks/manip_planner_results.md
    vlm-agent bench manip_planner_latency -- --episodes 5

Runs `checkpoints/palme_tiny` (one constrained step per call) and `checkpoints/octopus_tiny` (one
greedily decoded response per round) through `evaluate_manip_planner` on the same val episodes
(ground-truth perception, so only the model's time varies), interleaved episode by episode so load
from other processes hits both alike, and reports the backend call's wall time per model call
(median / p90 / max), the calls per episode and the success of the run. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=0)
_known, _ = _pre.parse_known_args()
if _known.threads:
    os.environ.setdefault("OMP_NUM_THREADS", str(_known.threads))
os.environ.setdefault("MUJOCO_GL", "egl")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TimedBackend:
    """Wraps a backend; records the wall time of each call (ms)."""

    def __init__(self, backend):
        self.backend, self.ms = backend, []

    def __call__(self, prompt, images):
        t0 = time.perf_counter()
        try:
            return self.backend(prompt, images)
        finally:
            self.ms.append((time.perf_counter() - t0) * 1000.0)


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="val")
    ap.add_argument("--markdown", default="", help="write the results table to this file")
    args = ap.parse_args(argv)

    import torch

    from vlm_agent.evaluation.manip_planners import run_manip_episode
    from vlm_agent.models.registry import default_checkpoint_dir
    from vlm_agent.planners.manip_backends import make_manip_backend
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.skills.sim_skills import SimSkills
    from vlm_agent.telemetry import cpu_model_name

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    styles = ("palme", "octopus")
    timed = {s: TimedBackend(make_manip_backend(s, "builtin", model_dir=default_checkpoint_dir(s))) for s in styles}
    success = {s: [] for s in styles}
    env = NavEnv(SimConfig(width=64, height=64, render_depth=False))
    episodes = make_episodes("manip", args.split, args.episodes, seed=0)
    for ep in episodes:
        for s in styles:  # interleaved episode by episode
            env.reset(ep)
            run_manip_episode(s, timed[s], env, SimSkills(env), ep, lambda: [env.render()[0]])
            success[s].append(float(env.manip_metrics()["success"]))
    env.close()
    rows = []
    for s in styles:
        ms = timed[s].ms
        rows.append(f"| {s} ({os.path.basename(default_checkpoint_dir(s))}) | {len(ms)} | {len(ms) / len(episodes):.1f} | "
                    f"{statistics.median(ms):.1f} / {pct(ms, 0.9):.1f} / {max(ms):.1f} | {sum(success[s]) / len(success[s]):.2f} |")
    text = "\n".join([
        "# Manipulation planners: latency of one model call",
        "",
        f"Recorded {datetime.datetime.now():%Y-%m-%d %H:%M} by `python benchmarks/manip_planner_latency.py --threads {args.threads} "
        f"--episodes {args.episodes}`.",
        "",
        "## Machine",
        f"- CPU: {cpu_model_name()}, {os.cpu_count()} cores visible; load average at start {load:.2f}",
        f"- threads: torch {args.threads}; torch {torch.__version__}",
        "",
        "## Settings",
        f"- the shipped checkpoints, {args.episodes} {args.split} episodes (seed 0), ground-truth perception, 64 px camera; "
        "both planners interleaved episode by episode",
        "- a call: PaLM-E = prompt encoding + one grammar-constrained step; Octopus = prompt encoding + a greedily decoded "
        "response (explanation, subtasks, program, target state)",
        "",
        "| planner | model calls | calls per episode | ms per call (median / p90 / max) | success |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
