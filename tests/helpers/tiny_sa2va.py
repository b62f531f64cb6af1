"""An untrained Sa2VA model directory (random VLM, random nano SAM 2) for tests, as a user would point
`--model` / `model_dir` at. No accuracy claim: it exercises the pipeline."""
from __future__ import annotations


def save_untrained_sa2va_model(directory, seed: int = 0, image_size: int = 16, patch_size: int = 2, hidden: int = 32, sam2_image_size: int = 64, **extra) -> str:
    """Build a sa2va model (1 vision and 1 text layer unless `extra` says otherwise) with torch seed
    `seed`, save it and its processor to `directory`, return the path."""
    import torch

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import new_model

    torch.manual_seed(seed)
    extra.setdefault("vision_layers", 1)
    extra.setdefault("text_layers", 1)
    model, processor = new_model("sa2va", train_tokenizer(), image_size=image_size, patch_size=patch_size, vision_hidden=hidden, text_hidden=hidden,
                                 heads=4, sam2_image_size=sam2_image_size, **extra)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
