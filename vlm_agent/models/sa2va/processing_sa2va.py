"""Sa2VA's processor (prompt layout, `[SEG]`, SAM 2's image transform) and mask post-processing.

Prompt (token level):  <s> {query} <img> x N [SEG] </s>
The query comes first so that the image tokens, under causal attention, already see what is asked
for; the answer is the single `[SEG]` token (training teaches the LM to emit it; at inference the
tracker can also feed it, see `Sa2VATracker`). The LM's last hidden state *at* the `[SEG]` input
position is what prompts SAM 2, as in Sa2VA (training reads `hidden_states[input_ids == [SEG]]`,
generation the position where the emitted `[SEG]` is fed back).

Two image paths, both from the same RGB frame:
* the VLM's (`pixel_values`): the core's image processor at the VLM's size; for Sa2VA frames are
  *resized*, not centre-cropped (`crop_to_square=False`), so that the VLM sees the whole field of
  view SAM 2 segments;
* SAM 2's (`sam_pixel_values`): the frame resized to `sam2_image_size` square (no aspect-preserving
  padding, as SAM 2's video predictor and Sa2VA do), /255, ImageNet mean/std (SAM 2's statistics).

Post-processing (pure numpy functions, tested on hand-made arrays): mask logits at SAM 2's 1/4
resolution -> bilinear resize to the source frame (H, W) -> threshold (logit 0 = probability 0.5)
-> optionally the largest connected component; bounding box, area and a score.
"""
from __future__ import annotations

import math
import unicodedata

import numpy as np
from PIL import Image

from ..embodied_vlm.processing_embodied_vlm import EmbodiedVLMProcessor

SEG_TOKEN = "[SEG]"
SAM2_IMAGE_MEAN = (0.485, 0.456, 0.406)  # ImageNet, what SAM 2 was trained with
SAM2_IMAGE_STD = (0.229, 0.224, 0.225)
MAX_QUERY_CHARS = 300


def validate_query(query, max_chars: int = MAX_QUERY_CHARS) -> str:
    """A referring expression, stripped; ValueError (with the reason) for anything that is not a
    short printable text: non-strings, empty or whitespace-only, longer than `max_chars`, control or
    format characters (a hostile query cannot smuggle terminal escapes or bidi overrides into logs)."""
    if not isinstance(query, str):
        raise ValueError(f"the query must be text, got {type(query).__name__}")
    text = " ".join(query.split())  # tabs and newlines are whitespace, not control characters here
    if not text:
        raise ValueError("the query is empty")
    if len(text) > max_chars:
        raise ValueError(f"the query has {len(text)} characters (limit {max_chars})")
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")})
    if bad:
        raise ValueError(f"the query contains control or format characters ({', '.join(bad[:5])})")
    return text


# -- mask post-processing (pure functions) ------------------------------------------------------------
def resize_mask_logits(logits, size_hw: tuple[int, int]) -> np.ndarray:
    """Mask logits (h, w) -> (H, W) float32 by bilinear interpolation (half-pixel centres, as
    `F.interpolate(..., align_corners=False)` and SAM 2's own post-processing). Accepts numpy or torch."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits, dtype=np.float32))
    if t.ndim != 2:
        raise ValueError(f"expected (h, w) mask logits, got shape {tuple(t.shape)}")
    h, w = int(size_hw[0]), int(size_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"target size must be positive, got {size_hw}")
    if tuple(t.shape) == (h, w):
        return t.numpy().copy()
    return F.interpolate(t[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def threshold_mask(logits: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """(H, W) bool: logit > threshold (0 = probability 0.5). NaN logits are background."""
    x = np.asarray(logits, dtype=np.float32)
    return np.nan_to_num(x, nan=-np.inf) > float(threshold)


def largest_component(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """The largest connected component of a bool mask (8- or 4-connected); an empty mask stays empty.
    Ties keep the component met first in row-major order."""
    import cv2

    m = np.asarray(mask, dtype=bool)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if not m.any():
        return m.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=connectivity)
    if n <= 2:
        return m.copy()
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel bounding box (x_min, y_min, x_max, y_max) of a bool mask, XYXY with the max *exclusive*
    (so width = x_max - x_min); None for an empty mask."""
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_score(iou_prediction: float, object_score_logit: float | None = None) -> float:
    """Confidence in [0, 1]: SAM 2's predicted IoU of the chosen mask (clipped) times the probability
    that the object is present (sigmoid of SAM 2's object-score logit; 1 when not predicted)."""
    iou = float(iou_prediction)
    iou = 0.0 if not math.isfinite(iou) else min(1.0, max(0.0, iou))
    if object_score_logit is None:
        return iou
    z = float(object_score_logit)
    if math.isnan(z):
        return 0.0
    z = min(60.0, max(-60.0, z))  # +-inf clip to certainty
    return iou / (1.0 + math.exp(-z))


def postprocess_mask(logits, frame_hw: tuple[int, int], threshold: float = 0.0, keep_largest: bool = False) -> np.ndarray:
    """SAM 2 mask logits (h, w) -> (H, W) bool mask of the source frame: resize, threshold, and
    optionally keep the largest connected component."""
    mask = threshold_mask(resize_mask_logits(logits, frame_hw), threshold)
    return largest_component(mask) if keep_largest else mask


class Sa2VAProcessor(EmbodiedVLMProcessor):
    """Tokenizer + VLM image processor + SAM 2 image transform of `Sa2VAModel` (saved with it).

    `[SEG]` (besides `<img>`) is looked up by name. `image_tokens` (the VLM's features per frame) and
    `sam2_image_size` are layout settings copied from the config (`from_config`) and checked on load
    (`check_config`).
    """

    extra_special_tokens = (SEG_TOKEN,)
    token_fields = {**EmbodiedVLMProcessor.token_fields, "seg_token_id": SEG_TOKEN}

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, image_tokens: int | None = None, sam2_image_size: int | None = None,
                 sam2_image_mean: list[float] | None = None, sam2_image_std: list[float] | None = None, **kwargs):
        # None: not known yet (a processor built around a checkpoint's own tokenizer and image
        # statistics, `assemble_from_checkpoints`); the config's values are adopted at check_config.
        self.image_tokens = None if image_tokens is None else int(image_tokens)
        self.sam2_image_size = None if sam2_image_size is None else int(sam2_image_size)
        self.sam2_image_mean = [float(v) for v in (sam2_image_mean or SAM2_IMAGE_MEAN)]
        self.sam2_image_std = [float(v) for v in (sam2_image_std or SAM2_IMAGE_STD)]
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self._ids = None

    @classmethod
    def from_config(cls, image_processor, tokenizer, config) -> "Sa2VAProcessor":
        # The VLM sees the whole frame SAM 2 segments (resize, no centre crop).
        image_processor.crop_to_square = False
        return cls(image_processor, tokenizer, image_tokens=config.grid_size ** 2, sam2_image_size=config.sam2_image_size)

    @classmethod
    def layout_of(cls, config) -> dict:
        return {"image_tokens": config.grid_size ** 2, "sam2_image_size": config.sam2_image_size}

    def check_config(self, config) -> None:
        if self.image_tokens is None or self.sam2_image_size is None:
            self.image_processor.crop_to_square = False  # as from_config: the VLM sees SAM 2's whole view
        super().check_config(config)

    def _require_layout(self) -> None:
        if self.image_tokens is None or self.sam2_image_size is None:
            raise RuntimeError("the processor's layout is not set: build it with from_config(...) or call check_config(config)")

    # -- text --------------------------------------------------------------------------------------
    def encode_query(self, query: str) -> list[int]:
        ids = self.tokenizer(validate_query(query), add_special_tokens=False).input_ids
        if not ids:
            raise ValueError("the query tokenises to nothing")
        return ids

    def prompt_ids(self, query: str, n_images: int = 1) -> list[int]:
        """<s> query <img> x (image_tokens * n_images) (no <s> for tokenizers without BOS)."""
        self._require_layout()
        i = self.ids
        bos = [] if i["bos_token_id"] is None else [i["bos_token_id"]]
        return bos + self.encode_query(query) + [i["image_token_id"]] * (self.image_tokens * n_images)

    def training_example(self, query: str, answer: str = SEG_TOKEN) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one example: prompt + answer + </s>; labels are -100 on the prompt
        and the token ids on the answer (shifted inside the LM's loss, as transformers does)."""
        prompt = self.prompt_ids(query)
        answer_ids = self.tokenizer(answer, add_special_tokens=False).input_ids + [self.ids["eos_token_id"]]
        return prompt + answer_ids, [-100] * len(prompt) + answer_ids

    # -- images ------------------------------------------------------------------------------------
    def sam_pixel_values(self, frames):
        """A frame or list of frames (H, W, 3) uint8 -> SAM 2 input (N, 3, S, S) float32 tensor:
        bilinear resize to S x S, /255, SAM 2's mean/std."""
        import torch

        self._require_layout()
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        s = self.sam2_image_size
        mean = np.asarray(self.sam2_image_mean, np.float32)
        std = np.asarray(self.sam2_image_std, np.float32)
        out = []
        for rgb in frames:
            if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
                raise ValueError(f"expected an RGB frame (H, W, 3) uint8, got shape {getattr(rgb, 'shape', None)} dtype {getattr(rgb, 'dtype', type(rgb).__name__)}")
            if rgb.shape[:2] != (s, s):
                rgb = np.asarray(Image.fromarray(rgb).resize((s, s), Image.BILINEAR))
            out.append(((rgb.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
        if not out:
            raise ValueError("no frames given")
        return torch.from_numpy(np.ascontiguousarray(np.stack(out)))


__all__ = [
    "Sa2VAProcessor", "SEG_TOKEN", "validate_query", "resize_mask_logits", "threshold_mask", "largest_component",
    "mask_bbox", "mask_score", "postprocess_mask", "SAM2_IMAGE_MEAN", "SAM2_IMAGE_STD",
]
