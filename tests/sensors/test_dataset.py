"""Recording -> dataset: alignment of frames, odometry, depth, instructions, plans and commands."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vlm_agent.sensors.dataset import DatasetConfig, build_dataset, load_episodes
from vlm_agent.sensors.recording import McapRecordingWriter

NS = 1_000_000_000


def _stamp(msg, t):
    msg.header.stamp.sec = int(t)
    msg.header.stamp.nanosec = int(round((t - int(t)) * 1e9))


def write_recording(path, compressed=False, malformed_at=None):
    """3 s of colour at 10 Hz (frame i is filled with value i), depth (1000 + i mm), odometry at 20 Hz
    (x = t - 100), instruction A at 99.9 s and B at 101.5 s, a plan every 0.5 s, commands at 10 Hz."""
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    from vlm_agent.sensors.image_conversion import numpy_to_compressed, numpy_to_image

    events = []  # (log_time_ns, topic, type, msg)
    color_topic = "/camera/color/image_raw/compressed" if compressed else "/camera/color/image_raw"
    color_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    for i in range(30):
        t = 100.0 + 0.1 * i
        rgb = np.full((24, 32, 3), i, np.uint8)
        img = numpy_to_compressed(rgb, "rgb8", fmt="png") if compressed else numpy_to_image(rgb, "rgb8")
        if i == malformed_at:
            img = numpy_to_image(rgb, "rgb8")
            img.step = 5  # inconsistent with width
        _stamp(img, t)
        depth = numpy_to_image(np.full((24, 32), 1000 + i, np.uint16), "16UC1")
        _stamp(depth, t + 0.002)
        events += [(int((t + 0.01) * NS), color_topic, color_type, img), (int((t + 0.012) * NS), "/camera/depth/image_rect_raw", "sensor_msgs/msg/Image", depth)]
        cmd = Twist()
        cmd.linear.x = 0.01 * i
        events.append((int((t + 0.02) * NS), "/vlm_agent/cmd_vel_raw", "geometry_msgs/msg/Twist", cmd))
    for j in range(62):
        t = 99.95 + 0.05 * j
        odom = Odometry()
        _stamp(odom, t)
        odom.pose.pose.position.x = t - 100.0
        odom.pose.pose.orientation.w = 1.0
        events.append((int((t + 0.005) * NS), "/odom", "nav_msgs/msg/Odometry", odom))
    events.append((int(99.9 * NS), "/vlm_agent/instruction", "std_msgs/msg/String", String(data="go to the red chair")))
    events.append((int(101.5 * NS), "/vlm_agent/instruction", "std_msgs/msg/String", String(data="turn around")))
    for k in range(6):
        t = 100.05 + 0.5 * k
        instruction = "go to the red chair" if t < 101.5 else "turn around"
        plan = {"plan_id": k, "instruction": instruction, "step": k, "raw_text": "move forward 25 cm",
                "primitives": [{"kind": "forward", "value": 25.0}], "latency_s": 0.1, "error": None}
        events.append((int(t * NS), "/vlm_agent/plan", "std_msgs/msg/String", String(data=json.dumps(plan))))
    events.sort(key=lambda e: e[0])
    with McapRecordingWriter(path) as writer:
        for log_ns, topic, type_name, msg in events:
            writer.add_channel(topic, type_name)
            writer.write(topic, serialize_message(msg), log_ns)
    return color_topic


def test_dataset_aligns_frames_state_and_text(tmp_path):
    rec = str(tmp_path / "run.mcap")
    write_recording(rec)
    out = str(tmp_path / "ds")
    summary = build_dataset(rec, out, DatasetConfig(sample_period_s=0.2, image_width=16, image_height=12, shard_frames=4), progress=False)
    assert summary["depth"] and summary["episodes"] == 2
    assert summary["frames"] == 15 and summary["shards"] == 4  # every other 10 Hz frame
    episodes = list(load_episodes(out))
    assert [e["instruction"] for e in episodes] == ["go to the red chair", "turn around"]
    for ep in episodes:
        n = len(ep["rows"])
        assert ep["rgb"].shape == (n, 12, 16, 3) and ep["depth_mm"].shape == (n, 12, 16)
        for k, row in enumerate(ep["rows"]):
            i = int(round((row["stamp_s"] - 100.0) / 0.1))
            assert np.all(ep["rgb"][k] == i)  # the right image
            assert np.all(ep["depth_mm"][k] == 1000 + i)  # its depth partner
            assert ep["odom"][k][0] == pytest.approx(0.1 * i, abs=0.026)  # odometry within half its period
            assert ep["cmd_raw"][k][0] == pytest.approx(0.01 * (i - 1), abs=1e-6) if i > 0 else np.isnan(ep["cmd_raw"][k][0])
            assert np.isnan(ep["cmd"][k]).all()  # /cmd_vel was not recorded
            t_log = row["log_time_s"]
            next_plan = row["next_plan"]
            if next_plan is not None:
                assert next_plan["instruction"] == ep["instruction"]
                assert 0 < 100.05 + 0.5 * next_plan["plan_id"] - t_log <= 0.5 + 1e-6
    frames_a = [r["stamp_s"] for r in episodes[0]["rows"]]
    assert frames_a[0] == pytest.approx(100.0) and max(frames_a) < 101.5
    assert summary["dropped"]["subsampled"] > 0


def test_compressed_colour_without_depth_and_malformed_frames(tmp_path):
    rec = str(tmp_path / "run.mcap")
    topic = write_recording(rec, compressed=True)
    summary = build_dataset(rec, str(tmp_path / "ds"), DatasetConfig(color_topic=topic, depth_topic=""), progress=False)
    assert not summary["depth"] and summary["frames"] == 30
    eps = list(load_episodes(str(tmp_path / "ds")))
    assert "depth_mm" not in eps[0] and np.all(eps[0]["rgb"][3] == 3)

    rec2 = str(tmp_path / "bad.mcap")
    write_recording(rec2, malformed_at=7)
    summary = build_dataset(rec2, str(tmp_path / "ds2"), DatasetConfig(), progress=False)
    assert summary["frames"] == 29 and summary["dropped"]["malformed"] == 1
    assert "step" in summary["malformed_examples"][0]


def test_missing_topics_and_bad_config(tmp_path):
    rec = str(tmp_path / "run.mcap")
    write_recording(rec)
    summary = build_dataset(rec, str(tmp_path / "ds_no_odom"), DatasetConfig(odom_topic="", depth_topic=""), progress=False)
    assert summary["frames"] == 30 and not summary["odometry"]
    ep = next(load_episodes(str(tmp_path / "ds_no_odom")))
    assert np.isnan(ep["odom"]).all() and np.all(ep["rgb"][5] == 5)
    with pytest.raises(ValueError, match="no '/camera/x'"):
        build_dataset(rec, str(tmp_path / "ds"), DatasetConfig(color_topic="/camera/x"), progress=False)
    with pytest.raises(ValueError, match="image_width"):
        DatasetConfig(image_width=10)


def test_cli_builds_a_dataset(tmp_path, capsys):
    from vlm_agent.cli import main

    rec = str(tmp_path / "run.mcap")
    write_recording(rec)
    assert main(["dataset", rec, "--info"]) == 0
    assert "/vlm_agent/plan" in capsys.readouterr().out
    assert main(["dataset", rec, "-o", str(tmp_path / "ds"), "--size", "8x6", "--period", "0.5"]) == 0
    assert '"frames": 6' in capsys.readouterr().out
    meta = json.load(open(tmp_path / "ds" / "meta.json"))
    assert meta["frames"] == 6 and meta["config"]["image_width"] == 8
    assert main(["dataset", rec, "-o", str(tmp_path / "ds3"), "--size", "big"]) == 2
