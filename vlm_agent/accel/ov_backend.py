"""OpenVINO backend (`openvino` from PyPI): the exported ONNX encoder on Intel (and other x86) CPUs.

Build: the fp32 ONNX export (`onnx_export`) is read by OpenVINO, its batch axis bounded to
[1, max_batch] (larger batches are run in chunks), quantised for INT8, and saved as OpenVINO IR
(`.xml` + `.bin`) in the engine cache under the TensorRT cache rules (`artifact_cache`): the key
hashes the ONNX file, the OpenVINO version, the device (full CPU name), the input shapes
(min/opt/max) and, for INT8, the calibration frames and the quantiser (NNCF version and options).
OpenVINO's own compiled-blob cache (`CACHE_DIR`, keyed by OpenVINO itself) sits beside it.

Precisions (OpenVINO's `INFERENCE_PRECISION_HINT`, always set explicitly: OpenVINO's CPU default
is bf16 on CPUs with AVX512-BF16/AMX, which would silently change numerics):
- fp32: `f32`;
- bf16 / fp16: `bf16` / `f16`, only where the CPU lists BF16 / FP16 in `OPTIMIZATION_CAPABILITIES`
  (else the backend is unavailable and the factory falls back, logged);
- int8 (static): NNCF post-training quantisation (`nncf.quantize`, transformer model type, MIXED
  preset, SmoothQuant off: see `NNCF_SETTINGS`) on the
  calibration frames of the TensorRT/ONNX Runtime INT8 paths (`calibration.load_calibration_frames`);
  layers NNCF leaves unquantised run in f32. Without `nncf` installed, OpenVINO runs ONNX
  Runtime's statically quantised QDQ file instead (OpenVINO turns QDQ pairs into its own INT8
  FakeQuantize ops), with the same frames; `self.int8_method` says which was used.

Threads: `INFERENCE_NUM_THREADS` = num_threads (0 = OpenVINO's default, all cores),
`PERFORMANCE_HINT` LATENCY (one stream: one frame at a time is the robot's case).
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time

import numpy as np
import torch

from .artifact_cache import ArtifactCache, ArtifactSpec
from .base import VisionEncoder
from .onnx_export import INPUT_NAME, file_sha256, read_tower_info

log = logging.getLogger(__name__)

# Our precision -> (OPTIMIZATION_CAPABILITIES entry the CPU must list, INFERENCE_PRECISION_HINT).
_PRECISION = {"fp32": ("FP32", "f32"), "bf16": ("BF16", "bf16"), "fp16": ("FP16", "f16"), "int8": ("INT8", "f32")}
OV_DEVICE = "CPU"
# NNCF options (part of the INT8 cache key).
# MIXED: symmetric int8 weights, asymmetric activations (GELU outputs are one-sided). SmoothQuant
# off: with it NNCF's INT8 SigLIP-base fell to feature cosine 0.95-0.99 on rendered frames, without
# it 0.9995 at the same speed (measured 2026-11-29, benchmarks/encoder_cpu_results.md).
NNCF_SETTINGS = (("model_type", "TRANSFORMER"), ("preset", "MIXED"), ("smooth_quant", False), ("calibration_batch", 1))


@functools.lru_cache(maxsize=1)
def _core():
    import openvino as ov

    return ov.Core()


def device_capabilities(device: str = OV_DEVICE) -> dict:
    """{"name": full device name, "capabilities": [...], "default_precision": ...} from OpenVINO."""
    core = _core()
    return {
        "name": str(core.get_property(device, "FULL_DEVICE_NAME")),
        "capabilities": [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")],
        "default_precision": str(core.get_property(device, "INFERENCE_PRECISION_HINT")),
    }


def openvino_unavailable_reason(device: str, precision: str) -> str | None:
    """None when OpenVINO can run `precision` on `device` here, else why not (cheap: no model)."""
    if device != "cpu":
        return f"openvino: runs on the CPU in this project, not on '{device}' (CUDA goes to onnxruntime/tensorrt)"
    if precision not in _PRECISION:
        return f"openvino: precision {precision} is not supported ({sorted(_PRECISION)})"
    try:
        import openvino  # noqa: F401
    except Exception as exc:
        return f"openvino: not importable ({type(exc).__name__}: {exc}); pip install openvino"
    try:
        caps = device_capabilities()
    except Exception as exc:  # no usable CPU plugin
        return f"openvino: cannot query the {OV_DEVICE} device ({type(exc).__name__}: {exc})"
    need = _PRECISION[precision][0]
    if need not in caps["capabilities"]:
        return f"openvino: the CPU ({caps['name']}) does not offer {need} (OPTIMIZATION_CAPABILITIES {caps['capabilities']})"
    return None


def nncf_available() -> bool:
    try:
        import nncf  # noqa: F401
    except Exception:
        return False
    return True


class OpenVinoVisionEncoder(VisionEncoder):
    """An exported encoder compiled by OpenVINO for the CPU (see the module docstring)."""

    backend = "openvino"

    def __init__(
        self,
        onnx_path: str,
        device: str = "cpu",
        precision: str = "fp32",
        num_threads: int = 0,
        cache_dir: str = "",
        max_batch: int = 8,
        opt_batch: int = 1,
        calib_file: str = "",
        calib_batch_size: int = 8,
        use_nncf: bool | None = None,
    ):
        reason = openvino_unavailable_reason(device, precision)
        if reason:
            raise RuntimeError(reason)
        import openvino as ov

        info = read_tower_info(onnx_path)
        super().__init__(info, precision, device)
        self.onnx_path = onnx_path
        self.max_batch = max_batch
        self.notes: list[str] = []
        self.int8_method = ""
        cache_dir = cache_dir or os.path.dirname(os.path.abspath(onnx_path))
        caps = device_capabilities()
        self.device_name = caps["name"]
        s = info.image_size
        frames, calib, settings = None, "", ()
        kind = "openvino-ir-fp32"
        if precision == "int8":
            from .calibration import frames_sha256, load_calibration_frames

            if not calib_file:
                raise ValueError("openvino int8 needs calib_file (frames recorded from the robot or the sim)")
            frames = load_calibration_frames(calib_file, info)
            calib = frames_sha256(frames)
            use_nncf = nncf_available() if use_nncf is None else use_nncf
            if use_nncf:
                import nncf

                self.int8_method = f"nncf {nncf.__version__}"
                settings = (("method", self.int8_method), *NNCF_SETTINGS)
            else:
                from .ort_quant import SETTINGS

                import onnxruntime

                self.int8_method = f"onnxruntime {onnxruntime.__version__} QDQ"
                settings = (("method", self.int8_method), *SETTINGS["static"])
            kind = "openvino-ir-int8"
        spec = ArtifactSpec(
            kind=kind,
            source_sha256=file_sha256(onnx_path),
            runtime=f"openvino {ov.__version__}",
            device=f"{OV_DEVICE}: {self.device_name}",
            input_shape=((1, 3, s, s), (opt_batch, 3, s, s), (max_batch, 3, s, s)),
            calib_sha256=calib,
            settings=settings,
        )
        cache = ArtifactCache(cache_dir)
        stem = os.path.splitext(os.path.basename(onnx_path))[0]
        xml = cache.path_for(spec, stem, ".xml")
        if cache.lookup(spec, xml):
            log.info("OpenVINO IR cache hit: %s", xml)
        else:
            self._build_ir(spec, cache, xml, frames, calib_batch_size, cache_dir, use_nncf)
        self.ir_path = xml
        core = _core()
        model = core.read_model(xml)
        config = {
            "INFERENCE_PRECISION_HINT": _PRECISION[precision][1],
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": os.path.join(cache_dir, "openvino_blobs"),
        }
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.compiled = core.compile_model(model, OV_DEVICE, config)
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns

    def _build_ir(self, spec, cache, xml, frames, calib_batch_size, cache_dir, use_nncf) -> None:
        import openvino as ov

        t0 = time.perf_counter()
        core = _core()
        if self.precision == "int8" and not use_nncf:
            from .ort_quant import quantized_onnx

            model = core.read_model(quantized_onnx(self.onnx_path, "static", cache_dir, frames, calib_batch_size))
        else:
            model = core.read_model(self.onnx_path)
        s = self.info.image_size
        model.reshape({INPUT_NAME: ov.PartialShape([ov.Dimension(1, spec.input_shape[2][0]), 3, s, s])})
        if self.precision == "int8" and use_nncf:
            model = _nncf_quantize(model, frames)
        tmp_xml = cache.tmp_name(xml)
        ov.save_model(model, tmp_xml, compress_to_fp16=False)  # fp32 weights in the IR: precision is a compile-time choice
        bin_final, bin_tmp = xml[:-4] + ".bin", tmp_xml[:-4] + ".bin"
        cache.commit(spec, {bin_tmp: bin_final, tmp_xml: xml}, xml, time.perf_counter() - t0)
        log.info("OpenVINO IR (%s) built in %.1f s: %s", spec.kind, time.perf_counter() - t0, xml)

    def describe(self) -> dict:
        d = super().describe()
        d["cpu"] = self.device_name
        if self.int8_method:
            d["precision"] = f"int8 ({self.int8_method})"
        return d

    def _encode(self, x):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        outs = []
        with self._lock:
            for i in range(0, x.shape[0], self.max_batch):
                res = self.request.infer({INPUT_NAME: np.ascontiguousarray(x[i : i + self.max_batch])})
                outs.append(np.array(res[self.compiled.output(0)], dtype=np.float32, copy=True))
        return torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs))


def _nncf_quantize(model, frames: np.ndarray):
    """NNCF post-training INT8 of an OpenVINO model on (N, 3, S, S) frames, one frame per sample."""
    import contextlib
    import io

    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset([frames[i : i + 1] for i in range(len(frames))])
    # NNCF draws progress bars on the terminal: keep them out of node logs and test output.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return nncf.quantize(
            model, dataset, model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(frames),
            advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)),
        )
