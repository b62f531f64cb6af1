"""An untrained NaVid model directory (random weights, trained tokenizer) for tests, as a user
would point `model_dir` at."""
from __future__ import annotations


def save_untrained_navid(directory, seed: int, vision_layers: int = 1, image_size: int = 64, patch_size: int = 8, hidden: int = 32, **extra) -> str:
    """Build a NaVid model with torch seed `seed`, save it and its processor to `directory`, return
    the path. The FiLM output weights are re-drawn at random: their zero init would make grounding
    the identity and hide a wrong path."""
    import torch

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.navid.processing_navid import NavidProcessor
    from vlm_agent.models.registry import new_model

    torch.manual_seed(seed)
    extra.setdefault("film_layers", 1)
    extra.setdefault("text_layers", 1)
    model, processor = new_model("navid", train_tokenizer(special_tokens=NavidProcessor.special_tokens()), image_size=image_size, patch_size=patch_size,
                                 vision_hidden=hidden, vision_layers=vision_layers, text_hidden=hidden, heads=4, **extra)
    if model.instruction_film is not None:
        torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.05)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
