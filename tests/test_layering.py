"""The package's layering, read bottom-up, and ROS at the edge (ARCHITECTURE.md, "Layers").

Every module under `vlm_agent/` is parsed with `ast` (every import, also those inside functions, and
"vlm_agent.module:attr" strings that lazy registries import by name) and each import is checked:

* no module imports a layer above its own;
* `models/` imports only the bottom layer and itself: no simulator, planners, skills or accel;
* of layer 2 only `skills/sim_skills.py` (the skills implemented on the simulator) imports `sim/`;
* only `nodes/`, `commands/` and `cli.py` import rclpy; ROS message packages also appear in the
  message converters in `sensors/` (imported lazily there).

A new top-level module or package must be given a layer here, or the test fails.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vlm_agent"

# Bottom-up. 0: shared foundations that know nothing of the world or the agent; 1: the world;
# 2: the agent's parts; 3: what joins the agent and the world offline; 4: the ROS edge.
LAYERS: dict[str, int] = {
    "vlm_agent": 0,  # the package's __init__
    "vlm_agent.config": 0,
    "vlm_agent.telemetry": 0,
    "vlm_agent.ros_env": 0,
    "vlm_agent.resources": 0,
    "vlm_agent.geometry": 0,
    "vlm_agent.actions": 0,
    "vlm_agent.devices": 0,
    "vlm_agent.sensors": 0,  # camera model, frames, converters, sync, recording: real robot and sim alike
    "vlm_agent.sim": 1,
    "vlm_agent.models": 2,
    "vlm_agent.accel": 2,
    "vlm_agent.planners": 2,
    "vlm_agent.skills": 2,
    "vlm_agent.safety": 2,
    "vlm_agent.training": 3,
    "vlm_agent.evaluation": 3,
    "vlm_agent.nodes": 4,
    "vlm_agent.commands": 4,
    "vlm_agent.cli": 4,
}
LAYER_NAMES = {0: "shared bottom", 1: "sim", 2: "models/planners/skills", 3: "training/evaluation", 4: "nodes/CLI"}
# Layer-2 modules that may use the simulator (their whole point is to run on it).
SIM_USERS_IN_LAYER_2 = ("vlm_agent.skills.sim_skills",)
ROS_EDGE = ("vlm_agent.nodes", "vlm_agent.commands", "vlm_agent.cli")
ROS_MESSAGE_CONVERTERS = ("vlm_agent.sensors",)
ROS_CLIENT = re.compile(r"^(rclpy|launch|launch_ros)(\.|$)")
ROS_MESSAGES = re.compile(r"^(\w+_(msgs|srvs|interfaces)|builtin_interfaces)(\.|$)")
REGISTRY_TARGET = re.compile(r"^(vlm_agent(?:\.\w+)+):\w+$")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """Layer of a `vlm_agent...` module by its longest listed prefix; None when unlisted."""
    best = None
    for prefix in LAYERS:
        if _within(module, prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    # "vlm_agent" alone matches everything; a module below an unlisted top-level name is unlisted.
    if best == "vlm_agent" and module != "vlm_agent":
        return None
    return LAYERS[best] if best else None


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package) of a file under the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) for every import in `source`, relative ones resolved against `module`;
    `from a import b` yields `a.b` (b may be a submodule); registry strings "pkg.mod:attr" yield pkg.mod."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.extend((node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = REGISTRY_TARGET.match(node.value)
            if m:
                out.append((node.lineno, m.group(1)))
    return out


def violations(source: str, module: str, is_package: bool = False, where: str | None = None) -> list[str]:
    """Every layering or ROS-edge rule that `source` (the text of `module`) breaks, one line each."""
    where = where or module
    own = layer_of(module)
    if own is None:
        return [f"{where}: {module} has no layer; add its top-level name to LAYERS in tests/test_layering.py"]
    found = []
    for line, target in imports_of(source, module, is_package):
        at = f"{where}:{line}"
        if ROS_CLIENT.match(target) and not any(_within(module, p) for p in ROS_EDGE):
            found.append(f"{at}: imports {target}; only nodes/, commands/ and cli.py import ROS client libraries")
        if ROS_MESSAGES.match(target) and not any(_within(module, p) for p in ROS_EDGE + ROS_MESSAGE_CONVERTERS):
            found.append(f"{at}: imports {target}; ROS messages appear only in nodes/, the CLI and the sensors/ converters")
        if not _within(target, "vlm_agent"):
            continue
        theirs = layer_of(target)
        if theirs is None:
            found.append(f"{at}: imports {target}, which has no layer; add it to LAYERS in tests/test_layering.py")
        elif theirs > own:
            found.append(f"{at}: {module} (layer {own}, {LAYER_NAMES[own]}) imports {target} "
                         f"(layer {theirs}, {LAYER_NAMES[theirs]}): an upward import")
        elif _within(module, "vlm_agent.models") and theirs > 0 and not _within(target, "vlm_agent.models"):
            found.append(f"{at}: {module} imports {target}; models import only the bottom layer and models/")
        elif own == 2 and _within(target, "vlm_agent.sim") and not any(_within(module, m) for m in SIM_USERS_IN_LAYER_2):
            found.append(f"{at}: {module} imports {target}; in layer 2 only {', '.join(SIM_USERS_IN_LAYER_2)} uses the simulator")
    return found


def package_violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = module_name(path)
        found.extend(violations(path.read_text(encoding="utf-8"), module, is_package, where=str(path.relative_to(ROOT))))
    return found


def test_the_package_imports_only_downward_and_ros_stays_at_the_edge():
    found = package_violations()
    assert not found, f"{len(found)} layering violation(s):\n" + "\n".join(found)


def test_every_top_level_module_has_a_layer():
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(n for n in names if f"vlm_agent.{n}" not in LAYERS)
    assert not missing, f"give these a layer in LAYERS: {missing}"


def test_the_scanner_catches_planted_violations():
    upward = "import os\n\ndef later():\n    from vlm_agent.skills.motion import MotionExecutor\n"
    assert len(violations(upward, "vlm_agent.sim.planted")) == 1  # inside a function, still found
    relative = "from ...training import navid\n"
    (msg,) = violations(relative, "vlm_agent.models.navid.planted")
    assert "vlm_agent.training.navid (layer 3" in msg and "upward" in msg
    assert violations("from vlm_agent.sim.env import NavEnv\n", "vlm_agent.models.navid.planted")  # models never use the sim
    assert violations("from vlm_agent.sim.env import NavEnv\n", "vlm_agent.planners.planted")
    assert not violations("from vlm_agent.sim.env import NavEnv\n", "vlm_agent.skills.sim_skills")
    assert violations("import rclpy\n", "vlm_agent.planners.planted")
    assert violations("from sensor_msgs.msg import Image\n", "vlm_agent.safety.planted")
    assert not violations("from sensor_msgs.msg import Image\n", "vlm_agent.sensors.planted")
    assert violations('POLICIES = {"x": "vlm_agent.evaluation.policies:make"}\n', "vlm_agent.planners.planted")
    assert violations("from vlm_agent import sim\n", "vlm_agent.actions")  # `from package import submodule`
    assert violations("import os\n", "vlm_agent.newthing.planted")[0].endswith("add its top-level name to LAYERS in tests/test_layering.py")
    downward = "from vlm_agent.actions import NavPrimitive\nfrom vlm_agent.sim.env import NavEnv\nfrom ..planners import navid\n"
    assert not violations(downward, "vlm_agent.training.planted")
