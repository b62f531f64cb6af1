"""Recording (MCAP) -> training dataset for the embodied model families (NaVid, PaLM-E, Octopus style).

`build_dataset(recording, out_dir, config)` reads a recording made by `vlm-agent record` (or any
ROS 2 MCAP with the same topics) and writes time-aligned samples:

* frames: colour (`sensor_msgs/Image` any colour encoding, or `CompressedImage`) synchronised with
  odometry and depth when they were recorded (and depth is wanted), by `ApproximateTimeSynchronizer` on header
  stamps (slop `slop_s`), then downsampled to at most one frame per `sample_period_s`;
* for each frame, looked up by **log time** (when the recorder saw it; the text and Twist topics
  carry no header): the instruction in effect, the plan in effect, the *next* plan published
  after the frame for the same instruction (the label a planner should produce from this frame),
  the last `/vlm_agent/cmd_vel_raw` (what the agent asked) and `/cmd_vel` (what safety let through);
* episodes: a new instruction starts a new episode; frames before any instruction are skipped
  unless `require_instruction` is False (they get episode -1).

Layout of `out_dir`:
* `shard_00000.npz` ...: `rgb` (N, H, W, 3) uint8, `depth_mm` (N, H, W) uint16 (if depth),
  `odom` (N, 5) float32 [x m, y m, yaw rad, vx m/s, wz rad/s] in `odom` (NaN without odometry), `cmd_raw` and `cmd`
  (N, 2) float32 [vx m/s, wz rad/s] (NaN = none yet), `stamp_s` (N,) float64, `episode` (N,) int32;
* `frames.jsonl`: per frame {shard, row, stamp_s, log_time_s, episode, instruction, plan, next_plan};
* `episodes.jsonl`: per episode {episode, instruction, frames, start_s, end_s};
* `meta.json`: source, config, counts and drop reasons.
`load_episodes(out_dir)` reads it back grouped by episode.
"""
from __future__ import annotations

import bisect
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.sensors.frames import color_message_to_rgb, odometry_to_state, stamp_to_seconds
from vlm_agent.sensors.image_conversion import image_to_numpy
from vlm_agent.sensors.recording import RecordingReader
from vlm_agent.sensors.sync import ApproximateTimeSynchronizer


@dataclass
class DatasetConfig(ConfigBase):
    """How a recording becomes a dataset (see the module docstring).

    Attributes:
        color_topic, depth_topic, odom_topic: inputs; depth_topic "" = no depth.
        instruction_topic, plan_topic, cmd_raw_topic, cmd_topic: agent text and commands.
        sample_period_s: at most one frame per period (0 = every synchronised frame).
        image_width, image_height: resize rgb (and depth, nearest) to this size; 0 = keep.
        slop_s: synchronisation slop between colour, depth and odometry stamps.
        shard_frames: frames per .npz shard (bounds memory while building).
        require_instruction: skip frames before the first instruction.
    """

    color_topic: str = param("/camera/color/image_raw", "colour Image or CompressedImage topic")
    depth_topic: str = param("/camera/depth/image_rect_raw", "depth topic (16UC1 mm or 32FC1 m); empty = none")
    odom_topic: str = param("/odom", "odometry topic")
    instruction_topic: str = param("/vlm_agent/instruction", "instruction topic (std_msgs/String)")
    plan_topic: str = param("/vlm_agent/plan", "plan topic (std_msgs/String JSON)")
    cmd_raw_topic: str = param("/vlm_agent/cmd_vel_raw", "agent velocity commands (Twist)")
    cmd_topic: str = param("/cmd_vel", "velocity commands after the safety supervisor (Twist)")
    sample_period_s: float = param(0.0, "at most one frame per period (s); 0 = all", min=0.0)
    image_width: int = param(0, "resize width (px); 0 = keep", min=0, max=4096)
    image_height: int = param(0, "resize height (px); 0 = keep", min=0, max=4096)
    slop_s: float = param(0.05, "colour/depth/odometry sync slop (s)", min=0.0, max=5.0)
    shard_frames: int = param(1000, "frames per shard", min=1, max=1_000_000)
    require_instruction: bool = param(True, "skip frames before the first instruction")

    def __post_init__(self):
        super().__post_init__()
        if (self.image_width == 0) != (self.image_height == 0):
            raise ValueError("DatasetConfig.image_width/image_height: set both or neither")


class _Timeline:
    """Values by log time; `at(t)` is the last value at or before t, `after(t)` the first after t."""

    def __init__(self):
        self.times: list[int] = []
        self.values: list[Any] = []

    def add(self, t: int, value) -> None:
        self.times.append(t)
        self.values.append(value)

    def at(self, t: int):
        i = bisect.bisect_right(self.times, t)
        return self.values[i - 1] if i else None

    def after(self, t: int):
        i = bisect.bisect_right(self.times, t)
        return self.values[i] if i < len(self.values) else None


@dataclass
class _Single:
    """A colour frame standing alone (recordings without odometry and depth)."""

    stamp_s: float
    color: tuple

    def __getitem__(self, key):
        return self.color


def _header_stamp(msg, log_time_ns: int) -> float:
    try:
        stamp = stamp_to_seconds(msg.header.stamp)
    except (AttributeError, ValueError):
        return log_time_ns * 1e-9
    return stamp if stamp > 0 else log_time_ns * 1e-9  # unstamped publishers: fall back to log time


def _parse_plan(text: str) -> dict:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return {"raw": text}
    return data if isinstance(data, dict) else {"raw": text}


class _ShardWriter:
    def __init__(self, out_dir: str, shard_frames: int, with_depth: bool):
        self.out_dir, self.shard_frames, self.with_depth = out_dir, shard_frames, with_depth
        self.buffers: dict[str, list] = {k: [] for k in ("rgb", "depth_mm", "odom", "cmd_raw", "cmd", "stamp_s", "episode")}
        self.shard = 0
        self.rows = open(os.path.join(out_dir, "frames.jsonl"), "w", encoding="utf-8")
        self.total = 0

    def add(self, arrays: dict[str, Any], row: dict) -> None:
        for key, value in arrays.items():
            self.buffers[key].append(value)
        row = {"shard": self.shard, "row": len(self.buffers["rgb"]) - 1, **row}
        self.rows.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.total += 1
        if len(self.buffers["rgb"]) >= self.shard_frames:
            self.flush()

    def flush(self) -> None:
        if not self.buffers["rgb"]:
            return
        arrays = {k: np.stack(v) for k, v in self.buffers.items() if v and (k != "depth_mm" or self.with_depth)}
        np.savez_compressed(os.path.join(self.out_dir, f"shard_{self.shard:05d}.npz"), **arrays)
        self.buffers = {k: [] for k in self.buffers}
        self.shard += 1

    def close(self) -> None:
        self.flush()
        self.rows.close()


def _resize(image: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    if width == 0 or image.shape[1] == width and image.shape[0] == height:
        return image
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _depth_mm(msg) -> np.ndarray:
    array = image_to_numpy(msg)
    if msg.encoding in ("16UC1", "mono16"):
        return np.array(array, dtype=np.uint16)
    if msg.encoding == "32FC1":
        metres = np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(np.rint(metres * 1000.0), 0, 65535).astype(np.uint16)
    raise ValueError(f"encoding: depth must be 16UC1 or 32FC1, got '{msg.encoding}'")


def build_dataset(recording: str, out_dir: str, config: DatasetConfig | None = None, progress: bool = True) -> dict:
    """Convert `recording` (.mcap) into shards in `out_dir`; returns the summary also saved as meta.json."""
    from tqdm import tqdm

    config = config or DatasetConfig()
    reader = RecordingReader(recording)
    topics = reader.topics()
    if topics.get(config.color_topic, {}).get("count", 0) == 0:
        raise ValueError(f"{recording}: no '{config.color_topic}' messages in the recording (topics: {', '.join(sorted(topics))})")
    with_depth = bool(config.depth_topic) and topics.get(config.depth_topic, {}).get("count", 0) > 0
    with_odom = bool(config.odom_topic) and topics.get(config.odom_topic, {}).get("count", 0) > 0
    os.makedirs(out_dir, exist_ok=True)
    drops: Counter[str] = Counter()
    malformed_examples: list[str] = []

    # Pass 1: the small text/command topics as timelines.
    instructions, plans, cmd_raw, cmd = _Timeline(), _Timeline(), _Timeline(), _Timeline()
    timelines = {config.instruction_topic: instructions, config.plan_topic: plans, config.cmd_raw_topic: cmd_raw, config.cmd_topic: cmd}
    wanted = [t for t in timelines if t in topics]
    for m in reader.messages(topics=wanted) if wanted else ():
        if m.topic in (config.instruction_topic, config.plan_topic):
            timelines[m.topic].add(m.log_time_ns, str(m.message.data))
        else:
            lin, ang = m.message.linear, m.message.angular
            timelines[m.topic].add(m.log_time_ns, (float(lin.x), float(ang.z)))
    # Episode boundaries: every instruction message starts a new episode (a repeat starts it over).
    episode_of_time = _Timeline()
    for i, t in enumerate(instructions.times):
        episode_of_time.add(t, i)

    # Pass 2: frames, synchronised.
    streams = ("color",) + (("odom",) if with_odom else ()) + (("depth",) if with_depth else ())
    sync = None
    if len(streams) > 1:
        sync = ApproximateTimeSynchronizer(streams, slop_s=config.slop_s, queue_size=200, max_wait_s=max(1.0, 10 * config.slop_s))
    stream_of = {config.color_topic: "color"}
    if with_odom:
        stream_of[config.odom_topic] = "odom"
    if with_depth:
        stream_of[config.depth_topic] = "depth"
    shards = _ShardWriter(out_dir, config.shard_frames, with_depth)
    episodes: dict[int, dict] = {}
    last_kept = -math.inf
    total = sum(topics[t]["count"] for t in stream_of)

    def emit(synced) -> None:
        nonlocal last_kept
        color_log, color_msg = synced["color"]
        if synced.stamp_s < last_kept:
            last_kept = -math.inf  # the clock went back (the synchroniser reset itself): start sampling over
        if synced.stamp_s - last_kept < config.sample_period_s - 1e-6:  # tolerance: stamps are float sums
            drops["subsampled"] += 1
            return
        episode = episode_of_time.at(color_log)
        if episode is None:
            if config.require_instruction:
                drops["before_instruction"] += 1
                return
            episode = -1
        try:
            rgb = _resize(color_message_to_rgb(color_msg), config.image_width, config.image_height)
            odom = odometry_to_state(synced["odom"][1]).as_array() if with_odom else np.full(5, np.nan, np.float32)
            arrays = {"rgb": np.ascontiguousarray(rgb), "odom": odom}
            if with_depth:
                arrays["depth_mm"] = _resize(_depth_mm(synced["depth"][1]), config.image_width, config.image_height, nearest=True)
        except (ValueError, AttributeError) as exc:
            drops["malformed"] += 1
            if len(malformed_examples) < 5:
                malformed_examples.append(str(exc))
            return
        last_kept = synced.stamp_s
        instruction = instructions.at(color_log) or ""
        plan = plans.at(color_log)
        next_plan = plans.after(color_log)
        next_plan = _parse_plan(next_plan) if next_plan is not None else None
        if next_plan is not None and next_plan.get("instruction", instruction) != instruction:
            next_plan = None  # the next plan belongs to another instruction
        arrays["cmd_raw"] = np.array(cmd_raw.at(color_log) or (math.nan, math.nan), dtype=np.float32)
        arrays["cmd"] = np.array(cmd.at(color_log) or (math.nan, math.nan), dtype=np.float32)
        arrays["stamp_s"] = np.float64(synced.stamp_s)
        arrays["episode"] = np.int32(episode)
        shards.add(arrays, {
            "stamp_s": synced.stamp_s, "log_time_s": color_log * 1e-9, "episode": episode, "instruction": instruction,
            "plan": _parse_plan(plan) if plan is not None else None, "next_plan": next_plan,
        })
        ep = episodes.setdefault(episode, {"episode": episode, "instruction": instruction, "frames": 0, "start_s": synced.stamp_s})
        ep["frames"] += 1
        ep["end_s"] = synced.stamp_s

    try:
        bar = tqdm(total=total, desc="frames", unit="msg", disable=not progress)
        for m in reader.messages(topics=list(stream_of)):
            bar.update(1)
            stream = stream_of[m.topic]
            if sync is None:  # colour only: nothing to synchronise
                emit(_Single(_header_stamp(m.message, m.log_time_ns), (m.log_time_ns, m.message)))
                continue
            for synced in sync.add(stream, _header_stamp(m.message, m.log_time_ns), (m.log_time_ns, m.message)):
                emit(synced)
        for synced in sync.flush() if sync is not None else ():  # the last frames' partners are final now
            emit(synced)
        bar.close()
    finally:
        shards.close()
    for reason, count in (sync.drops.counts.items() if sync is not None else ()):
        drops[f"sync_{reason}"] += count
    with open(os.path.join(out_dir, "episodes.jsonl"), "w", encoding="utf-8") as f:
        for ep in sorted(episodes.values(), key=lambda e: e["episode"]):
            f.write(json.dumps(ep, ensure_ascii=False) + "\n")
    summary = {
        "source": os.path.abspath(recording),
        "config": config.to_dict(),
        "frames": shards.total,
        "shards": shards.shard,
        "episodes": len(episodes),
        "depth": with_depth,
        "odometry": with_odom,
        "dropped": dict(drops),
        "time_jumps": sync.time_jumps if sync is not None else 0,
        "malformed_examples": malformed_examples,
    }
    with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    return summary


def load_episodes(out_dir: str) -> Iterator[dict]:
    """Episodes of a built dataset, in order: {episode, instruction, rgb (N,H,W,3), odom, cmd_raw, cmd,
    stamp_s, depth_mm (if any), rows (the frames.jsonl rows: plans, next plans)}."""
    with open(os.path.join(out_dir, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(out_dir, "frames.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    shards = []
    for i in range(meta["shards"]):
        with np.load(os.path.join(out_dir, f"shard_{i:05d}.npz")) as npz:
            shards.append({k: npz[k] for k in npz.files})  # NpzFile decompresses on every access
    by_episode: dict[int, list[dict]] = {}
    for row in rows:
        by_episode.setdefault(row["episode"], []).append(row)
    for episode in sorted(by_episode):
        ep_rows = by_episode[episode]
        out: dict[str, Any] = {"episode": episode, "instruction": ep_rows[0]["instruction"], "rows": ep_rows}
        for key in shards[0] if shards else ():
            out[key] = np.stack([shards[r["shard"]][key][r["row"]] for r in ep_rows])
        yield out
