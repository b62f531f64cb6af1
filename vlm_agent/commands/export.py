"""vlm-agent export: a vision tower -> ONNX (dynamic batch), verified against PyTorch."""
from __future__ import annotations

HELP = "export a vision encoder (built-in model dir or SigLIP/CLIP checkpoint) to ONNX and verify it"


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("source", nargs="?", help="model directory: a built-in checkpoint (checkpoints/...) or a SigLIP/CLIP checkpoint")
    src.add_argument("--preset", help="random-weight tower of a real size instead (siglip-base, siglip-so400m, ...)")
    parser.add_argument("-o", "--output", help="output .onnx path (default: <source>/vision_encoder.onnx, or ./<preset>.onnx)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18: dynamo exporter's native opset, parsed by TensorRT 10)")
    parser.add_argument("--verify-batches", type=int, nargs="*", default=[1, 4], help="batch sizes checked with ONNX Runtime vs torch (default: 1 4)")
    parser.add_argument("--atol", type=float, default=1e-4, help="fail (exit 1) when the max abs error exceeds this (default 1e-4)")


def run(args) -> int:
    import os
    import time

    from vlm_agent.accel.config import DEFAULT_OPSET
    from vlm_agent.accel.onnx_export import export_onnx

    opset = args.opset or DEFAULT_OPSET
    if not 17 <= opset <= 21:
        raise ValueError(f"--opset {opset}: supported range is 17..21 (LayerNormalization needs 17)")
    t0 = time.perf_counter()
    if args.preset:
        from vlm_agent.accel.presets import random_tower

        module, info = random_tower(args.preset)
        output = args.output or f"{args.preset}.onnx"
    else:
        from vlm_agent.accel.tower import load_tower

        if not os.path.isdir(args.source):
            raise FileNotFoundError(f"{args.source} is not a model directory")
        module, info = load_tower(args.source)
        output = args.output or os.path.join(args.source, "vision_encoder.onnx")
    n_params = sum(p.numel() for p in module.parameters())
    print(f"loaded {info.name} ({info.model_type}, {n_params / 1e6:.2f}M params) in {time.perf_counter() - t0:.1f} s")
    print(f"input  pixel_values (B, 3, {info.image_size}, {info.image_size}) float32, mean {info.image_mean} std {info.image_std}")
    print(f"output features     (B, {info.num_tokens}, {info.hidden_size}) float32")
    result = export_onnx(module, info, output, opset=opset, verify_batches=tuple(args.verify_batches))
    size = os.path.getsize(output) + (os.path.getsize(output + ".data") if os.path.exists(output + ".data") else 0)
    print(f"wrote {output} ({size / 1e6:.1f} MB, opset {opset}, dynamic batch) in {result.seconds:.1f} s")
    worst = 0.0
    for b, err in sorted(result.max_abs_error.items()):
        print(f"verify batch {b}: max abs error onnxruntime vs torch = {err:.3e}")
        worst = max(worst, err)
    if worst > args.atol:
        print(f"FAILED: max abs error {worst:.3e} > --atol {args.atol:g}")
        return 1
    return 0
