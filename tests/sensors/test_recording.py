"""ros2msg schemas and MCAP write/read round trips (no ROS graph; rclpy only to serialise test messages)."""
from __future__ import annotations

import numpy as np
import pytest

from vlm_agent.sensors.recording import McapRecordingWriter, RecordingReader, canonical_type
from vlm_agent.sensors.ros2msg import SEPARATOR, _idl_to_msg_type, ros2msg_schema


def test_schema_has_every_dependency_once_in_ros2msg_layout():
    text = ros2msg_schema("nav_msgs/msg/Odometry")
    deps = [line[5:] for line in text.splitlines() if line.startswith("MSG: ")]
    assert deps[:2] == ["std_msgs/Header", "builtin_interfaces/Time"]
    assert set(deps) == {
        "std_msgs/Header", "builtin_interfaces/Time", "geometry_msgs/PoseWithCovariance", "geometry_msgs/Pose",
        "geometry_msgs/Point", "geometry_msgs/Quaternion", "geometry_msgs/TwistWithCovariance",
        "geometry_msgs/Twist", "geometry_msgs/Vector3",
    }
    assert len(deps) == len(set(deps))
    assert text.count(SEPARATOR) == len(deps)
    assert ros2msg_schema("sensor_msgs/Image") == ros2msg_schema("sensor_msgs/msg/Image")
    with pytest.raises(ValueError):
        ros2msg_schema("Image")


def test_idl_names_map_to_msg_names():
    assert _idl_to_msg_type("sequence<uint8>") == "uint8[]"
    assert _idl_to_msg_type("double[9]") == "float64[9]"
    assert _idl_to_msg_type("sequence<geometry_msgs/Point, 3>") == "geometry_msgs/Point[<=3]"
    assert _idl_to_msg_type("boolean") == "bool"


def _messages():
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from std_msgs.msg import String

    from vlm_agent.sensors.image_conversion import numpy_to_image

    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        img = numpy_to_image(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "rgb8")
        img.header.stamp.sec, img.header.frame_id = 100 + i, "camera_color_optical_frame"
        odom = Odometry()
        odom.header.stamp.sec = 100 + i
        odom.pose.pose.position.x = 0.25 * i
        odom.pose.pose.orientation.w = 1.0
        odom.pose.covariance[0] = 0.01
        out += [("/camera/color/image_raw", "sensor_msgs/msg/Image", img), ("/odom", "nav_msgs/msg/Odometry", odom)]
        out.append(("/cmd_vel", "geometry_msgs/msg/Twist", Twist()))
    out.append(("/vlm_agent/instruction", "std_msgs/msg/String", String(data="go to the red chair — über")))
    return out


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_round_trip_gives_identical_messages(tmp_path, compression):
    from rclpy.serialization import deserialize_message, serialize_message

    from vlm_agent.nodes.recorder import message_class

    path = str(tmp_path / "sub" / "run.mcap")
    sent = _messages()
    with McapRecordingWriter(path, compression=compression, metadata={"why": "test"}) as writer:
        for i, (topic, type_name, msg) in enumerate(sent):
            writer.add_channel(topic, type_name)
            writer.write(topic, serialize_message(msg), log_time_ns=1_000 + i)
    reader = RecordingReader(path)
    topics = reader.topics()
    assert topics["/odom"] == {"type": "nav_msgs/msg/Odometry", "count": 5}
    assert topics["/vlm_agent/instruction"]["count"] == 1
    assert reader.metadata()["vlm_agent"] == {"why": "test"}
    got = list(reader.messages(decode=False))
    assert [m.log_time_ns for m in got] == [1_000 + i for i in range(len(sent))]
    for (topic, type_name, msg), rec in zip(sent, got):
        assert rec.topic == topic and rec.type_name == type_name
        assert deserialize_message(rec.data, message_class(type_name)) == msg
    # mcap-ros2-support decodes the same bytes with our schemas (what Foxglove does)
    decoded = {m.topic: m.message for m in reader.messages()}
    assert decoded["/vlm_agent/instruction"].data == "go to the red chair — über"
    assert decoded["/odom"].pose.pose.position.x == pytest.approx(1.0)
    assert bytes(decoded["/camera/color/image_raw"].data) == bytes(sent[-4][2].data)


def test_writer_rejects_type_changes_and_writes_after_close(tmp_path):
    writer = McapRecordingWriter(str(tmp_path / "x.mcap"))
    writer.add_channel("/a", "std_msgs/String")
    assert writer.add_channel("/a", "std_msgs/msg/String") == writer.add_channel("/a", "std_msgs/String")
    with pytest.raises(ValueError):
        writer.add_channel("/a", "std_msgs/msg/Float64")
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError):
        writer.write("/a", b"", 0)
    with pytest.raises(ValueError):
        McapRecordingWriter(str(tmp_path / "y.mcap"), compression="gzip")
    with pytest.raises(FileNotFoundError):
        RecordingReader(str(tmp_path / "none.mcap"))
    assert canonical_type("std_msgs/String") == "std_msgs/msg/String"


def test_unfinished_recording_reads_up_to_its_last_complete_chunk(tmp_path):
    """A recorder killed without closing leaves no summary/footer; complete chunks stay readable."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    path = str(tmp_path / "killed.mcap")
    writer = McapRecordingWriter(path, chunk_size=1000)
    writer.add_channel("/a", "std_msgs/msg/String")
    for i in range(200):
        writer.write("/a", serialize_message(String(data="x" * 50 + f"{i:03d}")), i)
    writer._file.flush()  # what reached the disk before the process died
    try:
        reader = RecordingReader(path)
        got = list(reader.messages())
        assert reader.truncated
        assert 150 <= len(got) < 200
        assert [m.message.data[-3:] for m in got] == [f"{i:03d}" for i in range(len(got))]
        assert reader.topics()["/a"]["count"] == len(got)
    finally:
        writer.close()
    reader = RecordingReader(path)
    assert len(list(reader.messages(decode=False))) == 200 and not reader.truncated


def test_every_contract_type_round_trips_through_its_schema(tmp_path):
    """Each topic-contract type: our ros2msg schema decodes rclpy's CDR bytes (as Foxglove would)."""
    from rclpy.serialization import serialize_message

    from vlm_agent.nodes.recorder import CONTRACT_TYPES, message_class

    path = str(tmp_path / "all.mcap")
    types = sorted(set(CONTRACT_TYPES.values()))
    with McapRecordingWriter(path) as writer:
        for i, type_name in enumerate(types):
            topic = f"/t{i}"
            writer.add_channel(topic, type_name)
            writer.write(topic, serialize_message(message_class(type_name)()), i)
    decoded = {m.type_name: m.message for m in RecordingReader(path).messages()}
    assert sorted(decoded) == types
    for type_name, msg in decoded.items():
        fields = message_class(type_name).get_fields_and_field_types()
        assert all(hasattr(msg, f) for f in fields), type_name
