"""Composite configuration of the embodied VLM core: a vision sub-config, a text sub-config, glue.

Like transformers' `LlavaConfig`, the model is described by two sub-configs taken from transformers
(`SiglipVisionConfig`/`CLIPVisionConfig` for the vision tower, `Qwen2Config`/`LlamaConfig` for the
causal LM) plus the few fields that glue them: the projector, the ids of the placeholder tokens of
the "multimodal sentence" and the continuous-state slot. It is a `PreTrainedConfig`, registered with
`AutoConfig`, so it round-trips through `config.json` with the sub-configs nested, and
`save_pretrained` / `from_pretrained` / `AutoConfig.from_pretrained` work as for any transformers model.

Token ids in the config are *derived*: the processor looks every special token up by name in the
tokenizer (`<img>`, `<state>`, and each family's own, e.g. `[SEG]`) and writes the ids here when a
model is created or assembled; loading checks that config and tokenizer still agree.
"""
from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

VISION_MODEL_TYPES = ("siglip_vision_model", "clip_vision_model")
TEXT_MODEL_TYPES = ("qwen2", "llama")


class EmbodiedVLMConfig(PreTrainedConfig):
    """Vision tower -> MLP projector -> causal LM, with `<img>` and `<state>` placeholder slots.

    Fields:
        vision_config: SigLIP or CLIP *vision* config (transformers). `image_size // patch_size` is the
            patch grid (a 384 px / patch 14 So400m tower has a 27 x 27 grid, as its conv computes).
            CLIP's class token is dropped so features are a pure grid; SigLIP's attention-pooling head
            is not built (`vision_use_head=False`): the core reads patch features only.
        text_config: Qwen2 or Llama config of the causal LM. `vocab_size` must cover the tokenizer.
        projector_hidden_act: activation of the 2-layer MLP projector (LLaVA uses gelu).
        image_token_id: id of `<img>`; each placeholder receives one projected vision feature.
        state_token_id: id of `<state>`; each placeholder receives one projected state vector.
        state_dim: length of a continuous state vector (robot/object state, PaLM-E); 0 disables it.
        pad_token_id, bos_token_id, eos_token_id: the tokenizer's ids (bos may be None: Qwen2 has none).
    """

    model_type = "embodied_vlm"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="siglip_vision_model"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector_hidden_act: str = "gelu"
    image_token_id: int = 4
    state_token_id: int = 5
    state_dim: int = 0
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        owner = type(self).__name__
        if self.vision_config.model_type not in VISION_MODEL_TYPES:
            raise ValueError(f"{owner}.vision_config: model_type '{self.vision_config.model_type}' is not one of {list(VISION_MODEL_TYPES)}")
        if self.text_config.model_type not in TEXT_MODEL_TYPES:
            raise ValueError(f"{owner}.text_config: model_type '{self.text_config.model_type}' is not one of {list(TEXT_MODEL_TYPES)}")
        if self.vision_config.model_type == "siglip_vision_model":
            # The pooled output is never read; building the head would waste parameters and compute.
            self.vision_config.vision_use_head = False
        # The LM's own tying decides; the composite mirrors it (as LlavaConfig does).
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        vocab = self.text_config.vocab_size
        for name in self.token_id_fields():
            v = getattr(self, name)
            optional = name == "bos_token_id"
            if (v is None and optional) or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab):
                continue
            raise ValueError(f"{owner}.{name}: {v!r} must be an int in [0, text_config.vocab_size={vocab})")
        if self.image_token_id == self.state_token_id:
            raise ValueError(f"{owner}: image_token_id and state_token_id must differ")
        if not isinstance(self.state_dim, int) or self.state_dim < 0:
            raise ValueError(f"{owner}.state_dim: must be an int >= 0, got {self.state_dim!r}")
        vc = self.vision_config
        if not vc.image_size >= vc.patch_size >= 1:
            raise ValueError(f"{owner}.vision_config: patch_size {vc.patch_size} must be in [1, image_size {vc.image_size}]")

    @classmethod
    def token_id_fields(cls) -> tuple[str, ...]:
        """Names of the config fields that hold token ids (families add theirs)."""
        return ("image_token_id", "state_token_id", "pad_token_id", "bos_token_id", "eos_token_id")

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Patches per image side: features per image = grid_size ** 2 (floor, as the patch conv)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def image_size(self) -> int:
        return self.vision_config.image_size


__all__ = ["EmbodiedVLMConfig", "VISION_MODEL_TYPES", "TEXT_MODEL_TYPES"]
