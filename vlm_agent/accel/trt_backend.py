"""Native TensorRT backend (TensorRT 10 API): engine from ONNX, cached; execution on a CUDA stream.

Buffers are torch CUDA tensors allocated once for `max_batch` (input (max_batch, 3, S, S) float32,
output (max_batch, N, D) float32): a frame is copied into the input buffer, the engine runs on the
encoder's own stream, and the caller's stream waits on it, so nothing is allocated per frame.
Batches larger than `max_batch` are encoded in chunks.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .base import VisionEncoder
from .onnx_export import INPUT_NAME, OUTPUT_NAME, read_tower_info
from .trt_engine import EngineCache, build_engine, import_tensorrt, make_spec

log = logging.getLogger(__name__)


def tensorrt_unavailable_reason(device: str, precision: str) -> str | None:
    """None when native TensorRT can run here, else why not (checked before any export/build)."""
    if not device.startswith("cuda"):
        return f"tensorrt: needs a CUDA device, got '{device}'"
    if precision not in ("fp32", "fp16", "int8"):
        return f"tensorrt: precision {precision} is not built by this backend (fp32, fp16, int8)"
    try:
        import_tensorrt()
    except ImportError as exc:
        return f"tensorrt: {exc}"
    if not torch.cuda.is_available():
        return "tensorrt: CUDA is not available to torch (needed for buffers and streams)"
    return None


class TensorRTVisionEncoder(VisionEncoder):  # pragma: no cover - needs TensorRT and a GPU
    backend = "tensorrt"

    def __init__(
        self,
        onnx_path: str,
        device: str = "cuda",
        precision: str = "fp16",
        cache_dir: str = "",
        max_batch: int = 8,
        opt_batch: int = 1,
        workspace_mb: int = 2048,
        calib_file: str = "",
        calib_batch_size: int = 8,
    ):
        reason = tensorrt_unavailable_reason(device, precision)
        if reason:
            raise RuntimeError(reason)
        trt = import_tensorrt()
        info = read_tower_info(onnx_path)
        super().__init__(info, precision, device)
        self.onnx_path = onnx_path
        self.max_batch = max_batch
        cache_dir = cache_dir or os.path.dirname(os.path.abspath(onnx_path))
        cache = EngineCache(cache_dir)
        calibrator, calib_hash = None, ""
        if precision == "int8":
            from .calibration import CalibrationBatcher, frames_sha256, load_calibration_frames, make_entropy_calibrator

            if not calib_file:
                raise ValueError("tensorrt int8 needs calib_file (frames recorded from the robot or the sim)")
            frames = load_calibration_frames(calib_file, info)
            calib_hash = frames_sha256(frames)
            batcher = CalibrationBatcher(frames, calib_batch_size)
            calib_cache = os.path.join(cache_dir, f"calib-{calib_hash[:16]}.cache")
            calibrator = make_entropy_calibrator(trt, batcher, calib_cache, device)
        with torch.cuda.device(torch.device(device)):
            spec = make_spec(onnx_path, precision, info.image_size, max_batch, opt_batch, calib_hash, trt.__version__, device=device)
            self.engine_path = build_engine(onnx_path, spec, cache, workspace_mb, calibrator, trt)
            self._logger = trt.Logger(trt.Logger.WARNING)
            with open(self.engine_path, "rb") as f:
                self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(f.read())
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {self.engine_path} (built by another TensorRT?)")
            self.context = self.engine.create_execution_context()
            dev = torch.device(device)
            s, (n, d) = info.image_size, self.output_shape
            self._input = torch.empty((max_batch, 3, s, s), dtype=torch.float32, device=dev)
            self._output = torch.empty((max_batch, n, d), dtype=torch.float32, device=dev)
            self.stream = torch.cuda.Stream(device=dev)
            for name in (INPUT_NAME, OUTPUT_NAME):
                if self.engine.get_tensor_dtype(name) != trt.float32:
                    raise RuntimeError(f"{self.engine_path}: tensor {name} is not float32 (re-export the ONNX file)")

    def _encode(self, x):
        dev = torch.device(self.device)
        x = (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(dev, non_blocking=True)
        chunks = [self._run_chunk(x[i : i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def _run_chunk(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        caller = torch.cuda.current_stream(x.device)
        self.stream.wait_stream(caller)  # the input may still be being written on the caller's stream
        with torch.cuda.stream(self.stream):
            self._input[:b].copy_(x)
            self.context.set_input_shape(INPUT_NAME, tuple(self._input[:b].shape))
            self.context.set_tensor_address(INPUT_NAME, self._input.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, self._output.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            out = self._output[:b].clone()  # the buffer is reused by the next call
        caller.wait_stream(self.stream)
        out.record_stream(caller)
        return out
