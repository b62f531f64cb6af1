"""vlm-agent dataset: turn an MCAP recording into a training dataset (npz shards + jsonl)."""
from __future__ import annotations

HELP = "convert a recording (.mcap from vlm-agent record) into a training dataset of aligned frames, instructions, plans and commands"


def add_arguments(parser) -> None:
    parser.add_argument("recording", help="input .mcap file")
    parser.add_argument("-o", "--output", default="", help="output folder (required unless --info)")
    parser.add_argument("--info", action="store_true", help="only list the recording's topics")
    parser.add_argument("--period", type=float, default=0.0, help="at most one frame per PERIOD seconds (default: all)")
    parser.add_argument("--size", default="", help="resize images to WxH, e.g. 96x96 (default: keep)")
    parser.add_argument("--no-depth", action="store_true", help="leave depth out")
    parser.add_argument("--slop", type=float, default=0.05, help="colour/depth/odometry sync slop, seconds")
    parser.add_argument("--color-topic", default="/camera/color/image_raw", help="Image or CompressedImage topic")
    parser.add_argument("--shard-frames", type=int, default=1000)
    parser.add_argument("--keep-uninstructed", action="store_true", help="keep frames before the first instruction (episode -1)")


def run(args) -> int:
    import json

    from vlm_agent.sensors.dataset import DatasetConfig, build_dataset
    from vlm_agent.sensors.recording import RecordingReader

    if args.info:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=args.recording)
        table.add_column("topic")
        table.add_column("type")
        table.add_column("messages", justify="right")
        for topic, info in sorted(RecordingReader(args.recording).topics().items()):
            table.add_row(topic, info["type"], str(info["count"]))
        Console().print(table)
        return 0
    if not args.output:
        raise ValueError("--output is required")
    width = height = 0
    if args.size:
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--size: expected WxH like 96x96, got '{args.size}'") from None
    config = DatasetConfig(
        color_topic=args.color_topic, depth_topic="" if args.no_depth else "/camera/depth/image_rect_raw",
        sample_period_s=args.period, image_width=width, image_height=height, slop_s=args.slop,
        shard_frames=args.shard_frames, require_instruction=not args.keep_uninstructed,
    )
    summary = build_dataset(args.recording, args.output, config)
    print(json.dumps({k: summary[k] for k in ("frames", "shards", "episodes", "depth", "dropped")}, indent=2))
    return 0
