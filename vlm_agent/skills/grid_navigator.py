"""Approach on a map: `GridNavigator`, a `Navigator` that plans around walls and furniture on an
occupancy grid (what `map_server` or a SLAM node publishes as `nav_msgs/OccupancyGrid` on `map`).

`OccupancyMap` holds the grid: occupied cells (`occupied >= occupied_threshold`, unknown cells
counted as occupied unless `unknown_is_free`), the resolution, the origin of cell (0, 0)'s corner in
the map frame (taken to be `odom`: the planner plans in the frame its poses come in), and each
free cell's clearance to the nearest occupied one (Euclidean distance transform).

`GridNavigator.plan(pose, target)`:
* within `far_margin_m` of the standoff (or with no map yet): the map-free `final` navigator's
  straight approach (`StraightLineNavigator`, the same last metres as every other path);
* otherwise a shortest path (8-connected Dijkstra over cells with clearance > `robot_radius_m`,
  cells closer than `robot_radius_m + margin_m` to an obstacle costing up to 4x more) from the
  goal region (free cells within the standoff + `far_margin_m` of the target's focus point, widened
  when none is free) to the robot's cell, then one leg: turn towards the farthest point of the
  path within `lookahead_m` that the base can drive to in a straight line (every cell on the
  segment free), and drive there (at most `max_forward_cm`). The skill adapter re-plans after each
  leg from the new odometry, so the legs follow the path.
A robot standing in an inflated cell (brushing a table) plans from the nearest free cell. No path:
the straight approach, and the safety supervisor stops it where it is blocked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlm_agent.actions import NavPrimitive
from vlm_agent.skills.approach import NavTarget, StraightLineNavigator, turn

SQRT2 = math.sqrt(2.0)


@dataclass
class OccupancyMap:
    """occupied (ny, nx) bool, row i = y, column j = x; resolution m per cell; origin (x, y) m of cell
    (0, 0)'s outer corner in the map frame."""

    occupied: np.ndarray
    resolution: float
    origin: tuple[float, float]

    def __post_init__(self):
        from scipy.ndimage import distance_transform_edt

        self.occupied = np.asarray(self.occupied, dtype=bool)
        if self.occupied.ndim != 2 or self.occupied.size == 0:
            raise ValueError(f"an occupancy grid must be a non-empty (ny, nx) array, got shape {self.occupied.shape}")
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ValueError(f"resolution must be a positive number of metres, got {self.resolution!r}")
        if not all(math.isfinite(v) for v in self.origin):
            raise ValueError(f"the origin must be finite, got {self.origin!r}")
        # metres from each cell centre to the nearest occupied cell centre (inf-like when none)
        self.clearance = distance_transform_edt(~self.occupied) * self.resolution if self.occupied.any() else \
            np.full(self.occupied.shape, 1e9)

    @classmethod
    def from_message_fields(cls, data, width: int, height: int, resolution: float, origin_x: float, origin_y: float,
                            occupied_threshold: int = 50, unknown_is_free: bool = False) -> "OccupancyMap":
        """From `nav_msgs/OccupancyGrid` fields: `data` row-major from (0, 0), -1 unknown, 0..100."""
        grid = np.asarray(data, dtype=np.int16)
        if grid.size != int(width) * int(height):
            raise ValueError(f"an occupancy grid of {width}x{height} needs {int(width) * int(height)} cells, got {grid.size}")
        grid = grid.reshape(int(height), int(width))
        occupied = (grid >= occupied_threshold) | ((grid < 0) & (not unknown_is_free))
        return cls(occupied, float(resolution), (float(origin_x), float(origin_y)))

    @property
    def shape(self) -> tuple[int, int]:
        return self.occupied.shape

    def cell(self, x: float, y: float) -> tuple[int, int] | None:
        """(i, j) of the cell holding (x, y), None outside the grid."""
        j = int(math.floor((x - self.origin[0]) / self.resolution))
        i = int(math.floor((y - self.origin[1]) / self.resolution))
        ny, nx = self.shape
        return (i, j) if 0 <= i < ny and 0 <= j < nx else None

    def centre(self, i: int, j: int) -> tuple[float, float]:
        return (self.origin[0] + (j + 0.5) * self.resolution, self.origin[1] + (i + 0.5) * self.resolution)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        ny, nx = self.shape
        xs = self.origin[0] + (np.arange(nx) + 0.5) * self.resolution
        ys = self.origin[1] + (np.arange(ny) + 0.5) * self.resolution
        return np.meshgrid(xs, ys)


class GridNavigator:
    """See the module docstring. `occupancy()` returns the current `OccupancyMap` or None (called at
    every plan: a map topic may update it)."""

    def __init__(self, occupancy, final: StraightLineNavigator | None = None, robot_radius_m: float = 0.22, margin_m: float = 0.15,
                 far_margin_m: float = 0.35, lookahead_m: float = 1.5, max_forward_cm: float = 100.0):
        self.occupancy = occupancy
        self.final = final or StraightLineNavigator(max_forward_cm=max_forward_cm)
        self.robot_radius_m = robot_radius_m
        self.margin_m = margin_m
        self.far_margin_m = far_margin_m
        self.lookahead_m = lookahead_m
        self.max_forward_cm = max_forward_cm
        self._graph_key = None
        self._graph = None
        self.last_path: list[tuple[float, float]] = []  # the path of the last far plan, robot first (for logs, tests)

    def plan(self, pose, target: NavTarget) -> list[NavPrimitive]:
        grid = self.occupancy()
        if grid is None or target.gap(pose) <= self.far_margin_m:
            return self.final.plan(pose, target)
        path = self.path(grid, pose, target)
        if not path:
            return self.final.plan(pose, target)
        x, y, yaw = (float(v) for v in pose)
        wx, wy = self._waypoint(grid, (x, y), path)
        d = math.hypot(wx - x, wy - y)
        if d < 0.5 * grid.resolution:
            return self.final.plan(pose, target)
        prims = []
        err = math.remainder(math.atan2(wy - y, wx - x) - yaw, 2 * math.pi)
        if abs(err) > math.radians(3):
            prims.append(turn(err))
        prims.append(NavPrimitive.forward(min(100.0 * d, self.max_forward_cm)))
        return prims

    # -- planning ---------------------------------------------------------------------------------
    def path(self, grid: OccupancyMap, pose, target: NavTarget) -> list[tuple[float, float]]:
        """Cell centres from the robot's cell to the goal region (robot first), [] when none."""
        from scipy.sparse.csgraph import dijkstra

        graph, free = self._graph_for(grid)
        start = self._start_cell(grid, free, pose)
        if start is None:
            self.last_path = []
            return []
        goal = self._goal_cells(grid, free, target)
        if not goal.size:
            self.last_path = []
            return []
        ny, nx = grid.shape
        dist, pred, _ = dijkstra(graph, directed=True, indices=goal, return_predecessors=True, min_only=True)
        k = start[0] * nx + start[1]
        if not math.isfinite(dist[k]):
            self.last_path = []
            return []
        cells = [k]
        while pred[cells[-1]] >= 0:
            cells.append(int(pred[cells[-1]]))
        self.last_path = [grid.centre(c // nx, c % nx) for c in cells]
        return self.last_path

    def _graph_for(self, grid: OccupancyMap):
        from scipy.sparse import coo_matrix

        key = (self.robot_radius_m, self.margin_m)
        if self._graph_key is not None and self._graph_key[0] is grid and self._graph_key[1] == key:
            return self._graph  # the same map object (kept referenced here, so its id cannot be reused)
        ny, nx = grid.shape
        clear = grid.clearance
        free = clear > self.robot_radius_m
        # entering a cell near an obstacle costs up to 4x: paths keep off walls and table edges
        cost = 1.0 + 3.0 * np.clip((self.robot_radius_m + self.margin_m - clear) / self.margin_m, 0.0, 1.0)
        idx = np.arange(ny * nx).reshape(ny, nx)
        rows, cols, weights = [], [], []
        r = grid.resolution
        for di, dj, length in ((0, 1, r), (0, -1, r), (1, 0, r), (-1, 0, r), (1, 1, r * SQRT2), (1, -1, r * SQRT2), (-1, 1, r * SQRT2),
                               (-1, -1, r * SQRT2)):
            src = (slice(max(0, -di), ny - max(0, di)), slice(max(0, -dj), nx - max(0, dj)))
            dst = (slice(max(0, di), ny - max(0, -di)), slice(max(0, dj), nx - max(0, -dj)))
            ok = free[src] & free[dst]
            if di and dj:  # no corner cutting past an obstacle
                ok &= free[(src[0], dst[1])] & free[(dst[0], src[1])]
            # edges run goal -> robot (Dijkstra from the goal region): weight = cost of the cell moved *from* on the robot's way
            rows.append(idx[dst][ok])
            cols.append(idx[src][ok])
            weights.append((length * cost[dst])[ok])
        graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(ny * nx, ny * nx)).tocsr()
        self._graph_key, self._graph = (grid, key), (graph, free)
        return self._graph

    def _start_cell(self, grid: OccupancyMap, free: np.ndarray, pose):
        cell = grid.cell(float(pose[0]), float(pose[1]))
        if cell is not None and free[cell]:
            return cell
        gx, gy = grid.centres()
        d = np.where(free, np.hypot(gx - float(pose[0]), gy - float(pose[1])), np.inf)
        k = int(np.argmin(d))
        if not math.isfinite(d.flat[k]) or d.flat[k] > 3 * self.robot_radius_m:
            return None
        return divmod(k, grid.shape[1])

    def _goal_cells(self, grid: OccupancyMap, free: np.ndarray, target: NavTarget) -> np.ndarray:
        gx, gy = grid.centres()
        if target.box is not None:
            (x0, y0), (x1, y1) = target.box
            d = np.hypot(np.maximum(np.maximum(x0 - gx, gx - x1), 0.0), np.maximum(np.maximum(y0 - gy, gy - y1), 0.0))
        else:
            d = np.hypot(gx - target.position[0], gy - target.position[1])
        for extra in (self.far_margin_m, self.far_margin_m + 0.25, self.far_margin_m + 0.5, 2.0):
            mask = free & (d <= target.standoff_m + extra)
            if mask.any():
                return np.flatnonzero(mask)
        return np.zeros(0, dtype=np.int64)

    def _waypoint(self, grid: OccupancyMap, xy, path) -> tuple[float, float]:
        """The farthest path point within `lookahead_m` reachable in a straight line from `xy`."""
        best = path[min(1, len(path) - 1)]
        for p in path[1:]:
            if math.hypot(p[0] - xy[0], p[1] - xy[1]) > self.lookahead_m:
                break
            if self._line_free(grid, xy, p):
                best = p
        return best

    def _line_free(self, grid: OccupancyMap, a, b) -> bool:
        n = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1]) / (0.5 * grid.resolution)) + 1)
        for t in np.linspace(0.0, 1.0, n)[1:]:  # not the robot's own cell: it may stand in an inflated one
            cell = grid.cell(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            if cell is None or grid.clearance[cell] <= self.robot_radius_m:
                return False
        return True


__all__ = ["GridNavigator", "OccupancyMap"]
