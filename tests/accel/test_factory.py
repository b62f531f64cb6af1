"""make_encoder: backends, the fixed fallback order with logged reasons, sources (module, dir, .onnx)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from vlm_agent.accel import factory
from vlm_agent.accel.factory import EncoderUnavailableError, backend_chain, make_encoder, step_precision


def test_backend_chain_never_goes_backwards():
    assert backend_chain("tensorrt") == ("tensorrt", "openvino", "onnxruntime", "torch")
    assert backend_chain("openvino") == ("openvino", "onnxruntime", "torch")
    assert backend_chain("onnxruntime") == ("onnxruntime", "torch")
    assert backend_chain("torch") == ("torch",)
    assert backend_chain("tensorrt", fallback=False) == ("tensorrt",)
    with pytest.raises(ValueError):
        backend_chain("tvm")


def test_step_precision_lowers_only_what_the_fallback_cannot_run():
    assert step_precision("torch", "cuda", "int8") == "fp16"
    assert step_precision("torch", "cpu", "fp16") == "fp32"
    assert step_precision("torch", "cuda", "bf16") == "bf16"
    assert step_precision("tensorrt", "cuda", "bf16") == "fp16"
    assert step_precision("onnxruntime", "cuda", "fp16") == "fp16"


def test_torch_and_onnxruntime_agree(tiny_siglip, cache_dir):
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    t = make_encoder(tiny_siglip, backend="torch", engine_cache_dir=cache_dir)
    o = make_encoder(tiny_siglip, backend="onnxruntime", engine_cache_dir=cache_dir, num_threads=1)
    assert (t.backend, o.backend) == ("torch", "onnxruntime")
    assert t.fallback_reasons == [] and o.fallback_reasons == []
    assert o.input_size == (32, 32) and o.output_shape == (16, 32) and o.precision == "fp32"
    ft, fo = t.encode(x), o.encode(torch.from_numpy(x))
    assert ft.shape == fo.shape == (3, 16, 32) and fo.dtype == torch.float32
    assert float((ft - fo).abs().max()) < 1e-4
    assert isinstance(o.encode(x, as_numpy=True), np.ndarray)


def test_tensorrt_falls_back_in_order_and_logs_why(tiny_siglip, cache_dir, caplog):
    """On this machine (no TensorRT, CPU-only onnxruntime) tensorrt -> onnxruntime on the CPU EP."""
    with caplog.at_level(logging.WARNING, logger="vlm_agent.accel.factory"):
        enc = make_encoder(tiny_siglip, backend="tensorrt", device="cuda", precision="fp16", engine_cache_dir=cache_dir)
    assert enc.backend == "onnxruntime" and enc.device == "cpu" and enc.precision == "fp32"
    assert enc.requested_backend == "tensorrt"
    assert enc.fallback_reasons[0].startswith("tensorrt:")
    assert any("CPU EP" in r for r in enc.fallback_reasons)
    assert "tensorrt:" in caplog.text and "CPU EP" in caplog.text


def test_falls_through_to_torch_when_onnxruntime_is_missing(tiny_siglip, cache_dir, monkeypatch, caplog):
    monkeypatch.setitem(factory.PROBES, "onnxruntime", lambda d, p: "onnxruntime: not importable (simulated)")
    monkeypatch.setitem(factory.PROBES, "tensorrt", lambda d, p: "tensorrt: not importable (simulated)")
    with caplog.at_level(logging.WARNING, logger="vlm_agent.accel.factory"):
        enc = make_encoder(tiny_siglip, backend="tensorrt", device="cuda", engine_cache_dir=cache_dir)
    assert enc.backend == "torch" and enc.device == "cpu"
    # OpenVINO is passed over on a CUDA request (it runs on the CPU here), with the reason kept.
    assert [r.split(":")[0] for r in enc.fallback_reasons] == ["tensorrt", "openvino", "onnxruntime", "torch"]
    assert "simulated" in caplog.text


def test_a_backend_that_fails_to_start_falls_back(tiny_siglip, cache_dir, monkeypatch):
    real_build = factory._build

    def broken(name, *args):
        if name == "onnxruntime":
            raise RuntimeError("session creation failed (simulated)")
        return real_build(name, *args)

    monkeypatch.setattr(factory, "_build", broken)
    enc = make_encoder(tiny_siglip, backend="onnxruntime", engine_cache_dir=cache_dir)
    assert enc.backend == "torch"
    assert "failed to start" in enc.fallback_reasons[0] and "simulated" in enc.fallback_reasons[0]


def test_strict_mode_raises_instead_of_falling_back(tiny_siglip, cache_dir):
    with pytest.raises(EncoderUnavailableError, match="tensorrt"):
        make_encoder(tiny_siglip, backend="tensorrt", device="cuda", fallback=False, engine_cache_dir=cache_dir)
    # ORT asked for CUDA without a CUDA build: running on the CPU EP is a deviation, hence an error.
    with pytest.raises(EncoderUnavailableError, match="CPU EP"):
        make_encoder(tiny_siglip, backend="onnxruntime", device="cuda", fallback=False, engine_cache_dir=cache_dir)


def test_onnx_file_source_has_no_torch_fallback(siglip_onnx, monkeypatch):
    enc = make_encoder(siglip_onnx.path, backend="onnxruntime")
    assert enc.backend == "onnxruntime" and enc.output_shape == (16, 32)
    monkeypatch.setitem(factory.PROBES, "onnxruntime", lambda d, p: "onnxruntime: not importable (simulated)")
    with pytest.raises(EncoderUnavailableError, match="no PyTorch weights"):
        make_encoder(siglip_onnx.path, backend="onnxruntime")


def test_bad_inputs_raise_clearly(tiny_siglip, cache_dir):
    enc = make_encoder(tiny_siglip, backend="torch", engine_cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        enc.encode(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="floating point"):
        enc.encode(np.zeros((1, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="batch size 0"):
        enc.encode(np.zeros((0, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="unsupported encoder source"):
        make_encoder("no/such/dir", backend="torch")
    with pytest.raises(ValueError, match="not a supported vision tower"):
        make_encoder(torch.nn.Linear(2, 2), backend="torch")


def test_torch_bf16_on_cpu_runs_and_returns_float32(tiny_clip):
    import copy

    enc = make_encoder(copy.deepcopy(tiny_clip), backend="torch", precision="bf16")
    out = enc.encode(np.zeros((2, 3, 32, 32), np.float32))
    assert enc.precision == "bf16" and out.dtype == torch.float32 and out.shape == (2, 16, 32)
