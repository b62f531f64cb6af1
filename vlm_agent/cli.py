"""The `vlm-agent` command. Subcommands live one per module in `vlm_agent/commands/`.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`;
its name (with `_` -> `-`) is the subcommand. Modules are imported only when their command
runs, so `vlm-agent --help` stays fast and a broken optional dependency breaks one command only.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path

COMMANDS_DIR = Path(__file__).parent / "commands"


def _command_modules() -> dict[str, tuple[str, str]]:
    """{subcommand: (module name, help line)}, read from the files without importing them."""
    commands = {}
    for path in sorted(COMMANDS_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        help_line = next(
            (
                node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ),
            None,
        )
        if help_line is not None:
            commands[path.stem.replace("_", "-")] = (path.stem, help_line)
    return commands


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-agent", description="Embodied vision-language agent stack for ROS 2.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = _command_modules()
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module_name, help_line) in commands.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        p.set_defaults(_module=module_name)
        if name == wanted:  # only the chosen command's module is imported
            importlib.import_module(f"vlm_agent.commands.{module_name}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    module = importlib.import_module(f"vlm_agent.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as exc:
        print(f"vlm-agent {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
