"""Referring segmentation behind one interface: `reset(query)`, `step(frame) -> SegResult`.

What the segmentation node, the seg evaluation policies and (later) a segmenter-based perception
provider call. Backends (`make_segmenter(backend, ...)`):

* `sa2va`: the project's Sa2VA model directory (`vlm_agent.models.sa2va`) through `Sa2VATracker`:
  the VLM on keyframes, SAM 2 on every frame and SAM 2's memory between them.
* `sa2va_official`: released Sa2VA checkpoints through their own remote code
  (`vlm_agent.skills.sa2va_official`; needs the weights on disk and, as published, a CUDA device).

The privileged `oracle` mask source (ground truth from the simulator) implements the same interface
in `vlm_agent.evaluation.oracle_segmenter` (it needs the simulator, which this layer does not use).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

SEGMENTER_BACKENDS: dict[str, str] = {
    "sa2va": "vlm_agent.skills.segmentation:Sa2VASegmenter",
    "sa2va_official": "vlm_agent.skills.sa2va_official:OfficialSa2VASegmenter",
}


@dataclass
class SegResult:
    """One frame's segmentation.

    mask: (H, W) bool in the source frame's pixels; score in [0, 1] (the backend's confidence);
    source: "detected" / "re-detected" (the model looked at the query on this frame), "tracked"
    (carried over from earlier frames by memory), "held" (the previous mask repeated), "oracle";
    bbox: (x_min, y_min, x_max, y_max) pixels, max exclusive, or None; area: mask pixels;
    latency_s: the backend's time for this frame; answer: the model's text when it produced one.
    """

    mask: np.ndarray
    score: float
    source: str
    query: str
    frame_index: int = 0
    bbox: tuple[int, int, int, int] | None = None
    area: int = 0
    latency_s: float = 0.0
    answer: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def tracked(self) -> bool:
        return self.source in ("tracked", "held")

    def label(self) -> dict:
        """The JSON-ready summary the node publishes on `segmentation/label`."""
        return {
            "query": self.query, "score": round(float(self.score), 4), "bbox": list(self.bbox) if self.bbox else None,
            "area": int(self.area), "source": self.source, "tracked": self.tracked, "frame_index": int(self.frame_index),
            "latency_ms": round(1e3 * float(self.latency_s), 2), **self.extra,
        }


@runtime_checkable
class Segmenter(Protocol):
    """label: names the backend in logs and results; reset(query) raises ValueError for a bad query;
    step(rgb (H, W, 3) uint8) raises RuntimeError before reset, ValueError for a bad frame."""

    label: str

    def reset(self, query: str) -> None: ...

    def step(self, rgb: np.ndarray) -> SegResult: ...


class Sa2VASegmenter:
    """The project's Sa2VA model (`model_dir`) with its streaming tracker.

    device: torch device ("cpu", "cuda", ...); num_threads: torch intra-op threads (0 = leave as is);
    tracker settings (`redetect_every`, `min_score`, `mask_threshold`, `keep_largest_component`,
    `seg_decoding`, ...) as keyword arguments (see `TrackerConfig`). `model`/`processor` inject a
    ready pair instead of loading (tests, benchmarks).
    """

    label = "sa2va"

    def __init__(self, model_dir: str | None = None, device: str = "cpu", num_threads: int = 0, model=None, processor=None, **tracker_kw):
        import torch

        from vlm_agent.models.sa2va.tracking_sa2va import Sa2VATracker, TrackerConfig

        if num_threads:
            torch.set_num_threads(int(num_threads))
        if model is None:
            if not model_dir:
                from vlm_agent.models.registry import default_checkpoint_dir

                model_dir = default_checkpoint_dir("sa2va")  # the shipped checkpoints/sa2va_nano
            from vlm_agent.models.registry import load_model_and_processor, model_type_of

            kind = model_type_of(model_dir)
            if kind != "sa2va":
                raise ValueError(f"{model_dir} holds a '{kind}' model, not sa2va")
            model, processor = load_model_and_processor(model_dir, device=device)
        self.model, self.processor = model.eval(), processor
        self.tracker = Sa2VATracker(model, processor, TrackerConfig(**tracker_kw))

    @property
    def query(self) -> str | None:
        return self.tracker.query

    def due_for_detection(self) -> bool:
        return self.tracker.due_for_detection()

    def reset(self, query: str) -> None:
        self.tracker.reset(query)

    def step(self, rgb: np.ndarray) -> SegResult:
        r = self.tracker.step(rgb)
        return SegResult(r.mask, r.score, r.source, self.tracker.query, r.frame_index, r.bbox, r.area, r.latency_s, r.answer,
                         {"vlm_ms": round(1e3 * r.vlm_s, 2)})


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 0, 255), alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: `rgb` with the mask's pixels blended towards `colour` by `alpha` (for people)."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    m = np.asarray(mask, dtype=bool)
    if m.shape != out.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match the image {out.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blend = (1.0 - alpha) * out[m].astype(np.float32) + alpha * np.asarray(colour, np.float32)
    out[m] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def make_segmenter(backend: str, **kwargs) -> Segmenter:
    """A segmenter by backend name (`SEGMENTER_BACKENDS`); ValueError naming the known ones."""
    if backend not in SEGMENTER_BACKENDS:
        raise ValueError(f"unknown segmenter backend '{backend}' (known: {', '.join(sorted(SEGMENTER_BACKENDS))})")
    module, name = SEGMENTER_BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), name)(**kwargs)


__all__ = ["SegResult", "Segmenter", "Sa2VASegmenter", "make_segmenter", "overlay_mask", "SEGMENTER_BACKENDS"]
