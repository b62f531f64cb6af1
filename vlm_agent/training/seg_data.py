"""Referring-segmentation training data: seg-episode clips with ground-truth target masks, in shards.

`collect_seg_shards(out_dir, ...)` writes `shard_00000.npz`, `shard_00001.npz`, ... of
`episodes_per_shard` seg episodes each. Episode `i` of shard `k` is
`make_episode("seg", split, seed, k * episodes_per_shard + i)`; each is rendered as the clip the
evaluator scores (`sim.seg_clips.seg_clip_poses`: frame 0 = the start pose, then the robot drives and
sways) with the target's ground-truth mask per frame, taken from the simulator's segmentation render
exactly as `vlm-agent eval --suite seg` takes it (`NavEnv.object_mask(episode.goal_object)`, the
`oracle` policy's and the oracle segmenter's source). A shard that already exists is skipped, so an
interrupted run resumes where it stopped; everything is a pure function of (split, seed, index).

Absent targets (`absent_fraction`): an episode drawn as one keeps its scene and query, but the whole
clip is filmed with the base turned away from the target (the first of 90/180/270 degrees, in an
order drawn per episode, at which the target's mask is empty in every frame), so its masks are all
empty and its task is `seg_absent`. Why: a segmenter that has only ever seen its target in view
marks *something* in every view; a robot that searches for an object needs "not here" (SAM 2's
object score, trained to 0 on these frames) to turn and look elsewhere. An episode with no such
heading stays a normal one.

Manipulation views (`source="manip"`): the segmenter is also the manipulation skills' perception
(`skills/segmenter_perception.py`), which asks for an object by its short name ("the red cube") from
wherever the robot stands, 1.4-4.7 m from it, not from the seg suite's framed 1.6-2.4 m views. With
this source, episode i is manip episode i of the split: the clip starts at its start pose turned
towards the object to move (within +-12 degrees, drawn per episode), then drives up to 0.3 m
towards it with the seg clips' sway; the query is the object's name, with or without "the". Its
task is `manip_view` (or `seg_absent` when `absent_fraction` turned it away). Masks are the ground
truth, so an object hidden behind furniture has empty masks. `manip_views="mixed"` also films the
object a stack goes on, and views from where the robot stands once it has driven close (0.9-1.8 m).
`manip_views="search"` films exactly what `SegmenterPerception`'s search sees: the base at the
episode's start pose turning in place through `clip_frames` equal steps of a full circle from its
start heading, the query the object to move or its destination object (a plate or the cube a stack
goes on; even odds). The target is in one or two of the views at most, so these clips carry their
own "not here" frames (`absent_fraction` does not apply; the task is `manip_search`). Why: with
`sa2va_nano` version 2, 104 of 135 first sightings in a search were the wrong object.

Shard format (`np.savez_compressed`; flat-shaded sim frames compress ~10x):
    frames (N, H, W, 3) uint8 RGB, masks (N, H, W) bool (the target's pixels),
    frame_episode (N,) int64 (episode row within the shard; `load_seg_shards` re-bases it),
    frame_index (N,) int64 (position in the episode's clip, 0 = the start pose),
    episode_start (E,) int64, episode_length (E,) int64 (an episode's frames are contiguous),
    queries (E,) str (the instruction, what the segmenter is asked), episode_ids (E,) str,
    tasks (E,) str (seg_simple / seg_relation, or seg_absent: the target out of view), held_out (E,) bool (a held-out colour-shape target;
    never in the train split), held_out_phrasing (E,) bool, image_size () int, clip_frames () int.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

SEG_SHARD_KEYS = ("frames", "masks", "frame_episode", "frame_index", "episode_start", "episode_length", "queries", "episode_ids",
                  "tasks", "held_out", "held_out_phrasing")


def seg_sim_config(image_size: int):
    """The simulator settings of `vlm-agent eval --suite seg` at `image_size` square (its defaults:
    60 degree vertical field of view, no shadows, no depth)."""
    from vlm_agent.sim.env import SimConfig

    return SimConfig(width=image_size, height=image_size, vertical_fov_deg=60.0, shadows=False, render_depth=False)


ABSENT_TASK = "seg_absent"
MANIP_VIEW_TASK = "manip_view"
MANIP_SEARCH_TASK = "manip_search"
MANIP_DECOY_TASK = "manip_decoy"
ABSENT_YAW_OFFSETS_DEG = (90.0, 180.0, 270.0)
SEG_SOURCES = ("seg", "manip")
MANIP_VIEW_JITTER_DEG = 12.0
MANIP_VIEWS = ("start", "mixed", "search")
MANIP_VIEW_NEAR_M = (0.9, 1.8)
# Colours that render alike under the simulator's lights: what sa2va_nano version 4 confused most in
# manipulation searches (val: red taken for orange 10 times, orange for red or yellow 12 times).
HUE_NEIGHBOURS = {"red": ("orange", "purple"), "orange": ("red", "yellow"), "yellow": ("orange", "white", "green"),
                  "green": ("cyan", "yellow"), "cyan": ("green", "blue"), "blue": ("cyan", "purple"),
                  "purple": ("blue", "red"), "white": ("yellow", "cyan")}
LOOK_ALIKE_RANGE_M = (0.7, 1.2)  # from the filmed object: in the same views as it


def with_look_alikes(episode, target_name: str, rng: np.random.Generator, avoid=(), drop_target: bool = False):
    """A copy of manip `episode` with up to two look-alikes of its object `target_name` on the floor
    LOOK_ALIKE_RANGE_M from it: one of its shape in a neighbouring colour (`HUE_NEIGHBOURS`) and one
    of its colour in another shape. A label already in the scene is not added again, a held-out
    colour-shape pair never in the train split, and none within 0.6 m of a point in `avoid` (x, y)
    (where the camera will stand). Why: the planners' searches take the first object the segmenter
    marks, and its wrong first sightings were such look-alikes. `drop_target`: the object itself is
    then taken out of the scene (a decoy view: only its look-alikes are there to be asked about)."""
    import dataclasses

    from vlm_agent.sim.episodes import HELD_OUT_PAIRS, _free_spot, _new_object
    from vlm_agent.sim.world import SHAPES

    world = episode.world()
    objects = list(world.objects)
    target = next(o for o in objects if o.name == target_name)
    wanted = [(str(rng.choice(HUE_NEIGHBOURS[target.colour])), target.shape),
              (target.colour, str(rng.choice([s for s in SHAPES if s != target.shape])))]
    added = 0
    for colour, shape in wanted:
        if any((o.colour, o.shape) == (colour, shape) for o in objects) or (episode.split == "train" and (colour, shape) in HELD_OUT_PAIRS):
            continue
        for _ in range(10):
            spot = _free_spot(rng, world, objects, clear=0.45, near=target.pos[:2], near_range=LOOK_ALIKE_RANGE_M, tries=50)
            if spot is not None and all(math.dist(spot[:2], a[:2]) >= 0.6 for a in avoid):
                objects.append(_new_object(f"obj_{200 + added}", colour, shape, *spot))
                added += 1
                break
    if drop_target:
        objects = [o for o in objects if o.name != target_name]
    return dataclasses.replace(episode, objects=[dataclasses.asdict(o) for o in objects])


def manip_view_clip_poses(start_xy, target_xy, clip_frames: int, rng: np.random.Generator, yaw_offset: float = 0.0):
    """Base poses (x, y, yaw) of a manipulation-view clip (see the module docstring): from `start_xy`
    turned towards `target_xy` (+- MANIP_VIEW_JITTER_DEG, from `rng`) plus `yaw_offset` (rad),
    driving up to SEG_CLIP_FORWARD_M along that heading with the seg clips' sway."""
    from vlm_agent.sim.seg_clips import SEG_CLIP_FORWARD_M, SEG_CLIP_SWAY_DEG

    x0, y0 = (float(v) for v in start_xy[:2])
    heading = math.atan2(target_xy[1] - y0, target_xy[0] - x0) + math.radians(rng.uniform(-MANIP_VIEW_JITTER_DEG, MANIP_VIEW_JITTER_DEG))
    heading += yaw_offset
    poses = []
    for k in range(clip_frames):
        u = k / (clip_frames - 1) if clip_frames > 1 else 0.0
        d = u * SEG_CLIP_FORWARD_M
        poses.append((x0 + d * math.cos(heading), y0 + d * math.sin(heading), heading + math.radians(SEG_CLIP_SWAY_DEG) * math.sin(2 * math.pi * u)))
    return poses


def _manip_view_subject(env, episode, rng: np.random.Generator, views: str):
    """(target object, start (x, y)) of a manipulation-view clip. "start": the object to move from the
    episode's start. "mixed": the object to move or, for a stack, the object it goes on (even odds),
    seen from the start or from a free cell MANIP_VIEW_NEAR_M away from it (even odds; where the
    robot stands once `navigate_to` has brought it close)."""
    names = [episode.goal_objects[0]]
    if views == "mixed":
        names += [n for n in episode.goal_objects[1:] if any(o.name == n for o in env.world.objects)]
    target = env.world.object(names[int(rng.integers(len(names)))] if len(names) > 1 else names[0])
    start = tuple(float(v) for v in episode.start_pose[:2])
    if views == "mixed" and rng.random() < 0.5:
        from vlm_agent.sim.world import ROBOT_RADIUS

        grid = env.grid
        d = np.hypot(grid.gx - target.pos[0], grid.gy - target.pos[1])
        near = (d >= MANIP_VIEW_NEAR_M[0]) & (d <= MANIP_VIEW_NEAR_M[1]) & (grid.clearance > ROBOT_RADIUS + 0.05)
        cells = np.flatnonzero(near)
        if cells.size:
            k = int(cells[rng.integers(cells.size)])
            start = (float(grid.gx.flat[k]), float(grid.gy.flat[k]))
    return target, start


def render_manip_view_clip(env, episode, clip_frames: int, rng: np.random.Generator, absent: bool = False, views: str = "start",
                           look_alikes: bool = False, decoys: bool = False):
    """(frames (T, H, W, 3), masks (T, H, W), query) of a manipulation view of manip `episode` (see
    the module docstring and `_manip_view_subject` for `views`), or, with `absent`, turned away from
    its object (the first hiding offset of ABSENT_YAW_OFFSETS_DEG in an order drawn from `rng`; None
    when none hides it). `look_alikes`: the filmed object gets look-alikes beside it (`with_look_alikes`).
    `decoys`: the same views with the look-alikes, but the object itself taken out of the scene: the
    query names what is not there, and every mask is empty."""
    if views not in MANIP_VIEWS:
        raise ValueError(f"views must be one of {MANIP_VIEWS}, got {views!r}")
    if absent and decoys:
        raise ValueError("absent and decoys are two kinds of clip; ask for one")
    env.reset(episode)
    if views == "search":
        return None if absent else render_search_clip(env, episode, clip_frames, rng, look_alikes=look_alikes, decoys=decoys)
    target, start = _manip_view_subject(env, episode, rng, views)
    if look_alikes or decoys:
        env.reset(with_look_alikes(episode, target.name, rng, avoid=[start, episode.start_pose[:2]], drop_target=decoys))
        target = target if decoys else env.world.object(target.name)
    query = ("the " if rng.random() < 0.5 else "") + target.label
    offsets = [0.0] if not absent else [math.radians(float(d)) for d in rng.permutation(ABSENT_YAW_OFFSETS_DEG)]
    draw = rng.bit_generator.state  # every offset sees the same jitter
    for offset in offsets:
        rng.bit_generator.state = draw
        frames, masks = [], []
        for pose in manip_view_clip_poses(start, target.pos[:2], clip_frames, rng, offset):
            env.set_pose(*pose)
            frames.append(np.asarray(env.observation().rgb, np.uint8))
            masks.append(_target_mask(env, target.name, frames[-1]))
        frames, masks = np.stack(frames), np.stack(masks)
        if not absent or not masks.any():
            return frames, masks, query
    return None


def render_search_clip(env, episode, clip_frames: int, rng: np.random.Generator, look_alikes: bool = False, decoys: bool = False):
    """(frames, masks, query) of the views a full-circle search from manip `episode`'s start pose sees
    (`env` already reset to it; see the module docstring, `manip_views="search"`). `look_alikes`: the
    queried object gets look-alikes beside it (`with_look_alikes`); `decoys`: and is itself taken out
    of the scene (every mask empty)."""
    objects = {o.name for o in env.world.objects}
    names = [n for n in episode.goal_objects[:2] if n in objects]
    target = env.world.object(names[int(rng.integers(len(names)))])
    query = ("the " if rng.random() < 0.5 else "") + target.label
    if look_alikes or decoys:
        env.reset(with_look_alikes(episode, target.name, rng, avoid=[episode.start_pose[:2]], drop_target=decoys))
    x, y, yaw = (float(v) for v in env.pose)
    frames, masks = [], []
    for k in range(clip_frames):
        env.set_pose(x, y, yaw + 2 * math.pi * k / clip_frames)
        frames.append(np.asarray(env.observation().rgb, np.uint8))
        masks.append(_target_mask(env, target.name, frames[-1]))
    return np.stack(frames), np.stack(masks), query


def _target_mask(env, name: str, frame: np.ndarray) -> np.ndarray:
    """(H, W) bool: object `name`'s pixels in the frame just rendered; all False when `name` is not in
    the scene (a decoy view)."""
    if any(o.name == name for o in env.world.objects):
        return np.asarray(env.object_mask(name), bool)
    return np.zeros(frame.shape[:2], bool)


def render_seg_clip(env, episode, clip_frames: int, yaw_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W, 3) uint8, masks (T, H, W) bool) of `episode`'s clip in `env` (a `NavEnv`),
    frame by frame as the evaluator renders and scores it (`evaluation.rollouts._run_seg`).
    `yaw_offset` (rad) turns the base at every pose of the clip (0: the evaluator's clip)."""
    from vlm_agent.sim.seg_clips import seg_clip_poses

    first = env.reset(episode)
    frames, masks = [], []
    for k, (x, y, yaw) in enumerate(seg_clip_poses(episode, clip_frames)):
        if k or yaw_offset:
            env.set_pose(x, y, yaw + yaw_offset)
        obs = env.observation() if (k or yaw_offset) else first
        frames.append(np.asarray(obs.rgb, np.uint8))
        masks.append(np.asarray(env.object_mask(episode.goal_object), bool))
    return np.stack(frames), np.stack(masks)


def render_absent_clip(env, episode, clip_frames: int, rng: np.random.Generator):
    """(frames, masks, yaw offset in degrees) of `episode`'s clip filmed with the base turned so that
    its target is out of view in every frame (offsets from `ABSENT_YAW_OFFSETS_DEG`, tried in an
    order drawn from `rng`), or None when every offset still shows some of it."""
    for deg in rng.permutation(ABSENT_YAW_OFFSETS_DEG):
        frames, masks = render_seg_clip(env, episode, clip_frames, math.radians(float(deg)))
        if not masks.any():
            return frames, masks, float(deg)
    return None


def collect_seg_shards(out_dir: str, split: str = "train", episodes: int = 3000, episodes_per_shard: int = 250, seed: int = 0,
                       image_size: int = 128, clip_frames: int = 8, progress: bool = True, log=None,
                       absent_fraction: float = 0.0, source: str = "seg", manip_views: str = "start",
                       look_alikes: str = "shape", manip_look_alikes: bool = False, manip_decoy_fraction: float = 0.0) -> list[str]:
    """Write the shards (see the module docstring); returns every shard's path, existing ones included.
    `log(str)` gets one JSON line per written shard (default: none). `absent_fraction`: the share of
    episodes filmed with the target out of view (drawn per episode from (seed, index)). `source`:
    "seg" (the seg suite's episodes) or "manip" (manipulation views of the manip suite's episodes);
    `manip_views`: which views for "manip" ("start" or "mixed", see `_manip_view_subject`; "search":
    `render_search_clip`); `look_alikes`: for "seg", which look-alikes stand beside the target
    (`episodes._seg_episode`: "shape" as in val and test, "both" adds one of the target's colour);
    `manip_look_alikes`: for "manip", look-alikes of the filmed object beside it (`with_look_alikes`);
    `manip_decoy_fraction`: for "manip", the share of episodes filmed as decoy views (the look-alikes
    there, the object itself taken out, every mask empty; task `manip_decoy`). Why: the planners'
    wrong first sightings are look-alikes marked while the named object is out of view, and only a
    view where a look-alike is the closest match but still the wrong answer teaches "not this one"."""
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from tqdm import tqdm

    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import SEG_LOOK_ALIKES, SPLITS, make_episode

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name, v in (("episodes", episodes), ("episodes_per_shard", episodes_per_shard), ("clip_frames", clip_frames)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not isinstance(image_size, int) or not 16 <= image_size <= 960:
        raise ValueError(f"image_size must be an int in [16, 960], got {image_size!r}")
    if not 0.0 <= float(absent_fraction) <= 1.0:
        raise ValueError(f"absent_fraction must be in [0, 1], got {absent_fraction!r}")
    if source not in SEG_SOURCES:
        raise ValueError(f"source must be one of {SEG_SOURCES}, got {source!r}")
    if manip_views not in MANIP_VIEWS:
        raise ValueError(f"manip_views must be one of {MANIP_VIEWS}, got {manip_views!r}")
    if look_alikes not in SEG_LOOK_ALIKES:
        raise ValueError(f"look_alikes must be one of {SEG_LOOK_ALIKES}, got {look_alikes!r}")
    if look_alikes != "shape" and source != "seg":
        raise ValueError("look_alikes applies to source 'seg' (the seg suite's framed views)")
    if manip_look_alikes and source != "manip":
        raise ValueError("manip_look_alikes applies to source 'manip' (the manipulation views)")
    if not 0.0 <= float(manip_decoy_fraction) <= 1.0:
        raise ValueError(f"manip_decoy_fraction must be in [0, 1], got {manip_decoy_fraction!r}")
    if manip_decoy_fraction and source != "manip":
        raise ValueError("manip_decoy_fraction applies to source 'manip' (the manipulation views)")
    os.makedirs(out_dir, exist_ok=True)
    n_shards = (episodes + episodes_per_shard - 1) // episodes_per_shard
    paths = [os.path.join(out_dir, f"shard_{k:05d}.npz") for k in range(n_shards)]
    todo = [k for k in range(n_shards) if not os.path.exists(paths[k])]
    if not todo:
        return paths
    env = NavEnv(seg_sim_config(image_size))
    n_todo = sum(min(episodes, (k + 1) * episodes_per_shard) - k * episodes_per_shard for k in todo)
    bar = tqdm(total=n_todo, desc=f"collect seg/{split}" + (" (manip views)" if source == "manip" else ""), unit="ep", disable=not progress)
    t_start = time.monotonic()
    try:
        for k in todo:
            t0 = time.monotonic()
            cols = {key: [] for key in SEG_SHARD_KEYS}
            n_frames = n_absent = 0
            for row, i in enumerate(range(k * episodes_per_shard, min(episodes, (k + 1) * episodes_per_shard))):
                rng = np.random.default_rng([seed, i, 0xAB5E])
                want_absent = rng.random() < absent_fraction
                # drawn only when asked for, so that collections without decoys keep their streams
                want_decoy = bool(manip_decoy_fraction) and rng.random() < manip_decoy_fraction
                if source == "manip" and want_decoy:
                    ep = make_episode("manip", split, seed, i)
                    absent = render_manip_view_clip(env, ep, clip_frames, rng, views=manip_views, decoys=True)
                    frames, masks, query = absent
                    task = MANIP_DECOY_TASK
                elif source == "manip":
                    ep = make_episode("manip", split, seed, i)
                    view = {"views": manip_views, "look_alikes": manip_look_alikes}
                    absent = render_manip_view_clip(env, ep, clip_frames, rng, absent=True, **view) if want_absent else None
                    frames, masks, query = absent if absent is not None else render_manip_view_clip(env, ep, clip_frames, rng, **view)
                    task = ABSENT_TASK if absent is not None else (MANIP_SEARCH_TASK if manip_views == "search" else MANIP_VIEW_TASK)
                else:
                    ep = make_episode("seg", split, seed, i, look_alikes=look_alikes)
                    absent = render_absent_clip(env, ep, clip_frames, rng) if want_absent else None
                    frames, masks = absent[:2] if absent is not None else render_seg_clip(env, ep, clip_frames)
                    query, task = ep.instruction, (ABSENT_TASK if absent is not None else ep.task)
                n_absent += absent is not None
                cols["frames"].append(frames)
                cols["masks"].append(masks)
                cols["frame_episode"].append(np.full(len(frames), row, np.int64))
                cols["frame_index"].append(np.arange(len(frames), dtype=np.int64))
                cols["episode_start"].append(n_frames)
                cols["episode_length"].append(len(frames))
                cols["queries"].append(query)
                cols["episode_ids"].append(ep.episode_id)
                cols["tasks"].append(task)
                cols["held_out"].append(bool(ep.held_out))
                cols["held_out_phrasing"].append(bool(ep.held_out_phrasing))
                n_frames += len(frames)
                bar.update(1)
            arrays = {key: (np.concatenate(v) if key in ("frames", "masks", "frame_episode", "frame_index") else np.asarray(v))
                      for key, v in cols.items()}
            arrays["episode_start"] = arrays["episode_start"].astype(np.int64)
            arrays["episode_length"] = arrays["episode_length"].astype(np.int64)
            tmp = paths[k] + ".tmp.npz"  # `expand_shards` skips these: an interrupted write is never read
            np.savez_compressed(tmp, **arrays, image_size=np.int64(image_size), clip_frames=np.int64(clip_frames))
            os.replace(tmp, paths[k])
            if log is not None:
                log(json.dumps({"shard": k, "of": n_shards, "episodes": len(cols["queries"]), "absent": n_absent, "frames": n_frames,
                                "shard_s": round(time.monotonic() - t0, 1), "elapsed_s": round(time.monotonic() - t_start, 1)}))
    finally:
        bar.close()
        env.close()
    return paths


def load_seg_shards(paths) -> dict:
    """Concatenate seg shards (files and/or directories of them, as `training.data.expand_shards`)
    into one dataset dict with the keys of the shard format; `frame_episode` and `episode_start`
    index the concatenation. All shards must share the frame size."""
    from vlm_agent.training.data import expand_shards

    files = expand_shards([paths] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths])
    if not files:
        raise ValueError(f"no seg shards in {paths}")
    out = {key: [] for key in SEG_SHARD_KEYS}
    frame_offset = episode_offset = 0
    sizes = set()
    for path in files:
        with np.load(path) as d:
            missing = [key for key in SEG_SHARD_KEYS if key not in d.files]
            if missing:
                raise ValueError(f"{path} is not a seg shard (missing {missing})")
            for key in SEG_SHARD_KEYS:
                v = d[key]
                if key == "frame_episode":
                    v = v + episode_offset
                elif key == "episode_start":
                    v = v + frame_offset
                out[key].append(v)
            sizes.add(tuple(d["frames"].shape[1:3]))
            frame_offset += len(d["frames"])
            episode_offset += len(d["queries"])
    if len(sizes) != 1:
        raise ValueError(f"seg shards of different frame sizes {sorted(sizes)}: collect them at one image_size")
    data = {key: np.concatenate(v) for key, v in out.items()}
    data["queries"] = data["queries"].astype(str)
    data["episode_ids"] = data["episode_ids"].astype(str)
    data["tasks"] = data["tasks"].astype(str)
    return data


__all__ = ["collect_seg_shards", "load_seg_shards", "render_seg_clip", "render_absent_clip", "seg_sim_config", "SEG_SHARD_KEYS",
           "ABSENT_TASK", "MANIP_VIEW_TASK", "MANIP_SEARCH_TASK", "MANIP_DECOY_TASK", "with_look_alikes", "render_manip_view_clip", "manip_view_clip_poses", "SEG_SOURCES",
           "MANIP_VIEWS"]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="shard directory")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--episodes", type=int, default=3000)
    p.add_argument("--episodes-per-shard", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128, help="square frame side (px); the seg evaluation's default is 128")
    p.add_argument("--clip-frames", type=int, default=8)
    p.add_argument("--absent-fraction", type=float, default=0.0, help="share of episodes filmed with the target out of view")
    p.add_argument("--source", default="seg", choices=SEG_SOURCES, help="seg suite episodes, or manipulation views of manip episodes")
    p.add_argument("--manip-views", default="start", choices=MANIP_VIEWS, help="manip source: the object to move from the start, mixed, or search")
    p.add_argument("--manip-look-alikes", action="store_true", help="manip source: look-alikes beside the filmed object")
    p.add_argument("--manip-decoy-fraction", type=float, default=0.0,
                   help="manip source: share of episodes filmed with the look-alikes but without the object itself (empty masks)")
    a = p.parse_args(argv)
    paths = collect_seg_shards(a.out, a.split, a.episodes, a.episodes_per_shard, a.seed, a.image_size, a.clip_frames,
                               log=lambda s: print(s, flush=True), absent_fraction=a.absent_fraction, source=a.source,
                               manip_views=a.manip_views, manip_look_alikes=a.manip_look_alikes,
                               manip_decoy_fraction=a.manip_decoy_fraction)
    print(json.dumps({"shards": len(paths), "out": a.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

