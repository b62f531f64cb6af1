"""The robot skill API, its simulator implementation and the code sandbox (no ROS)."""
