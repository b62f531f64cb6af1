"""`make_encoder`: one call from a model (module or directory, or an exported .onnx) to a running encoder.

Fallback: the requested backend is tried first, then the ones after it in `FALLBACK_ORDER`
(tensorrt -> openvino -> onnxruntime -> torch); never backwards (asking for torch never gives ONNX Runtime).
Every skipped step and every deviation from the request (device, precision) is logged at WARNING
and kept in `encoder.fallback_reasons`, so a node can publish why it is slower than configured.
With `fallback=False` any deviation raises instead (benchmarks and CI measure what they claim).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from .base import VisionEncoder
from .config import BACKENDS, FALLBACK_ORDER, EncoderBackendConfig

log = logging.getLogger(__name__)


class EncoderUnavailableError(RuntimeError):
    """No backend in the chain could run; the message lists the reason for each."""


def ort_unavailable_reason(device: str, precision: str) -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except Exception as exc:
        return f"onnxruntime: not importable ({type(exc).__name__}: {exc})"
    return None


def _torch_reason(device: str, precision: str) -> str | None:
    from .torch_backend import torch_unavailable_reason

    return torch_unavailable_reason(device, precision)


def _openvino_reason(device: str, precision: str) -> str | None:
    from .ov_backend import openvino_unavailable_reason

    return openvino_unavailable_reason(device, precision)


def _trt_reason(device: str, precision: str) -> str | None:
    from .trt_backend import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason(device, precision)


# Availability probes by backend; tests replace entries to simulate other machines.
PROBES = {"tensorrt": _trt_reason, "openvino": _openvino_reason, "onnxruntime": ort_unavailable_reason, "torch": _torch_reason}


def backend_chain(requested: str, fallback: bool = True) -> tuple[str, ...]:
    """The backends tried for `requested`, in order: itself, then what follows it in FALLBACK_ORDER."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend '{requested}' (one of {list(BACKENDS)})")
    return FALLBACK_ORDER[FALLBACK_ORDER.index(requested):] if fallback else (requested,)


def step_precision(backend: str, device: str, precision: str) -> str:
    """Precision a *fallback* backend runs when the requested one is beyond it (torch has no int8;
    half precision on a CPU is slower than fp32, except in OpenVINO, which checks the CPU). The
    requested backend always gets `precision`."""
    cuda = device.startswith("cuda")
    if backend == "torch":
        if precision == "int8":
            return "fp16" if cuda else "fp32"
        if precision == "fp16" and not cuda:
            return "fp32"
        return precision
    if backend == "tensorrt" and precision == "bf16":
        return "fp16"
    return precision


def make_encoder(
    source: Any,
    backend: str | None = None,
    config: EncoderBackendConfig | None = None,
    **overrides,
) -> VisionEncoder:
    """Build a `VisionEncoder` for `source` with the configured backend, falling back as needed.

    source: an `nn.Module` (SigLIP/CLIP vision model, the core's VisionTower, or a model with a
        `.vision_tower`), a model directory (built-in checkpoint or SigLIP/CLIP checkpoint), or an
        exported `.onnx` file (then there are no PyTorch weights to fall back to).
    backend/overrides: shortcuts for `EncoderBackendConfig` fields on top of `config`
        (e.g. `make_encoder(model, backend="onnxruntime", num_threads=2)`).

    Raises EncoderUnavailableError when nothing in the chain can run (message lists every reason),
    ValueError for a bad source or config.
    """
    cfg = config or EncoderBackendConfig()
    if backend is not None:
        overrides["backend"] = backend
    if overrides:
        cfg = cfg.replace(**overrides)  # dataclasses.replace re-runs __post_init__ validation
    source_is_onnx = isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".onnx")
    if source_is_onnx and not os.path.isfile(source):
        raise FileNotFoundError(f"{source} does not exist")
    resolved: dict[str, Any] = {}
    if not source_is_onnx:
        # Resolved up front: a bad source is the caller's error, not a reason to fall back.
        from .tower import resolve_source

        resolved["module"], resolved["info"] = resolve_source(source, device="cpu")

    def tower():
        return resolved["module"], resolved["info"]

    def onnx_file() -> str:
        if source_is_onnx:
            return os.fspath(source)
        if "onnx" not in resolved:
            from .onnx_export import cached_export

            module, info = tower()
            resolved["onnx"] = cached_export(module, info, cfg.cache_dir, cfg.onnx_opset)
        return resolved["onnx"]

    reasons: list[str] = []
    chain = backend_chain(cfg.backend, cfg.fallback)
    for i, name in enumerate(chain):
        precision = cfg.precision if i == 0 else step_precision(name, cfg.device, cfg.precision)
        device = cfg.device
        if name == "torch" and source_is_onnx:
            reasons.append("torch: the source is an ONNX file, there are no PyTorch weights to run")
            continue
        reason = PROBES[name](device, precision)
        if reason and name == "torch" and cfg.fallback and device != "cpu":
            # Last resort: a slow encoder beats a robot that cannot see.
            reasons.append(f"{reason}; running torch on cpu fp32")
            log.warning("vision encoder: %s", reasons[-1])
            device, precision = "cpu", "fp32"
            reason = PROBES[name](device, precision)
        if reason:
            reasons.append(reason)
            log.warning("vision encoder: %s", reason)
            continue
        if i > 0 and precision != cfg.precision:
            reasons.append(f"{name}: running {precision} instead of {cfg.precision}")
            log.warning("vision encoder: %s", reasons[-1])
        try:
            enc = _build(name, cfg, device, precision, tower, onnx_file)
        except Exception as exc:  # a failed build/load is a reason to fall back, not a crash
            if not cfg.fallback:
                raise
            msg = f"{name}: failed to start ({type(exc).__name__}: {exc})"
            reasons.append(msg)
            log.warning("vision encoder: %s", msg, exc_info=log.isEnabledFor(logging.DEBUG))
            continue
        notes = list(getattr(enc, "notes", []))
        if notes and not cfg.fallback:
            raise EncoderUnavailableError(f"{name} cannot run as configured (fallback disabled): {'; '.join(notes)}")
        reasons.extend(notes)
        for note in notes:
            log.warning("vision encoder: %s", note)
        enc.fallback_reasons = reasons
        enc.requested_backend = cfg.backend
        log.info("vision encoder: %r", enc)
        return enc
    raise EncoderUnavailableError(
        f"no vision-encoder backend could run (requested {cfg.backend}, tried {list(chain)}): " + "; ".join(reasons)
    )


def _build(name: str, cfg: EncoderBackendConfig, device: str, precision: str, tower, onnx_file) -> VisionEncoder:
    if name == "torch":
        from .torch_backend import TorchVisionEncoder

        module, info = tower()
        return TorchVisionEncoder(module, info, device=device, precision=precision, num_threads=cfg.num_threads)
    if name == "onnxruntime":
        from .ort_backend import OrtVisionEncoder

        return OrtVisionEncoder(
            onnx_file(), device=device, precision=precision, num_threads=cfg.num_threads, cache_dir=cfg.cache_dir,
            max_batch=cfg.max_batch, opt_batch=cfg.opt_batch, workspace_mb=cfg.workspace_mb,
            int8_mode=cfg.int8_mode, calib_file=cfg.calib_file, calib_batch_size=cfg.calib_batch_size,
        )
    if name == "openvino":
        from .ov_backend import OpenVinoVisionEncoder

        return OpenVinoVisionEncoder(
            onnx_file(), device=device, precision=precision, num_threads=cfg.num_threads, cache_dir=cfg.cache_dir,
            max_batch=cfg.max_batch, opt_batch=cfg.opt_batch, calib_file=cfg.calib_file, calib_batch_size=cfg.calib_batch_size,
        )
    from .trt_backend import TensorRTVisionEncoder

    return TensorRTVisionEncoder(
        onnx_file(), device=device, precision=precision, cache_dir=cfg.cache_dir, max_batch=cfg.max_batch,
        opt_batch=cfg.opt_batch, workspace_mb=cfg.workspace_mb, calib_file=cfg.calib_file, calib_batch_size=cfg.calib_batch_size,
    )


def attach_encoder(model, config: EncoderBackendConfig | None = None, **overrides) -> VisionEncoder:
    """Run `model`'s vision tower through the configured backend: the one call a planner/node needs.

    model: an embodied model with `.vision_tower` and `set_vision_encoder` (`EmbodiedVLMModel` and
    its subclasses). The encoder is built from the model's own tower (exported/cached for ONNX
    Runtime and TensorRT) and installed with `model.set_vision_encoder`; with the torch backend at
    fp32 on the model's device the built-in tower is kept as is (no wrapper, identical numerics).
    Returns the encoder (its `fallback_reasons` say what differs from the request).
    """
    if not callable(getattr(model, "set_vision_encoder", None)):
        raise TypeError(f"{type(model).__name__} has no set_vision_encoder(); expected an EmbodiedVLMModel")
    cfg = (config or EncoderBackendConfig()).replace(**overrides)
    tower = model.vision_tower
    param = next(tower.parameters())
    model_device = "cpu" if param.device.type == "cpu" else f"cuda:{param.device.index or 0}"
    if cfg.precision != "fp32" or _norm_device(cfg.device) != model_device:
        import copy

        # The torch backend casts/moves the module it runs; never do that to the model's own tower
        # (its dtype/device define the checkpoint the model saves).
        tower = copy.deepcopy(tower)
    enc = make_encoder(tower, config=cfg)
    if enc.backend == "torch" and enc.precision == "fp32" and _norm_device(enc.device) == model_device:
        model.set_vision_encoder(None)
    else:
        model.set_vision_encoder(enc)
    return enc


def _norm_device(device: str) -> str:
    return "cuda:0" if device == "cuda" else device
