"""Where an object is: the `Perception` interface the skills ask, and its ground-truth provider.

Skills never read object poses themselves; they ask a `Perception` provider. Two are planned for
the simulator, and the second is the path a robot uses:

* `GroundTruthPerception` (here): the simulator's own object poses. Perfect by construction, so
  every result computed with it is labelled `"ground_truth (upper bound)"`: it bounds what a real
  perception stack can reach, it does not measure one.
* `SegmenterPerception` (`skills/segmenter_perception.py`): the mask of the phrase from a referring
  segmenter on the robot's camera, back-projected with depth through the camera intrinsics into
  the world frame; furniture from the map. `upper_bound = False`. The simulator's skills move by
  scene id, so it associates the centroid with the nearest scene object (the mask decides which)
  and sets `Detection.name`; the ROS adapter's `SegmentationPerception` (nodes/ros_skills.py) gives
  positions only (`Detection.name` None), which is why `Detection.name` is optional.

Positions are object centres (x, y, z) in metres in the world frame (`odom` in the simulator,
REP-105).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vlm_agent.skills.resolver import SceneEntity, resolve

GROUND_TRUTH_LABEL = "ground_truth (upper bound)"
VIEW_RANGE_M = 6.0  # objects farther than this are not reported as seen by look_around


@dataclass(frozen=True)
class Detection:
    """One located entity. `position` (x, y, z) m in `frame`; `name` the scene id when the provider
    knows it (ground truth), None otherwise; `label` how a planner names it ("red cube")."""

    label: str
    position: tuple[float, float, float]
    frame: str = "odom"
    name: str | None = None


@runtime_checkable
class Perception(Protocol):
    """Answers "where is <phrase>?" and "what is in view?".

    label: names the provider in every skill result ("ground_truth (upper bound)", "segmenter").
    upper_bound: True for privileged providers whose scores are upper bounds.
    """

    label: str
    upper_bound: bool

    def locate(self, phrase: str) -> Detection:
        """The entity `phrase` names; raises SkillError (planner-readable) if absent or ambiguous."""
        ...

    def visible(self) -> list[Detection]:
        """The objects in the camera's view now."""
        ...


class GroundTruthPerception:
    """Object and furniture poses straight from a `NavEnv` (an upper bound; see module docstring).

    `visible()` returns the objects whose centres lie inside the camera's horizontal field of view
    and within VIEW_RANGE_M of the base; occlusion is ignored (another reason this is an upper bound).
    """

    label = GROUND_TRUTH_LABEL
    upper_bound = True

    def __init__(self, env):
        self.env = env

    def entities(self) -> list[SceneEntity]:
        world = self.env.world
        return [SceneEntity(o.name, "object", o.colour, o.shape) for o in world.objects] + [
            SceneEntity(b.name, b.kind) for b in world.furniture
        ]

    def locate(self, phrase: str) -> Detection:
        entity = resolve(phrase, self.entities())
        return self._detection(entity)

    def _detection(self, entity: SceneEntity) -> Detection:
        world = self.env.world
        if entity.kind == "object":
            pos = world.object(entity.name).pos
        else:
            box = world.furniture_piece(entity.name)
            pos = (box.centre[0], box.centre[1], box.top_z)
        return Detection(entity.label, tuple(float(v) for v in pos), "odom", entity.name)

    def visible(self) -> list[Detection]:
        env = self.env
        x, y, yaw = env.pose
        cfg = env.config
        half_v = math.radians(cfg.vertical_fov_deg) / 2
        half_h = math.atan(math.tan(half_v) * cfg.width / cfg.height)
        out = []
        for entity in self.entities():
            if entity.kind != "object" or env.held == entity.name:
                continue
            det = self._detection(entity)
            dx, dy = det.position[0] - x, det.position[1] - y
            bearing = math.remainder(math.atan2(dy, dx) - yaw, 2 * math.pi)
            if math.hypot(dx, dy) <= VIEW_RANGE_M and abs(bearing) <= half_h:
                out.append(det)
        return out
