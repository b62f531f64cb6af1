"""Vision-encoder latency, backends side by side in one run: PyTorch eager vs ONNX Runtime (CPU), or
PyTorch fp32 / fp16 / torch.compile vs ONNX Runtime CUDA/TensorRT EP vs native TensorRT (--device cuda).

    .venv/bin/python benchmarks/encoder_bench.py                       # default encoders, CPU
    .venv/bin/python benchmarks/encoder_bench.py --presets siglip-base siglip-so400m-224 --iters 5
    .venv/bin/python benchmarks/encoder_bench.py --device cuda --no-defaults --presets siglip-so400m
    vlm-agent bench encoder_bench -- --threads 2 --markdown benchmarks/encoder_results.md

Method: each encoder's backends are built first (ONNX exported once into a temporary cache and
verified), then timed in interleaved rounds (round r runs `iters` calls of every backend in turn),
so load from other processes on a shared machine hits all backends alike. Reported: median and p90
latency per call at the given batch, speed-up vs PyTorch eager fp32 (median ratio), and the max abs
difference of the features vs PyTorch fp32 on the same input. CUDA timings synchronise after each
call. Nothing is asserted: the numbers are recorded, good or bad.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

# Thread settings must be in place before torch/onnxruntime create their pools.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=0)
_known, _ = _pre.parse_known_args()
if _known.threads:
    os.environ.setdefault("OMP_NUM_THREADS", str(_known.threads))

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads for torch and onnxruntime (0 = library default)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=20, help="timed calls per backend per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per backend before timing")
    p.add_argument("--presets", nargs="*", default=[], help="random-weight towers of real sizes: siglip-base, siglip-so400m, siglip-so400m-224, clip-base")
    p.add_argument("--preset-iters", type=int, default=0, help="--iters for presets (default: same as --iters)")
    p.add_argument("--no-defaults", action="store_true", help="skip the project's default encoders")
    p.add_argument("--markdown", default="", help="write the results section (machine, settings, table) to this file")
    return p.parse_args(argv)


def machine_summary(device: str, threads: int) -> str:
    from vlm_agent.telemetry import cpu_model_name

    cpu = cpu_model_name()
    import onnxruntime as ort
    import transformers

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    parts = [
        f"CPU: {cpu}, {os.cpu_count()} cores visible; load average at start {load[0]:.2f}",
        f"threads: {threads or 'library default'} (torch {torch.get_num_threads()} intra-op; onnxruntime intra_op_num_threads={threads or 'default'})",
        f"torch {torch.__version__}, onnxruntime {ort.__version__} (providers {ort.get_available_providers()}), transformers {transformers.__version__}",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(torch.device(device))}")
    return "\n".join(f"- {p}" for p in parts)


def build_backends(module, info, device: str, threads: int, cache_dir: str, batch: int = 1):
    """[(label, encoder or None, note)] in display order; the first is the PyTorch fp32 reference."""
    import copy

    from vlm_agent.accel.onnx_export import cached_export
    from vlm_agent.accel.ort_backend import OrtVisionEncoder
    from vlm_agent.accel.torch_backend import TorchVisionEncoder

    out = []

    def add(label, fn):
        try:
            out.append((label, fn(), ""))
        except Exception as exc:  # a backend this machine lacks is reported, not fatal
            out.append((label, None, f"{type(exc).__name__}: {str(exc)[:120]}"))

    onnx_path = cached_export(module, info, cache_dir)
    if not device.startswith("cuda"):
        add("torch eager fp32", lambda: TorchVisionEncoder(module, info, "cpu", "fp32", num_threads=threads))
        add("onnxruntime CPU fp32", lambda: OrtVisionEncoder(onnx_path, "cpu", "fp32", num_threads=threads))
        return out
    add("torch eager fp32", lambda: TorchVisionEncoder(copy.deepcopy(module), info, device, "fp32"))
    add("torch eager fp16", lambda: TorchVisionEncoder(copy.deepcopy(module), info, device, "fp16"))
    add("torch.compile fp16", lambda: TorchVisionEncoder(copy.deepcopy(module), info, device, "fp16", compile=True))

    def ort(precision, want, providers=None):
        enc = OrtVisionEncoder(onnx_path, device, precision, cache_dir=cache_dir, max_batch=max(8, batch), available_providers=providers)
        if enc.providers[0] != want:
            raise RuntimeError(f"{want} not available (session providers {enc.providers})")
        return enc

    # The CUDA EP alone (even where the TensorRT EP exists) so both are timed separately.
    add("onnxruntime CUDA EP fp32", lambda: ort("fp32", "CUDAExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    add("onnxruntime TensorRT EP fp16", lambda: ort("fp16", "TensorrtExecutionProvider"))

    def native(precision):
        from vlm_agent.accel.trt_backend import TensorRTVisionEncoder

        return TensorRTVisionEncoder(onnx_path, device, precision, cache_dir=cache_dir, max_batch=max(8, batch))

    add("TensorRT fp16", lambda: native("fp16"))
    return out


def time_backends(backends, x, iters: int, rounds: int, warmup: int, cuda: bool):
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    live = [(label, enc) for label, enc, _ in backends if enc is not None]
    for _, enc in live:
        for _ in range(warmup):
            enc.encode(x)
        sync()
    times = {label: [] for label, _ in live}
    for _ in range(rounds):
        for label, enc in live:
            for _ in range(iters):
                t0 = time.perf_counter()
                enc.encode(x)
                sync()
                times[label].append(time.perf_counter() - t0)
    return times


def bench_one(name, loader, args, cache_dir, iters):
    module, info = loader()
    n_params = sum(p.numel() for p in module.parameters())
    backends = build_backends(module, info, args.device, args.threads, cache_dir, args.batch)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.batch, 3, info.image_size, info.image_size), dtype=np.float32)
    x = torch.from_numpy(x_np).to(args.device)
    cuda = args.device.startswith("cuda")
    ref = next((enc for label, enc, _ in backends if enc is not None and label == "torch eager fp32"), None)
    ref_out = ref.encode(x).float().cpu() if ref is not None else None
    times = time_backends(backends, x, iters, args.rounds, args.warmup, cuda)
    rows = []
    base = statistics.median(times["torch eager fp32"]) if "torch eager fp32" in times else None
    for label, enc, note in backends:
        if enc is None:
            rows.append((name, label, "n/a", "n/a", "n/a", "n/a", note))
            continue
        t = sorted(times[label])
        med, p90 = statistics.median(t), t[min(len(t) - 1, int(0.9 * len(t)))]
        err = float((enc.encode(x).float().cpu() - ref_out).abs().max()) if ref_out is not None else float("nan")
        speed = f"{base / med:.2f}x" if base else "n/a"
        rows.append((name, label, f"{med * 1e3:.2f}", f"{p90 * 1e3:.2f}", speed, f"{err:.1e}", ""))
    meta = f"{name}: {info.model_type}, {n_params / 1e6:.2f}M params, input (B={args.batch},3,{info.image_size},{info.image_size}) -> ({info.num_tokens},{info.hidden_size}); {iters} calls x {args.rounds} rounds per backend"
    return rows, meta


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device visible to torch", file=sys.stderr)
        return 2
    from vlm_agent.accel.defaults import default_encoders
    from vlm_agent.accel.presets import random_tower

    jobs = [] if args.no_defaults else [(n, f, args.iters) for n, f in default_encoders().items()]
    jobs += [(f"{p} (random weights)", lambda p=p: random_tower(p), args.preset_iters or args.iters) for p in args.presets]
    if not jobs:
        print("nothing to benchmark (use --presets or drop --no-defaults)", file=sys.stderr)
        return 2
    header = machine_summary(args.device, args.threads)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    all_rows, metas = [], []
    with tempfile.TemporaryDirectory(prefix="encoder_bench_") as cache_dir:
        for name, loader, iters in jobs:
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            rows, meta = bench_one(name, loader, args, cache_dir, iters)
            all_rows += rows
            metas.append(meta)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"Run {started}, device {args.device}, batch {args.batch}; `{' '.join(['benchmarks/encoder_bench.py', *(argv if argv is not None else sys.argv[1:])])}`",
        "",
        header,
        f"- load average at end {load_end:.2f}",
        *[f"- {m}" for m in metas],
        "",
        "| encoder | backend | median ms | p90 ms | speed-up vs torch eager fp32 | max abs diff vs torch fp32 | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        *["| " + " | ".join(r) + " |" for r in all_rows],
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
