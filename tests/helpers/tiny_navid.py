"""An untrained NaVid model directory (random weights, trained tokenizer) for tests, as a user
would point `model_dir` at."""
from __future__ import annotations

import math


def save_untrained_navid(directory, seed: int, vision_layers: int = 1) -> str:
    """Build a 64 px NaVid model with torch seed `seed`, save it to `directory`, return the path.

    The FiLM output weights are re-drawn at random: their zero init would make grounding the
    identity and hide a wrong path.
    """
    import torch

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.navid.modeling_navid import NavidModel
    from vlm_agent.models.registry import make_config

    tok = train_tokenizer()
    cfg = make_config("navid", vocab_size=int(math.ceil(len(tok) / 64) * 64), image_size=64, patch_size=8, vision_hidden=32,
                      vision_layers=vision_layers, text_hidden=32, text_layers=1, heads=4, film_layers=1)
    torch.manual_seed(seed)
    model = NavidModel(cfg).eval()
    torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.05)
    model.save_pretrained(directory, tokenizer=tok)
    return str(directory)
