"""FrameHistory: time downsampling, bounded uniform coverage, drops by reason, compressed input."""
from __future__ import annotations

import numpy as np
import pytest

from vlm_agent.sensors.frame_history import FrameHistory, FrameHistoryConfig


def frame(value: int, shape=(4, 6, 3)) -> np.ndarray:
    return np.full(shape, value % 256, dtype=np.uint8)


def test_keeps_every_frame_under_capacity_and_reports_latest():
    h = FrameHistory(max_frames=10, sample_period_s=0.0)
    assert h.latest() is None and len(h) == 0
    for i in range(5):
        assert h.add(i * 0.1, frame(i))
    assert len(h) == 5
    assert h.stamps() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert h.latest().stamp_s == pytest.approx(0.4)
    assert int(h.latest().image[0, 0, 0]) == 4
    assert h.as_array().shape == (5, 4, 6, 3)


def test_sample_period_downsamples_but_latest_is_always_the_freshest():
    h = FrameHistory(max_frames=100, sample_period_s=0.5)
    for i in range(31):  # 30 Hz for one second
        h.add(i / 30.0, frame(i))
        assert h.latest().stamp_s == pytest.approx(i / 30.0)
    stamps = h.stamps()
    gaps = np.diff(stamps)
    assert stamps[0] == 0.0
    assert np.all(gaps[:-1] >= 0.5 - 1e-9), stamps  # every kept sample is a full period apart
    assert len(h) == 3  # 0.0, 0.5, 1.0
    assert h.accepted == 31


@pytest.mark.parametrize("n", [33, 100, 1000])
def test_uniform_policy_is_bounded_keeps_first_and_latest_and_spreads_evenly(n):
    h = FrameHistory(max_frames=16, sample_period_s=0.0)
    for i in range(n):
        h.add(float(i), frame(i))
    stamps = np.array(h.stamps())
    assert len(stamps) == 16
    assert stamps[0] == 0.0 and stamps[-1] == n - 1
    gaps = np.diff(stamps)
    ideal = (n - 1) / 15
    # Removing the interior frame with the smallest surrounding gap keeps gaps within a factor 2 of uniform.
    assert gaps.max() <= 2.0 * ideal + 1, gaps
    assert np.all(gaps > 0)


def test_window_policy_keeps_the_last_frames():
    h = FrameHistory(max_frames=4, sample_period_s=0.0, policy="window")
    for i in range(10):
        h.add(float(i), frame(i))
    assert h.stamps() == [6.0, 7.0, 8.0, 9.0]


def test_drops_are_counted_by_reason_and_never_raise():
    h = FrameHistory(max_frames=8, sample_period_s=0.0, max_age_s=0.5)
    assert h.add(1.0, frame(1))
    assert not h.add(0.5, frame(2))  # older than newest
    assert not h.add(1.0, frame(3))  # duplicate stamp
    assert not h.add(float("nan"), frame(4))
    assert not h.add(-1.0, frame(4))
    assert not h.add("x", frame(4))
    assert not h.add(2.0, np.zeros((4, 6), np.uint8))  # mono, not RGB
    assert not h.add(2.0, np.zeros((4, 6, 3), np.float32))
    assert not h.add(2.0, None)
    assert not h.add(2.0, np.zeros((0, 6, 3), np.uint8))
    assert not h.add(2.0, frame(5), now_s=3.0)  # 1 s old, max_age 0.5
    assert h.add(2.5, frame(6), now_s=2.7)
    counts = h.drops.counts
    assert counts["out_of_order"] == 2 and counts["malformed"] == 7 and counts["stale"] == 1
    assert len(h) == 2 and h.stats()["dropped.malformed"] == 7


def test_resolution_change_clears_history():
    h = FrameHistory(max_frames=8, sample_period_s=0.0)
    h.add(0.0, frame(0))
    h.add(0.1, frame(1))
    h.add(0.2, frame(2, shape=(8, 8, 3)))
    assert len(h) == 1 and h.resets == 1
    assert h.as_array().shape == (1, 8, 8, 3)


def test_sample_includes_first_and_latest():
    h = FrameHistory(max_frames=50, sample_period_s=0.0)
    for i in range(20):
        h.add(float(i), frame(i))
    picked = [f.stamp_s for f in h.sample(5)]
    assert picked[0] == 0.0 and picked[-1] == 19.0 and len(picked) == 5
    assert [f.stamp_s for f in h.sample(1)] == [19.0]
    assert len(h.sample(100)) == 20
    with pytest.raises(ValueError):
        h.sample(0)
    h.clear()
    assert len(h) == 0 and h.as_array().shape[0] == 0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_frames"):
        FrameHistory(max_frames=1)
    with pytest.raises(ValueError, match="policy"):
        FrameHistory(policy="random")
    with pytest.raises(ValueError, match="sample_period_s"):
        FrameHistoryConfig(sample_period_s=-1.0)


def test_image_and_compressed_messages():
    from sensor_msgs.msg import CompressedImage, Image

    from vlm_agent.sensors.image_conversion import numpy_to_compressed, numpy_to_image

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :, 0] = 200  # red
    h = FrameHistory(max_frames=8, sample_period_s=0.0)
    raw = numpy_to_image(rgb[:, :, ::-1].copy(), "bgr8")
    raw.header.stamp.sec, raw.header.stamp.nanosec = 10, 500_000_000
    assert h.add_message(raw)
    np.testing.assert_array_equal(h.latest().image, rgb)
    assert h.latest().stamp_s == pytest.approx(10.5)
    png = numpy_to_compressed(rgb, "rgb8", fmt="png")
    png.header.stamp.sec = 11
    assert h.add_message(png)
    np.testing.assert_array_equal(h.latest().image, rgb)  # PNG is lossless
    bad = CompressedImage(format="jpeg", data=b"not a jpeg")
    bad.header.stamp.sec = 12
    assert not h.add_message(bad)
    wrong = Image(height=2, width=2, encoding="rgb8", step=6, data=b"\x00" * 5)
    wrong.header.stamp.sec = 13
    assert not h.add_message(wrong)
    assert h.drops.counts["malformed"] == 2 and len(h) == 2


def test_clock_going_back_resets_instead_of_rejecting_everything():
    h = FrameHistory(max_frames=8, sample_period_s=0.0, time_jump_s=2.0)
    for i in range(5):
        h.add(100.0 + i, frame(i))
    assert not h.add(103.5, frame(9))  # a late frame: out of order
    assert h.add(1.0, frame(10))  # a bag looped / simulator restarted: start over
    assert h.stamps() == [1.0] and h.time_jumps == 1
    assert h.add(1.5, frame(11)) and len(h) == 2
    assert FrameHistory(time_jump_s=0.0).config.time_jump_s == 0.0
