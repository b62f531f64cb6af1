"""vlm_agent on a real robot: RealSense camera, NaVid planner, motion executor, safety supervisor.

    ros2 launch vlm_agent robot.launch.py [params_file:=/path/robot.yaml] [namespace:=/robot1]
        [use_sim_time:=false] [camera:=false] [decompress:=true] [nav2:=true nav2_params_file:=/path/nav2.yaml]

The robot's base driver must consume `cmd_vel` (published only by safety_supervisor; relative, so
`<namespace>/cmd_vel`) and publish `odom`; set `camera:=false` when another driver already publishes
the camera topics. The managed nodes (realsense_camera, safety_supervisor, navid_planner) are
brought to active in that order by lifecycle_manager; until then the supervisor publishes zero.

Nav2 through the gate (motion_executor `mode: goal_pose`): `nav2:=true` starts nav2_bringup's
navigation_launch.py in the same namespace with its velocity output remapped into
`vlm_agent/cmd_vel_raw` (`vlm_agent.nodes.composition.nav2_gate_remaps`), so the supervisor stays the
only publisher of `cmd_vel`. Starting Nav2 yourself: remap its last velocity stage the same way,
`-r velocity_smoother:cmd_vel_smoothed:=vlm_agent/cmd_vel_raw` (and, on Jazzy+,
`-r collision_monitor:cmd_vel:=vlm_agent/cmd_vel_raw`), or `-r cmd_vel:=vlm_agent/cmd_vel_raw` on
controller_server when there is no smoother.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, dds_profile_actions, graph_arguments, lifecycle_manager, nav2_actions, params_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription(
        [
            params_argument("robot.yaml"),
            *graph_arguments(),
            DeclareLaunchArgument("camera", default_value="true", description="start the RealSense driver"),
            DeclareLaunchArgument("decompress", default_value="false", description="decode compressed colour images"),
            *dds_profile_actions(),
            agent_node("realsense_camera", condition_arg="camera"),
            agent_node("image_decompressor", condition_arg="decompress"),
            agent_node("navid_planner"),
            agent_node("motion_executor"),
            agent_node("safety_supervisor"),
            lifecycle_manager(["realsense_camera", "safety_supervisor", "navid_planner"], condition_arg="camera"),
            lifecycle_manager(["safety_supervisor", "navid_planner"], unless_arg="camera"),
            *nav2_actions(),
        ]
    )
