"""Training shards: the on-disk format of expert-labelled episodes, and reading them back.

One shard = one `.npz` with every frame of every episode (written by `training/collect.py`):
    frames (F, S, S, 3) uint8 RGB, actions (F,) int8 (`vlm_agent.actions.ACTIONS` index of the
    expert's label for that frame), episode_start (E,) int64, episode_length (E,) int64,
    instructions (E,) str, episode_ids (E,) str; collect_shards adds tasks (E,) str,
    success (E,) float32 and expert () str, and (unless --no-ego-map) maps (F, 3, N, N / 8) uint8: each
    frame's egocentric map memory as packed bits (`planners.ego_map.pack_maps`), with the map settings
    as ego_map_config () str (JSON), and (unless --no-target-masks) target_masks (F, S / 8, S / 8)
    uint8: the goal objects' pixels in each 8x8-pixel block of the frame (`collect.goal_cell_counts`),
    and subgoal_index (F,) int8: the env's leg of a sequence at that frame (shards since 2026-11-30).
With a learner (DAgger) the learner's own primitive was executed with probability 1 - beta, the
expert's otherwise, and the label is always the expert's action for the state actually visited.
"""
from __future__ import annotations

import glob
import os

import numpy as np


def expand_shards(paths: list[str]) -> list[str]:
    """Shard files from a list of .npz files and/or directories of them (sorted within a directory);
    unfinished `*.tmp.npz` files of an interrupted collection are left out."""
    out = []
    for p in paths:
        out.extend(sorted(glob.glob(os.path.join(p, "*.npz"))) if os.path.isdir(p) else [p])
    return [p for p in out if not p.endswith(".tmp.npz")]


def load_shards(paths: list[str]) -> dict:
    """Concatenate shards into one dataset dict (the keys every shard has; starts re-based). `maps`
    and `ego_map_config` (a dict) are included when every shard has maps made with the same settings,
    `target_masks` and `subgoal_index` when every shard has them.
    A shard listed k times is loaded once and its episodes get `episode_weight` k (E,) float32 (the
    key exists only when the counts differ): repeating a DAgger round's directory up-weights it
    without holding its frames k times in memory."""
    import json
    from collections import Counter

    counts = Counter(os.path.abspath(p) for p in paths)
    unique = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    parts = [np.load(p) for p in unique]
    out = {"frames": [], "actions": [], "episode_start": [], "episode_length": [], "instructions": [], "episode_ids": []}
    map_configs = {str(d["ego_map_config"]) if "maps" in d and "ego_map_config" in d else None for d in parts}
    with_maps = len(map_configs) == 1 and None not in map_configs
    if with_maps:
        out["maps"] = []
    for key in ("target_masks", "subgoal_index"):
        if all(key in d for d in parts):
            out[key] = []
    offset = 0
    weights = []
    for path, d in zip(unique, parts):
        weights.append(np.full(len(d["episode_start"]), counts[path], np.float32))
        if with_maps:
            out["maps"].append(d["maps"])
        for key in ("target_masks", "subgoal_index"):
            if key in out:
                out[key].append(d[key])
        out["frames"].append(d["frames"])
        out["actions"].append(d["actions"])
        out["episode_start"].append(d["episode_start"] + offset)
        out["episode_length"].append(d["episode_length"])
        out["instructions"].append(d["instructions"])
        out["episode_ids"].append(d["episode_ids"])
        offset += len(d["frames"])
    data = {k: np.concatenate(v) for k, v in out.items()}
    if with_maps:
        data["ego_map_config"] = json.loads(map_configs.pop())
    if len(set(counts.values())) > 1:
        data["episode_weight"] = np.concatenate(weights)
    return data


def pad_right(ids: list, labels: list, pad_id: int) -> dict:
    """Token id lists and their label lists (same lengths per sample; -100 = no loss) -> right-padded
    `input_ids`, `attention_mask` and `labels` (B, L) int64 tensors, L the longest sample."""
    import torch

    length = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    lab = torch.full((len(ids), length), -100, dtype=torch.long)
    attn = torch.zeros((len(ids), length), dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids, labels)):
        input_ids[i, : len(x)] = torch.tensor(x)
        lab[i, : len(y)] = torch.tensor(y)
        attn[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": attn, "labels": lab}
