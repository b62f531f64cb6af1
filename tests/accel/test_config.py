"""EncoderBackendConfig validation: the field every image-encoding node embeds."""
from __future__ import annotations

import pytest

from vlm_agent.accel.config import BACKENDS, FALLBACK_ORDER, EncoderBackendConfig


def test_defaults_are_valid_and_cache_dir_expands(monkeypatch):
    monkeypatch.setenv("HOME", "/home/robot")
    cfg = EncoderBackendConfig()
    assert cfg.backend == "onnxruntime" and cfg.device == "cpu" and cfg.precision == "fp32"
    assert cfg.cache_dir == "/home/robot/.cache/vlm_agent/engines"


def test_fallback_order_is_fixed_and_covers_every_backend():
    assert FALLBACK_ORDER == ("tensorrt", "openvino", "onnxruntime", "torch")
    assert set(FALLBACK_ORDER) == set(BACKENDS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "vulkan"}, "not one of"),
        ({"backend": "openvino", "device": "cuda"}, "runs on device cpu"),
        ({"backend": "onnxruntime", "precision": "int8"}, "needs calib_file"),
        ({"backend": "openvino", "precision": "int8"}, "needs calib_file"),
        ({"backend": "openvino", "precision": "int8", "int8_mode": "dynamic"}, "dynamic is ONNX Runtime on the CPU only"),
        ({"backend": "tensorrt", "device": "cuda", "precision": "int8", "int8_mode": "dynamic"}, "dynamic is ONNX Runtime"),
        ({"backend": "onnxruntime", "precision": "int8", "int8_mode": "sometimes"}, "not one of"),
        ({"device": "gpu"}, "cpu, cuda or cuda:N"),
        ({"device": "cuda:x"}, "cpu, cuda or cuda:N"),
        ({"backend": "tensorrt", "device": "cpu"}, "needs device cuda"),
        ({"precision": "fp16", "device": "cpu"}, "fp16 needs device cuda"),
        ({"backend": "torch", "device": "cuda", "precision": "int8", "calib_file": "x.npz"}, "only available with backend"),
        ({"backend": "tensorrt", "device": "cuda", "precision": "int8"}, "needs calib_file"),
        ({"opt_batch": 9, "max_batch": 8}, "exceeds max_batch"),
        ({"onnx_opset": 13}, "below the minimum"),
        ({"max_batch": 0}, "below the minimum"),
        ({"num_threads": 1.5}, "expected int"),
    ],
)
def test_invalid_combinations_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncoderBackendConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "tensorrt", "device": "cuda:1", "precision": "int8", "calib_file": "frames.npz"},
        {"backend": "torch", "device": "cpu", "precision": "bf16"},
        {"backend": "onnxruntime", "device": "cuda", "precision": "fp16"},
        {"backend": "onnxruntime", "device": "cpu", "precision": "int8", "int8_mode": "dynamic"},
        {"backend": "onnxruntime", "device": "cpu", "precision": "int8", "calib_file": "frames.npz"},
        {"backend": "openvino", "device": "cpu", "precision": "int8", "calib_file": "run.mcap"},
        {"backend": "openvino", "device": "cpu", "precision": "fp16"},
    ],
)
def test_valid_combinations(kwargs):
    assert EncoderBackendConfig(**kwargs).to_dict()["device"] == kwargs["device"]


def test_from_ros_style_dict_rejects_typos():
    assert EncoderBackendConfig.from_dict({"backend": "torch", "num_threads": 2}).num_threads == 2
    with pytest.raises(ValueError, match="unknown keys"):
        EncoderBackendConfig.from_dict({"backnd": "torch"})


def test_encoder_params_embed_in_a_node_config_and_map_to_the_backend_config():
    from dataclasses import dataclass

    from vlm_agent.accel.config import EncoderParams
    from vlm_agent.config import field_types, param

    @dataclass
    class PlannerConfig(EncoderParams):
        model_dir: str = param("", "model directory")

    cfg = PlannerConfig.from_dict({"encoder_backend": "tensorrt", "encoder_device": "cuda", "encoder_precision": "fp16", "model_dir": "m"})
    enc = cfg.encoder_config()
    assert (enc.backend, enc.device, enc.precision, enc.fallback) == ("tensorrt", "cuda", "fp16", True)
    cfg = PlannerConfig.from_dict({"encoder_backend": "onnxruntime", "encoder_precision": "int8", "encoder_int8_mode": "dynamic"})
    assert (cfg.encoder_config().precision, cfg.encoder_config().int8_mode) == ("int8", "dynamic")
    cfg = PlannerConfig.from_dict({"encoder_backend": "openvino", "encoder_precision": "int8", "encoder_calib_file": "rec.mcap"})
    assert (cfg.encoder_config().backend, cfg.encoder_config().calib_file) == ("openvino", "rec.mcap")
    # Every field is a flat ROS-parameter type, so nodes can declare them like their own.
    assert all(t in (bool, int, float, str) for t in field_types(PlannerConfig).values())
    with pytest.raises(ValueError, match="needs device cuda"):
        PlannerConfig(encoder_backend="tensorrt")


def test_accel_stays_ros_free_and_its_config_is_cheap_to_import():
    """ROS at the edge: nothing in vlm_agent/accel imports rclpy; nodes import the config without torch."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2] / "vlm_agent" / "accel"
    for path in root.glob("*.py"):
        assert "rclpy" not in path.read_text(), path
    code = ("import sys, vlm_agent.accel, vlm_agent.accel.config; "
            "assert not {'torch', 'tensorrt', 'openvino', 'onnxruntime'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
