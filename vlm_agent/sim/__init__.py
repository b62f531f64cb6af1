"""Embedded MuJoCo simulator (Python side): worlds, episodes, oracles, metrics (no ROS)."""
