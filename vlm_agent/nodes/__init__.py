"""Thin rclpy nodes: one module per node; module name == console_script == default node name.

A node module declares `NODE_CLASS = "ClassName"` at top level and defines `main(args=None)`;
setup.py makes the console_script from it and `vlm-agent up` composes the class into one
process. Nodes declare parameters from a config dataclass, convert messages, call plain-Python
core code, and publish.
"""
import importlib
from pathlib import Path


def available_nodes() -> list[str]:
    """Names of all node modules (found by their `NODE_CLASS = ` line, without importing them)."""
    names = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        with open(path) as f:
            if any(line.startswith("NODE_CLASS = ") for line in f):
                names.append(path.stem)
    return names


def node_class(name: str):
    """The node class for a node module name; raises ValueError naming the known nodes."""
    if name not in available_nodes():
        raise ValueError(f"unknown node '{name}' (available: {', '.join(available_nodes())})")
    module = importlib.import_module(f"{__name__}.{name}")
    return getattr(module, module.NODE_CLASS)
