"""Registry + factory of the embodied VLM families (LeRobot style: a folder per model, lazy imports).

A family named `<name>` lives in `vlm_agent/models/<name>/` with `configuration_<name>.py`,
`modeling_<name>.py` and `processing_<name>.py`; the table below only names the classes. Adding a
family = adding a folder and a row. On first use every family is registered with transformers'
Auto classes (`AutoConfig`, `AutoModel`, `AutoModelForImageTextToText`, `AutoProcessor`,
`AutoImageProcessor`), so `AutoModel.from_pretrained(dir)` and `AutoProcessor.from_pretrained(dir)`
work on our directories like on any transformers checkpoint.
"""
from __future__ import annotations

import importlib
import json
import math
import os

# name -> (config class, model class, processor class, image processor class)
MODEL_REGISTRY: dict[str, tuple[str, str, str]] = {
    "embodied_vlm": ("EmbodiedVLMConfig", "EmbodiedVLMModel", "EmbodiedVLMProcessor"),
    "navid": ("NavidConfig", "NavidModel", "NavidProcessor"),
    "sa2va": ("Sa2VAConfig", "Sa2VAModel", "Sa2VAProcessor"),
    "palme": ("PalmeConfig", "PalmeModel", "PalmeProcessor"),
    "octopus": ("OctopusConfig", "OctopusModel", "OctopusProcessor"),
}
_registered = False


def _check(name: str) -> None:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model '{name}' (registered: {sorted(MODEL_REGISTRY)})")


def _attr(name: str, kind: str, index: int):
    _check(name)
    return getattr(importlib.import_module(f"vlm_agent.models.{name}.{kind}_{name}"), MODEL_REGISTRY[name][index])


def get_config_class(name: str):
    return _attr(name, "configuration", 0)


def get_model_class(name: str):
    return _attr(name, "modeling", 1)


def get_processor_class(name: str):
    return _attr(name, "processing", 2)


def register_auto_classes() -> None:
    """Register every family with transformers' Auto classes (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

    from .embodied_vlm.processing_embodied_vlm import EmbodiedVLMImageProcessor

    for name in MODEL_REGISTRY:
        config_cls, model_cls, processor_cls = get_config_class(name), get_model_class(name), get_processor_class(name)
        AutoConfig.register(name, config_cls, exist_ok=True)
        AutoModel.register(config_cls, model_cls, exist_ok=True)
        AutoModelForImageTextToText.register(config_cls, model_cls, exist_ok=True)
        AutoImageProcessor.register(config_cls, image_processor_classes={"pil": EmbodiedVLMImageProcessor}, exist_ok=True)
        AutoProcessor.register(config_cls, processor_cls, exist_ok=True)
    _registered = True


def model_type_of(directory: str | os.PathLike) -> str:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (expected a model directory)")
    with open(path) as f:
        return json.load(f).get("model_type", "")


def load_pretrained(directory: str | os.PathLike, device: str = "cpu", dtype=None):
    """Build the model named in `directory/config.json` and load its weights strictly."""
    register_auto_classes()
    kwargs = {"device": device} if device else {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return get_model_class(model_type_of(directory)).from_pretrained(os.fspath(directory), **kwargs)


def load_model_and_processor(directory: str | os.PathLike, device: str = "cpu", dtype=None):
    """(model, processor) of a model directory, checked to agree on token ids, sizes and layout."""
    register_auto_classes()
    name = model_type_of(directory)
    _check(name)
    processor = get_processor_class(name).from_pretrained(os.fspath(directory))
    model = load_pretrained(directory, device=device, dtype=dtype)
    processor.check_config(model.config)
    return model, processor


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
    """A small config of model `name` from a few sizes (tests use hidden 32, 2 layers, 16 px).

    Token ids in `extra` (e.g. `**processor.config_token_ids()`) should come from the tokenizer."""
    from transformers import CLIPVisionConfig, LlamaConfig, Qwen2Config, SiglipVisionConfig

    vkw = dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_hidden_layers=vision_layers, num_attention_heads=heads, image_size=image_size, patch_size=patch_size, num_channels=3)
    if vision == "siglip":
        vision_config = SiglipVisionConfig(**vkw, vision_use_head=False)
    elif vision == "clip":
        vision_config = CLIPVisionConfig(**vkw, projection_dim=vision_hidden)
    else:
        raise ValueError(f"vision must be siglip or clip, got {vision!r}")
    ids = {k: extra[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id") if k in extra}
    tkw = dict(vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=2 * text_hidden, num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=2048, tie_word_embeddings=True, **ids)
    if text == "qwen2":
        text_config = Qwen2Config(**tkw)
    elif text == "llama":
        text_config = LlamaConfig(**tkw)
    else:
        raise ValueError(f"text must be qwen2 or llama, got {text!r}")
    return get_config_class(name)(vision_config=vision_config, text_config=text_config, **extra)


def new_model(name: str, tokenizer, image_mean=None, image_std=None, vocab_multiple: int = 64, **sizes):
    """A randomly initialised family model + its processor around `tokenizer` (the family's special
    tokens are added when missing; the vocabulary is rounded up to `vocab_multiple`). `sizes` are
    `make_config`'s and the family's config fields. Returns (model, processor)."""
    from .embodied_vlm.processing_embodied_vlm import EmbodiedVLMImageProcessor

    register_auto_classes()
    processor_cls = get_processor_class(name)
    processor_cls.add_special_tokens_to(tokenizer)
    s = int(sizes.get("image_size", 64))
    ip_kwargs = {"size": {"height": s, "width": s}}
    if image_mean is not None:
        ip_kwargs.update(image_mean=list(image_mean), image_std=list(image_std))
    image_processor = EmbodiedVLMImageProcessor(**ip_kwargs)
    probe = processor_cls(image_processor, tokenizer)
    vocab = int(math.ceil(len(tokenizer) / vocab_multiple) * vocab_multiple)
    config = make_config(name, vocab_size=vocab, **probe.config_token_ids(), **sizes)
    model = get_model_class(name)(config)
    from_config = getattr(processor_cls, "from_config", None)
    processor = from_config(image_processor, tokenizer, config) if from_config else probe
    processor.check_config(config)
    return model, processor


# The shipped default model of each family: checkpoints/<name>, each with its MODEL_CARD.md. Every
# node and `vlm-agent eval` / `demo` use these when no model directory is given.
DEFAULT_CHECKPOINTS = {"navid": "navid_map", "palme": "palme_tiny", "octopus": "octopus_tiny", "sa2va": "sa2va_nano"}
_SOURCE_CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "checkpoints")


def default_checkpoint_dir(name: str) -> str:
    """`checkpoints/<name>` (a folder name, or a family of DEFAULT_CHECKPOINTS) of the source tree
    (pip -e, the repo), else of the installed share folder (`colcon build` installs checkpoints/
    under share/vlm_agent). The path is returned whether or not it exists; loaders say when not."""
    name = DEFAULT_CHECKPOINTS.get(name, name)
    source_tree = os.path.join(_SOURCE_CHECKPOINTS, name)
    if os.path.isdir(source_tree):
        return source_tree
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("vlm_agent"), "checkpoints", name)
    except (ImportError, LookupError, ValueError, OSError):  # OSError: no AMENT_PREFIX_PATH (a plain venv)
        return source_tree
