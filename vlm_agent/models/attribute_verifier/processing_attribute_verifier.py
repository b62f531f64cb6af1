"""Processing for the attribute verifier: crops around masks, and the attribute words of a query.

Crops: the square around the mask's bounding box, `config.context` times its longer side (at least
`config.min_crop_px` source pixels), resampled bilinearly to `config.crop_size` (pixels outside the
frame are zero). The mask travels as the fourth channel, so the network knows which object in the
crop is meant. The same function makes the training crops, with jitter of the box (`jitter`).
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import torch
import torch.nn.functional as F

from .configuration_attribute_verifier import AttributeVerifierConfig

PROCESSOR_NAME = "processor_config.json"


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> (B, 4) float boxes (x_min, y_min, x_max, y_max), pixels, max exclusive.
    An empty mask gets the whole frame."""
    b, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ar_h, ar_w = torch.arange(h, device=masks.device), torch.arange(w, device=masks.device)
    big = torch.tensor(10**9, device=masks.device)
    y0 = torch.where(rows, ar_h, big).min(dim=1).values
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values + 1
    x0 = torch.where(cols, ar_w, big).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values + 1
    empty = ~rows.any(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    boxes[empty] = torch.tensor([0.0, 0.0, float(w), float(h)], device=masks.device)
    return boxes


def crop_batch(rgb: torch.Tensor, masks: torch.Tensor, config: AttributeVerifierConfig, jitter: torch.Tensor | None = None) -> torch.Tensor:
    """rgb (B, 3, H, W) float in [0, 1], masks (B, H, W) bool -> crops (B, 4, S, S).

    jitter: optional (B, 3) (dx, dy as fractions of the crop side, log scale of the side) for training."""
    b, _, h, w = rgb.shape
    boxes = mask_boxes(masks)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    side = torch.clamp(torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * config.context, min=float(config.min_crop_px))
    if jitter is not None:
        side = side * torch.exp(jitter[:, 2])
        cx, cy = cx + jitter[:, 0] * side, cy + jitter[:, 1] * side
    # affine_grid works in normalised coordinates [-1, 1] across the frame (align_corners=False)
    theta = torch.zeros(b, 2, 3, device=rgb.device)
    theta[:, 0, 0] = side / w
    theta[:, 1, 1] = side / h
    theta[:, 0, 2] = 2 * cx / w - 1
    theta[:, 1, 2] = 2 * cy / h - 1
    grid = F.affine_grid(theta, (b, 4, config.crop_size, config.crop_size), align_corners=False)
    stacked = torch.cat([rgb, masks[:, None].float()], dim=1)
    return F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class AttributeVerifierProcessor:
    """Turns (frame, mask) pairs into crops and queries into the attribute words they name."""

    def __init__(self, config: AttributeVerifierConfig):
        self.config = config

    # -- queries ---------------------------------------------------------------------------------
    def attributes(self, query: str) -> tuple[str | None, str | None]:
        """(colour word, shape word) the query names, each None when it names none of the
        vocabulary's. The first of each counts: in "the red cube left of the blue ball" the subject
        comes first. Words match whole and case-insensitively."""
        if not isinstance(query, str):
            raise ValueError(f"a query must be a string, got {type(query).__name__}")
        words = re.findall(r"[a-z]+", query.lower())
        colour = next((w for w in words if w in self.config.colours), None)
        shape = next((w for w in words if w in self.config.shapes and w != "other"), None)
        return colour, shape

    # -- images ----------------------------------------------------------------------------------
    def __call__(self, rgb, masks) -> torch.Tensor:
        """One frame (H, W, 3) uint8 and one or more masks ((H, W) or (N, H, W) bool) -> (N, 4, S, S)."""
        frame = np.asarray(rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"the frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        m = np.asarray(masks, dtype=bool)
        if m.ndim == 2:
            m = m[None]
        if m.shape[1:] != frame.shape[:2]:
            raise ValueError(f"masks {m.shape[1:]} do not match the frame {frame.shape[:2]}")
        t = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div(255.0)
        return crop_batch(t[None].expand(len(m), -1, -1, -1), torch.from_numpy(m), self.config)

    # -- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, PROCESSOR_NAME), "w") as f:
            json.dump({"processor_class": type(self).__name__, "crop_size": self.config.crop_size, "context": self.config.context,
                       "min_crop_px": self.config.min_crop_px}, f, indent=2)

    @classmethod
    def from_pretrained(cls, directory: str) -> "AttributeVerifierProcessor":
        return cls(AttributeVerifierConfig.from_json_file(os.path.join(directory, "config.json")))


__all__ = ["AttributeVerifierProcessor", "crop_batch", "mask_boxes"]
