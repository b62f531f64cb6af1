"""Time stamp conversion in the message converters."""
from __future__ import annotations

import pytest

pytest.importorskip("builtin_interfaces.msg")


@pytest.mark.parametrize("seconds", [0.0, 6.9999999997, 12.5, 1795351457.0751])
def test_seconds_to_stamp_never_steps_back(seconds):
    from vlm_agent.sensors.frames import seconds_to_stamp, stamp_to_seconds

    stamp = seconds_to_stamp(seconds)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert stamp_to_seconds(stamp) == pytest.approx(seconds, abs=1e-6)
