"""Tiny SigLIP/CLIP vision towers built from configs (no downloads) and their ONNX exports.

Exports cost ~1-3 s each on the shared 2-core machine, so they are session-scoped and reused.
"""
from __future__ import annotations

import pytest
import torch


def tiny_vision_config(kind: str, image_size: int = 32, patch_size: int = 8):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    cls = SiglipVisionConfig if kind == "siglip" else CLIPVisionConfig
    return cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=image_size, patch_size=patch_size)


def tiny_vision_model(kind: str, seed: int = 0):
    from transformers import CLIPVisionModel, SiglipVisionModel

    torch.manual_seed(seed)
    cls = SiglipVisionModel if kind == "siglip" else CLIPVisionModel
    return cls(tiny_vision_config(kind)).eval()


@pytest.fixture(scope="session")
def tiny_siglip():
    return tiny_vision_model("siglip")


@pytest.fixture(scope="session")
def tiny_clip():
    return tiny_vision_model("clip", seed=1)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One engine/ONNX cache for the session: tests that build the same model share the export."""
    return str(tmp_path_factory.mktemp("engine_cache"))


@pytest.fixture(scope="session")
def siglip_onnx(tiny_siglip, tmp_path_factory):
    from vlm_agent.accel.onnx_export import export_onnx
    from vlm_agent.accel.tower import resolve_source

    module, info = resolve_source(tiny_siglip)
    path = tmp_path_factory.mktemp("onnx") / "siglip.onnx"
    return export_onnx(module, info, path)


def smooth_frames(n: int, size: int = 40, seed: int = 0):
    """uint8 (n, size, size, 3) RGB frames with image-like structure (upsampled 6x6 colour fields +
    a little noise): the calibration and test inputs of the INT8 tests come from the same source."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), np.float32)
        out[i] = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="session")
def calib_npz(tmp_path_factory):
    """A calibration file as `vlm-agent collect` writes it: uint8 frames under "frames"."""
    import numpy as np

    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, frames=smooth_frames(24, seed=10))
    return str(path)


def pixel_values_like_calibration(info, n: int = 4, seed: int = 11):
    """Preprocessed (n, 3, S, S) float32 inputs from the calibration frames' distribution (other seed)."""
    from vlm_agent.accel.calibration import _preprocess_uint8

    return _preprocess_uint8(smooth_frames(n, seed=seed), info)


def assert_same_plans_through_encoder(ref, acc, enc, n_frames: int = 3) -> list:
    """Drive two NaVid planners over the same random frames and assert identical plans, and that
    `acc`'s plans really went through `enc` (one encode call per frame). Returns the frames."""
    import numpy as np

    calls = []
    original = enc._encode
    enc._encode = lambda x: calls.append(x.shape) or original(x)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n_frames)]
    for p in (ref, acc):
        p.reset("go to the red ball")
    for frame in frames:
        a, b = ref.plan(frame), acc.plan(frame)
        assert (a.raw_text, a.primitives) == (b.raw_text, b.primitives)
        ref.observe(frame)
        acc.observe(frame)
    assert len(calls) == len(frames)
    return frames
