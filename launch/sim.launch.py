"""vlm_agent against the embedded MuJoCo simulator (no Gazebo, nothing but pip).

    ros2 launch vlm_agent sim.launch.py [params_file:=/path/sim.yaml] [namespace:=/robot1] [use_sim_time:=true]

Same graph as `vlm-agent up --config config/sim.yaml [--namespace /robot1]`, which needs no
`ros2 launch`. `segmenter:=true` adds the segmentation node (docs/segmentation.md), managed too, with
`segmenter_backend:=oracle` (ground truth from the simulator, the default: no model needed) or
`segmenter_backend:=sa2va segmenter_model_dir:=DIR`. The managed nodes (safety_supervisor, navid_planner) are brought to active by
lifecycle_manager; until then the supervisor publishes zero on `cmd_vel`. The graph runs on sim time
(`use_sim_time` defaults to true; mujoco_sim is the clock and stays on the wall clock itself).
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, dds_profile_actions, graph_arguments, lifecycle_manager, params_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription(
        [
            params_argument("sim.yaml"),
            *graph_arguments(use_sim_time="true"),
            *dds_profile_actions(default="true"),
            DeclareLaunchArgument("segmenter", default_value="false", description="start the segmentation node"),
            DeclareLaunchArgument("segmenter_backend", default_value="oracle", description="segmenter backend: oracle | sa2va | sa2va_official"),
            DeclareLaunchArgument("segmenter_model_dir", default_value="", description="the segmenter's model directory (sa2va, sa2va_official)"),
            agent_node("mujoco_sim", extra_parameters=[{"use_sim_time": False}]),  # the clock source
            agent_node("navid_planner"),
            agent_node("motion_executor"),
            # mujoco_sim stamps sim time and the supervisor judges freshness from stamps: it reads
            # /clock whatever `use_sim_time` says for the rest of the graph.
            agent_node("safety_supervisor", extra_parameters=[{"use_sim_time": True}]),
            agent_node("segmenter", condition_arg="segmenter", extra_parameters=[
                {"backend": LaunchConfiguration("segmenter_backend"), "model_dir": LaunchConfiguration("segmenter_model_dir")}]),
            lifecycle_manager(["safety_supervisor", "navid_planner"], unless_arg="segmenter"),
            lifecycle_manager(["safety_supervisor", "segmenter", "navid_planner"], condition_arg="segmenter"),
        ]
    )
