"""Drive to a goal the robot's own perception has found: `GoalApproach`, the last leg of `NavidPlanner`.

Why: on `navid_map`'s val seed 1, 27 of 58 failed episodes had the goal in view at some point and
still failed: 15 never got within 1 m of it and 12 got there without stopping
(`benchmarks/navid_failure_modes.py`). Once the referring segmenter has marked the goal and the
attribute verifier has confirmed the mask (`planners/stop_check.py`), where the goal is follows from
geometry: the mask's pixels, the depth image and odometry put it on the map memory (`EgoMap`), and a
shortest path on that map gets there. Classical object-goal navigation stacks do this ("semantic
exploration": learnt search, geometric approach); the learnt model keeps the part it is needed for,
looking for the goal.

    approach = GoalApproach(instruction_goals("go to the red ball", colours, shapes))
    approach.observe("the red ball", ego_map.mask_points(depth, mask, pose), pose)
    step = approach.plan(pose, ego_map)   # None: no goal located (the model drives), else ApproachStep

Goals: `instruction_goals` reads the instruction's "<colour> <shape>" pairs into a `GoalSpec`. A
sequence ("first ... then ...", "... and finish at ...") has one leg per pair, visited in order. A
goal qualified by where it is may have look-alikes of the same colour and shape in the scene; the
qualifiers the map can check pick among them ("in the other room": beyond a wall or doorway from the
start; "next to the table": beside a table-height obstacle; "left of the blue cube": on that side of
the located reference, as seen from the start pose). Any other qualifier is not approached, and the
model drives as before.

Map frame: `odom` (x, y m, yaw rad CCW). The path is planned on the map's accumulated grid: obstacle
cells grown by the robot's radius plus a margin are blocked; unknown cells are traversable (the map
updates every plan, so a path through unseen space is re-planned once it is seen).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import re

import numpy as np

from vlm_agent.actions import FORWARD_STEP_CM, TURN_STEP_DEG, NavPrimitive

SEQUENCE_WORDS = ("then", "finish", "first")
# Where-words this module can check on the map (`GoalSpec.qualifier`), and others it cannot: a goal
# qualified by one of those may have same-label look-alikes it cannot tell apart, so it is not approached.
UNCHECKED_QUALIFIER_WORDS = ("near", "behind", "between", "front", "under", "above", "corner")
QUALIFIERS = (None, "room", "table", "left", "right")


@dataclasses.dataclass
class GoalSpec:
    """What an instruction asks the approach for.

    phrases: the goals "the <colour> <shape>" in visiting order (a sequence has several).
    approachable: whether the approach may drive to them (False: nothing it can check names the goal).
    qualifier: which of the goal's same-label look-alikes is meant, checked on the map:
      None (the phrase names one object), "room" (not in the room the robot started in),
      "table" (next to a table), "left" / "right" (of `reference`, as seen from the start pose).
    reference: the relation's reference object phrase ("left" / "right" only).
    """

    phrases: list[str]
    approachable: bool
    qualifier: str | None = None
    reference: str | None = None


def instruction_goals(instruction: str, colours, shapes) -> GoalSpec:
    """Read an instruction's goals in the verifier's vocabulary (`GoalSpec`).

    A sequence ("first ... then ...", "... and finish at ...") gives every pair in order; any other
    gives its first pair. "left of" / "right of" a second pair makes a relation; "room" a goal in
    the other room; "table" a goal next to a table. An instruction naming no pair the vocabulary knows
    gives no phrase and is not approachable."""
    text = instruction.lower()
    words = re.findall(r"[a-z]+", text)
    pairs = [f"the {a} {b}" for a, b in zip(words, words[1:]) if a in colours and b in shapes and b != "other"]
    if not pairs:
        return GoalSpec([], False)
    if any(w in SEQUENCE_WORDS for w in words) and len(pairs) > 1:
        return GoalSpec(pairs, True)
    side = [w for w in ("left", "right") if w in words]
    if len(side) == 1 and len(pairs) == 2:
        return GoalSpec(pairs[:1], True, side[0], pairs[1])
    if any(w in UNCHECKED_QUALIFIER_WORDS for w in words) or side or len(pairs) > 1:
        return GoalSpec(pairs[:1], False)
    if "room" in words:
        return GoalSpec(pairs[:1], True, "room")
    if "table" in words:
        return GoalSpec(pairs[:1], True, "table")
    if "next to the" in text or "beside" in words:  # next to something this module cannot see
        return GoalSpec(pairs[:1], False)
    return GoalSpec(pairs[:1], True)


@dataclasses.dataclass
class Candidate:
    """One located object that a goal phrase was confirmed on: where ((x, y) m, `odom`), the
    verifier's best match over its sightings, and how many sightings."""

    x: float
    y: float
    match: float
    sightings: int = 1


@dataclasses.dataclass
class ApproachStep:
    """What `GoalApproach.plan` decided: primitives (1..3) and why, in words."""

    primitives: list[NavPrimitive]
    reason: str


class GoalApproach:
    """Legs of located goals and a shortest path to the current one (see module doc).

    stop_radius_m: the final leg ends with a stop this close to the goal's estimate (the success radius
    is 1.0 m from the object's centre); leg_radius_m: an earlier leg is done this close.
    max_plans: plans spent on one candidate before it is dropped (a path that never closes in).
    Every phrase keeps its candidates (`Candidate`, one per object it was confirmed on); the approach
    heads for the one `choose` prefers, so a better sighting of the right object redirects it.
    """

    def __init__(self, spec: GoalSpec, stop_radius_m: float = 0.7, leg_radius_m: float = 0.6,
                 max_plans: int = 60, robot_radius_m: float = 0.2, clearance_m: float = 0.05, object_depth_m: float = 0.1,
                 turn_cost_m: float = 0.12, merge_radius_m: float = 0.75, ego_map=None,
                 stall_plans: int = 0, stall_min_new_m2: float = 0.5):
        if spec.qualifier not in QUALIFIERS or (spec.qualifier in ("left", "right")) != (spec.reference is not None):
            raise ValueError(f"GoalApproach: bad goal spec {spec}")
        self.spec = spec
        self.phrases = list(spec.phrases)
        self.approachable = bool(spec.approachable) and bool(self.phrases)  # False: never approaches
        self.start_pose: tuple[float, float, float] | None = None  # the first pose seen (relations and rooms refer to it)
        self._map = ego_map  # the EgoMap qualifiers are checked on (the one of the last plan)
        self.stop_radius_m, self.leg_radius_m, self.max_plans = stop_radius_m, leg_radius_m, max_plans
        self.robot_radius_m, self.clearance_m, self.object_depth_m = robot_radius_m, clearance_m, object_depth_m
        self.turn_cost_m, self.merge_radius_m = turn_cost_m, merge_radius_m
        self.stall_plans, self.stall_min_new_m2 = int(stall_plans), float(stall_min_new_m2)
        self.exploring: str | None = None  # why frontier exploration has taken over from the model (None: it has not)
        self._seen_counts: collections.deque[int] = collections.deque(maxlen=max(1, self.stall_plans + 1))
        self.leg = 0
        self.candidates: dict[str, list[Candidate]] = {p: [] for p in self.phrases + ([spec.reference] if spec.reference else [])}
        self._plans_on_estimate = 0  # plans spent on the current target candidate
        self._target: Candidate | None = None
        # (x, y, yaw, metres) where forward steps were planned and how far they should take the robot
        self._forward_from: tuple[float, float, float, float] | None = None
        self.bumps = 0  # forward plans cut short (the cells ahead became obstacles)
        self._bumped = False  # the last forward plan was cut short: the next move is a turn

    @property
    def current_phrase(self) -> str | None:
        return self.phrases[self.leg] if self.approachable and self.leg < len(self.phrases) else None

    @property
    def pending_phrases(self) -> list[str]:
        """Goals of this and later legs, and a relation's reference: the ones worth looking for."""
        if not self.approachable:
            return []
        return self.phrases[self.leg:] + ([self.spec.reference] if self.spec.reference else [])

    @property
    def estimates(self) -> dict[str, tuple[float, float]]:
        """The chosen candidate's (x, y) of every located phrase (`choose`)."""
        return {p: (c.x, c.y) for p in self.phrases if (c := self.choose(p)) is not None}

    def choose(self, phrase: str) -> Candidate | None:
        """Of the candidates that meet the goal's qualifier (`qualifies`; a relation's reference and
        sequence legs have none), the one the verifier liked best, then the most seen. The verifier
        accepts a look-alike now and then (a purple cylinder for the purple cube at 3-4 m, match
        0.8-0.9), rarely as confidently as the object itself, seen once from close by (0.99)."""
        found = self.candidates.get(phrase) or []
        if self.spec.qualifier is not None and phrase == self.phrases[-1]:
            found = [c for c in found if self.qualifies(c)]
        return max(found, key=lambda c: (c.match, c.sightings)) if found else None

    def qualifies(self, c: Candidate) -> bool:
        """Whether candidate `c` meets the instruction's qualifier, on what the map shows now."""
        q, m = self.spec.qualifier, self._map
        if q is None:
            return True
        if q in ("left", "right"):
            ref = self.choose(self.spec.reference)
            if ref is None or self.start_pose is None:
                return False
            yaw = self.start_pose[2]
            side = (c.x - ref.x) * -math.sin(yaw) + (c.y - ref.y) * math.cos(yaw)  # along the start pose's left
            beside = math.hypot(c.x - ref.x, c.y - ref.y) <= 2.0  # "left of X" is next to X, not anywhere on that side
            return beside and (side > 0.3 if q == "left" else side < -0.3)
        if m is None or m.origin is None or self.start_pose is None:
            return False
        if q == "room":
            return crosses_room_boundary(m, self.start_pose[:2], (c.x, c.y))
        return near_low_furniture(m, (c.x, c.y))

    def observe(self, phrase: str, points_xy: np.ndarray, pose, match: float = 1.0) -> tuple[float, float] | None:
        """Locate `phrase` from its mask's world points (P, 2) seen from base pose (x, y, yaw), with the
        verifier's `match`; returns the sighting's (x, y), or None (no points, or not a goal here).

        The position is the median of the points on the surface nearest the robot (within 0.3 m of the
        10th percentile of their distance: a mask that spills onto the floor behind the object adds
        far points), pushed `object_depth_m` farther along the view ray towards the object's centre.
        A sighting within `merge_radius_m` of a candidate is that object again: the later (usually
        closer, more accurate) position replaces the earlier one. Otherwise it is a new candidate."""
        pts = np.asarray(points_xy, float).reshape(-1, 2)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if phrase not in self.candidates or len(pts) == 0:
            return None
        if self.start_pose is None:
            self.start_pose = tuple(float(v) for v in pose)
        x, y = float(pose[0]), float(pose[1])
        dist = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        near = pts[dist <= np.percentile(dist, 10) + 0.3]
        gx, gy = (float(v) for v in np.median(near, axis=0))
        d = math.hypot(gx - x, gy - y)
        if d > 1e-6:
            gx, gy = gx + (gx - x) / d * self.object_depth_m, gy + (gy - y) / d * self.object_depth_m
        found = self.candidates[phrase]
        same = [c for c in found if math.hypot(c.x - gx, c.y - gy) <= self.merge_radius_m]
        if same:
            c = min(same, key=lambda c: math.hypot(c.x - gx, c.y - gy))
            c.x, c.y, c.match, c.sightings = gx, gy, max(c.match, float(match)), c.sightings + 1
        else:
            found.append(Candidate(gx, gy, float(match)))
        return gx, gy

    def plan(self, pose, ego_map) -> ApproachStep | None:
        """The next primitives towards the current leg's goal, or None when it has not been located
        (or no path to it is known): then the model drives. Advances past legs that are done."""
        x, y, yaw = (float(v) for v in pose)
        if self.start_pose is None:
            self.start_pose = (x, y, yaw)
        self._map = ego_map
        self._check_bump(ego_map, (x, y, yaw))
        while True:
            phrase = self.current_phrase
            target = self.choose(phrase) if phrase is not None else None
            if target is None:
                return None
            if target is not self._target:
                self._target, self._plans_on_estimate = target, 0
            gx, gy = target.x, target.y
            dist = math.hypot(gx - x, gy - y)
            last = self.leg == len(self.phrases) - 1
            if not last and dist <= self.leg_radius_m:
                self.leg += 1
                continue
            break
        self._plans_on_estimate += 1
        if self._plans_on_estimate > self.max_plans:
            self.candidates[phrase].remove(target)
            self._target, self._plans_on_estimate = None, 0
            return None
        bearing = math.degrees(_wrap(math.atan2(gy - y, gx - x) - yaw))
        if self._bumped and dist <= self.stop_radius_m + 0.3 and abs(bearing) <= 60.0:
            # Cut short just before the goal: the object itself (or what it stands by) is in the way,
            # as a safety supervisor's stop zone says; this is as close as it gets.
            if not last:
                self.leg += 1
                return self.plan(pose, ego_map)
            return ApproachStep([NavPrimitive.stop()], f"goal approach: blocked {dist:.2f} m from {phrase}: as close as it gets")
        if last and dist <= self.stop_radius_m:
            if abs(bearing) > 60.0:  # face it first: the frame the stop is decided on shows the goal
                return ApproachStep([_turn_towards(bearing)], f"goal approach: facing {phrase} ({dist:.2f} m, {bearing:+.0f} deg) before stopping")
            return ApproachStep([NavPrimitive.stop()], f"goal approach: {phrase} is {dist:.2f} m away (<= {self.stop_radius_m:g})")
        radius = self.stop_radius_m if last else self.leg_radius_m
        move = self._best_move((x, y, yaw), *self.cost_to_go(ego_map, (x, y), (gx, gy), radius))
        if move is None:
            return None
        self._forward_from = (x, y, yaw, sum(p.distance_m for p in move)) if move[0].kind == "forward" else None
        return ApproachStep(move, f"goal approach: {phrase} at ({gx:.2f}, {gy:.2f}), {dist:.2f} m away, leg {self.leg + 1} of {len(self.phrases)}")

    # -- exploring when the model does not ------------------------------------------------------
    def note_model_plan(self, ego_map) -> None:
        """Record a plan the model made: when its last `stall_plans` plans together added less than
        `stall_min_new_m2` of seen floor, it is going round in what it knows, and frontier
        exploration takes over (`explore`) until the goal is located."""
        if self.stall_plans <= 0 or self.exploring:
            return
        self._seen_counts.append(int(ego_map.grid[0].sum()))
        if len(self._seen_counts) == self._seen_counts.maxlen:
            new_m2 = (self._seen_counts[-1] - self._seen_counts[0]) * ego_map.config.world_resolution_m ** 2
            if new_m2 < self.stall_min_new_m2:
                self.start_exploring(f"the model's last {self.stall_plans} plans saw {new_m2:.2f} m2 of new floor")

    def start_exploring(self, why: str) -> None:
        """Hand the search to frontier exploration (`explore`), e.g. after a refused stop."""
        if self.stall_plans > 0 and self.exploring is None:
            self.exploring = why

    def explore(self, pose, ego_map) -> ApproachStep | None:
        """One step towards the nearest frontier (`frontier_field`), or None when none is reachable
        (the model drives again). Call after `plan` returned None in the same planning step."""
        x, y, yaw = (float(v) for v in pose)
        move = self._best_move((x, y, yaw), *self.frontier_field(ego_map, (x, y)))
        if move is None:
            self.exploring, self._seen_counts = None, collections.deque(maxlen=self._seen_counts.maxlen)
            return None
        self._forward_from = (x, y, yaw, sum(p.distance_m for p in move)) if move[0].kind == "forward" else None
        return ApproachStep(move, f"exploring: to the nearest frontier ({self.exploring})")

    def _check_bump(self, ego_map, pose) -> None:
        """If the last forward plan fell 10 cm or more short (a collision, or a safety supervisor's
        stop zone), something the map does not show blocks the way (e.g. below the camera's view, which
        starts ~0.8 m ahead): mark a strip just ahead of where the robot stopped as an obstacle, so the
        next path goes around it."""
        start, self._forward_from = self._forward_from, None
        self._bumped = start is not None and math.hypot(pose[0] - start[0], pose[1] - start[1]) < start[3] - 0.1
        if not self._bumped:
            return
        x, y, yaw = pose
        ahead = np.array([0.3, 0.35])[:, None]
        side = np.linspace(-self.robot_radius_m, self.robot_radius_m, 5)[None, :]
        px = x + ahead * math.cos(yaw) - side * math.sin(yaw)
        py = y + ahead * math.sin(yaw) + side * math.cos(yaw)
        ego_map.mark_obstacle(px.ravel(), py.ravel())
        self.bumps += 1

    # -- planning on the map -------------------------------------------------------------------
    def _best_move(self, pose, field, to_cell) -> list[NavPrimitive] | None:
        """The oracle's rule (sim/oracle.py) on the robot's own map: of the 12 headings 30 degrees
        apart, the one whose 50 cm ray ends nearest the goal along the shortest path (`field`, from
        `cost_to_go`), plus a small cost per turn; one forward step or one turn (a turn right after a
        forward step that did not move the robot). None when no path is known."""
        x, y, yaw = pose
        if field is None:
            return None
        blocked = ~np.isfinite(field)
        step_m = FORWARD_STEP_CM / 100.0
        t = np.linspace(0.0625, 2 * step_m, 8)
        best = None
        for k in range(-5, 7):
            if k == 0 and self._bumped:
                continue  # the map may not show what stopped it yet (the robot hugs it): look another way first
            heading = yaw + math.radians(TURN_STEP_DEG * k)
            r, c = to_cell(x + np.cos(heading) * t, y + np.sin(heading) * t)
            free = ~blocked[r, c]
            n = len(t) if free.all() else int(np.argmin(free))
            end = field[r[n - 1], c[n - 1]] if n else field[to_cell(np.array([x]), np.array([y]))][0]
            if not np.isfinite(end):
                continue
            score = float(end) + self.turn_cost_m * abs(k) + (1.0 if n < 2 else 0.0)
            if best is None or score < best[0] - 1e-9:
                best = (score, k, n)
        if best is None:
            return None
        _, k, n = best
        if k == 0:
            return [NavPrimitive.forward()] * (2 if n == len(t) else 1)
        return [_turn_towards(TURN_STEP_DEG * k)]

    def cost_to_go(self, ego_map, robot_xy, goal_xy, radius):
        """(field, to_cell): metres along the shortest 8-connected path from each cell of a crop of
        the map's grid to the free cells within `radius` of the goal (inf = blocked or cut off), and a
        function world (x, y) arrays -> (row, col) of that crop (clipped to it). (None, None) when
        no goal cell is reachable."""
        def near_goal(cx, cy, known, free):
            return np.hypot(cx - goal_xy[0], cy - goal_xy[1]) <= radius

        return self._field(ego_map, robot_xy, goal_xy, radius + 1.0, near_goal)

    def frontier_field(self, ego_map, robot_xy, min_distance_m: float = 1.0, min_cells: int = 4):
        """`cost_to_go` towards the nearest frontier: seen free floor next to unseen cells (Yamauchi's
        frontier exploration), in groups of at least `min_cells`, at least `min_distance_m` from the robot."""
        from scipy import ndimage

        def frontier(cx, cy, known, free):
            unknown = ~known
            edge = free & ndimage.binary_dilation(unknown, structure=np.ones((3, 3), bool))
            labels, n = ndimage.label(edge, structure=np.ones((3, 3), bool))
            if n:
                sizes = np.bincount(labels.ravel())
                edge &= sizes[labels] >= min_cells
            return edge & (np.hypot(cx - robot_xy[0], cy - robot_xy[1]) >= min_distance_m)

        return self._field(ego_map, robot_xy, robot_xy, 1.0, frontier)

    def _field(self, ego_map, robot_xy, goal_xy, margin_m, goal_cells_of):
        """The shortest-path field of `cost_to_go` towards `goal_cells_of(cx, cy, known, free)` (cell
        centres and the map's known / free masks over the crop -> bool goal cells)."""
        from scipy import ndimage
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import dijkstra

        res = ego_map.config.world_resolution_m
        known = ego_map.grid.any(axis=0)
        pts = np.array([robot_xy, goal_xy], float)
        pr, pc, inside = ego_map.world_to_cell(pts[:, 0], pts[:, 1])
        if not inside.all():
            return None, None
        rows, cols = np.nonzero(known)
        margin = int(math.ceil(margin_m / res))
        n_cells = ego_map.grid.shape[1]
        r0 = max(0, min(rows.min(initial=pr.min()), pr.min()) - margin)
        r1 = min(n_cells, max(rows.max(initial=pr.max()), pr.max()) + margin + 1)
        c0 = max(0, min(cols.min(initial=pc.min()), pc.min()) - margin)
        c1 = min(n_cells, max(cols.max(initial=pc.max()), pc.max()) + margin + 1)
        obstacle = ego_map.grid[1, r0:r1, c0:c1]
        grow = int(math.ceil((self.robot_radius_m + self.clearance_m) / res))
        yy, xx = np.mgrid[-grow:grow + 1, -grow:grow + 1]
        blocked = ndimage.binary_dilation(obstacle, structure=(xx ** 2 + yy ** 2) <= grow ** 2)
        # The robot is where it is: free its own cell and neighbours so a path can start there.
        rr, rc = pr[0] - r0, pc[0] - c0
        blocked[max(0, rr - 1):rr + 2, max(0, rc - 1):rc + 2] = False
        h, w = blocked.shape
        cx, cy = ego_map.cell_to_world(np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :])
        free = ego_map.grid[0, r0:r1, c0:c1] & ~ego_map.grid[1, r0:r1, c0:c1]
        goal_cells = goal_cells_of(cx, cy, known[r0:r1, c0:c1], free) & ~blocked
        if not goal_cells.any():
            return None, None
        idx = np.arange(h * w).reshape(h, w)
        src, dst, length = [], [], []
        for di, dj in ((0, 1), (1, 0), (1, 1), (1, -1)):
            j0, j1 = max(0, -dj), w - max(0, dj)
            a = idx[0:h - di, j0:j1]  # each cell and its neighbour at (+di, +dj)
            b = idx[di:h, j0 + dj:j1 + dj]
            ok = ~blocked.ravel()[a.ravel()] & ~blocked.ravel()[b.ravel()]
            src.append(a.ravel()[ok])
            dst.append(b.ravel()[ok])
            length.append(np.full(int(ok.sum()), res * math.hypot(di, dj)))
        graph = coo_matrix((np.concatenate(length), (np.concatenate(src), np.concatenate(dst))), shape=(h * w, h * w)).tocsr()
        dist = dijkstra(graph, directed=False, indices=np.flatnonzero(goal_cells), min_only=True)
        field = dist.reshape(h, w)
        field[blocked] = np.inf

        def to_cell(px, py):
            r, c, _ = ego_map.world_to_cell(px, py)
            return np.clip(r - r0, 0, h - 1), np.clip(c - c0, 0, w - 1)

        if not np.isfinite(field[rr, rc]):
            return None, None
        return field, to_cell


# Heights (m above the floor) of the highest obstacle point in a map cell (`EgoMap.top`): the
# simulator's walls are 1.6 m (the camera sees them up to ~1-1.3 m), cabinets 0.9 m, tables 0.45 m,
# sofas 0.4 m and the objects at most 0.22 m.
WALL_MIN_TOP_M = 1.05
LOW_FURNITURE_TOP_M = (0.3, 0.6)


def crosses_room_boundary(ego_map, start_xy, goal_xy, doorway_half_width_m: float = 1.1, beside_m: float = 0.45) -> bool:
    """Whether the straight segment start -> goal leaves the start's room, on the map: it meets a wall
    cell (an obstacle seen above `WALL_MIN_TOP_M`), or passes a doorway: wall cells beside one of its
    points (within `beside_m` along it and `doorway_half_width_m` across) on both sides of it, the
    nearest of each on one straight wall with the gap between them (not a room corner's two walls).
    Rooms are convex, so a segment between two points of one room meets neither; walls not yet seen
    make this False (the approach then waits)."""
    res = ego_map.config.world_resolution_m
    (sx, sy), (gx, gy) = start_xy, goal_xy
    length = math.hypot(gx - sx, gy - sy)
    if length < 1e-6:
        return False
    ux, uy = (gx - sx) / length, (gy - sy) / length
    t = np.arange(0.0, max(length - 0.3, 0.0), res / 2)  # not the last 0.3 m: the goal's own surroundings
    if t.size == 0:
        return False
    px, py = sx + ux * t, sy + uy * t
    rows, cols = np.nonzero(ego_map.top > WALL_MIN_TOP_M)
    if rows.size == 0:
        return False
    wx, wy = ego_map.cell_to_world(rows, cols)
    reach = doorway_half_width_m + res
    keep = (wx >= min(sx, gx) - reach) & (wx <= max(sx, gx) + reach) & (wy >= min(sy, gy) - reach) & (wy <= max(sy, gy) + reach)
    wx, wy = wx[keep], wy[keep]
    if wx.size == 0:
        return False
    dx, dy = wx[None, :] - px[:, None], wy[None, :] - py[:, None]  # (samples, wall cells)
    along, across = dx * ux + dy * uy, ux * dy - uy * dx  # across > 0: left of the segment
    if (np.hypot(dx, dy) <= res * 0.75).any():  # the segment runs through a wall cell
        return True
    beside = np.abs(along) <= beside_m
    left_ok = beside & (across > 0) & (across <= doorway_half_width_m)
    right_ok = beside & (across < 0) & (across >= -doorway_half_width_m)
    for i in np.flatnonzero(left_ok.any(axis=1) & right_ok.any(axis=1)):
        # A doorway's two jambs lie on one straight wall; a room corner's two walls are perpendicular.
        jl = np.flatnonzero(left_ok[i])[np.argmin(across[i, left_ok[i]])]
        jr = np.flatnonzero(right_ok[i])[np.argmax(across[i, right_ok[i]])]
        gap = np.array([wx[jr] - wx[jl], wy[jr] - wy[jl]])
        gap /= max(float(np.hypot(*gap)), 1e-9)
        if all(abs(float(_wall_direction(wx, wy, j) @ gap)) > 0.9 for j in (jl, jr)):
            return True
    return False


def _wall_direction(wx: np.ndarray, wy: np.ndarray, j: int, radius_m: float = 0.35) -> np.ndarray:
    """Unit direction of the wall through wall cell `j`: the principal axis of the wall cells near it."""
    near = np.hypot(wx - wx[j], wy - wy[j]) <= radius_m
    pts = np.stack([wx[near], wy[near]], axis=1)
    if len(pts) < 2:
        return np.zeros(2)
    _, _, vt = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)
    return vt[0]


def near_low_furniture(ego_map, goal_xy, within_m: float = 0.9, min_cells: int = 3) -> bool:
    """Whether at least `min_cells` map cells within `within_m` of the goal hold an obstacle whose top
    is table height (`LOW_FURNITURE_TOP_M`: tables, also sofas; not walls, cabinets or objects)."""
    lo, hi = LOW_FURNITURE_TOP_M
    res = ego_map.config.world_resolution_m
    k = int(math.ceil(within_m / res))
    r0, c0, inside = ego_map.world_to_cell(np.array([goal_xy[0]]), np.array([goal_xy[1]]))
    if not inside[0]:
        return False
    n = ego_map.top.shape[0]
    rs, cs = slice(max(0, r0[0] - k), min(n, r0[0] + k + 1)), slice(max(0, c0[0] - k), min(n, c0[0] + k + 1))
    top = ego_map.top[rs, cs]
    cx, cy = ego_map.cell_to_world(np.arange(rs.start, rs.stop)[:, None], np.arange(cs.start, cs.stop)[None, :])
    near = np.hypot(cx - goal_xy[0], cy - goal_xy[1]) <= within_m
    return int((near & (top > lo) & (top <= hi)).sum()) >= min_cells


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _turn_towards(bearing_deg: float) -> NavPrimitive:
    """A turn of whole 30 degree steps (at least one) towards a bearing (degrees, left positive)."""
    steps = max(1, int(round(abs(bearing_deg) / TURN_STEP_DEG)))
    deg = min(180.0, steps * TURN_STEP_DEG)
    return NavPrimitive.turn_left(deg) if bearing_deg > 0 else NavPrimitive.turn_right(deg)


__all__ = ["ApproachStep", "Candidate", "GoalApproach", "GoalSpec", "crosses_room_boundary", "instruction_goals", "near_low_furniture"]
