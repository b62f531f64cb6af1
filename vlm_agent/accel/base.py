"""The one vision-encoder interface every backend implements."""
from __future__ import annotations

import abc

import numpy as np
import torch

from .tower import TowerInfo


class VisionEncoder(abc.ABC):
    """pixel_values (B, 3, S, S) float32, normalised as the model expects -> features (B, N, D) float32.

    Inputs may be numpy arrays or torch tensors on any device; float64/float16 inputs are cast to
    float32, anything else (uint8 frames, wrong rank or size) raises ValueError: preprocessing
    (resize, mean/std) belongs to the image processor, not here. Outputs are float32 whatever the
    compute precision, as a torch tensor on `output_device` (or numpy with `as_numpy=True`).

    Properties: `input_size` (S, S), `output_shape` (N, D) per image, `backend` ("torch",
    "onnxruntime", "tensorrt"), `precision`, `device`, `info` (TowerInfo), `fallback_reasons`
    (why the factory did not give the requested backend; empty when it did).
    """

    backend: str = "?"

    def __init__(self, info: TowerInfo, precision: str, device: str):
        self.info = info
        self.precision = precision
        self.device = device
        self.fallback_reasons: list[str] = []
        self.requested_backend: str | None = None

    # -- description ------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return (self.info.image_size, self.info.image_size)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.info.num_tokens, self.info.hidden_size)

    @property
    def output_device(self) -> torch.device:
        return torch.device(self.device)

    def describe(self) -> dict:
        """Flat summary for status messages and logs."""
        return {
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "input": f"(B,3,{self.info.image_size},{self.info.image_size})",
            "output": f"(B,{self.info.num_tokens},{self.info.hidden_size})",
            "model": self.info.name,
            "fallback": "; ".join(self.fallback_reasons),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.describe().items() if v)})"

    # -- running ------------------------------------------------------------------------------------
    def encode(self, pixel_values, as_numpy: bool = False):
        """(B, 3, S, S) float32 -> (B, N, D) float32 torch tensor (numpy when `as_numpy`)."""
        x = self._check_input(pixel_values)
        out = self._encode(x)
        if as_numpy:
            return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        return out

    __call__ = encode

    @abc.abstractmethod
    def _encode(self, pixel_values):
        """Backend work on a validated (B, 3, S, S) float32 numpy array or torch tensor."""

    def _check_input(self, x):
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            raise ValueError(f"pixel_values must be a numpy array or torch tensor, got {type(x).__name__}")
        s = self.info.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"pixel_values must have shape (B, 3, {s}, {s}), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("pixel_values has batch size 0")
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"pixel_values must be floating point (normalised), got {x.dtype}")
            return np.ascontiguousarray(x, dtype=np.float32)
        if not x.is_floating_point():
            raise ValueError(f"pixel_values must be floating point (normalised), got {x.dtype}")
        return x.float().contiguous()
