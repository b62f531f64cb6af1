"""Stand-in for ROS 2's `composition_interfaces` (no PyPI wheel exists) so `launch_ros.actions`
imports in the standalone venv. vlm_agent's launch files never load composable nodes; any attempt
to use this stand-in for real raises. Only the launch-file test puts this folder on PYTHONPATH."""
