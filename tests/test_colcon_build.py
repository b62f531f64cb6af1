"""The package builds with `colcon build` as on a robot with ROS 2 from apt (ament_python):
console scripts under lib/vlm_agent (what `ros2 run`/`ros2 launch` look for), `vlm-agent` on PATH
after sourcing the workspace, launch/config files and package.xml under share/vlm_agent, and the
ament index marker."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.colcon_ws import COLCON, build_workspace

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not COLCON.exists(), reason="colcon is not installed in this environment")
def test_colcon_build_installs_nodes_and_share_files(tmp_path):
    result = build_workspace(tmp_path / "ws")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    install = tmp_path / "ws" / "install" / "vlm_agent"
    from vlm_agent.nodes import available_nodes

    scripts = {p.name for p in (install / "lib" / "vlm_agent").iterdir()}
    assert set(available_nodes()) | {"vlm-agent"} <= scripts
    share = install / "share" / "vlm_agent"
    assert (share / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "vlm_agent").is_file()
    for launch_file in (ROOT / "launch").glob("*.py"):
        assert (share / "launch" / launch_file.name).is_file()
    for config in (ROOT / "config").glob("*.yaml"):
        assert (share / "config" / config.name).is_file()
    for checkpoint in (ROOT / "checkpoints").glob("*/config.json"):  # the default models travel with the package
        assert (share / "checkpoints" / checkpoint.parent.name / "config.json").is_file()

    # `vlm-agent` is on PATH after `source install/setup.bash`, as a robot user would run it.
    shell = subprocess.run(
        ["bash", "-c", "source install/setup.bash && command -v vlm-agent && vlm-agent --help"],
        cwd=tmp_path / "ws", capture_output=True, text=True, timeout=120,
    )
    assert shell.returncode == 0, shell.stdout[-2000:] + shell.stderr[-2000:]
    lines = shell.stdout.splitlines()
    assert lines[0] == str(install / "bin" / "vlm-agent")
    assert "eval" in shell.stdout and "up" in shell.stdout
