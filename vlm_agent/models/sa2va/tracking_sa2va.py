"""Video segmentation with Sa2VA: the VLM on keyframes, SAM 2 on every frame, SAM 2's memory between.

`Sa2VATracker` holds the whole tracking state explicitly:

    tracker.reset("the red cube")        # validates the query, forgets every frame
    result = tracker.step(rgb)          # (H, W, 3) uint8 -> TrackStep(mask (H, W) bool, score, source, ...)

Per frame, SAM 2's image encoder runs once (a `query_film` model's encoder reads the keyframe's
[SEG] state, so on a keyframe it runs after the VLM, and a re-detected frame is encoded again). On a *keyframe* (the first frame after `reset`, then
every `redetect_every` frames, and whenever a tracked frame scores below `min_score`) the VLM sees
the frame and the query, its `[SEG]` hidden state becomes SAM 2's prompt, SAM 2 decodes the mask,
and the frame enters SAM 2's memory as a *conditioning* frame (what a user's click makes in SAM 2's
video predictor). Every other frame is *tracked*: SAM 2's `track_step` attends, through its memory
attention, to the conditioning frames and the most recent tracked frames (their mask memories and
object pointers), with no prompt at all, as SAM 2 propagates a mask through a video. Sa2VA does the
same offline (the VLM sees a few keyframes, SAM 2 propagates over every frame); this is its
streaming form for a robot.

The memory is bounded: the newest `max_cond_frames` keyframes and the tracked frames of the last
`max_memory_frames` steps are kept (SAM 2 itself reads at most `num_maskmem - 1` = 6 recent frames
and 16 object pointers), so a long run costs the same per frame as a short one.

Calls into SAM 2 (`sam2==1.1.0`, pinned): `SAM2Base._track_step` (which also returns the predicted
IoUs that the public `track_step` drops) and `_encode_memory_in_output`, the two halves of
`track_step`, plus `_encode_new_memory` for keyframes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .processing_sa2va import largest_component, mask_bbox, mask_score, resize_mask_logits, threshold_mask, validate_query

SOURCES = ("detected", "re-detected", "tracked")


@dataclass
class TrackerConfig:
    """Settings of `Sa2VATracker`.

    redetect_every: a VLM call (keyframe) every this many frames; 1 = every frame (no tracking).
    min_score: a tracked frame whose score (predicted IoU x object presence) is below this is
        re-detected at once (same frame, VLM again); 0 disables score-triggered re-detection.
    min_redetect_gap: frames between two score-triggered re-detections (an absent object would
        otherwise call the VLM on every frame).
    mask_threshold: logit threshold (0 = probability 0.5).
    keep_largest_component: keep only the largest connected region of each mask.
    max_cond_frames: keyframes kept in SAM 2's memory (newest first).
    max_memory_frames: tracked frames kept in SAM 2's memory (the last this many frames).
    seg_decoding: "forced" feeds `[SEG]` as the answer and reads its hidden state (an untrained or
        partly trained LM still yields a prompt); "generate" decodes greedily and segments only when
        the LM emits `[SEG]` (an empty mask with score 0 when it does not), as Sa2VA's predict_forward.
    max_new_tokens: generation limit in "generate" mode.
    """

    redetect_every: int = 10
    min_score: float = 0.2
    min_redetect_gap: int = 3
    mask_threshold: float = 0.0
    keep_largest_component: bool = False
    max_cond_frames: int = 2
    max_memory_frames: int = 16
    seg_decoding: str = "forced"
    max_new_tokens: int = 8

    def __post_init__(self):
        for name, lo in (("redetect_every", 1), ("min_redetect_gap", 1), ("max_cond_frames", 1), ("max_memory_frames", 1), ("max_new_tokens", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"TrackerConfig.{name}: {v!r} must be an int >= {lo}")
        if not 0.0 <= float(self.min_score) <= 1.0:
            raise ValueError(f"TrackerConfig.min_score: {self.min_score!r} must be in [0, 1]")
        if self.seg_decoding not in ("forced", "generate"):
            raise ValueError(f"TrackerConfig.seg_decoding: {self.seg_decoding!r} must be 'forced' or 'generate'")


@dataclass
class TrackStep:
    """One frame's result. mask (H, W) bool in the source frame's pixels; score in [0, 1]; source:
    "detected" (a scheduled keyframe: VLM + SAM 2), "re-detected" (a tracked frame that scored below
    min_score, redone with the VLM) or "tracked" (SAM 2 memory only); bbox XYXY (max exclusive) or
    None; latency_s: the whole step; vlm_s: its VLM part (0 when tracked); answer: the LM's text in
    "generate" mode ("[SEG]" when forced)."""

    mask: np.ndarray
    score: float
    source: str
    frame_index: int
    area: int
    bbox: tuple[int, int, int, int] | None
    latency_s: float
    vlm_s: float = 0.0
    answer: str = ""


class Sa2VATracker:
    """Streaming referring segmentation (see the module docstring). Not thread-safe: one caller."""

    def __init__(self, model, processor, config: TrackerConfig | None = None):
        self.model, self.processor = model, processor
        self.config = config or TrackerConfig()
        self.query: str | None = None
        self._query_ids: list[int] | None = None
        self._clear()

    def _clear(self) -> None:
        self.frame_index = 0  # index of the next frame
        self._last_detection: int | None = None
        self._last_score_redetect = -(10 ** 9)
        self._memory = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        self._condition = None  # query_film: the last keyframe's [SEG] hidden state (1, D)

    # -- state -----------------------------------------------------------------------------------
    def reset(self, query: str) -> None:
        """Start tracking what `query` refers to; ValueError (with the reason) for a bad query."""
        text = validate_query(query)
        ids = self.processor.prompt_ids(text)
        self.query, self._query_ids = text, ids
        self._clear()

    @property
    def memory_frames(self) -> tuple[list[int], list[int]]:
        """(keyframe indices, tracked frame indices) now in SAM 2's memory."""
        return sorted(self._memory["cond_frame_outputs"]), sorted(self._memory["non_cond_frame_outputs"])

    def due_for_detection(self) -> bool:
        """True if the next `step` runs the VLM on schedule (first frame, or every `redetect_every`)."""
        if self._last_detection is None or not self._memory["cond_frame_outputs"]:  # nothing to track from yet
            return True
        return self.frame_index - self._last_detection >= self.config.redetect_every

    # -- one frame -------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, rgb: np.ndarray) -> TrackStep:
        """Segment one frame (H, W, 3) uint8. RuntimeError before `reset`; ValueError for a bad frame."""
        if self.query is None:
            raise RuntimeError("call reset(query) before step(frame)")
        t0 = time.perf_counter()
        model, cfg = self.model, self.config
        device = model.sam2.no_mem_embed.device
        pixels = self.processor.sam_pixel_values(rgb).to(device)
        film = model.config.query_film
        t = self.frame_index
        source, vlm_s, answer, feats = None, 0.0, "[SEG]", None
        if self.due_for_detection():
            source = "detected"
        else:  # a query_film model tracks with the features of the last keyframe's [SEG]
            feats = model.sam_features(pixels, condition=self._condition if film else None)
            tracked = self._track(feats, t)
            logits, score = tracked["pred_masks"][0, 0], tracked["score"]
            if score < cfg.min_score and t - self._last_score_redetect >= cfg.min_redetect_gap:
                source = "re-detected"
                self._last_score_redetect = t
            else:
                self._memory["non_cond_frame_outputs"][t] = tracked
                source = "tracked"
        if source != "tracked":
            t1 = time.perf_counter()
            prompt, hidden, answer = self._vlm_prompt(rgb)
            vlm_s = time.perf_counter() - t1
            if prompt is None:  # generate mode: the LM did not ask for a mask
                logits, score = torch.full((model.config.sam2_mask_size,) * 2, -1e4), 0.0
            else:
                if film:  # the encoder reads the new [SEG]: encode this frame again
                    self._condition = hidden
                    feats = model.sam_features(pixels, condition=hidden)
                elif feats is None:
                    feats = model.sam_features(pixels)
                out = self._detect(feats, prompt)
                logits, score = out["pred_masks"][0, 0], out["score"]
                self._memory["cond_frame_outputs"][t] = out
            self._last_detection = t
        self._prune(t)
        self.frame_index = t + 1
        mask = threshold_mask(resize_mask_logits(logits, rgb.shape[:2]), cfg.mask_threshold)
        if cfg.keep_largest_component:
            mask = largest_component(mask)
        return TrackStep(mask, float(score), source, t, int(mask.sum()), mask_bbox(mask), time.perf_counter() - t0, vlm_s, answer)

    # -- internals -------------------------------------------------------------------------------
    def _vlm_prompt(self, rgb: np.ndarray):
        """(prompt (1, C) or None, [SEG] hidden state (1, D) or None, answer text) from the VLM on this keyframe."""
        model, proc = self.model, self.processor
        device = model.get_input_embeddings().weight.device
        pv = proc.pixel_values(rgb).to(device)
        seg = model.config.seg_token_id
        prompt_ids = torch.tensor([self._query_ids], device=device)
        if self.config.seg_decoding == "forced":
            ids = torch.cat([prompt_ids, torch.tensor([[seg]], device=device)], 1)
            answer = "[SEG]"
        else:
            gen = model.generate(input_ids=prompt_ids, pixel_values=pv, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=self.config.max_new_tokens,
                                 do_sample=False, eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id)
            new = gen[0, prompt_ids.shape[1]:]
            answer = proc.tokenizer.decode(new, skip_special_tokens=False)
            if not bool((new == seg).any()):
                return None, None, answer
            # The hidden state at the position where [SEG] is fed back: one teacher-forced pass.
            ids = gen[:, : prompt_ids.shape[1] + int((new == seg).nonzero()[0, 0]) + 1]
        out = model(input_ids=ids, pixel_values=pv, output_hidden_states=True)
        hidden, _ = model.seg_hidden(out.hidden_states[-1], ids)
        hidden = hidden[-1:]
        return model.seg_projector(hidden), hidden, answer

    def _detect(self, feats, prompt) -> dict:
        """A keyframe: decode with the [SEG] prompt (no memory, as a conditioning frame) and encode
        the result into SAM 2's memory."""
        model, sam = self.model, self.model.sam2
        pred = model.decode_masks(feats, prompt.to(sam.no_mem_embed.dtype), gate_absent=True)
        out = {"point_inputs": None, "mask_inputs": None, "pred_masks": pred.low_res_logits, "pred_masks_high_res": pred.high_res_logits,
               "obj_ptr": pred.obj_ptr, "object_score_logits": pred.object_score_logits}
        sam._encode_memory_in_output(feats.vision_feats, feats.feat_sizes, None, True, pred.high_res_logits, pred.object_score_logits, out)
        out["score"] = mask_score(float(pred.iou[0]), float(pred.object_score_logits[0, 0]))
        return out

    def _track(self, feats, t: int) -> dict:
        """A tracked frame: SAM 2's memory-conditioned decoding without prompts."""
        sam = self.model.sam2
        out, sam_outputs, _, _ = sam._track_step(
            t, False, feats.vision_feats, feats.vision_pos, feats.feat_sizes, None, None, self._memory, t + 1, False, None
        )
        _, _, ious, low, high, obj_ptr, obj_logits = sam_outputs
        out.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr, object_score_logits=obj_logits)
        sam._encode_memory_in_output(feats.vision_feats, feats.feat_sizes, None, True, high, obj_logits, out)
        best_iou = float(ious.max(dim=-1).values[0])
        out["score"] = mask_score(best_iou, float(obj_logits[0, 0]) if sam.pred_obj_scores else None)
        return out

    def _prune(self, t: int) -> None:
        cond, noncond = self._memory["cond_frame_outputs"], self._memory["non_cond_frame_outputs"]
        for k in sorted(cond)[: -self.config.max_cond_frames]:
            del cond[k]
        for k in [k for k in noncond if k <= t - self.config.max_memory_frames]:
            del noncond[k]


__all__ = ["Sa2VATracker", "TrackerConfig", "TrackStep", "SOURCES"]
