"""ROS 2 middleware environment for standalone runs; never imports rclpy.

In standalone mode (rclpy from the PyPI wheels, no /opt/ros) we default to:

* the Fast DDS profile shipped in `vlm_agent/resources/fastdds_localhost.xml`: a 32 MiB
  shared-memory segment (the default 512 KiB is smaller than one 640x480 rgb8 frame, which makes
  BEST_EFFORT lose ~99% of frames) and UDPv4 restricted to 127.0.0.1;
* `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` (Kilted ignores `ROS_LOCALHOST_ONLY`).

Values the user already set are kept. On a robot with ROS from apt nothing is changed unless
asked for, because the robot's network setup is the integrator's decision.
These must be set before the first rclpy context creates a DDS participant.
"""
from __future__ import annotations

import importlib.util
import os
from importlib import resources

FASTDDS_PROFILE_NAME = "fastdds_localhost.xml"


def fastdds_profile_path() -> str:
    """Absolute path of the Fast DDS XML profile shipped inside the package."""
    return str(resources.files("vlm_agent") / "resources" / FASTDDS_PROFILE_NAME)


def is_standalone_ros() -> bool:
    """True when rclpy comes from PyPI wheels (a venv) rather than a ROS distro under /opt/ros."""
    forced = os.environ.get("VLM_AGENT_STANDALONE")
    if forced is not None:
        return forced.lower() in ("1", "true", "yes")
    spec = importlib.util.find_spec("rclpy")
    if spec is None or spec.origin is None:
        return False
    return not spec.origin.startswith("/opt/ros")


def _fast_dds_major() -> int | None:
    """Major version of the Fast DDS wheel in this environment (2 for Jazzy's, 3 for Kilted's), or None."""
    from importlib import metadata

    for dist in ("ros-fastdds", "ros-fastrtps"):  # Fast DDS 3 renamed the package
        try:
            return int(metadata.version(dist).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return None


def configure_ros_environment(environ: dict | None = None, standalone: bool | None = None) -> dict:
    """Fill in middleware defaults for standalone runs; returns the variables it set.

    Args:
        environ: the mapping to modify (default `os.environ`; tests pass a dict).
        standalone: override the detection of `is_standalone_ros()`.
    """
    env = os.environ if environ is None else environ
    if standalone is None:
        standalone = is_standalone_ros()
    changed = {}
    if not standalone:
        return changed
    defaults = {
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "FASTDDS_DEFAULT_PROFILES_FILE": fastdds_profile_path(),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }
    if _fast_dds_major() == 2:
        # Fast DDS 2.x (Humble, Jazzy) reads the profile from the older name only: without it the
        # 512 KiB default SHM segment drops ~90% of 640x480 BEST_EFFORT frames on Jazzy. Fast DDS 3
        # (Kilted) warns at every start when the old name is set, so it is set for 2.x only.
        defaults["FASTRTPS_DEFAULT_PROFILES_FILE"] = fastdds_profile_path()
    for key, value in defaults.items():
        if not env.get(key):
            env[key] = value
            changed[key] = value
    return changed
