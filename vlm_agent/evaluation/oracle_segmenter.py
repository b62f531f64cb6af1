"""The `oracle` mask source: ground-truth segmentation from a mirror of the simulator (privileged).

For tests and upper bounds of the segmentation node. It implements `Segmenter`
(`vlm_agent.skills.segmentation`) over a local `NavEnv` loaded with the simulator's episode (rebuilt
by the episode generator from its id `suite-split-seed-index`, what `mujoco_sim`'s services report)
and kept at the robot's pose (`set_pose`, from odometry): `step(rgb)` renders the target's mask
from the mirror's camera. The objects are where the episode put them (seg and nav episodes never
move them; a manipulated object would be missed: an oracle for static scenes).

Which object: the episode's goal object when the query is the episode's instruction, otherwise the
one entity the query names (`skills.resolver`: "the red cube", "blue ball"; a leading "segment" is
ignored); an unknown or ambiguous query is a ValueError with the resolver's reason.
"""
from __future__ import annotations

import time

import numpy as np

from vlm_agent.skills.segmentation import SegResult


def episode_from_id(episode_id: str):
    """The episode `suite-split-seed-index` rebuilt by the generator (ValueError for a bad id)."""
    from vlm_agent.sim.episodes import make_episode

    try:
        suite, split, seed, index = str(episode_id).rsplit("-", 3)
        return make_episode(suite, split, int(seed), int(index))
    except (ValueError, KeyError) as exc:
        raise ValueError(f"episode id {episode_id!r} is not suite-split-seed-index ({exc})") from None


class OracleSegmenter:
    """Ground-truth masks at the mirror's pose. width/height/vertical_fov_deg: the robot camera's
    (the simulator node's); frames of another size are refused."""

    label = "oracle"

    def __init__(self, width: int = 320, height: int = 240, vertical_fov_deg: float = 60.0):
        from vlm_agent.sim.env import NavEnv, SimConfig

        self.env = NavEnv(SimConfig(width=width, height=height, vertical_fov_deg=vertical_fov_deg, render_depth=False))
        self.episode = None
        self.query: str | None = None
        self.target: str | None = None
        self.frame_index = 0

    def load_episode(self, episode) -> None:
        """Mirror `episode` (an `Episode` or its id); the pose starts at the episode's start pose."""
        if isinstance(episode, str):
            episode = episode_from_id(episode)
        self.episode = episode
        self.env.reset(episode)
        self.target = None
        if self.query is not None:
            try:
                self.target = self._resolve(self.query)
            except ValueError:
                pass  # a query of the previous episode: resolved (or refused, with the reason) at the next step

    def set_pose(self, x: float, y: float, yaw: float) -> None:
        """The robot's base pose in `odom` (metres, radians), e.g. from the odometry at the frame's stamp."""
        self._require_episode()
        self.env.set_pose(x, y, yaw)

    def reset(self, query: str) -> None:
        from vlm_agent.models.sa2va.processing_sa2va import validate_query

        text = validate_query(query)
        self.target = self._resolve(text) if self.episode is not None else None
        self.query, self.frame_index = text, 0

    def step(self, rgb: np.ndarray) -> SegResult:
        from vlm_agent.models.sa2va.processing_sa2va import mask_bbox

        if self.query is None:
            raise RuntimeError("call reset(query) before step(frame)")
        self._require_episode()
        t0 = time.perf_counter()
        cfg = self.env.config
        if getattr(rgb, "shape", None) is None or tuple(rgb.shape[:2]) != (cfg.height, cfg.width):
            raise ValueError(f"oracle mirror renders {cfg.width}x{cfg.height}; got a frame of shape {getattr(rgb, 'shape', None)}")
        if self.target is None:
            self.target = self._resolve(self.query)
        mask = self.env.object_mask(self.target)
        k, self.frame_index = self.frame_index, self.frame_index + 1
        return SegResult(mask, 1.0 if mask.any() else 0.0, "oracle", self.query, k, mask_bbox(mask), int(mask.sum()), time.perf_counter() - t0,
                         extra={"object": self.target})

    def target_position(self) -> tuple[float, float, float]:
        """The target object's centre (x, y, z) m in `odom` (for tests of the 3D target)."""
        self._require_episode()
        return self.env.object_position(self.target)

    def close(self) -> None:
        self.env.close()

    # -- internals -------------------------------------------------------------------------------
    def _resolve(self, query: str) -> str:
        from vlm_agent.skills.api import SkillError
        from vlm_agent.skills.resolver import SceneEntity, normalise_phrase, resolve

        ep = self.episode
        if normalise_phrase(query) == normalise_phrase(ep.instruction):
            return ep.goal_object
        phrase = normalise_phrase(query)
        if phrase.startswith("segment "):
            phrase = phrase[len("segment "):]
        entities = [SceneEntity(o.name, "object", o.colour, o.shape) for o in self.env.world.objects]
        try:
            return resolve(phrase, entities).name
        except SkillError as exc:
            raise ValueError(f"oracle: {exc}") from None

    def _require_episode(self):
        if self.episode is None:
            raise RuntimeError("the oracle has no episode: load_episode(episode or id) first")


__all__ = ["OracleSegmenter", "episode_from_id"]
