"""Vision tower -> ONNX with a dynamic batch axis, verified against PyTorch with ONNX Runtime.

Export path: torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), opset 18 by default
(see `EncoderBackendConfig.onnx_opset`). The example input has batch **2**: with a batch-1 example
torch.export specialises the batch dimension to the constant 1 even when `dynamic_shapes` marks it
dynamic (FINDINGS.md), and the file would then reject every other batch. Spatial size stays static:
SigLIP/CLIP position embeddings are tied to the training resolution.

The file carries its own description in ONNX metadata (`vlm_agent.tower_info`: input size, N, D,
normalisation), so ONNX Runtime / TensorRT encoders can be built from the file alone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import io
import json
import logging
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from .config import DEFAULT_OPSET
from .tower import TowerInfo

log = logging.getLogger(__name__)

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "features"
META_KEY = "vlm_agent.tower_info"
EXPORT_BATCH = 2  # never 1: see the module docstring
# Above this the model cannot live in one protobuf (2 GiB hard limit): weights go to `<file>.data`.
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclasses.dataclass
class ExportResult:
    """path: the .onnx file; max_abs_error: {batch: max |onnxruntime - torch|} from verification."""

    path: str
    opset: int
    info: TowerInfo
    seconds: float
    max_abs_error: dict[int, float] = dataclasses.field(default_factory=dict)


def _param_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def export_onnx(
    module: nn.Module,
    info: TowerInfo,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    verify_batches: tuple[int, ...] = (1, 4),
    atol: float | None = None,
) -> ExportResult:
    """Export `module` (pixel_values (B,3,S,S) float32 -> (B,N,D) float32) to `path`.

    The module is exported on the device it lives on, in float32 (a half-precision module is
    refused: precision is the runtime's job, TensorRT/ORT build fp16 from the fp32 graph).
    `verify_batches` are run through ONNX Runtime (CPU) and compared with torch; with `atol` set a
    larger error raises ValueError. The file is written atomically (a crash leaves no half file).
    """
    path = os.fspath(path)
    params = list(module.parameters())
    if params and params[0].dtype != torch.float32:
        raise ValueError(f"export needs a float32 module, got {params[0].dtype} (precision is chosen at runtime)")
    device = params[0].device if params else torch.device("cpu")
    module = module.eval()
    s = info.image_size
    example = torch.randn(EXPORT_BATCH, 3, s, s, device=device)
    batch = torch.export.Dim("batch", min=1, max=1024)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.onnx"
    external = _param_bytes(module) > _EXTERNAL_DATA_BYTES
    t0 = time.perf_counter()
    # The exporter prints progress lines to stdout and its optimiser logs every rewrite at INFO;
    # keep both out of CLI output, node logs and test logs.
    with contextlib.redirect_stdout(io.StringIO()), _quiet_loggers(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecation notices
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"pixel_values": {0: batch}},
            external_data=external,
            verbose=False,
        )
        _set_metadata(program, info, opset)
        # External weights are referenced by relative file name, so that case is saved in place.
        program.save(path if external else tmp, external_data=external)
    if not external:
        os.replace(tmp, path)
    seconds = time.perf_counter() - t0
    result = ExportResult(path=path, opset=opset, info=info, seconds=seconds)
    if verify_batches:
        result.max_abs_error = verify_onnx(path, module, verify_batches)
        worst = max(result.max_abs_error.values())
        if atol is not None and worst > atol:
            raise ValueError(f"{path}: ONNX Runtime differs from torch by {worst:.3g} > {atol:g} ({result.max_abs_error})")
    return result


@contextlib.contextmanager
def _quiet_loggers(names=("onnx_ir", "onnxscript", "torch.onnx", "torch.export")):
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            # torch.onnx warns about every absent torchvision op on each export: ERROR only there.
            logging.getLogger(n).setLevel(logging.ERROR if n == "torch.onnx" else logging.WARNING)
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _set_metadata(program, info: TowerInfo, opset: int) -> None:
    """Store TowerInfo in the ONNX model's metadata_props (onnx_ir model of the dynamo exporter)."""
    meta = {META_KEY: json.dumps(info.to_dict()), "vlm_agent.opset": str(opset), "vlm_agent.torch": torch.__version__}
    program.model.metadata_props.update(meta)


def read_tower_info(path: str | os.PathLike) -> TowerInfo:
    """TowerInfo stored in an exported file; ValueError for ONNX files not exported by vlm_agent."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in meta:
        raise ValueError(f"{path}: no '{META_KEY}' metadata (export it with `vlm-agent export`)")
    return TowerInfo.from_dict(json.loads(meta[META_KEY]))


def verify_onnx(path: str | os.PathLike, module: nn.Module, batches=(1, 4), seed: int = 0) -> dict[int, float]:
    """{batch: max abs error} between ONNX Runtime (CPU EP) and `module` on seeded random inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    params = list(module.parameters())
    device = params[0].device if params else torch.device("cpu")
    s = sess.get_inputs()[0].shape[-1]
    rng = np.random.default_rng(seed)
    errors = {}
    for b in batches:
        x = rng.standard_normal((b, 3, s, s), dtype=np.float32)
        with torch.no_grad():
            ref = module(torch.from_numpy(x).to(device)).float().cpu().numpy()
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if out.shape != ref.shape:
            raise ValueError(f"{path}: ONNX output shape {out.shape} != torch {ref.shape} at batch {b}")
        errors[int(b)] = float(np.abs(out - ref).max())
    return errors


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of an ONNX file plus its external weight file if it has one (both define the model)."""
    h = hashlib.sha256()
    path = os.fspath(path)
    for name in (path, path + ".data"):
        if not os.path.isfile(name):
            continue
        with open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def module_fingerprint(module: nn.Module, info: TowerInfo, opset: int) -> str:
    """Content hash of a tower (weights, buffers, class, shapes, opset, torch version).

    Keys the ONNX export cache: the same weights re-exported by the same torch give the same file,
    so `make_encoder` re-exports only when something that changes the graph changed.
    """
    h = hashlib.sha256()
    # The display name is left out: the same tower reached as a directory or as a live module
    # shares one export.
    shape = {k: v for k, v in info.to_dict().items() if k != "name"}
    h.update(json.dumps({"info": shape, "opset": opset, "torch": torch.__version__}, sort_keys=True).encode())
    cfg = getattr(getattr(module, "model", None), "config", None)
    if cfg is not None:
        h.update(cfg.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cached_export(module: nn.Module, info: TowerInfo, cache_dir: str, opset: int = DEFAULT_OPSET) -> str:
    """Path of the ONNX export of `module` in `cache_dir`, exporting (and verifying) only on a miss."""
    key = module_fingerprint(module, info, opset)[:20]
    path = os.path.join(cache_dir, f"{_safe(info.name)}-{key}.onnx")
    hits = sorted(glob.glob(os.path.join(glob.escape(cache_dir), f"*-{key}.onnx")))
    if hits:
        log.info("ONNX cache hit: %s", hits[0])
        return hits[0]
    log.info("exporting %s to %s (opset %d)", info.name, path, opset)
    # Verification here is cheap insurance: a wrong graph would otherwise be cached for good.
    try:
        result = export_onnx(module, info, path, opset=opset, verify_batches=(1, 2), atol=1e-3)
    except Exception:
        for name in (path, path + ".data"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
        raise
    log.info("exported in %.1f s, max abs error vs torch %s", result.seconds, result.max_abs_error)
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "encoder"
