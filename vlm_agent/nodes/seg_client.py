"""Seg episodes of the embedded simulator through the segmentation node (`vlm-agent eval --suite seg --ros`).

The graph (`GraphProcess`, i.e. `vlm-agent up` in a second process, on config/segmentation.yaml):
`mujoco_sim` on the seg suite with the camera of the in-process `SimConfig`, and the `segmenter`
node (backend from `--policy`: oracle, sa2va with `--model`, sa2va_official with `--model`). Per
episode: the episode's parameters and `mujoco_sim/reset` (`RosEvalClient.reset_episode`), the
episode's instruction as the referring expression on `segmentation/query`, then the first mask on
`segmentation/mask` whose source frame (its header stamp, sim time) is after the reset. That mask
is scored against the ground truth of a local `NavEnv` on the same episode at the robot's pose
(odometry), as in-process eval scores frame 0 (`rollouts._run_seg`: `iou`, `intersection`,
`union`, `gt_pixels`; aggregated by `aggregate_seg`, held-out targets and the per task / pair /
phrasing breakdown).

Only the first frame is scored: the clips of in-process eval (`sim/seg_clips.py`) move the robot by
teleporting it between frames, which `mujoco_sim` has no service for, and the robot stands still in
this graph (no executor), so every later frame shows the same view. The result says so
(`seg_scoring`); clip figures (`clip_miou`, ...) are in-process only.
This module imports rclpy; import it lazily.
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from vlm_agent.nodes.eval_client import (EpisodeSpans, GraphProcess, RosEvalClient, RosEvalConfig, _maybe, graph_parameters,
                                         ros_eval_summary)

SEG_GRAPH_NODES = ("mujoco_sim", "segmenter")
SEG_SCORING = ("first mask of each episode (the clip's frame 0, the robot at the start pose); in-process clips "
               "teleport the robot between frames, which mujoco_sim has no service for")
SEG_BACKENDS = {"oracle": "oracle", "sa2va": "sa2va", "sa2va_official": "sa2va_official"}


def segmenter_parameters(policy_name: str, model_dir: str | None = None, device: str | None = None) -> dict:
    """The segmenter node's backend for `--policy`: oracle (ground truth, privileged), sa2va or
    sa2va_official (with --model DIR)."""
    backend = SEG_BACKENDS.get(policy_name)
    if backend is None:
        raise ValueError(f"--ros --suite seg runs the segmenter node: --policy {', '.join(SEG_BACKENDS)}, not '{policy_name}'")
    if backend == "sa2va_official" and not model_dir:
        raise ValueError(f"--policy {policy_name} --ros needs --model DIR")  # (sa2va: the node loads the shipped checkpoints/sa2va_nano)
    params = {"backend": backend, "model_dir": model_dir or ""}
    if device:
        params["device"] = device
    return params


# The in-process perception's settings (`SegmenterPerceptionConfig` fields, `--perception-param`) that
# also apply through ROS, and the segmenter node parameter each one sets.
ROS_PERCEPTION_PARAMS = {"verifier": "verifier_model_dir", "verifier_min_match": "verifier_min_match"}


def perception_segmenter_parameters(perception_params: dict | None = None) -> dict:
    """The segmenter node's parameters for the segmenter perception through ROS (`eval --suite manip
    --ros --perception segmenter`, the demo's manip graphs): the `ROS_PERCEPTION_PARAMS` settings in
    `perception_params`, the others at `SegmenterPerceptionConfig()`'s defaults, the in-process
    path's, so both paths run the same verifier unless told otherwise. ValueError for another key or
    a bad value."""
    from vlm_agent.skills.segmenter_perception import SegmenterPerceptionConfig

    perception_params = dict(perception_params or {})
    other = sorted(set(perception_params) - set(ROS_PERCEPTION_PARAMS))
    if other:
        raise ValueError(f"through ROS only {', '.join(ROS_PERCEPTION_PARAMS)} of the perception settings apply, not {', '.join(other)}")
    config = SegmenterPerceptionConfig(**perception_params)
    return {node: getattr(config, key) for key, node in ROS_PERCEPTION_PARAMS.items()}


def seg_graph_parameters(episode, segmenter: dict, sim_config=None, base_config: str | None = None,
                         real_time_factor: float = 0.0) -> dict:
    """`base_config` (default config/segmentation.yaml) with the simulator of `graph_parameters` (the
    episode, the camera of `sim_config`; its own instruction off) and `segmenter` for the node (its
    query only from `segmentation/query`, no overlay)."""
    import yaml

    if base_config is None:
        from vlm_agent.commands.demo import default_config_path

        base_config = default_config_path("segmentation.yaml")
    with open(base_config) as f:
        params = yaml.safe_load(f) or {}
    generated = graph_parameters(episode, sim_config, RosEvalConfig(real_time_factor=real_time_factor))
    for section in ("/**", "mujoco_sim"):
        params.setdefault(section, {}).setdefault("ros__parameters", {}).update(generated[section]["ros__parameters"])
    params["mujoco_sim"]["ros__parameters"]["publish_instruction"] = False
    node = params.setdefault("segmenter", {}).setdefault("ros__parameters", {})
    node.update(segmenter, use_sim_time=True, use_instruction=False, query="", publish_overlay=False)
    return params


def run_segmenter_episodes(episodes, policy_name: str = "oracle", *, config=None, seed: int | None = None, ros_config=None,
                           logger=None, model_dir: str | None = None, device: str | None = None, base_config: str | None = None,
                           mask_timeout_s: float = 120.0, **_unused) -> dict:
    """See module docstring. Returns the fields of `EvalResult` plus sim_time_s, wall_time_s,
    `segmenter` (the node's backend) and `seg_scoring` (what was scored)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS
    from vlm_agent.nodes.segmenter import LABEL_TOPIC, MASK_TOPIC, QUERY_TOPIC
    from vlm_agent.sensors.frames import stamp_to_seconds
    from vlm_agent.sensors.image_conversion import image_to_numpy
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.metrics import aggregate_seg, iou

    for ep in episodes:
        if ep.suite != "seg":
            raise ValueError(f"episode {ep.episode_id} is a {ep.suite} episode, not seg")
    ros_config = ros_config or RosEvalConfig()
    log = logger or (lambda text: print(text, file=sys.stderr))
    seg_params = segmenter_parameters(policy_name, model_dir, device)
    sim_config = config or SimConfig()
    params = seg_graph_parameters(episodes[0], seg_params, sim_config, base_config, ros_config.real_time_factor)
    graph_cm = GraphProcess(params, nodes=SEG_GRAPH_NODES) if ros_config.start_graph else None
    truth = NavEnv(SimConfig(width=sim_config.width, height=sim_config.height, vertical_fov_deg=sim_config.vertical_fov_deg,
                             shadows=sim_config.shadows, render_depth=False))
    masks, labels = [], []
    per = []
    spans = EpisodeSpans()
    try:
        with _maybe(graph_cm) as graph, RosEvalClient(ros_config, log, sensors=False) as client:
            query_pub = client.node.create_publisher(String, QUERY_TOPIC, COMMAND_QOS)
            mask_sub = client.node.create_subscription(Image, MASK_TOPIC, lambda m: masks.append((time.monotonic(), m)), SENSOR_QOS)
            # Deep: while the client renders the ground truth, the node labels every frame (RTF 0: a burst).
            label_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)
            label_sub = client.node.create_subscription(String, LABEL_TOPIC, lambda m: labels.append(json.loads(m.data)), label_qos)
            t = ros_config.startup_timeout_s
            for c, name in ((client.reset_client, "reset"), (client.result_client, "result"), (client.param_client, "set_parameters")):
                client.spin_until(c.service_is_ready, t, f"/mujoco_sim/{name} service", graph)
            client.wait_active(graph)
            client.spin_until(lambda: query_pub.get_subscription_count() >= 1 and mask_sub.get_publisher_count() >= 1
                              and label_sub.get_publisher_count() >= 1, t, f"segmenter on {QUERY_TOPIC}, {MASK_TOPIC}, {LABEL_TOPIC}", graph)
            for ep in episodes:
                info, sim_start = spans.reset(client, ep, graph)
                query = info.get("instruction", ep.instruction)
                n_masks, n_labels = len(masks), len(labels)
                sent = time.monotonic()
                query_pub.publish(String(data=query))

                def first_mask():
                    return next((m for _t, m in masks[n_masks:] if stamp_to_seconds(m.header.stamp) > sim_start + 1e-9), None)

                def error():
                    return next((lb for lb in labels[n_labels:] if lb.get("error") and lb.get("query") in (query, None)), None)

                client.spin_until(lambda: first_mask() is not None or error() is not None, mask_timeout_s,
                                  f"mask for '{query}' on {MASK_TOPIC}", graph)
                latency = time.monotonic() - sent
                msg, err = first_mask(), error()
                truth.reset(ep)
                pose = client.latest.pose
                if pose is not None and math.dist(pose[:2], ep.start_pose[:2]) > 1e-3:
                    truth.set_pose(*pose)  # the robot stands still here; this catches a drift
                gt = truth.object_mask(ep.goal_object)
                if msg is not None:
                    pred = image_to_numpy(msg) > 127
                    pred = pred.reshape(pred.shape[:2])
                    if pred.shape != gt.shape:
                        raise ValueError(f"the segmenter published a {pred.shape} mask for a {gt.shape} camera")
                    mask_stamp = stamp_to_seconds(msg.header.stamp)
                else:
                    pred, mask_stamp = np.zeros_like(gt), math.nan
                value, inter, union = iou(pred, gt)
                def label_of_mask():
                    return next((lb for lb in labels[n_labels:] if not lb.get("error") and abs(float(lb.get("stamp", math.nan)) - mask_stamp) < 1e-6), None)

                if msg is not None:  # the label follows its mask
                    try:
                        client.spin_until(lambda: label_of_mask() is not None, 2.0, "label of the mask", graph)
                    except TimeoutError:
                        pass
                label = label_of_mask() or {}
                _result, sim_end = spans.result(client, graph)
                m = {"iou": value, "intersection": inter, "union": union, "gt_pixels": int(gt.sum()),
                     "source": label.get("source"), "score": label.get("score"), "error": err.get("error") if msg is None and err else None,
                     "mask_latency_s": latency, "frame_sim_time_s": mask_stamp - sim_start, "sim_time_s": sim_end - sim_start,
                     "episode_id": ep.episode_id, "task": ep.task, "held_out": ep.held_out,
                     "held_out_phrasing": ep.held_out_phrasing, "instruction": ep.instruction}
                per.append(m)
                log(f"{ep.episode_id}: IoU {value:.3f} ({m['source'] or m['error']}) mask after {latency:.2f} s")
    finally:
        truth.close()
    return ros_eval_summary("seg", policy_name, episodes, seed, per, aggregate_seg, len(per), spans, ros_config,
                            segmenter=seg_params, seg_scoring=SEG_SCORING)
