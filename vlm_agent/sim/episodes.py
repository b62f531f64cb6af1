"""Deterministic navigation, manipulation and referring-segmentation episodes with held-out splits.

`make_episodes(suite, split, n, seed)` is a pure function of its arguments: episode `i` depends only
on (suite, split, seed, i), so the first 10 of 100 episodes equal the 10 of a 10-episode call.

Generalisation is measured, not memorised:
* scene seeds of train / val / test are disjoint ranges;
* `HELD_OUT_PAIRS` (colour, shape) never appear in a training scene, not even as distractors; about
  half of val/test episodes target one of them (`Episode.held_out`);
* `HELD_OUT_TEMPLATES` phrasings never appear in training; about half of val/test use them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np

from vlm_agent.sim.world import (
    COLOURS,
    OBJECT_SIZE,
    ROBOT_RADIUS,
    SHAPES,
    ObjectSpec,
    WorldSpec,
    generate_world,
)

SUITES = ("nav", "manip", "seg")
SPLITS = ("train", "val", "test")
_SPLIT_SEED_BASE = {"train": 0, "val": 10_000_000, "test": 20_000_000}
_SUITE_ID = {"nav": 1, "manip": 2, "seg": 3}

HELD_OUT_PAIRS = frozenset({("yellow", "ball"), ("purple", "cube"), ("orange", "cylinder"), ("cyan", "plate"), ("red", "plate")})

# Phrasings per task. {t} target, {x}/{y} sequence goals, {r} reference, {rel} relation words.
TEMPLATES = {
    "goto": ["go to the {t}", "walk to the {t} and stop", "navigate to the {t}", "find the {t} and stop next to it"],
    "landmark": ["walk to the {t} next to the table and stop", "go to the {t} next to the table"],
    "room": ["go to the {t} in the other room", "walk to the {t} that is in the other room"],
    "relation": ["go to the {t} {rel} the {r}", "walk to the {t} {rel} the {r} and stop"],
    "sequence": ["first go to the {x}, then to the {y}", "go to the {x} and then to the {y}"],
    "place": ["put the {t} on the {d}", "place the {t} on top of the {d}"],
    "stack": ["stack the {t} on the {d}", "put the {t} on top of the {d}"],
    "bring": ["bring the {t} to the table", "take the {t} to the table"],
    "seg_simple": ["the {t}", "{t}"],
    "seg_relation": ["the {s} {rel} the {r}", "{s} {rel} the {r}"],
}
HELD_OUT_TEMPLATES = {
    "goto": ["head over to the {t}", "move to the {t} and stop there"],
    "landmark": ["approach the {t} beside the table"],
    "room": ["go into the other room and stop at the {t}"],
    "relation": ["head to the {t} that is {rel} the {r}"],
    "sequence": ["visit the {x} first and finish at the {y}"],
    "place": ["set the {t} down on the {d}"],
    "stack": ["pile the {t} onto the {d}"],
    "bring": ["carry the {t} over to the table"],
    "seg_simple": ["segment the {t}"],
    "seg_relation": ["the {s} that is {rel} the {r}"],
}
NAV_TASKS = ("goto", "landmark", "room", "relation", "sequence")
MANIP_TASKS = ("place", "stack", "bring")
SEG_TASKS = ("seg_simple", "seg_relation")


@dataclass
class Episode:
    """One task instance. Positions are metres in the world (`odom`) frame; yaw radians, CCW from +x.

    goal_objects: nav: object names to reach in order (the last is the final goal);
                  manip: [object to move, destination (object name or furniture name)];
                  seg: [object to segment].
    objects: the episode's objects (ObjectSpec fields), replacing the procedurally placed ones.
    """

    episode_id: str
    suite: str
    split: str
    scene_seed: int
    instruction: str
    task: str
    goal_objects: list[str]
    start_pose: tuple[float, float, float]
    objects: list[dict]
    world_args: dict = field(default_factory=dict)
    held_out: bool = False
    held_out_phrasing: bool = False
    max_steps: int = 300

    @property
    def goal_object(self) -> str:
        """The final navigation goal / the object to move / the object to segment."""
        return self.goal_objects[-1] if self.suite == "nav" else self.goal_objects[0]

    def world(self) -> WorldSpec:
        args = dict(self.world_args)
        # JSON turns the held-out pairs into lists of lists; generate_world compares tuples
        args["excluded_pairs"] = frozenset(tuple(p) for p in args.get("excluded_pairs", ()))
        world = generate_world(self.scene_seed, **args)
        world.objects = [ObjectSpec(**{**o, "pos": tuple(o["pos"])}) for o in self.objects]
        return world

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Episode":
        d = dict(d)
        d["start_pose"] = tuple(d["start_pose"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def make_episodes(suite: str, split: str, n: int, seed: int = 0) -> list[Episode]:
    """`n` episodes of `suite` (nav|manip|seg) from `split` (train|val|test), deterministic in `seed`."""
    if suite not in SUITES:
        raise ValueError(f"suite '{suite}' is not one of {SUITES}")
    if split not in SPLITS:
        raise ValueError(f"split '{split}' is not one of {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [make_episode(suite, split, seed, i) for i in range(n)]


def make_episode(suite: str, split: str, seed: int, index: int, **options) -> Episode:
    """Episode `index` of (suite, split, seed); retries scene seeds until the task can be built.
    `options` go to the suite's builder (seg: `look_alikes`, for training data; the defaults build
    the episodes every report is measured on)."""
    for attempt in range(50):
        rng = np.random.default_rng([_SUITE_ID[suite], SPLITS.index(split), seed, index, attempt])
        scene_seed = _SPLIT_SEED_BASE[split] + int(rng.integers(0, 10_000_000))
        builder = {"nav": _nav_episode, "manip": _manip_episode, "seg": _seg_episode}[suite]
        episode = builder(rng, split, scene_seed, **options)
        if episode is not None:
            episode.episode_id = f"{suite}-{split}-{seed}-{index:05d}"
            return episode
    raise RuntimeError(f"could not build {suite}/{split} episode {index} (seed {seed})")


# -- helpers -----------------------------------------------------------------------------------
def _label(o: ObjectSpec) -> str:
    return f"{o.colour} {o.shape}"


def _pick_template(rng, task: str, split: str) -> tuple[str, bool]:
    if split != "train" and rng.random() < 0.5:
        return str(rng.choice(HELD_OUT_TEMPLATES[task])), True
    return str(rng.choice(TEMPLATES[task])), False


def _pair(rng, split: str, want_held_out: bool) -> tuple[str, str]:
    if want_held_out:
        return tuple(sorted(HELD_OUT_PAIRS)[int(rng.integers(len(HELD_OUT_PAIRS)))])
    while True:
        pair = (str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)))
        if pair not in HELD_OUT_PAIRS:
            return pair


def _free_spot(rng, world: WorldSpec, others: list[ObjectSpec], room: int | None = None, clear=0.55, tries=200,
               near=None, near_range=(0.0, 99.0)):
    """A floor point with `clear` m to walls/furniture and 0.7 m to `others`; optionally in `room`
    and at a distance within `near_range` of point `near`."""
    for _ in range(tries):
        r = world.rooms[int(rng.integers(len(world.rooms)))] if room is None else world.rooms[room]
        if near is not None:
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(*near_range)
            x, y = near[0] + dist * math.cos(ang), near[1] + dist * math.sin(ang)
            if not r.contains(x, y, clear):
                continue
        else:
            x, y = rng.uniform(r.x_min + clear, r.x_max - clear), rng.uniform(r.y_min + clear, r.y_max - clear)
        if _box_clearance(world, x, y) < clear:
            continue
        if any(math.hypot(x - o.pos[0], y - o.pos[1]) < 0.7 for o in others):
            continue
        return float(x), float(y), r.index
    return None


def _box_clearance(world: WorldSpec, x: float, y: float) -> float:
    d = math.inf
    for b in world.walls + world.furniture:
        dx = max(0.0, abs(x - b.centre[0]) - b.half[0])
        dy = max(0.0, abs(y - b.centre[1]) - b.half[1])
        d = min(d, math.hypot(dx, dy))
    return d


def _new_object(name, colour, shape, x, y, room, z=None, support="floor") -> ObjectSpec:
    s = OBJECT_SIZE[shape]
    hz = s[1] if len(s) > 1 else s[0]
    return ObjectSpec(name, colour, shape, (x, y, hz if z is None else z), room, support)


def _unique(objects: list[ObjectSpec], obj: ObjectSpec) -> bool:
    return sum(_label(o) == _label(obj) for o in objects) == 1


def _start_pose(rng, world, objects, goals: list[ObjectSpec], min_goal_dist=1.6, room=None):
    from vlm_agent.sim.geometry import CollisionModel

    w = dataclasses.replace(world, objects=objects)
    cm = CollisionModel.from_world(w)
    for _ in range(300):
        r = world.rooms[int(rng.integers(len(world.rooms)))] if room is None else world.rooms[room]
        x, y = rng.uniform(r.x_min + 0.4, r.x_max - 0.4), rng.uniform(r.y_min + 0.4, r.y_max - 0.4)
        if cm.clearance(x, y) < ROBOT_RADIUS + 0.2:
            continue
        if any(math.hypot(x - g.pos[0], y - g.pos[1]) < min_goal_dist for g in goals):
            continue
        return (float(x), float(y), float(rng.uniform(-math.pi, math.pi)))
    return None


def _finish(split, scene_seed, world_args, task, instruction, goals, start, objects, held_out, phr, suite="nav", max_steps=300):
    return Episode(
        episode_id="",
        suite=suite,
        split=split,
        scene_seed=scene_seed,
        instruction=instruction,
        task=task,
        goal_objects=goals,
        start_pose=start,
        objects=[dataclasses.asdict(o) for o in objects],
        world_args=world_args,
        held_out=held_out,
        held_out_phrasing=phr,
        max_steps=max_steps,
    )


def _connected(world: WorldSpec, objects, start, goals) -> bool:
    """Every goal's 1 m disc is reachable from the start on the occupancy grid (doorways open)."""
    from vlm_agent.sim.geometry import GridMap

    grid = GridMap(dataclasses.replace(world, objects=objects))
    cost = np.where(grid.clearance > ROBOT_RADIUS + 0.02, 1.0, np.inf)
    si, sj = grid.cell(start[0], start[1])
    field_ = grid.distance_field(np.zeros_like(cost, bool) | _cell_mask(grid, si, sj), cost)
    for g in goals:
        near = (np.hypot(grid.gx - g.pos[0], grid.gy - g.pos[1]) < 0.8) & np.isfinite(cost)
        if not np.isfinite(field_[near]).any():
            return False
    return True


def _cell_mask(grid, i, j):
    m = np.zeros((grid.ny, grid.nx), bool)
    m[i, j] = True
    return m


# -- navigation --------------------------------------------------------------------------------
def _nav_episode(rng, split, scene_seed) -> Episode | None:
    task = str(rng.choice(NAV_TASKS, p=[0.35, 0.15, 0.15, 0.15, 0.2]))
    n_rooms = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    if task == "room":
        n_rooms = 2
    world_args = {"n_rooms": n_rooms, "excluded_pairs": HELD_OUT_PAIRS if split == "train" else frozenset()}
    world = generate_world(scene_seed, **world_args)
    world_args["excluded_pairs"] = sorted(world_args["excluded_pairs"])
    objects = list(world.objects)
    held_out = split != "train" and rng.random() < 0.5
    colour, shape = _pair(rng, split, held_out)
    # Remove accidental duplicates of the target's label, then add the target (and its decoys).
    objects = [o for o in objects if (o.colour, o.shape) != (colour, shape)]
    names = iter(f"obj_{k}" for k in range(100, 200))
    template, phr = _pick_template(rng, task, split)
    room_start = None
    if task == "goto":
        spot = _free_spot(rng, world, objects)
        if spot is None:
            return None
        target = _new_object(next(names), colour, shape, *spot)
        objects.append(target)
        goals = [target]
        text = template.format(t=_label(target))
    elif task == "landmark":
        tables = [b for b in world.furniture if b.kind == "table"]
        if not tables:
            return None
        table = tables[int(rng.integers(len(tables)))]
        spot = None
        for _ in range(100):
            s = _free_spot(rng, world, objects, room=world.room_of(table.centre[0], table.centre[1]), tries=5)
            if s and _point_box(s[0], s[1], table) < 0.75:
                spot = s
                break
        if spot is None:
            return None
        target = _new_object(next(names), colour, shape, *spot)
        objects.append(target)
        decoy = None
        for _ in range(50):
            s = _free_spot(rng, world, objects, tries=5)
            if s and all(_point_box(s[0], s[1], b) > 1.5 for b in tables):
                decoy = _new_object(next(names), colour, shape, *s)
                break
        if decoy is None:
            return None
        objects.append(decoy)
        goals = [target]
        text = template.format(t=_label(target))
    elif task == "room":
        room_start = int(rng.integers(2))
        other = 1 - room_start
        s1 = _free_spot(rng, world, objects, room=other)
        s0 = _free_spot(rng, world, objects, room=room_start)
        if s1 is None or s0 is None:
            return None
        target = _new_object(next(names), colour, shape, *s1)
        objects += [target, _new_object(next(names), colour, shape, *s0)]
        goals = [target]
        text = template.format(t=_label(target))
    elif task == "relation":
        # Target and a same-label decoy on either side of a unique reference object, as seen from the start.
        rc, rs = _pair(rng, split, False)
        while (rc, rs) == (colour, shape):
            rc, rs = _pair(rng, split, False)
        objects = [o for o in objects if (o.colour, o.shape) != (rc, rs)]
        start_xy = _free_spot(rng, world, objects, clear=0.6)
        if start_xy is None:
            return None
        built = None
        for _ in range(60):
            yaw = rng.uniform(-math.pi, math.pi)
            dist = rng.uniform(2.0, 3.2)
            rx, ry = start_xy[0] + dist * math.cos(yaw), start_xy[1] + dist * math.sin(yaw)
            lx, ly = -math.sin(yaw), math.cos(yaw)  # the start pose's left (base_link +y)
            off = rng.uniform(0.8, 1.1)
            pts = [(rx, ry), (rx + off * lx, ry + off * ly), (rx - off * lx, ry - off * ly)]
            if all(world.room_of(x, y) == start_xy[2] and _box_clearance(world, x, y) > 0.55 for x, y in pts) and all(
                math.hypot(x - o.pos[0], y - o.pos[1]) > 0.7 for x, y in pts for o in objects
            ) and not any(_segment_hits_furniture(world, start_xy, p) for p in pts):
                built = (yaw, pts)
                break
        if built is None:
            return None
        yaw, pts = built
        side = str(rng.choice(["left of", "right of"]))
        ref = _new_object(next(names), rc, rs, *pts[0], start_xy[2])
        left = _new_object(next(names), colour, shape, *pts[1], start_xy[2])
        right = _new_object(next(names), colour, shape, *pts[2], start_xy[2])
        target = left if side == "left of" else right
        objects += [ref, left, right]
        objects = [o for o in objects if math.hypot(o.pos[0] - start_xy[0], o.pos[1] - start_xy[1]) > 0.7]
        goals = [target]
        text = template.format(t=_label(target), rel=side, r=_label(ref))
        start = (start_xy[0], start_xy[1], float(yaw + rng.uniform(-0.3, 0.3)))
    else:  # sequence
        s1 = _free_spot(rng, world, objects)
        if s1 is None:
            return None
        first = _new_object(next(names), colour, shape, *s1)
        objects.append(first)
        c2, sh2 = _pair(rng, split, False)
        objects = [o for o in objects if (o.colour, o.shape) != (c2, sh2) or o is first]
        s2 = _free_spot(rng, world, objects)
        if s2 is None or (c2, sh2) == (colour, shape) or math.hypot(s2[0] - s1[0], s2[1] - s1[1]) < 2.0:
            return None
        second = _new_object(next(names), c2, sh2, *s2)
        objects.append(second)
        goals = [first, second]
        text = template.format(x=_label(first), y=_label(second))
    if task != "relation":
        start = _start_pose(rng, world, objects, goals, room=room_start)
        if start is None:
            return None
    if task in ("goto", "sequence") and not all(_unique(objects, g) for g in goals):
        return None
    if not _connected(world, objects, start, goals):
        return None
    return _finish(split, scene_seed, world_args, task, text, [g.name for g in goals], start, objects, held_out, phr)


def _point_box(x, y, box) -> float:
    dx = max(0.0, abs(x - box.centre[0]) - box.half[0])
    dy = max(0.0, abs(y - box.centre[1]) - box.half[1])
    return math.hypot(dx, dy)


# -- manipulation ------------------------------------------------------------------------------
def _manip_episode(rng, split, scene_seed) -> Episode | None:
    task = str(rng.choice(MANIP_TASKS))
    world_args = {"n_rooms": 1, "furniture_mode": "one_table", "n_objects": int(rng.integers(2, 5)),
                  "excluded_pairs": HELD_OUT_PAIRS if split == "train" else frozenset()}
    world = generate_world(scene_seed, **world_args)
    world_args["excluded_pairs"] = sorted(world_args["excluded_pairs"])
    tables = [b for b in world.furniture if b.kind == "table"]
    if not tables:
        return None
    table = tables[0]
    held_out = split != "train" and rng.random() < 0.5
    names = iter(f"obj_{k}" for k in range(100, 200))
    template, phr = _pick_template(rng, task, split)
    objects = list(world.objects)
    movable_shapes = ("cube", "ball", "cylinder")
    colour, shape = _pair(rng, split, held_out)
    if task == "stack":
        shape = "cube"
    elif shape not in movable_shapes:
        shape = str(rng.choice(movable_shapes))
    if held_out and (colour, shape) not in HELD_OUT_PAIRS:
        held_out = False
    if split == "train" and (colour, shape) in HELD_OUT_PAIRS:
        return None
    objects = [o for o in objects if (o.colour, o.shape) != (colour, shape)]
    spot = _free_spot(rng, world, objects, clear=0.6)
    if spot is None:
        return None
    target = _new_object(next(names), colour, shape, *spot)
    objects.append(target)
    if task == "bring":
        dest_name = table.name
        words = {"t": _label(target)}
    else:
        dshape = "plate" if task == "place" else "cube"
        dcolour, dshape2 = _pair(rng, split, False)
        while (dcolour, dshape) in HELD_OUT_PAIRS or dcolour == colour:
            dcolour = str(rng.choice(list(COLOURS)))
        objects = [o for o in objects if (o.colour, o.shape) != (dcolour, dshape)]
        spot = _free_spot(rng, world, objects, clear=0.6)
        if spot is None:
            return None
        dest = _new_object(next(names), dcolour, dshape, *spot)
        objects.append(dest)
        dest_name = dest.name
        words = {"t": _label(target), "d": _label(dest)}
    # Distractors with a different label may sit on the table (they make "bring to the table" visual).
    if rng.random() < 0.5:
        dc, ds = _pair(rng, split, False)
        if (dc, ds) not in {(o.colour, o.shape) for o in objects}:
            dx = float(table.centre[0] + rng.uniform(-0.5, 0.5) * table.half[0])
            dy = float(table.centre[1] + rng.uniform(-0.5, 0.5) * table.half[1])
            s = OBJECT_SIZE[ds]
            objects.append(_new_object(next(names), dc, ds, dx, dy, 0, z=table.top_z + (s[1] if len(s) > 1 else s[0]), support=table.name))
    text = template.format(**words)
    start = _start_pose(rng, world, objects, [target], min_goal_dist=1.2)
    if start is None or not _connected(world, objects, start, [o for o in objects if o.support == "floor"]):
        return None
    return _finish(split, scene_seed, world_args, task, text, [target.name, dest_name], start, objects, held_out, phr,
                   suite="manip", max_steps=60)


# -- referring segmentation --------------------------------------------------------------------
SEG_LOOK_ALIKES = ("shape", "both")


def _seg_episode(rng, split, scene_seed, look_alikes: str = "shape") -> Episode | None:
    """A framed view of three spots (see below). `look_alikes` (seg_simple only): "shape" puts one
    object of the target's shape in another colour beside it (what val and test use); "both" also
    puts one of the target's colour in another shape on the third spot, so the phrase's shape word
    matters as much as its colour word (training data: the segmenter otherwise learns colour first)."""
    if look_alikes not in SEG_LOOK_ALIKES:
        raise ValueError(f"look_alikes must be one of {SEG_LOOK_ALIKES}, got {look_alikes!r}")
    task = str(rng.choice(SEG_TASKS, p=[0.5, 0.5]))
    world_args = {"n_rooms": int(rng.integers(1, 3)), "excluded_pairs": HELD_OUT_PAIRS if split == "train" else frozenset()}
    world = generate_world(scene_seed, **world_args)
    world_args["excluded_pairs"] = sorted(world_args["excluded_pairs"])
    held_out = split != "train" and rng.random() < 0.5
    colour, shape = _pair(rng, split, held_out)
    objects = [o for o in world.objects if (o.colour, o.shape) != (colour, shape)]
    names = iter(f"obj_{k}" for k in range(100, 200))
    template, phr = _pick_template(rng, task, split)
    start_xy = _free_spot(rng, world, objects, clear=0.6)
    if start_xy is None:
        return None
    for _ in range(60):
        yaw = float(rng.uniform(-math.pi, math.pi))
        dist = float(rng.uniform(1.6, 2.4))
        rx, ry = start_xy[0] + dist * math.cos(yaw), start_xy[1] + dist * math.sin(yaw)
        lx, ly = -math.sin(yaw), math.cos(yaw)
        off = float(rng.uniform(0.55, 0.75))
        pts = [(rx, ry), (rx + off * lx, ry + off * ly), (rx - off * lx, ry - off * ly)]
        if not all(world.room_of(x, y) == start_xy[2] and _box_clearance(world, x, y) > 0.4 for x, y in pts):
            continue
        if any(_segment_hits_furniture(world, start_xy, p) for p in pts):
            continue
        # Nothing else may stand between the camera and the three spots, or crowd them.
        clear_view = True
        for o in objects:
            for x, y in pts:
                if math.hypot(o.pos[0] - x, o.pos[1] - y) < 0.6 or _segment_point_distance(start_xy[:2], (x, y), o.pos[:2]) < 0.25:
                    clear_view = False
        if clear_view:
            break
    else:
        return None
    if task == "seg_simple":
        target = _new_object(next(names), colour, shape, *pts[0], start_xy[2])
        objects.append(target)
        # Distractors of the same colour or the same shape make the expression necessary.
        c2 = colour
        while c2 == colour or (c2, shape) in HELD_OUT_PAIRS and split == "train":
            c2 = str(rng.choice(list(COLOURS)))
        objects.append(_new_object(next(names), c2, shape, *pts[1], start_xy[2]))
        if look_alikes == "both":
            s2 = shape
            while s2 == shape or ((colour, s2) in HELD_OUT_PAIRS and split == "train"):
                s2 = str(rng.choice(SHAPES))
            objects.append(_new_object(next(names), colour, s2, *pts[2], start_xy[2]))
        text = template.format(t=_label(target))
    else:
        rc, rs = _pair(rng, split, False)
        while rs == shape:
            rc, rs = _pair(rng, split, False)
        objects = [o for o in objects if (o.colour, o.shape) != (rc, rs) and o.shape != shape]
        side = str(rng.choice(["left of", "right of"]))
        c2 = colour
        while c2 == colour or ((c2, shape) in HELD_OUT_PAIRS and split == "train"):
            c2 = str(rng.choice(list(COLOURS)))
        ref = _new_object(next(names), rc, rs, *pts[0], start_xy[2])
        left = _new_object(next(names), colour if side == "left of" else c2, shape, *pts[1], start_xy[2])
        right = _new_object(next(names), c2 if side == "left of" else colour, shape, *pts[2], start_xy[2])
        target = left if side == "left of" else right
        objects += [ref, left, right]
        text = template.format(s=shape, rel=side, r=_label(ref))
    objects = [o for o in objects if math.hypot(o.pos[0] - start_xy[0], o.pos[1] - start_xy[1]) > 0.6]
    start = (start_xy[0], start_xy[1], float(yaw + rng.uniform(-0.1, 0.1)))
    return _finish(split, scene_seed, world_args, task, text, [target.name], start, objects, held_out, phr, suite="seg", max_steps=1)


def _segment_hits_furniture(world: WorldSpec, a, b, pad: float = 0.05) -> bool:
    """True if the floor-plane segment a -> b crosses a furniture footprint (slab test), i.e. the
    camera at `a` may not see an object at `b`."""
    ax, ay = a[0], a[1]
    dx, dy = b[0] - ax, b[1] - ay
    for box in world.furniture:
        t0, t1 = 0.0, 1.0
        for o, d, lo, hi in ((ax, dx, box.xy_min[0] - pad, box.xy_max[0] + pad), (ay, dy, box.xy_min[1] - pad, box.xy_max[1] + pad)):
            if abs(d) < 1e-12:
                if not lo <= o <= hi:
                    break
                continue
            ta, tb = sorted(((lo - o) / d, (hi - o) / d))
            t0, t1 = max(t0, ta), min(t1, tb)
            if t0 > t1:
                break
        else:
            return True
    return False


def _segment_point_distance(a, b, p) -> float:
    ax, ay = a
    bx, by = b
    px, py = p
    vx, vy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * vx + (py - ay) * vy) / max(vx * vx + vy * vy, 1e-12)))
    return math.hypot(ax + t * vx - px, ay + t * vy - py)
