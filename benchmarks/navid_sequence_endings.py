"""Where a NaVid model's sequence episodes end ("first go to X, then to Y"; issue 16).

    .venv/bin/python benchmarks/navid_sequence_endings.py checkpoints/navid_map [more model dirs] \
        [--split val --seed 1 --episodes 100] [--out benchmarks/navid_sequence_results.md]

Sequence tasks are the map navigator's weakest (SR 0.05 on test). A leg counts as done when the
robot passes within the success distance of X (the env's subgoal); success is a stop at Y after that.
For each sequence episode among the first `--episodes` of (split, seed) every model drives it closed
loop, as `vlm-agent eval` does, and the ending is classified from the final pose:

* success;
* step limit;
* stopped at Y, X never reached (the model went for the final goal first);
* stopped at X (leg 1 done, the final goal confused with the first);
* X reached, stopped elsewhere;
* stopped elsewhere, X never reached (a look-alike or nothing).

Per episode: the instruction, steps, subgoal index, distances to X and Y, and the object nearest
the final pose. Written as a markdown table (with the machine) and a JSON file beside it.
"""
from __future__ import annotations

import collections
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.nav_closed_loop import episode_parser, run_line, start  # noqa: E402

ENDINGS = ("success", "step limit", "stopped at Y, X never reached", "stopped at X", "X reached, stopped elsewhere",
           "stopped elsewhere, X never reached")


def classify(success: bool, steps: int, max_steps: int, subgoal: int, d_x: float, d_y: float, near_m: float = 1.0) -> str:
    """One of ENDINGS from the final state (`near_m`: "at" an object, metres from its centre)."""
    if success:
        return "success"
    if steps >= max_steps:
        return "step limit"
    if subgoal == 0:
        return "stopped at Y, X never reached" if d_y < near_m else "stopped elsewhere, X never reached"
    return "stopped at X" if d_x < near_m else "X reached, stopped elsewhere"


def run(model_dir: str, episodes, size: int = 64, max_steps: int = 0) -> list[dict]:
    """Drive every episode with the model (`max_steps` 0: the episode's horizon); one row per episode."""
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import _run_nav  # the episode loop of `vlm-agent eval`
    from vlm_agent.sim.env import NavEnv, SimConfig

    env = NavEnv(SimConfig(width=size, height=size, render_depth=True, max_steps=max_steps))
    policy = make_policy("navid", "nav", model_dir=model_dir, env=env)
    rows = []
    for ep in episodes:
        m = _run_nav(env, policy, ep, None)
        x, y = ep.goal_objects
        px, py, _ = env.pose
        nearest = min(env.world.objects, key=lambda o: math.hypot(o.pos[0] - px, o.pos[1] - py))
        row = {"episode_id": ep.episode_id, "instruction": ep.instruction, "success": bool(m["success"]), "steps": int(m["steps"]),
               "subgoal": env.subgoal_index, "d_x_m": round(env.distance_to(x), 2), "d_y_m": round(env.distance_to(y), 2),
               "nearest": f"{nearest.colour} {nearest.shape}", "d_nearest_m": round(math.hypot(nearest.pos[0] - px, nearest.pos[1] - py), 2)}
        row["ending"] = classify(row["success"], row["steps"], env.max_steps, row["subgoal"], row["d_x_m"], row["d_y_m"])
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = episode_parser(__doc__.split("\n")[0], "benchmarks/navid_sequence_results.md",
                            episodes_help="episodes of (split, seed) to draw the sequence ones from")
    parser.add_argument("models", nargs="+", help="NaVid model directories")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    episodes = [e for e in start(args) if e.task == "sequence"]
    results = {m: run(m, episodes, max_steps=args.max_steps) for m in args.models}
    lines = [f"# Where sequence episodes end ({args.split} seed {args.seed}: the {len(episodes)} sequence episodes among the first {args.episodes})",
             "", run_line("benchmarks/navid_sequence_endings.py", argv, args.threads), "",
             "| model | " + " | ".join(ENDINGS) + " |", "| --- |" + " ---: |" * len(ENDINGS)]
    for model, rows in results.items():
        counts = collections.Counter(r["ending"] for r in rows)
        lines.append(f"| {model} | " + " | ".join(str(counts.get(k, 0)) for k in ENDINGS) + " |")
    for model, rows in results.items():
        lines += ["", f"## {model}", "", "| episode | instruction | ending | steps | d(X) m | d(Y) m | nearest object |", "| --- | --- | --- | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['episode_id']} | {r['instruction']} | {r['ending']} | {r['steps']} | {r['d_x_m']} | {r['d_y_m']} | {r['nearest']} ({r['d_nearest_m']} m) |"
                  for r in rows]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"split": args.split, "seed": args.seed, "episodes": args.episodes, "models": results}, f, indent=1)
    print("\n".join(lines[:6 + len(results)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
