"""Procedural indoor worlds: rooms with doorways, furniture, coloured objects, lighting (plain Python).

A `WorldSpec` is generated deterministically from an integer seed and is the single source of truth
for the MuJoCo scene (`vlm_agent.sim.mjcf`), the analytic collision model and the occupancy grid
(`vlm_agent.sim.geometry`), the episode generator and the oracles.

Frame: the world frame is REP-105 `odom` = `map` (the robot's odometry is exact in simulation):
x east, y north, z up, metres. Rooms are laid out in a row along +x starting at x = 0, y = 0.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

# Colour names -> linear RGB in [0, 1]. Chosen to stay distinguishable under the lighting range below.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.12, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.55, 0.15, 0.75),
    "orange": (1.0, 0.5, 0.05),
    "cyan": (0.1, 0.8, 0.85),
    "white": (0.93, 0.93, 0.93),
}
SHAPES = ("cube", "ball", "cylinder", "plate")

# Object sizes (metres). cube: half edge; ball: radius; cylinder/plate: (radius, half height).
OBJECT_SIZE = {
    "cube": (0.08,),
    "ball": (0.08,),
    "cylinder": (0.07, 0.11),
    "plate": (0.14, 0.015),
}

WALL_THICKNESS = 0.1  # m
WALL_HEIGHT = 1.6  # m, above the camera (0.95 m) so rooms are visually closed
DOOR_WIDTH_RANGE = (1.0, 1.3)  # m; wider than the 0.4 m robot plus planning margins
ROBOT_RADIUS = 0.20  # m, base footprint circle


@dataclass
class Box:
    """An axis-aligned box: centre (x, y, z) and half extents (hx, hy, hz), metres, world frame."""

    name: str
    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    rgba: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    kind: str = "wall"  # wall | table | cabinet | sofa

    @property
    def xy_min(self) -> tuple[float, float]:
        return (self.centre[0] - self.half[0], self.centre[1] - self.half[1])

    @property
    def xy_max(self) -> tuple[float, float]:
        return (self.centre[0] + self.half[0], self.centre[1] + self.half[1])

    @property
    def top_z(self) -> float:
        return self.centre[2] + self.half[2]


@dataclass
class ObjectSpec:
    """A graspable/target object. `pos` is the object's centre in the world frame (metres).

    `support` is "floor" or the name of the furniture piece it rests on; `room` the room index.
    """

    name: str
    colour: str
    shape: str
    pos: tuple[float, float, float]
    room: int
    support: str = "floor"

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def radius(self) -> float:
        """Footprint radius in the floor plane (m), used for collisions and stacking."""
        s = OBJECT_SIZE[self.shape]
        return s[0] * (math.sqrt(2.0) if self.shape == "cube" else 1.0)

    @property
    def half_height(self) -> float:
        s = OBJECT_SIZE[self.shape]
        return s[1] if len(s) > 1 else s[0]


@dataclass
class Room:
    index: int
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        return self.x_min + margin <= x <= self.x_max - margin and self.y_min + margin <= y <= self.y_max - margin


@dataclass
class Lighting:
    ambient: float
    diffuse: float
    direction: tuple[float, float, float]
    floor_rgb1: tuple[float, float, float]
    floor_rgb2: tuple[float, float, float]
    floor_builtin: str  # checker | gradient
    floor_repeat: float
    wall_rgb: tuple[float, float, float]


@dataclass
class WorldSpec:
    seed: int
    rooms: list[Room]
    walls: list[Box]
    furniture: list[Box]
    objects: list[ObjectSpec]
    lighting: Lighting
    doors: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y_centre, width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of the walled area including wall thickness."""
        t = WALL_THICKNESS
        return (-t, -t, self.rooms[-1].x_max + t, max(r.y_max for r in self.rooms) + t)

    def room_of(self, x: float, y: float) -> int:
        for room in self.rooms:
            if room.contains(x, y):
                return room.index
        return -1

    def object(self, name: str) -> ObjectSpec:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no object '{name}' in world {self.seed} (objects: {[o.name for o in self.objects]})")

    def furniture_piece(self, name: str) -> Box:
        for box in self.furniture:
            if box.name == name:
                return box
        raise KeyError(f"no furniture '{name}' in world {self.seed}")

    def copy(self) -> "WorldSpec":
        return dataclasses.replace(self, objects=[dataclasses.replace(o) for o in self.objects])


def _lighting(rng: np.random.Generator) -> Lighting:
    az = rng.uniform(0, 2 * math.pi)
    el = rng.uniform(0.9, 1.4)
    direction = (-math.cos(el) * math.cos(az), -math.cos(el) * math.sin(az), -math.sin(el))
    base = rng.uniform(0.25, 0.75, size=3)
    tint = rng.uniform(0.7, 1.0)
    return Lighting(
        ambient=float(rng.uniform(0.25, 0.45)),
        diffuse=float(rng.uniform(0.45, 0.75)),
        direction=tuple(float(v) for v in direction),
        floor_rgb1=tuple(float(v) for v in base),
        floor_rgb2=tuple(float(v) * tint * 0.8 for v in base),
        floor_builtin=str(rng.choice(["checker", "gradient", "checker"])),
        floor_repeat=float(rng.choice([2.0, 4.0, 6.0])),
        wall_rgb=tuple(float(v) for v in rng.uniform(0.6, 0.92, size=3)),
    )


def generate_world(
    seed: int,
    n_rooms: int | None = None,
    n_objects: int | None = None,
    colours: tuple[str, ...] = tuple(COLOURS),
    shapes: tuple[str, ...] = SHAPES,
    furniture_mode: str = "random",
    excluded_pairs: frozenset = frozenset(),
) -> WorldSpec:
    """A deterministic world for `seed`: 1-3 rooms in a row joined by doorways, 0-2 furniture pieces
    per room, `n_objects` (3-8) objects on the floor with at least 0.5 m of free space around them
    (so that every object can be approached), and seeded lighting and floor texture.

    `furniture_mode`: "random" (0-2 pieces per room) or "one_table" (exactly one table in room 0, the
    manipulation layout). `excluded_pairs`: (colour, shape) pairs that must not appear (held out of
    the training split entirely, so that they are new at evaluation time)."""
    rng = np.random.default_rng([seed, 7919])
    n_rooms = int(rng.integers(1, 4)) if n_rooms is None else n_rooms
    if not 1 <= n_rooms <= 3:
        raise ValueError(f"n_rooms must be 1..3, got {n_rooms}")
    depth = float(rng.uniform(4.0, 6.0))
    rooms, x = [], 0.0
    for i in range(n_rooms):
        w = float(rng.uniform(3.6, 5.5))
        rooms.append(Room(i, x, x + w, 0.0, depth))
        x += w + WALL_THICKNESS
    lighting = _lighting(rng)
    wall_rgba = (*lighting.wall_rgb, 1.0)
    t, h = WALL_THICKNESS, WALL_HEIGHT
    x_end = rooms[-1].x_max
    walls = [
        Box("wall_south", (x_end / 2, -t / 2, h / 2), (x_end / 2 + t, t / 2, h / 2), wall_rgba),
        Box("wall_north", (x_end / 2, depth + t / 2, h / 2), (x_end / 2 + t, t / 2, h / 2), wall_rgba),
        Box("wall_west", (-t / 2, depth / 2, h / 2), (t / 2, depth / 2, h / 2), wall_rgba),
        Box("wall_east", (x_end + t / 2, depth / 2, h / 2), (t / 2, depth / 2, h / 2), wall_rgba),
    ]
    doors = []
    for i in range(n_rooms - 1):
        wx = rooms[i].x_max + t / 2
        dw = float(rng.uniform(*DOOR_WIDTH_RANGE))
        dy = float(rng.uniform(0.6 + dw / 2, depth - 0.6 - dw / 2))
        lo, hi = dy - dw / 2, dy + dw / 2
        walls.append(Box(f"wall_{i}_{i + 1}_a", (wx, lo / 2, h / 2), (t / 2, lo / 2, h / 2), wall_rgba))
        walls.append(Box(f"wall_{i}_{i + 1}_b", (wx, (hi + depth) / 2, h / 2), (t / 2, (depth - hi) / 2, h / 2), wall_rgba))
        doors.append((wx, dy, dw))

    furniture: list[Box] = []
    for room in rooms:
        n_pieces = int(rng.integers(0, 3)) if furniture_mode == "random" else int(room.index == 0)
        for k in range(n_pieces):
            kind = str(rng.choice(["table", "table", "cabinet", "sofa"])) if furniture_mode == "random" else "table"
            if kind == "table":
                half = (float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.3, 0.45)), 0.225)
                rgba = (*(float(v) for v in rng.uniform(0.35, 0.6, size=3) * np.array([1.0, 0.75, 0.5])), 1.0)
            elif kind == "cabinet":
                half = (float(rng.uniform(0.2, 0.3)), float(rng.uniform(0.4, 0.6)), 0.45)
                rgba = (*(float(v) for v in rng.uniform(0.3, 0.5, size=3)), 1.0)
            else:
                half = (float(rng.uniform(0.7, 0.9)), 0.35, 0.2)
                rgba = (*(float(v) for v in rng.uniform(0.2, 0.5, size=3)), 1.0)
            if rng.random() < 0.5:
                half = (half[1], half[0], half[2])
            for _ in range(30):
                cx = float(rng.uniform(room.x_min + half[0] + 0.1, room.x_max - half[0] - 0.1))
                cy = float(rng.uniform(room.y_min + half[1] + 0.1, room.y_max - half[1] - 0.1))
                box = Box(f"{kind}_{room.index}_{k}", (cx, cy, half[2]), half, rgba, kind)
                if _furniture_ok(box, furniture, doors, room):
                    furniture.append(box)
                    break
    n_objects = int(rng.integers(3, 9)) if n_objects is None else n_objects
    objects = place_objects(rng, rooms, walls, furniture, n_objects, colours, shapes, excluded_pairs=excluded_pairs)
    return WorldSpec(seed, rooms, walls, furniture, objects, lighting, doors)


def _furniture_ok(box: Box, furniture: list[Box], doors, room: Room) -> bool:
    # Furniture keeps a 0.9 m corridor to every other piece and stays clear of doorways, so every room
    # stays connected for a 0.4 m robot with margins.
    for other in furniture:
        if _box_gap(box, other) < 0.9:
            return False
    for dx, dy, dw in doors:
        if abs(box.centre[0] - dx) < box.half[0] + 1.0 and abs(box.centre[1] - dy) < box.half[1] + dw / 2 + 0.4:
            return False
    # Pieces against a wall leave no gap (cabinets stand there); otherwise keep a corridor of 0.9 m.
    gaps = [
        box.xy_min[0] - room.x_min,
        room.x_max - box.xy_max[0],
        box.xy_min[1] - room.y_min,
        room.y_max - box.xy_max[1],
    ]
    return all(g >= 0.9 or g <= 0.12 for g in gaps)


def _box_gap(a: Box, b: Box) -> float:
    dx = max(0.0, abs(a.centre[0] - b.centre[0]) - a.half[0] - b.half[0])
    dy = max(0.0, abs(a.centre[1] - b.centre[1]) - a.half[1] - b.half[1])
    return math.hypot(dx, dy)


def place_objects(rng, rooms, walls, furniture, n_objects, colours, shapes, min_clear=0.55, excluded_pairs=frozenset()) -> list[ObjectSpec]:
    """Objects on the floor, each with `min_clear` m to walls/furniture and 0.7 m to other objects."""
    objects: list[ObjectSpec] = []
    for i in range(n_objects):
        for _ in range(200):
            room = rooms[int(rng.integers(len(rooms)))]
            x = float(rng.uniform(room.x_min + min_clear, room.x_max - min_clear))
            y = float(rng.uniform(room.y_min + min_clear, room.y_max - min_clear))
            if any(_point_box_distance(x, y, b) < min_clear for b in furniture):
                continue
            if any(math.hypot(x - o.pos[0], y - o.pos[1]) < 0.7 for o in objects):
                continue
            colour, shape = str(rng.choice(colours)), str(rng.choice(shapes))
            while (colour, shape) in excluded_pairs:
                colour = str(rng.choice(colours))
            objects.append(ObjectSpec(f"obj_{i}", colour, shape, (x, y, OBJECT_SIZE_HALF_HEIGHT(shape)), room.index))
            break
    return objects


def OBJECT_SIZE_HALF_HEIGHT(shape: str) -> float:  # noqa: N802 (reads as a table lookup)
    s = OBJECT_SIZE[shape]
    return s[1] if len(s) > 1 else s[0]


def _point_box_distance(x: float, y: float, box: Box) -> float:
    dx = max(0.0, abs(x - box.centre[0]) - box.half[0])
    dy = max(0.0, abs(y - box.centre[1]) - box.half[1])
    return math.hypot(dx, dy)
