"""A tiny random NaVid checkpoint directory for planner/backend/serve tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_navid_dir(tmp_path_factory):
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.navid.modeling_navid import NavidModel
    from vlm_agent.models.registry import make_config

    torch.manual_seed(0)
    tok = train_tokenizer()
    cfg = make_config("navid", vocab_size=512, image_size=16, patch_size=2, vision_hidden=32, text_hidden=32, heads=4, max_history_frames=4)
    d = tmp_path_factory.mktemp("navid_tiny")
    NavidModel(cfg).save_pretrained(d, tokenizer=tok)
    return str(d)
