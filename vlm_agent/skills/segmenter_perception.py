"""Where an object is, from a referring segmenter on the simulator's camera: `SegmenterPerception`.

The in-process counterpart of the ROS path (`nodes/ros_skills.py` `SegmentationPerception`, which
asks the segmenter node): a `Perception` for `SimSkills` over a `NavEnv` and any `Segmenter`
(`vlm_agent.skills.segmentation`: `Sa2VASegmenter(model_dir)`, ...). Not an upper bound.

`locate(phrase)`:

* Furniture ("table", "the desk", "table_0") comes from the map: static furniture is what a robot
  has in its map, so it is read from the world's furniture list, not segmented.
* The held object: what the gripper holds is known from the grasp, so a phrase this provider
  associated with the object now in the gripper answers with the grasp point, unsegmented.
* Everything else is segmented. The egocentric camera is rendered at this provider's own size
  (`SegmenterPerceptionConfig.width/height`, default 128x128, whatever the env's observation
  size; `sim_skills.SimCameraView`), the segmenter gets `reset(phrase)` and `step(rgb)`, and the mask's pixels are
  back-projected with the rendered depth through the pinhole intrinsics (the env's vertical field
  of view, `NavEnv.camera_intrinsics` at this size) and the camera's optical pose in `odom`
  (`NavEnv.camera_optical_pose`: the mast camera 0.95 m up, pitched 20 degrees down), as the
  segmenter node does (`sensors.backprojection`): pixels without a usable depth and pixels farther
  than `depth_outlier_m` from the mask's median depth are dropped; the object's centre is then
  estimated from the rest (`visible_surface_centre`, `target_point: centre`) or the visible
  surface's centroid is used (`target_point: surface`, about 5 cm in front of the centre).
* Not in the first view (mask empty, under `min_mask_pixels`, or without depth): the last
  position this provider found for the same phrase, if it has one (objects move only when the
  robot moves them: the memory of an object seen in the gripper at an earlier call is dropped once
  it is released). This is what lets `pick` work: at
  the grasp standoff a floor object is below the camera's view. Otherwise the base turns in place
  through a full circle in `turn_stops` equal steps (`NavEnv.step_velocity`, as
  `SimSkills.look_around` turns), re-segmenting each view until the phrase is found, then turns
  back to the heading it started from, so `locate` leaves the pose as it found it (the base did
  rotate; the motion is real and counted). Not found: `SkillError` with a planner-readable reason.

Association: the simulator's skills move by scene id, so the centroid is associated with the
nearest scene object (3D distance to its centre) within `association_radius_m`; farther is a
`SkillError` ("segmented 'x' at (x, y) but no object is there"). The detection keeps the
segmenter's centroid as its position and takes the associated object's label and id. Which object
is picked is decided by the segmenter's mask (a mask on the wrong object associates the wrong
object); the association only turns a position into the simulator's handle for it.

`visible()` is empty: a segmenter answers queries, and listing what is in view would cost one
query per possible label per view (as with the ROS adapter, `look_around` reports nothing).

Every `locate` call appends a `LocateRecord` to `records` (found in the first view, after k turns,
from memory, from the map, not found; the centroid error against the associated object's true
centre, for evaluations only), summarised by `summarise_locates`.

`GroundTruthMaskSegmenter` is a privileged `Segmenter` for tests and for the upper bound of this
path: the ground-truth mask of the object the phrase names, rendered from the live env (objects
that the robot moved included, unlike `evaluation.oracle_segmenter`'s static mirror).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.skills.api import ObjectNotFound, SkillError
from vlm_agent.skills.perception import Detection
from vlm_agent.skills.object_memory import FurnitureMap, phrase_key
from vlm_agent.skills.resolver import SceneEntity, normalise_phrase, resolve

SEGMENTER_LABEL = "segmenter"
# where a locate answer came from (LocateRecord.outcome)
OUTCOMES = ("view", "turned", "memory", "held", "map", "not_found", "no_object", "error")


@dataclass
class SegmenterPerceptionConfig(ConfigBase):
    """Settings of `SegmenterPerception`.

    width/height: size (px) of the view rendered for the segmenter (the segmenter's input; the env's
        own observation size is not touched). turn_stops: views per full circle when the phrase is
        not in the first view (8: 45 degree steps, overlapping with a 60 degree square view).
    min_mask_pixels: a smaller mask counts as "not in this view" (an 8 cm object 3 m away covers
        about 9 px at 128x128). min_depth_points / depth_outlier_m: the back-projection's robustness
        (`mask_centroid_3d`). association_radius_m: the farthest a scene object's centre may be from
        the centroid to be associated with it. use_memory: answer from the last sighting of the same
        phrase when the first view misses it. min_score: a mask whose segmenter confidence
        (`SegResult.score`, for Sa2VA the predicted IoU times the object-presence probability) is
        lower counts as "not in this view", so the search turns instead of trusting a guess.
    search: "first" answers with the first view whose mask passes (the current view, then memory,
        then the turns). "best" answers with the highest-scoring sighting of the phrase: a phrase with
        no sighting yet is segmented in all `turn_stops` views of a full circle and the best mask
        wins; a remembered sighting is replaced only by a current view that scores higher. Why: a
        segmenter that is not sure an object is absent puts a mask on whatever is in view, so the
        first non-empty view is often a distractor (PaLM-E val100 with sa2va_nano v2: 104 of 135
        first sightings were the wrong object). "best" helps only a segmenter whose score ranks the
        views of one phrase; sa2va_nano v2's does not (median 0.60 on right sightings, 0.57 on
        wrong ones; PaLM-E val100 0.11 with "best", 0.12 with "first"), so "first" stays the default.
    search_places: read by the skills (`SimSkills`), which do the driving: when `locate` raises
        `ObjectNotFound`, they search again from up to this many other places on the map.
    verifier / verifier_min_match: a second look at every mask (`skills.verification.VerifiedSegmenter`
        around the segmenter, made by `SegmenterPerceptionFactory`): a mask whose crop the attribute
        verifier does not read as the phrase's colour and shape is dropped, so the search goes on
        instead of walking to a look-alike. On by default (checkpoints/attribute_verifier, min match
        0.3, chosen on val100: PaLM-E with sa2va_nano v5 0.71 without, 0.98 at 0.1, 1.00 at 0.3).
    """

    width: int = param(128, "width (px) of the view rendered for the segmenter", min=16, max=1280)
    height: int = param(128, "height (px) of the view rendered for the segmenter", min=16, max=960)
    turn_stops: int = param(8, "views per full circle when searching by turning in place (1 = never turn)", min=1, max=72)
    min_mask_pixels: int = param(4, "masks with fewer pixels count as not found in that view", min=1, max=100000)
    min_depth_points: int = param(3, "mask pixels with a valid depth needed for a centroid", min=1, max=100000)
    depth_outlier_m: float = param(0.25, "drop mask pixels farther than this from the mask's median depth (m)", min=0.01, max=10.0)
    association_radius_m: float = param(0.25, "associate the centroid with a scene object whose centre is within this (m)", min=0.01, max=5.0)
    use_memory: bool = param(True, "fall back to the last sighting of the same phrase before turning")
    min_score: float = param(0.0, "masks whose segmenter score is lower count as not found in that view", min=0.0, max=1.0)
    target_point: str = param("centre", "centre: the object's centre estimated from its visible surface "
                              "(sensors.backprojection.visible_surface_centre); surface: the visible surface's centroid",
                              choices=("centre", "surface"))
    search_places: int = param(2, "when a full circle here finds nothing, how many other places on the map the skills drive to "
                               "and search from (skills.search.vantage_points; 0 = never move to search)", min=0, max=20)
    search: str = param("first", "first: take the first view with a mask; best: keep the highest-scoring sighting of a phrase "
                        "(a phrase never seen turns through every view)", choices=("first", "best"))
    verifier: str = param("default", "attribute verifier model directory (`skills.verification`): masks whose colour and shape do not "
                          "match the phrase count as not found in that view; 'default' = checkpoints/attribute_verifier, '' = none")
    verifier_min_match: float = param(0.3, "the verifier's smallest accepted match (P(colour) x P(shape) of the named words)", min=0.0, max=1.0)


@dataclass
class LocateRecord:
    """One `locate` call. outcome: one of OUTCOMES ("view": segmented in the first view, "turned":
    after `turns` turns, "memory", "held", "map", "not_found", "no_object": segmented where no
    object is, "error": the segmenter refused); pixels: mask size in the view used; centroid
    (x, y, z) m in odom; name/label: the associated scene object; error_m: 3D distance from the
    centroid to that object's true centre (for evaluation; the provider never uses it); rejected: masks
    the attribute verifier dropped during the call (`SegmenterPerceptionConfig.verifier`)."""

    phrase: str
    outcome: str
    turns: int = 0
    pixels: int = 0
    centroid: tuple[float, float, float] | None = None
    name: str | None = None
    label: str | None = None
    error_m: float | None = None
    reason: str = ""
    score: float | None = None
    rejected: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def summarise_locates(records) -> dict:
    """{"calls", one count per outcome, "segmented" (view + turned), "rejected" (masks the verifier
    dropped), "mean_turns" (of those),
    "mean_error_m" / "max_error_m" (centroid vs the associated object's true centre, segmented calls)}."""
    records = list(records)
    out: dict = {"calls": len(records), **{k: sum(r.outcome == k for r in records) for k in OUTCOMES}}
    seg = [r for r in records if r.outcome in ("view", "turned")]
    errors = [r.error_m for r in seg if r.error_m is not None]
    out["segmented"] = len(seg)
    out["rejected"] = sum(r.rejected for r in records)
    out["mean_turns"] = float(np.mean([r.turns for r in seg])) if seg else float("nan")
    out["mean_error_m"] = float(np.mean(errors)) if errors else float("nan")
    out["max_error_m"] = float(np.max(errors)) if errors else float("nan")
    return out


def merge_locate_summaries(summaries) -> dict:
    """Summaries of several episodes (`summarise_locates` outputs) combined; errors weighted by count."""
    summaries = [s for s in summaries if s]
    if not summaries:
        return {}
    out: dict = {k: sum(s.get(k, 0) for s in summaries) for k in ("calls", "segmented", "rejected", *OUTCOMES)}
    seg = [s for s in summaries if s["segmented"]]
    n = sum(s["segmented"] for s in seg)
    out["mean_turns"] = sum(s["mean_turns"] * s["segmented"] for s in seg) / n if n else float("nan")
    with_err = [s for s in seg if math.isfinite(s["mean_error_m"])]
    n_err = sum(s["segmented"] for s in with_err)
    out["mean_error_m"] = sum(s["mean_error_m"] * s["segmented"] for s in with_err) / n_err if n_err else float("nan")
    out["max_error_m"] = max((s["max_error_m"] for s in with_err), default=float("nan"))
    return out


def _fmt_xy(p) -> str:
    return f"({p[0]:.2f}, {p[1]:.2f})"


def _rank(score: float) -> float:
    """A score for comparisons: NaN (a backend without a confidence) ranks lowest."""
    return -math.inf if math.isnan(score) else score


class SegmenterPerception:
    """Objects located by `segmenter` in the env's camera view, furniture from the map (see the
    module docstring). `view`: a `SimCameraView` to share (one GL context across episodes); made
    from `config.width/height` otherwise. `records`: one `LocateRecord` per `locate` call."""

    label = SEGMENTER_LABEL
    upper_bound = False

    def __init__(self, env, segmenter, config: SegmenterPerceptionConfig | None = None, view=None):
        from vlm_agent.skills.sim_skills import SimCameraView

        self.env = env
        self.segmenter = segmenter
        self.config = config or SegmenterPerceptionConfig()
        if view is not None and (view.width, view.height) != (self.config.width, self.config.height):
            raise ValueError(f"the shared view renders {view.width}x{view.height}, the config asks for {self.config.width}x{self.config.height}")
        self.view = view or SimCameraView(env, self.config.width, self.config.height)
        self.records: list[LocateRecord] = []
        self.memory: dict[str, Detection] = {}  # phrase_key -> last detection made by segmenting it
        self.memory_score: dict[str, float] = {}  # phrase_key -> segmenter score of that detection (search="best")
        self._held_seen: str | None = None
        self._rejected = 0  # verifier rejections in the current locate call

    # -- Perception ------------------------------------------------------------------------------
    def locate(self, phrase: str) -> Detection:
        self._rejected = 0
        n = len(self.records)
        try:
            return self._locate(phrase)
        finally:
            if len(self.records) > n:
                self.records[-1].rejected = self._rejected

    def _locate(self, phrase: str) -> Detection:
        if not isinstance(phrase, str):
            raise SkillError(f"an object must be named by a string, got {type(phrase).__name__}")
        key = phrase_key(phrase)
        if not key:
            raise SkillError("empty object name")
        furniture = self._from_map(phrase, key)
        if furniture is not None:
            self.records.append(LocateRecord(phrase, "map", name=furniture.name, label=furniture.label, centroid=furniture.position))
            return furniture
        self._forget_moved()
        held = self._held(key)
        if held is not None:
            self.records.append(LocateRecord(phrase, "held", name=held.name, label=held.label, centroid=held.position))
            return held
        if self.config.search == "best":
            return self._locate_best(phrase, key)
        found, pixels, reason = self._segment_view(phrase)
        if found is not None:
            return self._associate(phrase, key, found, pixels, 0)
        remembered = self.memory.get(key) if self.config.use_memory else None
        if remembered is not None:
            self.records.append(LocateRecord(phrase, "memory", pixels=pixels, name=remembered.name, label=remembered.label,
                                             centroid=remembered.position, reason=reason))
            return remembered
        return self._search_by_turning(phrase, key, reason)

    def visible(self) -> list[Detection]:
        """Always empty (see the module docstring)."""
        return []

    def summary(self) -> dict:
        return summarise_locates(self.records)

    def close(self) -> None:
        self.view.close()

    # -- internals -------------------------------------------------------------------------------
    def _from_map(self, phrase: str, key: str) -> Detection | None:
        return FurnitureMap(self.env.world.furniture).locate(phrase)  # SkillError if absent/ambiguous

    def _forget_moved(self) -> None:
        """Drop memories of an object the robot has held since: it is no longer where it was seen."""
        held = self.env.held
        if held is not None:
            self._held_seen = held
        moved = self._held_seen
        if moved is not None and held != moved:  # released since: it lies somewhere new
            self.memory = {k: d for k, d in self.memory.items() if d.name != moved}
            self.memory_score = {k: v for k, v in self.memory_score.items() if k in self.memory}
            self._held_seen = None

    def _held(self, key: str) -> Detection | None:
        held = self.env.held
        remembered = self.memory.get(key)
        if held is None or remembered is None or remembered.name != held:
            return None
        gp = tuple(float(v) for v in self.env.grasp_point())
        return Detection(remembered.label, gp, "odom", held)

    def _segment_view(self, phrase: str):
        """(centroid (x, y, z) odom or None, mask pixels, reason when None) for the current view."""
        found, pixels, reason, _ = self._segment_scored(phrase)
        return found, pixels, reason

    def _segment_scored(self, phrase: str):
        """`_segment_view` and the mask's segmenter score (NaN when no usable mask)."""
        from vlm_agent.sensors.backprojection import mask_centroid_3d, mask_object_centre_3d

        cfg = self.config
        rgb, depth = self.view.rgbd()
        try:
            self.segmenter.reset(phrase)
            result = self.segmenter.step(rgb)
        except (ValueError, RuntimeError) as exc:
            self.records.append(LocateRecord(phrase, "error", reason=str(exc)))
            raise SkillError(f"the segmenter could not segment '{phrase}': {exc}") from None
        mask = np.asarray(result.mask, dtype=bool) if getattr(result, "mask", None) is not None else np.zeros(depth.shape, bool)
        pixels = int(mask.sum())
        nan = float("nan")
        if getattr(result, "source", "") == "rejected":  # skills.verification.VerifiedSegmenter
            self._rejected += 1
            return None, pixels, str(result.extra.get("rejected", "the verifier rejected the mask")), nan
        if pixels < cfg.min_mask_pixels:
            return None, pixels, "empty mask" if pixels == 0 else f"mask of {pixels} px (< {cfg.min_mask_pixels})", nan
        score = float(getattr(result, "score", 1.0))
        if not score >= cfg.min_score:  # NaN counts as too low
            return None, pixels, f"mask score {score:.2f} (< {cfg.min_score:g})", nan
        position, rotation = self.env.camera_optical_pose()
        kw = {"outlier_m": cfg.depth_outlier_m, "min_points": cfg.min_depth_points, "max_depth_m": self.env.config.max_depth_m}
        if cfg.target_point == "surface":
            point = mask_centroid_3d(mask, depth, self.view.intrinsics(), **kw)
        else:  # odom's z is up
            point = mask_object_centre_3d(mask, depth, self.view.intrinsics(), rotation, **kw)
        if point is None:
            return None, pixels, f"fewer than {cfg.min_depth_points} mask pixels with a valid depth", nan
        world = position + rotation @ np.asarray(point.point)
        return tuple(float(v) for v in world), pixels, "", score

    def _locate_best(self, phrase: str, key: str) -> Detection:
        """search="best": the highest-scoring sighting of `phrase` (see SegmenterPerceptionConfig)."""
        found, pixels, reason, score = self._segment_scored(phrase)
        remembered = self.memory.get(key)
        if remembered is not None:
            if found is not None and _rank(score) > _rank(self.memory_score.get(key, -math.inf)):
                return self._associate(phrase, key, found, pixels, 0, score)
            self.records.append(LocateRecord(phrase, "memory", pixels=pixels, name=remembered.name, label=remembered.label,
                                             centroid=remembered.position, reason=reason or f"view scored {score:.2f}"))
            return remembered
        env = self.env
        stops = self.config.turn_stops
        step = 2 * math.pi / stops
        yaw0 = env.pose[2]
        best = (found, pixels, 0, score) if found is not None else None
        try:
            for turns in range(1, stops):
                self._turn(step)
                f, px, _, sc = self._segment_scored(phrase)
                if f is not None and (best is None or _rank(sc) > _rank(best[3])):
                    best = (f, px, turns, sc)
        finally:
            self._turn(math.remainder(yaw0 - env.pose[2], 2 * math.pi))
        if best is None:
            self.records.append(LocateRecord(phrase, "not_found", turns=stops - 1, reason=reason))
            looked = f"in any of {stops} views turning a full circle" if stops > 1 else "in view"
            raise ObjectNotFound(f"the segmenter found no '{phrase}' {looked}")
        return self._associate(phrase, key, best[0], best[1], best[2], best[3])

    def _search_by_turning(self, phrase: str, key: str, first_reason: str) -> Detection:
        env = self.env
        stops = self.config.turn_stops
        step = 2 * math.pi / stops
        yaw0 = env.pose[2]
        found, pixels, turns = None, 0, 0
        try:
            for turns in range(1, stops):
                self._turn(step)
                found, pixels, _ = self._segment_view(phrase)
                if found is not None:
                    break
        finally:
            self._turn(math.remainder(yaw0 - env.pose[2], 2 * math.pi))
        if found is None:
            self.records.append(LocateRecord(phrase, "not_found", turns=turns, reason=first_reason))
            looked = f"in any of {stops} views turning a full circle" if stops > 1 else "in view"
            raise ObjectNotFound(f"the segmenter found no '{phrase}' {looked}")
        return self._associate(phrase, key, found, pixels, turns)

    def _turn(self, angle: float) -> None:
        env = self.env
        if abs(angle) > 1e-6:
            env.step_velocity(0.0, math.copysign(1.0, angle), abs(angle))
            if env.held is not None:  # as SimSkills._follow_held
                env.step_physics(env.model.opt.timestep)

    def _associate(self, phrase: str, key: str, centroid, pixels: int, turns: int, score: float = float("nan")) -> Detection:
        outcome = "view" if turns == 0 else "turned"
        best, best_d = None, math.inf
        for obj in self.env.world.objects:
            d = float(np.linalg.norm(np.asarray(obj.pos) - np.asarray(centroid)))
            if d < best_d:
                best, best_d = obj, d
        if best is None or best_d > self.config.association_radius_m:
            self.records.append(LocateRecord(phrase, "no_object", turns, pixels, centroid, reason=f"nearest object {best_d:.2f} m away"))
            raise SkillError(f"segmented '{phrase}' at {_fmt_xy(centroid)} but no object is there")
        det = Detection(best.label, centroid, "odom", best.name)
        self.memory[key] = det
        self.memory_score[key] = score
        self.records.append(LocateRecord(phrase, outcome, turns, pixels, centroid, best.name, best.label, best_d,
                                         score=None if math.isnan(score) else score))
        return det


class GroundTruthMaskSegmenter:
    """A privileged `Segmenter`: the ground-truth mask, rendered from the live `env` at the frame's
    size, of the one object the query names (`skills.resolver` over the env's objects; "segment the
    red cube" reads as "the red cube"). A query naming no object, or several, gives empty masks (what
    a segmenter that finds nothing returns), with the resolver's reason in `SegResult.extra`.
    For tests and the upper bound of the segmenter path; `step` ignores the pixels it is given."""

    label = "oracle"

    def __init__(self, env):
        self.env = env
        self.query: str | None = None
        self._views: dict = {}  # (width, height) -> SimCameraView
        self.frame_index = 0

    def reset(self, query: str) -> None:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the query must be a non-empty string")
        self.query, self.frame_index = query, 0

    def target(self) -> tuple[str | None, str]:
        """(object id or None, the reason when None) for the current query."""
        text = normalise_phrase(self.query or "")
        if text.startswith("segment "):
            text = text[len("segment "):]
        entities = [SceneEntity(o.name, "object", o.colour, o.shape) for o in self.env.world.objects]
        try:
            return resolve(text, entities).name, ""
        except SkillError as exc:
            return None, str(exc)

    def step(self, rgb: np.ndarray):
        from vlm_agent.skills.segmentation import SegResult
        from vlm_agent.skills.sim_skills import SimCameraView

        if self.query is None:
            raise RuntimeError("call reset(query) before step(frame)")
        h, w = np.asarray(rgb).shape[:2]
        name, reason = self.target()
        if name is None:
            mask = np.zeros((h, w), bool)
        else:
            view = self._views.get((w, h))
            if view is None:
                view = self._views[(w, h)] = SimCameraView(self.env, w, h)
            mask = view.object_mask(name)
        k, self.frame_index = self.frame_index, self.frame_index + 1
        extra = {"object": name} if name else {"reason": reason}
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if rows.size else None
        return SegResult(mask, 1.0 if mask.any() else 0.0, "oracle", self.query, k, bbox, int(mask.sum()), extra=extra)

    def close(self) -> None:
        for view in self._views.values():
            view.close()
        self._views.clear()


class SegmenterPerceptionFactory:
    """One `SegmenterPerception` per episode over a long-lived segmenter and camera view:
    `factory(env)` after `env.reset(episode)`. `segmenter_factory(env)` is called once, on the first
    episode (a model loads once; the oracle needs the env), and wrapped in a `VerifiedSegmenter` when
    the config names a `verifier`. `perceptions`: every one made, in order."""

    def __init__(self, segmenter_factory, config: SegmenterPerceptionConfig | None = None):
        self.segmenter_factory = segmenter_factory
        self.config = config or SegmenterPerceptionConfig()
        self.segmenter = None
        self._view = None  # SimCameraView
        self.perceptions: list[SegmenterPerception] = []

    def __call__(self, env) -> SegmenterPerception:
        from vlm_agent.skills.sim_skills import SimCameraView

        if self.segmenter is None:
            self.segmenter = self.segmenter_factory(env)
            if self.config.verifier:
                from vlm_agent.skills.verification import AttributeVerifier, VerifiedSegmenter

                model_dir = None if self.config.verifier == "default" else self.config.verifier
                self.segmenter = VerifiedSegmenter(self.segmenter, AttributeVerifier(model_dir, min_match=self.config.verifier_min_match))
        if self._view is None or self._view.env is not env:
            if self._view is not None:
                self._view.close()
            self._view = SimCameraView(env, self.config.width, self.config.height)
        perception = SegmenterPerception(env, self.segmenter, self.config, view=self._view)
        self.perceptions.append(perception)
        return perception

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None
        close = getattr(self.segmenter, "close", None)
        if callable(close):
            close()


def make_segmenter_factory(backend: str = "sa2va", model_dir: str | None = None, device: str = "cpu", **kwargs):
    """`segmenter_factory(env)` for `SegmenterPerceptionFactory`: "oracle" (`GroundTruthMaskSegmenter`,
    privileged) or a `skills.segmentation.make_segmenter` backend ("sa2va": `model_dir`, default the
    shipped checkpoints/sa2va_nano)."""
    if backend == "oracle":
        return GroundTruthMaskSegmenter
    from vlm_agent.skills.segmentation import SEGMENTER_BACKENDS, make_segmenter

    if backend not in SEGMENTER_BACKENDS:
        raise ValueError(f"unknown segmenter backend '{backend}' (known: oracle, {', '.join(sorted(SEGMENTER_BACKENDS))})")
    if backend == "sa2va" and not model_dir:
        from vlm_agent.models.registry import default_checkpoint_dir

        model_dir = default_checkpoint_dir("sa2va")

    def factory(env):
        return make_segmenter(backend, model_dir=model_dir, device=device, **kwargs)

    return factory


__all__ = ["SegmenterPerception", "SegmenterPerceptionConfig", "SegmenterPerceptionFactory", "GroundTruthMaskSegmenter",
           "LocateRecord", "summarise_locates", "merge_locate_summaries", "make_segmenter_factory", "phrase_key", "SEGMENTER_LABEL"]
