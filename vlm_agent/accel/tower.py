"""Find and load a vision tower: pixel_values (B, 3, S, S) float32 -> features (B, N, D) float32.

Sources the accelerated backends accept:
- an `nn.Module`: a transformers `SiglipVisionModel`/`CLIPVisionModel`, the core's `VisionTower`,
  or a whole embodied model (anything with a `.vision_tower`);
- a directory: a built-in model (`config.json` with a nested `vision_config`, weights in
  `model.safetensors` under `vision_tower.`), or a real SigLIP/CLIP checkpoint (vision-only or full
  image-text model) loaded through transformers' `SiglipVisionModel` / `CLIPVisionModel`.

Features follow the core's convention (`vlm_agent.models.embodied_vlm.VisionTower`): the last
hidden state, with CLIP's class token dropped so both families give a row-major patch grid of
N = (S / patch) ** 2 tokens. Exported ONNX files and engines therefore drop in for the tower.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import torch
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# transformers model types and which vision class loads them (full image-text checkpoints keep
# their vision weights under `vision_model.`, which the vision classes read directly).
_HF_VISION_TYPES = {
    "siglip_vision_model": "SiglipVisionModel",
    "siglip": "SiglipVisionModel",
    "clip_vision_model": "CLIPVisionModel",
    "clip": "CLIPVisionModel",
}
# Normalisation each family was trained with (used when a directory has no preprocessor_config.json).
_DEFAULT_MEAN_STD = {
    "siglip_vision_model": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip_vision_model": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


@dataclasses.dataclass(frozen=True)
class TowerInfo:
    """What a consumer needs to know about an encoder without running it.

    image_size: S of the square (B, 3, S, S) input; num_tokens: N of the (B, N, D) output;
    hidden_size: D; image_mean/std: per-channel normalisation the model expects on [0, 1] RGB;
    model_type: transformers vision model type; name: a short human label (directory name).
    """

    image_size: int
    num_tokens: int
    hidden_size: int
    model_type: str
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    name: str = "vision_tower"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TowerInfo":
        v = dict(values)
        v["image_mean"], v["image_std"] = tuple(v["image_mean"]), tuple(v["image_std"])
        return cls(**v)


class VisionFeatures(nn.Module):
    """A transformers vision model -> last hidden state (B, N, D), CLIP class token dropped.

    Same computation as the core's `VisionTower`, for modules that did not come from the core.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.drop_cls = model.config.model_type == "clip_vision_model"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=pixel_values).last_hidden_state
        return hidden[:, 1:] if self.drop_cls else hidden


def _vision_config_of(module: nn.Module):
    """The transformers vision config inside `module` (VisionTower.model.config or module.config)."""
    inner = getattr(module, "model", None)
    for cand in (getattr(inner, "config", None), getattr(module, "config", None)):
        if cand is not None and getattr(cand, "model_type", None) in _DEFAULT_MEAN_STD:
            return cand
    return None


def tower_info(module: nn.Module, name: str = "vision_tower", mean=None, std=None) -> TowerInfo:
    cfg = _vision_config_of(module)
    if cfg is None:
        raise ValueError(f"cannot find a SigLIP/CLIP vision config on {type(module).__name__}")
    grid = cfg.image_size // cfg.patch_size
    d_mean, d_std = _DEFAULT_MEAN_STD[cfg.model_type]
    return TowerInfo(
        image_size=int(cfg.image_size),
        num_tokens=int(grid * grid),
        hidden_size=int(cfg.hidden_size),
        model_type=cfg.model_type,
        image_mean=tuple(float(x) for x in (mean or d_mean)),
        image_std=tuple(float(x) for x in (std or d_std)),
        name=name,
    )


def as_feature_module(module: nn.Module) -> nn.Module:
    """Normalise an accepted module to pixel_values -> (B, N, D) (see the module docstring)."""
    if hasattr(module, "vision_tower") and isinstance(module.vision_tower, nn.Module):
        module = module.vision_tower  # a whole embodied model: the encoder is its tower
    if type(module).__name__ in ("SiglipVisionModel", "CLIPVisionModel"):
        return VisionFeatures(module)
    if _vision_config_of(module) is not None and hasattr(module, "model"):
        return module  # the core's VisionTower (or anything shaped like it)
    raise ValueError(
        f"{type(module).__name__} is not a supported vision tower (SiglipVisionModel, CLIPVisionModel, "
        "the core's VisionTower, or a model with .vision_tower)"
    )


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _preprocessor_mean_std(directory: str):
    path = os.path.join(directory, "preprocessor_config.json")
    if os.path.isfile(path):
        pp = _read_json(path)
        if "image_mean" in pp and "image_std" in pp:
            return pp["image_mean"], pp["image_std"]
    return None, None


def load_tower(directory: str | os.PathLike, device: str = "cpu") -> tuple[nn.Module, TowerInfo]:
    """A model directory -> (feature module in eval mode on `device`, TowerInfo).

    Raises FileNotFoundError without config.json, ValueError for unsupported model types or when
    the weights do not match the config (loaded strictly).
    """
    directory = os.fspath(directory)
    cfg_path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{cfg_path} does not exist (expected a model directory)")
    raw = _read_json(cfg_path)
    model_type = raw.get("model_type")
    name = os.path.basename(os.path.normpath(directory))
    mean, std = _preprocessor_mean_std(directory)
    if model_type in _HF_VISION_TYPES:
        import transformers

        cls = getattr(transformers, _HF_VISION_TYPES[model_type])
        model = cls.from_pretrained(directory)
        module = VisionFeatures(model)
    elif isinstance(raw.get("vision_config"), dict):
        module = _load_builtin_tower(directory, raw)
    else:
        raise ValueError(
            f"{cfg_path}: model_type '{model_type}' is neither a SigLIP/CLIP checkpoint "
            f"({sorted(_HF_VISION_TYPES)}) nor a built-in model with a nested vision_config"
        )
    module = module.to(device).eval()
    return module, tower_info(module, name=name, mean=mean, std=std)


def _load_builtin_tower(directory: str, raw: dict) -> nn.Module:
    """Build only the vision tower of a built-in model and load its `vision_tower.*` weights strictly.

    Reading just the tower keeps export cheap for big planners (the LM is never instantiated).
    """
    from safetensors import safe_open
    from transformers import AutoConfig

    from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import VisionTower, load_submodule_strict

    vc = dict(raw["vision_config"])
    vtype = vc.pop("model_type", None)
    if vtype not in _DEFAULT_MEAN_STD:
        raise ValueError(f"{directory}: vision_config.model_type '{vtype}' is not SigLIP/CLIP vision")
    for key in ("transformers_version", "architectures", "_name_or_path"):
        vc.pop(key, None)
    tower = VisionTower(AutoConfig.for_model(vtype, **vc))
    weights = os.path.join(directory, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights} does not exist")
    prefix = "vision_tower."
    with safe_open(weights, framework="pt") as f:
        state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"{weights}: no '{prefix}*' tensors (is this a built-in model directory?)")
    load_submodule_strict(tower, state, f"{weights} vision tower")
    return tower


def resolve_source(source: Any, device: str = "cpu") -> tuple[nn.Module, TowerInfo]:
    """`make_encoder`'s source (module or directory) -> (feature module in eval mode, TowerInfo).

    A directory is loaded onto `device`; a module given by the caller is NOT moved (it may be the
    live tower of a running model): backends move or copy it as they need.
    """
    if isinstance(source, nn.Module):
        module = as_feature_module(source)
        return module.eval(), tower_info(module, name=type(source).__name__)
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        return load_tower(source, device=device)
    raise ValueError(f"unsupported encoder source {source!r}: pass an nn.Module or a model directory")
