"""SensorIngest: synchronised observations from ROS messages, drops, and bounded memory over 10,000+ frames."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from vlm_agent.sensors.ingest import IngestConfig, SensorIngest


def _set_stamp(msg, t):
    msg.header.stamp.sec = int(t)
    msg.header.stamp.nanosec = int(round((t - int(t)) * 1e9)) % 1_000_000_000


def make_msgs(i, t, rng=None, shape=(48, 64)):
    from nav_msgs.msg import Odometry

    from vlm_agent.sensors.image_conversion import numpy_to_image

    color = numpy_to_image(np.full(shape + (3,), i % 256, np.uint8), "rgb8")
    _set_stamp(color, t)
    depth = numpy_to_image(np.full(shape, 1000 + i % 1000, np.uint16), "16UC1")
    _set_stamp(depth, t + 0.002)
    odom = Odometry()
    _set_stamp(odom, t - 0.003)
    odom.pose.pose.position.x = float(i)
    odom.pose.pose.orientation.w = 1.0
    return color, depth, odom


def test_observations_pair_the_right_messages():
    ingest = SensorIngest(IngestConfig(use_depth=True, slop_s=0.01, sample_period_s=0.0, max_frames=8))
    out = []
    for i in range(20):
        color, depth, odom = make_msgs(i, 10.0 + i / 30)
        out += ingest.add_odom(odom) + ingest.add_depth(depth) + ingest.add_color(color)
    assert len(out) >= 18
    for obs in out:
        i = int(obs.odom.x)
        assert np.all(obs.rgb == i) and np.allclose(obs.depth_m, (1000 + i) / 1000.0)
        assert obs.stamp_s == pytest.approx(10.0 + i / 30) and obs.spread_s == pytest.approx(0.005, abs=1e-6)
    assert ingest.latest is out[-1] and len(ingest.history) == 8


def test_compressed_colour_and_malformed_messages_are_counted():
    from sensor_msgs.msg import CompressedImage

    from vlm_agent.sensors.image_conversion import numpy_to_compressed

    ingest = SensorIngest(IngestConfig(use_odom=False, sample_period_s=0.0))
    png = numpy_to_compressed(np.full((8, 8, 3), 7, np.uint8), "rgb8", fmt="png")
    _set_stamp(png, 5.0)
    assert np.all(ingest.add_color(png)[0].rgb == 7)
    bad = CompressedImage(format="jpeg", data=b"garbage")
    _set_stamp(bad, 5.1)
    assert ingest.add_color(bad) == []
    assert ingest.add_color(object()) == []  # no header at all
    assert ingest.drops["malformed"] == 2 and ingest.stats()["dropped.malformed"] == 2
    assert "could not be decoded" in ingest.last_drop_reason or "header" in ingest.last_drop_reason


def test_stale_frames_do_not_become_latest():
    ingest = SensorIngest(IngestConfig(use_odom=False, max_age_s=0.5, sample_period_s=0.0))
    color, _, _ = make_msgs(1, 100.0)
    assert ingest.add_color(color, now_s=100.1)
    color, _, _ = make_msgs(2, 100.2)
    assert ingest.add_color(color, now_s=101.0) == []  # 0.8 s old
    assert int(ingest.latest.rgb[0, 0, 0]) == 1 and ingest.stats()["history.dropped.stale"] == 1


def test_long_run_memory_stays_bounded():
    """10,000 jittered, lossy, partly reordered frames (colour + depth + odometry) through ingest.

    Memory is measured with tracemalloc (allocations made after tracing started and still alive),
    not time: from frame 2,000 to 10,000 it must not grow, although ~150 MB of image data passes
    through. Tracing starts at frame 1,000 (tracemalloc slows allocation several times).
    """
    rng = np.random.default_rng(0)
    config = IngestConfig(use_depth=True, slop_s=0.012, queue_size=20, max_frames=16, sample_period_s=0.2)
    ingest = SensorIngest(config)
    n, trace_from, warmup = 10_000, 1_000, 2_000
    passed_bytes = 0
    pending = []
    try:
        for i in range(n):
            if i == trace_from:
                tracemalloc.start()
            t = 1000.0 + i / 30.0 + rng.uniform(-0.003, 0.003)
            color, depth, odom = make_msgs(i, t)
            passed_bytes += len(color.data) + len(depth.data)
            msgs = [("color", color), ("depth", depth), ("odom", odom)]
            msgs = [m for m in msgs if rng.random() > 0.05]  # 5% loss per stream
            if rng.random() < 0.1:
                pending, msgs = msgs, pending + []  # hold this frame's messages back one frame: reordering
            else:
                msgs = pending + msgs
                pending = []
            for stream, msg in msgs:
                getattr(ingest, f"add_{stream}")(msg)
            if i == warmup:
                gc.collect()
                base, _ = tracemalloc.get_traced_memory()
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats = ingest.stats()
    assert ingest.observations > 0.7 * n, stats
    assert len(ingest.history) == 16
    assert max(ingest.sync.queue_lengths().values()) <= 20
    assert passed_bytes > 140e6
    # Live memory after 10k frames is what it was after 2k: 16 history frames + queues, not a leak.
    assert current - base < 256 * 1024, (current - base, stats)
    assert stats["sync.dropped.unmatched"] > 0 and stats["history.frames"] == 16
