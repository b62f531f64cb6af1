"""OpenVINO backend: parity with torch per precision, the IR cache rules, capability-driven fallback."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch

from tests.accel.conftest import assert_same_plans_through_encoder, pixel_values_like_calibration
from vlm_agent.accel import factory
from vlm_agent.accel.factory import EncoderUnavailableError, make_encoder
from vlm_agent.accel.parity import feature_cosine

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install -c requirements/constraints.txt openvino)")


def _caps():
    from vlm_agent.accel.ov_backend import device_capabilities

    return device_capabilities()["capabilities"]


def test_fp32_matches_torch_and_pins_f32_whatever_the_cpu_default(tiny_siglip, cache_dir):
    ref = make_encoder(tiny_siglip, backend="torch")
    enc = make_encoder(tiny_siglip, backend="openvino", engine_cache_dir=cache_dir, num_threads=1, fallback=False)
    assert (enc.backend, enc.precision, enc.device, enc.fallback_reasons) == ("openvino", "fp32", "cpu", [])
    # OpenVINO's CPU default is bf16 on CPUs with AVX512-BF16/AMX: fp32 must be asked for explicitly.
    assert str(enc.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32", "float32")
    assert int(enc.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    rng = np.random.default_rng(0)
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
        a, b = ref.encode(x), enc.encode(torch.from_numpy(x))
        assert b.dtype == torch.float32 and b.shape == a.shape == (batch, 16, 32)
        assert float((a - b).abs().max()) < 1e-4


def test_batches_beyond_max_batch_are_chunked(tiny_siglip, cache_dir):
    enc = make_encoder(tiny_siglip, backend="openvino", engine_cache_dir=cache_dir, num_threads=1, max_batch=2, fallback=False)
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32), dtype=np.float32)
    whole = enc.encode(x)
    assert whole.shape == (5, 16, 32)
    assert torch.allclose(whole[4:], enc.encode(x[4:]), atol=1e-5)


def test_ir_cache_is_keyed_like_tensorrt_engines(siglip_onnx, tmp_path):
    kw = dict(backend="openvino", engine_cache_dir=str(tmp_path), num_threads=1, fallback=False)
    enc = make_encoder(siglip_onnx.path, **kw)
    meta = json.loads(open(enc.ir_path + ".json").read())
    spec = meta["spec"]
    assert spec["runtime"] == f"openvino {ov.__version__}" and spec["device"].startswith("CPU: ")
    assert spec["input_shape"] == [[1, 3, 32, 32], [1, 3, 32, 32], [8, 3, 32, 32]]
    assert set(meta["sizes"]) == {os.path.basename(enc.ir_path), os.path.basename(enc.ir_path)[:-4] + ".bin"}
    stamp = os.path.getmtime(enc.ir_path)
    assert make_encoder(siglip_onnx.path, **kw).ir_path == enc.ir_path and os.path.getmtime(enc.ir_path) == stamp
    other = make_encoder(siglip_onnx.path, max_batch=4, **kw)  # other shapes, other IR
    assert other.ir_path != enc.ir_path
    # A missing weights file is a miss: rebuilt, never loaded half.
    os.remove(enc.ir_path[:-4] + ".bin")
    again = make_encoder(siglip_onnx.path, **kw)
    assert again.ir_path == enc.ir_path and os.path.isfile(enc.ir_path[:-4] + ".bin")


def test_bf16_where_the_cpu_has_it(tiny_siglip, cache_dir):
    if "BF16" not in _caps():
        enc = make_encoder(tiny_siglip, backend="openvino", precision="bf16", engine_cache_dir=cache_dir)
        assert enc.backend != "openvino" and "BF16" in enc.fallback_reasons[0]
        return
    enc = make_encoder(tiny_siglip, backend="openvino", precision="bf16", engine_cache_dir=cache_dir, num_threads=1, fallback=False)
    assert str(enc.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'bfloat16'>", "bf16", "bfloat16")
    x = pixel_values_like_calibration(enc.info)
    ref = make_encoder(tiny_siglip, backend="torch").encode(x)
    out = enc.encode(x)
    assert feature_cosine(ref, out)["mean"] > 0.999 and float((ref - out).abs().max()) > 1e-6


def test_fp16_without_cpu_support_falls_back_with_the_reason(tiny_siglip, cache_dir, caplog):
    if "FP16" in _caps():
        pytest.skip("this CPU runs fp16 in OpenVINO; the fallback path is not reachable here")
    with caplog.at_level(logging.WARNING, logger="vlm_agent.accel.factory"):
        enc = make_encoder(tiny_siglip, backend="openvino", precision="fp16", engine_cache_dir=cache_dir)
    assert (enc.backend, enc.precision) == ("onnxruntime", "fp32")
    assert enc.fallback_reasons[0].startswith("openvino:") and "FP16" in enc.fallback_reasons[0]
    assert "FP16" in caplog.text
    with pytest.raises(EncoderUnavailableError, match="FP16"):
        make_encoder(tiny_siglip, backend="openvino", precision="fp16", engine_cache_dir=cache_dir, fallback=False)


@pytest.mark.parametrize("use_nncf", [True, False])
def test_int8_close_to_torch_with_nncf_or_the_qdq_file(tiny_siglip, calib_npz, cache_dir, use_nncf):
    from vlm_agent.accel.ov_backend import OpenVinoVisionEncoder, nncf_available

    if use_nncf and not nncf_available():
        pytest.skip("nncf is not installed")
    onnx_path = make_encoder(tiny_siglip, backend="onnxruntime", engine_cache_dir=cache_dir).onnx_path
    enc = OpenVinoVisionEncoder(onnx_path, precision="int8", num_threads=1, cache_dir=cache_dir, calib_file=calib_npz, use_nncf=use_nncf)
    assert enc.int8_method.startswith("nncf" if use_nncf else "onnxruntime")
    assert _int8_layers(enc) >= 8  # the tower's 12 linear layers run as int8 kernels (a few may stay f32)
    x = pixel_values_like_calibration(enc.info)
    ref = make_encoder(tiny_siglip, backend="torch").encode(x)
    out = enc.encode(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert feature_cosine(ref, out)["mean"] > 0.98
    assert float((ref - out).abs().max()) > 1e-6  # not silently the fp32 graph


def _int8_layers(enc) -> int:
    """Matrix layers (FullyConnected/MatMul/Convolution) the compiled model runs in i8/u8."""
    n = 0
    for op in enc.compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind, prec = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        n += kind in ("FullyConnected", "MatMul", "Convolution") and prec in ("i8", "u8")
    return n


def test_missing_openvino_falls_back_to_onnxruntime_with_the_reason(tiny_siglip, cache_dir, monkeypatch):
    monkeypatch.setitem(factory.PROBES, "openvino", lambda d, p: "openvino: not importable (simulated)")
    enc = make_encoder(tiny_siglip, backend="openvino", engine_cache_dir=cache_dir)
    assert enc.backend == "onnxruntime" and enc.fallback_reasons == ["openvino: not importable (simulated)"]


def test_planner_runs_with_an_openvino_encoder(cache_dir):
    """The NaVid planner with its tower in OpenVINO plans like the torch one (tiny untrained model)."""
    from tests.helpers.tiny_navid import save_untrained_navid
    from vlm_agent.accel import attach_encoder
    from vlm_agent.planners.backends import BuiltinNavidBackend
    from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        model_dir = save_untrained_navid(d, seed=0, vision_layers=2)
        ref, acc = (NavidPlanner(NavidPlannerConfig(), backend=BuiltinNavidBackend(model_dir, decoding="greedy", max_new_tokens=12)) for _ in range(2))
        enc = attach_encoder(acc.backend.model, backend="openvino", engine_cache_dir=cache_dir, num_threads=1)
        assert enc.backend == "openvino" and enc.fallback_reasons == []
        assert_same_plans_through_encoder(ref, acc, enc)  # and the planner really goes through OpenVINO
