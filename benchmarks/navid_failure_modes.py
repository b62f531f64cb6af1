"""Why a NaVid model's episodes fail: never saw the goal, saw it but never got there, or got there
and did not stop (issue 16).

    .venv/bin/python benchmarks/navid_failure_modes.py checkpoints/navid_map [more model dirs] \
        [--split val --seed 1 --episodes 100] [--out benchmarks/navid_failure_modes_results.md]

Every model drives the first `--episodes` of (split, seed) closed loop, as `vlm-agent eval` does
(`evaluation.rollouts._run_nav`). At every step the ground truth is read beside it, never by the
model: how many pixels of the final goal object are in the camera's frame (the renderer's
segmentation, at the model's 64 px) and how far the base is from it. Each failed episode gets the
first of these that holds:

* goal never in view: fewer than `--min-pixels` goal pixels in every frame (an exploration failure);
* seen, never reached: the goal was in view, but the base never came within the success distance;
* reached, not stopped there: the base was within the success distance at some step, and the
  episode ended elsewhere.

Also per failed episode: how it ended (a `stop`, or the step limit), and whether the object nearest
the final pose, within 1 m, shares the goal's colour or shape (a look-alike stop). Written as a
markdown table by task type (with the machine) and a JSON file with one row per episode.
"""
from __future__ import annotations

import collections
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.nav_closed_loop import episode_parser, run_line, start  # noqa: E402

MODES = ("success", "goal never in view", "seen, never reached", "reached, not stopped there")


def classify(success: bool, max_goal_pixels: int, min_distance_m: float, success_distance_m: float, min_pixels: int = 2) -> str:
    """One of MODES (see the module docstring)."""
    if success:
        return "success"
    if max_goal_pixels < min_pixels:
        return "goal never in view"
    if min_distance_m > success_distance_m:
        return "seen, never reached"
    return "reached, not stopped there"


class _Watcher:
    """The policy, with the ground truth read at every step (goal pixels in the frame, distance)."""

    def __init__(self, policy, env):
        self.policy, self.env = policy, env
        self.max_pixels, self.min_distance, self.goal = 0, math.inf, None

    def reset(self, episode) -> None:
        self.goal = episode.goal_objects[-1]
        self.max_pixels, self.min_distance = 0, math.inf
        self.policy.reset(episode)

    def look(self) -> None:
        """Read the ground truth at the current pose (every step, and once more at the end)."""
        self.max_pixels = max(self.max_pixels, int(self.env.object_mask(self.goal).sum()))
        self.min_distance = min(self.min_distance, self.env.distance_to(self.goal))

    def act(self, obs):
        self.look()
        return self.policy.act(obs)

    def __getattr__(self, name):
        return getattr(self.policy, name)


def run(model_dir: str, episodes, size: int = 64, max_steps: int = 0, min_pixels: int = 2) -> list[dict]:
    """Drive every episode with the model (`max_steps` 0: the episode's horizon); one row per episode."""
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import _run_nav
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.metrics import SUCCESS_DISTANCE_M

    env = NavEnv(SimConfig(width=size, height=size, render_depth=True, max_steps=max_steps))
    watcher = _Watcher(make_policy("navid", "nav", model_dir=model_dir, env=env), env)
    rows = []
    for ep in episodes:
        m = _run_nav(env, watcher, ep, None)
        watcher.look()  # the final pose
        goal = env.world.object(ep.goal_objects[-1])
        px, py, _ = env.pose
        nearest = min(env.world.objects, key=lambda o: math.hypot(o.pos[0] - px, o.pos[1] - py))
        d_nearest = math.hypot(nearest.pos[0] - px, nearest.pos[1] - py)
        look_alike = (nearest.name != goal.name and d_nearest < 1.0 and (nearest.colour == goal.colour or nearest.shape == goal.shape))
        row = {"episode_id": ep.episode_id, "task": ep.task, "instruction": ep.instruction, "success": bool(m["success"]),
               "steps": int(m["steps"]), "ended_by": "step limit" if int(m["steps"]) >= env.max_steps else "stop",
               "max_goal_pixels": watcher.max_pixels, "min_distance_m": round(watcher.min_distance, 2),
               "final_distance_m": round(env.distance_to(goal.name), 2), "nearest": f"{nearest.colour} {nearest.shape}",
               "d_nearest_m": round(d_nearest, 2), "look_alike_stop": bool(look_alike and not m["success"])}
        row["mode"] = classify(row["success"], row["max_goal_pixels"], watcher.min_distance, SUCCESS_DISTANCE_M, min_pixels)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = episode_parser(__doc__.split("\n")[0], "benchmarks/navid_failure_modes_results.md")
    parser.add_argument("models", nargs="+", help="NaVid model directories")
    parser.add_argument("--min-pixels", type=int, default=2, help="goal pixels that count as in view (the explorer expert's default)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    episodes = start(args)
    results = {m: run(m, episodes, max_steps=args.max_steps, min_pixels=args.min_pixels) for m in args.models}
    tasks = sorted({e.task for e in episodes})
    lines = [f"# Why NaVid episodes fail ({args.split} seed {args.seed}, the first {args.episodes} episodes)", "",
             run_line("benchmarks/navid_failure_modes.py", argv, args.threads), ""]
    for model, rows in results.items():
        lines += [f"## {model}", "", "| task | episodes | " + " | ".join(MODES) + " | failures ended by stop | look-alike stops |",
                  "| --- | ---: |" + " ---: |" * (len(MODES) + 2)]
        for task in [*tasks, "all"]:
            sel = [r for r in rows if task == "all" or r["task"] == task]
            counts = collections.Counter(r["mode"] for r in sel)
            failed = [r for r in sel if not r["success"]]
            lines.append(f"| {task} | {len(sel)} | " + " | ".join(str(counts.get(k, 0)) for k in MODES)
                         + f" | {sum(r['ended_by'] == 'stop' for r in failed)} | {sum(r['look_alike_stop'] for r in failed)} |")
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"split": args.split, "seed": args.seed, "episodes": args.episodes, "models": results}, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
