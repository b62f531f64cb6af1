"""Pair colour frames with the depth image and the base pose taken with them (no ROS).

A NaVid model with a map memory (`planners/ego_map.py`) needs, for every frame it sees, the depth
image (H, W) float32 metres aligned to it and the base pose (x, y, yaw) in `odom` at its stamp.
The node converts messages first and feeds three streams into a `FramePairing`:

* `add_depth(stamp_s, depth)`: depth images (any rate);
* `add_pose(stamp_s, x, y, yaw)`: odometry (yaw from the quaternion, `sensors.frames`);
* `add_frame(stamp_s, now_s)`: a colour frame the planner may use (one that entered its history).

Policy:

* A frame is paired with the depth image whose stamp is nearest to its own, within
  `depth_max_dt_s`, and with the pose nearest in time, within `pose_max_dt_s` (ties: the first).
* Partners are assigned **as they arrive**: depth images are large, so only the last
  `recent_depth` of them are kept for frames still to come, plus the one each tracked frame has
  chosen; poses are small (`recent_poses` kept). A frame keeps its partners however long it waits
  to be observed.
* `ready(stamp_s, now_s)`: the pairing is final: each stream has delivered a message stamped at or
  after the frame (streams arrive in stamp order, so nothing nearer can follow; one received before
  the frame counts only when stamped at most `time_jump_s` after it: a message of the clock before a
  jump back is no evidence), or the frame has waited `wait_s` since `add_frame` (a stream stopped
  or lags).
* `take(stamp_s)` -> (depth, (x, y, yaw)); raises `PairingError` naming what is missing (no depth
  image within the limit and how near the nearest was, no pose, the last odometry rejected as
  non-finite). Non-finite poses never enter: `add_pose` raises ValueError for them.
* `retain(stamps)`: forget frames not in `stamps` (dropped by the history, or already observed).
  After a clock jump back (a simulator reset) the node retains only the history's frames, which
  are on the new clock.

Single-threaded by design: the node calls it from its executor thread only and hands the pairs
it takes to the model worker.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np


class PairingError(ValueError):
    """A frame has no depth image or no pose within the limits; the message says which."""


@dataclass
class _Entry:
    added_s: float
    depth: np.ndarray | None = None
    depth_dt: float = math.inf
    depth_final: bool = False  # a depth image stamped at or after the frame has arrived
    pose: tuple[float, float, float] | None = None
    pose_dt: float = math.inf
    pose_final: bool = False


def _finite_stamp(stamp_s) -> float:
    stamp = float(stamp_s)
    if not math.isfinite(stamp):
        raise ValueError(f"stamp {stamp_s!r} is not finite")
    return stamp


class FramePairing:
    """Nearest-in-time depth image and pose for each tracked colour frame (see the module doc)."""

    def __init__(self, depth_max_dt_s: float = 0.05, pose_max_dt_s: float = 0.1, wait_s: float = 0.2,
                 recent_depth: int = 8, recent_poses: int = 256, max_frames: int = 4096, time_jump_s: float = 2.0):
        if depth_max_dt_s < 0 or pose_max_dt_s < 0 or wait_s < 0:
            raise ValueError("depth_max_dt_s, pose_max_dt_s and wait_s must be >= 0")
        self.depth_max_dt_s = float(depth_max_dt_s)
        self.pose_max_dt_s = float(pose_max_dt_s)
        self.wait_s = float(wait_s)
        self.max_frames = int(max_frames)
        self.time_jump_s = float(time_jump_s)
        self._frames: dict[float, _Entry] = {}
        self._depth: collections.deque = collections.deque(maxlen=recent_depth)
        self._poses: collections.deque = collections.deque(maxlen=recent_poses)
        self.last_pose_error = ""  # why the last odometry message was rejected ("" once a good one came)

    # -- input -------------------------------------------------------------------------------
    def add_depth(self, stamp_s: float, depth: np.ndarray) -> None:
        """A depth image (H, W) float32 m; raises ValueError for a non-finite stamp or a non-2-D image."""
        stamp = _finite_stamp(stamp_s)
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth must be (H, W) metres, got shape {depth.shape}")
        self._depth.append((stamp, depth))
        for t, e in self._frames.items():
            dt = abs(stamp - t)
            if dt <= self.depth_max_dt_s and dt < e.depth_dt:
                e.depth, e.depth_dt = depth, dt
            e.depth_final |= stamp >= t

    def add_pose(self, stamp_s: float, x: float, y: float, yaw: float) -> None:
        """The base pose at `stamp_s`; raises ValueError (and remembers why) for a non-finite value."""
        try:
            stamp = _finite_stamp(stamp_s)
            pose = (float(x), float(y), float(yaw))
            if not all(math.isfinite(v) for v in pose):
                raise ValueError(f"non-finite pose (x, y, yaw) = {pose}")
        except (TypeError, ValueError) as exc:
            self.last_pose_error = str(exc)
            raise ValueError(str(exc)) from None
        self.last_pose_error = ""
        self._poses.append((stamp, pose))
        for t, e in self._frames.items():
            dt = abs(stamp - t)
            if dt <= self.pose_max_dt_s and dt < e.pose_dt:
                e.pose, e.pose_dt = pose, dt
            e.pose_final |= stamp >= t

    def reject_pose(self, reason: str) -> None:
        """Odometry the caller could not convert (NaN, a bad quaternion): named in later errors."""
        self.last_pose_error = reason

    def add_frame(self, stamp_s: float, now_s: float) -> None:
        """Track a colour frame; it takes the nearest depth image and pose already received."""
        stamp = _finite_stamp(stamp_s)
        if stamp in self._frames:
            return
        entry = _Entry(float(now_s))
        for t, depth in self._depth:
            dt = abs(t - stamp)
            if dt <= self.depth_max_dt_s and dt < entry.depth_dt:
                entry.depth, entry.depth_dt = depth, dt
            entry.depth_final |= 0.0 <= t - stamp <= self.time_jump_s
        for t, pose in self._poses:
            dt = abs(t - stamp)
            if dt <= self.pose_max_dt_s and dt < entry.pose_dt:
                entry.pose, entry.pose_dt = pose, dt
            entry.pose_final |= 0.0 <= t - stamp <= self.time_jump_s
        self._frames[stamp] = entry
        while len(self._frames) > self.max_frames:
            del self._frames[next(iter(self._frames))]

    def retain(self, stamps) -> None:
        """Forget every tracked frame whose stamp is not in `stamps`."""
        keep = {float(s) for s in stamps}
        for t in [t for t in self._frames if t not in keep]:
            del self._frames[t]

    def clear(self) -> None:
        """Forget the tracked frames (a new episode); recent depth images and poses stay."""
        self._frames.clear()

    # -- output ------------------------------------------------------------------------------
    def ready(self, stamp_s: float, now_s: float) -> bool:
        """True when the frame's pairing is final (see the module doc); True for an untracked frame
        (nothing to wait for: `take` says it is not tracked)."""
        entry = self._frames.get(float(stamp_s))
        if entry is None:
            return True
        return (entry.depth_final and entry.pose_final) or now_s - entry.added_s >= self.wait_s

    def take(self, stamp_s: float) -> tuple[np.ndarray, tuple[float, float, float]]:
        """(depth (H, W) m, (x, y, yaw)) of the frame; raises PairingError saying what is missing."""
        stamp = float(stamp_s)
        entry = self._frames.get(stamp)
        if entry is None:
            raise PairingError(f"frame {stamp:.3f} is not tracked")
        missing = []
        if entry.depth is None:
            missing.append(f"no depth image within {self.depth_max_dt_s:g} s of the frame ({self._nearest_text(self._depth, stamp)})")
        if entry.pose is None:
            reason = f"no odometry pose within {self.pose_max_dt_s:g} s of the frame ({self._nearest_text(self._poses, stamp)})"
            if self.last_pose_error:
                reason += f"; last odometry rejected: {self.last_pose_error}"
            missing.append(reason)
        if missing:
            raise PairingError(f"frame {stamp:.3f}: " + "; ".join(missing))
        return entry.depth, entry.pose

    @staticmethod
    def _nearest_text(buffer, stamp: float) -> str:
        if not buffer:
            return "none received"
        return f"nearest {min(abs(t - stamp) for t, _ in buffer):.3f} s away"

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, stamp_s) -> bool:
        return float(stamp_s) in self._frames
