"""Torch devices for training and inference (`--device`): check a name, move a batch.

Names: "cpu", "cuda" (the current CUDA device), "cuda:N", "mps" (Apple GPUs). `check_device` fails
with the reason before any work starts (a typo, no CUDA build or driver, an index past the last
GPU), rather than deep inside the first `.to()`. torch is imported only when a function runs.
"""
from __future__ import annotations

import re

DEVICE_NAMES = ("cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"^(cpu|mps|cuda(?::(\d+))?)$")


def check_device_name(name: str) -> str:
    """`name` if it is a device name this project accepts (syntax only, imports nothing); else ValueError."""
    if not _DEVICE.match(str(name)):
        raise ValueError(f"device '{name}' is not one of {', '.join(DEVICE_NAMES)}")
    return str(name)


def check_device(name: str) -> str:
    """`name` unchanged if torch can use that device on this machine; ValueError saying why not."""
    name = check_device_name(name)
    import torch

    m = _DEVICE.match(name)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(f"device '{name}': CUDA is not available here (torch {torch.__version__}, {build}); use --device cpu")
        index = m.group(2)
        if index is not None and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device '{name}': Metal (MPS) is not available here; use --device cpu")
    return name


def to_device(batch: dict, device) -> dict:
    """A copy of `batch` with every tensor value on `device` (other values, e.g. loss weights given as
    floats, unchanged). Non-blocking, so pinned host tensors overlap the copy with compute."""
    import torch

    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
