"""Standalone middleware defaults: set only what the user did not set, and the profile is valid XML."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from vlm_agent.ros_env import _fast_dds_major, configure_ros_environment, fastdds_profile_path


def test_standalone_defaults_fill_only_missing_values():
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    changed = configure_ros_environment(env, standalone=True)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"  # the user's choice wins
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == fastdds_profile_path()
    if _fast_dds_major() == 2:  # Fast DDS 2.x (Humble, Jazzy) reads only the old name
        assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == fastdds_profile_path()
    else:  # Fast DDS 3 (Kilted) warns at every start when the old name is set
        assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in changed


def test_system_ros_is_left_alone():
    env = {}
    assert configure_ros_environment(env, standalone=False) == {} and env == {}


def test_profile_has_large_shm_segment_and_loopback_udp():
    root = ET.parse(fastdds_profile_path()).getroot()
    ns = {"d": "http://www.eprosima.com"}
    sizes = [int(e.text) for e in root.iterfind(".//d:segment_size", ns)]
    assert sizes and min(sizes) >= 8 * 1024 * 1024  # one 640x480 rgb8 frame is 900 KiB
    assert [e.text for e in root.iterfind(".//d:interfaceWhiteList/d:address", ns)] == ["127.0.0.1"]
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"
