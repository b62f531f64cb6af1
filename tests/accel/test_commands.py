"""`vlm-agent export`, `build-engine` and `bench` end to end (tiny models only)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from vlm_agent.cli import main
from vlm_agent.commands import bench


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A real CLIP checkpoint directory as transformers writes it (tiny config)."""
    from tests.accel.conftest import tiny_vision_model

    d = tmp_path_factory.mktemp("clip_ckpt")
    tiny_vision_model("clip").save_pretrained(d)
    return d


def test_export_a_clip_checkpoint_dir_and_verify(clip_dir, tmp_path, capsys):
    out = tmp_path / "clip.onnx"
    assert main(["export", str(clip_dir), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verify batch 1: max abs error" in text and "verify batch 4: max abs error" in text
    assert "output features     (B, 16, 32)" in text  # class token dropped: a pure 4x4 grid
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"pixel_values": np.zeros((3, 3, 32, 32), np.float32)})[0].shape == (3, 16, 32)


def test_export_a_builtin_model_dir_and_fail_on_atol(tmp_path, capsys):
    """A built-in (NaVid) directory: only its tower is exported; --atol 0 turns any error into exit 1."""
    import torch

    from vlm_agent.accel.factory import make_encoder
    from vlm_agent.models.navid.modeling_navid import NavidModel
    from vlm_agent.models.registry import make_config

    torch.manual_seed(0)
    model = NavidModel(make_config("navid", vocab_size=512, image_size=32, patch_size=8, vision_hidden=32, text_hidden=32, current_grid_size=4, film_layers=0))
    model.save_pretrained(tmp_path / "navid")
    assert main(["export", str(tmp_path / "navid"), "--atol", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "verify batch 4" in out and "(B, 16, 32)" in out
    onnx_path = tmp_path / "navid" / "vision_encoder.onnx"  # default: next to the checkpoint
    enc = make_encoder(str(onnx_path), backend="onnxruntime")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert float((enc.encode(x) - model.vision_tower(x)).abs().max()) < 1e-4


def test_export_rejects_missing_dir_and_bad_opset(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert main(["export", str(tmp_path), "--opset", "11"]) == 2
    assert "opset" in capsys.readouterr().err


def test_build_engine_fails_clearly_without_tensorrt(clip_dir, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert main(["build-engine", str(clip_dir), "--fp16"]) == 1
    err = capsys.readouterr().err
    assert "cannot build here" in err and "TensorRT is not importable" in err
    assert main(["build-engine", str(clip_dir), "--int8"]) == 2  # no --calib: a config error first
    assert "calib_file" in capsys.readouterr().err


def test_bench_lists_and_rejects_unknown(capsys):
    assert "encoder_bench" in bench.available()
    assert main(["bench"]) == 0
    assert "encoder_bench" in capsys.readouterr().out
    assert main(["bench", "no_such_bench"]) == 2
