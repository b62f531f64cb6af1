"""Tiny models for the model-family tests (hidden 32, 2 layers, 16 px images)."""
from __future__ import annotations

import pytest
import torch

from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
from vlm_agent.models.registry import MODEL_REGISTRY, build_model, make_config


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer()


def tiny_config(name: str, vocab_size: int, vision: str = "siglip", text: str = "qwen2", **extra):
    # 16 px with patch 2 gives the 8x8 grid NaVid expects, at a test-sized cost.
    return make_config(name, vocab_size=vocab_size, image_size=16, patch_size=2, vision_hidden=32, text_hidden=32, heads=4, vision=vision, text=text, **extra)


@pytest.fixture(params=sorted(MODEL_REGISTRY))
def model_name(request):
    return request.param


@pytest.fixture
def tiny_model(model_name, tiny_tokenizer):
    torch.manual_seed(0)
    extra = {"state_dim": 3} if model_name == "embodied_vlm" else {}
    return build_model(tiny_config(model_name, 512, **extra)).eval()
