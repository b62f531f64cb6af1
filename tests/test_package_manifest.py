"""package.xml and requirements/robot.txt together cover every import, so a robot install
(`rosdep install` + `pip install -r requirements/robot.txt` + `colcon build`) has everything.

ROS packages the code or the launch files import must be `<exec_depend>`s (rosdep resolves them to
`ros-<distro>-*` apt packages); third-party Python modules either have a rosdep key in package.xml
or are in requirements/robot.txt; robot.txt pins nothing and holds no ROS wheels (a pinned numpy
from pip breaks apt's rclpy and OpenCV).
"""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Python module -> rosdep key (only keys that exist in ros/rosdistro's rosdep/python.yaml).
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "scipy": "python3-scipy", "yaml": "python3-yaml", "cv2": "python3-opencv", "PIL": "python3-pil",
    "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm", "rich": "python3-rich",
    "imageio": "python3-imageio", "httpx": "python3-httpx", "fastapi": "python3-fastapi",
    "uvicorn": "python3-uvicorn",
    "anyio": "python3-httpx",  # anyio has no key of its own; apt's python3-httpx and python3-fastapi depend on it
}
# Python module -> pip distribution in requirements/robot.txt (no rosdep key).
PIP_ONLY = {
    "torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "safetensors": "safetensors",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "mcap": "mcap", "mcap_ros2": "mcap-ros2-support",
    "mujoco": "mujoco", "pyrealsense2": "pyrealsense2", "openvino": "openvino", "nncf": "nncf",
    "sam2": "sam2",
}
# Imported lazily, only on the hardware that provides them (JetPack's TensorRT).
PLATFORM_PROVIDED = {"tensorrt", "pycuda"}
ROS_MODULE = re.compile(r"^(rclpy|launch|launch_ros|ament_index_python|\w+_(msgs|srvs|interfaces))$")


def _imported_top_level_modules() -> set[str]:
    modules = set()
    files = list((ROOT / "vlm_agent").rglob("*.py")) + list((ROOT / "launch").glob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    local = {p.stem for p in (ROOT / "launch").glob("*.py")} | {"vlm_agent"}
    return {m for m in modules if m not in local and m not in sys.stdlib_module_names and m != "__future__"}


def _package_xml_depends() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("depend", "exec_depend")}


def _robot_requirements() -> list[str]:
    lines = (ROOT / "requirements" / "robot.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_every_import_is_declared_for_a_robot_install():
    depends = _package_xml_depends()
    pip = {re.split(r"[<>=!~\[ ]", r)[0].lower() for r in _robot_requirements()}
    missing = []
    for module in sorted(_imported_top_level_modules()):
        if ROS_MODULE.match(module):
            if module not in depends:
                missing.append(f"ROS package {module}: add <exec_depend>{module}</exec_depend> to package.xml")
        elif module in ROSDEP_KEYS:
            if ROSDEP_KEYS[module] not in depends:
                missing.append(f"{module}: add <exec_depend>{ROSDEP_KEYS[module]}</exec_depend> to package.xml")
        elif module in PIP_ONLY:
            if PIP_ONLY[module].lower() not in pip:
                missing.append(f"{module}: add {PIP_ONLY[module]} to requirements/robot.txt")
        elif module not in PLATFORM_PROVIDED:
            missing.append(f"{module}: unknown third-party import; give it a rosdep key or a robot.txt line (and a row here)")
    assert not missing, "\n".join(missing)


def test_robot_requirements_pin_nothing_and_hold_no_ros_wheels():
    for requirement in _robot_requirements():
        assert not re.search(r"[<>=~!]", requirement), f"robot.txt must not pin ({requirement}): apt owns numpy & co."
        assert not requirement.lower().startswith(("ros-", "rclpy", "numpy")), requirement


def test_standalone_venv_covers_the_same_modules():
    """The CI venv (base.txt, plus sam2.txt installed --no-deps after torch) installs every pip-only
    module too, so tests see what robots run."""
    base = {re.split(r"[<>=!~\[ ]", ln.split("#")[0].strip())[0].lower()
            for name in ("base.txt", "sam2.txt")
            for ln in (ROOT / "requirements" / name).read_text().splitlines() if ln.split("#")[0].strip()}
    assert {d.lower() for d in PIP_ONLY.values()} <= base
