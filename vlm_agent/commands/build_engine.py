"""vlm-agent build-engine: ONNX (or a model directory, exported first) -> cached TensorRT engine."""
from __future__ import annotations

HELP = "build a TensorRT engine (FP16/INT8) from an exported encoder; needs TensorRT and an NVIDIA GPU"


def add_arguments(parser) -> None:
    parser.add_argument("source", help="an .onnx from `vlm-agent export`, or a model directory (exported to the cache first)")
    prec = parser.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="FP16 engine (the usual choice on Jetson Orin)")
    prec.add_argument("--int8", action="store_true", help="INT8 engine calibrated on --calib frames (FP16 where INT8 is unsupported)")
    parser.add_argument("--calib", default="", help="calibration frames for --int8: a robot recording (.mcap, /camera/color/image_raw), a dataset/collect shard, or .npz/.npy uint8 (N,H,W,3) / float32 (N,3,S,S)")
    parser.add_argument("--calib-batch-size", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch of the optimisation profile")
    parser.add_argument("--opt-batch", type=int, default=1, help="batch size kernels are tuned for (1 on a robot)")
    parser.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace limit (<= 1024 on Orin Nano)")
    parser.add_argument("--cache-dir", default="~/.cache/vlm_agent/engines", help="engine + timing cache directory")
    parser.add_argument("--device", default="cuda", help="CUDA device to build for (engines are GPU-specific)")


def run(args) -> int:
    import os
    import sys

    from vlm_agent.accel.config import EncoderBackendConfig
    from vlm_agent.accel.trt_backend import tensorrt_unavailable_reason

    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    # Validates the combination (int8 needs --calib, ranges) with the same rules nodes use.
    cfg = EncoderBackendConfig(
        backend="tensorrt", device=args.device, precision=precision, engine_cache_dir=args.cache_dir, max_batch=args.max_batch,
        opt_batch=args.opt_batch, calib_file=args.calib, calib_batch_size=args.calib_batch_size, workspace_mb=args.workspace_mb,
        fallback=False,
    )
    if not os.path.exists(args.source):
        raise FileNotFoundError(f"{args.source} does not exist")
    if args.int8 and not os.path.isfile(args.calib):
        raise FileNotFoundError(f"--calib {args.calib} does not exist")
    reason = tensorrt_unavailable_reason(cfg.device, precision)
    if reason:
        # Checked before exporting anything: on a machine without TensorRT this is all we can say.
        print(f"vlm-agent build-engine: cannot build here: {reason}", file=sys.stderr)
        print("Build the engine on the target (Jetson: see docs/jetson.md); ONNX Runtime runs the .onnx meanwhile.", file=sys.stderr)
        return 1
    from vlm_agent.accel.factory import make_encoder

    enc = make_encoder(args.source, config=cfg)  # builds (or finds) the engine; strict: no fallback
    print(f"engine: {enc.engine_path}")
    print(f"input (1..{cfg.max_batch}, 3, {enc.info.image_size}, {enc.info.image_size}) -> output (B, {enc.info.num_tokens}, {enc.info.hidden_size}), {precision}")
    return 0
