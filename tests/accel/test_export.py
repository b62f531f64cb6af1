"""ONNX export: dynamic batch (the batch-1 trap), metadata, verification, caching, real checkpoint dirs."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vlm_agent.accel.onnx_export import (
    EXPORT_BATCH, INPUT_NAME, cached_export, export_onnx, file_sha256, module_fingerprint, read_tower_info,
)
from vlm_agent.accel.tower import load_tower, resolve_source


def test_exported_file_has_a_dynamic_batch_axis(siglip_onnx):
    assert EXPORT_BATCH != 1  # a batch-1 example would fix the batch dimension to 1 (FINDINGS.md)
    sess = ort.InferenceSession(siglip_onnx.path, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == INPUT_NAME and isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 32, 32]
    for b in (1, 3, 7):
        (out,) = sess.run(None, {INPUT_NAME: np.zeros((b, 3, 32, 32), np.float32)})
        assert out.shape == (b, 16, 32)


def test_export_verifies_batch_1_and_4_against_torch(siglip_onnx):
    assert set(siglip_onnx.max_abs_error) == {1, 4}
    assert max(siglip_onnx.max_abs_error.values()) < 1e-4
    assert siglip_onnx.opset == 18


def test_metadata_round_trips(siglip_onnx):
    info = read_tower_info(siglip_onnx.path)
    assert info == siglip_onnx.info
    assert (info.image_size, info.num_tokens, info.hidden_size, info.model_type) == (32, 16, 32, "siglip_vision_model")
    assert info.image_mean == (0.5, 0.5, 0.5)


def test_foreign_onnx_file_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="vlm-agent export"):
        read_tower_info(tmp_path / "foreign.onnx")


def test_fingerprint_changes_with_weights_and_cache_reuses_exports(tiny_clip, tmp_path):
    import copy

    module, info = resolve_source(copy.deepcopy(tiny_clip))
    fp = module_fingerprint(module, info, 18)
    assert fp == module_fingerprint(module, info, 18)
    assert fp != module_fingerprint(module, info, 17)
    path = cached_export(module, info, str(tmp_path))
    mtime = (tmp_path / path.split("/")[-1]).stat().st_mtime_ns
    assert cached_export(module, info, str(tmp_path)) == path
    assert (tmp_path / path.split("/")[-1]).stat().st_mtime_ns == mtime  # not re-exported
    with torch.no_grad():
        next(module.parameters()).add_(0.01)
    assert module_fingerprint(module, info, 18) != fp
    assert file_sha256(path) != ""


def test_half_precision_module_is_refused(tiny_siglip, tmp_path):
    import copy

    module, info = resolve_source(copy.deepcopy(tiny_siglip).half())
    with pytest.raises(ValueError, match="float32 module"):
        export_onnx(module, info, tmp_path / "x.onnx", verify_batches=())


@pytest.mark.parametrize("kind, full", [("siglip", False), ("clip", False), ("siglip", True)])
def test_real_checkpoint_directories_load_like_the_module(kind, full, tmp_path):
    """A SigLIP/CLIP checkpoint saved with save_pretrained (vision-only, or a full image-text model)."""
    from transformers import CLIPVisionModel, SiglipConfig, SiglipModel, SiglipVisionModel

    from tests.accel.conftest import tiny_vision_config

    torch.manual_seed(3)
    if full:
        cfg = SiglipConfig(vision_config=tiny_vision_config("siglip").to_dict(),
                           text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 99})
        full_model = SiglipModel(cfg).eval()
        full_model.save_pretrained(tmp_path)
        reference = full_model.vision_model
    else:
        cls = SiglipVisionModel if kind == "siglip" else CLIPVisionModel
        reference = cls(tiny_vision_config(kind)).eval()
        reference.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}))
    module, info = load_tower(tmp_path)
    assert info.image_mean == (0.1, 0.2, 0.3) and info.num_tokens == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = reference(pixel_values=x).last_hidden_state
        want = want[:, 1:] if kind == "clip" else want
        assert torch.equal(module(x), want)


def test_unknown_directory_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="neither a SigLIP/CLIP"):
        load_tower(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_tower(tmp_path / "missing")
