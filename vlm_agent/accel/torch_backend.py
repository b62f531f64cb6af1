"""PyTorch backend: the reference (CPU or CUDA; fp32, fp16, bf16)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import VisionEncoder
from .tower import TowerInfo

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_unavailable_reason(device: str, precision: str) -> str | None:
    """None when PyTorch can run `precision` on `device` here, else why not."""
    if precision not in _DTYPES:
        return f"torch: precision {precision} is not supported (fp32, fp16, bf16)"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "torch: CUDA is not available (CPU-only torch build or no GPU)"
    if precision == "fp16" and not device.startswith("cuda"):
        return "torch: fp16 needs a CUDA device"
    return None


class TorchVisionEncoder(VisionEncoder):
    """Runs the feature module itself, cast to the compute dtype, under `torch.no_grad` (not
    `inference_mode`: callers may feed the features into autograd-tracked code).

    The module is moved/cast in place (`attach_encoder` hands it a copy when that would touch a
    model's own tower).

    fp16/bf16 cast the module's weights (not autocast): the whole tower runs in half precision the
    way it would be deployed, and outputs are cast back to float32. `compile=True` wraps the module
    in `torch.compile` (first call compiles; used by the GPU benchmark).
    """

    backend = "torch"

    def __init__(self, module: nn.Module, info: TowerInfo, device: str = "cpu", precision: str = "fp32", compile: bool = False, num_threads: int = 0):
        reason = torch_unavailable_reason(device, precision)
        if reason:
            raise RuntimeError(reason)
        super().__init__(info, precision, device)
        self.dtype = _DTYPES[precision]
        self.module = module.to(device=device, dtype=self.dtype).eval()
        self._run = torch.compile(self.module) if compile else self.module
        if num_threads and not device.startswith("cuda"):
            # Process-wide in torch; documented in EncoderBackendConfig.num_threads.
            torch.set_num_threads(num_threads)

    def _encode(self, x):
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        x = x.to(self.device, non_blocking=True).to(self.dtype)
        with torch.no_grad():
            out = self._run(x)
        return out.float()
