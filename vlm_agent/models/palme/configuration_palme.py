"""Configuration of the PaLM-E-style task planner: a multimodal sentence -> the next skill step(s).

PaLM-E (Driess et al., 2023) writes images and continuous robot state into the LM's input as
embeddings at placeholder positions of an otherwise textual prompt (a "multimodal sentence") and asks
the LM for the next step of a plan in text. Ours is the embodied core with `<img>` slots (one
projected patch feature each, `grid_size ** 2` per image) and one `<state>` slot that receives the
robot state vector below through the core's state projector.
"""
from __future__ import annotations

from ..embodied_vlm.configuration_embodied_vlm import EmbodiedVLMConfig

# The robot state vector written into the `<state>` slot; its layout is documented in
# `PalmeProcessor.encode_state` (units, frames, defaults for unknown values).
STATE_FIELDS = ("x_m", "y_m", "cos_yaw", "sin_yaw", "pose_known", "gripper_opening", "holding")
PALME_STATE_DIM = len(STATE_FIELDS)


class PalmeConfig(EmbodiedVLMConfig):
    """PaLM-E fields on top of `EmbodiedVLMConfig`.

    Fields:
        state_dim: length of the robot state vector; must be `len(STATE_FIELDS)` = 7 (base x, y in
            metres, cos/sin of yaw, pose-known flag, gripper opening, holding flag), the encoding of
            `PalmeProcessor.encode_state`.
        max_images: most images in one prompt (each costs `grid_size ** 2` tokens; the loop sends the
            current camera view, so 1 is typical).
        max_prompt_tokens: longest prompt after expansion (images, state, text) the processor accepts;
            with `max_new_tokens` it must fit the LM's `max_position_embeddings`.
        max_new_tokens: generation limit per call (a step line is ~10-20 tokens).
        plan_steps: steps the constrained decoder emits per call (1 = only the next step, PaLM-E's
            replan-after-every-step; more steps cost more decoding and the loop executes only
            `steps_per_call` of them).
    """

    model_type = "palme"
    state_dim: int = PALME_STATE_DIM
    max_images: int = 4
    max_prompt_tokens: int = 1536
    max_new_tokens: int = 64
    plan_steps: int = 1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        owner = type(self).__name__
        if self.state_dim != PALME_STATE_DIM:
            raise ValueError(f"{owner}.state_dim: {self.state_dim!r} must be {PALME_STATE_DIM} (the state vector {', '.join(STATE_FIELDS)})")
        for name, lo, hi in (("max_images", 1, 64), ("max_prompt_tokens", 16, 1 << 20), ("max_new_tokens", 1, 4096), ("plan_steps", 1, 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{owner}.{name}: {v!r} must be an int in [{lo}, {hi}]")
        check_context(self)


def check_context(config) -> None:
    """ValueError when the longest prompt plus the generation limit do not fit the LM's positions."""
    positions = getattr(config.text_config, "max_position_embeddings", None)
    if positions is not None and config.max_prompt_tokens + config.max_new_tokens > positions:
        raise ValueError(f"{type(config).__name__}: max_prompt_tokens {config.max_prompt_tokens} + max_new_tokens {config.max_new_tokens} "
                         f"exceed text_config.max_position_embeddings {positions}")


__all__ = ["PalmeConfig", "STATE_FIELDS", "PALME_STATE_DIM", "check_context"]
