"""StreamMonitor: freshness from header stamps on one clock, the watchdog on a steady clock."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlm_agent.safety.freshness import StreamMonitor

T = 0.3  # timeout, s
SIM0 = 100.0  # a sim clock reading (s)
STEADY0 = 5000.0  # a steady clock reading (s): a different clock with a different origin


def live(monitor, n=5, rate_hz=30.0, clock0=SIM0, steady0=STEADY0, latency=0.01):
    """n frames at rate_hz, each stamped at capture and received `latency` later."""
    for i in range(n):
        stamp = clock0 + i / rate_hz
        assert monitor.on_message(stamp, steady0 + i / rate_hz + latency, stamp + latency) is None
    return clock0 + (n - 1) / rate_hz + latency, steady0 + (n - 1) / rate_hz + latency


def test_a_live_stream_is_fresh_and_goes_stale_after_the_timeout_on_the_steady_clock():
    m = StreamMonitor("camera", T)
    clock, steady = live(m)
    assert m.check(steady, clock).fresh
    assert m.check(steady + T - 0.01).fresh
    verdict = m.check(steady + T + 0.01)
    assert not verdict.fresh and "stale for" in verdict.reason


def test_never_seen_is_stale_and_a_disabled_stream_is_always_fresh():
    assert not StreamMonitor("odom", T).check(STEADY0).fresh
    assert "no message yet" in StreamMonitor("odom", T).check(STEADY0).reason
    assert StreamMonitor("odom", 0.0).check(STEADY0).fresh


def test_a_frozen_driver_resending_one_stamp_is_a_dead_stream():
    m = StreamMonitor("camera", T)
    clock, steady = live(m)
    last = m.last_stamp_s
    # The driver keeps publishing at 30 Hz, always the same frame and stamp.
    for i in range(1, 30):
        reason = m.on_message(last, steady + i / 30.0, clock + i / 30.0)
        # Repeated while young, then also too old: never accepted either way.
        assert reason and ("did not advance" in reason if i <= 8 else "old on arrival" in reason)
    assert m.counts["repeated"] == 8 and m.counts["accepted"] == 5
    assert m.check(steady + 8 / 30.0, clock + 8 / 30.0).fresh  # within the timeout of the last real frame
    verdict = m.check(steady + 29 / 30.0, clock + 29 / 30.0)
    assert not verdict.fresh and "stale for" in verdict.reason


def test_a_backlog_after_an_executor_stall_is_not_fresh():
    m = StreamMonitor("depth", T)
    clock, steady = live(m)
    # The executor stalls 2 s; then the queued frames (stamped during the stall) are delivered at once.
    stall_end_clock, stall_end_steady = clock + 2.0, steady + 2.0
    for i in range(10):
        stamp = clock + 0.1 + i * 0.1  # captured 1.9 .. 1.0 s before delivery
        reason = m.on_message(stamp, stall_end_steady + 0.001 * i, stall_end_clock + 0.001 * i)
        assert reason and "old on arrival" in reason
    assert not m.check(stall_end_steady + 0.02, stall_end_clock + 0.02).fresh
    # The first frame captured after the stall is fresh again.
    assert m.on_message(stall_end_clock + 0.01, stall_end_steady + 0.02, stall_end_clock + 0.02) is None
    assert m.check(stall_end_steady + 0.03, stall_end_clock + 0.03).fresh


def test_unstamped_frames_never_refresh_the_stream():
    m = StreamMonitor("camera", T)
    for stamp in (0.0, -1.0, math.nan, math.inf):
        assert "unstamped" in m.on_message(stamp, STEADY0, SIM0)
    verdict = m.check(STEADY0)
    assert not verdict.fresh and "no valid message yet" in verdict.reason and "unstamped" in verdict.reason


def test_stamps_on_another_clock_are_rejected_both_ways():
    # Sender on system time (~1.7e9 s), receiver on sim time (100 s): a stamp from the future.
    m = StreamMonitor("camera", T)
    assert "ahead of this node's clock" in m.on_message(1.7e9, STEADY0, SIM0)
    # Sender on sim time, receiver on system time: 1.7e9 s old.
    m2 = StreamMonitor("camera", T)
    assert "old on arrival" in m2.on_message(SIM0, STEADY0, 1.7e9)
    assert not m.check(STEADY0).fresh and not m2.check(STEADY0).fresh
    # Small skew inside the tolerance is accepted.
    assert StreamMonitor("camera", T, future_tolerance_s=0.05).on_message(SIM0 + 0.04, STEADY0, SIM0) is None


def test_a_fast_simulator_is_held_to_sim_seconds():
    """At 10x real time, 0.1 s of wall time is 1 s of sim motion: the stamp-clock half of rule 4 fires."""
    m = StreamMonitor("camera", T)
    clock, steady = live(m)
    assert m.check(steady + 0.05, clock + 0.5).fresh is False  # 0.05 s wall, 0.5 s sim since the last frame
    assert "newest stamp" in m.check(steady + 0.05, clock + 0.5).reason
    assert m.check(steady + 0.05).fresh  # without the stamp clock only the steady half applies


def test_a_stopped_sim_clock_does_not_stop_the_watchdog():
    m = StreamMonitor("camera", T)
    clock, steady = live(m)
    # /clock stops (simulator paused or dead): the stamp clock stands still, the steady clock runs on.
    assert not m.check(steady + 1.0, clock).fresh


def test_a_clock_reset_drops_the_history():
    m = StreamMonitor("camera", T)
    clock, steady = live(m, clock0=50.0)
    # The simulator restarts at t=0: new stamps are far older than the newest accepted one.
    assert m.on_message(0.05, steady + 0.05, 0.06) is None
    assert m.counts["clock_resets"] == 1
    assert m.check(steady + 0.06, 0.07).fresh


def test_data_age_counts_transport_latency_and_time_since_arrival():
    m = StreamMonitor("depth", T)
    assert m.data_age_s(STEADY0) is None
    m.on_message(SIM0, STEADY0, SIM0 + 0.04)  # 40 ms in transport
    assert m.data_age_s(STEADY0 + 0.1) == pytest.approx(0.14)
    m.on_message(None, STEADY0 + 0.2)  # unstamped: no latency known
    assert m.data_age_s(STEADY0 + 0.25) == pytest.approx(0.05)


def test_unstamped_types_fall_back_to_arrival_time():
    m = StreamMonitor("odom", T)
    assert m.on_message(None, STEADY0) is None
    assert m.check(STEADY0 + 0.2).fresh and not m.check(STEADY0 + 0.31).fresh


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        StreamMonitor("x", -1.0)
    with pytest.raises(ValueError):
        StreamMonitor("x", math.nan)
    with pytest.raises(ValueError, match="now_clock_s"):
        StreamMonitor("x", T).on_message(SIM0, STEADY0, None)


@given(
    stamps=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=30),
    delay=st.floats(min_value=0.0, max_value=5.0),
)
def test_property_the_stream_is_fresh_only_if_some_stamp_was_recent_and_advancing(stamps, delay):
    m = StreamMonitor("camera", T)
    steady = STEADY0
    clock = SIM0
    accepted = []
    for s in stamps:
        steady += 0.01
        clock += 0.01
        if m.on_message(s, steady, clock) is None:
            accepted.append(s)
    # Every accepted stamp is finite, positive, strictly increasing and was recent on arrival.
    assert all(math.isfinite(s) and s > 0 for s in accepted)
    assert all(b > a for a, b in zip(accepted, accepted[1:]))
    verdict = m.check(steady + delay, clock + delay)
    if verdict.fresh:
        assert accepted and clock + delay - accepted[-1] <= T
