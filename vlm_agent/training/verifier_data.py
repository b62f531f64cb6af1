"""Attribute-verifier training data: camera views of manipulation scenes with every object's mask.

`collect_verifier_shards(out_dir, ...)` writes `shard_00000.npz`, ... of `episodes_per_shard` manip
episodes each. Episode `i` of shard `k` is `make_episode("manip", split, seed, k * episodes_per_shard + i)`
with look-alikes of one of its goal objects beside it (`seg_data.with_look_alikes`: one of its shape
in a neighbouring colour, one of its colour in another shape; what `SegmenterPerception`'s wrong
first sightings were: 30 of 35 on PaLM-E test100 with sa2va_nano v5 were the named colour in another
shape). Each episode is filmed from `views` base poses: a free cell 0.6-4.5 m from a random object,
turned towards it (+-25 degrees), through the same camera `SegmenterPerception` uses
(`sim_skills.SimCameraView`, 128x128 by default, the manip env's field of view). Everything is a pure
function of (split, seed, index); a shard that exists is skipped, so a run resumes.

Per view the shard keeps the frame and an instance map (`instances`: -1 nothing, else which of that
view's instances the pixel shows), so the trainer crops with fresh jitter every epoch
(`models/attribute_verifier/processing_attribute_verifier.py`). Instances are the scene objects with at
least `min_pixels` visible pixels (colour and shape labels) and up to two furniture pieces or walls per
view (label `other`: what a segmenter that marks a table edge has marked).

Shard format (`np.savez_compressed`):
    frames (V, H, W, 3) uint8, instances (V, H, W) int8 (-1 none, else k: the view's k-th instance,
    whose row is the k-th of the rows with that view), inst_view (N,) int32 (the view of each
    instance, shard-local; rows of one view are contiguous and in view order), inst_colour (N,) int8 (index into
    `colours`, -1 for furniture), inst_shape (N,) int8 (index into `shapes`; the last, `other`, for
    furniture), inst_pixels (N,) int32, inst_distance (N,) float32 (m, camera base to the object),
    inst_held_out (N,) bool (a held-out colour-shape pair; never in the train split),
    colours (C,) str, shapes (S,) str, image_size () int.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

VERIFIER_SHARD_KEYS = ("frames", "instances", "inst_view", "inst_colour", "inst_shape", "inst_pixels", "inst_distance", "inst_held_out")
OTHER_SHAPE = "other"
VIEW_DISTANCE_M = (0.6, 4.5)
VIEW_JITTER_DEG = 25.0


def verifier_vocabulary() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(colours, shapes): the simulator's colour and shape words; shapes end with `other` (not an object)."""
    from vlm_agent.sim.world import COLOURS, SHAPES

    return tuple(COLOURS), tuple(SHAPES) + (OTHER_SHAPE,)


def render_verifier_views(env, view, episode, views: int, rng: np.random.Generator, min_pixels: int = 6, furniture_per_view: int = 2):
    """(frames (V, H, W, 3) uint8, instance maps (V, H, W) int8, instance rows: dicts with view,
    colour, shape, pixels, distance, held_out) of `views` camera poses in manip `episode` (module
    docstring). `env` a manip `NavEnv`, `view` a `SimCameraView` on it."""
    import mujoco

    from vlm_agent.sim.episodes import HELD_OUT_PAIRS
    from vlm_agent.sim.world import ROBOT_RADIUS
    from vlm_agent.training.seg_data import with_look_alikes

    colours, shapes = verifier_vocabulary()
    env.reset(episode)
    goals = [n for n in episode.goal_objects[:2] if any(o.name == n for o in env.world.objects)]
    env.reset(with_look_alikes(episode, goals[int(rng.integers(len(goals)))], rng, avoid=[episode.start_pose[:2]]))
    objects = list(env.world.objects)
    geom_of = {o.name: mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, o.name) for o in objects}
    # furniture (tables, cabinets, sofas: every geom of their bodies) and walls
    bodies = {mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, f.name) for f in env.world.furniture}
    furniture_geoms = [g for g in range(env.model.ngeom) if int(env.model.geom_bodyid[g]) in bodies]
    furniture_geoms += [g for g in (mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, w.name) for w in env.world.walls) if g >= 0]
    grid = env.grid
    standable = grid.clearance > ROBOT_RADIUS + 0.05
    frames, maps, rows = [], [], []
    for _ in range(views):
        subject = objects[int(rng.integers(len(objects)))]
        d = np.hypot(grid.gx - subject.pos[0], grid.gy - subject.pos[1])
        cells = np.flatnonzero(standable & (d >= VIEW_DISTANCE_M[0]) & (d <= VIEW_DISTANCE_M[1]))
        if not cells.size:
            continue
        k = int(cells[rng.integers(cells.size)])
        x, y = float(grid.gx.flat[k]), float(grid.gy.flat[k])
        yaw = math.atan2(subject.pos[1] - y, subject.pos[0] - x) + math.radians(rng.uniform(-VIEW_JITTER_DEG, VIEW_JITTER_DEG))
        env.set_pose(x, y, yaw)
        rgb, _ = view.rgbd()
        seg = view.segmentation()
        inst = np.full(seg.shape, -1, np.int8)
        v, first = len(frames), len(rows)
        for o in objects:
            m = seg == geom_of[o.name]
            px = int(m.sum())
            if px < min_pixels:
                continue
            inst[m] = len(rows) - first
            rows.append({"view": v, "colour": colours.index(o.colour), "shape": shapes.index(o.shape), "pixels": px,
                         "distance": float(math.hypot(o.pos[0] - x, o.pos[1] - y)),
                         "held_out": (o.colour, o.shape) in HELD_OUT_PAIRS})
        seen = [g for g in furniture_geoms if (seg == g).sum() >= 4 * min_pixels]
        for g in rng.permutation(seen)[:furniture_per_view] if seen else []:
            # a blob of the piece, not all of it: what a segmenter marks when it marks furniture
            ys, xs = np.nonzero((seg == g) & (inst < 0))
            if ys.size < 4 * min_pixels:
                continue
            j = int(rng.integers(ys.size))
            r = float(rng.uniform(3.0, 12.0))
            blob = (seg == g) & (inst < 0) & ((np.arange(seg.shape[0])[:, None] - ys[j]) ** 2 + (np.arange(seg.shape[1])[None] - xs[j]) ** 2 <= r * r)
            if blob.sum() < min_pixels:
                continue
            inst[blob] = len(rows) - first
            rows.append({"view": v, "colour": -1, "shape": shapes.index(OTHER_SHAPE), "pixels": int(blob.sum()), "distance": float("nan"),
                         "held_out": False})
        frames.append(np.asarray(rgb, np.uint8))
        maps.append(inst)
    if not frames:
        return None
    return np.stack(frames), np.stack(maps), rows


def collect_verifier_shards(out_dir: str, split: str = "train", episodes: int = 2000, episodes_per_shard: int = 250, seed: int = 0,
                            views: int = 6, image_size: int = 128, progress: bool = True, log=None) -> list[str]:
    """Write the shards (module docstring); returns every shard's path, existing ones included."""
    from tqdm import tqdm

    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.skills.sim_skills import SimCameraView

    if episodes < 1 or episodes_per_shard < 1 or views < 1:
        raise ValueError("episodes, episodes_per_shard and views must be positive")
    os.makedirs(out_dir, exist_ok=True)
    colours, shapes = verifier_vocabulary()
    env = NavEnv(SimConfig(width=64, height=64, render_depth=False))  # the manip eval's env; the view renders its own size
    view = SimCameraView(env, image_size, image_size)
    paths = []
    n_shards = math.ceil(episodes / episodes_per_shard)
    try:
        for k in range(n_shards):
            path = os.path.join(out_dir, f"shard_{k:05d}.npz")
            paths.append(path)
            if os.path.exists(path):
                continue
            t0 = time.time()
            frames, maps, rows = [], [], []
            lo, hi = k * episodes_per_shard, min(episodes, (k + 1) * episodes_per_shard)
            for i in tqdm(range(lo, hi), desc=f"verifier shard {k + 1}/{n_shards}", disable=not progress, leave=False):
                rng = np.random.default_rng([7001, ("train", "val", "test").index(split), seed, i])
                out = render_verifier_views(env, view, make_episode("manip", split, seed, i), views, rng)
                if out is None:
                    continue
                f, m, r = out
                base_view = sum(len(x) for x in frames)
                for row in r:
                    row["view"] += base_view
                frames.append(f)
                maps.append(m)
                rows += r
            if not frames:
                raise RuntimeError(f"no episode of shard {k} gave a view (episodes {lo}-{hi - 1})")
            arrays = {
                "frames": np.concatenate(frames), "instances": np.concatenate(maps),
                "inst_view": np.array([r["view"] for r in rows], np.int32), "inst_colour": np.array([r["colour"] for r in rows], np.int8),
                "inst_shape": np.array([r["shape"] for r in rows], np.int8), "inst_pixels": np.array([r["pixels"] for r in rows], np.int32),
                "inst_distance": np.array([r["distance"] for r in rows], np.float32),
                "inst_held_out": np.array([r["held_out"] for r in rows], bool),
                "colours": np.array(colours), "shapes": np.array(shapes), "image_size": np.array(image_size),
            }
            tmp = path + ".tmp.npz"
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
            if log is not None:
                log(json.dumps({"shard": k, "episodes": hi - lo, "views": int(len(arrays["frames"])), "instances": len(rows),
                                "seconds": round(time.time() - t0, 1)}))
    finally:
        view.close()
        env.close()
    return paths


def load_verifier_shards(paths) -> dict:
    """The shards (`paths`: files or folders of them) concatenated (view indices re-based; `colours`/`shapes` checked equal), plus
    `inst_local` (N,) int8: each instance's value in its view's `instances` map."""
    files = []
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.startswith("shard_") and f.endswith(".npz") and ".tmp" not in f)
        else:
            files.append(os.fspath(p))
    parts = [dict(np.load(p, allow_pickle=False)) for p in files]
    if not parts:
        raise ValueError("no verifier shards given")
    vocab = (tuple(parts[0]["colours"]), tuple(parts[0]["shapes"]))
    out = {k: [] for k in VERIFIER_SHARD_KEYS}
    views = 0
    for p in parts:
        if (tuple(p["colours"]), tuple(p["shapes"])) != vocab:
            raise ValueError("verifier shards with different vocabularies")
        out["frames"].append(p["frames"])
        out["instances"].append(p["instances"])
        out["inst_view"].append(p["inst_view"] + views)
        for key in ("inst_colour", "inst_shape", "inst_pixels", "inst_distance", "inst_held_out"):
            out[key].append(p[key])
        views += len(p["frames"])
    data = {k: np.concatenate(v) for k, v in out.items()}
    first = np.searchsorted(data["inst_view"], data["inst_view"], side="left")
    data["inst_local"] = (np.arange(len(first)) - first).astype(np.int8)
    data["colours"], data["shapes"] = vocab
    return data


__all__ = ["collect_verifier_shards", "load_verifier_shards", "render_verifier_views", "verifier_vocabulary", "OTHER_SHAPE"]
