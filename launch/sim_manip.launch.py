"""vlm_agent's manipulation graph against the embedded MuJoCo simulator (nothing but pip).

    ros2 launch vlm_agent sim_manip.launch.py [params_file:=/path/sim_manip.yaml] [namespace:=/robot1] [use_sim_time:=true]

Same graph as `vlm-agent up --config config/sim_manip.yaml`: mujoco_sim (manip suite) + task_planner
(PaLM-E or Octopus style, skills through ROS) + motion_executor + safety_supervisor. The managed nodes
(safety_supervisor, task_planner) are brought to active by lifecycle_manager; until then the
supervisor publishes zero on `cmd_vel`. The graph runs on sim time (mujoco_sim is the clock).
"""
import os
import sys

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, dds_profile_actions, graph_arguments, lifecycle_manager, params_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription(
        [
            params_argument("sim_manip.yaml"),
            *graph_arguments(use_sim_time="true"),
            *dds_profile_actions(default="true"),
            agent_node("mujoco_sim", extra_parameters=[{"use_sim_time": False}]),  # the clock source
            agent_node("task_planner"),
            agent_node("motion_executor"),
            agent_node("safety_supervisor", extra_parameters=[{"use_sim_time": True}]),
            lifecycle_manager(["safety_supervisor", "task_planner"]),
        ]
    )
