"""An observation-explainable navigation expert: it knows where a goal object is only once the camera
has seen it in this episode, and explores until then.

`NavOracle` drives straight to goals the camera cannot see, so its actions cannot be predicted from
the robot's own observations (issue 16; Habitat-Web found the same for ObjectNav demonstrations).
`ExplorerExpert` keeps, per episode, what a person driving the robot would remember:

* `seen_objects`: goal objects whose segmentation (the renderer's ground truth, at the env's camera
  resolution) covered at least `min_pixels` pixels in some frame of this episode;
* `seen_floor`: (ny, nx) bool over `env.grid`: free floor cells that were inside the camera's
  horizontal field of view, within `view_range_m` and in line of sight (walls and furniture occlude).

Both are functions of the poses visited so far, updated from the env's trajectory every time the
expert is asked, so the expert can label any state a learner drives into (DAgger): the memory of a
learner-driven episode is the memory of the views the learner had.

Decision per step (first that applies):
1. the current goal (the env's subgoal, so sequences are done leg by leg) has been seen: the
   shortest-path move of `NavOracle`, `stop` within `stop_radius_m` of the final goal;
2. turning in place would bring at least `min_gain_cells` unseen floor cells into view: turn towards
   the heading with the most of them ("look around"; turning costs no path length);
3. head for the nearest unseen floor (geodesic field over the grid towards unseen free cells): that
   is first the rest of this room, then the doorway and the rooms beyond;
4. nothing is left unseen and the goal is still unseen (a target too small to detect): fall back to
   the privileged move and count it in `fallbacks` (reported, so the approximation is visible).

Frames: world = `odom`, metres, yaw radians CCW (see `vlm_agent.sim.env`).
"""
from __future__ import annotations

import math

import numpy as np

from vlm_agent.actions import NavPrimitive
from vlm_agent.geometry import wrap_angle
from vlm_agent.sim.oracle import NavOracle
from vlm_agent.sim.world import ROBOT_RADIUS


class ExplorerExpert:
    """Explore-then-go expert over NaVid primitives for a `NavEnv` (see module doc).

    view_range_m: floor farther than this does not count as seen (a 16 cm object at 3 m is ~3 px
        wide in a 64 px image with a 60 degree field of view).
    min_pixels: segmentation pixels that make a goal object "seen" in one frame.
    min_gain_cells: unseen floor cells (0.1 m grid: 100 per square metre) that justify turning to look.
    refresh_cells: the field towards unseen floor is recomputed once this many cells were newly seen
        since it was built (or when the robot stands on seen floor at the field's minimum), which keeps
        the cost of a step low without changing where the expert heads in any way that matters.
    room_hint: for "room" tasks ("... in the other room") treat the start room as already explored:
        the instruction itself says the target is elsewhere (room-task SPL 0.68 -> 0.88 on 19 val
        episodes).
    """

    def __init__(self, env, view_range_m: float = 3.0, min_pixels: int = 2, min_gain_cells: int = 40,
                 refresh_cells: int = 30, stop_radius_m: float = 0.8, room_hint: bool = True):
        self.env = env
        self.oracle = NavOracle(env, stop_radius_m=stop_radius_m)
        self.view_range_m = view_range_m
        self.min_pixels = min_pixels
        self.min_gain_cells = min_gain_cells
        self.refresh_cells = refresh_cells
        self.stop_radius_m = stop_radius_m
        self.room_hint = room_hint
        self._episode_key = None
        self.fallbacks = 0
        self.last_mode = ""

    # -- per-episode memory --------------------------------------------------------------------
    def reset(self, episode=None) -> None:
        """Forget the memory (it is also rebuilt automatically when the env starts a new episode)."""
        self._episode_key = None

    def _sync(self) -> None:
        """Bring the memory up to the env's current state: views from every pose not processed yet."""
        env = self.env
        key = (id(env.episode), env.episode.episode_id)
        if key != self._episode_key:
            self._episode_key = key
            grid = env.grid
            self.free = grid.clearance > ROBOT_RADIUS + 0.05
            # Only floor the robot can reach counts (cells walled off by furniture are never "unseen").
            reach = grid.distance_field(self._cell_mask(*env.episode.start_pose[:2]), np.where(grid.clearance > ROBOT_RADIUS, 1.0, np.inf))
            self.free &= np.isfinite(reach)
            self.occluder = grid.clearance <= 0.0
            self.seen_floor = np.zeros_like(self.free)
            if self.room_hint and env.episode.task == "room":
                # "... in the other room": the instruction itself rules out the start room.
                room = env.world.rooms[env.world.room_of(*env.episode.start_pose[:2])]
                self.seen_floor |= (grid.gx >= room.x_min) & (grid.gx <= room.x_max) & (grid.gy >= room.y_min) & (grid.gy <= room.y_max)
            self.seen_objects: set[str] = set()
            self._processed = 0
            self._field = None
            self._field_seen = 0
            self._hfov = 2 * math.atan(math.tan(math.radians(env.config.vertical_fov_deg) / 2) * env.config.width / env.config.height)
            self.fallbacks = 0
        trajectory = env.trajectory
        if self._processed < len(trajectory):
            for x, y, yaw in trajectory[self._processed:-1]:
                self.seen_floor |= self._visible_cells(x, y, yaw)
            self._processed = len(trajectory)
            x, y, yaw = trajectory[-1]
            self.seen_floor |= self._visible_cells(x, y, yaw)
            # Objects: the segmentation of the current frame (past frames were checked when they were
            # current; poses the expert was not asked about are covered by the floor geometry only).
            self._see_objects()

    def _see_objects(self) -> None:
        env = self.env
        pending = [g for g in env.nav_goals if g not in self.seen_objects]
        if not pending:
            return
        seg = env.segmentation()
        for name in pending:
            if int(env.object_mask(name, seg).sum()) >= self.min_pixels:
                self.seen_objects.add(name)

    def _cell_mask(self, x: float, y: float) -> np.ndarray:
        grid = self.env.grid
        m = np.zeros((grid.ny, grid.nx), bool)
        m[grid.cell(x, y)] = True
        return m

    def _visible_cells(self, x: float, y: float, yaw: float, half_fov: float | None = None) -> np.ndarray:
        """(ny, nx) bool: free cells in the view cone from (x, y, yaw), within range, in line of sight."""
        grid = self.env.grid
        half = self._hfov / 2 if half_fov is None else half_fov
        dx, dy = grid.gx - x, grid.gy - y
        dist = np.hypot(dx, dy)
        bearing = np.arctan2(dy, dx) - yaw
        bearing = wrap_angle(bearing)
        cand = self.free & (dist <= self.view_range_m) & (np.abs(bearing) <= half)
        return self._line_of_sight(x, y, cand)

    def _line_of_sight(self, x: float, y: float, cand: np.ndarray) -> np.ndarray:
        grid = self.env.grid
        ii, jj = np.nonzero(cand)
        if len(ii) == 0:
            return cand
        tx, ty = grid.gx[ii, jj], grid.gy[ii, jj]
        t = np.linspace(0.0, 1.0, 16)[1:-1]
        px = x + (tx[:, None] - x) * t[None, :]
        py = y + (ty[:, None] - y) * t[None, :]
        pj = np.clip(((px - grid.x0) / grid.res).astype(int), 0, grid.nx - 1)
        pi = np.clip(((py - grid.y0) / grid.res).astype(int), 0, grid.ny - 1)
        blocked = self.occluder[pi, pj].any(axis=1)
        out = np.zeros_like(cand)
        out[ii[~blocked], jj[~blocked]] = True
        return out

    # -- decisions -----------------------------------------------------------------------------
    def act(self, obs=None) -> NavPrimitive:
        """The expert primitive for the env's current state (`obs` is not needed: the memory is rebuilt
        from the env's trajectory and segmentation renders)."""
        env = self.env
        goal = env.current_goal
        if goal is None:
            raise ValueError("ExplorerExpert: the current episode has no navigation goal")
        self._sync()
        if goal in self.seen_objects:
            self.last_mode = "goal"
            return self.oracle.act()
        x, y, yaw = env.pose
        gains = self.turn_gains(x, y, yaw)
        best_k = max(gains, key=lambda k: (gains[k], -abs(k), k))
        if gains[best_k] >= self.min_gain_cells and best_k != 0:
            self.last_mode = "look"
            return NavPrimitive.turn_left(self.oracle.turn_deg) if best_k > 0 else NavPrimitive.turn_right(self.oracle.turn_deg)
        unseen = self.free & ~self.seen_floor
        if not unseen.any():
            self.fallbacks += 1
            self.last_mode = "fallback"
            return self.oracle.act()
        self.last_mode = "explore"
        return self.oracle.best_move_on_field(self._explore_field(unseen))

    def turn_gains(self, x: float, y: float, yaw: float) -> dict[int, int]:
        """Unseen free cells that would be in view after k turns (positive = left), for each k."""
        turn = math.radians(self.oracle.turn_deg)
        n_turns = int(round(2 * math.pi / turn))
        grid = self.env.grid
        dx, dy = grid.gx - x, grid.gy - y
        cand = self.free & ~self.seen_floor & (np.hypot(dx, dy) <= self.view_range_m)
        visible = self._line_of_sight(x, y, cand)
        ii, jj = np.nonzero(visible)
        bearing = np.arctan2(dy[ii, jj], dx[ii, jj])
        gains = {}
        for k in range(-(n_turns // 2) + 1, n_turns // 2 + 1):
            rel = wrap_angle(bearing - (yaw + k * turn))
            gains[k] = int((np.abs(rel) <= self._hfov / 2).sum())
        return gains

    def _explore_field(self, unseen: np.ndarray) -> np.ndarray:
        grid = self.env.grid
        n_seen = int(self.seen_floor.sum())
        stale = self._field is None or n_seen - self._field_seen >= self.refresh_cells
        if not stale:
            x, y, _ = self.env.pose
            i, j = grid.cell(x, y)
            stale = not unseen[max(0, i - 3): i + 4, max(0, j - 3): j + 4].any() and self._field[i, j] < 0.6
        if stale:
            clear = grid.clearance
            cost = np.where(clear <= ROBOT_RADIUS, 60.0, 1.0 + 4.0 * np.clip((ROBOT_RADIUS + 0.15 - clear) / 0.15, 0.0, 1.0))
            self._field = grid.distance_field(unseen, cost)
            self._field_seen = n_seen
        return self._field


def expert_rollout(env, episode, expert: str = "explorer", render: bool = True):
    """Run an expert ("explorer" or "oracle") through one episode; yields (observation, primitive)."""
    policy = ExplorerExpert(env) if expert == "explorer" else NavOracle(env)
    env.reset(episode)
    policy.reset(episode)
    obs = env.observation(render=render)
    while not env.done:
        action = policy.act(obs)
        yield obs, action
        obs = env.step(action, render=render)
