"""Configuration of the Sa2VA-style referring segmenter: the embodied VLM core + SAM 2.

Sa2VA (Yuan et al., 2025) lets a VLM answer with a `[SEG]` token; the LM's last-layer hidden state
at that token, through a small MLP, becomes one extra *sparse prompt embedding* of SAM 2's mask
decoder, which decodes the mask over SAM 2's own image-encoder features. SAM 2's memory then carries
the object from frame to frame. Here the VLM is the project's core (`EmbodiedVLMConfig`) and SAM 2 is
the real `sam2` package, built from its own hydra config (`sam2.build_sam.build_sam2`) with the
overrides this config names (`sam2_hydra_overrides()`): the image size, and for the `nano` variant a
much smaller Hiera and decoder width so that tests and CPU experiments stay fast.
"""
from __future__ import annotations

from ..embodied_vlm.configuration_embodied_vlm import EmbodiedVLMConfig

# Hiera strides: patch embedding 4, then 2 x 2 x 2; SAM 2 drops the coarsest level (`scalp: 1`), so
# the mask decoder reads stride-16 features and the image side must be a multiple of 32 (the first
# stage's windowed position embedding tiles 8 x 8 cells of a stride-4 grid).
SAM2_SIZE_MULTIPLE = 32

# A SAM 2 small enough for unit tests on a CPU (0.9M parameters; hiera-tiny has 39M): hiera-tiny's
# config with a 16-wide, 5-block Hiera (stages 1-1-2-1, one global-attention block), a 32-wide
# FPN / prompt / decoder / memory-attention space and a 16-wide memory. Same code paths, same keys
# layout as the released models (so strict loading, saving and tracking are all exercised).
NANO_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "++model.memory_attention.d_model=32",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=32",
    "++model.memory_attention.layer.dim_feedforward=64",
    "++model.memory_attention.layer.self_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=32",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "++model.memory_encoder.fuser.layer.dim=32",
)

# One table from a variant name to (config inside the sam2 package, hydra overrides, the published
# checkpoint file of that config), as SAM 2's own build_sam.py maps model ids. Released weights do
# not depend on the image size (Hiera interpolates its background position embedding; RoPE and the
# prompt encoder's Fourier features are computed, not learnt), so a hiera-tiny checkpoint loads
# strictly at 256 or 512 px as well as at the 1024 px it was trained at.
SAM2_VARIANTS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "nano": ("configs/sam2.1/sam2.1_hiera_t.yaml", NANO_OVERRIDES, None),
    "sam2.1_hiera_tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", (), "sam2.1_hiera_tiny.pt"),
    "sam2.1_hiera_small": ("configs/sam2.1/sam2.1_hiera_s.yaml", (), "sam2.1_hiera_small.pt"),
    "sam2.1_hiera_base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", (), "sam2.1_hiera_base_plus.pt"),
    "sam2.1_hiera_large": ("configs/sam2.1/sam2.1_hiera_l.yaml", (), "sam2.1_hiera_large.pt"),
    # Sa2VA's released models were trained with SAM 2 (not 2.1) hiera-large.
    "sam2_hiera_tiny": ("configs/sam2/sam2_hiera_t.yaml", (), "sam2_hiera_tiny.pt"),
    "sam2_hiera_large": ("configs/sam2/sam2_hiera_l.yaml", (), "sam2_hiera_large.pt"),
}


SAM2_TRAINABLE = ("none", "decoder", "all")


class Sa2VAConfig(EmbodiedVLMConfig):
    """Sa2VA fields on top of `EmbodiedVLMConfig`.

    Fields:
        seg_token_id: id of `[SEG]` (looked up by name in the tokenizer by the processor).
        sam2_variant: key of `SAM2_VARIANTS`: "nano" (tests, CPU default), "sam2.1_hiera_tiny", ...
        sam2_image_size: SAM 2's input side in pixels (square; a multiple of 32). 1024 is what the
            released SAM 2 checkpoints were trained at; 256-512 px is a CPU / Jetson trade (see
            benchmarks/seg_results.md); 64 for the nano test model. Masks come out at 1/4 of it.
        sam2_overrides: extra hydra overrides applied after the variant's (`++model.x.y=v`), for
            experiments; saved with the model so it rebuilds the same network.
        sam2_trainable: which SAM 2 parameters train. "none" (default) freezes SAM 2 entirely, the
            paper's decoupled design: the [SEG] embedding only *replaces SAM 2's prompt*, so SAM 2's
            image encoder, memory attention and memory encoder, trained on SA-1B/SA-V, keep
            working on the masks its decoder produces, tracking needs no video training of ours,
            and frozen parts cost no optimiser state. "decoder" also trains the mask decoder (the
            released Sa2VA-4B config does this; the rest stays frozen). "all" trains every SAM 2
            weight: only for the `nano` variant, which has no pretrained weights to keep (a
            randomly initialised SAM 2 must learn everything; issue 14 trains it).
        seg_hidden_act: activation of the [SEG] projection MLP (Sa2VA: ReLU).
        query_film: also condition SAM 2's image encoder on the query. The LM's hidden state at
            [SEG] (before the projector) sets a per-channel scale and shift (FiLM) of every Hiera
            stage's output, so the features the decoder and the memory read already depend on what
            was asked (`modeling_sa2va.QueryFiLM`; zero-initialised, so adding it to a trained model
            changes nothing until it trains). Not in Sa2VA, whose SAM 2 encoder is query-blind.
            Why: a query-blind encoder trained from scratch on a CPU learnt where objects are but not
            which one a phrase names (`sa2va_nano` v2 put its first mask on the wrong object in 104
            of 135 manipulation searches), and in the navigator a FiLM-conditioned stem was what
            made a small CNN ground colour (issue 16, docs/models.md). Off by default.
        mask_bce_weight, mask_dice_weight, lm_loss_weight: the loss is
            lm_loss_weight * LM cross-entropy + mask_bce_weight * sigmoid BCE + mask_dice_weight * Dice
            (Sa2VA's training config: 2.0 and 0.5 for the mask terms, the LM loss at 1).
    """

    model_type = "sa2va"
    seg_token_id: int = 6
    sam2_variant: str = "nano"
    sam2_image_size: int = 64
    sam2_overrides: list[str] | None = None
    sam2_trainable: str = "none"
    seg_hidden_act: str = "relu"
    query_film: bool = False
    mask_bce_weight: float = 2.0
    mask_dice_weight: float = 0.5
    lm_loss_weight: float = 1.0

    def __post_init__(self, **kwargs):
        self.sam2_overrides = [] if self.sam2_overrides is None else [str(o) for o in self.sam2_overrides]
        super().__post_init__(**kwargs)
        owner = type(self).__name__
        if self.sam2_variant not in SAM2_VARIANTS:
            raise ValueError(f"{owner}.sam2_variant: {self.sam2_variant!r} is not one of {sorted(SAM2_VARIANTS)}")
        s = self.sam2_image_size
        if not isinstance(s, int) or isinstance(s, bool) or not SAM2_SIZE_MULTIPLE <= s <= 4096 or s % SAM2_SIZE_MULTIPLE:
            raise ValueError(f"{owner}.sam2_image_size: {s!r} must be a multiple of {SAM2_SIZE_MULTIPLE} in [32, 4096]")
        if self.sam2_trainable not in SAM2_TRAINABLE:
            raise ValueError(f"{owner}.sam2_trainable: {self.sam2_trainable!r} is not one of {list(SAM2_TRAINABLE)}")
        for o in self.sam2_overrides:
            if not o.startswith(("++model.", "+model.", "model.")) or "=" not in o:
                raise ValueError(f"{owner}.sam2_overrides: {o!r} is not a hydra override of the model (e.g. '++model.num_maskmem=4')")
        if not isinstance(self.query_film, bool):
            raise ValueError(f"{owner}.query_film: {self.query_film!r} must be true or false")
        if self.seg_token_id in (self.image_token_id, self.state_token_id):
            raise ValueError(f"{owner}: seg_token_id must differ from image_token_id and state_token_id")
        for name in ("mask_bce_weight", "mask_dice_weight", "lm_loss_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= float(v) <= 100.0:
                raise ValueError(f"{owner}.{name}: {v!r} must be a number in [0, 100]")

    @classmethod
    def token_id_fields(cls) -> tuple[str, ...]:
        return super().token_id_fields() + ("seg_token_id",)

    # -- SAM 2 -----------------------------------------------------------------------------------
    @property
    def sam2_config_file(self) -> str:
        return SAM2_VARIANTS[self.sam2_variant][0]

    @property
    def sam2_checkpoint_name(self) -> str | None:
        """File name of the published SAM 2 checkpoint this variant loads (None for nano)."""
        return SAM2_VARIANTS[self.sam2_variant][2]

    @property
    def sam2_mask_size(self) -> int:
        """Side of SAM 2's low-resolution mask logits (what the decoder outputs): image size / 4."""
        return self.sam2_image_size // 4

    def sam2_hydra_overrides(self) -> list[str]:
        """Every hydra override that turns the variant's sam2 config into this model's SAM 2."""
        s = self.sam2_image_size
        g = s // 16  # memory attention works on the stride-16 grid; RoPE tables sized to it
        return [
            f"++model.image_size={s}",
            *SAM2_VARIANTS[self.sam2_variant][1],
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{g},{g}]",
            f"++model.memory_attention.layer.cross_attention.feat_sizes=[{g},{g}]",
            *self.sam2_overrides,
        ]


__all__ = ["Sa2VAConfig", "SAM2_VARIANTS", "SAM2_TRAINABLE", "NANO_OVERRIDES", "SAM2_SIZE_MULTIPLE"]
