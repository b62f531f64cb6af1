"""Released Sa2VA checkpoints (ByteDance/Sa2VA-1B/4B/8B/26B, Qwen variants) behind `Segmenter`.

Built against the published code (github.com/magic-research/Sa2VA,
`projects/llava_sam2/hf/models/modeling_sa2va_chat.py` and `demo/demo.py`), which these checkpoints
ship as transformers remote code:

    model = AutoModelForCausalLM.from_pretrained(dir, dtype=..., trust_remote_code=True)  # torch_dtype= before transformers 5
    tokenizer = AutoTokenizer.from_pretrained(dir, trust_remote_code=True)
    out = model.predict_forward(image=PIL.Image, text="<image>Please segment the red cube.", tokenizer=tokenizer)
    out["prediction"]        # the answer text, with [SEG] where a mask was produced
    out["prediction_masks"]  # one array per [SEG]: (n_frames, H, W) bool, at the image's size

`predict_forward` also takes `video=[PIL.Image, ...]` (the VLM sees the first 5 frames, SAM 2
propagates over all of them at once); it has no streaming entry point that keeps SAM 2's memory
between calls. So this backend runs `predict_forward(image=...)` on keyframes (every
`redetect_every` frames) and repeats the last mask in between (source "held"); for tracking with
memory on a robot, use the project's own `sa2va` backend.

Limits, stated rather than hidden: the weights are not in this repository and nothing is downloaded
(`local_files_only=True`: `model_dir` must hold the checkpoint); the remote code we read moves its
inputs to CUDA unconditionally (`ids.cuda()` in `predict_forward`) and was written for bfloat16 on
a GPU, so `device="cpu"` is allowed only with `allow_cpu=True` (for checkpoints whose code differs,
and for tests with a stand-in model). The official API returns no confidence: `score` is 1.0 when a
mask came back, 0.0 when the model answered without `[SEG]`.
"""
from __future__ import annotations

import os
import time

import numpy as np

from vlm_agent.skills.segmentation import SegResult

DEFAULT_PROMPT = "<image>Please segment {query}."


class OfficialSa2VASegmenter:
    """`Segmenter` over a released Sa2VA checkpoint directory (see the module docstring).

    model_dir: a local directory with the checkpoint and its remote code; device: "cuda", "cuda:N"
    (or "cpu" with allow_cpu); dtype: torch dtype name ("bfloat16" as published, "float32", ...);
    prompt: the instruction template, `{query}` = the referring expression; redetect_every: call
    the model on every k-th frame, hold the mask in between.
    """

    label = "sa2va_official"

    def __init__(self, model_dir: str | None = None, device: str = "cuda", dtype: str = "bfloat16", prompt: str = DEFAULT_PROMPT,
                 redetect_every: int = 1, allow_cpu: bool = False, model=None, tokenizer=None, **_ignored):
        import torch

        if "{query}" not in prompt or "<image>" not in prompt:
            raise ValueError(f"prompt must contain '<image>' and '{{query}}', got {prompt!r}")
        if not isinstance(redetect_every, int) or redetect_every < 1:
            raise ValueError(f"redetect_every must be an int >= 1, got {redetect_every!r}")
        if str(device).startswith("cpu") and not allow_cpu:
            raise ValueError("released Sa2VA remote code moves its inputs to CUDA unconditionally (predict_forward calls .cuda()); "
                             "use device='cuda', or allow_cpu=True for a checkpoint whose code runs on the CPU")
        self.prompt, self.redetect_every = prompt, redetect_every
        if model is None:
            if not model_dir or not os.path.isfile(os.path.join(model_dir, "config.json")):
                raise ValueError(f"{model_dir!r} is not a local Sa2VA checkpoint directory (no config.json); the weights are not "
                                 "downloaded: put the released checkpoint there (e.g. huggingface-cli download ByteDance/Sa2VA-4B)")
            from transformers import AutoModelForCausalLM, AutoTokenizer

            torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype, trust_remote_code=True, local_files_only=True,
                                                         low_cpu_mem_usage=True)
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True, local_files_only=True)
            model = model.to(device)
        if not callable(getattr(model, "predict_forward", None)):
            raise ValueError(f"{type(model).__name__} has no predict_forward: not a released Sa2VA checkpoint")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.query: str | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.frame_index = 0
        self._last: SegResult | None = None

    def due_for_detection(self) -> bool:
        return self._last is None or self.frame_index % self.redetect_every == 0

    def reset(self, query: str) -> None:
        from vlm_agent.models.sa2va.processing_sa2va import validate_query

        self.query = validate_query(query)
        self._reset_state()

    def step(self, rgb: np.ndarray) -> SegResult:
        from PIL import Image

        if self.query is None:
            raise RuntimeError("call reset(query) before step(frame)")
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise ValueError(f"expected an RGB frame (H, W, 3) uint8, got shape {getattr(rgb, 'shape', None)}")
        t0 = time.perf_counter()
        due = self.due_for_detection()
        k = self.frame_index
        self.frame_index += 1
        h, w = rgb.shape[:2]
        if not due and self._last is not None and self._last.mask.shape == (h, w):
            last = self._last
            return SegResult(last.mask, last.score, "held", self.query, k, last.bbox, last.area, time.perf_counter() - t0, last.answer)
        out = self.model.predict_forward(image=Image.fromarray(rgb), text=self.prompt.format(query=self.query), tokenizer=self.tokenizer)
        mask, answer = self._first_mask(out, (h, w))
        from vlm_agent.models.sa2va.processing_sa2va import mask_bbox

        result = SegResult(mask, 1.0 if mask.any() or "[SEG]" in answer else 0.0, "detected", self.query, k, mask_bbox(mask), int(mask.sum()),
                           time.perf_counter() - t0, answer)
        self._last = result
        return result

    @staticmethod
    def _first_mask(out, size_hw) -> tuple[np.ndarray, str]:
        """(H, W) bool of the first [SEG]'s mask from predict_forward's dict (empty when none)."""
        if not isinstance(out, dict):
            raise ValueError(f"predict_forward returned {type(out).__name__}, expected a dict")
        answer = str(out.get("prediction", ""))
        masks = out.get("prediction_masks") or []
        if not masks:
            return np.zeros(size_hw, bool), answer
        m = np.asarray(masks[0])
        if m.ndim == 3:
            m = m[0]
        if m.shape != tuple(size_hw):
            raise ValueError(f"predict_forward returned a {m.shape} mask for a {tuple(size_hw)} frame")
        return m.astype(bool), answer


__all__ = ["OfficialSa2VASegmenter", "DEFAULT_PROMPT"]
