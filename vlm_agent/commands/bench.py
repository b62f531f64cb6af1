"""vlm-agent bench: run a benchmark script from benchmarks/ by name (arguments pass through)."""
from __future__ import annotations

HELP = "run a benchmark from benchmarks/ by name (e.g. `vlm-agent bench encoder_bench -- --device cuda`)"


def _benchmarks_dir():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "benchmarks"


def available() -> list[str]:
    d = _benchmarks_dir()
    return sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_")) if d.is_dir() else []


def add_arguments(parser) -> None:
    import argparse

    parser.add_argument("name", nargs="?", help="benchmark script name without .py (omit to list them)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script (after --)")


def run(args) -> int:
    import subprocess
    import sys

    names = available()
    if not args.name:
        print("benchmarks:", ", ".join(names) if names else f"none found in {_benchmarks_dir()}")
        return 0
    if args.name not in names:
        raise ValueError(f"unknown benchmark '{args.name}' (available: {', '.join(names) or 'none'}; benchmarks/ ships with the source tree)")
    rest = [a for a in args.args if a != "--"] if args.args[:1] == ["--"] else list(args.args)
    script = _benchmarks_dir() / f"{args.name}.py"
    # A child process: benchmarks set thread counts and environment before importing torch.
    return subprocess.call([sys.executable, str(script), *rest])
