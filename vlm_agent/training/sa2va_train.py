"""Trainer of the built-in Sa2VA-style referring segmenter on seg-clip shards (`training/seg_data.py`).

What a step trains is what the evaluator runs (`Sa2VATracker`): a batch holds `batch_size` windows
of `window_frames` consecutive clip frames. The window's first frame is a *keyframe*: the VLM reads
the query and that frame, the `[SEG]` hidden state prompts SAM 2's mask decoder (as
`Sa2VAModel.decode_masks`), and the result enters SAM 2's memory as a conditioning frame; every later
frame is *tracked* with no prompt, through SAM 2's memory attention over the earlier frames'
mask memories and object pointers (`SAM2Base._track_step`, the calls the tracker makes, frame
index and memory layout included), and enters the memory in turn. Gradients flow through the
whole window, so memory attention, the memory encoder and the object pointers learn to track,
as SAM 2 itself is trained on 8-frame clips.

The loss per frame follows SAM 2's training loss over the decoder's 3 candidate masks (the
tracker keeps the one with the highest *predicted* IoU, so the IoU head must be trained too):
    mask: the candidate with the lowest bce_w * BCE + dice_w * Dice (the config's
        `mask_bce_weight`, `mask_dice_weight`) against the ground truth, on the logits resized
        bilinearly to the frame's resolution, exactly as `postprocess_mask` resizes them before the
        evaluator scores the mask (objects are often 8-15 px wide at 128 px);
    iou: BCE between each candidate's predicted IoU (a sigmoid output) and its actual IoU, for all
        candidates (SAM 2's `supervise_all_iou`). SAM 2 uses L1 here, which, from random weights,
        saturates the sigmoid while every actual IoU is still 0 and never recovers (the kept
        candidate then stays a wrong one); BCE's gradient on the logit is prediction - target;
    object: BCE of the object-score logit against "the target is in view" (the tracker blanks a
        mask whose score says absent, and multiplies its confidence by it);
plus `lm_loss_weight` x the LM's cross-entropy on the `[SEG]` answer. A freshly built `nano` SAM 2
has random weights (none are released), so `sam2_trainable="all"` (the default here) trains
every SAM 2 parameter.

Model selection is by closed-loop clip mIoU on validation episodes through the code path of
`vlm-agent eval --suite seg --policy sa2va --model DIR` (`evaluation.rollouts.evaluate` with
`make_policy("sa2va", ...)`, tracking included), never by training loss. Layout of a run:
`out_dir/` the best checkpoint, `train_log.jsonl`, `training_curves.png`, `training_summary.json`;
`<out_dir>.work/` the latest checkpoint and `train_state.pt` (resume).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from vlm_agent.config import ConfigBase, param
from vlm_agent.devices import DEVICE_NAMES, check_device, check_device_name, to_device
from vlm_agent.models.sa2va.configuration_sa2va import SAM2_TRAINABLE, SAM2_VARIANTS
from vlm_agent.training.data import pad_right


@dataclasses.dataclass
class Sa2VATrainConfig(ConfigBase):
    """Training run settings (the `vlm-agent train --family sa2va` flags).

    Defaults: a 1.1M-parameter model (0.88M of it the `nano` SAM 2), SAM 2 at 128 px for 128 px
    evaluation frames (masks at 32 x 32, each cell 4 x 4 frame pixels, refined by the bilinear resize
    the loss also sees), 8 windows of 2 frames per step (16 SAM 2 frames; one step ~0.3-0.4 s on one
    CPU thread). Measured (issue 14, 600 training episodes, the same recipe on a GPU): val clip mIoU
    0.40 after 1000 steps, 0.48 after 2400 with SAM 2 at 128 px (0.37 at 64 px, 0.53 after 1960
    steps at 256 px, which costs ~3x per CPU step); tracked frames score as well as keyframes
    (windows of 2 train a memory that holds over 8-frame clips), simple expressions reach ~0.7 while
    relational ones ("the cube left of the blue ball") stay ~0.25: the mask mostly lands on the
    named reference object, a shortcut more steps have to unlearn.
    """

    data: list[str] = param([], "training seg shards (.npz from `training.seg_data.collect_seg_shards`, or folders of them)")
    out_dir: str = param("checkpoints/sa2va_nano", "checkpoint directory to write")
    init_from: str = param("", "start from this sa2va checkpoint directory instead of random weights (its sizes win)")
    sam2_checkpoint: str = param("", "a published SAM 2 checkpoint (.pt) to load into the SAM 2 part of a new model (not for nano)")
    minutes: float = param(25.0, "wall-clock training budget in minutes (closed-loop evaluations included)", min=0.1, max=10000.0)
    max_steps: int = param(100000, "optimiser steps at most", min=1)
    batch_size: int = param(8, "clip windows per batch", min=1, max=1024)
    window_frames: int = param(2, "frames per window: 1 keyframe (VLM + [SEG]) then tracked frames through SAM 2's memory", min=1, max=64)
    lr: float = param(2e-3, "peak AdamW learning rate", min=1e-6, max=1.0)
    weight_decay: float = param(0.01, "AdamW weight decay", min=0.0, max=1.0)
    warmup_steps: int = param(100, "linear warm-up steps", min=0)
    vlm_image_size: int = param(64, "the VLM's input size in pixels (frames are resized to it)", min=8, max=1024)
    patch_size: int = param(8, "vision patch size (64 / 8 = an 8 x 8 grid of image tokens)", min=1, max=64)
    vision_hidden: int = param(64, "vision tower width", min=8, max=2048)
    vision_layers: int = param(2, "vision tower layers", min=1, max=48)
    text_hidden: int = param(64, "LM width", min=8, max=4096)
    text_layers: int = param(2, "LM layers", min=1, max=64)
    heads: int = param(4, "attention heads (vision and LM)", min=1, max=64)
    sam2_variant: str = param("nano", "SAM 2 variant (nano: 0.88M parameters, random weights, trained here)", choices=tuple(SAM2_VARIANTS))
    sam2_image_size: int = param(128, "SAM 2's input side in pixels (a multiple of 32; masks at 1/4 of it)", min=32, max=4096)
    sam2_trainable: str = param("all", "SAM 2 parameters that train: all (nano from scratch), decoder, none", choices=SAM2_TRAINABLE)
    mask_bce_weight: float = param(2.0, "weight of the per-pixel BCE of the mask (Sa2VA: 2)", min=0.0, max=100.0)
    mask_dice_weight: float = param(1.0, "weight of the Dice loss of the mask (Sa2VA: 0.5; higher helps small objects)", min=0.0, max=100.0)
    iou_weight: float = param(1.0, "weight of the loss of SAM 2's predicted IoUs (BCE against the actual IoUs)", min=0.0, max=100.0)
    object_weight: float = param(1.0, "weight of the BCE of SAM 2's object-score logit", min=0.0, max=100.0)
    lm_weight: float = param(1.0, "weight of the LM cross-entropy on the [SEG] answer", min=0.0, max=100.0)
    query_film: int = param(0, "1 = condition SAM 2's image encoder on the [SEG] state (Sa2VAConfig.query_film); added "
                            "zero-initialised to an init_from model without it", min=0, max=1)
    query_noise: float = param(0.0, "share of training windows whose query gets 1-2 made-up words (random letters) at random "
                               "places, so the model learns to ignore words it never saw", min=0.0, max=1.0)
    val_episodes: int = param(50, "closed-loop validation episodes per evaluation (0 = none)", min=0)
    val_split: str = param("val", "episode split of the closed-loop selection", choices=("train", "val", "test"))
    clip_frames: int = param(8, "frames per validation clip (the evaluator's default is 8)", min=1, max=64)
    eval_every_min: float = param(5.0, "minutes between closed-loop evaluations", min=0.1)
    resume: int = param(1, "1 = continue from <out_dir>.work/train_state.pt when it exists (model, optimiser, step, clock)", min=0, max=1)
    threads: int = param(2, "torch CPU threads", min=1, max=256)
    seed: int = param(0, "random seed")
    device: str = param("cpu", f"torch device for training and the closed-loop selection ({', '.join(DEVICE_NAMES)}); checked before any work")

    def __post_init__(self):
        super().__post_init__()
        try:
            check_device_name(self.device)
        except ValueError as exc:
            raise ValueError(f"Sa2VATrainConfig.device: {exc}") from None
        if self.sam2_image_size % 32:
            raise ValueError(f"Sa2VATrainConfig.sam2_image_size: {self.sam2_image_size} is not a multiple of 32")


TrainConfig = Sa2VATrainConfig  # what `vlm-agent train --family sa2va` looks up


# -- batches ------------------------------------------------------------------------------------------
class ClipBatcher:
    """Batches of clip windows from a dataset dict (`seg_data.load_seg_shards`), CPU tensors.

    A window is `window` consecutive frames of one episode's clip starting at a random frame (the
    tracker re-detects mid-clip too, so keyframes are not only clip starts). Returns
    input_ids, attention_mask, labels (B, L): the query prompt with the `[SEG]` answer;
    pixel_values (B, 3, s, s): the VLM's view of each window's keyframe; sam_pixel_values
    (B * T, 3, S, S): SAM 2's view of every frame, window-major; gt_masks (B, T, H, W) float.
    """

    def __init__(self, data: dict, processor, window: int, seed: int = 0, query_noise: float = 0.0):
        lengths = np.asarray(data["episode_length"])
        if window > int(lengths.min()):
            raise ValueError(f"window_frames {window} is longer than the shortest clip in the data ({int(lengths.min())} frames)")
        if not 0.0 <= query_noise <= 1.0:
            raise ValueError(f"query_noise must be in [0, 1], got {query_noise!r}")
        self.data, self.processor, self.window, self.query_noise = data, processor, int(window), float(query_noise)
        self.rng = np.random.default_rng(seed)
        self.examples = [processor.training_example(str(q)) for q in data["queries"]]
        self.known_words = {w for q in data["queries"] for w in str(q).lower().split()}
        # Its own stream, so the windows drawn stay those of a run without noise.
        self.noise_rng = np.random.default_rng([seed, 0x9E15E])

    def noisy_query(self, query: str) -> str:
        """`query` with 1 or 2 made-up words (3-8 random letters, never a word of the training queries)
        inserted at random word boundaries. Why: trained on a handful of templates, the model answered
        "not here" to queries with a word it had never seen ("segment the yellow plate"); words it cannot
        know must not change the answer. Random strings teach that without guessing any test phrasing."""
        words = query.split()
        for _ in range(int(self.noise_rng.integers(1, 3))):
            while True:
                word = "".join(chr(ord("a") + int(c)) for c in self.noise_rng.integers(0, 26, int(self.noise_rng.integers(3, 9))))
                if word not in self.known_words:
                    break
            words.insert(int(self.noise_rng.integers(0, len(words) + 1)), word)
        return " ".join(words)

    def example(self, episode: int) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one window: the episode's query, noised with probability `query_noise`."""
        if self.query_noise and self.noise_rng.random() < self.query_noise:
            return self.processor.training_example(self.noisy_query(str(self.data["queries"][episode])))
        return self.examples[episode]

    @property
    def episodes(self) -> int:
        return len(self.data["queries"])

    def sample(self, n: int) -> dict:
        eps = self.rng.choice(self.episodes, size=min(n, self.episodes), replace=False)
        starts = [int(self.rng.integers(0, int(self.data["episode_length"][e]) - self.window + 1)) for e in eps]
        return self.build([int(e) for e in eps], starts)

    def build(self, episodes: list[int], starts: list[int]) -> dict:
        d, proc, t = self.data, self.processor, self.window
        examples = [self.example(e) for e in episodes]
        ids = [x[0] for x in examples]
        labels = [x[1] for x in examples]
        tokens = pad_right(ids, labels, proc.ids["pad_token_id"])
        rows = np.asarray([int(d["episode_start"][e]) + s + k for e, s in zip(episodes, starts) for k in range(t)])
        frames = d["frames"][rows]
        return {
            **tokens,
            "pixel_values": proc.pixel_values(list(frames[::t])),
            "sam_pixel_values": proc.sam_pixel_values(list(frames)),
            "gt_masks": torch.from_numpy(d["masks"][rows].reshape(len(episodes), t, *frames.shape[1:3]).astype(np.float32)),
        }


# -- the clip forward pass -------------------------------------------------------------------------------
def decode_candidates(model, features, prompts: torch.Tensor) -> tuple:
    """Keyframe decoding with the [SEG] prompts (K, C) over `features` (K frames), returning every
    candidate, in the layout of `SAM2Base._forward_sam_heads`: (low_res_multimasks (K, M, h, w),
    high_res_multimasks (K, M, S, S), ious (K, M), low_res_masks (K, 1, h, w), high_res_masks,
    obj_ptr (K, C), object_score_logits (K, 1)): `Sa2VAModel.decode_masks(..., gate_absent=True,
    candidates=True)`, what the tracker runs on a keyframe, with the other candidates kept."""
    pred = model.decode_masks(features, prompts, gate_absent=True, candidates=True)
    size = model.sam2.image_size
    high = F.interpolate(pred.candidate_logits, size=(size, size), mode="bilinear", align_corners=False)
    return (pred.candidate_logits, high, pred.candidate_ious, pred.low_res_logits, pred.high_res_logits, pred.obj_ptr,
            pred.object_score_logits)


def frame_losses(low_multi: torch.Tensor, ious: torch.Tensor, obj_logits: torch.Tensor, gt: torch.Tensor,
                 bce_weight: float, dice_weight: float) -> dict[str, torch.Tensor]:
    """SAM 2-style losses of one frame of K windows (see the module docstring).

    low_multi (K, M, h, w) candidate logits, ious (K, M) predicted IoUs, obj_logits (K, 1), gt (K, H, W)
    {0, 1} at the frame's resolution. Returns per-window tensors (K,): mask (the best candidate's
    weighted BCE + Dice; 0 where the target is out of view), bce, dice (of that candidate), iou (mean
    BCE over candidates), object (BCE), and `hit_iou`: the actual IoU of the candidate the tracker
    would keep (highest predicted IoU), without gradient."""
    k, m = low_multi.shape[:2]
    logits = F.interpolate(low_multi, size=gt.shape[-2:], mode="bilinear", align_corners=False).flatten(2)  # (K, M, HW)
    g = gt.flatten(1)[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, g, reduction="none").mean(-1)
    p = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (p * g).sum(-1) + 1.0) / (p.sum(-1) + g.sum(-1) + 1.0)
    combo = bce_weight * bce + dice_weight * dice
    best = combo.detach().argmin(-1)
    rows = torch.arange(k, device=logits.device)
    present = (gt.flatten(1).sum(-1) > 0).float()
    with torch.no_grad():
        hard = (logits > 0).float()
        inter = (hard * g).sum(-1)
        union = ((hard + g) > 0).float().sum(-1)
        actual = torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))  # (K, M)
        kept = actual[rows, ious.detach().argmax(-1)]
    return {
        "mask": combo[rows, best] * present,
        "bce": bce[rows, best],
        "dice": dice[rows, best],
        "iou": F.binary_cross_entropy(ious.float().clamp(0.0, 1.0), actual, reduction="none").mean(-1),
        "object": F.binary_cross_entropy_with_logits(obj_logits.float()[:, 0], present, reduction="none"),
        "hit_iou": kept,
    }


def clip_forward(model, batch: dict) -> tuple:
    """The keyframe + tracking pass over a `ClipBatcher` batch of B windows of T frames, as the
    tracker runs it (see the module docstring). Returns (the LM's output, [per frame k: SAM 2's head
    outputs for the B windows in `SAM2Base._forward_sam_heads`' layout, see `decode_candidates`])."""
    sam = model.sam2
    b, t = batch["gt_masks"].shape[:2]
    out = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"],
                labels=batch.get("labels"), output_hidden_states=True)
    hidden, rows = model.seg_hidden(out.hidden_states[-1], batch["input_ids"])
    if hidden.shape[0] != b or not torch.equal(rows, torch.arange(b, device=rows.device)):
        raise ValueError("every row of a clip batch needs exactly one [SEG] token")
    prompts = model.seg_projector(hidden)
    # a query_film encoder reads each window's keyframe [SEG] on all its frames, as the tracker does
    condition = hidden.repeat_interleave(t, dim=0) if model.config.query_film else None
    feats = model.sam_features(batch["sam_pixel_values"], condition=condition)
    memory = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    frames = []
    for k in range(t):
        f = feats.select([i * t + k for i in range(b)])
        if k == 0:
            current = {"point_inputs": None, "mask_inputs": None}
            heads = decode_candidates(model, f, prompts)
        else:  # the tracker's call: frame k of a stream whose memory holds frames 0..k-1
            current, heads, _, _ = sam._track_step(k, False, f.vision_feats, f.vision_pos, f.feat_sizes, None, None, memory, k + 1, False, None)
        _, _, _, low, high, ptr, obj = heads
        current.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=ptr, object_score_logits=obj)
        if k + 1 < t:  # the last frame's memory would feed nothing
            sam._encode_memory_in_output(f.vision_feats, f.feat_sizes, None, True, high, obj, current)
            memory["cond_frame_outputs" if k == 0 else "non_cond_frame_outputs"][k] = current
        frames.append(heads)
    return out, frames


def clip_losses(model, batch: dict, iou_weight: float = 1.0, object_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss of a `ClipBatcher` batch (see the module docstring); returns scalar tensors: loss
    (with gradient), lm_loss, mask_loss, mask_bce, mask_dice, iou_loss, object_loss, keyframe_iou and
    tracked_iou (the actual IoU of the masks the tracker would keep, on keyframes and tracked frames)."""
    cfg = model.config
    gt = batch["gt_masks"]
    t = gt.shape[1]
    out, frames = clip_forward(model, batch)
    per_frame = [frame_losses(heads[0], heads[2], heads[6], gt[:, k], cfg.mask_bce_weight, cfg.mask_dice_weight)
                 for k, heads in enumerate(frames)]
    stack = {name: torch.stack([fl[name] for fl in per_frame], 1) for name in per_frame[0]}  # (B, T)
    mask_loss, iou_loss, object_loss = stack["mask"].mean(), stack["iou"].mean(), stack["object"].mean()
    loss = mask_loss + iou_weight * iou_loss + object_weight * object_loss
    lm_loss = out.loss
    if lm_loss is not None:
        loss = loss + cfg.lm_loss_weight * lm_loss
    return {
        "loss": loss, "lm_loss": lm_loss if lm_loss is not None else torch.zeros(()), "mask_loss": mask_loss,
        "mask_bce": stack["bce"].mean(), "mask_dice": stack["dice"].mean(), "iou_loss": iou_loss, "object_loss": object_loss,
        "keyframe_iou": stack["hit_iou"][:, 0].mean(),
        "tracked_iou": stack["hit_iou"][:, 1:].mean() if t > 1 else torch.tensor(float("nan")),
    }


def clip_train_step(model, batch: dict, optimizer: torch.optim.Optimizer, iou_weight: float = 1.0, object_weight: float = 1.0,
                    max_grad_norm: float = 1.0) -> dict[str, float]:
    """One optimiser step on a `ClipBatcher` batch; returns `clip_losses`'s terms as floats."""
    model.train()
    device = next(model.parameters()).device
    losses = clip_losses(model, to_device(batch, device), iou_weight, object_weight)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad and p.grad is not None], max_grad_norm)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


# -- closed-loop selection --------------------------------------------------------------------------------
def closed_loop_seg_eval(model_dir: str, n_episodes: int, clip_frames: int = 8, image_size: int = 128, split: str = "val",
                         seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    """Seg-suite metrics of the sa2va checkpoint in `model_dir` on `n_episodes` episodes of `split`,
    by the code path of `vlm-agent eval --suite seg --policy sa2va --model DIR --episodes N --split S
    --seed S --width W --height W --clip-frames T` (tracker defaults, every clip frame scored):
    {"clip_miou", "clip_ciou", "miou", "ciou", "later_miou", "held_out_clip_miou", "episodes"}."""
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from tqdm import tqdm

    from vlm_agent.evaluation.policies import make_policy
    from vlm_agent.evaluation.rollouts import evaluate
    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.training.seg_data import seg_sim_config

    episodes = make_episodes("seg", split, n_episodes, seed)
    env = NavEnv(seg_sim_config(image_size))
    try:
        policy = make_policy("sa2va", "seg", model_dir=model_dir, env=env, seed=seed, device=device)
        bar = tqdm(total=n_episodes, desc="closed-loop val", disable=not progress, leave=False, unit="ep")
        result = evaluate("seg", policy, episodes, env, policy_name="sa2va", split=split, seed=seed, seg_clip_frames=clip_frames,
                          progress=lambda i, m: bar.update(1))
        bar.close()
    finally:
        env.close()
    m = result.metrics
    held = m.get("held_out") or {}
    return {"clip_miou": m["clip_miou"], "clip_ciou": m["clip_ciou"], "miou": m["miou"], "ciou": m["ciou"], "later_miou": m["later_miou"],
            "held_out_clip_miou": held.get("clip_miou", float("nan")), "episodes": n_episodes, "wall_s": round(result.wall_s, 1)}


def closed_loop_absent_eval(model_dir: str, n_episodes: int, clip_frames: int = 8, image_size: int = 128, split: str = "val",
                            seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    """How often the sa2va checkpoint in `model_dir` answers "not here" when its target is out of
    view: the first `n_episodes` seg episodes of `split` filmed turned away from the target
    (`seg_data.render_absent_clip`, as `collect --absent-fraction` makes them), every frame through
    the tracker (`Sa2VASegmenter`, its defaults). Returns {"empty_rate": share of frames with an
    empty mask, "clip_empty_rate": share of clips empty in every frame, "mean_false_pixels": mask
    pixels per frame, "episodes": clips scored (episodes with no hiding heading are skipped)}."""
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from tqdm import tqdm

    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.skills.segmentation import Sa2VASegmenter
    from vlm_agent.training.seg_data import render_absent_clip, seg_sim_config

    segmenter = Sa2VASegmenter(model_dir, device=device)
    env = NavEnv(seg_sim_config(image_size))
    empty, clips_empty, pixels, scored = [], [], [], 0
    try:
        for i, ep in enumerate(tqdm(make_episodes("seg", split, n_episodes, seed), desc="closed-loop absent", disable=not progress, leave=False)):
            clip = render_absent_clip(env, ep, clip_frames, np.random.default_rng([seed, i, 0xAB5E]))
            if clip is None:
                continue
            segmenter.reset(ep.instruction)
            areas = [int(np.asarray(segmenter.step(frame).mask, bool).sum()) for frame in clip[0]]
            empty += [a == 0 for a in areas]
            pixels += areas
            clips_empty.append(not any(areas))
            scored += 1
    finally:
        env.close()
    if not scored:
        return {"empty_rate": float("nan"), "clip_empty_rate": float("nan"), "mean_false_pixels": float("nan"), "episodes": 0}
    return {"empty_rate": float(np.mean(empty)), "clip_empty_rate": float(np.mean(clips_empty)), "mean_false_pixels": float(np.mean(pixels)),
            "episodes": scored}


# -- the run ---------------------------------------------------------------------------------------------
def build_model(cfg: Sa2VATrainConfig, queries):
    """(model, processor): loaded from `cfg.init_from` (its sizes; `sam2_trainable` and the mask loss
    weights from `cfg`), or new with a tokenizer trained over `queries`."""
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import load_model_and_processor, new_model
    from vlm_agent.models.sa2va.processing_sa2va import Sa2VAProcessor

    if cfg.init_from:
        model, processor = load_model_and_processor(cfg.init_from)
        if model.config.model_type != "sa2va":
            raise ValueError(f"init_from {cfg.init_from}: a '{model.config.model_type}' model, not a sa2va one")
        model.config.sam2_trainable = cfg.sam2_trainable
        model.config.mask_bce_weight, model.config.mask_dice_weight = cfg.mask_bce_weight, cfg.mask_dice_weight
        model.config.lm_loss_weight = cfg.lm_weight
        if cfg.query_film:
            model.add_query_film()
        model.apply_sam2_freezing()
        return model, processor
    if cfg.sam2_variant != "nano" and cfg.sam2_trainable == "all" and not cfg.sam2_checkpoint:
        raise ValueError(f"sam2_variant {cfg.sam2_variant}: give sam2_checkpoint (its published weights) or train the nano variant from scratch")
    tokenizer = train_tokenizer(sorted(set(str(q) for q in queries)), special_tokens=Sa2VAProcessor.special_tokens())
    model, processor = new_model("sa2va", tokenizer, image_size=cfg.vlm_image_size, patch_size=cfg.patch_size, vision_hidden=cfg.vision_hidden,
                                 vision_layers=cfg.vision_layers, text_hidden=cfg.text_hidden, text_layers=cfg.text_layers, heads=cfg.heads,
                                 sam2_variant=cfg.sam2_variant, sam2_image_size=cfg.sam2_image_size, sam2_trainable=cfg.sam2_trainable,
                                 mask_bce_weight=cfg.mask_bce_weight, mask_dice_weight=cfg.mask_dice_weight, lm_loss_weight=cfg.lm_weight,
                                 query_film=bool(cfg.query_film))
    if cfg.sam2_checkpoint:
        model.load_sam2_checkpoint(cfg.sam2_checkpoint)
    return model, processor


def train(cfg: Sa2VATrainConfig, progress: bool = True) -> dict:
    """Train on `cfg.data`, keep the checkpoint with the best closed-loop val clip mIoU (then cIoU)
    in `cfg.out_dir`; returns the run summary (also written as `training_summary.json`)."""
    device = torch.device(check_device(cfg.device))  # first: a bad device fails before any work

    from tqdm import tqdm

    from vlm_agent.training.navid import start_training_run, plot_training_curves, save_checkpoint, save_train_state
    from vlm_agent.training.seg_data import load_seg_shards

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if not cfg.data:
        raise ValueError("no training shards given (data)")
    data = load_seg_shards(cfg.data)
    frame_size = int(data["frames"].shape[1])
    model, processor = build_model(cfg, data["queries"])
    model.to(device)
    model.train()
    batcher = ClipBatcher(data, processor, cfg.window_frames, cfg.seed, query_noise=cfg.query_noise)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget_s = cfg.minutes * 60
    bar = tqdm(total=cfg.max_steps, desc="train sa2va", disable=not progress, unit="step")
    run = start_training_run(cfg.out_dir, model, opt, device, batcher, cfg.seed, bar, cfg.resume, best={"clip_miou": -1.0}, ema={})
    work_dir, log_path, state_path, step, ema, best, t0 = run
    log_f = open(log_path, "a")

    def evaluate_and_keep(step: int) -> None:
        nonlocal best
        model.eval()
        save_checkpoint(model, processor, work_dir)
        if cfg.val_episodes:
            res = closed_loop_seg_eval(work_dir, cfg.val_episodes, cfg.clip_frames, frame_size, cfg.val_split, cfg.seed, device=cfg.device,
                                       progress=progress)
            # reported, not selected on: "not here" is judged where it matters, by manipulation with the segmenter
            absent = closed_loop_absent_eval(work_dir, cfg.val_episodes, cfg.clip_frames, frame_size, cfg.val_split, cfg.seed,
                                             device=cfg.device, progress=progress)
            res.update({f"absent_{k}": v for k, v in absent.items()})
        else:
            res = {"clip_miou": 0.0, "clip_ciou": 0.0, "episodes": 0}
        model.train()
        log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "val": res, "loss_ema": ema.get("loss")}) + "\n")
        log_f.flush()
        if (res["clip_miou"], res["clip_ciou"]) >= (best["clip_miou"], best.get("clip_ciou", -1.0)):
            best = {**res, "step": step}
            save_checkpoint(model, processor, cfg.out_dir)
        save_train_state(state_path, model, opt, step, ema, best, time.monotonic() - t0)
        plot_training_curves(log_path, os.path.join(cfg.out_dir, "training_curves.png"), series=(("clip_miou", "clip mIoU"), ("clip_ciou", "clip cIoU")),
                             log_loss=True)
        absent_note = f", absent target empty {res['absent_empty_rate']:.2f}" if "absent_empty_rate" in res else ""
        bar.write(f"step {step}: closed-loop val clip mIoU {res['clip_miou']:.3f} cIoU {res['clip_ciou']:.3f}{absent_note} "
                  f"(best {best['clip_miou']:.3f} @ {best['step']})")

    last_eval = time.monotonic()
    try:
        while step < cfg.max_steps and time.monotonic() - t0 < budget_s:
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, (time.monotonic() - t0) / budget_s))) * 0.9 + 0.1
            for g in opt.param_groups:
                g["lr"] = lr
            terms = clip_train_step(model, batcher.sample(cfg.batch_size), opt, cfg.iou_weight, cfg.object_weight)
            step += 1
            for k, v in terms.items():
                if math.isfinite(v):
                    ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
            bar.update(1)
            bar.set_postfix(loss=f"{ema['loss']:.3f}", iou=f"{ema.get('tracked_iou', ema['keyframe_iou']):.2f}", lr=f"{lr:.1e}")
            if step % 50 == 0:
                log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "loss_ema": ema["loss"], "lr": lr,
                                        **{f"{k}_ema": round(v, 5) for k, v in ema.items() if k != "loss"}}) + "\n")
                log_f.flush()
            if time.monotonic() - last_eval > cfg.eval_every_min * 60:
                evaluate_and_keep(step)
                last_eval = time.monotonic()
        evaluate_and_keep(step)
    finally:
        bar.close()
        log_f.close()
    summary = {"steps": step, "train_minutes": round((time.monotonic() - t0) / 60, 1), "params": model.num_parameters(),
               "sam2_params": sum(p.numel() for p in model.sam2.parameters()), "frames": int(len(data["frames"])),
               "episodes": int(len(data["queries"])), "frame_size": frame_size, "best": best, "config": cfg.to_dict()}
    with open(os.path.join(cfg.out_dir, "training_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


__all__ = ["Sa2VATrainConfig", "TrainConfig", "ClipBatcher", "decode_candidates", "frame_losses", "clip_forward", "clip_losses", "clip_train_step",
           "closed_loop_seg_eval", "closed_loop_absent_eval", "build_model", "train"]
