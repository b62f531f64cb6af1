"""vlm_agent on a real robot: RealSense camera, NaVid planner, motion executor, safety supervisor.

    ros2 launch vlm_agent robot.launch.py [params_file:=/path/robot.yaml] [camera:=false]

The robot's base driver must consume `/cmd_vel` (published only by safety_supervisor) and publish
`/odom`; set `camera:=false` when another driver already publishes the camera topics.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, dds_profile_actions, params_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription(
        [
            params_argument("robot.yaml"),
            DeclareLaunchArgument("camera", default_value="true", description="start the RealSense driver"),
            DeclareLaunchArgument("decompress", default_value="false", description="decode compressed colour images"),
            *dds_profile_actions(),
            agent_node("realsense_camera", condition_arg="camera"),
            agent_node("image_decompressor", condition_arg="decompress"),
            agent_node("navid_planner"),
            agent_node("motion_executor"),
            agent_node("safety_supervisor"),
        ]
    )
