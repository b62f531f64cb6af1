"""A non-learned referring-segmentation baseline: pixels whose colour matches the expression's colour word.

It knows colours, not shapes or relations, so it scores well on "the red ball" when no other red
thing is in view and poorly on "the cube left of the green cylinder": a floor for learned models.
"""
from __future__ import annotations

import numpy as np

from vlm_agent.sim.world import COLOURS


class ColourThresholdPolicy:
    def __init__(self, max_angle_deg: float = 12.0, min_saturation: float = 0.25):
        self.max_cos = np.cos(np.radians(max_angle_deg))
        self.min_saturation = min_saturation

    def reset(self, episode=None) -> None:
        pass

    def act(self, obs) -> np.ndarray:
        words = obs.instruction.lower().replace(",", " ").split()
        colour = next((w for w in words if w in COLOURS), None)
        # the first colour word names the target unless it follows a relation ("left of the green ...")
        if colour is not None and any(w in ("left", "right") for w in words[: words.index(colour)]):
            colour = None
        h, w = obs.rgb.shape[:2]
        if colour is None:
            return np.zeros((h, w), bool)
        rgb = obs.rgb.astype(np.float32) / 255.0
        ref = np.asarray(COLOURS[colour], np.float32)
        # compare directions in RGB space: robust to the seeded light intensity
        cos = (rgb @ ref) / (np.linalg.norm(rgb, axis=-1) * np.linalg.norm(ref) + 1e-6)
        sat = rgb.max(-1) - rgb.min(-1)
        grey_ref = ref.max() - ref.min() < 0.2  # white: bright and unsaturated instead
        if grey_ref:
            return (rgb.min(-1) > 0.75) & (sat < 0.12)
        return (cos > self.max_cos) & (sat > self.min_saturation)
