"""TensorRT code paths that need no GPU: cache keys, the engine cache, calibration batching with a
stand-in for tensorrt, ONNX Runtime provider plans. What needs a GPU is marked `gpu` and skipped."""
from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pytest
import torch

from vlm_agent.accel.calibration import CalibrationBatcher, frames_sha256, load_calibration_frames, make_entropy_calibrator
from vlm_agent.accel.ort_backend import CPU_EP, CUDA_EP, TRT_EP, plan_providers
from vlm_agent.accel.tower import TowerInfo
from vlm_agent.accel.trt_backend import tensorrt_unavailable_reason
from vlm_agent.accel.trt_engine import EngineCache, EngineSpec, make_spec, timing_cache_name

INFO = TowerInfo(image_size=32, num_tokens=16, hidden_size=32, model_type="siglip_vision_model", image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
ORIN = {"name": "Orin", "compute_capability": "8.7"}


def spec(**changes) -> EngineSpec:
    base = EngineSpec(
        onnx_sha256="a" * 64, trt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", precision="fp16",
        input_name="pixel_values", min_shape=(1, 3, 32, 32), opt_shape=(1, 3, 32, 32), max_shape=(8, 3, 32, 32),
    )
    return dataclasses.replace(base, **changes)


def test_cache_key_depends_on_everything_the_engine_depends_on():
    key = spec().key()
    assert key == spec().key() and len(key) == 64
    for change in (
        {"onnx_sha256": "b" * 64}, {"trt_version": "10.7.0"}, {"gpu_name": "NVIDIA H100"}, {"compute_capability": "9.0"},
        {"precision": "fp32"}, {"max_shape": (16, 3, 32, 32)}, {"opt_shape": (4, 3, 32, 32)},
        {"precision": "int8", "calib_sha256": "c" * 64},
    ):
        assert spec(**change).key() != key, change
    assert spec(precision="int8", calib_sha256="c" * 64).key() != spec(precision="int8", calib_sha256="d" * 64).key()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"precision": "bf16"}, "fp32, fp16 or int8"),
        ({"precision": "int8"}, "calib_sha256"),
        ({"min_shape": (2, 3, 32, 32)}, "min <= opt <= max"),
        ({"max_shape": (8, 3, 32)}, "same rank"),
    ],
)
def test_engine_spec_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        spec(**changes)


def test_make_spec_hashes_the_onnx_file_without_tensorrt(siglip_onnx):
    s1 = make_spec(siglip_onnx.path, "fp16", 32, max_batch=8, opt_batch=2, trt_version="10.3.0", gpu=ORIN)
    assert s1.opt_shape == (2, 3, 32, 32) and s1.max_shape == (8, 3, 32, 32) and s1.gpu_name == "Orin"
    assert s1 == make_spec(siglip_onnx.path, "fp16", 32, max_batch=8, opt_batch=2, trt_version="10.3.0", gpu=ORIN)


def test_engine_cache_store_lookup_and_rejects_stale_or_truncated(tmp_path):
    cache = EngineCache(str(tmp_path))
    s = spec()
    assert cache.lookup(s, "enc") is None
    path = cache.store(s, "enc", b"serialized-engine", build_seconds=12.5)
    assert cache.lookup(s, "enc") == path and path.endswith(".fp16." + s.key()[:16] + ".engine")
    assert cache.lookup(spec(trt_version="10.7.0"), "enc") is None  # another TensorRT: rebuild
    meta = json.loads(open(path + ".json").read())
    assert meta["spec"]["gpu_name"] == "Orin" and meta["size"] == len(b"serialized-engine")
    open(path, "wb").write(b"half")  # a crash mid-copy, a full disk...
    assert cache.lookup(s, "enc") is None
    meta["key"] = "0" * 64  # a name collision on the truncated key
    cache.store(s, "enc", b"serialized-engine")
    open(path + ".json", "w").write(json.dumps(meta))
    assert cache.lookup(s, "enc") is None


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path):
    cache = EngineCache(str(tmp_path))
    a = cache.timing_cache_path(spec())
    assert a == cache.timing_cache_path(spec(precision="fp32"))  # shared across precisions and models
    assert a != cache.timing_cache_path(spec(trt_version="10.7.0")) != cache.timing_cache_path(spec(compute_capability="9.0"))
    assert timing_cache_name("10.3.0", "8.7", "Orin (nvgpu)") == "timing-trt10.3.0-sm87-Orin__nvgpu_.cache"


def test_calibration_batcher_serves_full_batches_in_order_then_none():
    frames = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    b = CalibrationBatcher(frames, 4)
    assert b.num_batches == 2
    first, second = b.next_batch(), b.next_batch()
    assert np.array_equal(first, frames[:4]) and np.array_equal(second, frames[4:8])
    assert b.next_batch() is None  # the 2 trailing frames are dropped, never padded
    assert len(list(b)) == 2  # iterating resets
    with pytest.raises(ValueError, match="fewer than one batch"):
        CalibrationBatcher(frames[:3], 4)
    with pytest.raises(ValueError, match=r"\(N, 3, S, S\)"):
        CalibrationBatcher(np.zeros((4, 2, 2, 3), np.float32), 2)


class _FakeCalibratorBase:
    """Stands in for tensorrt.IInt8EntropyCalibrator2 (pybind base with an explicit __init__)."""

    def __init__(self):
        self.base_initialised = True


def test_entropy_calibrator_feeds_batches_through_one_buffer_and_caches(tmp_path):
    fake_trt = types.SimpleNamespace(IInt8EntropyCalibrator2=_FakeCalibratorBase)
    frames = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    cache_file = str(tmp_path / "calib.cache")
    cal = make_entropy_calibrator(fake_trt, CalibrationBatcher(frames, 2), cache_file, device="cpu")
    assert cal.base_initialised and cal.get_batch_size() == 2
    ptrs = [cal.get_batch(["pixel_values"]) for _ in range(2)]
    assert ptrs[0] == ptrs[1] == [cal.buffer.data_ptr()]  # preallocated, reused
    assert np.array_equal(cal.buffer.numpy(), frames[2:4])
    assert cal.get_batch(["pixel_values"]) is None and cal.batches_served == 2
    assert cal.read_calibration_cache() is None
    cal.write_calibration_cache(b"TRT-8601-EntropyCalibration2")
    assert cal.read_calibration_cache() == b"TRT-8601-EntropyCalibration2"


def test_calibration_frames_from_recorded_uint8_and_from_pixel_values(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "rec.npz", frames=raw)
    px = load_calibration_frames(tmp_path / "rec.npz", INFO)
    assert px.shape == (6, 3, 32, 32) and px.dtype == np.float32
    assert -1.0 <= px.min() and px.max() <= 1.0  # SigLIP normalisation of [0, 1] pixels
    same = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "px.npy", same)
    assert np.array_equal(load_calibration_frames(tmp_path / "px.npy", INFO), same)
    assert frames_sha256(px) != frames_sha256(same)
    np.savez(tmp_path / "bad.npz", depth=np.zeros((2, 32, 32), np.float32), other=np.zeros(2))
    with pytest.raises(ValueError, match="expected an array named"):
        load_calibration_frames(tmp_path / "bad.npz", INFO)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_calibration_frames(tmp_path / "bad.npy", INFO)


def test_tensorrt_unavailable_reason_here():
    assert "CUDA device" in tensorrt_unavailable_reason("cpu", "fp16")
    assert "precision bf16" in tensorrt_unavailable_reason("cuda", "bf16")
    reason = tensorrt_unavailable_reason("cuda", "fp16")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert reason is not None and "not importable" in reason and "JetPack" in reason


def test_provider_plans():
    trt = plan_providers("cuda:1", "fp16", [TRT_EP, CUDA_EP, CPU_EP], cache_dir="/c", image_size=32, max_batch=8, opt_batch=2)
    names = [n for n, _ in trt.providers]
    assert names == [TRT_EP, CUDA_EP, CPU_EP] and trt.notes == [] and trt.precision == "fp16"
    opts = trt.providers[0][1]
    assert opts["device_id"] == 1 and opts["trt_fp16_enable"] and opts["trt_engine_cache_path"] == "/c/ort_trt"
    assert opts["trt_profile_max_shapes"] == "pixel_values:8x3x32x32" and opts["trt_profile_opt_shapes"] == "pixel_values:2x3x32x32"
    int8 = plan_providers("cuda", "int8", [TRT_EP, CPU_EP])
    assert int8.precision == "fp16" and "calibration table" in int8.notes[0]
    cuda = plan_providers("cuda", "fp16", [CUDA_EP, CPU_EP])
    assert [n for n, _ in cuda.providers] == [CUDA_EP, CPU_EP] and cuda.precision == "fp32" and cuda.notes
    cpu = plan_providers("cuda", "fp32", ["AzureExecutionProvider", CPU_EP])
    assert cpu.device == "cpu" and [n for n, _ in cpu.providers] == [CPU_EP] and "CPU EP" in cpu.notes[0]
    assert plan_providers("cpu", "fp32", [TRT_EP, CUDA_EP, CPU_EP]).notes == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (and TensorRT for the native backend)")
@pytest.mark.parametrize("backend, precision, atol", [("tensorrt", "fp32", 1e-3), ("tensorrt", "fp16", 2e-2), ("onnxruntime", "fp32", 1e-4)])
def test_gpu_backends_match_torch(tiny_siglip, tmp_path, backend, precision, atol):
    from vlm_agent.accel.factory import make_encoder

    if backend == "tensorrt":
        pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    else:
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            pytest.skip("onnxruntime has no CUDA execution provider (install onnxruntime-gpu)")
    enc = make_encoder(tiny_siglip, backend=backend, device="cuda", precision=precision, fallback=False, engine_cache_dir=str(tmp_path))
    ref = make_encoder(tiny_siglip, backend="torch", device="cuda")
    x = torch.randn(11, 3, 32, 32, device="cuda")  # > max_batch: exercises chunking
    assert float((enc.encode(x) - ref.encode(x)).abs().max()) < atol


class _FakeTRT:
    """Records what build_engine asks of the TensorRT builder (TensorRT 10 Python API surface)."""

    def __init__(self, parse_ok=True):
        self.builds = []
        self.parse_ok = parse_ok
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level):
                self.level = level

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                self.shape = (name, tuple(mn), tuple(opt), tuple(mx))

        class Timing:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return self.data + b"+tuned"

        class Config:
            def __init__(self):
                self.flags, self.pool, self.profiles = set(), {}, []
                self.int8_calibrator = self.calibration_profile = self.timing = None

            def set_memory_pool_limit(self, kind, size):
                self.pool[kind] = size

            def set_flag(self, flag):
                self.flags.add(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def set_calibration_profile(self, profile):
                self.calibration_profile = profile

            def create_timing_cache(self, data):
                return Timing(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.timing = cache
                return True

            def get_timing_cache(self):
                return self.timing

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.builds.append(config)
                return b"engine-" + ",".join(sorted(config.flags)).encode()

        class OnnxParser:
            num_errors = 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                return fake.parse_ok

            def get_error(self, i):
                return "Unsupported ONNX op: FancyAttention"

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")


def test_build_engine_sets_flags_profile_and_reuses_engine_and_timing_caches(siglip_onnx, tmp_path):
    from vlm_agent.accel.trt_engine import build_engine

    trt, cache = _FakeTRT(), EngineCache(str(tmp_path))
    s = make_spec(siglip_onnx.path, "fp16", 32, max_batch=8, opt_batch=1, trt_version="10.3.0", gpu=ORIN)
    path = build_engine(siglip_onnx.path, s, cache, workspace_mb=512, trt=trt)
    (cfg,) = trt.builds
    assert cfg.flags == {"fp16"} and cfg.pool == {"workspace": 512 * 1024 * 1024}
    assert cfg.profiles[0].shape == ("pixel_values", (1, 3, 32, 32), (1, 3, 32, 32), (8, 3, 32, 32))
    assert open(path, "rb").read() == b"engine-fp16" and cache.lookup(s, "siglip") == path
    timing = cache.timing_cache_path(s)
    assert open(timing, "rb").read() == b"+tuned"  # saved after the build...
    assert build_engine(siglip_onnx.path, s, cache, trt=trt) == path and len(trt.builds) == 1  # ...engine reused
    s32 = dataclasses.replace(s, precision="fp32")
    build_engine(siglip_onnx.path, s32, cache, trt=trt)
    assert trt.builds[-1].timing.data == b"+tuned" and trt.builds[-1].flags == set()  # timing cache loaded


def test_build_engine_int8_needs_a_calibrator_and_uses_the_profile_for_calibration(siglip_onnx, tmp_path):
    from vlm_agent.accel.trt_engine import build_engine

    trt, cache = _FakeTRT(), EngineCache(str(tmp_path))
    s = make_spec(siglip_onnx.path, "int8", 32, max_batch=4, calib_sha256="c" * 64, trt_version="10.3.0", gpu=ORIN)
    with pytest.raises(ValueError, match="calibrator"):
        build_engine(siglip_onnx.path, s, cache, trt=trt)
    calibrator = object()
    build_engine(siglip_onnx.path, s, cache, calibrator=calibrator, trt=trt)
    cfg = trt.builds[-1]
    assert cfg.flags == {"fp16", "int8"} and cfg.int8_calibrator is calibrator
    assert cfg.calibration_profile is cfg.profiles[0]


def test_build_engine_reports_parser_errors(siglip_onnx, tmp_path):
    from vlm_agent.accel.trt_engine import build_engine

    s = make_spec(siglip_onnx.path, "fp16", 32, max_batch=8, trt_version="10.3.0", gpu=ORIN)
    with pytest.raises(RuntimeError, match="FancyAttention"):
        build_engine(siglip_onnx.path, s, EngineCache(str(tmp_path)), trt=_FakeTRT(parse_ok=False))


def test_calibration_frames_from_a_robot_recording_and_a_dataset_shard(tmp_path):
    """INT8 calibration straight from `vlm-agent record` (MCAP) and `vlm-agent dataset` shards ("rgb")."""
    from rclpy.serialization import serialize_message

    from vlm_agent.sensors.image_conversion import numpy_to_image
    from vlm_agent.sensors.recording import McapRecordingWriter

    path = str(tmp_path / "robot.mcap")
    with McapRecordingWriter(path) as writer:
        writer.add_channel("/camera/color/image_raw", "sensor_msgs/msg/Image")
        for i in range(20):
            writer.write("/camera/color/image_raw", serialize_message(numpy_to_image(np.full((24, 40, 3), 10 * i, np.uint8), "rgb8")), 1_000_000 * (i + 1))
    px = load_calibration_frames(path, INFO, max_frames=5)
    assert px.shape == (5, 3, 32, 32)
    values = np.round((px[:, 0, 0, 0] * 0.5 + 0.5) * 255).astype(int).tolist()
    assert values == [0, 50, 100, 140, 190]  # evenly spaced over the recording, first and last kept
    with pytest.raises(ValueError, match="no messages on /camera/other"):
        load_calibration_frames(path, INFO, topic="/camera/other")
    np.savez(tmp_path / "shard_00000.npz", rgb=np.zeros((3, 12, 16, 3), np.uint8), odom=np.zeros((3, 6)))
    assert load_calibration_frames(tmp_path / "shard_00000.npz", INFO).shape == (3, 3, 32, 32)
