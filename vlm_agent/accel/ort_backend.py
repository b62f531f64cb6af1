"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers, chosen from what is installed.

Provider choice (`plan_providers`): on a CUDA device, the TensorRT EP first (fp32/fp16, its own engine
and timing caches under the cache dir), then the CUDA EP (fp32), then the CPU EP; on "cpu", the CPU
EP (fp32, or int8: the file is quantised first, dynamic or static, see `ort_quant`). When the device asks for CUDA but this onnxruntime build has no GPU provider (the PyPI
`onnxruntime` wheel is CPU-only), the encoder runs on the CPU EP and says so in `notes`, which the
factory logs as a fallback reason. A precision the chosen provider cannot run is lowered (int8 ->
fp16 -> fp32) and also noted: the strict mode of the factory (`fallback=False`) turns notes into errors.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import torch

from .base import VisionEncoder
from .onnx_export import INPUT_NAME, OUTPUT_NAME, read_tower_info

log = logging.getLogger(__name__)

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclasses.dataclass
class ProviderPlan:
    """providers: [(name, options)] in priority order for `InferenceSession`; device/precision: what
    will actually run; notes: every way this differs from the request (empty = exactly as asked)."""

    providers: list[tuple[str, dict]]
    device: str
    precision: str
    notes: list[str]


def _device_id(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def plan_providers(
    device: str,
    precision: str,
    available: list[str],
    cache_dir: str = "",
    image_size: int = 224,
    max_batch: int = 8,
    opt_batch: int = 1,
    workspace_mb: int = 2048,
) -> ProviderPlan:
    """Pure function of the request and `onnxruntime.get_available_providers()` (testable anywhere)."""
    notes: list[str] = []
    if device.startswith("cuda"):
        dev_id = _device_id(device)
        if TRT_EP in available:
            prec = precision
            if precision == "int8":
                # The TRT EP needs an offline calibration table for INT8; native TensorRT is the INT8 path.
                prec = "fp16"
                notes.append("onnxruntime TensorRT EP: int8 needs a calibration table, running fp16 (use backend tensorrt for INT8)")
            elif precision == "bf16":
                prec = "fp16"
                notes.append("onnxruntime TensorRT EP: bf16 not offered, running fp16")
            shapes = lambda b: f"{INPUT_NAME}:{b}x3x{image_size}x{image_size}"  # noqa: E731
            trt_cache = os.path.join(cache_dir, "ort_trt") if cache_dir else ""
            trt_opts = {
                "device_id": dev_id,
                "trt_fp16_enable": prec == "fp16",
                "trt_max_workspace_size": workspace_mb * 1024 * 1024,
                "trt_profile_min_shapes": shapes(1),
                "trt_profile_opt_shapes": shapes(opt_batch),
                "trt_profile_max_shapes": shapes(max_batch),
            }
            if trt_cache:
                # Engine + timing caches: the first start on a Jetson builds for minutes, later ones load.
                trt_opts.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=trt_cache,
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=trt_cache,
                )
            providers = [(TRT_EP, trt_opts)]
            if CUDA_EP in available:
                providers.append((CUDA_EP, {"device_id": dev_id}))
            providers.append((CPU_EP, {}))
            return ProviderPlan(providers, device, prec, notes)
        if CUDA_EP in available:
            if precision != "fp32":
                notes.append(f"onnxruntime CUDA EP runs the fp32 graph: {precision} -> fp32")
            return ProviderPlan([(CUDA_EP, {"device_id": dev_id}), (CPU_EP, {})], device, "fp32", notes)
        notes.append(f"onnxruntime has no CUDA/TensorRT execution provider (available: {available}): running on the CPU EP")
        device = "cpu"
    if precision == "int8":
        return ProviderPlan([(CPU_EP, {})], "cpu", "int8", notes)
    if precision != "fp32":
        notes.append(f"onnxruntime CPU EP runs fp32 or int8: {precision} -> fp32")
    return ProviderPlan([(CPU_EP, {})], "cpu", "fp32", notes)


class OrtVisionEncoder(VisionEncoder):
    """An exported encoder (.onnx with vlm_agent metadata) in an `onnxruntime.InferenceSession`.

    CPU: numpy in/out (a CPU torch tensor is viewed, not copied); int8 runs the quantised file
    (`int8_mode` dynamic, or static calibrated on `calib_file`; `self.model_path` is the file
    actually run, `self.onnx_path` the fp32 export). CUDA EP / TensorRT EP: IO binding
    on torch CUDA tensors (no host round trip when the input already lives on the GPU), output
    allocated by torch on the same device.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        onnx_path: str,
        device: str = "cpu",
        precision: str = "fp32",
        num_threads: int = 0,
        cache_dir: str = "",
        max_batch: int = 8,
        opt_batch: int = 1,
        workspace_mb: int = 2048,
        available_providers: list[str] | None = None,
        int8_mode: str = "static",
        calib_file: str = "",
        calib_batch_size: int = 8,
    ):
        import onnxruntime as ort

        info = read_tower_info(onnx_path)
        available = list(available_providers if available_providers is not None else ort.get_available_providers())
        plan = plan_providers(device, precision, available, cache_dir, info.image_size, max_batch, opt_batch, workspace_mb)
        super().__init__(info, plan.precision, plan.device)
        self.onnx_path = onnx_path
        self.int8_mode = int8_mode if plan.precision == "int8" else ""
        self.notes = list(plan.notes)
        self.model_path = onnx_path
        if plan.precision == "int8":
            from .ort_quant import quantized_onnx

            frames = None
            if int8_mode == "static":
                from .calibration import load_calibration_frames

                if not calib_file:
                    raise ValueError("onnxruntime static int8 needs calib_file (frames recorded from the robot or the sim)")
                frames = load_calibration_frames(calib_file, info)
            self.model_path = quantized_onnx(onnx_path, int8_mode, cache_dir, frames, calib_batch_size)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        if any(name == TRT_EP for name, _ in plan.providers) and cache_dir:
            os.makedirs(os.path.join(cache_dir, "ort_trt"), exist_ok=True)
        self.session = ort.InferenceSession(
            self.model_path, sess_options=opts, providers=[n for n, _ in plan.providers], provider_options=[o for _, o in plan.providers]
        )
        got = self.session.get_providers()
        wanted = plan.providers[0][0]
        if got and got[0] != wanted:
            # ORT drops a provider whose libraries fail to load (missing CUDA/cuDNN) with only a log line.
            self.notes.append(f"onnxruntime could not start {wanted} (session providers: {got})")
            if got[0] == CPU_EP:
                self.device, self.precision = "cpu", "fp32"
        self._on_gpu = self.device.startswith("cuda")

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def describe(self) -> dict:
        d = super().describe()
        d["providers"] = ",".join(self.providers)
        if self.int8_mode:
            d["precision"] = f"int8-{self.int8_mode}"
        return d

    def _encode(self, x):
        if self._on_gpu:
            return self._encode_cuda(x)
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return torch.from_numpy(out)

    def _encode_cuda(self, x):  # pragma: no cover - needs a CUDA build of onnxruntime and a GPU
        dev = torch.device(self.device)
        x = (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(dev).contiguous()
        out = torch.empty((x.shape[0], *self.output_shape), dtype=torch.float32, device=dev)
        binding = self.session.io_binding()
        dev_id = dev.index or 0
        binding.bind_input(INPUT_NAME, "cuda", dev_id, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", dev_id, np.float32, tuple(out.shape), out.data_ptr())
        # ORT runs on its own CUDA stream: make sure torch finished writing the input.
        torch.cuda.current_stream(dev).synchronize()
        self.session.run_with_iobinding(binding)
        return out
