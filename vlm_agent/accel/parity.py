"""Parity of an accelerated encoder with the PyTorch reference: feature cosine and planner decisions.

Max abs difference says little about INT8 (a few large, harmless errors dominate it). The two
measures used for the quantised and OpenVINO backends are:

- `feature_cosine`: cosine similarity of each output token's feature vector (B, N, D) with the
  reference's, summarised as mean / min / 1st percentile over all tokens;
- `planner_agreement`: the NaVid planner run open-loop over recorded episodes (frames and
  instructions of a `vlm-agent collect` sim shard or a dataset shard), once with the reference
  tower and once with the encoder under test, each keeping its own history; a frame agrees when
  both plans have identical primitives (and, separately, the same first primitive: what the robot
  executes next).

Imports of the planner happen inside the function, so `vlm_agent.accel` itself stays free of it.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def feature_cosine(ref, out) -> dict:
    """{"mean", "min", "p01"} cosine over tokens of two (B, N, D) feature arrays (numpy or torch)."""
    a = np.asarray(ref.detach().cpu() if hasattr(ref, "detach") else ref, dtype=np.float64)
    b = np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {a.shape} vs {b.shape}")
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-30), 1.0)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.percentile(cos, 1))}


@dataclasses.dataclass
class Agreement:
    """frames: frames planned; same_plan: identical primitives; same_first: identical first primitive;
    episodes: episodes used; disagreements: (episode index, step, reference text, test text), first 10."""

    frames: int = 0
    same_plan: int = 0
    same_first: int = 0
    episodes: int = 0
    disagreements: list = dataclasses.field(default_factory=list)

    @property
    def plan_rate(self) -> float:
        return self.same_plan / self.frames if self.frames else float("nan")

    @property
    def first_rate(self) -> float:
        return self.same_first / self.frames if self.frames else float("nan")


def load_episodes(shard: str, max_episodes: int = 0) -> list[tuple[str, np.ndarray]]:
    """[(instruction, uint8 frames (T, H, W, 3))] from a collect/dataset shard with
    `frames`/`rgb`, `episode_start`, `episode_length` and `instructions`."""
    data = np.load(shard, allow_pickle=False)
    key = "frames" if "frames" in data.files else "rgb"
    for need in (key, "episode_start", "episode_length", "instructions"):
        if need not in data.files:
            raise ValueError(f"{shard}: no '{need}' array (expected a `vlm-agent collect` or dataset shard)")
    frames, starts, lengths, instr = data[key], data["episode_start"], data["episode_length"], data["instructions"]
    n = len(starts) if not max_episodes else min(max_episodes, len(starts))
    return [(str(instr[i]), frames[starts[i] : starts[i] + lengths[i]]) for i in range(n)]


def planner_agreement(model_dir: str, encoder_config, episodes, max_new_tokens: int = 12) -> tuple[Agreement, object]:
    """Plan every recorded frame with the torch tower and with `encoder_config`'s encoder.

    model_dir: a built-in NaVid model directory (e.g. checkpoints/navid_tiny); encoder_config: an
    `EncoderBackendConfig`; episodes: `load_episodes(...)` output. Greedy decoding on both sides.
    Returns (Agreement, the encoder under test).
    """
    from vlm_agent.planners.backends import BuiltinNavidBackend
    from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig

    from .factory import attach_encoder

    def planner():
        return NavidPlanner(NavidPlannerConfig(), backend=BuiltinNavidBackend(model_dir, decoding="greedy", max_new_tokens=max_new_tokens))

    ref, test = planner(), planner()
    enc = attach_encoder(test.backend.model, encoder_config)
    result = Agreement()
    for e, (instruction, frames) in enumerate(episodes):
        ref.reset(instruction)
        test.reset(instruction)
        result.episodes += 1
        for t, frame in enumerate(frames):
            a, b = ref.plan(frame), test.plan(frame)
            result.frames += 1
            result.same_plan += a.primitives == b.primitives
            result.same_first += a.primitives[:1] == b.primitives[:1]
            if a.primitives != b.primitives and len(result.disagreements) < 10:
                result.disagreements.append((e, t, a.raw_text, b.raw_text))
            ref.observe(frame)
            test.observe(frame)
    return result, enc
