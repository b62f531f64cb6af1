"""Closed-loop evaluation policy around `NavidPlanner` (LeRobot-style action queue).

`vlm-agent eval --suite nav --policy navid --model DIR` builds it via `make_navid_policy`.
Each env step: if the queue is empty, plan from the current frame (up to 3 primitives are queued);
then the frame is added to the history (the builtin backend reuses the encoding it just made), and
one primitive is returned.
"""
from __future__ import annotations

import collections

from vlm_agent.actions import NavPrimitive

from .navid import NavidPlanner, NavidPlannerConfig


class NavidPolicy:
    def __init__(self, planner: NavidPlanner):
        self.planner = planner
        self.queue: collections.deque[NavPrimitive] = collections.deque()
        self.last_result = None
        self.parse_errors = 0
        self.calls = 0
        self.sources: collections.Counter[str] = collections.Counter()  # plans of this episode by who made them

    def reset(self, episode) -> None:
        self.planner.reset(episode.instruction)
        self.queue.clear()
        self.last_result = None
        self.sources.clear()

    def act(self, obs) -> NavPrimitive:
        # depth and pose feed a model's map memory (NavObservation has both; models without one ignore them).
        depth, pose = getattr(obs, "depth", None), getattr(obs, "pose", None)
        if not self.queue:
            self.last_result = self.planner.plan(obs.rgb, depth, pose)
            self.calls += 1
            self.parse_errors += self.last_result.error is not None
            self.sources[getattr(self.last_result, "source", "model")] += 1
            self.queue.extend(self.last_result.primitives)
        self.planner.observe(obs.rgb, depth, pose)
        return self.queue.popleft()

    select_action = act  # LeRobot's name

    def episode_stats(self) -> dict:
        """Plans of the episode so far by who made them: the model, the goal approach, exploration."""
        return {f"plans_{k}": int(self.sources[k]) for k in ("model", "goal_approach", "explore")}


def make_navid_policy(model_dir: str | None = None, **kwargs) -> NavidPolicy:
    """A NaVid eval policy; `kwargs` are `NavidPlannerConfig` fields (unknown keys raise)."""
    values = dict(kwargs)
    if model_dir:
        values["model_dir"] = str(model_dir)
    return NavidPolicy(NavidPlanner(NavidPlannerConfig.from_dict(values)))
