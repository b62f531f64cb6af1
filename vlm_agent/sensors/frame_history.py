"""Bounded, time-downsampled history of camera frames for video planners (NaVid-style), no ROS.

A video planner wants the whole episode at a coarse rate plus the freshest frame, in bounded
memory. `FrameHistory` keeps:

* **time downsampling** (`sample_period_s`): every stored frame is at least `sample_period_s`
  after the one before it, except the newest slot, which always holds the freshest frame. A frame
  arriving sooner than `sample_period_s` after the last *kept* sample replaces the newest slot
  instead of growing the history (so `latest()` is never older than the last frame added).
* **capacity** (`max_frames`), two policies:
  - `"uniform"` (default): the first frame of the episode and the newest frame are always kept;
    when over capacity the interior frame whose removal leaves the smallest time gap
    (`stamp[i+1] - stamp[i-1]`) is removed, so the kept frames stay close to uniformly spread over
    the whole episode however long it runs.
  - `"window"`: a sliding window of the last `max_frames` frames.
* **drops counted by reason** (never an exception for bad input):
  - `malformed`: stamp not finite/negative, frame not an (H, W, 3) uint8 array, or an undecodable
    message (see `add_message`);
  - `out_of_order`: stamp not newer than the newest frame (duplicates included);
  - `stale`: older than `max_age_s` relative to the caller's `now_s` (transport delay, a paused
    bag), when both are given.
  A change of resolution clears the history first (mixing sizes would break batching) and is
  counted in `resets`; so does a **time jump**: a stamp more than `time_jump_s` older than the
  newest frame means the clock went back (a bag looped, a simulator restarted), not a late frame,
  and without the reset every later frame would be rejected as out of order.

Frames are stored by reference (no copy): callers must not mutate an array after adding it
(`add_message` produces fresh arrays or read-only views of the message buffer).
Stamps are seconds (float) on any single clock (ROS time of the header in nodes).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.telemetry import DropCounter

POLICIES = ("uniform", "window")


@dataclass
class FrameHistoryConfig(ConfigBase):
    """Frame history parameters (also usable as a node's parameters).

    Attributes:
        max_frames: most frames kept (first and newest included); NaVid uses 32+ history frames.
        sample_period_s: minimum spacing of stored frames in seconds; 0 keeps every frame.
        max_age_s: frames older than this relative to `now_s` are dropped as stale; 0 disables.
        policy: "uniform" (episode-wide, keeps first + newest) or "window" (last max_frames).
        time_jump_s: a stamp this much older than the newest frame resets the history (clock went
            back); smaller steps back are `out_of_order` drops. 0 disables.
    """

    max_frames: int = param(32, "most frames kept in the history", min=2, max=100000)
    sample_period_s: float = param(0.5, "minimum spacing of stored frames (s); 0 keeps every frame", min=0.0)
    max_age_s: float = param(0.0, "drop frames older than this relative to now (s); 0 disables", min=0.0)
    policy: str = param("uniform", "how to stay under max_frames", choices=POLICIES)
    time_jump_s: float = param(2.0, "a stamp this much older than the newest resets the history (s); 0 disables", min=0.0)


@dataclass(frozen=True)
class TimedFrame:
    """One stored frame: `stamp_s` seconds, `image` (H, W, 3) uint8 RGB."""

    stamp_s: float
    image: np.ndarray


class FrameHistory:
    """Bounded frame history with time downsampling; see the module docstring for the policy.

    Thread-safe (a lock around every method), so a subscription callback can `add` while a
    planner timer reads `frames()`.
    """

    def __init__(self, max_frames: int = 32, sample_period_s: float = 0.5, max_age_s: float = 0.0, policy: str = "uniform",
                 time_jump_s: float = 2.0):
        self.config = FrameHistoryConfig(max_frames=max_frames, sample_period_s=float(sample_period_s), max_age_s=float(max_age_s),
                                         policy=policy, time_jump_s=float(time_jump_s))
        self._frames: list[TimedFrame] = []
        self._lock = threading.Lock()
        self.drops = DropCounter()
        self.accepted = 0  # frames that entered the history (stored or replaced the newest slot)
        self.resets = 0  # resolution changes and time jumps that cleared the history
        self.time_jumps = 0

    @classmethod
    def from_config(cls, config: FrameHistoryConfig) -> "FrameHistory":
        return cls(config.max_frames, config.sample_period_s, config.max_age_s, config.policy, config.time_jump_s)

    # -- input ----------------------------------------------------------------------------
    def add(self, stamp_s: float, frame: np.ndarray, now_s: float | None = None) -> bool:
        """Add a frame taken at `stamp_s`; returns False (and counts the reason) when dropped.

        Args:
            stamp_s: capture time in seconds.
            frame: (H, W, 3) uint8 RGB.
            now_s: the current time on the same clock, for the staleness check (optional).
        """
        reason = self._check(stamp_s, frame, now_s)
        if reason is not None:
            self.drops.drop(*reason)
            return False
        stamp_s = float(stamp_s)
        with self._lock:
            jump = self.config.time_jump_s
            if self._frames and jump > 0 and self._frames[-1].stamp_s - stamp_s > jump:
                self._frames.clear()
                self.resets += 1
                self.time_jumps += 1
            if self._frames and self._frames[-1].stamp_s >= stamp_s:
                self.drops.drop("out_of_order", f"stamp {stamp_s:.6f} <= newest {self._frames[-1].stamp_s:.6f}")
                return False
            if self._frames and self._frames[-1].image.shape != frame.shape:
                self._frames.clear()
                self.resets += 1
            item = TimedFrame(stamp_s, frame)
            frames = self._frames
            period = self.config.sample_period_s
            # The newest slot is provisional: it becomes a kept sample only once it lies a full period
            # after the sample before it; until then each new frame replaces it.
            if len(frames) >= 2 and frames[-1].stamp_s - frames[-2].stamp_s < period:
                frames[-1] = item
            else:
                frames.append(item)
                if len(frames) > self.config.max_frames:
                    self._evict()
            self.accepted += 1
            return True

    def add_message(self, msg, now_s: float | None = None) -> bool:
        """Add a `sensor_msgs/Image` (any colour encoding) or `sensor_msgs/CompressedImage` (JPEG/PNG).

        The stamp comes from `msg.header.stamp`; undecodable messages are dropped as malformed.
        """
        from vlm_agent.sensors.frames import color_message_to_rgb, stamp_to_seconds

        try:
            image = color_message_to_rgb(msg)
            stamp_s = stamp_to_seconds(msg.header.stamp)
        except (ValueError, AttributeError) as exc:
            self.drops.drop("malformed", str(exc))
            return False
        return self.add(stamp_s, image, now_s=now_s)

    def _check(self, stamp_s, frame, now_s):
        try:
            stamp = float(stamp_s)
        except (TypeError, ValueError):
            return ("malformed", f"stamp {stamp_s!r} is not a number")
        if not math.isfinite(stamp) or stamp < 0:
            return ("malformed", f"stamp {stamp_s!r} is not a finite, non-negative time")
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            return ("malformed", f"frame must be (H, W, 3) uint8 RGB, got {desc}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            return ("malformed", f"empty frame {frame.shape}")
        if now_s is not None and self.config.max_age_s > 0 and now_s - stamp > self.config.max_age_s:
            return ("stale", f"{now_s - stamp:.3f} s old > max_age_s {self.config.max_age_s}")
        return None

    def _evict(self) -> None:
        frames = self._frames
        if self.config.policy == "window":
            del frames[0]
            return
        # Interior frame whose removal leaves the smallest gap: keeps coverage close to uniform.
        # O(max_frames) per eviction; max_frames is tens, and at most one eviction per add.
        stamps = np.fromiter((f.stamp_s for f in frames), dtype=np.float64, count=len(frames))
        gaps = stamps[2:] - stamps[:-2]
        del frames[1 + int(np.argmin(gaps))]

    # -- output ---------------------------------------------------------------------------
    def frames(self) -> list[TimedFrame]:
        """The stored frames, oldest first (a new list; the frames themselves are shared)."""
        with self._lock:
            return list(self._frames)

    def stamps(self) -> list[float]:
        with self._lock:
            return [f.stamp_s for f in self._frames]

    def latest(self) -> TimedFrame | None:
        """The newest frame, or None when empty."""
        with self._lock:
            return self._frames[-1] if self._frames else None

    def sample(self, count: int) -> list[TimedFrame]:
        """`count` frames spread uniformly over the history by index, always including the first and
        newest (all frames when there are fewer than `count`)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self._lock:
            frames = list(self._frames)
        if len(frames) <= count:
            return frames
        if count == 1:
            return [frames[-1]]
        index = np.round(np.linspace(0, len(frames) - 1, count)).astype(int)
        return [frames[i] for i in index]

    def as_array(self, count: int | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8 stack of the history (or of `sample(count)`); (0, 0, 0, 3) when empty."""
        frames = self.frames() if count is None else self.sample(count)
        if not frames:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return np.stack([f.image for f in frames])

    def clear(self) -> None:
        """Forget all frames (a new episode); drop counters are kept."""
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def stats(self) -> dict[str, int]:
        """Counters for status reports: frames, accepted, resets and dropped.<reason>."""
        out = {"frames": len(self), "accepted": self.accepted, "resets": self.resets, "time_jumps": self.time_jumps}
        out.update({f"dropped.{k}": v for k, v in self.drops.counts.items()})
        return out
