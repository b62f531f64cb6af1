"""Manipulation expert and baseline: skill programs for the manipulation suite.

The oracle reads the episode's ground truth (object to move, destination) and emits the program a
planner should produce, with objects named the way the instruction names them:
    navigate_to('red cube'); pick('red cube'); navigate_to('blue plate'); place_on('blue plate')
"""
from __future__ import annotations

import zlib

import numpy as np

from vlm_agent.skills.api import SkillCall


def _reference(world, name: str) -> str:
    try:
        return world.object(name).label
    except KeyError:
        return "table"


class ManipOracle:
    def __init__(self, env):
        self.env = env

    def reset(self, episode=None) -> None:
        pass

    def act(self, obs=None) -> list[SkillCall]:
        env = self.env
        target, dest = env.episode.goal_objects[:2]
        t, d = _reference(env.world, target), _reference(env.world, dest)
        return [SkillCall("navigate_to", (t,)), SkillCall("pick", (t,)), SkillCall("navigate_to", (d,)), SkillCall("place_on", (d,))]


class RandomManipPolicy:
    """Picks a random graspable object and places it on a random other object or the table."""

    def __init__(self, env, seed: int = 0):
        self.env = env
        self.rng = np.random.default_rng(seed)

    def reset(self, episode=None) -> None:
        if episode is not None:
            self.rng = np.random.default_rng(zlib.crc32(episode.episode_id.encode()))

    def act(self, obs=None) -> list[SkillCall]:
        world = self.env.world
        movable = [o for o in world.objects if o.shape != "plate" and o.support == "floor"]
        if not movable:
            return []
        obj = movable[int(self.rng.integers(len(movable)))]
        dests = [o.name for o in world.objects if o.name != obj.name] + [b.name for b in world.furniture if b.kind == "table"]
        dest = dests[int(self.rng.integers(len(dests)))]
        return [SkillCall("pick", (obj.name,)), SkillCall("place_on", (dest,))]
