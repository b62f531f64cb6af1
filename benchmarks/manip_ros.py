"""The manipulation skill layer through ROS: the oracle skill program on manip episodes.

    .venv/bin/python benchmarks/manip_ros.py [--episodes 10] [--split val] [--seed 0] [--out benchmarks/manip_ros_results.md]

The graph (`vlm-agent up` in a second process): mujoco_sim (manip suite, real_time_factor 0: as fast
as the graph keeps up) + motion_executor + safety_supervisor. This process runs the manipulation
oracle's program (`evaluation/manip_planners.oracle_program_code`) through the sandbox with the ROS
skill adapter's skills (`nodes/ros_skills.RosSkills`; ground-truth perception through the simulator
mirror, an upper bound) and scores each episode with the simulator's own `mujoco_sim/result`
(`nodes/manip_client.run_oracle_program_ros`). Appends a section with the machine it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time


def machine() -> str:
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "manip_ros_results.md"))
    parser.add_argument("--json", default="", help="also write the full result (per-episode calls) here")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    from vlm_agent.nodes.manip_client import run_oracle_program_ros
    from vlm_agent.sim.episodes import make_episodes

    load0 = os.getloadavg()[0]
    episodes = make_episodes("manip", args.split, args.episodes, seed=args.seed)
    t0 = time.perf_counter()
    out = run_oracle_program_ros(episodes)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    per = out["per_episode"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    lines = [
        f"\n## Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (code of commit {commit})\n",
        f"Machine: {machine()}; MUJOCO_GL={os.environ.get('MUJOCO_GL')}. Load average before/after: {load0:.1f} / {load1:.1f}.\n",
        f"{args.split} split, seed {args.seed}: **success {out['success_rate']:.2f} on {out['episodes']} episodes** "
        f"({out['perception']}: an upper bound of the skill layer through ROS). {out['sim_time_s']:.1f} s simulated in "
        f"{sum(e['wall_s'] for e in per):.1f} s of episode wall time ({wall:.1f} s with the graph's start-up); "
        f"cmd_vel: {out['cmd_vel']['messages']} messages, {out['cmd_vel']['non_finite']} non-finite, max |v| "
        f"{out['cmd_vel']['max_abs_linear']:.2f} m/s, max |w| {out['cmd_vel']['max_abs_angular']:.2f} rad/s.\n",
        "| episode | task | success | sim (s) | wall (s) | error |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for e in per:
        lines.append(f"| {e['episode_id']} | {e['task']} | {e['success']:.0f} | {e['sim_time_s']:.1f} | {e['wall_s']:.1f} | {e['error'] or ''} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not os.path.exists(args.out):
        with open(args.out, "w") as f:
            f.write("# The manipulation skill layer through ROS\n\n`benchmarks/manip_ros.py`: the oracle skill program through the "
                    "sandbox and the ROS skill adapter, scored by the simulator. Each run appends a section.\n")
    with open(args.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
