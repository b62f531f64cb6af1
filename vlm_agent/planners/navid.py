"""NaVid-style navigation planner: instruction + egocentric RGB video -> 1..3 NavPrimitives.

    planner = NavidPlanner(NavidPlannerConfig(backend="builtin", model_dir="checkpoints/navid_map"))
    planner.reset("go to the red ball")      # validates the instruction (ValueError if bad)
    result = planner.plan(rgb, depth, pose)   # PlanResult(raw_text, primitives, latency_s, error)
    planner.observe(rgb, depth, pose)         # the frame becomes history for later calls

A model with a map memory (`NavidConfig.map_cells`, `planners/ego_map.py`) needs every frame's
depth (H, W) float32 m and the base pose (x, y, yaw) in `odom`; the planner accumulates the map
(each frame once) and hands the model its egocentric view. Without them such a model raises
ValueError (the node stops the robot and says why); a model without a map ignores them.

Unparsable model text becomes `[stop]` with `error` set and a logged warning; backend failures
(`BackendError`, `BackendTimeoutError`, anything the model raises) propagate so the caller stops the
robot. Thread-safe: one lock serialises reset/observe/plan (the ROS node calls them off-executor).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time

import numpy as np

from vlm_agent.accel.config import BACKENDS, EncoderParams
from vlm_agent.actions import NavPrimitive
from vlm_agent.config import param

from .navid_grammar import parse_primitives
from .navid_prompt import validate_instruction

log = logging.getLogger(__name__)

# The shipped default navigator (checkpoints/navid_map/MODEL_CARD.md: reads a map memory, so it needs
# depth and odometry); navid_film is the best model without one (`vlm-agent serve`'s default: chat
# requests carry images only); navid_tiny stays for the encoder-acceleration path (its SigLIP tower
# exports to ONNX / TensorRT).
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "checkpoints", "navid_map")
IMAGE_ONLY_CHECKPOINT = os.path.join(os.path.dirname(DEFAULT_CHECKPOINT), "navid_film")
# The remote backend's deadline for one call (every attempt and backoff), as a fraction of model_timeout_s.
REMOTE_DEADLINE_FRACTION = 0.9
# Inference settings a model directory recommends for this planner (read for `stop_gate: model`).
PLANNER_CONFIG_NAME = "planner_config.json"


def default_checkpoint_dir(name: str = "navid_map") -> str:
    """The shipped checkpoint `checkpoints/<name>` (see `models.registry.default_checkpoint_dir`)."""
    from vlm_agent.models.registry import default_checkpoint_dir as shipped

    return shipped(name)


@dataclasses.dataclass
class NavidPlannerConfig(EncoderParams):
    """Settings of `NavidPlanner` (also the planner node's ROS parameters).

    The `encoder_*` fields (from `vlm_agent.accel.config.EncoderParams`) choose how the builtin
    model's vision tower runs: torch, onnxruntime, openvino or tensorrt, falling back in that fixed
    order (tensorrt -> openvino -> onnxruntime -> torch) with the reason logged; switching needs no
    code change.
    """

    # The reference backend by default: identical numerics and no export step at start-up. Robots
    # set onnxruntime (4x faster on CPU for navid_tiny) or tensorrt (Jetson) in their YAML.
    encoder_backend: str = param("torch", "vision encoder backend of the builtin model (falls back tensorrt -> openvino -> onnxruntime -> torch)", choices=BACKENDS)

    backend: str = param("builtin", "model backend: builtin (the project's NaVid model), transformers (any image-text-to-text dir), remote (OpenAI-compatible server)", choices=("builtin", "transformers", "remote"))
    model_dir: str = param("", "model directory for builtin/transformers backends; empty = checkpoints/navid_map")
    remote_url: str = param("http://127.0.0.1:8000/v1", "base URL of the OpenAI-compatible server (remote backend)")
    remote_model: str = param("navid_tiny", "model name sent to the remote server")
    remote_api_key: str = param("", "bearer token for the remote server (empty = none)")
    timeout_s: float = param(10.0, "remote request timeout per attempt, seconds", min=0.05, max=600.0)
    retries: int = param(2, "remote retries after the first attempt (timeouts, connection errors, 429/5xx)", min=0, max=10)
    model_timeout_s: float = param(10.0, "a model call running longer than this becomes a stop plan (node); remote attempts and backoffs all end within 90% of it", min=0.05, max=600.0)
    max_history_frames: int = param(0, "history frames fed to the builtin LM (uniform subsample of the cache); 0 = the model's default", min=0, max=4096)
    history_images: int = param(4, "history images sent to transformers/remote backends per call", min=0, max=64)
    decoding: str = param("constrained", "builtin decoding: constrained (grammar trie) or greedy (free text, parsed strictly)", choices=("constrained", "greedy"))
    max_new_tokens: int = param(48, "generation limit in tokens", min=4, max=512)
    max_instruction_chars: int = param(500, "longest accepted instruction", min=1, max=10000)
    max_primitives: int = param(3, "primitives accepted per call", min=1, max=3)
    max_forward_cm: float = param(100.0, "largest forward step accepted from the model, cm", min=1.0, max=500.0)
    max_turn_deg: float = param(180.0, "largest turn accepted from the model, degrees", min=1.0, max=180.0)
    # 360: chosen closed loop on val50 with the default navigator (SR 0.22 -> 0.32; 180 / 720 gave 0.30 / 0.32).
    spin_recovery_deg: float = param(
        360.0, "recovery from turning in place: once the planned turns since the last forward step add up to this many degrees, "
        "a plan that starts with another turn is replaced by one forward step (0 = off)", min=0.0, max=3600.0)
    # 1.0 / 90: chosen closed loop on val50 with the default navigator: SR 0.36 either way, collisions per
    # episode 40 -> 3.2, episodes that ran out the step limit 8 -> 4 (delta 3 and a 30 degree turn: the same SR).
    blocked_frame_delta: float = param(
        1.0, "recovery from a blocked forward step: when the frame at the next plan differs from the frame a forward step was planned "
        "on by less than this mean absolute pixel difference (0-255), the step did not move the robot, and a next plan that starts "
        "with forward becomes a turn of blocked_turn_deg (0 = off)", min=0.0, max=255.0)
    blocked_turn_deg: float = param(90.0, "the turn (degrees, to the left) that replaces a forward step into a blocked view", min=1.0, max=180.0)
    # The camera mounting of the map memory (models with one only); defaults are the simulator's.
    camera_height_m: float = param(0.95, "map memory: camera height above the floor, m", min=0.0, max=5.0)
    camera_pitch_rad: float = param(0.349066, "map memory: camera pitch below horizontal, rad", min=-1.6, max=1.6)
    camera_x_m: float = param(-0.07, "map memory: camera position ahead of base_link, m", min=-5.0, max=5.0)
    camera_vertical_fov_deg: float = param(60.0, "map memory: vertical field of view used for the depth intrinsics until set_intrinsics() gives the camera's own", min=1.0, max=179.0)
    # The stop gate (planners/stop_check.py). With the shipped navid_map (its planner_config.json turns it on):
    # val seed 1 SR 0.42 -> 0.53 (11 episodes gained, none lost), val seed 0 0.38 -> 0.42 (4 gained, none lost).
    # A robot whose objects the shipped segmenter and verifier have never seen sets never (config/robot.yaml).
    stop_gate: str = param("model", "refuse a stop (a turn of stop_gate_turn_deg instead) until the instruction's goal object has been "
                           "in view this episode, segmented by Sa2VA and confirmed by the attribute verifier: always, never, or model "
                           "(as the model directory's planner_config.json says; off without one)", choices=("model", "always", "never"))
    stop_gate_segmenter_dir: str = param("", "stop gate: Sa2VA model directory (empty = checkpoints/sa2va_nano)")
    stop_gate_verifier_dir: str = param("", "stop gate: attribute verifier directory (empty = checkpoints/attribute_verifier)")
    stop_gate_min_match: float = param(0.3, "stop gate: the verifier's smallest accepted match", min=0.0, max=1.0)
    stop_gate_turn_deg: float = param(90.0, "stop gate: the turn (degrees, to the left) that replaces a refused stop", min=1.0, max=180.0)
    stop_gate_max_refusals: int = param(5, "stop gate: refused stops per episode at most (then stops pass)", min=0, max=1000)
    # The goal approach (planners/goal_approach.py): once the goal is located, drive to it on the map memory.
    goal_approach: str = param("model", "once the instruction's goal (a colour-shape pair with no qualifier; each leg of a sequence) is segmented "
                               "and verified in view, locate it with depth and odometry and drive to it on the map memory instead of asking "
                               "the model (models with a map only): always, never, or model (as planner_config.json says; off without one)",
                               choices=("model", "always", "never"))
    goal_approach_stop_radius_m: float = param(0.7, "goal approach: stop this close to the located goal, m", min=0.1, max=5.0)
    goal_approach_max_plans: int = param(60, "goal approach: plans spent on one located goal before it is forgotten", min=1, max=10000)
    # 15: chosen on val seed 1 with navid_map (SR 0.74 -> 0.95, SPL 0.46 -> 0.58; 8 plans: 0.93 / 0.58; frontier from the start: 0.92 / 0.53).
    explore_stall_plans: int = param(15, "goal approach: frontier exploration takes over the search (until the goal is located) when the model's "
                                     "last this many plans saw less than explore_stall_m2 of new floor, or a stop was refused (0 = never)",
                                     min=0, max=10000)
    search: str = param("model", "goal approach: who searches until the goal is located: model (the NaVid model, with explore_stall_plans' "
                        "fallback) or frontier (frontier exploration from the first plan; the model only when no frontier is reachable: "
                        "a baseline without the learnt search)", choices=("model", "frontier"))
    explore_stall_m2: float = param(0.5, "goal approach: new floor (m2) the model's last explore_stall_plans plans must see", min=0.0, max=1000.0)
    device: str = param("cpu", "torch device for local backends")
    num_threads: int = param(0, "torch CPU threads for local backends (0 = leave torch's setting)", min=0, max=256)

    def resolved_model_dir(self) -> str:
        return self.model_dir or default_checkpoint_dir()


@dataclasses.dataclass
class PlanResult:
    """One planning call. primitives: 1..3 (a single stop when the text was unparsable).
    latency_s: wall time of the backend call plus parsing. error: None, or why it became a stop."""

    raw_text: str
    primitives: list[NavPrimitive]
    latency_s: float
    error: str | None = None
    recovery: str | None = None  # set when a recovery behaviour replaced the model's primitives, or the goal approach planned (why)
    # "model"; "goal_approach" when the path to the located goal planned, "explore" when frontier exploration did (the model was not asked)
    source: str = "model"

    def to_dict(self) -> dict:
        out = {"raw_text": self.raw_text, "primitives": [p.to_dict() for p in self.primitives], "latency_s": self.latency_s, "error": self.error,
               "source": self.source}
        if self.recovery:
            out["recovery"] = self.recovery
        return out


def make_backend(config: NavidPlannerConfig):
    from . import backends

    if config.num_threads and config.backend != "remote":
        import torch

        torch.set_num_threads(config.num_threads)
    if config.backend == "builtin":
        model_dir = config.resolved_model_dir()
        if not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise FileNotFoundError(f"NaVid model directory {model_dir} has no config.json (train one with `vlm-agent train` or pass model_dir)")
        backend = backends.BuiltinNavidBackend(model_dir, config.max_history_frames, config.decoding, max_new_tokens=config.max_new_tokens, device=config.device)
        if not getattr(backend.model, "accepts_external_encoder", True):
            # An instruction-conditioned stem (film_cnn) cannot be exported as a pixel-only encoder.
            if config.encoder_backend != "torch":
                log.info("NaVid model %s has an instruction-conditioned vision stem: encoder_backend %s ignored, running torch",
                         model_dir, config.encoder_backend)
            backend.encoder = None
            return backend
        from vlm_agent.accel import attach_encoder

        backend.encoder = attach_encoder(backend.model, config.encoder_config())  # logs any fallback and why
        return backend
    if config.backend == "transformers":
        if not config.model_dir or not os.path.isdir(config.model_dir):
            raise FileNotFoundError(f"transformers backend needs model_dir of a local model directory, got {config.model_dir!r}")
        return backends.TransformersBackend(config.model_dir, config.history_images, min(config.max_new_tokens, 64), config.device)
    # All attempts end a little before the node's model timeout, so a failed call reports the
    # server's error rather than a generic timeout and leaves the worker free for the next episode.
    deadline_s = max(REMOTE_DEADLINE_FRACTION * config.model_timeout_s, backends.RemoteBackend.MIN_ATTEMPT_S)
    return backends.RemoteBackend(config.remote_url, config.remote_model, config.timeout_s, config.retries, config.remote_api_key, config.history_images,
                                  min(config.max_new_tokens, 64), deadline_s=deadline_s)


class NavidPlanner:
    """Instruction + video -> primitives through any backend and the strict grammar (see module doc)."""

    def __init__(self, config: NavidPlannerConfig | None = None, backend=None):
        self.config = config or NavidPlannerConfig()
        self.backend = backend if backend is not None else make_backend(self.config)
        self._lock = threading.Lock()
        self.instruction: str | None = None
        self.steps = 0
        self._turned_deg = 0.0  # turns planned since the last forward step (spin recovery)
        self._forward_view: np.ndarray | None = None  # subsampled frame a forward step was planned on (blocked recovery)
        self._map_settings = getattr(self.backend, "ego_map_config", None)
        self.ego_map = None  # EgoMap when the model reads one (built at the first frame: intrinsics)
        self._intrinsics = None
        self._mapped = None  # (depth, pose) of the frame last added to the map: each frame once
        self.stop_gate = self._resolve_model_option("stop_gate", backend is None)
        self.goal_approach_on = self._resolve_model_option("goal_approach", backend is None)
        if self.goal_approach_on and self._map_settings is None:
            log.info("goal_approach needs a model with a map memory (depth and odometry); %s has none: off", self.config.resolved_model_dir())
            self.goal_approach_on = False
        self.goal_sightings = None  # planners.stop_check.GoalSightings, made at the first plan when the stop gate or approach is on
        self.approach = None  # planners.goal_approach.GoalApproach of this episode (goal approach on)
        self._goal_spec = None  # planners.goal_approach.GoalSpec of this episode's instruction (read at its first plan)
        self.goal_seen: str | None = None  # why the goal counts as seen this episode (None: not yet)
        self._refusals = 0

    @property
    def needs_depth(self) -> bool:
        """True when the model reads a map memory: plan/observe then need depth and pose."""
        return self._map_settings is not None

    def set_intrinsics(self, intrinsics) -> None:
        """The depth camera's `CameraIntrinsics` (else they follow from `camera_vertical_fov_deg`)."""
        with self._lock:
            self._intrinsics = intrinsics
            if self.ego_map is not None:
                self.ego_map.intrinsics = intrinsics

    def _update_map(self, depth, pose) -> np.ndarray | None:
        """Add the frame to the map memory (once) and return its egocentric view; None without a map."""
        if self._map_settings is None:
            return None
        if depth is None or pose is None:
            raise ValueError("this NaVid model reads a map memory built from depth and odometry: no depth image or pose was given")
        from vlm_agent.planners.ego_map import EgoMap, EgoMapConfig

        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth must be (H, W) metres, got shape {depth.shape}")
        pose = tuple(float(v) for v in pose)
        if self.ego_map is None:
            c = self.config
            settings = {**self._map_settings, "camera_height_m": c.camera_height_m, "camera_pitch_rad": c.camera_pitch_rad, "camera_x_m": c.camera_x_m}
            intrinsics = self._intrinsics
            if intrinsics is None:
                from vlm_agent.sensors.camera_model import CameraIntrinsics

                intrinsics = CameraIntrinsics.from_fov(depth.shape[1], depth.shape[0], c.camera_vertical_fov_deg)
            self.ego_map = EgoMap(EgoMapConfig.from_dict(settings, strict=False), intrinsics)
        if self._mapped is None or self._mapped[0] is not depth or self._mapped[1] != pose:
            self.ego_map.update(depth, pose)
            self._mapped = (depth, pose)
        return self.ego_map.egocentric(pose)

    def reset(self, instruction: str) -> None:
        """Start an episode. Raises ValueError for empty, too long or control-character instructions."""
        text = validate_instruction(instruction, self.config.max_instruction_chars)
        with self._lock:
            self.backend.reset(text)
            self.instruction, self.steps, self._turned_deg, self._forward_view = text, 0, 0.0, None
            self.goal_seen, self._refusals, self.approach, self._goal_spec = None, 0, None, None
            if self.ego_map is not None:
                self.ego_map.reset()
            self._mapped = None

    def observe(self, rgb: np.ndarray, depth: np.ndarray | None = None, pose=None) -> None:
        """Add `rgb` (H, W, 3) uint8 to the history (encoded once by the builtin backend), and
        `depth` / `pose` to the map memory of a model that has one."""
        with self._lock:
            self._require_instruction()
            self._update_map(depth, pose)
            self.backend.observe(rgb)

    def plan(self, rgb: np.ndarray, depth: np.ndarray | None = None, pose=None) -> PlanResult:
        """Plan from the current frame `rgb` (H, W, 3) uint8 and the history so far (`depth` (H, W)
        m and `pose` (x, y, yaw) in odom: needed by a model with a map memory, see module doc)."""
        with self._lock:
            self._require_instruction()
            t0 = time.perf_counter()
            ego = self._update_map(depth, pose)
            if self.stop_gate or self.goal_approach_on:
                self._look_for_goal(rgb, depth, pose)
            step = self.approach.plan(pose, self.ego_map) if self.approach is not None and ego is not None else None
            source = "goal_approach"
            if step is None and self.approach is not None and self.approach.exploring and ego is not None:
                step, source = self.approach.explore(pose, self.ego_map), "explore"
            if step is not None:
                # The goal is located: geometry drives, the model is not asked (planners/goal_approach.py).
                self.steps += 1
                self._turned_deg, self._forward_view = 0.0, None
                text = ", ".join(p.to_text() for p in step.primitives)
                return PlanResult(text, step.primitives, time.perf_counter() - t0, None, step.reason, source=source)
            raw = self.backend.generate(rgb) if ego is None else self.backend.generate(rgb, ego_map=ego)
            parsed = parse_primitives(raw, self.config.max_primitives, self.config.max_forward_cm, self.config.max_turn_deg)
            latency = time.perf_counter() - t0
            self.steps += 1
            view = self._view_key(rgb) if self.config.blocked_frame_delta > 0 else None  # once per plan: compared, then kept
            primitives, recovery = self._blocked_recovery(list(parsed.primitives), view)
            primitives, spin = self._spin_recovery(primitives, may_replace=recovery is None)  # a blocked view is no place to go forward
            recovery = recovery or spin
            if self.stop_gate and recovery is None:
                primitives, recovery = self._stop_gate(primitives)
                if recovery is not None and self.approach is not None:
                    self.approach.start_exploring(f"a stop was refused ({recovery})")
            if self.approach is not None and ego is not None:
                self.approach.note_model_plan(self.ego_map)
            self._forward_view = view if any(p.kind == "forward" for p in primitives) else None
        if parsed.error:
            log.warning("NaVid output unparsable, stopping: %s", parsed.error)
        return PlanResult(raw if isinstance(raw, str) else repr(raw), primitives, latency, parsed.error, recovery)

    @staticmethod
    def _view_key(rgb: np.ndarray) -> np.ndarray:
        """Every 4th pixel of `rgb` as float32: enough to tell a moved camera from a still one."""
        return np.asarray(rgb)[::4, ::4].astype(np.float32)

    def _blocked_recovery(self, primitives: list[NavPrimitive], view: np.ndarray | None) -> tuple[list[NavPrimitive], str | None]:
        """Replace a forward step into a view that the last forward step did not change by a turn
        (`blocked_frame_delta`, `blocked_turn_deg`).

        A learnt navigator facing a wall or a blocked doorway tends to plan forward again and again
        (the robot pushes or the safety supervisor holds it) until the step limit; the frames
        before and after such a step are the same, which is all this needs to see.
        """
        delta = self.config.blocked_frame_delta
        if view is None or self._forward_view is None or not primitives or primitives[0].kind != "forward":
            return primitives, None
        if view.shape != self._forward_view.shape:
            return primitives, None
        change = float(np.abs(view - self._forward_view).mean())
        if change >= delta:
            return primitives, None
        return ([NavPrimitive.turn_left(self.config.blocked_turn_deg)],
                f"blocked recovery: the last forward step changed the view by {change:.2f} (< {delta:g}) grey levels")

    def _spin_recovery(self, primitives: list[NavPrimitive], may_replace: bool = True) -> tuple[list[NavPrimitive], str | None]:
        """Replace a plan that would keep turning in place by one forward step (`spin_recovery_deg`).

        A learnt navigator that has looked all around without choosing a direction tends to keep
        turning until the step limit (checkpoints/navid_film/MODEL_CARD.md, failure modes); a forward
        step gives it a new view, as Nav2's recovery behaviours take over from a stuck controller.
        The planner assumes its primitives are executed; stops and forward plans pass unchanged.
        """
        limit = self.config.spin_recovery_deg
        recovery = None
        if may_replace and limit > 0 and self._turned_deg >= limit and primitives and primitives[0].kind in ("turn_left", "turn_right"):
            recovery = f"spin recovery: {self._turned_deg:.0f} degrees of turns since the last forward step"
            primitives = [NavPrimitive.forward()]
        for p in primitives:
            if p.kind == "forward":
                self._turned_deg = 0.0
            elif p.kind in ("turn_left", "turn_right"):
                self._turned_deg += p.value
        return primitives, recovery

    def _resolve_model_option(self, name: str, own_backend: bool) -> bool:
        """A "model" / "always" / "never" setting (`stop_gate`, `goal_approach`) as a bool: "model" reads
        `planner_config.json` in the model directory of a backend this planner built itself (an
        injected backend has no directory to read)."""
        c = self.config
        value = getattr(c, name)
        if value != "model":
            return value == "always"
        if not own_backend or c.backend == "remote":
            return False
        path = os.path.join(c.resolved_model_dir(), PLANNER_CONFIG_NAME)
        if not os.path.isfile(path):
            return False
        with open(path) as f:
            return bool(json.load(f).get(name, False))

    def _look_for_goal(self, rgb: np.ndarray, depth, pose) -> None:
        """Segment and verify the goals worth looking for in this frame: with the goal approach, every
        leg not yet done (each sighting re-locates its goal on the map); for the stop gate, the last
        goal until it has been seen once."""
        c = self.config
        if self.goal_sightings is None:
            from vlm_agent.planners.stop_check import GoalSightings

            self.goal_sightings = GoalSightings(c.stop_gate_segmenter_dir, c.stop_gate_verifier_dir, c.stop_gate_min_match, c.device)
        if self._goal_spec is None:  # once an episode: the instruction does not change
            self._goal_spec = self.goal_sightings.goal_spec(self.instruction)
        spec = self._goal_spec
        if not spec.phrases:
            self.goal_seen = self.goal_seen or "the instruction names no colour and shape the verifier knows: stops are not gated"
            return
        if self.goal_approach_on and spec.approachable and self.ego_map is not None:
            if self.approach is None:
                from vlm_agent.planners.goal_approach import GoalApproach

                self.approach = GoalApproach(spec, stop_radius_m=c.goal_approach_stop_radius_m, max_plans=c.goal_approach_max_plans,
                                             ego_map=self.ego_map, stall_plans=c.explore_stall_plans, stall_min_new_m2=c.explore_stall_m2)
                if c.search == "frontier":
                    self.approach.exploring = "search: frontier"
            why = ""
            for phrase in self.approach.pending_phrases:
                mask, seen, match = self.goal_sightings.find_goal(rgb, phrase)
                if mask is None:
                    continue
                self.approach.observe(phrase, self.ego_map.mask_points(depth, mask, pose), pose, match)
                why = seen if phrase == spec.phrases[-1] else why
            # Seen = a candidate that meets the qualifier (a look-alike in the start room does not count for "the other room").
            if self.goal_seen is None and self.approach.choose(spec.phrases[-1]) is not None:
                self.goal_seen = f"{why or 'the goal located'} at plan {self.steps}"
            return
        phrases = spec.phrases
        if self.stop_gate and self.goal_seen is None:
            seen, why = self.goal_sightings.sees_goal(rgb, phrases[-1])
            if seen:
                self.goal_seen = f"{why} at plan {self.steps}"

    def _stop_gate(self, primitives: list[NavPrimitive]) -> tuple[list[NavPrimitive], str | None]:
        """A stop before the goal has been seen (or, with the goal approach, before a sequence's earlier
        legs are done) becomes a turn, at most `stop_gate_max_refusals` times an episode.

        The explorer expert never stops before it has seen the goal; the model, which cannot remember
        whether it has, often does (planners/stop_check.py). A turn gives it a new view to plan from.
        """
        c = self.config
        if not primitives or primitives[0].kind != "stop" or self._refusals >= c.stop_gate_max_refusals:
            return primitives, None
        if self.goal_seen is None:
            why = "the goal has not been in view yet"
        elif self.approach is not None and self.approach.leg < len(self.approach.phrases) - 1:
            # A sequence's earlier goal not reached yet (the goal approach counts legs): stopping at the last one fails.
            why = f"leg {self.approach.leg + 1} of {len(self.approach.phrases)} ({self.approach.current_phrase}) is not done yet"
        else:
            return primitives, None
        self._refusals += 1
        return ([NavPrimitive.turn_left(c.stop_gate_turn_deg)], f"stop gate: {why} (refusal {self._refusals} of at most {c.stop_gate_max_refusals})")

    def _require_instruction(self):
        if self.instruction is None:
            raise RuntimeError("NavidPlanner: call reset(instruction) first")
