"""Untrained PaLM-E / Octopus model directories (random weights, trained tokenizer) for tests, as a
user would point `--model` at."""
from __future__ import annotations


def save_untrained_manip_model(directory, family: str, seed: int = 0, image_size: int = 16, patch_size: int = 4, hidden: int = 32, **extra) -> str:
    """Build a `family` ("palme" | "octopus") model with torch seed `seed` (1 vision and 1 text layer
    unless `extra` says otherwise), save it and its processor to `directory`, return the path."""
    import torch

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import new_model

    torch.manual_seed(seed)
    extra.setdefault("vision_layers", 1)
    extra.setdefault("text_layers", 1)
    model, processor = new_model(family, train_tokenizer(), image_size=image_size, patch_size=patch_size, vision_hidden=hidden, text_hidden=hidden,
                                 heads=4, **extra)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
