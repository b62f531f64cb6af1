"""Vision-encoder backends (PyTorch, ONNX Runtime, TensorRT, OpenVINO) and export/engine build (no ROS).

    from vlm_agent.accel import EncoderBackendConfig, make_encoder
    enc = make_encoder("checkpoints/navid", config=EncoderBackendConfig(backend="onnxruntime"))
    feats = enc.encode(pixel_values)          # (B, 3, S, S) float32 -> (B, N, D) float32
    model.set_vision_encoder(enc)             # the planner now runs its tower through ONNX Runtime

Names are imported lazily so `vlm_agent.accel.config` (what node configs embed) stays cheap and
TensorRT is only imported when a TensorRT encoder is built. See docs/accel.md.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "EncoderBackendConfig": "config",
    "EncoderParams": "config",
    "BACKENDS": "config",
    "FALLBACK_ORDER": "config",
    "PRECISIONS": "config",
    "VisionEncoder": "base",
    "TowerInfo": "tower",
    "load_tower": "tower",
    "make_encoder": "factory",
    "backend_chain": "factory",
    "attach_encoder": "factory",
    "EncoderUnavailableError": "factory",
    "export_onnx": "onnx_export",
    "read_tower_info": "onnx_export",
    "TorchVisionEncoder": "torch_backend",
    "OrtVisionEncoder": "ort_backend",
    "TensorRTVisionEncoder": "trt_backend",
    "OpenVinoVisionEncoder": "ov_backend",
    "INT8_MODES": "config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
