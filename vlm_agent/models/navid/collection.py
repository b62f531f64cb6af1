"""Oracle-labelled NaVid training data from the embedded simulator (behaviour cloning and DAgger).

One shard = one `.npz` with every frame of every episode:
    frames (F, S, S, 3) uint8, actions (F,) int8 (ACTIONS index of the oracle's label for that frame),
    episode_start (E,), episode_length (E,), instructions (E,) str, episode_ids (E,) str.
With a learner (DAgger), the learner's own primitive is executed with probability 1 - beta, the
oracle's otherwise, and the label is always the oracle's action for the state actually visited.
"""
from __future__ import annotations

import numpy as np

from vlm_agent.actions import NavPrimitive

ACTIONS = (NavPrimitive.forward(), NavPrimitive.turn_left(), NavPrimitive.turn_right(), NavPrimitive.stop())
ACTION_INDEX = {(a.kind, a.value): i for i, a in enumerate(ACTIONS)}


def collect(suite: str, split: str, n_episodes: int, seed: int, image_size: int, out_path: str, learner=None, beta: float = 1.0, max_steps: int = 0, progress: bool = True) -> dict:
    """Roll out `n_episodes` and save a shard to `out_path`; returns summary counts."""
    import vlm_agent.sim  # noqa: F401  (sets MUJOCO_GL before mujoco loads)
    from tqdm import tqdm

    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.sim.oracle import NavOracle

    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if learner is None and beta < 1.0:
        raise ValueError("beta < 1 needs a learner policy (DAgger)")
    episodes = make_episodes(suite, split, n_episodes, seed)
    env = NavEnv(SimConfig(width=image_size, height=image_size, render_depth=False, max_steps=max_steps))
    oracle = NavOracle(env)
    rng = np.random.default_rng(seed)
    frames, actions, starts, lengths, instructions, ids = [], [], [], [], [], []
    successes = 0
    for ep in tqdm(episodes, desc=f"collect {split}", disable=not progress, unit="ep"):
        obs = env.reset(ep)
        if learner is not None:
            learner.reset(ep)
        starts.append(len(frames))
        while not env.done and env.step_count < env.max_steps:
            label = oracle.act(obs)
            frames.append(obs.rgb)
            actions.append(ACTION_INDEX[(label.kind, label.value)])
            if learner is not None:
                learned = learner.act(obs)
                action = label if rng.random() < beta else learned
            else:
                action = label
            obs = env.step(action)
        lengths.append(len(frames) - starts[-1])
        instructions.append(ep.instruction)
        ids.append(ep.episode_id)
        successes += bool(env.metrics().get("success", False))
    np.savez(out_path, frames=np.stack(frames), actions=np.asarray(actions, np.int8), episode_start=np.asarray(starts, np.int64),
             episode_length=np.asarray(lengths, np.int64), instructions=np.asarray(instructions), episode_ids=np.asarray(ids))
    return {"episodes": len(episodes), "frames": len(frames), "success_rate": successes / max(1, len(episodes)), "path": out_path}


def load_shards(paths: list[str]) -> dict:
    """Concatenate shards into one dataset dict (same keys as a shard, starts re-based)."""
    parts = [np.load(p) for p in paths]
    out = {"frames": [], "actions": [], "episode_start": [], "episode_length": [], "instructions": [], "episode_ids": []}
    offset = 0
    for d in parts:
        out["frames"].append(d["frames"])
        out["actions"].append(d["actions"])
        out["episode_start"].append(d["episode_start"] + offset)
        out["episode_length"].append(d["episode_length"])
        out["instructions"].append(d["instructions"])
        out["episode_ids"].append(d["episode_ids"])
        offset += len(d["frames"])
    return {k: np.concatenate(v) for k, v in out.items()}
