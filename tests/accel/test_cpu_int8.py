"""INT8 on the CPU with ONNX Runtime: dynamic and static (calibrated) quantisation, cache, parity."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tests.accel.conftest import pixel_values_like_calibration, smooth_frames
from vlm_agent.accel.factory import make_encoder
from vlm_agent.accel.parity import feature_cosine

onnx = pytest.importorskip("onnx")


def _op_types(path):
    return {n.op_type for n in onnx.load(path).graph.node}


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_runs_the_quantised_graph_close_to_torch(tiny_siglip, calib_npz, cache_dir, mode):
    ref = make_encoder(tiny_siglip, backend="torch")
    enc = make_encoder(tiny_siglip, backend="onnxruntime", precision="int8", int8_mode=mode, calib_file=calib_npz,
                       engine_cache_dir=cache_dir, num_threads=1, fallback=False)
    assert (enc.backend, enc.precision, enc.int8_mode) == ("onnxruntime", "int8", mode)
    assert enc.model_path != enc.onnx_path and f"ort-int8-{mode}" in enc.model_path
    ops = _op_types(enc.model_path)
    # The file really is integer: dynamic has MatMulInteger, static has Q/DQ pairs around the MatMuls.
    assert ("MatMulInteger" in ops) if mode == "dynamic" else ({"QuantizeLinear", "DequantizeLinear"} <= ops)
    assert "MatMulInteger" not in _op_types(enc.onnx_path)
    x = pixel_values_like_calibration(enc.info)
    a, b = ref.encode(x), enc.encode(x)
    assert b.dtype == torch.float32 and b.shape == a.shape == (4, 16, 32)
    cos = feature_cosine(a, b)
    assert cos["mean"] > 0.99, cos
    assert float((a - b).abs().max()) > 1e-6  # it is not silently the fp32 graph
    assert "int8" in repr(enc) and mode in repr(enc)


def test_quantised_files_are_cached_by_model_mode_and_calibration_set(siglip_onnx, calib_npz, tmp_path):
    kw = dict(backend="onnxruntime", precision="int8", engine_cache_dir=str(tmp_path), num_threads=1, fallback=False)
    src = siglip_onnx.path  # an exported file as the source: the cache directory holds only quantised files
    first = make_encoder(src, calib_file=calib_npz, **kw).model_path
    assert os.path.dirname(first) == str(tmp_path)
    stamp = os.path.getmtime(first)
    again = make_encoder(src, calib_file=calib_npz, **kw).model_path
    assert again == first and os.path.getmtime(again) == stamp  # reused, not re-quantised
    other = tmp_path / "other.npz"
    np.savez(other, frames=smooth_frames(24, seed=99))
    assert make_encoder(src, calib_file=str(other), **kw).model_path != first  # new frames, new file
    dyn = make_encoder(src, int8_mode="dynamic", **kw).model_path
    assert dyn not in (first,) and "dynamic" in dyn
    meta = json.loads(open(first + ".json").read())
    spec = meta["spec"]
    assert spec["runtime"].startswith("onnxruntime ") and spec["calib_sha256"] and spec["input_shape"][1:] == [3, 32, 32]
    # A truncated file is a miss: rebuilt, never loaded.
    with open(first, "r+b") as f:
        f.truncate(100)
    rebuilt = make_encoder(src, calib_file=calib_npz, **kw)
    assert rebuilt.model_path == first and os.path.getsize(first) == meta["sizes"][os.path.basename(first)]
    assert rebuilt.encode(pixel_values_like_calibration(rebuilt.info, n=1)).shape == (1, 16, 32)


def test_static_int8_without_frames_fails_clearly_and_the_factory_falls_back(tiny_siglip, cache_dir, tmp_path):
    from vlm_agent.accel.ort_backend import OrtVisionEncoder
    from vlm_agent.accel.ort_quant import quantized_onnx

    onnx_path = make_encoder(tiny_siglip, backend="onnxruntime", engine_cache_dir=cache_dir).onnx_path
    with pytest.raises(ValueError, match="calib_file"):
        OrtVisionEncoder(onnx_path, precision="int8", int8_mode="static", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="mode"):
        quantized_onnx(onnx_path, "weekly", str(tmp_path))
    # An unreadable calibration file is a failed start: logged fallback to torch fp32.
    bad = tmp_path / "bad.npz"
    np.savez(bad, depth=np.zeros((4, 8, 8), np.float32))
    enc = make_encoder(tiny_siglip, backend="onnxruntime", precision="int8", calib_file=str(bad), engine_cache_dir=str(tmp_path))
    assert (enc.backend, enc.precision) == ("torch", "fp32")
    assert any("failed to start" in r and "calibration" in r for r in enc.fallback_reasons)


def test_int8_of_a_tensorrt_request_on_a_machine_without_gpu_runs_calibrated_on_the_cpu(tiny_siglip, calib_npz, cache_dir):
    """tensorrt int8 -> (openvino is CPU-only, skipped on cuda) -> onnxruntime: no GPU provider, so the
    CPU EP runs the statically quantised file on the same frames (noted), not fp32."""
    enc = make_encoder(tiny_siglip, backend="tensorrt", device="cuda", precision="int8", calib_file=calib_npz, engine_cache_dir=cache_dir)
    assert (enc.backend, enc.device, enc.precision, enc.int8_mode) == ("onnxruntime", "cpu", "int8", "static")
    assert any("CPU EP" in r for r in enc.fallback_reasons)


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[2] / "checkpoints" / "navid_tiny"


@pytest.fixture(scope="module")
def sim_shards(tmp_path_factory):
    """Two tiny `vlm-agent collect` shards: calibration (train split) and evaluation (val split)."""
    pytest.importorskip("mujoco")
    from vlm_agent.training.collect import collect_shards

    root = tmp_path_factory.mktemp("sim")
    calib = collect_shards(str(root / "calib"), split="train", episodes=4, episodes_per_shard=4, seed=5, log=lambda *a: None)[0]
    evals = collect_shards(str(root / "eval"), split="val", episodes=2, episodes_per_shard=2, seed=6, log=lambda *a: None)[0]
    return calib, evals


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="checkpoints/navid_tiny is not in this tree")
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_shipped_navid_decides_the_same_on_sim_frames_with_int8(sim_shards, cache_dir, mode):
    """Decision parity on recorded sim episodes (calibrated on other episodes than the ones judged).

    The bar here is loose (90%) because it is ~80 frames on whatever CPU runs the suite;
    benchmarks/encoder_cpu_backends.py measures the real rate on more frames.
    """
    from vlm_agent.accel.config import EncoderBackendConfig
    from vlm_agent.accel.parity import load_episodes, planner_agreement

    calib, evals = sim_shards
    cfg = EncoderBackendConfig(backend="onnxruntime", precision="int8", int8_mode=mode, calib_file=calib, engine_cache_dir=cache_dir,
                               num_threads=1, fallback=False)
    agreement, enc = planner_agreement(str(SHIPPED), cfg, load_episodes(evals))
    assert enc.backend == "onnxruntime" and enc.precision == "int8"
    assert agreement.frames > 20 and agreement.episodes == 2
    assert agreement.plan_rate >= 0.9, agreement.disagreements


def test_planner_config_parameters_select_int8_without_code_changes(cache_dir, tmp_path):
    """The planner node's parameters (NavidPlannerConfig inherits EncoderParams) reach the encoder."""
    from tests.helpers.tiny_navid import save_untrained_navid
    from vlm_agent.planners.navid import NavidPlannerConfig, make_backend

    model_dir = save_untrained_navid(tmp_path / "navid", seed=0, vision_layers=1)
    cfg = NavidPlannerConfig(model_dir=model_dir, encoder_backend="onnxruntime", encoder_precision="int8", encoder_int8_mode="dynamic",
                             encoder_cache_dir=cache_dir, encoder_num_threads=1, encoder_fallback=False)
    backend = make_backend(cfg)
    assert (backend.encoder.backend, backend.encoder.precision, backend.encoder.int8_mode) == ("onnxruntime", "int8", "dynamic")
    assert backend.model.vision_encoder is not backend.model.vision_tower


def test_static_int8_calibrates_on_an_mcap_recording_like_tensorrt(siglip_onnx, tmp_path):
    """`vlm-agent record` output (the colour topic of an MCAP file) is a calibration source as for TensorRT."""
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message

    from vlm_agent.sensors.image_conversion import numpy_to_image
    from vlm_agent.sensors.recording import McapRecordingWriter

    path = str(tmp_path / "robot.mcap")
    with McapRecordingWriter(path) as writer:
        writer.add_channel("/camera/color/image_raw", "sensor_msgs/msg/Image")
        for i, frame in enumerate(smooth_frames(16, size=48, seed=10)):
            writer.write("/camera/color/image_raw", serialize_message(numpy_to_image(frame, "rgb8")), 1_000_000 * (i + 1))
    enc = make_encoder(siglip_onnx.path, backend="onnxruntime", precision="int8", calib_file=path, engine_cache_dir=str(tmp_path),
                       num_threads=1, fallback=False)
    assert enc.int8_mode == "static" and {"QuantizeLinear", "DequantizeLinear"} <= _op_types(enc.model_path)
    meta = json.loads(open(enc.model_path + ".json").read())
    from vlm_agent.accel.calibration import frames_sha256, load_calibration_frames

    assert meta["spec"]["calib_sha256"] == frames_sha256(load_calibration_frames(path, enc.info))
    x = pixel_values_like_calibration(enc.info)
    ref = make_encoder(siglip_onnx.path, backend="onnxruntime", engine_cache_dir=str(tmp_path), num_threads=1).encode(x)
    assert feature_cosine(ref, enc.encode(x))["mean"] > 0.99
