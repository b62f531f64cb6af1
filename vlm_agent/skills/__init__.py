"""The robot skills (no ROS): the registry (`api`: prompt text and tool schemas from one source),
phrase resolution (`resolver`), perception providers (`perception`), the simulator implementation
(`sim_skills`), the motion executor core (`motion`) and the code sandbox (`sandbox`). See docs/skills.md."""
