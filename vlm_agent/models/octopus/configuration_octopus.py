"""Configuration of the Octopus-style code planner: images + task -> Explanation / Subtasks / Code /
Target state (Yang et al., "Octopus: Embodied Vision-Language Programmer from Environmental
Feedback", 2023).

The model is the embodied core without a state slot: the robot's state reaches it as words in the
prompt ("Robot: base at x=..., gripper open, holding nothing"), the images as `<img>` slots
(`grid_size ** 2` projected patch features each). Its answer is long free text (a program and a
target state), so it is decoded greedily and judged afterwards by the strict response parser and the
sandbox (`vlm_agent.planners.octopus_format`, `vlm_agent.skills.sandbox`).
"""
from __future__ import annotations

from ..embodied_vlm.configuration_embodied_vlm import EmbodiedVLMConfig
from ..palme.configuration_palme import check_context


class OctopusConfig(EmbodiedVLMConfig):
    """Octopus fields on top of `EmbodiedVLMConfig`.

    Fields:
        state_dim: must be 0 (no state slot; the state is text in the prompt).
        max_images: most images in one prompt (each costs `grid_size ** 2` tokens).
        max_prompt_tokens: longest prompt after expansion the processor accepts.
        max_new_tokens: generation limit per response; a four-section response with a 5-call program
            is ~150-250 tokens with a small BPE, so 384 leaves room without letting a looping model
            run for long. With `max_prompt_tokens` it must fit `max_position_embeddings`.
    """

    model_type = "octopus"
    max_images: int = 4
    max_prompt_tokens: int = 1536
    max_new_tokens: int = 384

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        owner = type(self).__name__
        if self.state_dim != 0:
            raise ValueError(f"{owner}.state_dim: {self.state_dim!r} must be 0 (Octopus prompts carry the robot state as text)")
        for name, lo, hi in (("max_images", 1, 64), ("max_prompt_tokens", 16, 1 << 20), ("max_new_tokens", 1, 8192)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{owner}.{name}: {v!r} must be an int in [{lo}, {hi}]")
        check_context(self)


__all__ = ["OctopusConfig"]
