"""Shared helpers for vlm_agent launch files (needs `launch`/`launch_ros`, i.e. a ROS 2 install).

Every launch file takes `params_file`, `namespace` and `use_sim_time`. The nodes' topics are
relative, so `namespace:=/robot1` moves the whole graph; the params file's node sections
(`safety_supervisor:`) are rewritten to match in any namespace (`/**/safety_supervisor:`).
Managed (lifecycle) nodes are brought to active by a `lifecycle_manager` node, as Nav2 does.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitution import Substitution
from launch.substitutions import LaunchConfiguration
from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "vlm_agent"


def share_path(*parts):
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def params_argument(default_config):
    """`params_file:=...` argument, defaulting to one of the package's config/*.yaml files."""
    return DeclareLaunchArgument(
        "params_file", default_value=share_path("config", default_config), description="ROS parameter YAML for all vlm_agent nodes"
    )


def graph_arguments(use_sim_time="false"):
    """`namespace:=` and `use_sim_time:=` arguments shared by every launch file."""
    return [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every node and topic, e.g. /robot1"),
        DeclareLaunchArgument("use_sim_time", default_value=use_sim_time, description="take time from /clock"),
    ]


class AnyNamespaceParams(Substitution):
    """The params file, rewritten so that its node sections match the nodes in any namespace."""

    def __init__(self, path):
        super().__init__()
        self._path = normalize_to_list_of_substitutions(path)

    def describe(self):
        return "AnyNamespaceParams(...)"

    def perform(self, context):
        from vlm_agent.nodes.composition import any_namespace_params

        return any_namespace_params(perform_substitutions(context, self._path))


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


def agent_node(executable, condition_arg=None, unless_arg=None, extra_parameters=(), **kwargs):
    """A vlm_agent node in `namespace`, reading the shared params file and `use_sim_time`;
    `condition_arg` / `unless_arg` name a bool launch argument that switches it on / off."""
    condition = None
    if condition_arg:
        condition = IfCondition(LaunchConfiguration(condition_arg))
    elif unless_arg:
        condition = UnlessCondition(LaunchConfiguration(unless_arg))
    return Node(
        package=PACKAGE,
        executable=executable,
        name=executable,
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            AnyNamespaceParams(LaunchConfiguration("params_file")),
            {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)},
            *extra_parameters,
        ],
        output="screen",
        emulate_tty=True,
        condition=condition,
        **kwargs,
    )


def lifecycle_manager(node_names, **kwargs):
    """The lifecycle manager for `node_names` (managed nodes, in bring-up order) of this namespace."""
    return agent_node("lifecycle_manager", extra_parameters=[{"node_names": list(node_names), "autostart": True}], **kwargs)


def nav2_actions():
    """Nav2's navigation_launch.py (nav2_bringup), when `nav2:=true`, with its velocity output remapped
    into the safety supervisor's input (`vlm_agent.nodes.composition.nav2_gate_remaps`; SetRemap rules
    come before nav2_bringup's own per-node remaps, and rcl applies the first match);
    `nav2_params_file:=` is passed on. Needs nav2_bringup."""
    from launch.actions import GroupAction, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import PushRosNamespace, SetRemap

    from vlm_agent.nodes.composition import nav2_gate_remaps

    def include(context):
        nav2_launch = os.path.join(get_package_share_directory("nav2_bringup"), "launch", "navigation_launch.py")
        args = {"use_sim_time": LaunchConfiguration("use_sim_time"), "autostart": "true"}
        params = perform_substitutions(context, normalize_to_list_of_substitutions(LaunchConfiguration("nav2_params_file")))
        if params:
            args["params_file"] = params
        return [
            GroupAction(
                [
                    PushRosNamespace(LaunchConfiguration("namespace")),
                    *[SetRemap(src=src, dst=dst) for src, dst in nav2_gate_remaps()],
                    IncludeLaunchDescription(PythonLaunchDescriptionSource(nav2_launch), launch_arguments=args.items()),
                ]
            )
        ]

    from launch.actions import OpaqueFunction

    return [
        DeclareLaunchArgument("nav2", default_value="false", description="start Nav2 (nav2_bringup navigation_launch.py) behind the safety gate"),
        DeclareLaunchArgument("nav2_params_file", default_value="", description="Nav2 parameter YAML (empty: nav2_bringup's default)"),
        OpaqueFunction(function=include, condition=IfCondition(LaunchConfiguration("nav2"))),
    ]
