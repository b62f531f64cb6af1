"""INT8 encoders for the CPU with ONNX Runtime's own quantiser (no extra package), cached.

Two modes, both from the exported fp32 ONNX file (`onnx_export`), both keeping inputs and outputs
float32 (the `VisionEncoder` contract) and the file's `vlm_agent.tower_info` metadata:

- **dynamic** (`quantize_dynamic`): the weights of every MatMul/Gemm with a constant weight are
  int8 (per tensor) in the file; activation ranges are computed at run time for every call
  (`DynamicQuantizeLinear` + `MatMulInteger`). Needs no calibration frames.
- **static** (`quantize_static`, QDQ format): weights int8 per output channel, activations uint8
  with ranges measured offline (MinMax) on calibration frames from the same sources as the
  TensorRT INT8 path (`calibration.load_calibration_frames`: MCAP recordings, dataset/sim npz
  shards, npz/npy arrays). ONNX Runtime fuses the QDQ pairs into integer kernels at load.

Only MatMul/Gemm with a constant weight are quantised (the linear layers, >95% of a ViT's FLOPs);
the patch-embedding conv, attention products, LayerNorm, softmax and GELU stay fp32, which is what
keeps feature cosine high (measured in benchmarks/encoder_cpu_results.md). U8S8 (uint8
activations, int8 weights) is the fast path on x86 with AVX512-VNNI / AVX-VNNI; on older AVX2-only
CPUs ORT's U8S8 kernels can saturate, which shows up as a parity drop, not a crash: measure there.

The quantised file is cached next to the exports under a key of: the fp32 file's sha256, the
onnxruntime version, the mode, the quantiser settings, the input shape and (static) the
calibration frames' sha256 (`artifact_cache.ArtifactSpec`). A changed model, calibration set or
ORT upgrade re-quantises; nothing stale is loaded.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from .artifact_cache import ArtifactCache, ArtifactSpec
from .onnx_export import INPUT_NAME, file_sha256, read_tower_info

log = logging.getLogger(__name__)

MODES = ("static", "dynamic")
# Options handed to the quantiser; part of the cache key (change one and files are rebuilt).
OP_TYPES = ("MatMul", "Gemm")
SETTINGS = {
    "dynamic": (("op_types", OP_TYPES), ("weight_type", "QInt8"), ("per_channel", False), ("matmul_const_b_only", True)),
    "static": (("op_types", OP_TYPES), ("format", "QDQ"), ("activation_type", "QUInt8"), ("weight_type", "QInt8"),
               ("per_channel", True), ("calibrate_method", "MinMax"), ("matmul_const_b_only", True)),
}


class _FramesReader:
    """onnxruntime `CalibrationDataReader` over fixed-size batches of (N, 3, S, S) float32 frames."""

    def __init__(self, frames: np.ndarray, batch_size: int):
        from .calibration import CalibrationBatcher

        self._batches = iter(CalibrationBatcher(frames, min(batch_size, len(frames))))

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantized_onnx(
    onnx_path: str,
    mode: str,
    cache_dir: str = "",
    frames: np.ndarray | None = None,
    calib_batch_size: int = 8,
) -> str:
    """Path of the INT8 version of an exported encoder, quantising only on a cache miss.

    mode: "dynamic" (no frames) or "static" (`frames`: float32 (N, 3, S, S) pixel_values, as
    `calibration.load_calibration_frames` returns). Raises ValueError for a bad mode or missing
    frames; errors of the quantiser propagate (the factory turns them into a logged fallback).
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    from .calibration import frames_sha256

    if mode not in MODES:
        raise ValueError(f"int8 mode must be one of {MODES}, got {mode!r}")
    info = read_tower_info(onnx_path)
    calib = ""
    if mode == "static":
        if frames is None or len(frames) == 0:
            raise ValueError("static INT8 needs calibration frames (calib_file)")
        calib = frames_sha256(frames)
    s = info.image_size
    spec = ArtifactSpec(
        kind=f"ort-int8-{mode}",
        source_sha256=file_sha256(onnx_path),
        runtime=f"onnxruntime {ort.__version__}",
        device="cpu (portable file; kernels chosen at load)",
        input_shape=(-1, 3, s, s),
        calib_sha256=calib,
        settings=SETTINGS[mode],
    )
    cache = ArtifactCache(cache_dir or os.path.dirname(os.path.abspath(onnx_path)))
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    path = cache.path_for(spec, stem, ".onnx")
    if cache.lookup(spec, path):
        log.info("INT8 (%s) ONNX cache hit: %s", mode, path)
        return path
    tmp = cache.tmp_name(path)
    t0 = time.perf_counter()
    opts = dict(SETTINGS[mode])
    # (Not "CalibMaxIntermediateOutputs": in onnxruntime 1.32 reaching that count *discards* the
    # collected ranges instead of merging them. MinMax keeps only per-tensor min/max per batch anyway.)
    extra = {"MatMulConstBOnly": opts["matmul_const_b_only"]}
    try:
        with _quiet_quantiser():
            if mode == "dynamic":
                quantize_dynamic(onnx_path, tmp, weight_type=QuantType.QInt8, per_channel=opts["per_channel"],
                                 op_types_to_quantize=list(OP_TYPES), extra_options=extra)
            else:
                quantize_static(onnx_path, tmp, _FramesReader(frames, calib_batch_size), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=opts["per_channel"],
                                op_types_to_quantize=list(OP_TYPES), calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    except Exception:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    seconds = time.perf_counter() - t0
    cache.commit(spec, {tmp: path}, path, seconds)
    log.info("quantised %s to INT8 (%s%s) in %.1f s: %s", stem, mode,
             f", {len(frames)} calibration frames" if frames is not None and mode == "static" else "", seconds, path)
    return path


class _quiet_quantiser(logging.Filter):
    """The quantiser logs hints ("consider pre-processing") straight on the root logger for every
    call; drop the root-logger records that come from onnxruntime.quantization while it runs (a
    filter on those records only, so other threads' logging is untouched)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/onnxruntime/quantization/" not in record.pathname.replace(os.sep, "/")

    def __enter__(self):
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self)
        return False
