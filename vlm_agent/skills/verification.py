"""A second look at a segmenter's mask: does it show the colour and shape the query names?

`AttributeVerifier(model_dir)` wraps the attribute-verifier model (`vlm_agent.models.attribute_verifier`,
default `checkpoints/attribute_verifier`): `check(rgb, mask, query)` crops the mask, scores the
colour and shape words the query names and returns a `Verdict`. `VerifiedSegmenter(inner, verifier)`
is a `Segmenter` (`skills.segmentation`) that runs `inner` and empties any mask whose match is below
`min_match`: to the perception that reads it, the object is "not in this view", so the search turns
and, failing that, drives elsewhere, instead of walking to a look-alike.

Why: a referring segmenter asked for "the red cube" where there is none marks the nearest thing to
it, most often a red object of another shape (sa2va_nano v5, PaLM-E test100: 30 of 35 wrong first
sightings). A query naming none of the verifier's words (furniture, a relation with no colour) is
passed through unchecked; so are empty masks.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Verdict:
    """colour / shape: the words the query names (None: not named, not checked); p_colour / p_shape:
    the model's probability of each (1.0 when not checked); match: their product; predicted_colour /
    predicted_shape: the model's top words; accepted: match >= min_match (or nothing to check)."""

    colour: str | None
    shape: str | None
    p_colour: float
    p_shape: float
    match: float
    predicted_colour: str
    predicted_shape: str
    accepted: bool
    checked: bool

    def reason(self) -> str:
        named = " ".join(w for w in (self.colour, self.shape) if w)
        return (f"the mask shows a {self.predicted_colour} {self.predicted_shape}, not a {named} "
                f"(match {self.match:.2f})")

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class AttributeVerifier:
    """The attribute-verifier model on one device. `model`/`processor` inject a ready pair (tests)."""

    def __init__(self, model_dir: str | None = None, device: str = "cpu", min_match: float = 0.3, model=None, processor=None):
        from vlm_agent.models.attribute_verifier import AttributeVerifierModel, AttributeVerifierProcessor

        if not 0.0 <= float(min_match) <= 1.0:
            raise ValueError(f"min_match must be in [0, 1], got {min_match}")
        if model is None:
            if not model_dir:
                from vlm_agent.models.registry import default_checkpoint_dir

                model_dir = default_checkpoint_dir("attribute_verifier")
            model = AttributeVerifierModel.from_pretrained(model_dir, device=device)
            processor = AttributeVerifierProcessor.from_pretrained(model_dir)
        self.model, self.processor = model.eval(), processor or AttributeVerifierProcessor(model.config)
        self.min_match = float(min_match)
        self.device = device

    def check(self, rgb: np.ndarray, mask: np.ndarray, query: str) -> Verdict:
        """The verdict on `mask` (H, W) bool over `rgb` (H, W, 3) uint8 for `query`."""
        import torch

        cfg = self.model.config
        colour, shape = self.processor.attributes(query)
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            raise ValueError("an empty mask has nothing to verify")
        with torch.no_grad():
            lc, ls = self.model(self.processor(rgb, m).to(self.device))
        pc, ps = lc.softmax(-1)[0].cpu().numpy(), ls.softmax(-1)[0].cpu().numpy()
        p_colour = float(pc[cfg.colours.index(colour)]) if colour else 1.0
        p_shape = float(ps[cfg.shapes.index(shape)]) if shape else 1.0
        match = p_colour * p_shape
        checked = colour is not None or shape is not None
        return Verdict(colour, shape, p_colour, p_shape, match, cfg.colours[int(pc.argmax())], cfg.shapes[int(ps.argmax())],
                       (match >= self.min_match) or not checked, checked)


class VerifiedSegmenter:
    """A `Segmenter`: `inner`'s masks, emptied where `verifier` rejects them (module docstring).
    A rejected frame's `SegResult` has an empty mask, score 0, source "rejected", and the verdict and
    the rejected mask's area in `extra`; an accepted one keeps `inner`'s result with the verdict added."""

    def __init__(self, inner, verifier: AttributeVerifier):
        self.inner = inner
        self.verifier = verifier
        self.label = f"{inner.label}+verifier"
        self._query: str | None = None

    def reset(self, query: str) -> None:
        self.inner.reset(query)
        self._query = query

    def step(self, rgb: np.ndarray):
        from vlm_agent.skills.segmentation import SegResult

        result = self.inner.step(rgb)
        mask = np.asarray(result.mask, dtype=bool) if result.mask is not None else None
        if mask is None or not mask.any() or self._query is None:
            return result
        t0 = time.perf_counter()
        verdict = self.verifier.check(rgb, mask, self._query)
        extra = {**result.extra, "verifier": verdict.to_dict(), "verifier_ms": round(1e3 * (time.perf_counter() - t0), 2)}
        if verdict.accepted:
            result.extra = extra
            return result
        extra["rejected_area"] = int(mask.sum())
        extra["rejected"] = verdict.reason()
        return SegResult(np.zeros_like(mask), 0.0, "rejected", result.query, result.frame_index, None, 0, result.latency_s, result.answer, extra)

    def __getattr__(self, name):  # the inner backend's extras (query, due_for_detection, ...)
        if name in ("inner", "verifier"):
            raise AttributeError(name)
        return getattr(self.inner, name)


__all__ = ["AttributeVerifier", "VerifiedSegmenter", "Verdict"]
