"""Registry + factory of the embodied VLM family (LeRobot style: a folder per model, lazy imports).

A model named `<name>` lives in `vlm_agent/models/<name>/` with `configuration_<name>.py` and
`modeling_<name>.py`; the table below only names the classes. Adding a model = adding a folder and
a row. `load_pretrained(dir)` reads `model_type` from `config.json` and builds the right class.
"""
from __future__ import annotations

import importlib
import json
import os

# name -> (config class, model class)
MODEL_REGISTRY: dict[str, tuple[str, str]] = {
    "embodied_vlm": ("EmbodiedVLMConfig", "EmbodiedVLMModel"),
    "navid": ("NavidConfig", "NavidModel"),
}


def _check(name: str) -> None:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model '{name}' (registered: {sorted(MODEL_REGISTRY)})")


def get_config_class(name: str):
    _check(name)
    return getattr(importlib.import_module(f"vlm_agent.models.{name}.configuration_{name}"), MODEL_REGISTRY[name][0])


def get_model_class(name: str):
    _check(name)
    return getattr(importlib.import_module(f"vlm_agent.models.{name}.modeling_{name}"), MODEL_REGISTRY[name][1])


def build_model(config):
    """Instantiate the registered model class for `config.model_type` (random weights)."""
    return get_model_class(config.model_type)(config)


def model_type_of(directory: str | os.PathLike) -> str:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (expected a model directory)")
    with open(path) as f:
        return json.load(f).get("model_type", "")


def load_pretrained(directory: str | os.PathLike, device: str = "cpu"):
    """Build the model named in `directory/config.json` and load its weights strictly."""
    return get_model_class(model_type_of(directory)).from_pretrained(directory, device=device)


def make_config(
    name: str,
    vocab_size: int,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    text_hidden: int = 64,
    text_layers: int = 2,
    heads: int = 4,
    vision: str = "siglip",
    text: str = "qwen2",
    **extra,
):
    """A small config of model `name` from a few sizes (tests use hidden 32, 2 layers, 16 px)."""
    from transformers import CLIPVisionConfig, LlamaConfig, Qwen2Config, SiglipVisionConfig

    vkw = dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_hidden_layers=vision_layers, num_attention_heads=heads, image_size=image_size, patch_size=patch_size, num_channels=3)
    if vision == "siglip":
        vision_config = SiglipVisionConfig(**vkw)
    elif vision == "clip":
        vision_config = CLIPVisionConfig(**vkw, projection_dim=vision_hidden)
    else:
        raise ValueError(f"vision must be siglip or clip, got {vision!r}")
    tkw = dict(vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=2 * text_hidden, num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=2048, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if text == "qwen2":
        text_config = Qwen2Config(**tkw)
    elif text == "llama":
        text_config = LlamaConfig(**tkw)
    else:
        raise ValueError(f"text must be qwen2 or llama, got {text!r}")
    return get_config_class(name)(vision_config=vision_config, text_config=text_config, **extra)
