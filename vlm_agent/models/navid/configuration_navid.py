"""Configuration of the NaVid-style video navigation model (instruction + egocentric RGB video only).

NaVid (Zhang et al., RSS 2024) encodes every past frame into 4 tokens and the current frame into 64,
separated by `[HIS]`/`[OBS]`, and asks the LM after `[NAV]` for the next primitive(s). Ours adds what
the project's CPU experiment showed a tiny model needs to ground the instruction: FiLM layers that
let the instruction scale/shift the vision features *before* pooling (see docs/models.md).
"""
from __future__ import annotations

from ..embodied_vlm.configuration_embodied_vlm import EmbodiedVLMConfig


class NavidConfig(EmbodiedVLMConfig):
    """NaVid fields on top of `EmbodiedVLMConfig`.

    Fields:
        current_grid_size: the current frame is pooled to this square grid (8 -> 64 tokens).
        history_grid_size: each history frame is pooled to this grid (2 -> 4 tokens).
        max_history_frames: cap on history frames fed to the LM; longer histories are uniformly
            subsampled from the cache (first and latest frames always kept), so per-step cost stays flat.
        film_layers: instruction-conditioned FiLM blocks over the vision grid (0 disables grounding).
        his_token_id, obs_token_id, nav_token_id: separator ids.
        forward_values_cm, turn_values_deg: the values the constrained decoder may emit.
        max_primitives: primitives per call (NaVid's grammar allows up to 3).
        aux_action_classes: >0 adds a training-only head that predicts the expert's next primitive from
            one frame's grounded 2x2 grid (deep supervision of the vision + FiLM path); unused at inference.
        vision_stem: "vit" (the transformers SigLIP/CLIP tower from `vision_config`, instruction-blind,
            FiLM only after it; navid_tiny) or "film_cnn" (a small CNN whose every stage is scaled and
            shifted by the instruction, so colour/shape grounding happens at full resolution where a far
            object is still a few pixels; `vision_config` then only fixes image size, grid and width).
        cnn_channels: channels of the film_cnn stages before the last one (the last has
            `vision_config.hidden_size`); stages halve the resolution, so there are log2(patch_size)
            stages in all.
        recent_history_frames: 0 = history frames uniformly subsampled over the episode (navid_tiny);
            k > 0 = the k most recent frames always, plus a sparse uniform subsample of older ones
            (the long-term memory) filling the rest of `max_history_frames`.
        map_cells: 0 = no map memory; N > 0 = the model also reads the egocentric map memory
            (`vlm_agent.planners.ego_map`: `map_channels` x N x N, free / obstacle / visited, built from
            depth and odometry) through a small CNN pooled to `map_grid_size`^2 tokens that follow the
            current frame's tokens (so `current_tokens` counts them).
        ego_map: the `EgoMapConfig` fields the map was built with in training (cells, resolution,
            range, the camera mounting of the simulator); the planner builds the same map, with the
            robot's own camera mounting.
        aux_grounding: 1 adds a training-only head that predicts, per cell of the grounded vision grid,
            whether a goal object of the instruction is there (labels from the simulator's segmentation,
            `training/collect.py` `target_masks`): dense supervision of colour-shape grounding, so a
            look-alike (a blue ball when asked for the blue cube) is told apart; unused at inference.
        stop_logit_bias: added to the logit of `stop` when the constrained decoder chooses the first
            primitive (< 0 = stop only when clearly more likely than a move). A decision threshold
            tuned closed-loop on val episodes: a premature stop ends the episode, a late one costs a
            step, so the cost of the two errors is not symmetric.
    """

    current_grid_size: int = 8
    history_grid_size: int = 2
    max_history_frames: int = 16
    film_layers: int = 2
    his_token_id: int = 6
    obs_token_id: int = 7
    nav_token_id: int = 8
    forward_values_cm: list[int] | None = None
    turn_values_deg: list[int] | None = None
    max_primitives: int = 3
    aux_action_classes: int = 0
    aux_grounding: int = 0
    vision_stem: str = "vit"
    cnn_channels: list[int] | None = None
    recent_history_frames: int = 0
    stop_logit_bias: float = 0.0
    map_cells: int = 0
    map_channels: int = 3
    map_grid_size: int = 4
    ego_map: dict | None = None
    model_type = "navid"

    def __post_init__(self, **kwargs):
        # Mutable defaults are filled here (config fields are dataclass fields).
        self.forward_values_cm = [25] if self.forward_values_cm is None else list(self.forward_values_cm)
        self.turn_values_deg = [30] if self.turn_values_deg is None else list(self.turn_values_deg)
        self.cnn_channels = [24, 48] if self.cnn_channels is None else list(self.cnn_channels)
        super().__post_init__(**kwargs)
        owner = type(self).__name__
        g = self.grid_size
        for name in ("current_grid_size", "history_grid_size"):
            v = getattr(self, name)
            # Adaptive pooling handles grids that are not multiples (a 224 px / patch 16 SigLIP has 14x14).
            if not isinstance(v, int) or not 1 <= v <= g:
                raise ValueError(f"{owner}.{name}: {v!r} must be an int in [1, vision grid size {g}]")
        for name, lo, hi in (("max_history_frames", 1, 4096), ("film_layers", 0, 16), ("max_primitives", 1, 3), ("aux_action_classes", 0, 64),
                             ("aux_grounding", 0, 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{owner}.{name}: {v!r} must be an int in [{lo}, {hi}]")
        if self.vision_stem not in ("vit", "film_cnn"):
            raise ValueError(f"{owner}.vision_stem: {self.vision_stem!r} must be 'vit' or 'film_cnn'")
        if self.vision_stem == "film_cnn":
            p = self.vision_config.patch_size
            if p < 2 or p & (p - 1):
                raise ValueError(f"{owner}: the film_cnn stem needs a power-of-two patch_size >= 2, got {p}")
            if len(self.cnn_channels) != p.bit_length() - 2 or not all(isinstance(c, int) and 1 <= c <= 1024 for c in self.cnn_channels):
                raise ValueError(f"{owner}.cnn_channels: {self.cnn_channels!r} must be {p.bit_length() - 2} ints in [1, 1024] (one per stage before the last, patch_size {p})")
        if not isinstance(self.recent_history_frames, int) or not 0 <= self.recent_history_frames <= self.max_history_frames:
            raise ValueError(f"{owner}.recent_history_frames: {self.recent_history_frames!r} must be an int in [0, max_history_frames={self.max_history_frames}]")
        if not isinstance(self.stop_logit_bias, (int, float)) or not -50.0 <= float(self.stop_logit_bias) <= 50.0:
            raise ValueError(f"{owner}.stop_logit_bias: {self.stop_logit_bias!r} must be a number in [-50, 50]")
        for name, lo, hi in (("map_cells", 0, 256), ("map_channels", 1, 16), ("map_grid_size", 1, 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{owner}.{name}: {v!r} must be an int in [{lo}, {hi}]")
        if self.map_cells and self.map_grid_size > self.map_cells:
            raise ValueError(f"{owner}.map_grid_size {self.map_grid_size} exceeds map_cells {self.map_cells}")
        for name, hi in (("forward_values_cm", 500), ("turn_values_deg", 180)):
            v = getattr(self, name)
            if not v or not all(isinstance(x, int) and 0 < x <= hi for x in v):
                raise ValueError(f"{owner}.{name}: {v!r} must be a non-empty list of ints in (0, {hi}]")

    @classmethod
    def token_id_fields(cls) -> tuple[str, ...]:
        return super().token_id_fields() + ("his_token_id", "obs_token_id", "nav_token_id")

    @property
    def map_tokens(self) -> int:
        """Tokens of the egocentric map memory per step (0 without one)."""
        return self.map_grid_size ** 2 if self.map_cells else 0

    @property
    def current_tokens(self) -> int:
        """Tokens after [OBS]: the current frame's grid, then the map memory's (if any)."""
        return self.current_grid_size ** 2 + self.map_tokens

    @property
    def history_tokens_per_frame(self) -> int:
        return self.history_grid_size ** 2
