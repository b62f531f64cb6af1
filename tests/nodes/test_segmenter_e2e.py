"""Segmentation in two processes: the embedded simulator and the segmenter against this test.

Process 2 (`vlm-agent up`): mujoco_sim (a seg-suite episode) + segmenter. This process sends a query
on `/segmentation/query` and reads what comes back:
* backend `oracle` (ground-truth masks from a mirror of the simulator's episode, posed from odom):
  a mask whose header is a colour frame's header, and a PointStamped in the camera optical frame
  within 10 cm of the object's true centre (taken to the world with the simulator camera's pose);
* backend `sa2va` with a tiny *untrained* model (built here): the pipeline publishes masks and labels
  from the real model and tracker (no accuracy claim).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

from tests.ros_harness import NodeProcess, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WIDTH, HEIGHT, INDEX = 128, 96, 1
# The graph and these topics under a namespace of this run: other ROS tests may share the domain id.
NS = f"/segtest_e2e_{os.getpid()}"


def graph_yaml(path, segmenter: dict) -> str:
    params = {
        "/**": {"ros__parameters": {"use_sim_time": False}},
        "mujoco_sim": {"ros__parameters": {"suite": "seg", "split": "val", "episode_seed": 0, "episode_index": INDEX, "width": WIDTH,
                                           "height": HEIGHT, "camera_rate_hz": 5.0, "publish_instruction": False}},
        "segmenter": {"ros__parameters": {"num_threads": 1, **segmenter}},
    }
    with open(path, "w") as f:
        yaml.safe_dump(params, f)
    return str(path)


def _run(ros_node, ros_executor, config, query, want_target: bool, timeout: float = 90.0):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS

    frames, masks, targets, labels = [], [], [], []
    ros_node.create_subscription(Image, NS + "/camera/color/image_raw", lambda m: frames.append((m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id)), SENSOR_QOS)
    mask_sub = ros_node.create_subscription(Image, NS + "/segmentation/mask", masks.append, SENSOR_QOS)
    ros_node.create_subscription(PointStamped, NS + "/segmentation/target", targets.append, SENSOR_QOS)
    ros_node.create_subscription(String, NS + "/segmentation/label", lambda m: labels.append(json.loads(m.data)), COMMAND_QOS)
    query_pub = ros_node.create_publisher(String, NS + "/segmentation/query", COMMAND_QOS)
    with NodeProcess("vlm_agent.cli", args=["up", "--config", config, "--namespace", NS]) as graph:
        assert wait_for_publishers(mask_sub, timeout=60) and wait_for_subscribers(query_pub, timeout=30), graph.stop() or graph.output[-3000:]

        def done():
            if not graph.alive():
                return True
            return len(masks) >= 3 and (targets or not want_target)

        sent = [0.0]

        def resend():  # until the node has the query (lifecycle activation may lag discovery)
            if not any(lb.get("query") == query for lb in labels):
                query_pub.publish(String(data=query))

        timer = ros_node.create_timer(1.0, resend)
        resend()
        ok = spin_until(ros_executor, done, timeout=timeout)
        ros_node.destroy_timer(timer)
        assert graph.alive(), graph.output[-4000:]
        assert ok, f"masks {len(masks)}, targets {len(targets)}, labels {labels[-3:]}\n{graph.output[-3000:]}"
        del sent
    assert graph.returncode == 0, graph.output[-3000:]
    assert "Traceback" not in graph.output, graph.output[-3000:]
    return frames, masks, targets, labels


def test_oracle_mask_and_3d_target_from_the_simulator(ros_node, ros_executor, tmp_path):
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode

    episode = make_episode("seg", "val", 0, INDEX)
    config = graph_yaml(tmp_path / "seg_oracle.yaml", {"backend": "oracle"})
    frames, masks, targets, labels = _run(ros_node, ros_executor, config, episode.instruction, want_target=True)
    seen = set(frames)
    for mask in masks:  # the source frame's header, unchanged
        assert (mask.header.stamp.sec, mask.header.stamp.nanosec, mask.header.frame_id) in seen
        assert mask.encoding == "mono8" and (mask.width, mask.height) == (WIDTH, HEIGHT)
    assert any(np.frombuffer(m.data, np.uint8).max() == 255 for m in masks)
    label = next(lb for lb in labels if lb.get("target"))
    assert label["source"] == "oracle" and label["query"] == episode.instruction and label["object"] == episode.goal_object
    # The robot never moved: the camera's pose at the episode's start takes the point to the world.
    env = NavEnv(SimConfig(width=WIDTH, height=HEIGHT, render_depth=False))
    try:
        env.reset(episode)
        pos, rot = env.camera_optical_pose()
        truth = np.asarray(env.object_position(episode.goal_object))
    finally:
        env.close()
    for target in targets:
        assert target.header.frame_id == "camera_color_optical_frame"
        assert (target.header.stamp.sec, target.header.stamp.nanosec, "camera_color_optical_frame") in seen
        world = pos + rot @ np.array([target.point.x, target.point.y, target.point.z])
        assert np.linalg.norm(world - truth) < 0.10, (world, truth)


def test_untrained_sa2va_pipeline_publishes(ros_node, ros_executor, tmp_path):
    from tests.helpers.tiny_sa2va import save_untrained_sa2va_model

    model_dir = save_untrained_sa2va_model(tmp_path / "sa2va")
    config = graph_yaml(tmp_path / "seg_sa2va.yaml", {"backend": "sa2va", "model_dir": model_dir, "redetect_every": 2, "min_score": 0.0})
    frames, masks, targets, labels = _run(ros_node, ros_executor, config, "the red cube", want_target=False)
    seen = set(frames)
    assert all((m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) in seen for m in masks)
    ok = [lb for lb in labels if "error" not in lb]
    assert ok and {lb["source"] for lb in ok} <= {"detected", "re-detected", "tracked"} and "detected" in {lb["source"] for lb in ok}
    assert all(lb["query"] == "the red cube" and 0.0 <= lb["score"] <= 1.0 for lb in ok)
