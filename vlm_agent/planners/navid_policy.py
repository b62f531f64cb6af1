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

    def reset(self, episode) -> None:
        self.planner.reset(episode.instruction)
        self.queue.clear()
        self.last_result = None

    def act(self, obs) -> NavPrimitive:
        # depth and pose feed a model's map memory (NavObservation has both; models without one ignore them).
        depth, pose = getattr(obs, "depth", None), getattr(obs, "pose", None)
        if not self.queue:
            self.last_result = self.planner.plan(obs.rgb, depth, pose)
            self.calls += 1
            self.parse_errors += self.last_result.error is not None
            self.queue.extend(self.last_result.primitives)
        self.planner.observe(obs.rgb, depth, pose)
        return self.queue.popleft()

    select_action = act  # LeRobot's name


def make_navid_policy(model_dir: str | None = None, **kwargs) -> NavidPolicy:
    """A NaVid eval policy; `kwargs` are `NavidPlannerConfig` fields (unknown keys raise)."""
    values = dict(kwargs)
    if model_dir:
        values["model_dir"] = str(model_dir)
    return NavidPolicy(NavidPlanner(NavidPlannerConfig.from_dict(values)))
