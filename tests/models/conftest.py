"""Tiny models for the model-family tests (hidden 32, 2 layers, 16 px images), ModelTester-style."""
from __future__ import annotations

import pytest
import torch

from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
from vlm_agent.models.registry import MODEL_REGISTRY, new_model

# 16 px with patch 2 gives the 8x8 grid NaVid expects, at a test-sized cost.
TINY_SIZES = dict(image_size=16, patch_size=2, vision_hidden=32, text_hidden=32, heads=4)


def tiny_model_and_processor(name: str, seed: int = 0, vision: str = "siglip", text: str = "qwen2", **extra):
    """A seeded random model of family `name` and its processor (fresh tokenizer each call: the
    family adds its special tokens to it)."""
    torch.manual_seed(seed)
    model, processor = new_model(name, train_tokenizer(), vision=vision, text=text, **TINY_SIZES, **extra)
    return model.eval(), processor


def tiny_config(name: str, vision: str = "siglip", text: str = "qwen2", **extra):
    return tiny_model_and_processor(name, vision=vision, text=text, **extra)[0].config


@pytest.fixture(params=sorted(MODEL_REGISTRY))
def model_name(request):
    return request.param


@pytest.fixture
def tiny_pair(model_name):
    extra = {"state_dim": 3} if model_name == "embodied_vlm" else {}
    return tiny_model_and_processor(model_name, **extra)


@pytest.fixture
def tiny_model(tiny_pair):
    return tiny_pair[0]
