"""Sa2VA-style referring segmentation on the embodied VLM core, with the real SAM 2.

Data flow (shapes for the nano test default: VLM 64 px, SAM 2 64 px, LM width D, SAM 2 width C=32):

    query + frame -> processor -> <s> query <img> x N [SEG]
        -> VLM (vision tower, projector, causal LM; `output_hidden_states=True`)
        -> hidden_states[-1] at the [SEG] position (D,) -> seg_projector (MLP) -> prompt (C,)
    frame -> SAM 2 image encoder (Hiera + FPN) -> stride-4/8/16 features (C channels at stride 16)
        [with `config.query_film`: every Hiera stage FiLM-modulated by the [SEG] hidden state]
    prompt + features -> SAM 2 prompt encoder (an empty point, as SAM 2 pads) + [SEG] as one more
        sparse prompt token -> SAM 2 mask decoder -> 3 candidate masks + predicted IoUs + object
        score -> best mask: logits (1, S/4, S/4)

This is Sa2VA's design (github.com/magic-research/Sa2VA: `text_hidden_fcs`, and the language
embedding concatenated to SAM 2's sparse prompt embeddings), written here against the pinned
`sam2==1.1.0` package: `SAM2Base` is built from SAM 2's own hydra config (`build_sam2_model`, the
steps of `sam2.build_sam.build_sam2`), its prompt encoder, mask decoder and memory are called as
SAM 2 calls them. Video tracking through SAM 2's memory is `tracking_sa2va.Sa2VATracker`.

What trains (`config.sam2_trainable`, default "none"): the VLM (tower, projector, LM) and the [SEG]
projector always; SAM 2 stays frozen in the paper's decoupled design (see the config docstring),
optionally its mask decoder ("decoder"), or all of it for the randomly initialised nano variant
("all"). Frozen SAM 2 modules stay in eval mode even when the model trains (memory attention has
dropout that would otherwise switch on).

SAM 2's weights are part of the model directory (`model.safetensors`, keys `sam2.*`), loaded
strictly with everything else. `load_sam2_checkpoint(path)` loads a *published* SAM 2 checkpoint
(e.g. `sam2.1_hiera_tiny.pt`) strictly into the `sam2` submodule, to assemble a model from real
parts; after `save_pretrained` the directory alone is complete.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from ..embodied_vlm.modeling_embodied_vlm import EmbodiedVLMModel
from .configuration_sa2va import Sa2VAConfig


def build_sam2_model(config: Sa2VAConfig) -> nn.Module:
    """SAM 2 (`sam2.modeling.sam2_base.SAM2Base`) from the variant's hydra config and
    `config.sam2_hydra_overrides()`, with random weights.

    The same steps as `sam2.build_sam.build_sam2` (compose the config, resolve, instantiate) through
    the names that module uses, without its `.to(device)`: transformers builds models on the meta
    device while loading, and places them itself. Weights: `load_sam2_checkpoint` or the model
    directory."""
    import sam2  # noqa: F401  (initialises hydra's config module "sam2", as build_sam expects)
    from sam2.build_sam import OmegaConf, compose, instantiate

    cfg = compose(config_name=config.sam2_config_file, overrides=config.sam2_hydra_overrides())
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def refresh_sam2_constants(sam: nn.Module) -> None:
    """Recompute the tensors SAM 2 keeps as plain attributes (RoPE tables of memory attention).

    They are neither parameters nor buffers, so a model built on the meta device (transformers'
    loading) would keep meta tensors there; they are pure functions of the config."""
    for module in sam.modules():
        if hasattr(module, "freqs_cis") and hasattr(module, "compute_cis"):
            # RoPE over a square feature grid (SAM 2's configs, and ours: feat_sizes [g, g]).
            side = int(round(module.freqs_cis.shape[0] ** 0.5))
            device = next((p.device for p in module.parameters() if p.device.type != "meta"), torch.device("cpu"))
            with torch.device(device):
                module.freqs_cis = module.compute_cis(end_x=side, end_y=side)


class SegProjector(nn.Module):
    """The [SEG] projection MLP (Sa2VA's `text_hidden_fcs`): LM hidden (..., D) -> SAM 2 prompt
    space (..., C): Linear(D, D) -> act -> Linear(D, C)."""

    def __init__(self, in_dim: int, out_dim: int, act: str = "relu"):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, in_dim)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class QueryFiLM(nn.Module):
    """FiLM of SAM 2's Hiera trunk from the query (`Sa2VAConfig.query_film`).

    condition (N, D): the LM's hidden state at [SEG] for each of N frames -> per Hiera stage s a
    scale and shift (N, C_s) applied to that stage's last block output (N, H, W, C_s) as
    x * (1 + gamma) + beta. One linear layer, zero-initialised: a model that gains it is unchanged
    until it trains. Stage outputs feed the FPN, so the stride-4/8/16 maps that the mask decoder and
    SAM 2's memory read are all query-dependent."""

    def __init__(self, in_dim: int, stage_dims: list[int]):
        super().__init__()
        self.stage_dims = [int(c) for c in stage_dims]
        self.linear = nn.Linear(in_dim, 2 * sum(self.stage_dims))
        self.linear._zero_init = True  # EmbodiedVLMModel._init_weights zeroes it
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, condition: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """condition (N, D) -> [(gamma (N, C_s), beta (N, C_s)) per stage]."""
        out = self.linear(condition)
        gammas, betas = out.split([sum(self.stage_dims)] * 2, dim=-1)
        return list(zip(gammas.split(self.stage_dims, dim=-1), betas.split(self.stage_dims, dim=-1)))


@dataclass
class SamFeatures:
    """SAM 2 image features of N frames in SAM 2's layout (what `track_step` takes).

    vision_feats: per level (HW, N, C), finest first (the stride-4 and stride-8 levels already
        through the decoder's conv_s0/conv_s1, as `SAM2Base.forward_image` leaves them);
    vision_pos: the matching positional encodings; feat_sizes: [(H, W)] per level.
    """

    vision_feats: list[torch.Tensor]
    vision_pos: list[torch.Tensor]
    feat_sizes: list[tuple[int, int]]

    @property
    def batch(self) -> int:
        return int(self.vision_feats[-1].shape[1])

    def select(self, index: torch.Tensor | list[int]) -> "SamFeatures":
        """Features of frames `index` (with repeats), e.g. one per [SEG] token."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.vision_feats[-1].device)
        return SamFeatures([f.index_select(1, idx) for f in self.vision_feats], [p.index_select(1, idx) for p in self.vision_pos], list(self.feat_sizes))

    def high_res(self) -> list[torch.Tensor] | None:
        """The finer levels as (N, C', H, W) maps for the decoder's high-resolution path."""
        if len(self.vision_feats) < 2:
            return None
        return [x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], *s) for x, s in zip(self.vision_feats[:-1], self.feat_sizes[:-1])]


@dataclass
class MaskPrediction:
    """SAM 2 decoder output for K prompts.

    low_res_logits (K, 1, S/4, S/4): the chosen mask's logits (highest predicted IoU of the
        candidates); high_res_logits (K, 1, S, S): the same upsampled to SAM 2's input size;
    iou (K,): predicted IoU of the chosen mask; object_score_logits (K, 1): object presence (>0 =
        present); obj_ptr (K, C): SAM 2's object pointer for its memory.
    With `decode_masks(..., candidates=True)` (training: every candidate is supervised) also
    candidate_logits (K, M, S/4, S/4), gated like the chosen mask, and candidate_ious (K, M).
    """

    low_res_logits: torch.Tensor
    high_res_logits: torch.Tensor
    iou: torch.Tensor
    object_score_logits: torch.Tensor
    obj_ptr: torch.Tensor
    candidate_logits: torch.Tensor | None = None
    candidate_ious: torch.Tensor | None = None


@dataclass
class Sa2VAOutput:
    """`forward_segmentation` result: loss (weighted sum), its terms, the LM logits, the mask logits
    (K, 1, S/4, S/4) of every [SEG], and the prompts (K, C) they came from."""

    loss: torch.Tensor | None
    lm_loss: torch.Tensor | None
    mask_bce: torch.Tensor | None
    mask_dice: torch.Tensor | None
    logits: torch.Tensor
    mask_logits: torch.Tensor
    iou: torch.Tensor
    seg_prompts: torch.Tensor


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel sigmoid binary cross-entropy over K masks (logits, targets: (K, h, w))."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="mean")


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over K masks of 1 - (2 |P.G| + eps) / (|P| + |G| + eps), P = sigmoid(logits) (the
    "naive" Dice with eps 1 of Sa2VA's config). logits, targets: (K, h, w)."""
    p = torch.sigmoid(logits.float()).flatten(1)
    g = targets.float().flatten(1)
    return (1.0 - (2.0 * (p * g).sum(1) + eps) / (p.sum(1) + g.sum(1) + eps)).mean()


class Sa2VAModel(EmbodiedVLMModel):
    """Embodied VLM + [SEG] projector + SAM 2.

    Attributes (besides the core's): `seg_projector` (`SegProjector`), `sam2` (`SAM2Base`).
    `forward` is the core's (the LM over the multimodal sentence); segmentation goes through
    `forward_segmentation` (training, with the loss) or `seg_prompts` + `sam_features` +
    `decode_masks` (inference; the tracker uses these).
    """

    config_class = Sa2VAConfig
    config: Sa2VAConfig

    def __init__(self, config: Sa2VAConfig):
        super().__init__(config)
        self.sam2 = build_sam2_model(config)
        self.seg_projector = SegProjector(config.text_config.hidden_size, self.sam2.hidden_dim, config.seg_hidden_act)
        self._film_params: list | None = None  # set only while `sam_features` runs a conditioned pass
        self._film_hooks: list = []
        if config.query_film:
            self._install_query_film()
        self.post_init()
        self.apply_sam2_freezing()

    # -- query FiLM of the image encoder (config.query_film) ---------------------------------------
    def _install_query_film(self) -> None:
        trunk = self.sam2.image_encoder.trunk
        ends = list(trunk.stage_ends)
        self.query_film = QueryFiLM(self.config.text_config.hidden_size, [trunk.blocks[i].dim_out for i in ends])
        for stage, i in enumerate(ends):
            self._film_hooks.append(trunk.blocks[i].register_forward_hook(self._film_hook(stage)))

    def _film_hook(self, stage: int):
        def hook(module, inputs, output):
            params = self._film_params
            if params is None:
                raise RuntimeError("a query_film model's image encoder ran without a condition: call sam_features(..., condition=...)")
            gamma, beta = params[stage]
            return output * (1.0 + gamma[:, None, None, :].to(output.dtype)) + beta[:, None, None, :].to(output.dtype)
        return hook

    def add_query_film(self) -> None:
        """Give a model without it the query FiLM (`Sa2VAConfig.query_film`), zero-initialised, so the
        model computes exactly what it did until the new layer trains (fine-tuning a shipped checkpoint)."""
        if self.config.query_film:
            return
        self.config.query_film = True
        self._install_query_film()
        ref = self.seg_projector.linear_1.weight
        self.query_film.to(device=ref.device, dtype=ref.dtype)

    # -- freezing and modes ------------------------------------------------------------------------
    def sam2_trainable_modules(self) -> list[nn.Module]:
        mode = self.config.sam2_trainable
        if mode == "all":
            return [self.sam2]
        if mode == "decoder":
            return [self.sam2.sam_mask_decoder]
        return []

    def apply_sam2_freezing(self) -> None:
        """requires_grad per `config.sam2_trainable` (idempotent; re-applied after loading)."""
        self.sam2.requires_grad_(False)
        for m in self.sam2_trainable_modules():
            m.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen SAM 2 parts always run as at inference (memory attention has dropout).
        self.sam2.eval()
        for m in self.sam2_trainable_modules():
            m.train(mode)
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        out = super().from_pretrained(*args, **kwargs)
        model = out[0] if isinstance(out, tuple) else out
        refresh_sam2_constants(model.sam2)
        model.apply_sam2_freezing()
        return out

    def load_sam2_checkpoint(self, path: str | os.PathLike) -> None:
        """Load a published SAM 2 checkpoint (`{"model": state_dict}`, as SAM 2 releases them, or a
        bare state dict) strictly into `self.sam2`: ValueError naming missing/unexpected/mismatched keys."""
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        own = self.sam2.state_dict()
        mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
        if mismatched:
            raise ValueError(f"{path}: SAM 2 weights of another shape for {mismatched[:8]} (is sam2_variant {self.config.sam2_variant!r} right?)")
        result = self.sam2.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{path}: not a {self.config.sam2_variant} SAM 2 checkpoint: missing {list(result.missing_keys)[:8]}, unexpected {list(result.unexpected_keys)[:8]}")

    # -- [SEG] -> prompt ---------------------------------------------------------------------------
    def seg_hidden(self, last_hidden: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """last_hidden (B, L, D) = `hidden_states[-1]`, input_ids (B, L) -> (hidden (K, D), rows (K,)):
        the LM's hidden state at every [SEG] position, row-major, and the batch row of each (the
        query FiLM's condition; `seg_projector` of it is the prompt)."""
        mask = input_ids == self.config.seg_token_id
        return last_hidden[mask].to(self.seg_projector.linear_1.weight.dtype), mask.nonzero()[:, 0]

    def seg_prompts(self, last_hidden: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """last_hidden (B, L, D) = `hidden_states[-1]`, input_ids (B, L) -> (prompts (K, C), rows (K,)):
        the projected hidden state at every [SEG] position, row-major, and the batch row of each."""
        hidden, rows = self.seg_hidden(last_hidden, input_ids)
        return self.seg_projector(hidden), rows

    # -- SAM 2 -----------------------------------------------------------------------------------
    def sam_features(self, sam_pixel_values: torch.Tensor, condition: torch.Tensor | None = None) -> SamFeatures:
        """SAM 2 image features of sam_pixel_values (N, 3, S, S) (the processor's `sam_pixel_values`).

        condition (N, D): the [SEG] hidden state each frame is encoded for (`seg_hidden`); required
        by a `query_film` model, whose features depend on the query, and refused by any other."""
        sam = self.sam2
        s = self.config.sam2_image_size
        if sam_pixel_values.ndim != 4 or tuple(sam_pixel_values.shape[1:]) != (3, s, s):
            raise ValueError(f"sam_pixel_values must be (N, 3, {s}, {s}), got {tuple(sam_pixel_values.shape)}")
        film = self.config.query_film
        if film != (condition is not None):
            raise ValueError("a query_film model needs sam_features(..., condition=[SEG] hidden states)" if film
                             else "condition is only for a query_film model (its image encoder is query-blind)")
        if film and (condition.ndim != 2 or condition.shape[0] != sam_pixel_values.shape[0]):
            raise ValueError(f"condition must be (N={sam_pixel_values.shape[0]}, D), got {tuple(condition.shape)}")
        dtype = sam.no_mem_embed.dtype
        trainable = list(sam.image_encoder.parameters()) + (list(self.query_film.parameters()) if film else [])
        grad = any(p.requires_grad for p in trainable) and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            self._film_params = self.query_film(condition.to(dtype)) if film else None
            try:
                backbone = sam.forward_image(sam_pixel_values.to(device=sam.no_mem_embed.device, dtype=dtype))
            finally:
                self._film_params = None
            _, feats, pos, sizes = sam._prepare_backbone_features(backbone)
        return SamFeatures(list(feats), list(pos), [tuple(int(v) for v in s_) for s_ in sizes])

    def decode_masks(self, features: SamFeatures, prompts: torch.Tensor, pix_feat: torch.Tensor | None = None,
                     multimask: bool | None = None, gate_absent: bool = False, candidates: bool = False) -> MaskPrediction:
        """SAM 2's mask decoder with each [SEG] prompt (K, C) as an extra sparse prompt token over
        `features` (K frames, one per prompt).

        pix_feat: the stride-16 map the decoder reads, (K, C, H, W); default: the frame's features as
            SAM 2 conditions a first frame with no memory (`no_mem_embed`). The tracker passes
            memory-conditioned features here.
        multimask: the decoder's 3 candidates + best-by-predicted-IoU (SAM 2's choice for a prompt
            without clicks on a conditioning frame); None = SAM 2's own rule.
        gate_absent: replace the logits of masks whose object score says "absent" by SAM 2's
            NO_OBJ_SCORE (inference, as SAM 2 does; training keeps the raw logits).
        candidates: also return every candidate's logits and predicted IoU (`MaskPrediction`).
        """
        sam = self.sam2
        k = prompts.shape[0]
        if features.batch != k:
            raise ValueError(f"{k} prompts for features of {features.batch} frames (select one frame per prompt)")
        if pix_feat is None:
            pix_feat = sam._prepare_memory_conditioned_features(
                frame_idx=0, is_init_cond_frame=True, current_vision_feats=features.vision_feats[-1:],
                current_vision_pos_embeds=features.vision_pos[-1:], feat_sizes=features.feat_sizes[-1:],
                output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}, num_frames=1,
            )
        if multimask is None:
            multimask = sam._use_multimask(is_init_cond_frame=True, point_inputs=None)
        device = pix_feat.device
        # No clicks: SAM 2 pads the point prompt with one "not a point" (label -1); [SEG] follows it.
        points = torch.zeros(k, 1, 2, device=device)
        labels = -torch.ones(k, 1, dtype=torch.int32, device=device)
        sparse, dense = sam.sam_prompt_encoder(points=(points, labels), boxes=None, masks=None)
        sparse = torch.cat([sparse, prompts[:, None].to(sparse.dtype)], dim=1)
        low, ious, tokens, obj_logits = sam.sam_mask_decoder(
            image_embeddings=pix_feat, image_pe=sam.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=False, high_res_features=features.high_res(),
        )
        low = low.float()
        best = torch.argmax(ious, dim=-1) if multimask else torch.zeros(k, dtype=torch.long, device=device)
        rows = torch.arange(k, device=device)
        token = tokens[rows, best] if (multimask and tokens.shape[1] > 1) else tokens[:, 0]
        if not sam.pred_obj_scores:
            obj_logits = torch.full((k, 1), 10.0, device=device, dtype=low.dtype)
        present = (obj_logits > 0).float()
        if gate_absent and sam.pred_obj_scores:
            from sam2.modeling.sam2_base import NO_OBJ_SCORE

            low = torch.where(present[:, :, None, None] > 0, low, torch.full_like(low, NO_OBJ_SCORE))
        low_best = low[rows, best].unsqueeze(1)
        ptr = sam.obj_ptr_proj(token)
        if sam.pred_obj_scores and sam.use_obj_ptrs_in_encoder:
            if sam.fixed_no_obj_ptr:
                ptr = present * ptr
            ptr = ptr + (1 - present) * sam.no_obj_ptr
        high = F.interpolate(low_best, size=(sam.image_size, sam.image_size), mode="bilinear", align_corners=False)
        return MaskPrediction(low_best, high, ious[rows, best].float(), obj_logits.float(), ptr,
                              low if candidates else None, ious.float() if candidates else None)

    # -- training --------------------------------------------------------------------------------
    def forward_segmentation(
        self,
        input_ids: torch.LongTensor,
        sam_pixel_values: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        gt_masks: torch.Tensor | None = None,
        seg_image_index: torch.Tensor | None = None,
    ) -> Sa2VAOutput:
        """One pass for training (and evaluation of the loss).

        input_ids (B, L) with `<img>` slots filled from pixel_values (B', 3, s, s) or image_features, and
        one or more [SEG] tokens; sam_pixel_values (N, 3, S, S): SAM 2's view of the images; by default
        [SEG] k segments image `row of k` (N = B), else `seg_image_index` (K,) names the image;
        labels (B, L) (-100 = no loss) give the LM loss; gt_masks (K, H, W) {0, 1} in [SEG] order give
        the mask losses (resized with nearest to the decoder's S/4 grid, as Sa2VA does).
        """
        cfg = self.config
        out = self(input_ids=input_ids, pixel_values=pixel_values, image_features=image_features, attention_mask=attention_mask,
                   labels=labels, output_hidden_states=True)
        hidden, rows = self.seg_hidden(out.hidden_states[-1], input_ids)
        if hidden.shape[0] == 0:
            raise ValueError("no [SEG] token in input_ids: nothing to segment")
        prompts = self.seg_projector(hidden)
        index = rows if seg_image_index is None else torch.as_tensor(seg_image_index, device=rows.device)
        if index.shape[0] != prompts.shape[0]:
            raise ValueError(f"seg_image_index names {index.shape[0]} images for {prompts.shape[0]} [SEG] tokens")
        if cfg.query_film:  # one encoder pass per [SEG]: the features depend on the query
            feats = self.sam_features(sam_pixel_values.index_select(0, index.to(sam_pixel_values.device)), condition=hidden)
        else:
            feats = self.sam_features(sam_pixel_values).select(index)
        pred = self.decode_masks(feats, prompts)
        mask_logits = pred.low_res_logits[:, 0]
        lm_loss = out.loss
        bce = dice = loss = None
        if gt_masks is not None:
            gt = torch.as_tensor(gt_masks, device=mask_logits.device).float()
            if gt.ndim != 3 or gt.shape[0] != mask_logits.shape[0]:
                raise ValueError(f"gt_masks must be (K={mask_logits.shape[0]}, H, W), got {tuple(gt.shape)}")
            gt = F.interpolate(gt[:, None], size=mask_logits.shape[-2:], mode="nearest")[:, 0]
            bce, dice = sigmoid_bce_loss(mask_logits, gt), dice_loss(mask_logits, gt)
            loss = cfg.mask_bce_weight * bce + cfg.mask_dice_weight * dice
        if lm_loss is not None:
            loss = cfg.lm_loss_weight * lm_loss if loss is None else loss + cfg.lm_loss_weight * lm_loss
        return Sa2VAOutput(loss, lm_loss, bce, dice, out.logits, pred.low_res_logits, pred.iou, prompts)


__all__ = ["Sa2VAModel", "SegProjector", "QueryFiLM", "SamFeatures", "MaskPrediction", "Sa2VAOutput", "build_sam2_model",
           "refresh_sam2_constants", "sigmoid_bce_loss", "dice_loss"]
