"""vlm-agent up: run the graph of nodes named in a parameter YAML in one process."""
from __future__ import annotations

HELP = "run a graph of nodes in one process from a ROS parameter YAML (no ros2 launch needed)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="ROS parameter YAML, e.g. config/sim.yaml; its node sections choose the nodes")
    parser.add_argument("--nodes", default="", help="comma-separated subset of nodes to start (default: every node section)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--namespace", default="", help="put every node and topic under this namespace, e.g. /robot1")


def run(args) -> int:
    import os

    from vlm_agent.nodes.composition import run_graph

    if not os.path.isfile(args.config):
        raise FileNotFoundError(f"--config {args.config} does not exist")
    namespace = args.namespace.strip()
    if namespace and not namespace.startswith("/"):
        namespace = "/" + namespace
    only = [n.strip() for n in args.nodes.split(",") if n.strip()]
    return run_graph(args.config, only=only or None, duration_s=args.duration, namespace=namespace)
