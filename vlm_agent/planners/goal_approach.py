"""Drive to a goal the robot's own perception has found: `GoalApproach`, the last leg of `NavidPlanner`.

Why: on `navid_map`'s val seed 1, 27 of 58 failed episodes had the goal in view at some point and
still failed: 15 never got within 1 m of it and 12 got there without stopping
(`benchmarks/navid_failure_modes.py`). Once the referring segmenter has marked the goal and the
attribute verifier has confirmed the mask (`planners/stop_check.py`), where the goal is follows from
geometry: the mask's pixels, the depth image and odometry put it on the map memory (`EgoMap`), and a
shortest path on that map gets there. Classical object-goal navigation stacks do this ("semantic
exploration": learnt search, geometric approach); the learnt model keeps the part it is needed for,
looking for the goal.

    approach = GoalApproach(["the red ball"], unique=True)
    approach.observe("the red ball", ego_map.mask_points(depth, mask, pose), pose)
    step = approach.plan(pose, ego_map)   # None: no goal located (the model drives), else ApproachStep

Goals: `instruction_goals` reads the instruction's "<colour> <shape>" pairs. A sequence ("first ...
then ...", "... and finish at ...") has one leg per pair, visited in order. An instruction that
qualifies its goal ("next to the table", "in the other room", "left of the blue cube") names an
object that may have look-alikes of the same colour and shape in the scene, which this module cannot
tell apart: it is not approached (`unique` False), and the model drives as before.

Map frame: `odom` (x, y m, yaw rad CCW). The path is planned on the map's accumulated grid: obstacle
cells grown by the robot's radius plus a margin are blocked; unknown cells are traversable (the map
updates every plan, so a path through unseen space is re-planned once it is seen).
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from vlm_agent.actions import FORWARD_STEP_CM, TURN_STEP_DEG, NavPrimitive

SEQUENCE_WORDS = ("then", "finish", "first")
# Words that qualify a goal by where it is: such a goal may have same-label look-alikes in the scene.
QUALIFIER_WORDS = ("beside", "near", "behind", "between", "front", "left", "right", "room", "table", "other")


def instruction_goals(instruction: str, colours, shapes) -> tuple[list[str], bool]:
    """(goal phrases "the <colour> <shape>" in visiting order, whether each names a single object).

    A sequence instruction gives every pair in order; any other gives its first pair (a relation's
    second pair is its reference). `unique` is False for a qualified goal (module docstring) and for an
    instruction naming no pair the vocabulary knows (then the phrase list is empty)."""
    text = instruction.lower()
    words = re.findall(r"[a-z]+", text)
    pairs = [f"the {a} {b}" for a, b in zip(words, words[1:]) if a in colours and b in shapes and b != "other"]
    if not pairs:
        return [], False
    if any(w in SEQUENCE_WORDS for w in words) and len(pairs) > 1:
        return pairs, True
    qualified = any(w in QUALIFIER_WORDS for w in words) or "next to the" in text
    return pairs[:1], len(pairs) == 1 and not qualified


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

    def __init__(self, phrases: list[str], unique: bool, stop_radius_m: float = 0.7, leg_radius_m: float = 0.6,
                 max_plans: int = 60, robot_radius_m: float = 0.2, clearance_m: float = 0.05, object_depth_m: float = 0.1,
                 turn_cost_m: float = 0.12, merge_radius_m: float = 0.75):
        self.phrases = list(phrases)
        self.unique = bool(unique) and bool(self.phrases)
        self.stop_radius_m, self.leg_radius_m, self.max_plans = stop_radius_m, leg_radius_m, max_plans
        self.robot_radius_m, self.clearance_m, self.object_depth_m = robot_radius_m, clearance_m, object_depth_m
        self.turn_cost_m, self.merge_radius_m = turn_cost_m, merge_radius_m
        self.leg = 0
        self.candidates: dict[str, list[Candidate]] = {p: [] for p in self.phrases}
        self._plans_on_estimate = 0  # plans spent on the current target candidate
        self._target: Candidate | None = None
        self._forward_from: tuple[float, float, float] | None = None  # pose a forward step was planned at
        self.bumps = 0  # forward steps that did not move the robot (their cells became obstacles)
        self._bumped = False  # the last forward step did not move the robot: the next move is a turn

    @property
    def current_phrase(self) -> str | None:
        return self.phrases[self.leg] if self.unique and self.leg < len(self.phrases) else None

    @property
    def pending_phrases(self) -> list[str]:
        """Goals of this and later legs: the ones worth looking for."""
        return self.phrases[self.leg:] if self.unique else []

    @property
    def estimates(self) -> dict[str, tuple[float, float]]:
        """The chosen candidate's (x, y) of every located phrase (`choose`)."""
        return {p: (c.x, c.y) for p in self.phrases if (c := self.choose(p)) is not None}

    def choose(self, phrase: str) -> Candidate | None:
        """The candidate the verifier liked best (then the most seen). The verifier accepts a look-alike
        now and then (a purple cylinder for the purple cube at 3-4 m, match 0.8-0.9), rarely as
        confidently as the object itself, seen once from close by (0.99)."""
        found = self.candidates.get(phrase) or []
        return max(found, key=lambda c: (c.match, c.sightings)) if found else None

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
        if phrase not in self.phrases or len(pts) == 0:
            return None
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
        if last and dist <= self.stop_radius_m:
            if abs(bearing) > 60.0:  # face it first: the frame the stop is decided on shows the goal
                return ApproachStep([_turn_towards(bearing)], f"goal approach: facing {phrase} ({dist:.2f} m, {bearing:+.0f} deg) before stopping")
            return ApproachStep([NavPrimitive.stop()], f"goal approach: {phrase} is {dist:.2f} m away (<= {self.stop_radius_m:g})")
        radius = self.stop_radius_m if last else self.leg_radius_m
        move = self._best_move(ego_map, (x, y, yaw), (gx, gy), radius)
        if move is None:
            return None
        self._forward_from = (x, y, yaw) if move[0].kind == "forward" else None
        return ApproachStep(move, f"goal approach: {phrase} at ({gx:.2f}, {gy:.2f}), {dist:.2f} m away, leg {self.leg + 1} of {len(self.phrases)}")

    def _check_bump(self, ego_map, pose) -> None:
        """If the last forward step planned here left the robot where it was, something the camera
        did not map blocks it (e.g. below its view, which starts ~0.8 m ahead): mark a strip just ahead
        as an obstacle, so the next path goes around it."""
        start, self._forward_from = self._forward_from, None
        self._bumped = start is not None and math.hypot(pose[0] - start[0], pose[1] - start[1]) <= 0.05
        if not self._bumped:
            return
        x, y, yaw = start
        ahead = np.array([0.3, 0.35])[:, None]
        side = np.linspace(-self.robot_radius_m, self.robot_radius_m, 5)[None, :]
        px = x + ahead * math.cos(yaw) - side * math.sin(yaw)
        py = y + ahead * math.sin(yaw) + side * math.cos(yaw)
        ego_map.mark_obstacle(px.ravel(), py.ravel())
        self.bumps += 1

    # -- planning on the map -------------------------------------------------------------------
    def _best_move(self, ego_map, pose, goal, radius) -> list[NavPrimitive] | None:
        """The oracle's rule (sim/oracle.py) on the robot's own map: of the 12 headings 30 degrees
        apart, the one whose 50 cm ray ends nearest the goal along the shortest path, plus a small
        cost per turn; one forward step or one turn (a turn right after a forward step that did not move
        the robot). None when no path is known."""
        x, y, yaw = pose
        field, to_cell = self.cost_to_go(ego_map, (x, y), goal, radius)
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
        margin = int(math.ceil((radius + 1.0) / res))
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
        near_goal = np.hypot(cx - goal_xy[0], cy - goal_xy[1]) <= radius
        goal_cells = near_goal & ~blocked
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


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _turn_towards(bearing_deg: float) -> NavPrimitive:
    """A turn of whole 30 degree steps (at least one) towards a bearing (degrees, left positive)."""
    steps = max(1, int(round(abs(bearing_deg) / TURN_STEP_DEG)))
    deg = min(180.0, steps * TURN_STEP_DEG)
    return NavPrimitive.turn_left(deg) if bearing_deg > 0 else NavPrimitive.turn_right(deg)


__all__ = ["ApproachStep", "Candidate", "GoalApproach", "instruction_goals"]
