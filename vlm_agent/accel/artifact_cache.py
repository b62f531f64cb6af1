"""Derived model files on disk (quantised ONNX, OpenVINO IR), cached under a content key.

The rule is the TensorRT engine cache's (`trt_engine.EngineCache`): a derived model is valid only
for the exact source graph, the runtime version that made it, the device, the input shapes and,
for INT8, the calibration frames. `ArtifactSpec.key()` hashes all of them; a file is reused only
when its `.json` sidecar holds the same full key and the recorded sizes still match (a truncated
file or a 16-hex-digit name collision is a miss, rebuilt, never loaded). Files are written under
temporary names and renamed; the sidecar is written last, so a crash mid-build leaves a miss.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time

log = logging.getLogger(__name__)


def read_sidecar(path: str, key: str, what: str) -> dict | None:
    """The `.json` sidecar of a cached file when the file exists and the sidecar holds exactly `key`,
    else None (missing, unreadable, or made for another spec). Shared with the TensorRT engine cache."""
    meta = path + ".json"
    if not (os.path.isfile(path) and os.path.isfile(meta)):
        return None
    try:
        with open(meta) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    if stored.get("key") != key:
        log.warning("%s: %s was made for a different spec, ignoring it", what, path)
        return None
    return stored


@dataclasses.dataclass(frozen=True)
class ArtifactSpec:
    """Everything a derived model depends on. `key()` is its cache key.

    kind: what it is ("ort-int8-static", "openvino-ir-int8", ...); source_sha256: hash of the fp32
    ONNX it came from (weights included); runtime: "<package> <version>" that produced it;
    device: the device identity it was made for ("cpu: AMD EPYC" / "CPU: <full name>");
    input_shape: (min, opt, max) batch shapes as (B, 3, S, S) tuples, or one shape for dynamic-batch
    files; calib_sha256: the calibration frames (static INT8), else empty; settings: the
    quantiser options, sorted, so changing an option never reuses an old file.
    """

    kind: str
    source_sha256: str
    runtime: str
    device: str
    input_shape: tuple
    calib_sha256: str = ""
    settings: tuple = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        canon = json.dumps(self.to_dict(), sort_keys=True, default=list)
        return hashlib.sha256(canon.encode()).hexdigest()


class ArtifactCache:
    """`<dir>/<stem>.<kind>.<key[:16]><suffix>` (+ extra files such as OpenVINO's `.bin`) and a `.json` sidecar."""

    def __init__(self, directory: str):
        self.directory = directory

    def path_for(self, spec: ArtifactSpec, stem: str, suffix: str) -> str:
        return os.path.join(self.directory, f"{stem}.{spec.kind}.{spec.key()[:16]}{suffix}")

    def lookup(self, spec: ArtifactSpec, path: str) -> str | None:
        """`path` when it and its companions are complete and were made for exactly `spec`, else None."""
        stored = read_sidecar(path, spec.key(), "model cache")
        if stored is None:
            return None
        for name, size in stored.get("sizes", {}).items():
            full = os.path.join(os.path.dirname(path), name)
            if not os.path.isfile(full) or os.path.getsize(full) != size:
                log.warning("model cache: %s is missing or truncated, ignoring %s", full, path)
                return None
        return path

    def commit(self, spec: ArtifactSpec, written: dict[str, str], path: str, seconds: float = 0.0) -> str:
        """Move finished temporary files into place ({tmp path: final path}; `path` is the main file),
        then write the sidecar with the full spec, the key and every file's size."""
        sizes = {}
        for tmp, final in written.items():
            os.replace(tmp, final)
            sizes[os.path.basename(final)] = os.path.getsize(final)
        meta = {"key": spec.key(), "spec": spec.to_dict(), "sizes": sizes, "build_seconds": round(seconds, 2), "created": time.time()}
        with open(path + ".json.tmp", "w") as f:
            json.dump(meta, f, indent=2, default=list)
        os.replace(path + ".json.tmp", path + ".json")
        return path

    def tmp_name(self, final: str) -> str:
        os.makedirs(self.directory, exist_ok=True)
        root, ext = os.path.splitext(final)
        return f"{root}.tmp-{os.getpid()}{ext}"
