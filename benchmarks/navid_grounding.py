"""How well a NaVid model's grounding head tells the named object from look-alikes (issue 16).

    .venv/bin/python benchmarks/navid_grounding.py outputs/m_g outputs/m_g2 [--episodes 30] [--out benchmarks/navid_grounding_results.md]

For each model with a grounding head (`NavidConfig.aux_grounding`, `vlm-agent train --grounding-weight`):
the explorer expert drives val episodes (split val, seed 7: not a selection or report set), and every
third frame the model scores each cell of its 8x8 grid ("is a goal object of the instruction here").
Cells are grouped with the renderer's segmentation: goal cells, cells of other objects (of those, the
ones with the goal's colour and the ones with its shape), and background. Reported per group: cells,
mean logit, and the AUC of goal cells against that group (0.5 = cannot tell them apart, 1 = always
ranks the goal higher). The look-alike AUCs are split by the look-alike's size in the frame (near:
>= 24 pixels at 64 px), to separate what the camera cannot resolve from what the model has not learnt.

Why: most failed episodes of the map navigator end with a `stop` beside an object of the named
colour and another shape. A lower closed-loop SR says that; this says whether the model's grounding
is the reason. Every model runs on the same frames in one invocation.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform

import numpy as np


def auc(pos, neg) -> float:
    """P(score of a random positive > score of a random negative); ties count half."""
    pos, neg = np.asarray(pos, float), np.sort(np.asarray(neg, float))
    if not len(pos) or not len(neg):
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float(np.mean((below + 0.5 * ties) / len(neg)))


def collect_frames(episodes: int, seed: int = 7, every: int = 3, max_steps: int = 120):
    """Explorer-driven val frames: list of (episode, rgb (64, 64, 3), goal cells (8, 8) bool, other-object
    cells {name: ((8, 8) bool, pixels)}, object metadata {name: (colour, shape)})."""
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.sim.explorer import ExplorerExpert

    env = NavEnv(SimConfig(width=64, height=64, render_depth=False))
    expert = ExplorerExpert(env)
    out = []
    try:
        for i in range(episodes):
            ep = make_episode("nav", "val", seed, i)
            obs = env.reset(ep)
            expert.reset(ep)
            meta = {o["name"]: (o["colour"], o["shape"]) for o in ep.objects}
            goals = set(env.nav_goals)
            t = 0
            while not env.done and t < max_steps:
                if t % every == 0:
                    seg = env.segmentation()
                    goal = np.zeros(seg.shape, bool)
                    for g in goals:
                        goal |= env.object_mask(g, seg)
                    goal_cells = goal.reshape(8, 8, 8, 8).any(axis=(1, 3))
                    others = {}
                    for name in meta:
                        if name in goals:
                            continue
                        m = env.object_mask(name, seg)
                        if m.any():
                            others[name] = (m.reshape(8, 8, 8, 8).any(axis=(1, 3)) & ~goal_cells, int(m.sum()))
                    out.append((ep, obs.rgb.copy(), goal_cells, others, meta, goals))
                obs = env.step(expert.act(obs))
                t += 1
    finally:
        env.close()
    return out


def probe(model_dir: str, frames) -> dict:
    """Cell logits of one model on `frames`, grouped (see module doc)."""
    import torch

    from vlm_agent.models.registry import load_model_and_processor

    model, proc = load_model_and_processor(model_dir)
    model.eval()
    if getattr(model, "aux_grounding_head", None) is None:
        raise ValueError(f"{model_dir}: no grounding head (train with --grounding-weight)")
    groups = {k: [] for k in ("goal", "other object", "same colour", "same shape", "background",
                              "same colour, near", "same colour, far", "same shape, near", "same shape, far")}
    cond_cache = {}
    for ep, rgb, goal_cells, others, meta, goals in frames:
        if ep.episode_id not in cond_cache:
            cond_cache[ep.episode_id] = model.instruction_condition(torch.tensor([proc.encode_instruction(ep.instruction)]))
        with torch.no_grad():
            logits = model.grounding_logits(model.grounded_grid(proc.frames_to_pixel_values(rgb[None]), cond_cache[ep.episode_id]))[0].numpy()
        groups["goal"] += list(logits[goal_cells])
        any_other = np.zeros((8, 8), bool)
        goal_meta = [meta[g] for g in goals]
        for name, (cells, pixels) in others.items():
            any_other |= cells
            colour, shape = meta[name]
            size = "near" if pixels >= 24 else "far"
            if any(colour == c for c, _ in goal_meta):
                groups["same colour"] += list(logits[cells])
                groups[f"same colour, {size}"] += list(logits[cells])
            if any(shape == s for _, s in goal_meta):
                groups["same shape"] += list(logits[cells])
                groups[f"same shape, {size}"] += list(logits[cells])
        groups["other object"] += list(logits[any_other])
        groups["background"] += list(logits[~goal_cells & ~any_other])
    return {k: {"cells": len(v), "mean_logit": float(np.mean(v)) if v else float("nan"), "auc_goal_vs": auc(groups["goal"], v)}
            for k, v in groups.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NaVid model directories with a grounding head")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="", help="append a markdown table to this file")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    frames = collect_frames(args.episodes)
    lines = [f"## {datetime.date.today()} on {platform.processor() or platform.machine()} ({os.cpu_count()} cores): "
             f"{len(frames)} frames of {args.episodes} explorer-driven val episodes (seed 7)", "",
             "| model | group | cells | mean logit | AUC goal vs group |", "| --- | --- | ---: | ---: | ---: |"]
    for model_dir in args.models:
        res = probe(model_dir, frames)
        for group, r in res.items():
            lines.append(f"| {model_dir} | {group} | {r['cells']} | {r['mean_logit']:+.2f} | {r['auc_goal_vs']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
