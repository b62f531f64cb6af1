"""Composite configuration of the embodied VLM core: a vision sub-config, a text sub-config, glue.

Like transformers' `LlavaConfig`, the model is described by two sub-configs taken from transformers
(`SiglipVisionConfig`/`CLIPVisionConfig` for the vision tower, `Qwen2Config`/`LlamaConfig` for the
causal LM) plus the few fields that glue them: the projector, the placeholder token ids of the
"multimodal sentence" and the continuous-state slot. It serialises to one `config.json` with the
sub-configs nested, so a directory holds everything needed to rebuild the model before loading
weights strictly.

We keep this a plain dataclass instead of a `PreTrainedConfig` subclass on purpose: transformers 5's
config machinery (strict hub dataclasses, auto-mapping registration) is heavy for a local model
family, and all we need is a validated, JSON-round-trippable description.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from transformers import AutoConfig, PretrainedConfig

VISION_MODEL_TYPES = ("siglip_vision_model", "clip_vision_model")
TEXT_MODEL_TYPES = ("qwen2", "llama")
CONFIG_NAME = "config.json"


def _sub_config(value: Any, allowed: tuple[str, ...], owner: str, name: str) -> PretrainedConfig:
    """Accept a transformers config or its dict form; reject model types the core does not support."""
    if isinstance(value, dict):
        value = dict(value)
        model_type = value.pop("model_type", None)
        if model_type is None:
            raise ValueError(f"{owner}.{name}: dict needs a 'model_type' (one of {list(allowed)})")
        for key in ("transformers_version", "architectures", "_name_or_path"):
            value.pop(key, None)
        value = AutoConfig.for_model(model_type, **value)
    if not isinstance(value, PretrainedConfig):
        raise ValueError(f"{owner}.{name}: expected a transformers config or dict, got {type(value).__name__}")
    if value.model_type not in allowed:
        raise ValueError(f"{owner}.{name}: model_type '{value.model_type}' is not one of {list(allowed)}")
    return value


@dataclasses.dataclass
class EmbodiedVLMConfig:
    """Vision tower -> MLP projector -> causal LM, with `<img>` and `<state>` placeholder slots.

    Fields:
        vision_config: SigLIP or CLIP *vision* config (transformers). Its `image_size`/`patch_size`
            fix the patch grid; CLIP's class token is dropped so features are a pure grid.
        text_config: Qwen2 or Llama config of the causal LM. `vocab_size` must cover the tokenizer.
        projector_hidden_act: activation of the 2-layer MLP projector (LLaVA uses gelu).
        image_token_id: id of `<img>`; each placeholder receives one projected vision feature.
        state_token_id: id of `<state>`; each placeholder receives one projected state vector.
        state_dim: length of a continuous state vector (robot/object state, PaLM-E); 0 disables it.
        pad_token_id, bos_token_id, eos_token_id: special ids of the tokenizer saved alongside.
        model_type: the registry name used to rebuild the right class from a directory.
    """

    vision_config: Any = None
    text_config: Any = None
    projector_hidden_act: str = "gelu"
    image_token_id: int = 4
    state_token_id: int = 5
    state_dim: int = 0
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    model_type: str = "embodied_vlm"

    def __post_init__(self):
        owner = type(self).__name__
        if self.vision_config is None or self.text_config is None:
            raise ValueError(f"{owner}: vision_config and text_config are both required")
        self.vision_config = _sub_config(self.vision_config, VISION_MODEL_TYPES, owner, "vision_config")
        self.text_config = _sub_config(self.text_config, TEXT_MODEL_TYPES, owner, "text_config")
        vocab = self.text_config.vocab_size
        for name in ("image_token_id", "state_token_id", "pad_token_id", "bos_token_id", "eos_token_id"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v < vocab:
                raise ValueError(f"{owner}.{name}: {v!r} must be an int in [0, text_config.vocab_size={vocab})")
        if self.image_token_id == self.state_token_id:
            raise ValueError(f"{owner}: image_token_id and state_token_id must differ")
        if not isinstance(self.state_dim, int) or self.state_dim < 0:
            raise ValueError(f"{owner}.state_dim: must be an int >= 0, got {self.state_dim!r}")
        vc = self.vision_config
        if vc.image_size % vc.patch_size:
            raise ValueError(f"{owner}.vision_config: image_size {vc.image_size} is not a multiple of patch_size {vc.patch_size}")

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Patches per image side: features per image = grid_size ** 2."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def image_size(self) -> int:
        return self.vision_config.image_size

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, PretrainedConfig) else v
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown} in config (known: {sorted(names)})")
        return cls(**values)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike):
        path = os.path.join(directory, CONFIG_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist (expected a model directory with config.json)")
        with open(path) as f:
            values = json.load(f)
        expected = cls.__dataclass_fields__["model_type"].default
        if values.get("model_type") != expected:
            raise ValueError(f"{path}: model_type '{values.get('model_type')}' is not '{expected}'")
        return cls.from_dict(values)
