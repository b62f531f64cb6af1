"""One Sa2VA training step: batch building and the update (the training run itself is issue 14).

`make_seg_batch(processor, examples)` turns (rgb, query, mask) examples into the tensors
`Sa2VAModel.forward_segmentation` takes (right-padded prompts with the `[SEG]` answer, LM labels
on the answer only, the VLM's and SAM 2's views of each frame, the ground-truth masks);
`train_step(model, batch, optimizer)` computes LM loss + BCE + Dice (weights from the config),
back-propagates into whatever `config.sam2_trainable` leaves trainable, clips and steps.
"""
from __future__ import annotations

import numpy as np
import torch

from vlm_agent.devices import to_device
from vlm_agent.training.data import pad_right


def make_seg_batch(processor, examples, answer: str = "[SEG]") -> dict:
    """examples: [(rgb (H, W, 3) uint8, query str, mask (H, W) bool)] -> a batch dict:
    input_ids, attention_mask, labels (B, L); pixel_values (B, 3, s, s); sam_pixel_values
    (B, 3, S, S); gt_masks (B, H, W) float (frames of one batch share their size)."""
    if not examples:
        raise ValueError("no examples")
    ids, labels = zip(*(processor.training_example(q, answer) for _, q, _ in examples))
    tokens = pad_right(list(ids), list(labels), processor.ids["pad_token_id"])
    frames = [rgb for rgb, _, _ in examples]
    masks = [np.asarray(m, dtype=bool) for _, _, m in examples]
    if len({m.shape for m in masks}) != 1:
        raise ValueError(f"masks of one batch must share a size, got {sorted({m.shape for m in masks})}")
    return {
        **tokens,
        "pixel_values": processor.pixel_values(frames), "sam_pixel_values": processor.sam_pixel_values(frames),
        "gt_masks": torch.from_numpy(np.stack(masks).astype(np.float32)),
    }


def train_step(model, batch: dict, optimizer: torch.optim.Optimizer, max_grad_norm: float = 1.0) -> dict[str, float]:
    """One optimiser step on `batch` (from `make_seg_batch`); returns the loss terms as floats."""
    model.train()
    device = next(model.parameters()).device
    batch = to_device(batch, device)
    out = model.forward_segmentation(
        batch["input_ids"], batch["sam_pixel_values"], pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"],
        labels=batch["labels"], gt_masks=batch["gt_masks"],
    )
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return {k: float(getattr(out, k).detach()) for k in ("loss", "lm_loss", "mask_bce", "mask_dice")}


__all__ = ["make_seg_batch", "train_step"]
