"""FramePairing: colour frames paired with the nearest depth image and pose (no ROS)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vlm_agent.sensors.frame_pairing import FramePairing, PairingError


def _depth(value: float) -> np.ndarray:
    return np.full((4, 6), value, np.float32)


def test_nearest_depth_and_pose_whichever_arrives_first():
    p = FramePairing(depth_max_dt_s=0.05, pose_max_dt_s=0.1)
    p.add_depth(9.96, _depth(1.0))
    p.add_pose(9.95, 1.0, 0.0, 0.0)
    p.add_frame(10.0, now_s=0.0)  # partners so far: depth 0.04 s, pose 0.05 s away
    p.add_depth(10.01, _depth(2.0))  # nearer: replaces
    p.add_depth(10.04, _depth(3.0))  # farther than the chosen one: kept out
    p.add_pose(10.02, 2.0, 0.5, 0.3)
    p.add_pose(10.2, 9.0, 9.0, 0.0)  # beyond pose_max_dt_s
    depth, pose = p.take(10.0)
    assert depth[0, 0] == 2.0 and pose == (2.0, 0.5, 0.3)


def test_tie_keeps_the_first_and_exact_matches_win():
    p = FramePairing()
    p.add_frame(5.0, 0.0)
    p.add_depth(4.98, _depth(1.0))
    p.add_depth(5.02, _depth(2.0))  # as near as the first: the first stays
    p.add_pose(5.0, 1.0, 2.0, 3.0)
    assert p.take(5.0)[0][0, 0] == 1.0
    p.add_depth(5.0, _depth(3.0))
    assert p.take(5.0)[0][0, 0] == 3.0


def test_missing_partners_name_what_is_missing():
    p = FramePairing(depth_max_dt_s=0.05, pose_max_dt_s=0.1)
    p.add_frame(1.0, 0.0)
    with pytest.raises(PairingError, match=r"no depth image within 0.05 s of the frame \(none received\).*no odometry pose within 0.1 s"):
        p.take(1.0)
    p.add_depth(1.2, _depth(1.0))
    p.add_pose(1.0, 0.0, 0.0, 0.0)
    with pytest.raises(PairingError, match=r"no depth image .*nearest 0.200 s away") as err:
        p.take(1.0)
    assert "pose" not in str(err.value)
    with pytest.raises(PairingError, match="not tracked"):
        p.take(2.0)
    assert isinstance(PairingError("x"), ValueError)


def test_non_finite_poses_never_enter_and_are_named():
    p = FramePairing()
    p.add_frame(1.0, 0.0)
    p.add_depth(1.0, _depth(1.0))
    for bad in [(math.nan, 0.0, 0.0), (0.0, math.inf, 0.0), (0.0, 0.0, -math.inf)]:
        with pytest.raises(ValueError, match="non-finite pose"):
            p.add_pose(1.0, *bad)
    with pytest.raises(PairingError, match="last odometry rejected: non-finite pose"):
        p.take(1.0)
    p.reject_pose("odometry: pose or twist contains NaN or inf")  # what the node's converter said
    with pytest.raises(PairingError, match="NaN or inf"):
        p.take(1.0)
    p.add_pose(1.0, 0.5, 0.0, 0.0)
    assert p.take(1.0)[1] == (0.5, 0.0, 0.0) and p.last_pose_error == ""
    with pytest.raises(ValueError, match="stamp"):
        p.add_pose(math.nan, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="stamp"):
        p.add_depth(math.inf, _depth(1.0))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        p.add_depth(1.0, np.zeros((2, 2, 3), np.float32))


def test_ready_when_both_streams_passed_the_frame_or_after_the_wait():
    p = FramePairing(wait_s=0.2)
    p.add_frame(10.0, now_s=100.0)
    assert not p.ready(10.0, 100.0)
    p.add_depth(9.99, _depth(1.0))  # a nearer one may still come
    p.add_pose(9.99, 0.0, 0.0, 0.0)
    assert not p.ready(10.0, 100.05)
    p.add_depth(10.03, _depth(2.0))  # stamped after the frame: the depth choice is final
    assert not p.ready(10.0, 100.05)
    p.add_pose(10.0, 1.0, 0.0, 0.0)  # exact: final
    assert p.ready(10.0, 100.05)
    assert p.take(10.0)[0][0, 0] == 1.0  # 0.01 s beat 0.03 s
    p.add_frame(11.0, now_s=101.0)
    assert not p.ready(11.0, 101.1) and p.ready(11.0, 101.2)  # waited wait_s: final whatever came
    assert p.ready(99.0, 0.0)  # untracked: nothing to wait for (take says why)


def test_retain_clear_and_bounded_memory():
    p = FramePairing(recent_depth=2, max_frames=3)
    for i in range(5):
        p.add_depth(float(i), _depth(i))
    assert len(p._depth) == 2  # only recent depth images are kept for frames still to come
    for t in (1.0, 2.0, 3.0, 4.0):
        p.add_frame(t, 0.0)
    assert len(p) == 3 and 1.0 not in p  # the oldest tracked frame went first
    p.retain([3.0, 4.0, 7.0])
    assert len(p) == 2 and 2.0 not in p and 3.0 in p
    p.add_frame(3.0, 5.0)  # already tracked: unchanged
    p.add_pose(3.0, 0.0, 0.0, 0.0)
    assert p.take(3.0)[0][0, 0] == 3.0
    p.clear()
    assert len(p) == 0
    p.add_frame(4.0, 0.0)  # recent depth images survive a clear (a new episode)
    p.add_pose(4.0, 0.0, 0.0, 0.0)
    assert p.take(4.0)[0][0, 0] == 4.0
    with pytest.raises(ValueError):
        FramePairing(depth_max_dt_s=-1.0)


def test_a_clock_that_jumps_back_pairs_on_the_new_clock():
    """A simulator reset: stamps restart near zero; 'passed the frame' means the last message received."""
    p = FramePairing()
    p.add_depth(500.0, _depth(1.0))
    p.add_pose(500.0, 3.0, 3.0, 0.0)
    p.add_frame(0.5, 10.0)
    assert not p.ready(0.5, 10.0)  # messages of the old clock say nothing about this frame
    p.add_depth(0.5, _depth(2.0))
    p.add_pose(0.5, 0.0, 0.0, 0.0)
    assert p.ready(0.5, 10.0) and p.take(0.5)[1] == (0.0, 0.0, 0.0)
    p.add_depth(0.6, _depth(3.0))
    p.add_pose(0.6, 0.1, 0.0, 0.0)
    p.add_frame(0.55, 10.1)  # the buffered messages just after it are evidence: final at once
    assert p.ready(0.55, 10.1)
