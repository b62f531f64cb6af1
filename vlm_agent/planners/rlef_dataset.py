"""The Octopus RLEF dataset: one JSON line per planning round, images as PNG files beside it.

Layout of a dataset directory:

    rounds.jsonl                 one `RlefRecord` per line, appended as rounds happen
    images/<episode>_r<round>_<k>.png   the round's input images (RGB), referenced by relative path

A record holds what fine-tuning from environment feedback (Octopus's RLEF) needs: the inputs
(instruction, prompt, images), the output (the raw response), what happened (parse errors, the
sandbox's ProgramResult, the target-state checks, the feedback text given to the next round) and the
reward (1.0 when the task succeeded after this round, else 0.0). `read_rlef_dataset` returns the
records in file order; `RlefRecord.load_images()` reads the images back.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FILE_NAME = "rounds.jsonl"
IMAGE_DIR = "images"
SCHEMA_VERSION = 1


@dataclass
class RlefRecord:
    """One planning round (see module docstring). `images` are paths relative to the dataset root;
    `program` is `ProgramResult.to_dict()` or None when the response did not parse;
    `target_state` maps each predicate's text to whether it held after the run."""

    episode_id: str
    round: int
    instruction: str
    prompt: str
    response: str
    parse_errors: list[str] = field(default_factory=list)
    program: dict | None = None
    target_state: dict[str, bool] = field(default_factory=dict)
    feedback: str = ""
    success: bool = False
    reward: float = 0.0
    perception: str | None = None
    images: list[str] = field(default_factory=list)
    root: str | None = None  # set by the reader; not stored

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("root")
        data["schema_version"] = SCHEMA_VERSION
        return json.dumps(data, ensure_ascii=False, allow_nan=False)

    def load_images(self) -> list[np.ndarray]:
        """The round's images as RGB (H, W, 3) uint8 arrays."""
        from PIL import Image

        if self.root is None:
            raise ValueError("load_images(): record was not read from a dataset directory")
        return [np.asarray(Image.open(Path(self.root) / p).convert("RGB")) for p in self.images]


class RlefDatasetWriter:
    """Appends rounds to a dataset directory (created if missing); safe to reopen and continue."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    def append(self, record: RlefRecord, images: list[np.ndarray] = ()) -> RlefRecord:
        """Write the images, then the record (with their paths) as one line; returns the record."""
        from PIL import Image

        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", record.episode_id) or "episode"
        paths = []
        for k, img in enumerate(images):
            arr = np.asarray(img)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise ValueError(f"RLEF images must be RGB (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
            rel = f"{IMAGE_DIR}/{stem}_r{record.round}_{k}.png"
            Image.fromarray(arr).save(self.root / rel)
            paths.append(rel)
        record.images = paths
        with open(self.root / FILE_NAME, "a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
        return record


def read_rlef_dataset(root: str | os.PathLike) -> list[RlefRecord]:
    """All records of a dataset directory, in the order they were written. A truncated last line (a
    run killed mid-write) is skipped; any other malformed line raises ValueError naming it."""
    root = Path(root)
    path = root / FILE_NAME
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    names = set(RlefRecord.__dataclass_fields__) - {"root"}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno == len(lines):
                break
            raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{path}:{lineno}: not an RLEF record of schema version {SCHEMA_VERSION}")
        out.append(RlefRecord(**{k: v for k, v in data.items() if k in names}, root=str(root)))
    return out
