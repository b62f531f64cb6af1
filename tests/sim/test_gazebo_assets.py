"""Gazebo assets checked statically (Gazebo and ros_gz cannot be installed here): SDF parses with the
expected elements, the committed files match the generator, and the ros_gz_bridge YAML maps exactly
the simulator's share of the topic contract with the right types and directions."""
import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from vlm_agent.sim.sdf import default_files

ROOT = Path(__file__).resolve().parents[2]
GZ = ROOT / "sim" / "gazebo"

# The topic contract's sensor/actuator topics that a simulator provides (ARCHITECTURE.md); relative
# like the nodes' topics (a namespace moves them), except /clock.
CONTRACT = {
    "camera/color/image_raw": ("sensor_msgs/msg/Image", "GZ_TO_ROS"),
    "camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", "GZ_TO_ROS"),
    "camera/depth/image_rect_raw": ("sensor_msgs/msg/Image", "GZ_TO_ROS"),
    "odom": ("nav_msgs/msg/Odometry", "GZ_TO_ROS"),
    "joint_states": ("sensor_msgs/msg/JointState", "GZ_TO_ROS"),
    "/clock": ("rosgraph_msgs/msg/Clock", "GZ_TO_ROS"),
    "cmd_vel": ("geometry_msgs/msg/Twist", "ROS_TO_GZ"),
    "arm_controller/joint_trajectory": ("trajectory_msgs/msg/JointTrajectory", "ROS_TO_GZ"),
    "gripper/command": ("std_msgs/msg/Float64", "ROS_TO_GZ"),
}
GZ_TYPES = {
    "sensor_msgs/msg/Image": "gz.msgs.Image",
    "sensor_msgs/msg/CameraInfo": "gz.msgs.CameraInfo",
    "nav_msgs/msg/Odometry": "gz.msgs.Odometry",
    "sensor_msgs/msg/JointState": "gz.msgs.Model",
    "rosgraph_msgs/msg/Clock": "gz.msgs.Clock",
    "geometry_msgs/msg/Twist": "gz.msgs.Twist",
    "trajectory_msgs/msg/JointTrajectory": "gz.msgs.JointTrajectory",
    "std_msgs/msg/Float64": "gz.msgs.Double",
}


def test_committed_sdf_matches_generator():
    for rel, text in default_files().items():
        assert (GZ / rel).read_text() == text, f"{rel} is stale: run python -m vlm_agent.sim.sdf"


def test_world_sdf_elements():
    root = ET.parse(GZ / "worlds" / "default.sdf").getroot()
    assert root.tag == "sdf" and root.get("version")
    world = root.find("world")
    assert world.find("physics") is not None and world.find("light") is not None
    plugins = {p.get("filename") for p in world.findall("plugin")}
    assert {"gz-sim-physics-system", "gz-sim-sensors-system", "gz-sim-scene-broadcaster-system"} <= plugins
    names = {m.get("name") for m in world.findall("model")}
    assert "ground_plane" in names and {"wall_south", "wall_north", "wall_west", "wall_east"} <= names
    assert any(n.startswith("obj_") for n in names)
    assert world.find("include/uri").text == "model://vlm_agent_robot"


def test_robot_sdf_elements_and_topics():
    model = ET.parse(GZ / "models" / "vlm_agent_robot" / "model.sdf").getroot().find("model")
    joints = {j.get("name"): j.get("type") for j in model.findall("joint")}
    for j in ("arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist"):
        assert joints[j] == "revolute"
    assert joints["gripper_left"] == joints["gripper_right"] == "prismatic"
    links = {link.get("name") for link in model.findall("link")}
    for j in model.findall("joint"):
        assert j.find("parent").text in links | {"world"} and j.find("child").text in links
    sensor = model.find("link/sensor[@type='rgbd_camera']")
    assert sensor is not None and sensor.find("topic").text == "/camera"
    assert sensor.find("camera/optical_frame_id").text == "camera_color_optical_frame"
    plugins = {p.get("filename"): p for p in model.findall("plugin")}
    dd = plugins["gz-sim-diff-drive-system"]
    assert dd.find("topic").text == "/cmd_vel" and dd.find("odom_topic").text == "/odom"
    assert dd.find("frame_id").text == "odom" and dd.find("child_frame_id").text == "base_link"
    gz_topics = {"/cmd_vel", "/odom", "/camera/image", "/camera/depth_image", "/camera/camera_info", "/clock"}
    gz_topics |= {p.find("topic").text for p in model.findall("plugin") if p.find("topic") is not None}
    bridge = yaml.safe_load((GZ / "bridge.yaml").read_text())
    for entry in bridge:
        assert entry["gz_topic_name"] in gz_topics, f"bridge reads {entry['gz_topic_name']}, which nothing publishes"


def test_bridge_yaml_matches_topic_contract():
    entries = yaml.safe_load((GZ / "bridge.yaml").read_text())
    assert isinstance(entries, list)
    keys = {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}
    by_topic = {}
    for e in entries:
        assert set(e) == keys, e
        by_topic[e["ros_topic_name"]] = e
    assert set(by_topic) == set(CONTRACT)
    for topic, (ros_type, direction) in CONTRACT.items():
        e = by_topic[topic]
        assert (e["ros_type_name"], e["direction"]) == (ros_type, direction), topic
        assert e["gz_type_name"] == GZ_TYPES[ros_type], topic


def test_mujoco_sim_node_uses_the_same_topics_and_types():
    """The embedded sim node and the bridge expose the same names (read from the node's source)."""
    src = (ROOT / "vlm_agent" / "nodes" / "mujoco_sim.py").read_text()
    for topic in CONTRACT:
        assert f'"{topic}"' in src, topic


def test_gazebo_launch_is_valid_python_and_references_assets():
    src = (ROOT / "launch" / "gazebo.launch.py").read_text()
    tree = ast.parse(src)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    for needle in ("bridge.yaml", "default.sdf", "parameter_bridge", "gz_sim.launch.py", "use_sim_time"):
        assert needle in src
