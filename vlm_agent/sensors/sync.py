"""Approximate-time synchroniser for colour, depth and odometry (message_filters is not available).

Policy: **reference-anchored nearest-neighbour matching with a slop**, documented here because it
is not message_filters' ApproximateTime (Bezier/"pivot" search) policy:

* One stream is the *reference* (default the first, colour). Every output set is anchored on one
  reference message with stamp `t`; from each other stream it takes the message closest to `t`.
  A set is emitted only when every partner is within `slop_s` of `t` (so the spread of a set is at
  most `2 * slop_s`, and every partner is within `slop_s` of the reference).
* A partner choice is *final* once its stream holds a message stamped at or after `t` (for a
  stream in stamp order no later message can be closer), or once the reference stream has moved
  `max_wait_s` past `t` (bounds latency when one stream is slow or has stopped). Until then the
  reference waits: output latency is about one period of the slowest partner stream.
* Each message is used at most once; outputs leave in stamp order. After a set is emitted, the
  partners' older messages can never be the closest to a later reference, so they are discarded
  (`discarded`, not a drop: a 50 Hz odometry stream is mostly discarded by design).
* Reordered arrivals are put back in stamp order inside each queue; a message older than what its
  stream has already consumed can never be emitted and is dropped as `out_of_order`.
* A message more than `time_jump_s` older than what its stream already consumed means the clock
  went back (a bag looped, a simulator restarted): all queues are reset (`time_jumps`) and the
  message is taken, instead of rejecting everything from then on as out of order.
* Drops, counted by reason: `out_of_order`; `unmatched` (a reference message with no partner
  within slop on some stream); `queue_overflow` (a stream queue over `queue_size`, e.g. a
  partner stream stopped); `malformed` (a stamp that is not a finite number).

Plain Python, no ROS: callers pass `(stream, stamp_s, payload)`; nodes convert headers with
`vlm_agent.sensors.frames.stamp_to_seconds`.
"""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from vlm_agent.config import ConfigBase, param
from vlm_agent.telemetry import DropCounter


@dataclass
class SyncConfig(ConfigBase):
    """Synchroniser parameters.

    Attributes:
        slop_s: largest allowed |partner stamp - reference stamp| in seconds. At 30 Hz a third of
            a frame period (0.011 s) is strict; 0.05 s tolerates odometry at 20 Hz.
        queue_size: messages kept per stream while waiting for partners.
        max_wait_s: how far the reference stream may run ahead of an undecided set before the
            best partners so far are taken as final (latency bound for a slow stream).
        time_jump_s: a message this much older than its stream's consumed stamps resets the
            synchroniser (clock went back); 0 disables.
    """

    slop_s: float = param(0.05, "max |partner - reference| stamp difference (s)", min=0.0, max=10.0)
    queue_size: int = param(30, "messages kept per stream while waiting", min=1, max=10000)
    max_wait_s: float = param(0.2, "reference may run this far ahead before partners are final (s)", min=0.0, max=60.0)
    time_jump_s: float = param(2.0, "a stamp this much older than consumed ones resets the queues (s); 0 disables", min=0.0)


@dataclass(frozen=True)
class Stamped:
    """One queued message: `stamp_s` seconds and the caller's payload (message, array, state)."""

    stamp_s: float
    payload: Any = field(compare=False)


@dataclass(frozen=True)
class SyncedSet:
    """A synchronised set: `stamp_s` is the reference stamp; `items[stream]` the chosen messages."""

    stamp_s: float
    items: dict[str, Stamped]

    @property
    def spread_s(self) -> float:
        """max - min stamp over the set, seconds."""
        stamps = [s.stamp_s for s in self.items.values()]
        return max(stamps) - min(stamps)

    def __getitem__(self, stream: str) -> Any:
        return self.items[stream].payload


class ApproximateTimeSynchronizer:
    """Synchronise named streams by stamp; see the module docstring for the exact policy.

    Usage:
        sync = ApproximateTimeSynchronizer(("color", "depth", "odom"), slop_s=0.03)
        for synced in sync.add("depth", t, depth_msg):
            planner.step(synced["color"], synced["depth"], synced["odom"])
    `add` returns the sets completed by this message (possibly several, usually zero or one)
    and also passes each to the callbacks registered with `register_callback`.
    """

    def __init__(
        self,
        streams: tuple[str, ...] | list[str] = ("color", "depth", "odom"),
        slop_s: float = 0.05,
        queue_size: int = 30,
        max_wait_s: float = 0.2,
        reference: str | None = None,
        time_jump_s: float = 2.0,
    ):
        streams = tuple(streams)
        if len(streams) < 2 or len(set(streams)) != len(streams):
            raise ValueError(f"streams: need at least two distinct names, got {streams}")
        self.config = SyncConfig(slop_s=float(slop_s), queue_size=int(queue_size), max_wait_s=float(max_wait_s), time_jump_s=float(time_jump_s))
        self.streams = streams
        self.reference = streams[0] if reference is None else reference
        if self.reference not in streams:
            raise ValueError(f"reference: '{self.reference}' is not one of {streams}")
        self._queues: dict[str, list[Stamped]] = {s: [] for s in streams}
        self._consumed: dict[str, float] = {s: -math.inf for s in streams}  # newest stamp used or discarded
        self._callbacks: list[Callable[[SyncedSet], None]] = []
        self._lock = threading.Lock()
        self.drops = DropCounter()
        self.emitted = 0
        self.discarded = 0
        self.time_jumps = 0

    @classmethod
    def from_config(cls, config: SyncConfig, streams=("color", "depth", "odom"), reference: str | None = None):
        return cls(streams, config.slop_s, config.queue_size, config.max_wait_s, reference, config.time_jump_s)

    def register_callback(self, callback: Callable[[SyncedSet], None]) -> None:
        self._callbacks.append(callback)

    def add(self, stream: str, stamp_s: float, payload: Any = None) -> list[SyncedSet]:
        """Queue a message; returns the sets it completed (oldest first)."""
        if stream not in self._queues:
            raise KeyError(f"unknown stream '{stream}' (streams: {self.streams})")
        try:
            stamp = float(stamp_s)
        except (TypeError, ValueError):
            stamp = math.nan
        if not math.isfinite(stamp):
            self.drops.drop("malformed", f"{stream}: stamp {stamp_s!r} is not finite")
            return []
        with self._lock:
            jump = self.config.time_jump_s
            newest = max([self._consumed[stream]] + [q[-1].stamp_s for q in self._queues.values() if q])
            if jump > 0 and newest - stamp > jump:
                self._reset_locked()
                self.time_jumps += 1
            if stamp <= self._consumed[stream]:
                self.drops.drop("out_of_order", f"{stream}: {stamp:.6f} <= consumed {self._consumed[stream]:.6f}")
                return []
            queue = self._queues[stream]
            item = Stamped(stamp, payload)
            if queue and stamp < queue[-1].stamp_s:
                bisect.insort(queue, item, key=lambda s: s.stamp_s)
            else:
                queue.append(item)
            while len(queue) > self.config.queue_size:
                old = queue.pop(0)
                self._consumed[stream] = max(self._consumed[stream], old.stamp_s)
                self.drops.drop("queue_overflow", f"{stream}: {old.stamp_s:.6f}")
            out = self._match()
        for synced in out:
            for callback in self._callbacks:
                callback(synced)
        return out

    def flush(self) -> list[SyncedSet]:
        """End of input (a recording's end): take every partner choice as final and emit what matches.

        Reference messages left without partners within slop are dropped as `unmatched`; partner
        messages left over are discarded. Afterwards the queues are empty.
        """
        with self._lock:
            out = self._match(end_of_input=True)
            for stream, queue in self._queues.items():
                if stream == self.reference:
                    for item in queue:
                        self.drops.drop("unmatched", f"{stream} {item.stamp_s:.6f}: input ended")
                else:
                    self.discarded += len(queue)
                if queue:
                    self._consumed[stream] = max(self._consumed[stream], queue[-1].stamp_s)
                queue.clear()
        for synced in out:
            for callback in self._callbacks:
                callback(synced)
        return out

    def _match(self, end_of_input: bool = False) -> list[SyncedSet]:
        out = []
        slop, ref_queue = self.config.slop_s, self._queues[self.reference]
        while ref_queue:
            ref = ref_queue[0]
            t = ref.stamp_s
            timed_out = end_of_input or (ref_queue[-1].stamp_s - t >= self.config.max_wait_s and len(ref_queue) > 1)
            chosen: dict[str, int] = {}
            waiting = unmatched = False
            for stream in self.streams:
                if stream == self.reference:
                    continue
                queue = self._queues[stream]
                best = self._closest(queue, t)
                final = bool(queue) and queue[-1].stamp_s >= t or timed_out
                if best is None or abs(queue[best].stamp_s - t) > slop:
                    if final:
                        unmatched = True
                        break
                    waiting = True
                    continue
                if not final:
                    waiting = True
                chosen[stream] = best
            if unmatched:
                ref_queue.pop(0)
                self._consumed[self.reference] = t
                self.drops.drop("unmatched", f"{self.reference} {t:.6f}: no partner within {slop} s")
                continue
            if waiting:
                break
            items = {self.reference: ref_queue.pop(0)}
            self._consumed[self.reference] = t
            for stream, index in chosen.items():
                queue = self._queues[stream]
                items[stream] = queue[index]
                self.discarded += index  # older partners can never be closest to a later reference
                del queue[: index + 1]
                self._consumed[stream] = items[stream].stamp_s
            self.emitted += 1
            out.append(SyncedSet(t, {s: items[s] for s in self.streams}))
        return out

    @staticmethod
    def _closest(queue: list[Stamped], t: float) -> int | None:
        if not queue:
            return None
        i = bisect.bisect_left(queue, t, key=lambda s: s.stamp_s)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(queue)]
        return min(candidates, key=lambda j: abs(queue[j].stamp_s - t))

    def reset(self) -> None:
        """Empty all queues and forget consumed stamps (after a bag loops or time jumps back)."""
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        for stream in self.streams:
            self.discarded += len(self._queues[stream])
            self._queues[stream].clear()
            self._consumed[stream] = -math.inf

    def queue_lengths(self) -> dict[str, int]:
        with self._lock:
            return {s: len(q) for s, q in self._queues.items()}

    def stats(self) -> dict[str, int]:
        """Counters for status reports."""
        out = {"emitted": self.emitted, "discarded": self.discarded, "time_jumps": self.time_jumps}
        out.update({f"dropped.{k}": v for k, v in self.drops.counts.items()})
        out.update({f"queued.{k}": v for k, v in self.queue_lengths().items()})
        return out
