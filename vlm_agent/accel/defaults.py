"""The project's default vision encoders: what the parity tests and the CPU benchmark cover.

A default encoder is the vision tower of a built-in model as it ships: every `checkpoints/<name>/`
whose config.json has a nested SigLIP/CLIP `vision_config` (loaded with its trained weights) that is
the model's pixel-only vision stem, plus,
for built-in families whose checkpoint is not in the tree, the tower built from the family's
default training config (random weights, same graph and shapes as the trained one).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
# NaVid's default architecture, as `vlm-agent train` builds it (the defaults of
# `vlm_agent.training.navid.NavidTrainConfig`, which sits above this layer; a test keeps them equal).
NAVID_TRAIN_DEFAULTS = {"image_size": 64, "patch_size": 8, "vision_hidden": 64, "vision_layers": 2, "text_hidden": 64, "text_layers": 2, "heads": 4}


def _builtin_checkpoints(root: Path) -> dict[str, Path]:
    found = {}
    if not root.is_dir():
        return found
    for cfg in sorted(root.glob("*/config.json")):
        try:
            raw = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        # An instruction-conditioned stem (NaVid's film_cnn) is not a pixel-only tower: the encoder
        # backends cannot run it, and the planner keeps it in torch (planners/navid.py).
        if raw.get("vision_stem", "vit") != "vit":
            continue
        if isinstance(raw.get("vision_config"), dict) and (cfg.parent / "model.safetensors").is_file():
            found[cfg.parent.name] = cfg.parent
    return found


def _navid_default_config_tower(seed: int = 0):
    """NaVid's vision tower from the training defaults (`NAVID_TRAIN_DEFAULTS`: what `vlm-agent train` builds)."""
    import torch

    from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import VisionTower
    from vlm_agent.models.registry import make_config

    from .tower import tower_info

    cfg = make_config("navid", vocab_size=512, **NAVID_TRAIN_DEFAULTS)
    torch.manual_seed(seed)
    tower = VisionTower(cfg.vision_config).eval()
    return tower, tower_info(tower, name="navid (default config)")


# Built-in families and the checkpoint directory each ships as (checkpoints/<dir>).
_FAMILY_DEFAULTS: dict[str, tuple[str, Callable]] = {
    "navid": ("navid_tiny", _navid_default_config_tower),
}


def default_encoders(checkpoints_dir: str | os.PathLike | None = None) -> dict[str, Callable]:
    """{name: loader() -> (feature module on CPU in eval mode, TowerInfo)} for every default encoder."""
    from .tower import load_tower

    root = Path(checkpoints_dir) if checkpoints_dir else CHECKPOINTS_DIR
    out: dict[str, Callable] = {}
    shipped = _builtin_checkpoints(root)
    for name, path in shipped.items():
        out[name] = lambda p=path: load_tower(p)
    for family, (ckpt_name, build) in _FAMILY_DEFAULTS.items():
        if ckpt_name not in shipped:
            out[f"{family} (default config)"] = build
    return out
