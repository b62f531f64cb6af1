"""Planar geometry shared by the simulator and the agent (bottom layer: imports nothing of ours).

Angles in radians, counter-clockwise positive about +z (REP-103).
"""
from __future__ import annotations

import math


def wrap_angle(a):
    """Angle wrapped to [-pi, pi); works on floats and elementwise on numpy arrays."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi
