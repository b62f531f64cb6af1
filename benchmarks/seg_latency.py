"""Sa2VA mask latency per frame: first frame (VLM + SAM 2) vs tracked frames (SAM 2 memory only) vs
scheduled keyframes, for the default model and SAM 2 hiera-tiny at 256 and 512 px, side by side in one run.

    .venv/bin/python benchmarks/seg_latency.py --threads 2                 # full run -> benchmarks/seg_results.md
    .venv/bin/python benchmarks/seg_latency.py --quick                      # a few frames, prints only (a smoke check)
    vlm-agent bench seg_latency -- --threads 1 --clips 3

Configurations (the same tiny VLM, 64 px, in each; random weights: latency does not depend on them,
and no released weights are on this machine):
* `default`: the project's default Sa2VA config (`new_model("sa2va", ...)` defaults): SAM 2 variant
  `nano` at 64 px;
* `hiera_t@256`, `hiera_t@512`: SAM 2.1 hiera-tiny's own config (38.9M parameters) at 256 and 512 px.

Input: 320x240 frames of seg-suite episode clips rendered by the embedded simulator (the robot
driving and swaying, `vlm_agent.sim.seg_clips`), the segmentation node's default camera.
Each clip runs `Sa2VATracker` (redetect_every = `--redetect-every`, no score-triggered re-detection)
from `reset(query)`: frame 0 is the first detection (VLM + SAM 2 + memory encoding), later frames
are tracked (SAM 2 encoder + memory attention + decoder + memory encoding) except scheduled
keyframes (VLM again, as a new conditioning frame). Configurations run interleaved, clip by clip, so
load from other processes hits them alike. Reported per configuration: median and p90 of the whole
`step()` per frame kind, the VLM's part of keyframes, and SAM 2's image encoder alone. Nothing is
asserted: the numbers are recorded, good or bad.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=0)
_known, _ = _pre.parse_known_args()
if _known.threads:
    os.environ.setdefault("OMP_NUM_THREADS", str(_known.threads))
os.environ.setdefault("MUJOCO_GL", "egl")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CONFIGS = {
    "default": {},
    "hiera_t@256": {"sam2_variant": "sam2.1_hiera_tiny", "sam2_image_size": 256},
    "hiera_t@512": {"sam2_variant": "sam2.1_hiera_tiny", "sam2_image_size": 512},
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seg_results.md")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = library default)")
    p.add_argument("--clips", type=int, default=6, help="episode clips per configuration")
    p.add_argument("--frames", type=int, default=21, help="frames per clip")
    p.add_argument("--redetect-every", type=int, default=10, help="VLM keyframe period of the tracker")
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--quick", action="store_true", help="1 clip of 4 frames, keyframe every 3; prints, writes no results file unless --markdown")
    p.add_argument("--markdown", default=None, help=f"results file (default {os.path.relpath(RESULTS)} for full runs)")
    args = p.parse_args(argv)
    if args.quick:
        args.clips, args.frames, args.redetect_every = 1, 4, 3
    if args.markdown is None and not args.quick:
        args.markdown = RESULTS
    return args


def machine_summary(device: str, threads: int) -> str:
    from vlm_agent.telemetry import cpu_model_name

    cpu = cpu_model_name()
    import sam2  # noqa: F401
    import transformers
    from importlib.metadata import version

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    parts = [
        f"CPU: {cpu}, {os.cpu_count()} cores visible; load average at start {load[0]:.2f}",
        f"threads: torch {torch.get_num_threads()} intra-op" + (f" (--threads {threads})" if threads else " (library default)"),
        f"torch {torch.__version__}, transformers {transformers.__version__}, sam2 {version('sam2')}",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(torch.device(device))}")
    return "\n".join(f"- {p}" for p in parts)


def build(name: str, device: str, redetect_every: int):
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import new_model
    from vlm_agent.models.sa2va.tracking_sa2va import Sa2VATracker, TrackerConfig

    torch.manual_seed(0)
    model, processor = new_model("sa2va", train_tokenizer(), **CONFIGS[name])
    model = model.to(device).eval()
    params = sum(p.numel() for p in model.sam2.parameters())
    tracker = Sa2VATracker(model, processor, TrackerConfig(redetect_every=redetect_every, min_score=0.0))
    return tracker, params


def clips(n: int, frames: int, width: int, height: int):
    """[(query, [rgb frames])] from seg-suite val episodes rendered along their clips."""
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.sim.seg_clips import seg_clip_poses

    env = NavEnv(SimConfig(width=width, height=height, render_depth=False))
    out = []
    try:
        for ep in make_episodes("seg", "val", n, seed=0):
            env.reset(ep)
            rgbs = []
            for k, pose in enumerate(seg_clip_poses(ep, frames)):
                if k:
                    env.set_pose(*pose)
                rgbs.append(env.render()[0].copy())
            out.append((ep.instruction, rgbs))
    finally:
        env.close()
    return out


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    data = clips(args.clips, args.frames, args.width, args.height)
    trackers = {}
    for name in args.configs:
        t0 = time.perf_counter()
        trackers[name] = build(name, args.device, args.redetect_every)
        print(f"built {name}: SAM 2 {trackers[name][1] / 1e6:.2f}M parameters, {time.perf_counter() - t0:.1f} s", flush=True)
    times = {name: {"first": [], "tracked": [], "keyframe": [], "vlm": [], "encoder": []} for name in args.configs}
    with torch.no_grad():
        for name in args.configs:  # warm-up: one detection and one tracked frame each
            tracker = trackers[name][0]
            tracker.reset(data[0][0])
            tracker.step(data[0][1][0])
            tracker.step(data[0][1][-1])
        for ci, (query, frames) in enumerate(data):
            for name in args.configs:
                tracker = trackers[name][0]
                tracker.reset(query)
                for k, rgb in enumerate(frames):
                    _sync(args.device)
                    r = tracker.step(rgb)
                    _sync(args.device)
                    kind = "first" if k == 0 else ("tracked" if r.source == "tracked" else "keyframe")
                    times[name][kind].append(r.latency_s)
                    if r.vlm_s:
                        times[name]["vlm"].append(r.vlm_s)
                # SAM 2's image encoder alone, on this clip's first frame
                model, proc = tracker.model, tracker.processor
                x = proc.sam_pixel_values(frames[0]).to(args.device)
                # a query_film encoder reads the [SEG] state; the tracker's last one stands in
                condition = tracker._condition if model.config.query_film else None
                _sync(args.device)
                t0 = time.perf_counter()
                model.sam_features(x, condition=condition)
                _sync(args.device)
                times[name]["encoder"].append(time.perf_counter() - t0)
            print(f"clip {ci + 1}/{len(data)} done", flush=True)
    return {"times": times, "params": {n: trackers[n][1] for n in args.configs},
            "sizes": {n: trackers[n][0].model.config.sam2_image_size for n in args.configs}}


def _stat(values):
    if not values:
        return "-"
    ms = sorted(1e3 * v for v in values)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"{statistics.median(ms):.1f} / {p90:.1f} (n={len(ms)})"


def table(result, args) -> str:
    lines = [
        "| configuration | SAM 2 | SAM 2 params | first frame (VLM + SAM 2) ms | tracked frame ms | keyframe (VLM again) ms | VLM part ms | SAM 2 encoder alone ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in args.configs:
        t = result["times"][name]
        variant = "nano" if name == "default" else "hiera-tiny"
        lines.append(f"| {name} | {variant} @ {result['sizes'][name]} px | {result['params'][name] / 1e6:.2f}M | {_stat(t['first'])} | {_stat(t['tracked'])} | "
                     f"{_stat(t['keyframe'])} | {_stat(t['vlm'])} | {_stat(t['encoder'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    tab = table(result, args)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = "\n".join([
        "# Sa2VA segmentation latency per frame" + (" (quick smoke run, not a measurement)" if args.quick else ""),
        "",
        f"Recorded {when} by `python benchmarks/seg_latency.py {' '.join(sys.argv[1:])}`.",
        "",
        "## Machine",
        machine_summary(args.device, args.threads),
        "",
        "## Settings",
        f"- device {args.device}; {args.clips} seg-suite val clips x {args.frames} frames at {args.width}x{args.height}; "
        f"keyframe (VLM) every {args.redetect_every} frames; configurations interleaved clip by clip",
        "- the same tiny VLM (64 px, 2+2 layers, width 64) in each configuration; random weights (latency does not depend on them)",
        "- cells: median / p90 in ms (n = frames); `first` = reset + first frame, `tracked` = SAM 2 memory only, "
        "`keyframe` = a scheduled VLM re-detection; `VLM part` = the VLM's share of first frames and keyframes",
        "",
        "## Results",
        tab,
        "",
    ])
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
