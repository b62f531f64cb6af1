"""Privileged experts: navigation primitives, manipulation skill programs, ground-truth masks.

`NavOracle` is stateless: every call looks at the env's true state (pose, current subgoal) and picks
the primitive that starts the best "turn k times, then two forward steps" sequence on a soft,
everywhere-finite cost-to-go field (geodesic over the occupancy grid, higher near obstacles), with a
small cost per turn. Being stateless it can label any state a learner wanders into (DAgger), and the
turn cost makes it monotone: it never oscillates between left and right (a waypoint-chasing expert
did, see docs/simulator.md).
"""
from __future__ import annotations

import math

import numpy as np

from vlm_agent.actions import FORWARD_STEP_CM, TURN_STEP_DEG, NavPrimitive
from vlm_agent.sim.world import ROBOT_RADIUS


class NavOracle:
    """Shortest-path expert over NaVid primitives for a `NavEnv` (or anything with its ground-truth API).

    stop_radius_m: stop when the final goal is this close (below the 1.0 m success radius).
    turn_cost_m: cost of one 30 degree turn, in metres of path (tie-breaks toward going straight).
    """

    def __init__(self, env, stop_radius_m: float = 0.8, turn_cost_m: float = 0.12, lookahead_steps: int = 2,
                 forward_cm: float = FORWARD_STEP_CM, turn_deg: float = TURN_STEP_DEG):
        self.env = env
        self.stop_radius_m = stop_radius_m
        self.turn_cost_m = turn_cost_m
        self.lookahead_steps = lookahead_steps
        self.forward_cm = forward_cm
        self.turn_deg = turn_deg

    def reset(self, episode=None) -> None:
        """Stateless: nothing to reset (kept for the policy interface)."""

    def act(self, obs=None) -> NavPrimitive:
        """The expert primitive for the env's current state (`obs` is ignored; the oracle is privileged)."""
        env = self.env
        goal = env.current_goal
        if goal is None:
            raise ValueError("NavOracle: the current episode has no navigation goal")
        goals = env.nav_goals
        if env.subgoal_index == len(goals) - 1 and env.distance_to(goal) <= self.stop_radius_m:
            return NavPrimitive.stop()
        return self._best_move(goal)

    def move_towards(self, goal: str, radius: float = 0.75) -> NavPrimitive:
        """The best forward/turn primitive towards any object or furniture piece (never stop)."""
        return self._best_move(goal, radius)

    def action_scores(self, goal: str | None = None, radius: float = 0.75) -> dict[int, float]:
        """Score of each candidate turn count k (positive = left), lower is better (for inspection/tests)."""
        env = self.env
        return self.field_scores(env.cost_field(goal or env.current_goal, radius=radius))

    def field_scores(self, field: np.ndarray) -> dict[int, float]:
        """Score of each candidate turn count k on any (ny, nx) cost-to-go `field` over `env.grid`
        (the explorer reuses this with a field towards unseen floor)."""
        env = self.env
        grid = env.grid
        x, y, yaw = env.pose
        step_m = self.forward_cm / 100.0
        turn = math.radians(self.turn_deg)
        n_turns = int(round(360.0 / self.turn_deg))
        ks = np.arange(-(n_turns // 2) + 1, n_turns // 2 + 1)
        # All candidate rays at once: k turns, then `lookahead_steps` forward steps along the new heading,
        # sampled every 5 cm; a ray stops at its last free sample (what env.step's sweep does).
        n = int(math.ceil(self.lookahead_steps * step_m / 0.05))
        t = self.lookahead_steps * step_m * np.arange(1, n + 1) / n
        headings = yaw + ks * turn
        px = x + np.cos(headings)[:, None] * t[None, :]
        py = y + np.sin(headings)[:, None] * t[None, :]
        free = env.collision.clearances(np.stack([px.ravel(), py.ravel()], 1)).reshape(px.shape) > ROBOT_RADIUS
        n_free = np.where(free.all(axis=1), n, np.argmin(free, axis=1))  # samples before the first blocked one
        scores = {}
        for row, k in enumerate(ks):
            m = int(n_free[row])
            ex, ey, moved = (x, y, 0.0) if m == 0 else (px[row, m - 1], py[row, m - 1], t[m - 1])
            score = grid.sample(field, ex, ey) + self.turn_cost_m * abs(int(k))
            if moved < 0.5 * step_m:
                score += 1.0  # going nowhere is worse than any real move
            scores[int(k)] = score
        return scores

    def _best_move(self, goal: str, radius: float = 0.75) -> NavPrimitive:
        return self.best_move_on_field(self.env.cost_field(goal, radius=radius))

    def best_move_on_field(self, field: np.ndarray) -> NavPrimitive:
        """The forward/turn primitive that starts the best lookahead sequence on `field` (never stop)."""
        scores = self.field_scores(field)
        k = min(scores, key=lambda kk: (scores[kk], abs(kk), -kk))
        if k == 0:
            return NavPrimitive.forward(self.forward_cm)
        return NavPrimitive.turn_left(self.turn_deg) if k > 0 else NavPrimitive.turn_right(self.turn_deg)


def nav_oracle_rollout(env, episode, render: bool = True):
    """Run the oracle through one episode; yields (observation, primitive) pairs, the labelled data a
    learner trains on (the observation is the one the primitive was chosen for). `render=False`
    skips images (pose-only rollouts, e.g. to pre-check episodes)."""
    oracle = NavOracle(env)
    env.reset(episode)
    obs = env.observation(render=render)
    while not env.done:
        action = oracle.act(obs)
        yield obs, action
        obs = env.step(action, render=render)
