"""Policy logic: prompts, action grammars and parsers, replanning loops (no ROS)."""
