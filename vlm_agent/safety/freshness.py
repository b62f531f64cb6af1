"""Stream freshness from header stamps, judged on one clock (plain Python, no ROS).

Why not the arrival time: a callback that runs late (executor stall, DDS backlog) delivers frames
that are seconds old, and a frozen driver that re-sends its last frame keeps "arriving" at full rate.
Neither is a live sensor. `StreamMonitor` therefore looks at two clocks and keeps them apart:

- **The stamp clock** (`stamp_s`, `now_clock_s`): the clock the sender stamped the header with and the
  receiver's reading of the *same* clock, i.e. the node's ROS clock (`/clock` under
  `use_sim_time`, system time otherwise). A stamp is compared only with a reading of its own clock;
  a stamp far in the future or past of that clock means the two ends disagree about time (one side
  on sim time, the other not), and the frame is rejected rather than trusted.
- **The steady clock** (`receive_steady_s`, `now_steady_s`): `time.monotonic()` at arrival and at
  the check. The watchdog timer runs on it whatever `use_sim_time` says, so a stopped `/clock` cannot
  stop the watchdog.

Rules (one timeout `timeout_s` per stream, seconds; 0 = stream not required):

1. A message whose stamp is 0, negative or non-finite is *unstamped* and never refreshes the stream
   (a safety input must say when it was measured).
2. On arrival, `now_clock_s - stamp_s` must lie in `[-future_tolerance_s, timeout_s]`; an older
   frame is a backlog (not fresh), a newer one a clock mismatch.
3. The stamp must advance: a stamp equal to or older than the newest accepted one is a re-sent or
   reordered frame and does not refresh the stream (a frozen driver is a dead stream).
4. The stream is stale when no accepted frame arrived for `timeout_s` on the steady clock, or, when
   the check is given `now_clock_s`, when the newest accepted stamp is older than `timeout_s` on the
   stamp clock (so a simulator running 10x faster than real time is held to sim seconds).
5. When the stamp clock jumps backwards (a simulator reset, a looping bag), the history is dropped
   and the stream starts again from "no message yet".

Under `use_sim_time` with a slow simulator (real-time factor below 1), rule 4's steady half needs a
timeout longer than one frame period in wall time; pick timeouts for the slowest expected factor.
A driver that re-stamps an identical image with a fresh time cannot be told apart from a live one by
stamps alone; that needs image content or driver diagnostics and is out of scope here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# A clock reading this far below the previous one is a reset, not jitter (seconds).
CLOCK_JUMP_BACK_S = 1.0


@dataclass(frozen=True)
class Freshness:
    """A freshness verdict: `fresh`, and `reason` (empty when fresh, else why stale, for `/diagnostics`)."""

    fresh: bool
    reason: str = ""


class StreamMonitor:
    """Freshness of one stamped stream (see the module docstring for the rules).

    Args:
        name: stream name used in reasons ("camera", "depth", "odom").
        timeout_s: largest stamp age and largest gap between accepted frames, seconds; 0 disables
            the stream (always fresh).
        future_tolerance_s: how far a stamp may lie ahead of `now_clock_s` (clock jitter between
            machines), seconds.
    """

    def __init__(self, name: str, timeout_s: float, future_tolerance_s: float = 0.1):
        if not (math.isfinite(timeout_s) and timeout_s >= 0.0):
            raise ValueError(f"StreamMonitor({name}).timeout_s: must be finite and >= 0, got {timeout_s}")
        if not (math.isfinite(future_tolerance_s) and future_tolerance_s >= 0.0):
            raise ValueError(f"StreamMonitor({name}).future_tolerance_s: must be finite and >= 0, got {future_tolerance_s}")
        self.name = name
        self.timeout_s = float(timeout_s)
        self.future_tolerance_s = float(future_tolerance_s)
        self.counts = {"accepted": 0, "unstamped": 0, "old": 0, "future": 0, "repeated": 0, "clock_resets": 0}
        self.reset()

    def reset(self) -> None:
        """Forget every frame (clock reset, lifecycle re-activation)."""
        self._last_stamp: float | None = None
        self._last_accept_steady: float | None = None
        self._last_clock: float | None = None
        self._last_latency = 0.0
        self.last_rejection = ""

    @property
    def last_stamp_s(self) -> float | None:
        """Newest accepted stamp (stamp clock, seconds), None before the first accepted frame."""
        return self._last_stamp

    def data_age_s(self, now_steady_s: float) -> float | None:
        """How old the newest accepted frame's data is now (seconds): time since its arrival on the steady
        clock plus its transport latency on arrival (stamp clock; 0 for unstamped). None before any frame."""
        if self._last_accept_steady is None:
            return None
        return max(0.0, now_steady_s - self._last_accept_steady) + self._last_latency

    def on_message(self, stamp_s: float | None, receive_steady_s: float, now_clock_s: float | None = None) -> str | None:
        """Record a message; returns why it does not refresh the stream, or None when it does.

        Args:
            stamp_s: header stamp in seconds on the stamp clock; None for an unstamped type, which
                then falls back to arrival time (the legacy rule: no backlog or freeze detection).
            receive_steady_s: steady clock (`time.monotonic()`) at arrival, seconds.
            now_clock_s: the stamp clock (the node's ROS clock) at arrival, seconds; required with
                a stamp.
        """
        if stamp_s is None:
            self._accept(None, receive_steady_s)
            return None
        if now_clock_s is None:
            raise ValueError(f"StreamMonitor({self.name}).on_message: now_clock_s is required with a stamp")
        self._note_clock(now_clock_s)
        if not (isinstance(stamp_s, (int, float)) and math.isfinite(stamp_s) and stamp_s > 0.0):
            return self._reject("unstamped", f"{self.name}: unstamped frame (header stamp {stamp_s!r})")
        age = now_clock_s - stamp_s
        if age > self.timeout_s > 0.0:
            return self._reject("old", f"{self.name}: frame {age:.3f} s old on arrival (backlog or delay; timeout {self.timeout_s:g} s)")
        if age < -self.future_tolerance_s:
            return self._reject(
                "future", f"{self.name}: stamp {-age:.3f} s ahead of this node's clock (sender and receiver on different clocks?)"
            )
        if self._last_stamp is not None and stamp_s <= self._last_stamp:
            return self._reject(
                "repeated", f"{self.name}: stamp {stamp_s:.6f} s did not advance past {self._last_stamp:.6f} s (frozen or reordered)"
            )
        self._accept(float(stamp_s), receive_steady_s)
        self._last_latency = max(0.0, float(age))
        return None

    def check(self, now_steady_s: float, now_clock_s: float | None = None) -> Freshness:
        """Fresh or stale now. `now_steady_s`: steady clock; `now_clock_s`: the stamp clock, optional."""
        if self.timeout_s <= 0.0:
            return Freshness(True)
        why = f" (last rejected: {self.last_rejection})" if self.last_rejection else ""
        if self._last_accept_steady is None:
            return Freshness(False, f"{self.name}: no {'valid ' if self.last_rejection else ''}message yet{why}")
        gap = now_steady_s - self._last_accept_steady
        if gap > self.timeout_s:
            return Freshness(False, f"{self.name}: stale for {gap:.2f} s, no new frame (timeout {self.timeout_s:g} s){why}")
        if now_clock_s is not None and self._last_stamp is not None:
            self._note_clock(now_clock_s)
            if self._last_stamp is None:  # the clock just jumped back: history dropped
                return Freshness(False, f"{self.name}: clock jumped back; waiting for a new frame")
            age = now_clock_s - self._last_stamp
            if age > self.timeout_s:
                return Freshness(False, f"{self.name}: stale, newest stamp {age:.2f} s old (timeout {self.timeout_s:g} s){why}")
        return Freshness(True)

    # -- internals ------------------------------------------------------------------------------
    def _note_clock(self, now_clock_s: float) -> None:
        if self._last_clock is not None and now_clock_s < self._last_clock - CLOCK_JUMP_BACK_S:
            self.counts["clock_resets"] += 1
            self.reset()
        self._last_clock = now_clock_s if self._last_clock is None else max(self._last_clock, now_clock_s)

    def _accept(self, stamp_s: float | None, receive_steady_s: float) -> None:
        self.counts["accepted"] += 1
        self._last_stamp = stamp_s
        self._last_accept_steady = receive_steady_s
        self._last_latency = 0.0
        self.last_rejection = ""

    def _reject(self, kind: str, reason: str) -> str:
        self.counts[kind] += 1
        self.last_rejection = reason
        return reason
