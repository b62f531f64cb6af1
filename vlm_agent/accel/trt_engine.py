"""TensorRT engines: cache keys, the on-disk engine cache, and the ONNX -> engine build.

An engine is only valid for the exact graph, TensorRT version and GPU it was built on, and for its
optimisation-profile shapes and precision. The cache key hashes all of them (plus the calibration
data for INT8), so a changed model, a JetPack upgrade or a different Orin never loads a stale
engine; it is rebuilt instead. The builder's timing cache (kernel timings per GPU and TensorRT
version) is kept next to the engines and reused, which cuts rebuilds from minutes to seconds.

`tensorrt` is imported lazily inside `build_engine`/`trt_version` only: everything else here runs
on machines without TensorRT (CI), and the tests exercise it there.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time

log = logging.getLogger(__name__)


def import_tensorrt():
    """The tensorrt module, or ImportError saying how to get it (it never comes from PyPI here)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from missing libnvinfer
        raise ImportError(
            f"TensorRT is not importable ({type(exc).__name__}: {exc}). On Jetson it ships with JetPack "
            "(apt: python3-libnvinfer); on x86 install NVIDIA's tensorrt wheel from pypi.nvidia.com. "
            "Meanwhile use backend onnxruntime."
        ) from exc
    import tensorrt

    return tensorrt


def gpu_identity(device: str = "cuda") -> dict:
    """{"name": ..., "compute_capability": "8.7"} of the CUDA device (Orin is 8.7, H100 9.0)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: TensorRT engines are built for a specific GPU")
    dev = torch.device(device)
    major, minor = torch.cuda.get_device_capability(dev)
    return {"name": torch.cuda.get_device_name(dev), "compute_capability": f"{major}.{minor}"}


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """Everything an engine depends on. `key()` is its cache key.

    onnx_sha256: hash of the ONNX file (+ external data); trt_version: tensorrt.__version__;
    gpu_name/compute_capability: the build GPU; precision: fp32/fp16/int8;
    shapes: input (min, opt, max) as (B, 3, S, S) tuples; calib_sha256: INT8 calibration data
    (empty otherwise).
    """

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    calib_sha256: str = ""

    def __post_init__(self):
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"EngineSpec.precision: '{self.precision}' is not fp32, fp16 or int8")
        if self.precision == "int8" and not self.calib_sha256:
            raise ValueError("EngineSpec: an int8 engine needs calib_sha256 (the calibration data is part of the engine)")
        if not (len(self.min_shape) == len(self.opt_shape) == len(self.max_shape)):
            raise ValueError("EngineSpec: min/opt/max shapes must have the same rank")
        if not all(a <= b <= c for a, b, c in zip(self.min_shape, self.opt_shape, self.max_shape)):
            raise ValueError(f"EngineSpec: need min <= opt <= max, got {self.min_shape} {self.opt_shape} {self.max_shape}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        canon = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in self.to_dict().items()}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()


def timing_cache_name(trt_version: str, compute_capability: str, gpu_name: str) -> str:
    """Timing caches are per TensorRT version and GPU: mixing them makes TensorRT reject the cache."""
    gpu = "".join(c if c.isalnum() else "_" for c in gpu_name)
    return f"timing-trt{trt_version}-sm{compute_capability.replace('.', '')}-{gpu}.cache"


class EngineCache:
    """Engines on disk: `<dir>/<stem>.<precision>.<key[:16]>.engine` plus a `.json` with the full spec.

    `lookup` returns a path only when the sidecar's full key matches (a truncated-name collision or
    a half-written file never loads); `store` writes atomically (tmp file + rename).
    """

    def __init__(self, directory: str):
        self.directory = directory

    def path_for(self, spec: EngineSpec, stem: str) -> str:
        return os.path.join(self.directory, f"{stem}.{spec.precision}.{spec.key()[:16]}.engine")

    def lookup(self, spec: EngineSpec, stem: str) -> str | None:
        from .artifact_cache import read_sidecar

        path = self.path_for(spec, stem)
        stored = read_sidecar(path, spec.key(), "engine cache")
        if stored is None:
            return None
        if stored.get("size") != os.path.getsize(path):
            log.warning("engine cache: %s is truncated, ignoring it", path)
            return None
        return path

    def store(self, spec: EngineSpec, stem: str, engine_bytes: bytes, build_seconds: float = 0.0) -> str:
        os.makedirs(self.directory, exist_ok=True)
        path = self.path_for(spec, stem)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(engine_bytes)
        os.replace(tmp, path)
        meta = {"key": spec.key(), "spec": spec.to_dict(), "size": len(engine_bytes), "build_seconds": round(build_seconds, 2), "created": time.time()}
        with open(path + ".json.tmp", "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(path + ".json.tmp", path + ".json")
        return path

    def timing_cache_path(self, spec: EngineSpec) -> str:
        return os.path.join(self.directory, timing_cache_name(spec.trt_version, spec.compute_capability, spec.gpu_name))


def make_spec(
    onnx_path: str,
    precision: str,
    image_size: int,
    max_batch: int,
    opt_batch: int = 1,
    calib_sha256: str = "",
    trt_version: str | None = None,
    gpu: dict | None = None,
    device: str = "cuda",
) -> EngineSpec:
    """EngineSpec for an exported encoder; `trt_version`/`gpu` are looked up when not given."""
    from .onnx_export import INPUT_NAME, file_sha256

    if trt_version is None:
        trt_version = import_tensorrt().__version__
    gpu = gpu or gpu_identity(device)
    s = image_size
    return EngineSpec(
        onnx_sha256=file_sha256(onnx_path),
        trt_version=trt_version,
        gpu_name=gpu["name"],
        compute_capability=gpu["compute_capability"],
        precision=precision,
        input_name=INPUT_NAME,
        min_shape=(1, 3, s, s),
        opt_shape=(opt_batch, 3, s, s),
        max_shape=(max_batch, 3, s, s),
        calib_sha256=calib_sha256,
    )


def build_engine(
    onnx_path: str,
    spec: EngineSpec,
    cache: EngineCache,
    workspace_mb: int = 2048,
    calibrator=None,
    trt=None,
) -> str:
    """Build (or find in `cache`) the engine for `spec`; returns the engine file path.

    FP16 is enabled for fp16 and int8 builds (INT8 layers fall back to FP16, not FP32, where INT8
    is not supported). INT8 uses `calibrator` (see `calibration.make_entropy_calibrator`) with the
    same optimisation profile for calibration. The timing cache is loaded before and saved after.
    """
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    hit = cache.lookup(spec, stem)
    if hit:
        log.info("TensorRT engine cache hit: %s", hit)
        return hit
    trt = trt or import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):  # reads external weight files next to the .onnx
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb * 1024 * 1024)
    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(spec.input_name, spec.min_shape, spec.opt_shape, spec.max_shape)
    config.add_optimization_profile(profile)
    if spec.precision == "int8":
        if calibrator is None:
            raise ValueError("an int8 build needs a calibrator (calibration frames)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    timing_path = cache.timing_cache_path(spec)
    timing_bytes = b""
    if os.path.isfile(timing_path):
        with open(timing_path, "rb") as f:
            timing_bytes = f.read()
    timing = config.create_timing_cache(timing_bytes)
    config.set_timing_cache(timing, ignore_mismatch=False)
    log.info("building TensorRT %s engine for %s (this takes minutes on a Jetson)", spec.precision, onnx_path)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    seconds = time.perf_counter() - t0
    os.makedirs(cache.directory, exist_ok=True)
    with open(timing_path + ".tmp", "wb") as f:
        f.write(bytes(config.get_timing_cache().serialize()))
    os.replace(timing_path + ".tmp", timing_path)
    path = cache.store(spec, stem, bytes(serialized), seconds)
    log.info("TensorRT engine built in %.0f s: %s", seconds, path)
    return path
