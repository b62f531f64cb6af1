"""Random-weight vision towers of real model sizes, for benchmarks and export/engine dry runs.

Shapes follow the published configs (google/siglip-base-patch16-224, google/siglip-so400m-patch14-384,
openai/clip-vit-base-patch16) so timings and memory are representative; the weights are random
because nothing is downloaded here. Built with transformers' vision classes only (no torchvision).
"""
from __future__ import annotations

PRESETS = {
    # name: (model_type, config kwargs)
    "siglip-base": ("siglip", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16)),
    "siglip-so400m": ("siglip", dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384, patch_size=14)),
    "siglip-so400m-224": ("siglip", dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=224, patch_size=14)),
    "clip-base": ("clip", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16)),
}


def random_tower(name: str, seed: int = 0):
    """A preset -> (feature module (B,3,S,S)->(B,N,D) in eval mode on CPU, TowerInfo)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

    from .tower import VisionFeatures, tower_info

    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}' (one of {sorted(PRESETS)})")
    kind, kwargs = PRESETS[name]
    torch.manual_seed(seed)
    if kind == "siglip":
        model = SiglipVisionModel(SiglipVisionConfig(**kwargs))
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**kwargs))
    module = VisionFeatures(model).eval()
    return module, tower_info(module, name=name)
