"""vlm_agent against Gazebo (gz sim): the default world, the robot, ros_gz_bridge, and the agent graph.

    ros2 launch vlm_agent gazebo.launch.py [world:=/path/world.sdf] [params_file:=/path/sim.yaml] [namespace:=/robot1]

Needs a ROS 2 install with ros_gz (ros_gz_sim, ros_gz_bridge) and Gazebo Harmonic or newer. The bridge
(`sim/gazebo/bridge.yaml`) gives Gazebo's topics the same ROS names and types as the embedded
mujoco_sim node, so the agent nodes are unchanged; they run on sim time from Gazebo's /clock
(`use_sim_time` defaults to true here). With a `namespace`, the bridge's ROS topics must carry it too.
Not run on the development machine (Gazebo cannot be installed there); the assets are checked
statically by tests/sim/test_gazebo_assets.py.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import agent_node, graph_arguments, lifecycle_manager, params_argument, share_path  # noqa: E402


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory

    gz_launch = os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")
    models = share_path("sim", "gazebo", "models")
    resource_path = os.pathsep.join(p for p in (models, os.environ.get("GZ_SIM_RESOURCE_PATH", "")) if p)
    actions = [
        params_argument("sim.yaml"),
        *graph_arguments(use_sim_time="true"),
        DeclareLaunchArgument("world", default_value=share_path("sim", "gazebo", "worlds", "default.sdf"), description="SDF world"),
        SetEnvironmentVariable("GZ_SIM_RESOURCE_PATH", resource_path),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(gz_launch),
            launch_arguments={"gz_args": ["-r ", LaunchConfiguration("world")]}.items(),
        ),
        Node(
            package="ros_gz_bridge",
            executable="parameter_bridge",
            name="gz_bridge",
            namespace=LaunchConfiguration("namespace"),
            parameters=[{"config_file": share_path("sim", "gazebo", "bridge.yaml"), "use_sim_time": True}],
            output="screen",
        ),
    ]
    # the same agent graph as sim.launch.py, minus mujoco_sim (Gazebo + the bridge replace it)
    actions += [
        agent_node("navid_planner"),
        agent_node("motion_executor"),
        agent_node("safety_supervisor"),
        lifecycle_manager(["safety_supervisor", "navid_planner"]),
    ]
    return LaunchDescription(actions)
