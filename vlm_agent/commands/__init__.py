"""`vlm-agent` subcommands, one per module (see `vlm_agent.cli`). Part of the CLI: may import rclpy."""
