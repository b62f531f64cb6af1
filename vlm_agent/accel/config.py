"""Configuration of the vision-encoder backend: the one dataclass every image-encoding node embeds.

Kept free of torch/onnxruntime/tensorrt imports so nodes and the CLI can build and validate it
cheaply (parameter declaration happens before any model is loaded).
"""
from __future__ import annotations

import dataclasses
import os
import re

from vlm_agent.config import ConfigBase, param

BACKENDS = ("torch", "onnxruntime", "tensorrt", "openvino")
# Fixed fallback order: each backend falls back only to the ones after it. TensorRT is the
# fastest where it exists (Jetson, NVIDIA dGPU); OpenVINO holds the same place on Intel (and other
# x86) CPUs: the vendor engine, tried before the portable runtime; ONNX Runtime runs everywhere pip
# runs; PyTorch is the reference that always works when the weights are there. OpenVINO runs on
# the CPU only here, so a CUDA request passes over it to ONNX Runtime's CUDA/TensorRT providers.
FALLBACK_ORDER = ("tensorrt", "openvino", "onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# INT8 quantisation: "static" calibrates activation ranges offline on recorded frames (TensorRT,
# ONNX Runtime QDQ, OpenVINO/NNCF); "dynamic" (ONNX Runtime only) quantises weights offline and
# activations per call, needing no frames but paying a range computation per call.
INT8_MODES = ("static", "dynamic")
DEFAULT_OPSET = 18
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclasses.dataclass
class EncoderBackendConfig(ConfigBase):
    """How a node runs its vision encoder. Embed it (or its fields) in a node config.

    Fields:
        backend: requested backend; when it cannot run here the factory walks `FALLBACK_ORDER`
            from it (tensorrt -> openvino -> onnxruntime -> torch) and logs why each step was skipped.
        device: "cpu", "cuda" or "cuda:N". ONNX Runtime on "cuda" prefers its TensorRT, then CUDA
            execution provider, whichever `onnxruntime.get_available_providers()` lists.
        precision: fp32 everywhere; fp16/bf16 for PyTorch on CUDA (bf16 also on CPU); fp16/int8 for
            TensorRT (native or the ORT TensorRT EP); int8 for ONNX Runtime on the CPU (see
            `int8_mode`); bf16/fp16/int8 for OpenVINO where the CPU reports the capability
            (`OPTIMIZATION_CAPABILITIES`). Static INT8 needs `calib_file`. A backend that cannot
            run the precision counts as unavailable, so the request falls back (e.g. bf16 ->
            torch) instead of silently changing numerics.
        int8_mode: "static" (calibrated on `calib_file`; TensorRT, ONNX Runtime, OpenVINO) or
            "dynamic" (ONNX Runtime on the CPU only: weights int8 offline, activation ranges per call).
        engine_cache_dir: where exported ONNX files, quantised models, TensorRT engines, OpenVINO IR and timing caches are kept,
            keyed by content hashes so a changed model never reuses a stale engine.
        fallback: False makes an unavailable backend an error instead of a logged fallback (CI and
            benchmarks use it so they measure what they claim).
        onnx_opset: ONNX opset for export. 18 is what torch's dynamo exporter targets natively and
            is parsed by TensorRT 10 (JetPack 6); LayerNormalization needs >= 17.
        max_batch: largest batch the TensorRT optimisation profile accepts (larger batches are
            split into chunks); ONNX Runtime and PyTorch accept any batch.
        opt_batch: batch size TensorRT tunes kernels for (a robot encodes 1 frame at a time).
        num_threads: intra-op threads for ONNX Runtime / PyTorch on CPU; 0 keeps the library
            default (all cores). Set it on shared machines (Jetson CPU also runs ROS).
        calib_file: .npz/.npy of frames for INT8 calibration: uint8 (N,H,W,3) RGB frames recorded
            from the robot or the sim, or float32 (N,3,H,W) pixel_values already normalised.
        calib_batch_size: frames per calibration batch.
        workspace_mb: TensorRT builder workspace limit (MiB); Orin Nano wants <= 1024.
    """

    backend: str = param("onnxruntime", "vision encoder backend (see FALLBACK_ORDER)", choices=BACKENDS)
    device: str = param("cpu", "device for the vision encoder: cpu, cuda or cuda:N")
    precision: str = param("fp32", "compute precision of the vision encoder", choices=PRECISIONS)
    engine_cache_dir: str = param("~/.cache/vlm_agent/engines", "cache of exported ONNX files and TensorRT engines")
    fallback: bool = param(True, "fall back tensorrt -> openvino -> onnxruntime -> torch when the backend is unavailable")
    onnx_opset: int = param(DEFAULT_OPSET, "ONNX opset used for export", min=17, max=21)
    max_batch: int = param(8, "largest TensorRT batch (optimisation profile max)", min=1, max=256)
    opt_batch: int = param(1, "batch size TensorRT optimises for", min=1, max=256)
    num_threads: int = param(0, "CPU intra-op threads for the encoder (0 = library default)", min=0, max=256)
    calib_file: str = param("", "INT8 calibration frames: .mcap recording, dataset shard, or .npz/.npy (uint8 NHWC / float32 NCHW)")
    calib_batch_size: int = param(8, "frames per INT8 calibration batch", min=1, max=256)
    int8_mode: str = param("static", "INT8 quantisation: static (calibrated on calib_file) or dynamic (onnxruntime only)", choices=INT8_MODES)
    workspace_mb: int = param(2048, "TensorRT builder workspace limit in MiB", min=64, max=65536)

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if not _DEVICE_RE.match(self.device):
            raise ValueError(f"{name}.device: '{self.device}' is not cpu, cuda or cuda:N")
        if self.opt_batch > self.max_batch:
            raise ValueError(f"{name}.opt_batch: {self.opt_batch} exceeds max_batch {self.max_batch}")
        if self.backend == "tensorrt" and self.device == "cpu":
            raise ValueError(f"{name}: backend 'tensorrt' needs device cuda (TensorRT runs on NVIDIA GPUs only)")
        if self.backend == "openvino" and self.device != "cpu":
            raise ValueError(f"{name}: backend 'openvino' runs on device cpu (Intel/x86 CPUs); use tensorrt or onnxruntime on cuda")
        if self.precision == "int8":
            if self.backend == "torch":
                raise ValueError(f"{name}: precision int8 is only available with backend tensorrt, onnxruntime or openvino")
            if self.int8_mode == "dynamic":
                if self.backend != "onnxruntime" or self.device != "cpu":
                    raise ValueError(f"{name}: int8_mode dynamic is ONNX Runtime on the CPU only (backend onnxruntime, device cpu); "
                                     "TensorRT and OpenVINO INT8 are calibrated (int8_mode static with calib_file)")
            elif not self.calib_file:
                raise ValueError(f"{name}: precision int8 (static) needs calib_file (frames recorded from the robot or the sim), "
                                 "or int8_mode dynamic with backend onnxruntime")
        if self.precision == "fp16" and self.device == "cpu" and self.backend != "openvino":
            # PyTorch fp16 on CPU is emulated and slower than fp32; ORT CPU has no fp16 kernels.
            # OpenVINO runs fp16 on CPUs that have it (AMX-FP16, ARM), checked when it starts.
            raise ValueError(f"{name}: precision fp16 needs device cuda (use fp32 or bf16 on cpu, or backend openvino)")

    @property
    def cache_dir(self) -> str:
        """`engine_cache_dir` with `~` and environment variables expanded."""
        return os.path.expandvars(os.path.expanduser(self.engine_cache_dir))


@dataclasses.dataclass
class EncoderParams(ConfigBase):
    """The encoder backend as flat, `encoder_`-prefixed fields, for node/planner configs to inherit.

    ROS parameters are flat, so a node config cannot nest `EncoderBackendConfig`; instead it
    inherits these fields (`class NavidPlannerConfig(EncoderParams): ...`) and calls
    `encoder_config()` when it builds its model:

        enc = vlm_agent.accel.attach_encoder(model, config.encoder_config())

    In YAML: `encoder_backend: tensorrt`, `encoder_device: cuda`, `encoder_precision: fp16`.
    Field meanings are those of `EncoderBackendConfig` (same defaults, same validation).
    """

    encoder_backend: str = param("onnxruntime", "vision encoder backend (falls back tensorrt -> openvino -> onnxruntime -> torch)", choices=BACKENDS)
    encoder_device: str = param("cpu", "vision encoder device: cpu, cuda or cuda:N")
    encoder_precision: str = param("fp32", "vision encoder precision", choices=PRECISIONS)
    encoder_cache_dir: str = param("~/.cache/vlm_agent/engines", "exported ONNX files and TensorRT engines")
    encoder_fallback: bool = param(True, "fall back when the encoder backend is unavailable (logged) instead of failing")
    encoder_num_threads: int = param(0, "CPU threads of the vision encoder (0 = library default)", min=0, max=256)
    encoder_max_batch: int = param(8, "largest TensorRT batch", min=1, max=256)
    encoder_calib_file: str = param("", "INT8 calibration frames (.mcap recording or .npz/.npy) for encoder_precision int8")
    encoder_int8_mode: str = param("static", "INT8 quantisation: static (calibrated on encoder_calib_file) or dynamic (onnxruntime on cpu)", choices=INT8_MODES)

    def __post_init__(self):
        super().__post_init__()
        self.encoder_config()  # cross-field checks (e.g. tensorrt needs cuda) fail at config time

    def encoder_config(self) -> EncoderBackendConfig:
        return EncoderBackendConfig(
            backend=self.encoder_backend,
            device=self.encoder_device,
            precision=self.encoder_precision,
            engine_cache_dir=self.encoder_cache_dir,
            fallback=self.encoder_fallback,
            num_threads=self.encoder_num_threads,
            max_batch=self.encoder_max_batch,
            opt_batch=1,
            calib_file=self.encoder_calib_file,
            int8_mode=self.encoder_int8_mode,
        )
