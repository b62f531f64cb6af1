"""vlm_agent against the embedded MuJoCo simulator (no Gazebo, nothing but pip).

    ros2 launch vlm_agent sim.launch.py [params_file:=/path/sim.yaml] [namespace:=/robot1] [use_sim_time:=true]

Same graph as `vlm-agent up --config config/sim.yaml [--namespace /robot1]`, which needs no
`ros2 launch`. The managed nodes (safety_supervisor, navid_planner) are brought to active by
lifecycle_manager; until then the supervisor publishes zero on `cmd_vel`. The graph runs on sim time
(`use_sim_time` defaults to true; mujoco_sim is the clock and stays on the wall clock itself).
"""
import os
import sys

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, dds_profile_actions, graph_arguments, lifecycle_manager, params_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription(
        [
            params_argument("sim.yaml"),
            *graph_arguments(use_sim_time="true"),
            *dds_profile_actions(default="true"),
            agent_node("mujoco_sim", extra_parameters=[{"use_sim_time": False}]),  # the clock source
            agent_node("navid_planner"),
            agent_node("motion_executor"),
            # mujoco_sim stamps sim time and the supervisor judges freshness from stamps: it reads
            # /clock whatever `use_sim_time` says for the rest of the graph.
            agent_node("safety_supervisor", extra_parameters=[{"use_sim_time": True}]),
            lifecycle_manager(["safety_supervisor", "navid_planner"]),
        ]
    )
