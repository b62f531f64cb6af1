"""Seg-suite policies over a `Segmenter` (`vlm_agent.skills.segmentation`): `--policy sa2va` and
`--policy sa2va_official`.

A policy is reset with the episode (the segmenter gets the episode's instruction as its query) and
then sees the clip's frames in order, so a tracking segmenter tracks across them; `last_source`
(detected / tracked / ...) reaches the per-frame results.
"""
from __future__ import annotations

import dataclasses

import numpy as np


class SegmenterPolicy:
    """reset(episode) -> segmenter.reset(episode.instruction); act(obs) -> (H, W) bool mask."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self.last_source: str | None = None
        self.last_result = None

    def reset(self, episode=None) -> None:
        self.last_source = self.last_result = None
        if episode is not None:
            self.segmenter.reset(episode.instruction)

    def act(self, obs) -> np.ndarray:
        result = self.segmenter.step(obs.rgb)
        self.last_source, self.last_result = result.source, result
        return result.mask


def _tracker_kwargs(kw: dict) -> dict:
    from vlm_agent.models.sa2va.tracking_sa2va import TrackerConfig

    names = {f.name for f in dataclasses.fields(TrackerConfig)}
    unknown = sorted(k for k in kw if k not in names and kw[k] is not None)
    if unknown:
        raise ValueError(f"the sa2va policy does not take {unknown} (tracker settings: {sorted(names)})")
    return {k: v for k, v in kw.items() if k in names}


def make_sa2va_policy(suite: str, model_dir=None, device: str = "cpu", **kw):
    """The project's Sa2VA model directory (`--model`) with its streaming tracker; keyword arguments
    are `TrackerConfig` fields (redetect_every, min_score, ...)."""
    if suite != "seg":
        raise ValueError("the sa2va policy segments: use --suite seg")
    if not model_dir:
        from vlm_agent.models.registry import default_checkpoint_dir

        model_dir = default_checkpoint_dir("sa2va")  # the shipped checkpoints/sa2va_nano
    from vlm_agent.skills.segmentation import Sa2VASegmenter

    return SegmenterPolicy(Sa2VASegmenter(model_dir, device=device or "cpu", **_tracker_kwargs(kw)))


def make_sa2va_official_policy(suite: str, model_dir=None, device: str = "cuda", **kw):
    """A released Sa2VA checkpoint in `--model` through its own remote code (GPU; see
    `vlm_agent.skills.sa2va_official`)."""
    if suite != "seg":
        raise ValueError("the sa2va_official policy segments: use --suite seg")
    from vlm_agent.skills.sa2va_official import OfficialSa2VASegmenter

    allowed = {"dtype", "prompt", "redetect_every", "allow_cpu"}
    return SegmenterPolicy(OfficialSa2VASegmenter(model_dir, device=device or "cuda", **{k: v for k, v in kw.items() if k in allowed}))


__all__ = ["SegmenterPolicy", "make_sa2va_policy", "make_sa2va_official_policy"]
