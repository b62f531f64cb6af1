"""Sensor ingest: colour (raw or compressed) + depth + odometry -> synchronised observations + frame history.

`SensorIngest` is what a planner node feeds from its subscription callbacks (plain Python; the
messages are read by their fields, no rclpy):

    ingest = SensorIngest(IngestConfig(use_depth=True))
    ingest.add_color(msg)   # sensor_msgs/Image or CompressedImage
    ingest.add_depth(msg)   # 16UC1 mm or 32FC1 m
    ingest.add_odom(msg)    # nav_msgs/Odometry
    obs = ingest.latest     # newest synchronised Observation
    video = ingest.history.sample(8)

Messages are queued undecoded in the `ApproximateTimeSynchronizer`; only colour/depth frames that
end up in a synchronised set are decoded (a compressed frame that is never used costs nothing).
A synchronised colour frame then enters the `FrameHistory` (time-downsampled, bounded). Memory is
bounded by `queue_size` messages per stream plus `max_frames` history frames, however long it runs.
Drops are counted by reason: `malformed` (bad header or undecodable data, with the reason),
`stale`/`out_of_order` (history), `unmatched`/`queue_overflow`/`out_of_order` (sync, prefixed `sync_`).
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.sensors.frame_history import POLICIES, FrameHistory
from vlm_agent.sensors.frames import OdomState, color_message_to_rgb, depth_message_to_metres, odometry_to_state, stamp_to_seconds
from vlm_agent.sensors.sync import ApproximateTimeSynchronizer, SyncedSet


@dataclass
class IngestConfig(ConfigBase):
    """Which streams are synchronised and how the history is kept.

    Attributes:
        use_depth / use_odom: include the depth / odometry stream in every observation.
        slop_s, queue_size, max_wait_s: see `SyncConfig`.
        max_frames, sample_period_s, max_age_s, history_policy: see `FrameHistoryConfig`.
        time_jump_s: clock-went-back threshold for both (see `SyncConfig`, `FrameHistoryConfig`).
    """

    use_depth: bool = param(False, "synchronise depth with colour", read_only=True)
    use_odom: bool = param(True, "synchronise odometry with colour", read_only=True)
    slop_s: float = param(0.05, "max |partner - colour| stamp difference (s)", min=0.0, max=10.0)
    queue_size: int = param(30, "messages kept per stream while waiting", min=1, max=10000)
    max_wait_s: float = param(0.2, "colour may run this far ahead before partners are final (s)", min=0.0, max=60.0)
    max_frames: int = param(32, "frames kept in the history", min=2, max=100000)
    sample_period_s: float = param(0.5, "minimum spacing of history frames (s)", min=0.0)
    max_age_s: float = param(0.0, "drop frames older than this relative to now (s); 0 disables", min=0.0)
    history_policy: str = param("uniform", "history policy", choices=POLICIES)
    time_jump_s: float = param(2.0, "a stamp this much older than the newest resets sync and history (s); 0 disables", min=0.0)


@dataclass(frozen=True)
class Observation:
    """A synchronised observation.

    stamp_s: the colour frame's stamp (s); rgb: (H, W, 3) uint8; depth_m: (Hd, Wd) float32 metres with
    NaN for no return, or None; odom: planar state in `odom`, or None; spread_s: max - min stamp.
    """

    stamp_s: float
    rgb: np.ndarray
    depth_m: np.ndarray | None
    odom: OdomState | None
    spread_s: float


class SensorIngest:
    def __init__(self, config: IngestConfig | None = None):
        self.config = c = config or IngestConfig()
        streams = ("color",) + (("depth",) if c.use_depth else ()) + (("odom",) if c.use_odom else ())
        self.sync = ApproximateTimeSynchronizer(streams, c.slop_s, c.queue_size, c.max_wait_s, time_jump_s=c.time_jump_s) if len(streams) > 1 else None
        self.history = FrameHistory(c.max_frames, c.sample_period_s, c.max_age_s, c.history_policy, c.time_jump_s)
        self.latest: Observation | None = None
        self.observations = 0
        self.drops: Counter[str] = Counter()
        self.last_drop_reason = ""
        self._lock = threading.Lock()

    # -- input -------------------------------------------------------------------------------
    def add_color(self, msg, now_s: float | None = None) -> list[Observation]:
        """A colour `Image` or `CompressedImage`; returns the observations it completed."""
        return self._add("color", msg, now_s)

    def add_depth(self, msg, now_s: float | None = None) -> list[Observation]:
        return self._add("depth", msg, now_s) if self.config.use_depth else []

    def add_odom(self, msg, now_s: float | None = None) -> list[Observation]:
        return self._add("odom", msg, now_s) if self.config.use_odom else []

    def _drop(self, reason: str, detail: str) -> None:
        self.drops[reason] += 1
        self.last_drop_reason = f"{reason}: {detail}"

    def _add(self, stream: str, msg, now_s) -> list[Observation]:
        try:
            stamp = stamp_to_seconds(msg.header.stamp)
        except (AttributeError, ValueError, TypeError) as exc:
            with self._lock:
                self._drop("malformed", f"{stream}: {exc}")
            return []
        with self._lock:
            if self.sync is None:
                return self._emit_one(stamp, {"color": msg}, 0.0, now_s)
            out = []
            for synced in self.sync.add(stream, stamp, msg):
                out += self._emit(synced, now_s)
            return out

    def _emit(self, synced: SyncedSet, now_s) -> list[Observation]:
        return self._emit_one(synced.stamp_s, {k: v.payload for k, v in synced.items.items()}, synced.spread_s, now_s)

    def _emit_one(self, stamp: float, msgs: dict, spread: float, now_s) -> list[Observation]:
        try:
            rgb = color_message_to_rgb(msgs["color"])
            depth = depth_message_to_metres(msgs["depth"]) if "depth" in msgs else None
            odom = odometry_to_state(msgs["odom"]) if "odom" in msgs else None
        except (ValueError, AttributeError) as exc:
            self._drop("malformed", str(exc))
            return []
        if not self.history.add(stamp, rgb, now_s=now_s) and self.history.drops.last_reason.startswith("stale"):
            return []  # too old for the planners: neither history nor `latest`
        obs = Observation(stamp, rgb, depth, odom, spread)
        self.latest = obs
        self.observations += 1
        return [obs]

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """New episode: clear the history and the synchroniser's queues (drop counters are kept)."""
        with self._lock:
            self.history.clear()
            if self.sync is not None:
                self.sync.reset()
            self.latest = None

    def stats(self) -> dict[str, int]:
        """Counters for `/diagnostics`: observations, history size, drops by reason."""
        with self._lock:
            out: dict[str, int] = {"observations": self.observations}
            out.update({f"dropped.{k}": v for k, v in self.drops.items()})
            out.update({f"history.{k}": v for k, v in self.history.stats().items()})
            if self.sync is not None:
                out.update({f"sync.{k}": v for k, v in self.sync.stats().items()})
            return out
