"""Shared helpers for vlm_agent launch files (needs `launch`/`launch_ros`, i.e. a ROS 2 install)."""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "vlm_agent"


def share_path(*parts):
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def params_argument(default_config):
    """`params_file:=...` argument, defaulting to one of the package's config/*.yaml files."""
    return DeclareLaunchArgument(
        "params_file", default_value=share_path("config", default_config), description="ROS parameter YAML for all vlm_agent nodes"
    )


def dds_profile_actions(default="false"):
    """Optionally point Fast DDS at the package's profile (32 MiB SHM segment, loopback UDP).

    Off by default on robots (the network setup is the integrator's); on for single-machine sim runs,
    which move 640x480 frames between processes.
    """
    from vlm_agent.ros_env import fastdds_profile_path

    return [
        DeclareLaunchArgument("use_vlm_agent_dds_profile", default_value=default),
        SetEnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile_path(), condition=IfCondition(LaunchConfiguration("use_vlm_agent_dds_profile"))
        ),
    ]


def agent_node(executable, condition_arg=None, **kwargs):
    """A vlm_agent node reading the shared params file; `condition_arg` names a bool launch argument."""
    condition = IfCondition(LaunchConfiguration(condition_arg)) if condition_arg else None
    return Node(
        package=PACKAGE,
        executable=executable,
        name=executable,
        parameters=[LaunchConfiguration("params_file")],
        output="screen",
        emulate_tty=True,
        condition=condition,
        **kwargs,
    )
