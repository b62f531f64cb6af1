"""Rates, latencies and drop counters for node status reports (plain Python, no ROS)."""
from __future__ import annotations

import collections
import threading
import time

import numpy as np


class RateMeter:
    """Events per second over a sliding window of `window_s` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._stamps: collections.deque[float] = collections.deque()
        self.count = 0

    def tick(self) -> None:
        now = self._clock()
        self._stamps.append(now)
        self.count += 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()

    def rate_hz(self) -> float:
        now = self._clock()
        self._trim(now)
        if len(self._stamps) < 2:
            return 0.0
        span = now - self._stamps[0]
        return (len(self._stamps) - 1) / span if span > 0 else 0.0

    def seconds_since_last(self) -> float:
        """Seconds since the last event, inf if there was none."""
        return self._clock() - self._stamps[-1] if self._stamps else float("inf")


class LatencyStats:
    """Rolling latency statistics in milliseconds over the last `window` samples."""

    def __init__(self, window: int = 200):
        self._samples: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds * 1e3)

    def summary(self) -> dict[str, float]:
        if not self._samples:
            return {"n": 0}
        a = np.fromiter(self._samples, dtype=np.float64)
        return {
            "n": int(a.size),
            "mean_ms": float(a.mean()),
            "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max()),
        }


class DropCounter:
    """Counts dropped inputs by reason (e.g. "malformed", "stale", "out_of_order")."""

    def __init__(self):
        self.counts: collections.Counter[str] = collections.Counter()
        self.last_reason: str = ""

    def drop(self, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        self.last_reason = f"{reason}: {detail}" if detail else reason


class HealthReport:
    """Thread-safe bag of a node's rates, latencies, drops and free-form values for `/diagnostics`.

    Levels follow diagnostic_msgs: 0 OK, 1 WARN, 2 ERROR, 3 STALE.
    """

    OK, WARN, ERROR, STALE = 0, 1, 2, 3

    def __init__(self):
        self._lock = threading.Lock()
        self.rates: dict[str, RateMeter] = {}
        self.latencies: dict[str, LatencyStats] = {}
        self.drops = DropCounter()
        self.values: dict[str, str] = {}
        self.level = self.OK
        self.message = "ok"

    def tick(self, stream: str) -> None:
        with self._lock:
            self.rates.setdefault(stream, RateMeter()).tick()

    def latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self.latencies.setdefault(name, LatencyStats()).add(seconds)

    def drop(self, reason: str, detail: str = "") -> None:
        with self._lock:
            self.drops.drop(reason, detail)

    def set(self, key: str, value) -> None:
        with self._lock:
            self.values[key] = str(value)

    def set_level(self, level: int, message: str) -> None:
        with self._lock:
            self.level, self.message = level, message

    def key_values(self) -> dict[str, str]:
        """Flat string mapping for DiagnosticStatus.values."""
        with self._lock:
            out = {f"rate_hz.{k}": f"{m.rate_hz():.2f}" for k, m in self.rates.items()}
            out.update({f"count.{k}": str(m.count) for k, m in self.rates.items()})
            for name, stats in self.latencies.items():
                for k, v in stats.summary().items():
                    out[f"latency.{name}.{k}"] = f"{v:.3f}" if isinstance(v, float) else str(v)
            out.update({f"dropped.{k}": str(v) for k, v in self.drops.counts.items()})
            if self.drops.last_reason:
                out["dropped.last_reason"] = self.drops.last_reason
            out.update(self.values)
            return out


def cpu_model_name() -> str:
    """The CPU's model name for benchmark reports ("AMD EPYC ..."), from /proc/cpuinfo where it
    exists, else `platform.processor()`, else "?"."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"
