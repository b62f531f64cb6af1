"""A colcon workspace holding this package (the tracked and untracked-but-not-ignored files), built
as on a robot: `colcon build --packages-select vlm_agent`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLCON = Path(sys.executable).parent / "colcon"


def build_workspace(workspace: Path) -> subprocess.CompletedProcess:
    """Copy the package into `workspace/src/vlm_agent` and colcon-build it into `workspace/install`."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    src = workspace / "src" / "vlm_agent"
    for rel in files:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    return subprocess.run(
        [str(COLCON), "build", "--packages-select", "vlm_agent", "--event-handlers", "console_cohesion-"],
        cwd=workspace, capture_output=True, text=True, timeout=240,
    )


def installed_environment(workspace: Path, extra_pythonpath: list[str] | None = None) -> dict:
    """os.environ plus what `source install/setup.bash` adds for this package (the installed copy of
    vlm_agent first on the Python path, its prefix on AMENT_PREFIX_PATH and PATH)."""
    prefix = workspace / "install" / "vlm_agent"
    site = next((prefix / "lib").glob("python3*/site-packages"))
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix)] + [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p])
    env["PYTHONPATH"] = os.pathsep.join([str(site), *(extra_pythonpath or []), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PATH"] = os.pathsep.join([str(prefix / "bin"), env.get("PATH", "")])
    return env
