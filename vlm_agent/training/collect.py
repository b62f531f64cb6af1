"""Sharded, resumable expert data collection for the NaVid model (behaviour cloning and DAgger).

`collect_shards(out_dir, ...)` writes `shard_00000.npz`, `shard_00001.npz`, ... of `episodes_per_shard`
episodes each (the format of `vlm_agent.training.data`: frames (F, S, S, 3) uint8, actions
(F,) int8, episode_start, episode_length, instructions, episode_ids, plus tasks, success, expert);
a shard that already exists is skipped, so an interrupted run resumes where it stopped. Episode `i`
of shard `k` is `make_episode("nav", split, seed, k * episodes_per_shard + i)`: deterministic.

Experts: "explorer" (`vlm_agent.sim.explorer.ExplorerExpert`, observation-explainable) or "oracle"
(`NavOracle`, shortest path with privileged goal positions). With a learner (DAgger), the learner's
primitive is executed with probability 1 - beta and the expert's otherwise; the label is always the
expert's action for the state actually visited, and the explorer's memory follows the learner's views.
`override_learner_stop`: a learner `stop` the expert disagrees with is not executed (the expert's
action is, the label stays the expert's). Premature stops end most of a learner's failed episodes;
without this a DAgger episode ends there with one corrective label, and the states the learner
would reach after resuming its search are never labelled.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from vlm_agent.actions import ACTION_INDEX


def make_expert(name: str, env, params: dict | None = None):
    """The labeller: "explorer" with its settings `params` (e.g. {"min_pixels": 8}; unknown keys are an
    error) or "oracle" (no settings)."""
    from vlm_agent.sim.oracle import NavOracle

    if name == "explorer":
        from vlm_agent.evaluation.policies import make_explorer_policy

        return make_explorer_policy("nav", env=env, **(params or {}))
    if name == "oracle":
        if params:
            raise ValueError(f"the oracle expert takes no settings, got {sorted(params)}")
        return NavOracle(env)
    raise ValueError(f"unknown expert '{name}' (explorer | oracle)")


TARGET_CELL_PX = 8


def goal_cell_counts(env, cell_px: int = TARGET_CELL_PX) -> np.ndarray:
    """(S / cell_px, S / cell_px) uint8: pixels of the episode's goal objects (every leg of a sequence)
    in each cell_px x cell_px block of the current frame, from the renderer's segmentation, capped at
    255. The label of `NavidModel`'s grounding head: at 64 px and 8 px blocks it is the model's 8x8
    vision grid, so the head learns where the named object is (and that a look-alike is not it)."""
    seg = env.segmentation()
    mask = np.zeros(seg.shape, bool)
    for name in env.nav_goals:
        mask |= env.object_mask(name, seg)
    h, w = mask.shape
    if h % cell_px or w % cell_px:
        raise ValueError(f"frame {w}x{h} is not a multiple of {cell_px} px cells")
    counts = mask.reshape(h // cell_px, cell_px, w // cell_px, cell_px).sum(axis=(1, 3))
    return np.minimum(counts, 255).astype(np.uint8)


def collect_shards(out_dir: str, split: str = "train", episodes: int = 1000, episodes_per_shard: int = 250, seed: int = 0,
                   image_size: int = 64, expert: str = "explorer", learner=None, beta: float = 1.0, max_steps: int = 0,
                   ego_map: bool = True, override_learner_stop: bool = False, target_masks: bool = True, expert_params: dict | None = None,
                   log=print) -> list[str]:
    """Write the shards (see module doc); returns their paths. `learner`: an object with
    `reset(episode)` and `act(obs) -> NavPrimitive` (a `NavidPolicy`). `ego_map`: also render depth
    and store each frame's egocentric map (`planners.ego_map`, default settings) as `maps` (F, 3, N,
    N / 8) packed bits, with the settings as `ego_map_config` (JSON). `override_learner_stop`: see
    the module doc. `target_masks`: also store, per frame, where the instruction's goal objects are
    in the image (`target_masks`, see `goal_cell_counts`), the label of the model's training-only
    grounding head. `expert_params`: the expert's settings (`make_expert`). Every frame also records
    the env's `subgoal_index` (which leg of a sequence the robot is on: 0 until it has passed the
    first goal), the label a progress-aware model needs and the frames cannot show."""
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode

    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if learner is None and beta < 1.0:
        raise ValueError("beta < 1 needs a learner policy (DAgger)")
    os.makedirs(out_dir, exist_ok=True)
    env = NavEnv(SimConfig(width=image_size, height=image_size, render_depth=ego_map, max_steps=max_steps))
    teacher = make_expert(expert, env, expert_params)
    memory = None
    if ego_map:
        from vlm_agent.planners.ego_map import EgoMap, EgoMapConfig, pack_maps

        memory = EgoMap(EgoMapConfig(), env.camera_intrinsics())
    n_shards = (episodes + episodes_per_shard - 1) // episodes_per_shard
    paths = []
    t_start = time.monotonic()
    for k in range(n_shards):
        path = os.path.join(out_dir, f"shard_{k:05d}.npz")
        paths.append(path)
        if os.path.exists(path):
            continue
        rng = np.random.default_rng([seed, k, 99])
        frames, actions, starts, lengths, instr, ids, tasks, succ, maps, masks, legs = [], [], [], [], [], [], [], [], [], [], []
        t0 = time.monotonic()
        for i in range(k * episodes_per_shard, min(episodes, (k + 1) * episodes_per_shard)):
            ep = make_episode("nav", split, seed, i)
            obs = env.reset(ep)
            teacher.reset(ep)
            if learner is not None:
                learner.reset(ep)
            if memory is not None:
                memory.reset()
            starts.append(len(frames))
            while not env.done:
                label = teacher.act(obs)
                frames.append(obs.rgb)
                legs.append(env.subgoal_index)
                if memory is not None:
                    # The map the learner would read at this step: every frame so far, this one included.
                    memory.update(obs.depth, obs.pose)
                    maps.append(pack_maps(memory.egocentric(obs.pose)))
                if target_masks:
                    masks.append(goal_cell_counts(env))
                actions.append(ACTION_INDEX[(label.kind, label.value)])
                action = label
                if learner is not None:
                    learned = learner.act(obs)
                    if rng.random() >= beta and not (override_learner_stop and learned.kind == "stop" and label.kind != "stop"):
                        action = learned
                obs = env.step(action)
            lengths.append(len(frames) - starts[-1])
            instr.append(ep.instruction)
            ids.append(ep.episode_id)
            tasks.append(ep.task)
            succ.append(float(env.metrics()["success"]))
        tmp = path + ".tmp.npz"
        extra = {"maps": np.stack(maps), "ego_map_config": np.asarray(json.dumps(memory.config.to_dict()))} if memory is not None else {}
        if target_masks:
            extra["target_masks"] = np.stack(masks)
        np.savez(tmp, **extra, frames=np.stack(frames), actions=np.asarray(actions, np.int8), episode_start=np.asarray(starts, np.int64),
                 episode_length=np.asarray(lengths, np.int64), instructions=np.asarray(instr), episode_ids=np.asarray(ids),
                 subgoal_index=np.asarray(legs, np.int8),
                 tasks=np.asarray(tasks), success=np.asarray(succ, np.float32), expert=np.asarray(expert))
        os.replace(tmp, path)
        log(json.dumps({"shard": k, "of": n_shards, "episodes": len(starts), "frames": len(frames), "driver_sr": round(float(np.mean(succ)), 3),
                        "shard_s": round(time.monotonic() - t0, 1), "elapsed_s": round(time.monotonic() - t_start, 1)}))
    env.close()
    return paths
