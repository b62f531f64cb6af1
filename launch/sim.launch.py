"""vlm_agent against the embedded MuJoCo simulator (no Gazebo, nothing but pip).

    ros2 launch vlm_agent sim.launch.py [params_file:=/path/sim.yaml]

Same graph as `vlm-agent up --config config/sim.yaml`, which needs no `ros2 launch`.
"""
import os
import sys

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, dds_profile_actions, params_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription(
        [
            params_argument("sim.yaml"),
            *dds_profile_actions(default="true"),
            agent_node("mujoco_sim"),
            agent_node("navid_planner"),
            agent_node("motion_executor"),
            agent_node("safety_supervisor"),
        ]
    )
