"""ament_python package for vlm_agent.

Builds with `colcon build` on a robot with ROS 2 from apt (system rclpy, no ros-* wheels) and with
`pip install -e .` in the standalone venv the Makefile makes (ROS 2 from PyPI wheels).
"""
import os
import sys
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vlm_agent"
HERE = os.path.dirname(os.path.abspath(__file__))


def tree_data_files(folder):
    """(install_dir, [files]) pairs for every file under `folder`, keeping the folder structure."""
    pairs = []
    for root, _dirs, files in os.walk(os.path.join(HERE, folder)):
        files = [os.path.relpath(os.path.join(root, f), HERE) for f in files if not f.endswith(".pyc")]
        if files:
            pairs.append((os.path.join("share", PACKAGE, os.path.relpath(root, HERE)), files))
    return pairs


def node_console_scripts():
    """One console_script per node module in vlm_agent/nodes (file name == executable == node name).

    A node module is one that declares `NODE_CLASS = "..."` at top level; it must also define `main()`.
    """
    names = []
    for path in sorted(glob(os.path.join(HERE, PACKAGE, "nodes", "*.py"))):
        with open(path) as f:
            if any(line.startswith("NODE_CLASS = ") for line in f):
                names.append(os.path.splitext(os.path.basename(path))[0])
    return [f"{n} = {PACKAGE}.nodes.{n}:main" for n in names]


# colcon builds run `setup.py install` (or `develop` with --symlink-install), and setup.cfg sends
# console scripts to lib/vlm_agent; a small wrapper in bin/ puts `vlm-agent` on PATH as well.
# pip (the standalone venv) builds wheels instead and puts the console script in bin/ itself, so the
# wrapper must not be installed there (it would shadow the real script).
COLCON_STYLE_INSTALL = any(cmd in sys.argv[1:] for cmd in ("install", "develop"))

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]),
    package_data={PACKAGE: ["resources/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ]
    + ([("bin", ["resource/vlm-agent"])] if COLCON_STYLE_INSTALL else [])
    + tree_data_files("launch")
    + tree_data_files("config")
    + tree_data_files("sim")
    + tree_data_files("checkpoints"),
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="vlm_agent maintainers",
    maintainer_email="maintainers@vlm-agent.dev",
    description="Embodied vision-language agent stack for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": ["vlm-agent = vlm_agent.cli:main"] + node_console_scripts(),
    },
)
