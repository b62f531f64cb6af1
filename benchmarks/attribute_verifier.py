"""The attribute verifier on held-out scenes, and what a check costs beside the segmenter (issue 14).

    .venv/bin/python benchmarks/attribute_verifier.py [--model checkpoints/attribute_verifier] [--episodes 500]
        [--split test] [--out benchmarks/attribute_verifier_results.md]

1. Accuracy: verifier shards of `--split` (`training.verifier_data`, collected here into a temporary
   folder, or `--data DIR`) scored by `training.verifier_train.evaluate_verifier`: colour and shape
   accuracy (by mask size, seen vs held-out colour-shape pairs), the verification AUC (the true
   query's match against look-alike queries' on the same crop), and accept rates at several
   `min_match` values.
2. Latency, side by side in one process with 1 torch thread: `AttributeVerifier.check` on one mask
   against `Sa2VASegmenter.step` (a detection: reset, then the first frame) on the same 128 px frames.
   Reported as medians and their ratio.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="checkpoints/attribute_verifier")
    ap.add_argument("--seg-model", default="checkpoints/sa2va_nano")
    ap.add_argument("--data", default="", help="verifier shards to score (default: collect --episodes of --split here)")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--latency-frames", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/attribute_verifier_results.md")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from vlm_agent.models.attribute_verifier import AttributeVerifierModel
    from vlm_agent.skills.segmentation import Sa2VASegmenter
    from vlm_agent.skills.verification import AttributeVerifier
    from vlm_agent.training.verifier_data import collect_verifier_shards, load_verifier_shards
    from vlm_agent.training.verifier_train import evaluate_verifier

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data or os.path.join(tmp, "shards")
        if not args.data:
            collect_verifier_shards(data_dir, split=args.split, episodes=args.episodes, episodes_per_shard=250, seed=0)
        data = load_verifier_shards(data_dir)
    model = AttributeVerifierModel.from_pretrained(args.model)
    acc = evaluate_verifier(model, data)

    verifier = AttributeVerifier(args.model)
    segmenter = Sa2VASegmenter(args.seg_model)
    colours = data["colours"]
    rng = np.random.default_rng(0)
    rows = rng.choice(np.flatnonzero(data["inst_colour"] >= 0), size=min(args.latency_frames, int((data["inst_colour"] >= 0).sum())), replace=False)
    t_check, t_seg = [], []
    for r in rows:
        v = data["inst_view"][r]
        frame = data["frames"][v]
        mask = data["instances"][v] == data["inst_local"][r]
        query = f"the {colours[data['inst_colour'][r]]} {data['shapes'][data['inst_shape'][r]]}"
        t0 = time.perf_counter()
        segmenter.reset(query)
        segmenter.step(frame)
        t1 = time.perf_counter()
        verifier.check(frame, mask, query)
        t2 = time.perf_counter()
        t_seg.append(t1 - t0)
        t_check.append(t2 - t1)
    seg_ms, check_ms = 1e3 * float(np.median(t_seg)), 1e3 * float(np.median(t_check))

    lines = [
        "# Attribute verifier: accuracy on held-out scenes and cost per check",
        "",
        f"Run {datetime.date.today().isoformat()} on {platform.machine()} / {platform.processor() or 'cpu'} ({os.cpu_count()} cores), "
        f"torch {torch.__version__}, 1 thread. Model `{args.model}`; data: {args.split} split, {len(data['frames'])} views, "
        f"{acc['objects']} object masks, {acc['instances'] - acc['objects']} furniture or wall blobs.",
        "",
        "Command: `.venv/bin/python benchmarks/attribute_verifier.py " + " ".join(argv or []) + "`",
        "",
        "## Accuracy (ground-truth masks, unperturbed crops)",
        "",
        "| metric | value |",
        "| --- | ---: |",
    ]
    for key, value in acc.items():
        if key not in ("instances", "objects"):
            lines.append(f"| {key} | {value:.4f} |")
    lines += [
        "",
        "Mask sizes: small < 20 px, medium 20-60 px, large >= 60 px at 128x128. `accept_true@t`: share of object masks whose "
        "own query matches at >= t; `accept_lookalike@t`: share of look-alike queries (the object's colour with another shape, "
        "its shape with another colour) that match at >= t.",
        "",
        "## Latency (median over the same frames, 1 thread)",
        "",
        "| call | median ms |",
        "| --- | ---: |",
        f"| `Sa2VASegmenter` reset + first frame (`{args.seg_model}`) | {seg_ms:.2f} |",
        f"| `AttributeVerifier.check` (one mask) | {check_ms:.2f} |",
        f"| ratio check / segmenter | {check_ms / seg_ms:.3f} |",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
