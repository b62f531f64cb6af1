"""CPU vision-encoder backends side by side in one run: PyTorch eager, ONNX Runtime fp32 / int8
(dynamic, static), OpenVINO fp32 / bf16 / int8, at 1 and 2 threads, with parity columns.

    .venv/bin/python benchmarks/encoder_cpu_backends.py --quick          # smoke run, ~3-5 min on 2 busy cores
    .venv/bin/python benchmarks/encoder_cpu_backends.py                  # navid_tiny, SigLIP-base/16@224, So400m/14@384; 1 and 2 threads
    vlm-agent bench encoder_cpu_backends -- --encoders navid_tiny siglip-base --threads 2 --markdown /tmp/cpu.md

Method (as benchmarks/encoder_bench.py): per encoder, every backend is built first (one ONNX export
and one calibration set shared by all; builds timed separately), then timed in interleaved rounds
(round r runs `iters` calls of every backend in turn) so load from other processes hits all alike.
Each thread count is its own block with its own reference (PyTorch eager fp32 at that count).

Inputs are rendered frames, not noise: a few `vlm-agent collect` episodes of the MuJoCo sim
(or `--calib FILE` / `--eval FILE` shards or recordings). Calibration frames (static INT8: ONNX
Runtime and OpenVINO/NNCF) come from the train split, evaluation frames from the val split, so no
backend is judged on the frames it was calibrated on. For the SigLIP presets (random weights of the
real shapes, `vlm_agent/accel/presets.py`) the 64 px frames are upscaled to 224/384 px.

Parity columns, against PyTorch eager fp32 on the same evaluation frames: feature cosine per token
(mean and min over `--parity-frames` frames x N tokens), max abs difference, and, for the shipped
NaVid checkpoint, the planner's decisions on the recorded evaluation episodes (identical primitives
from the same frames and instruction, each planner keeping its own history; `accel/parity.py`).
Parity is measured once per backend (at the first thread count); the file a backend runs does not
depend on the thread count. "build s" is the one-off preparation (quantisation, OpenVINO IR incl.
NNCF) after the shared ONNX export. Memory: the seven backends of one encoder are held at once while
timed (So400m@384: roughly 8-11 GB). Nothing is asserted: the numbers are recorded, good or bad.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_ENCODERS = ("navid_tiny", "siglip-base", "siglip-so400m")
# label -> EncoderBackendConfig fields ("CALIB" is replaced by the calibration file).
BACKENDS = {
    "torch eager fp32": dict(backend="torch"),
    "onnxruntime fp32": dict(backend="onnxruntime"),
    "onnxruntime int8 dynamic": dict(backend="onnxruntime", precision="int8", int8_mode="dynamic"),
    "onnxruntime int8 static": dict(backend="onnxruntime", precision="int8", int8_mode="static", calib_file="CALIB"),
    "openvino fp32": dict(backend="openvino"),
    "openvino bf16": dict(backend="openvino", precision="bf16"),
    "openvino int8 (nncf)": dict(backend="openvino", precision="int8", calib_file="CALIB"),
}
REFERENCE = "torch eager fp32"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: navid_tiny + siglip-base, 1 thread, few calls, few frames")
    p.add_argument("--encoders", nargs="*", default=None, help=f"default encoders by name and/or presets (default {' '.join(DEFAULT_ENCODERS)})")
    p.add_argument("--backends", nargs="*", default=None, help=f"subset of: {', '.join(BACKENDS)}")
    p.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts, each its own block (default 1 2)")
    p.add_argument("--iters", type=int, default=None, help="timed calls per backend per round for the default encoders (default 50)")
    p.add_argument("--preset-iters", type=int, default=None, help="timed calls per backend per round for the presets (default 3)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per backend before timing")
    p.add_argument("--calib", default="", help="calibration frames (.mcap, collect/dataset shard, .npz/.npy); default: sim train episodes")
    p.add_argument("--eval", default="", help="evaluation shard with episodes (collect/dataset); default: sim val episodes")
    p.add_argument("--calib-frames", type=int, default=None, help="calibration frames used (evenly subsampled; default 256, presets 64)")
    p.add_argument("--parity-frames", type=int, default=None, help="evaluation frames for the cosine columns (default 32; presets at most 8)")
    p.add_argument("--decision-episodes", type=int, default=None, help="recorded episodes for the planner-decision column (default 12)")
    p.add_argument("--cache-dir", default="", help="engine cache to use/keep (default: a temporary one, so builds are timed)")
    p.add_argument("--markdown", default="", help="write the results section (machine, settings, table) to this file")
    a = p.parse_args(argv)
    q = a.quick
    defaults = dict(encoders=["navid_tiny", "siglip-base"] if q else list(DEFAULT_ENCODERS), threads=[1] if q else [1, 2],
                    iters=10 if q else 50, preset_iters=1 if q else 3, rounds=2 if q else 5, calib_frames=16 if q else 256,
                    parity_frames=4 if q else 32, decision_episodes=2 if q else 12, backends=list(BACKENDS))
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    unknown = [b for b in a.backends if b not in BACKENDS]
    if unknown:
        p.error(f"unknown backends {unknown} (one of {list(BACKENDS)})")
    if REFERENCE not in a.backends:
        a.backends.insert(0, REFERENCE)
    return a


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line.split(":", 1)[1].split() for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    keep = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_fp16", "avx512_fp16")
    return [f for f in keep if f in flags]


def machine_summary(threads) -> str:
    import onnxruntime as ort
    import transformers

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    parts = [
        f"CPU: {cpu_name()}, {os.cpu_count()} cores visible, {mem:.0f} GiB RAM; ISA: {', '.join(cpu_flags()) or '?'}",
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)",
        f"threads per block: {threads} (torch.set_num_threads; onnxruntime intra_op_num_threads; OpenVINO INFERENCE_NUM_THREADS)",
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, transformers {transformers.__version__}",
    ]
    try:
        import openvino as ov

        from vlm_agent.accel.ov_backend import device_capabilities, nncf_available

        caps = device_capabilities()
        nncf = "nncf " + __import__("nncf").__version__ if nncf_available() else "nncf not installed (int8 from the QDQ file)"
        parts.append(f"openvino {ov.__version__} ({caps['name']}: {caps['capabilities']}, default precision {caps['default_precision']}), {nncf}")
    except Exception as exc:
        parts.append(f"openvino: not available ({type(exc).__name__}: {exc})")
    return "\n".join(f"- {p}" for p in parts)


def sim_frames(out_dir: str, calib_episodes: int, eval_episodes: int) -> tuple[str, str]:
    """(calibration shard, evaluation shard) from a few sim episodes (train / val splits)."""
    from vlm_agent.training.collect import collect_shards

    calib = collect_shards(os.path.join(out_dir, "calib"), split="train", episodes=calib_episodes, episodes_per_shard=calib_episodes,
                           seed=101, log=lambda *a: None)[0]
    evals = collect_shards(os.path.join(out_dir, "eval"), split="val", episodes=eval_episodes, episodes_per_shard=eval_episodes,
                           seed=202, log=lambda *a: None)[0]
    return calib, evals


def subsample_calibration(path: str, n: int, out: str) -> tuple[str, int]:
    """Write at most `n` evenly spaced uint8 frames of a shard/array to `out` (MCAP recordings pass through)."""
    if path.endswith(".mcap"):
        return path, -1
    data = np.load(path, allow_pickle=False)
    arr = data[next(k for k in ("frames", "rgb", "images") if k in data.files)] if hasattr(data, "files") else data
    idx = np.linspace(0, len(arr) - 1, min(n, len(arr))).round().astype(int)
    np.savez(out, frames=arr[idx])
    return out, len(idx)


def load_encoder(name: str):
    """-> (module, info, model_dir or "") for a default encoder name or a preset."""
    from vlm_agent.accel.defaults import CHECKPOINTS_DIR, default_encoders
    from vlm_agent.accel.presets import PRESETS, random_tower

    defaults = default_encoders()
    if name in defaults:
        module, info = defaults[name]()
        ckpt = CHECKPOINTS_DIR / name
        return module, info, str(ckpt) if (ckpt / "config.json").is_file() and info.name == name else ""
    if name in PRESETS:
        module, info = random_tower(name)
        return module, info, ""
    raise SystemExit(f"unknown encoder '{name}': default encoders {sorted(defaults)}, presets {sorted(PRESETS)}")


def build(label: str, module, onnx_path: str, threads: int, cache_dir: str, calib: str):
    """(encoder or None, build seconds, note)."""
    from vlm_agent.accel.config import EncoderBackendConfig
    from vlm_agent.accel.factory import make_encoder

    fields = {k: (calib if v == "CALIB" else v) for k, v in BACKENDS[label].items()}
    cfg = EncoderBackendConfig(engine_cache_dir=cache_dir, num_threads=threads, fallback=False, calib_batch_size=1, **fields)
    t0 = time.perf_counter()
    try:
        enc = make_encoder(module if fields["backend"] == "torch" else onnx_path, config=cfg)
    except Exception as exc:  # a backend this machine lacks is reported, not fatal
        return None, 0.0, f"{type(exc).__name__}: {str(exc)[:160]}"
    return enc, time.perf_counter() - t0, ""


def time_backends(encoders: dict, x, iters: int, rounds: int, warmup: int) -> dict:
    for enc in encoders.values():
        for _ in range(warmup):
            enc.encode(x)
    times = {label: [] for label in encoders}
    for _ in range(rounds):
        for label, enc in encoders.items():
            for _ in range(iters):
                t0 = time.perf_counter()
                enc.encode(x)
                times[label].append(time.perf_counter() - t0)
    return times


def bench_encoder(name, args, cache_dir, calib_src, eval_shard, tmp):
    from vlm_agent.accel.calibration import _preprocess_uint8
    from vlm_agent.accel.onnx_export import cached_export
    from vlm_agent.accel.parity import feature_cosine, load_episodes, planner_agreement

    module, info, model_dir = load_encoder(name)
    preset = not model_dir and name not in ("navid (default config)",)
    n_params = sum(p.numel() for p in module.parameters())
    iters = args.preset_iters if info.image_size > 64 else args.iters
    n_calib = args.calib_frames if info.image_size <= 64 else min(args.calib_frames, 64)
    calib, n_used = subsample_calibration(calib_src, n_calib, os.path.join(tmp, f"calib_{n_calib}.npz"))
    t0 = time.perf_counter()
    onnx_path = cached_export(module, info, cache_dir)
    export_s = time.perf_counter() - t0
    # Evaluation frames, preprocessed exactly as the image processor does (resize + mean/std).
    # (Subsampled before preprocessing: 500 frames at 384 px would be ~1 GB of float32.)
    raw = np.load(eval_shard, allow_pickle=False)
    raw = raw["frames"] if "frames" in raw.files else raw["rgb"]
    n_parity = min(args.parity_frames, len(raw), 8 if info.image_size > 64 else len(raw))  # So400m@384: seconds per frame and backend
    px = _preprocess_uint8(raw[np.linspace(0, len(raw) - 1, n_parity).round().astype(int)], info)
    x = np.ascontiguousarray(px[:1])
    # Prepare pass: every derived file (quantised ONNX, OpenVINO IR) is made one backend at a time
    # and the encoder dropped, so the memory peak of one build (quantiser + its sessions) never
    # adds to the sessions held for timing. "build s" is this pass; later loads are cache hits.
    builds = {}
    for label in args.backends:
        if label != REFERENCE:
            enc, builds[label], _ = build(label, module, onnx_path, args.threads[0], cache_dir, calib)
            del enc
            gc.collect()
    builds[REFERENCE] = 0.0
    rows, parity = [], {}
    for bi, threads in enumerate(args.threads):
        torch.set_num_threads(threads)
        encoders, notes = {}, {}
        for label in args.backends:
            enc, _, note = build(label, module, onnx_path, threads, cache_dir, calib)
            notes[label] = note
            if enc is not None:
                encoders[label] = enc
        if bi == 0:
            ref = encoders.get(REFERENCE)
            ref_out = [ref.encode(px[i : i + 1]) for i in range(len(px))] if ref is not None else None
            for label, enc in encoders.items():
                out = [enc.encode(px[i : i + 1]) for i in range(len(px))]
                cos = feature_cosine(torch.cat(ref_out), torch.cat(out)) if ref_out else {"mean": float("nan"), "min": float("nan")}
                err = max(float((a - b).abs().max()) for a, b in zip(ref_out, out)) if ref_out else float("nan")
                decisions = ""
                if model_dir and args.decision_episodes and label != REFERENCE:
                    from vlm_agent.accel.config import EncoderBackendConfig

                    fields = {k: (calib if v == "CALIB" else v) for k, v in BACKENDS[label].items()}
                    cfg = EncoderBackendConfig(engine_cache_dir=cache_dir, num_threads=threads, fallback=False, calib_batch_size=1, **fields)
                    ag, _ = planner_agreement(model_dir, cfg, load_episodes(eval_shard, args.decision_episodes))
                    decisions = f"{100 * ag.plan_rate:.1f}% of {ag.frames} ({ag.episodes} ep.)"
                elif model_dir and label == REFERENCE:
                    decisions = "reference"
                parity[label] = (cos, err, decisions)
        times = time_backends(encoders, x, iters, args.rounds, args.warmup)
        base = statistics.median(times[REFERENCE]) if REFERENCE in times else None
        for label in args.backends:
            if label not in encoders:
                rows.append((name, str(threads), label, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", notes[label]))
                continue
            t = sorted(times[label])
            med, p90 = statistics.median(t), t[min(len(t) - 1, int(0.9 * len(t)))]
            cos, err, decisions = parity.get(label, ({"mean": float("nan"), "min": float("nan")}, float("nan"), ""))
            enc = encoders[label]
            note = "; ".join(enc.fallback_reasons) or getattr(enc, "int8_method", "")
            rows.append((name, str(threads), label, f"{med * 1e3:.2f}", f"{p90 * 1e3:.2f}", f"{base / med:.2f}x" if base else "n/a",
                         f"{cos['mean']:.5f}", f"{cos['min']:.4f}", f"{err:.1e}", decisions or "-", f"{builds[label]:.1f}", note))
        del encoders
        gc.collect()
    meta = (f"{name}{' (random weights)' if preset else ''}: {info.model_type}, {n_params / 1e6:.2f}M params, input (1,3,{info.image_size},{info.image_size}) -> "
            f"({info.num_tokens},{info.hidden_size}); {iters} calls x {args.rounds} rounds per backend; export {export_s:.1f} s; "
            f"calibration {n_used if n_used >= 0 else 'recording'} frames; parity on {len(px)} eval frames")
    return rows, meta


def main(argv=None) -> int:
    args = parse_args(argv)
    header = machine_summary(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t_start = time.perf_counter()
    all_rows, metas = [], []
    with tempfile.TemporaryDirectory(prefix="encoder_cpu_") as tmp:
        cache_dir = args.cache_dir or os.path.join(tmp, "cache")
        if args.calib and args.eval:
            calib_src, eval_shard = args.calib, args.eval
        else:
            print("rendering sim episodes for calibration/evaluation frames ...", file=sys.stderr, flush=True)
            # 15-60 frames per episode: enough train episodes for the calibration set, and the judged episodes.
            sim_calib, sim_eval = sim_frames(os.path.join(tmp, "sim"), max(4, args.calib_frames // 20), max(1, args.decision_episodes))
            calib_src, eval_shard = args.calib or sim_calib, args.eval or sim_eval
        for name in args.encoders:
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            rows, meta = bench_encoder(name, args, cache_dir, calib_src, eval_shard, tmp)
            all_rows += rows
            metas.append(meta)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    cmd = " ".join(["benchmarks/encoder_cpu_backends.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        f"Run {started}, batch 1, {time.perf_counter() - t_start:.0f} s in all; `{cmd}`",
        "",
        header,
        f"- load average at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}",
        f"- calibration: {args.calib or 'sim train-split episodes (seed 101)'}; evaluation: {args.eval or 'sim val-split episodes (seed 202)'}",
        *[f"- {m}" for m in metas],
        "",
        "| encoder | threads | backend | median ms | p90 ms | speed-up vs torch eager fp32 | cosine mean | cosine min | max abs diff | same planner decisions | build s | note |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
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
