"""Planners switch encoder backend without code changes: NaVid with torch vs ONNX Runtime encoders."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.accel.conftest import assert_same_plans_through_encoder
from tests.helpers.tiny_navid import save_untrained_navid
from vlm_agent.accel import attach_encoder


@pytest.fixture(scope="module")
def navid_dir(tmp_path_factory):
    return save_untrained_navid(tmp_path_factory.mktemp("navid"), seed=0, vision_layers=2)


def _planner(model_dir):
    from vlm_agent.planners.backends import BuiltinNavidBackend
    from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig

    return NavidPlanner(NavidPlannerConfig(), backend=BuiltinNavidBackend(model_dir, decoding="greedy", max_new_tokens=12))


def test_navid_planner_same_output_with_torch_and_onnxruntime_encoders(navid_dir, cache_dir):
    ref, acc = _planner(navid_dir), _planner(navid_dir)
    enc = attach_encoder(acc.backend.model, backend="onnxruntime", engine_cache_dir=cache_dir)
    assert enc.backend == "onnxruntime" and enc.fallback_reasons == []
    frames = assert_same_plans_through_encoder(ref, acc, enc)  # and the planner really goes through ORT

    # The features behind those plans agree to ONNX Runtime's precision, history tokens included.
    px = acc.backend.processor.pixel_values(frames)
    cond = acc.backend._condition
    with torch.no_grad():
        cur_a, his_a = ref.backend.model.encode_frames(px, cond)
        cur_b, his_b = acc.backend.model.encode_frames(px, cond)
    assert float((cur_a - cur_b).abs().max()) < 1e-4 and float((his_a - his_b).abs().max()) < 1e-4


def test_torch_backend_keeps_the_builtin_tower_and_saving_is_unaffected(navid_dir, cache_dir, tmp_path):
    from vlm_agent.models.navid.modeling_navid import NavidModel

    model = NavidModel.from_pretrained(navid_dir)
    enc = attach_encoder(model, backend="torch")
    assert enc.backend == "torch" and model.vision_encoder is model.vision_tower
    attach_encoder(model, backend="onnxruntime", engine_cache_dir=cache_dir)  # same weights: export cached
    assert model.vision_encoder is not model.vision_tower
    model.save_pretrained(tmp_path / "saved")  # the external encoder is not part of the checkpoint
    assert NavidModel.from_pretrained(tmp_path / "saved") is not None
    with pytest.raises(TypeError, match="set_vision_encoder"):
        attach_encoder(torch.nn.Linear(2, 2))


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[2] / "checkpoints" / "navid_tiny"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="checkpoints/navid_tiny is not in this tree")
def test_shipped_navid_plans_the_same_with_onnxruntime(cache_dir):
    """The trained default model: identical plans with its tower in PyTorch or ONNX Runtime."""
    ref, acc = _planner(str(SHIPPED)), _planner(str(SHIPPED))
    enc = attach_encoder(acc.backend.model, backend="onnxruntime", engine_cache_dir=cache_dir)
    assert enc.backend == "onnxruntime"
    size = ref.backend.model.config.image_size
    rng = np.random.default_rng(1)
    # Smooth colour gradients: deterministic frames in the range real images have (no renderer needed).
    yy, xx = np.mgrid[0:size, 0:size] / size
    frames = [np.clip(np.stack([yy * 255 * rng.random(), xx * 255 * rng.random(), np.full_like(xx, 255 * rng.random())], -1), 0, 255).astype(np.uint8) for _ in range(4)]
    for p in (ref, acc):
        p.reset("go to the red ball")
    for frame in frames:
        a, b = ref.plan(frame), acc.plan(frame)
        assert (a.raw_text, a.primitives) == (b.raw_text, b.primitives)
        ref.observe(frame)
        acc.observe(frame)
