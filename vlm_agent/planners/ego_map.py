"""The navigator's map-like memory: a top-down grid of what the robot's depth camera has seen, as an
egocentric image the NaVid model reads as extra tokens (issue 16).

Why: the learner imitates an explorer (`vlm_agent.sim.explorer.ExplorerExpert`) that decides from
"which floor have I seen": it turns to look at unseen floor, then heads for the nearest unseen floor,
room and doorway. Eight pooled history frames cannot say where the robot has already looked, so
DAgger labels that turn towards unseen floor only taught the learner to turn more. This map gives the
learner the same kind of memory from its own sensors (depth + odometry), so those labels become
predictable from what the model sees.

    m = EgoMap(EgoMapConfig(), intrinsics)          # per episode: m.reset()
    m.update(depth, pose)                           # depth (H, W) float32 m along the optical axis
    ego = m.egocentric(pose)                        # (3, N, N) uint8 in {0, 1}

World frame: `odom` (x, y metres, yaw radians CCW, REP-105); the grid is anchored where the first
update happened. Channels of the egocentric image (row 0 = ahead of the robot, column 0 = its left,
the robot at the centre, `resolution_m` per cell):
    0 free: floor seen within `max_range_m` (the horizontal segment from the camera to every floor
      or obstacle point is free, like a laser scan made from depth, as depthimage_to_laserscan does);
    1 obstacle: points between `obstacle_min_height_m` and `obstacle_max_height_m` above the floor;
    2 visited: cells the robot's base has been on.
Unknown space is 0 in both free and obstacle: frontiers are free cells next to unknown ones.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from vlm_agent.config import ConfigBase, param

CHANNELS = ("free", "obstacle", "visited")


@dataclasses.dataclass
class EgoMapConfig(ConfigBase):
    """Grid sizes and the camera's mounting (base_link -> optical frame, no roll)."""

    cells: int = param(32, "side of the egocentric map in cells (the robot at its centre)", min=4, max=256)
    resolution_m: float = param(0.25, "egocentric cell size, m", min=0.02, max=2.0)
    world_resolution_m: float = param(0.125, "resolution of the accumulated world grid, m", min=0.01, max=1.0)
    world_cells: int = param(256, "side of the accumulated world grid in cells, centred where the episode started", min=16, max=4096)
    max_range_m: float = param(3.0, "depth points farther than this (horizontally) are ignored; rays are marked free up to it", min=0.2, max=20.0)
    obstacle_min_height_m: float = param(0.08, "points higher than this above the floor are obstacles", min=0.0, max=2.0)
    obstacle_max_height_m: float = param(1.6, "points higher than this (ceiling, lamps) are ignored", min=0.1, max=10.0)
    pixel_stride: int = param(2, "use every n-th depth row and column", min=1, max=32)
    camera_x_m: float = param(-0.07, "camera position ahead of base_link, m (the simulator's: 0.07 m behind)", min=-5.0, max=5.0)
    camera_height_m: float = param(0.95, "camera height above the floor, m", min=0.0, max=5.0)
    camera_pitch_rad: float = param(0.349066, "camera pitch below horizontal, rad (the simulator's: 20 degrees)", min=-1.6, max=1.6)
    robot_radius_m: float = param(0.2, "radius of the base marked as visited, m", min=0.0, max=2.0)


def pack_maps(maps: np.ndarray) -> np.ndarray:
    """(..., C, N, N) {0, 1} -> (..., C, N, ceil(N / 8)) uint8 bits (what shards store)."""
    return np.packbits(np.asarray(maps, dtype=bool), axis=-1)


def unpack_maps(packed: np.ndarray, cells: int) -> np.ndarray:
    """Inverse of `pack_maps`: (..., C, N, ceil(N / 8)) uint8 -> (..., C, N, N) uint8 in {0, 1}."""
    return np.unpackbits(packed, axis=-1, count=cells)


class EgoMap:
    """Accumulates depth frames into a world grid and renders it egocentrically (see module doc).

    intrinsics: a `vlm_agent.sensors.camera_model.CameraIntrinsics` of the depth image (fx, fy, cx,
    cy in pixels); frames of another size are scaled to it.
    """

    def __init__(self, config: EgoMapConfig | None = None, intrinsics=None):
        self.config = config or EgoMapConfig()
        self.intrinsics = intrinsics
        c = self.config
        n = c.cells
        # Egocentric sample points: 2x2 per cell, max-pooled (the world grid is finer than the ego one).
        sub = (np.arange(2) + 0.5) / 2 - 0.5
        centre = (np.arange(n) - (n - 1) / 2.0)
        fwd = -(centre[:, None, None, None] + sub[None, None, :, None]) * c.resolution_m  # rows: ahead is up
        left = -(centre[None, :, None, None] + sub[None, None, None, :]) * c.resolution_m  # columns: left is left
        self._ego_fwd = np.broadcast_to(fwd, (n, n, 2, 2)).reshape(-1)
        self._ego_left = np.broadcast_to(left, (n, n, 2, 2)).reshape(-1)
        self._ray_t = np.linspace(0.0, 1.0, max(2, int(math.ceil(c.max_range_m / c.world_resolution_m)) + 1))
        # Cell offsets of the base's disc (marked visited at every update).
        rad = max(1, int(round(c.robot_radius_m / c.world_resolution_m)))
        oy, ox = np.meshgrid(np.arange(-rad, rad + 1), np.arange(-rad, rad + 1), indexing="ij")
        disc = (ox ** 2 + oy ** 2) <= rad ** 2
        self._disc_rows, self._disc_cols = oy[disc], ox[disc]
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new episode)."""
        w = self.config.world_cells
        self.grid = np.zeros((len(CHANNELS), w, w), dtype=bool)
        # The highest obstacle point seen in each cell, m above the floor (-inf: none). Not part of the
        # model's view: the goal approach reads it to tell walls (tall) from tables (low) apart.
        self.top = np.full((w, w), -np.inf, dtype=np.float32)
        self.origin: tuple[float, float] | None = None
        self.updates = 0

    # -- geometry ------------------------------------------------------------------------------
    def _cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points -> (row, col, inside) of the world grid (row = y, col = x)."""
        c = self.config
        half = c.world_cells / 2.0
        col = np.floor((x - self.origin[0]) / c.world_resolution_m + half).astype(np.int64)
        row = np.floor((y - self.origin[1]) / c.world_resolution_m + half).astype(np.int64)
        inside = (col >= 0) & (col < c.world_cells) & (row >= 0) & (row < c.world_cells)
        return row, col, inside

    def world_to_cell(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (m, `odom`) -> (row, col, inside) of the accumulated grid `self.grid` (row = y)."""
        if self.origin is None:
            raise ValueError("EgoMap: no update yet, the grid has no origin")
        return self._cells(np.asarray(x, float), np.asarray(y, float))

    def cell_to_world(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centres (x, y) m in `odom` of grid cells (inverse of `world_to_cell`)."""
        c = self.config
        half = c.world_cells / 2.0
        x = self.origin[0] + (np.asarray(col, float) + 0.5 - half) * c.world_resolution_m
        y = self.origin[1] + (np.asarray(row, float) + 0.5 - half) * c.world_resolution_m
        return x, y

    def depth_points(self, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """depth (H, W) m along the optical axis -> base_link points (X ahead, Y left, Z up), each (P,),
        of the finite, positive pixels on the `pixel_stride` lattice."""
        c, k = self.config, self.intrinsics
        if k is None:
            raise ValueError("EgoMap needs camera intrinsics")
        depth = np.asarray(depth, dtype=np.float32)
        if depth.ndim != 2:
            raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
        h, w = depth.shape
        vs, us = np.mgrid[0:h:c.pixel_stride, 0:w:c.pixel_stride]
        return self._project(depth, vs.ravel(), us.ravel())

    def _project(self, depth: np.ndarray, vs: np.ndarray, us: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels (row `vs`, column `us`) of `depth` -> base_link (X, Y, Z) of the finite, positive ones."""
        c, k = self.config, self.intrinsics
        h, w = depth.shape
        sx, sy = w / float(k.width), h / float(k.height)
        d = depth[vs, us]
        ok = np.isfinite(d) & (d > 0.05)
        d, us, vs = d[ok], us[ok] + 0.5, vs[ok] + 0.5
        xo = (us - k.cx * sx) / (k.fx * sx) * d
        yo = (vs - k.cy * sy) / (k.fy * sy) * d
        cp, sp = math.cos(c.camera_pitch_rad), math.sin(c.camera_pitch_rad)
        X = c.camera_x_m + d * cp - yo * sp
        Y = -xo
        Z = c.camera_height_m - d * sp - yo * cp
        return X, Y, Z

    def mask_points(self, depth: np.ndarray, mask: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
        """(P, 2) world (x, y) m in `odom` of the pixels of `mask` (any size: sampled at the depth
        image's resolution) with a valid depth, seen from base pose (x, y, yaw)."""
        if self.intrinsics is None:
            raise ValueError("EgoMap needs camera intrinsics")
        depth = np.asarray(depth, dtype=np.float32)
        mask = np.asarray(mask, bool)
        if depth.ndim != 2 or mask.ndim != 2:
            raise ValueError(f"depth and mask must be 2-D, got {depth.shape} and {mask.shape}")
        from vlm_agent.sensors.backprojection import resize_mask_nearest

        # The mask pixel under each depth pixel (an RGB and a depth image may differ in size).
        vs, us = np.nonzero(resize_mask_nearest(mask, depth.shape))
        X, Y, _ = self._project(depth, vs, us)
        x, y, yaw = (float(v) for v in pose)
        cy, sy = math.cos(yaw), math.sin(yaw)
        return np.stack([x + X * cy - Y * sy, y + X * sy + Y * cy], axis=1)

    # -- memory --------------------------------------------------------------------------------
    def update(self, depth: np.ndarray | None, pose: tuple[float, float, float]) -> None:
        """Add one depth frame taken at base pose (x, y, yaw) and mark the base as visited. `depth`
        None marks only the visit (a frame without depth). Raises ValueError for a non-finite pose."""
        x, y, yaw = (float(v) for v in pose)
        if not all(math.isfinite(v) for v in (x, y, yaw)):
            raise ValueError(f"EgoMap.update: pose must be finite, got {pose}")
        c = self.config
        if self.origin is None:
            self.origin = (x, y)
        cy, sy = math.cos(yaw), math.sin(yaw)
        if depth is not None:
            X, Y, Z = self.depth_points(depth)
            obstacle = (Z > c.obstacle_min_height_m) & (Z < c.obstacle_max_height_m)
            usable = (Z <= c.obstacle_min_height_m) | obstacle
            cam_x = x + c.camera_x_m * cy
            cam_y = y + c.camera_x_m * sy
            px, py = x + X * cy - Y * sy, y + X * sy + Y * cy
            dx, dy = px - cam_x, py - cam_y
            dist = np.hypot(dx, dy)
            scale = np.minimum(1.0, c.max_range_m / np.maximum(dist, 1e-6))
            # Free along every usable ray, clipped to the range (the floor up to a wall is free).
            sel = usable
            t = self._ray_t[None, :] * scale[sel, None]
            rx = cam_x + dx[sel, None] * t
            ry = cam_y + dy[sel, None] * t
            end_obstacle = obstacle[sel] & (dist[sel] <= c.max_range_m)
            # The last sample of an obstacle ray is the obstacle itself, not free floor.
            keep = np.ones(t.shape, bool)
            keep[end_obstacle, -1] = False
            r, col, inside = self._cells(rx[keep], ry[keep])
            self.grid[0, r[inside], col[inside]] = True
            near_obs = obstacle & (dist <= c.max_range_m)
            r, col, inside = self._cells(px[near_obs], py[near_obs])
            self.grid[1, r[inside], col[inside]] = True
            np.maximum.at(self.top, (r[inside], col[inside]), Z[near_obs][inside].astype(np.float32))
        # Visited: a disc of the robot's radius.
        r0, c0, _ = self._cells(np.array([x]), np.array([y]))
        rr, cc = r0[0] + self._disc_rows, c0[0] + self._disc_cols
        ok = (rr >= 0) & (rr < c.world_cells) & (cc >= 0) & (cc < c.world_cells)
        self.grid[2, rr[ok], cc[ok]] = True
        self.updates += 1

    def mark_obstacle(self, x: np.ndarray, y: np.ndarray) -> None:
        """Mark world points (m, `odom`) as obstacles: what a bumper or a blocked move found where the
        camera saw nothing (an obstacle under the camera's view or too thin for its depth image)."""
        if self.origin is None:
            return
        r, col, inside = self._cells(np.asarray(x, float), np.asarray(y, float))
        self.grid[1, r[inside], col[inside]] = True

    def egocentric(self, pose: tuple[float, float, float]) -> np.ndarray:
        """(3, N, N) uint8 {0, 1}: the memory around base pose (x, y, yaw), ahead up (see module doc).
        All zeros before the first update."""
        c = self.config
        n = c.cells
        if self.origin is None:
            return np.zeros((len(CHANNELS), n, n), np.uint8)
        x, y, yaw = (float(v) for v in pose)
        cy, sy = math.cos(yaw), math.sin(yaw)
        wx = x + self._ego_fwd * cy - self._ego_left * sy
        wy = y + self._ego_fwd * sy + self._ego_left * cy
        r, col, inside = self._cells(wx, wy)
        out = np.zeros((len(CHANNELS), r.size), bool)
        out[:, inside] = self.grid[:, r[inside], col[inside]]
        return out.reshape(len(CHANNELS), n, n, 4).any(axis=-1).astype(np.uint8)
