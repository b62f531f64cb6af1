"""vlm-agent record: the agent's inputs and outputs to MCAP (ROS 2 encoding) for replay and training data."""
from __future__ import annotations

HELP = "record the agent's topics (camera, depth, odometry, instructions, plans, commands) to an MCAP file"


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--output", default="", help="output .mcap path (default: recordings/vlm_agent_<UTC time>.mcap)")
    parser.add_argument(
        "-t", "--topics", default="",
        help="comma-separated topics (default: the topic contract: camera, depth, camera_info, /odom, "
        "/joint_states, instruction, plan, executor state, /cmd_vel, /vlm_agent/cmd_vel_raw, /goal_pose, arm/gripper)",
    )
    parser.add_argument("--add-topics", default="", help="comma-separated topics recorded in addition to the defaults")
    parser.add_argument("-a", "--all", action="store_true", help="also record every other topic that appears")
    parser.add_argument("-d", "--duration", type=float, default=0.0, help="seconds to record (default: until Ctrl-C)")
    parser.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    parser.add_argument("--quiet", action="store_true", help="no live progress table")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run(args) -> int:
    import threading
    import time

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from vlm_agent.nodes.base import rclpy_session, stop_on_signals
    from vlm_agent.nodes.recorder import DEFAULT_TOPICS, RecorderNode
    from vlm_agent.ros_env import configure_ros_environment

    if args.duration < 0:
        raise ValueError("--duration must be >= 0")
    topics = _split(args.topics) or list(DEFAULT_TOPICS)
    topics += [t for t in _split(args.add_topics) if t not in topics]
    overrides = [
        Parameter("topics", value=topics),
        Parameter("record_all", value=bool(args.all)),
        Parameter("duration_s", value=float(args.duration)),
        Parameter("compression", value=args.compression),
    ]
    if args.output:
        overrides.append(Parameter("output_path", value=args.output))
    configure_ros_environment()
    live = None
    stop = threading.Event()
    try:
        # Ctrl-C / SIGTERM only ask the loop to end, as in `run_node`: with rclpy's own handlers the
        # context could be shut down between `rclpy.ok()` and `spin_once` (RCLError, exit 1, seen in
        # CI), and the file is closed and the node destroyed while the context is still valid.
        with stop_on_signals(stop.set), rclpy_session(signal_handler_options=SignalHandlerOptions.NO):
            node = RecorderNode(parameter_overrides=overrides)
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            if not args.quiet:
                live = _progress(node)
            try:
                last_draw = 0.0
                while not stop.is_set() and rclpy.ok() and not node.finished:
                    executor.spin_once(timeout_sec=0.1)
                    if live is not None and time.monotonic() - last_draw > 0.5:
                        live.update(_table(node))
                        last_draw = time.monotonic()
            finally:
                node.stop_recording("stopped by user" if not node.finished else "")
                if live is not None:
                    live.update(_table(node))
                    live.stop()
                executor.remove_node(node)
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


def _progress(node):
    from rich.live import Live

    live = Live(_table(node), refresh_per_second=2, transient=False)
    live.start()
    return live


def _table(node):
    from rich.table import Table

    counts = node.writer.counts()
    table = Table(title=f"recording -> {node.output_path} ({node.writer.bytes_written / 1e6:.1f} MB)")
    table.add_column("topic")
    table.add_column("messages", justify="right")
    for topic in sorted(set(node.config.topics) | set(counts)):
        table.add_row(topic, str(counts.get(topic, 0)))
    return table
