"""What the closed-loop NaVid benchmarks share (navid_failure_modes, navid_sequence_endings,
navid_plan_sources): their episode options, the run's torch threads and episodes, and the line that
names the machine and the command in their results."""
from __future__ import annotations

import argparse
import datetime
import os
import platform


def episode_parser(description: str, out: str, seed: int = 1, episodes: int = 100, episodes_help: str | None = None) -> argparse.ArgumentParser:
    """A parser with --split, --seed, --episodes, --max-steps, --threads and --out (the results file)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--episodes", type=int, default=episodes, help=episodes_help)
    parser.add_argument("--max-steps", type=int, default=0, help="steps per episode (0: the episode's, 300, as eval)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=out)
    return parser


def start(args) -> list:
    """Set the torch threads and return the first `args.episodes` nav episodes of (split, seed)."""
    import torch

    from vlm_agent.sim.episodes import make_episodes

    torch.set_num_threads(args.threads)
    return make_episodes("nav", args.split, args.episodes, args.seed)


def run_line(script: str, argv: list[str], threads: int) -> str:
    """'Run <date> on <machine>, <n> CPUs, <threads> torch thread(s); `<command>`.'"""
    return (f"Run {datetime.date.today()} on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{threads} torch thread(s); `{' '.join([script, *argv])}`.")
