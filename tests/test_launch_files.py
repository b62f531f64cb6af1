"""`ros2 launch` is not installable here, so launch files are checked statically: every node they
start is a real console_script of this package, every file they reference exists, and every
launched node has a section in the params file it defaults to."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from vlm_agent.config import node_sections

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted(p for p in (ROOT / "launch").glob("*.launch.py"))


def console_scripts() -> set[str]:
    """Console scripts of the installed vlm_agent distribution (what `ros2 run`/launch can start)."""
    from importlib.metadata import distribution

    return {ep.name for ep in distribution("vlm_agent").entry_points if ep.group == "console_scripts"}


def test_every_node_module_is_installed_as_a_console_script():
    from vlm_agent.nodes import available_nodes

    missing = set(available_nodes()) - console_scripts()
    assert not missing, f"node modules without console_script (re-run `pip install -e .`): {missing}"


def launched_executables(path: Path) -> list[str]:
    """Executables named by `agent_node("x")` or `Node(executable="x")` calls."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            fname = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if fname == "agent_node" and node.args and isinstance(node.args[0], ast.Constant):
                names.append(node.args[0].value)
            if fname == "Node":
                package = next((kw.value for kw in node.keywords if kw.arg == "package"), None)
                if isinstance(package, ast.Constant) and package.value != "vlm_agent":
                    continue  # another package's executable (e.g. ros_gz_bridge's parameter_bridge)
                for kw in node.keywords:
                    if kw.arg == "executable" and isinstance(kw.value, ast.Constant):
                        names.append(kw.value.value)
    return names


def referenced_share_files(path: Path) -> list[str]:
    """Files referenced as `share_path("a", "b")` or `params_argument("x.yaml")`."""
    refs = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and all(isinstance(a, ast.Constant) for a in node.args):
            parts = [a.value for a in node.args]
            if node.func.id == "share_path" and parts:
                refs.append(os.path.join(*parts))
            if node.func.id == "params_argument" and parts:
                refs.append(os.path.join("config", parts[0]))
    return refs


def test_there_are_launch_files_for_robot_sim_and_gazebo():
    names = {p.name for p in LAUNCH_FILES}
    assert {"robot.launch.py", "sim.launch.py"} <= names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_is_valid_python_with_generate_function(path):
    tree = ast.parse(path.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launched_nodes_are_console_scripts(path):
    scripts = console_scripts()
    missing = [n for n in launched_executables(path) if n not in scripts]
    assert not missing, f"{path.name} starts {missing}, which are not console_scripts ({sorted(scripts)})"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_referenced_files_exist_and_nodes_have_parameters(path):
    refs = referenced_share_files(path)
    for ref in refs:
        assert (ROOT / ref).exists(), f"{path.name} references {ref}, which does not exist"
    configs = [ROOT / r for r in refs if r.startswith("config/") and r.endswith(".yaml")]
    for config in configs:
        sections = set(node_sections(str(config)))
        for executable in launched_executables(path):
            if executable in ("image_decompressor", "realsense_camera", "segmenter"):
                continue  # optional nodes (off by default) may run on defaults
            assert executable in sections, f"{config.name} has no section for {executable} launched by {path.name}"


def test_setup_installs_launch_config_sim_and_checkpoints():
    source = (ROOT / "setup.py").read_text()
    for folder in ("launch", "config", "sim", "checkpoints"):
        assert f'tree_data_files("{folder}")' in source
