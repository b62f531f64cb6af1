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


def test_export_fails_when_error_exceeds_atol(clip_dir, tmp_path, capsys):
    assert main(["export", str(clip_dir), "-o", str(tmp_path / "x.onnx"), "--atol", "0"]) == 1
    assert "FAILED" in capsys.readouterr().out


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
