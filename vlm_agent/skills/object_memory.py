"""What a perception provider keeps between calls: the furniture map and the last sightings.

Plain Python, shared by the in-process segmenter provider (`skills/segmenter_perception.py`) and the
ROS adapter's `SegmentationPerception` (`nodes/ros_skills.py`).

* `FurnitureMap`: the static furniture a robot has in its map (tables, cabinets, sofas) as
  floor-plane boxes with their top height, in `odom`. A phrase that names a furniture kind or a
  piece's name ("the table", "table_0") is answered from the map, never segmented, with the box as
  its `TargetShape` (where to stand, where to place). Loaded from a YAML file (`load_furniture_map`):

      furniture:
        - {name: table_0, kind: table, centre: [2.0, 1.5], size: [1.2, 0.8], top_z: 0.45}

  (`centre` and `size` in metres, the box's centre and full extents along odom x and y.)
* `ObjectMemory`: the last position each phrase was segmented at, in `odom`, and which phrase the
  gripper holds. Objects move only when the robot moves them, so a sighting stays valid until the
  object it names has been held and released (then it lies somewhere new and is forgotten).
"""
from __future__ import annotations

from dataclasses import dataclass

from vlm_agent.skills.api import SkillError
from vlm_agent.skills.perception import Detection
from vlm_agent.skills.resolver import FILLER, SHAPE_SYNONYMS, SceneEntity, normalise_phrase, resolve

FURNITURE_KINDS = ("table", "cabinet", "sofa")


def phrase_key(phrase: str) -> str:
    """A phrase without case, punctuation, articles and filler ("The red cube." -> "red cube")."""
    return " ".join(w for w in normalise_phrase(phrase).split() if w not in FILLER)


@dataclass(frozen=True)
class FurniturePiece:
    """A furniture piece: `kind` one of FURNITURE_KINDS; floor-plane box xy_min/xy_max and top_z, m in odom."""

    name: str
    kind: str
    xy_min: tuple[float, float]
    xy_max: tuple[float, float]
    top_z: float

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.xy_min[0] + self.xy_max[0]) / 2, (self.xy_min[1] + self.xy_max[1]) / 2)


class FurnitureMap:
    """Furniture answered from the map (see the module docstring). `pieces`: `FurniturePiece`s, or any
    objects with name, kind, xy_min, xy_max and top_z (the simulator's `world.furniture` boxes)."""

    def __init__(self, pieces=()):
        self.pieces = [FurniturePiece(str(p.name), str(p.kind), tuple(map(float, p.xy_min)), tuple(map(float, p.xy_max)), float(p.top_z))
                       for p in pieces]
        self._by_name = {p.name: p for p in self.pieces}

    def __len__(self) -> int:
        return len(self.pieces)

    def names_furniture(self, phrase: str) -> bool:
        """Whether `phrase` is about furniture at all (a piece's name or a furniture kind word)."""
        key = phrase_key(phrase)
        if key in {n.lower() for n in self._by_name}:
            return True
        return any(SHAPE_SYNONYMS.get(w) in FURNITURE_KINDS for w in key.split())

    def locate(self, phrase: str) -> Detection | None:
        """The piece `phrase` names (position: its box centre at top height), None when the phrase is
        not about furniture; SkillError when it is but the map has no such piece, or several."""
        if not self.names_furniture(phrase):
            return None
        entity = resolve(phrase, [SceneEntity(p.name, p.kind) for p in self.pieces])
        piece = self._by_name[entity.name]
        return Detection(entity.label, (*piece.centre, piece.top_z), "odom", piece.name)

    def piece(self, name: str | None) -> FurniturePiece | None:
        return self._by_name.get(name) if name is not None else None


def load_furniture_map(path: str) -> FurnitureMap:
    """A `FurnitureMap` from a YAML file (format in the module docstring); ValueError with the reason
    for a file that is not one."""
    import math

    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ValueError(f"cannot read the furniture map {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"the furniture map {path} is not YAML: {exc}") from None
    entries = (data or {}).get("furniture") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"the furniture map {path} needs a 'furniture' list")
    pieces, names = [], set()
    for i, e in enumerate(entries):
        where = f"{path}: furniture[{i}]"
        try:
            name, kind = str(e["name"]), str(e["kind"])
            (cx, cy), (sx, sy), top = (float(v) for v in e["centre"]), (float(v) for v in e["size"]), float(e["top_z"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where} needs name, kind, centre [x, y], size [x, y] and top_z ({exc!r})") from None
        if kind not in FURNITURE_KINDS:
            raise ValueError(f"{where}: kind '{kind}' is not one of {', '.join(FURNITURE_KINDS)}")
        if not all(math.isfinite(v) for v in (cx, cy, sx, sy, top)) or sx <= 0 or sy <= 0:
            raise ValueError(f"{where}: centre, size and top_z must be finite and the size positive")
        if name in names:
            raise ValueError(f"{where}: the name '{name}' is used twice")
        names.add(name)
        pieces.append(FurniturePiece(name, kind, (cx - sx / 2, cy - sy / 2), (cx + sx / 2, cy + sy / 2), top))
    return FurnitureMap(pieces)


def write_furniture_map(path: str, pieces) -> None:
    """Write `pieces` (`FurniturePiece`s or the simulator's furniture boxes) as a map file that
    `load_furniture_map` reads, atomically (a reader never sees half a file): how the embedded
    simulator's demo hands each episode's furniture to the ROS perception."""
    import os
    import tempfile

    import yaml

    entries = []
    for p in FurnitureMap(pieces).pieces:
        (x0, y0), (x1, y1) = p.xy_min, p.xy_max
        entries.append({"name": p.name, "kind": p.kind, "centre": [round((x0 + x1) / 2, 4), round((y0 + y1) / 2, 4)],
                        "size": [round(x1 - x0, 4), round(y1 - y0, 4)], "top_z": round(p.top_z, 4)})
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".furniture_map.", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump({"furniture": entries}, f, default_flow_style=None, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class ObjectMemory:
    """Last sightings by phrase and the held phrase (see the module docstring).

    `remember(phrase, detection)` after a segmentation; `recall(phrase)` the last one or None;
    `grasped(phrase)` when the gripper closed on the object a phrase named; `released(at)` when the
    gripper opened: the held object's sightings (by any phrase that was answered with the same
    position) are forgotten, and `at`, where it was let go, is remembered instead."""

    def __init__(self, same_object_m: float = 0.05):
        self.same_object_m = same_object_m
        self.sightings: dict[str, Detection] = {}
        self.held: str | None = None  # phrase_key of the held object

    def remember(self, phrase: str, detection: Detection) -> None:
        self.sightings[phrase_key(phrase)] = detection

    def recall(self, phrase: str) -> Detection | None:
        return self.sightings.get(phrase_key(phrase))

    def holds(self, phrase: str) -> bool:
        return self.held is not None and phrase_key(phrase) == self.held

    def grasped(self, phrase: str) -> None:
        self.held = phrase_key(phrase)

    def forget(self, phrase: str) -> bool:
        """Drop the sighting of `phrase` and every other phrase's sighting of the same object (a grasp
        there closed on nothing: the estimate is wrong). True when there was one."""
        gone = self.sightings.pop(phrase_key(phrase), None)
        if gone is None:
            return False
        self.sightings = {k: d for k, d in self.sightings.items() if not self._same_object(d, gone)}
        return True

    def _same_object(self, a: Detection, b: Detection) -> bool:
        """Two sightings of one object: the same scene id, or without one within `same_object_m`."""
        if b.name is not None:
            return a.name == b.name
        return _dist(a.position, b.position) <= self.same_object_m

    def released(self, at: Detection | None = None) -> None:
        """The gripper opened: the held object's old sightings are forgotten; `at` (where it was let
        go, when known) becomes its sighting under the phrase it was held by."""
        if self.held is None:
            return
        held = self.held
        gone = self.sightings.pop(self.held, None)
        if gone is not None:  # other phrases answered with the same object ("the cube" and "the red cube")
            self.sightings = {k: d for k, d in self.sightings.items() if not self._same_object(d, gone)}
        self.held = None
        if at is not None:
            self.sightings[held] = at


def _dist(a, b) -> float:
    return sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)) ** 0.5


__all__ = ["FurnitureMap", "FurniturePiece", "ObjectMemory", "load_furniture_map", "write_furniture_map", "phrase_key", "FURNITURE_KINDS"]
